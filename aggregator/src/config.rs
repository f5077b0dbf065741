//! The aggregator's TOML configuration.

use std::path::{Path, PathBuf};

use serde::Deserialize;
use service_kit::config::{ConfigError, Problems};
use service_kit::kafka::KafkaSettings;

/// Everything the aggregator needs.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AggregatorConfig {
    /// Kafka connection.
    pub kafka: KafkaSettings,
    /// Consumer group.
    #[serde(default = "default_group")]
    pub group_id: String,
    /// Directory holding one sub-directory per table. Relative paths are
    /// resolved against the config file's directory.
    pub data_dir: PathBuf,
    /// Seconds between Parquet flushes (offsets are committed after each).
    #[serde(default = "default_flush_s")]
    pub flush_interval_s: f64,
    /// Seconds allowed on shutdown to finish reading what was already written.
    #[serde(default = "default_drain_s")]
    pub drain_timeout_s: f64,
}

fn default_group() -> String {
    "argus-aggregator".into()
}
/// Small files every 10 s keep query freshness without a flood of files.
const fn default_flush_s() -> f64 {
    10.0
}
const fn default_drain_s() -> f64 {
    30.0
}

impl AggregatorConfig {
    /// Defaults for everything but the broker and the data directory.
    pub fn new(kafka: KafkaSettings, data_dir: PathBuf) -> Self {
        AggregatorConfig {
            kafka,
            group_id: default_group(),
            data_dir,
            flush_interval_s: default_flush_s(),
            drain_timeout_s: default_drain_s(),
        }
    }

    /// Loads the file, resolves paths, applies environment overrides and validates.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let mut config: AggregatorConfig = service_kit::config::load(path)?;
        config.data_dir = path
            .parent()
            .unwrap_or(Path::new("."))
            .join(&config.data_dir);
        config.kafka.apply_env();
        config.validate()?;
        Ok(config)
    }

    /// Checks every field and reports all problems at once.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let mut p = Problems::default();
        p.check(!self.kafka.bootstrap_servers.trim().is_empty(), || {
            "kafka.bootstrap_servers is empty".into()
        });
        p.check(!self.group_id.is_empty(), || "group_id is empty".into());
        p.check(self.flush_interval_s > 0.0, || {
            "flush_interval_s must be > 0".into()
        });
        p.check(self.drain_timeout_s >= 0.0, || {
            "drain_timeout_s must be >= 0".into()
        });
        p.finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_deploy_example_parses_and_states_the_defaults() {
        let config: AggregatorConfig =
            toml::from_str(include_str!("../../deploy/config/aggregator.toml")).unwrap();
        config.validate().unwrap();
        assert_eq!(config.flush_interval_s, default_flush_s());
        assert_eq!(config.drain_timeout_s, default_drain_s());
        assert_eq!(config.group_id, default_group());
        let bad = AggregatorConfig {
            flush_interval_s: 0.0,
            group_id: String::new(),
            ..config
        };
        let err = bad.validate().unwrap_err().to_string();
        assert!(
            err.contains("flush_interval_s") && err.contains("group_id"),
            "{err}"
        );
    }
}
