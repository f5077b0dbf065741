//! The tracker's TOML configuration.

use std::path::Path;

use serde::Deserialize;
use service_kit::config::{ConfigError, Problems};
use service_kit::kafka::KafkaSettings;

use crate::association::TrackingParams;
use crate::reid::ReidParams;

/// Everything the tracker needs.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrackerConfig {
    /// Kafka connection.
    pub kafka: KafkaSettings,
    /// Consumer group; instances in one group share the cameras' partitions.
    #[serde(default = "default_group")]
    pub group_id: String,
    /// Seconds allowed on shutdown to finish reading what was already written.
    #[serde(default = "default_drain_s")]
    pub drain_timeout_s: f64,
    /// Per-camera tracking.
    #[serde(default)]
    pub tracking: TrackingParams,
    /// Cross-camera re-identification.
    #[serde(default)]
    pub reid: ReidParams,
}

fn default_group() -> String {
    "argus-tracker".into()
}
/// Long enough to read a backlog of a few thousand frames on a small box.
const fn default_drain_s() -> f64 {
    30.0
}

impl TrackerConfig {
    /// Defaults for everything but the broker.
    pub fn new(kafka: KafkaSettings) -> Self {
        TrackerConfig {
            kafka,
            group_id: default_group(),
            drain_timeout_s: default_drain_s(),
            tracking: TrackingParams::default(),
            reid: ReidParams::default(),
        }
    }

    /// Loads the file, applies environment overrides and validates.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let mut config: TrackerConfig = service_kit::config::load(path)?;
        config.kafka.apply_env();
        config.validate()?;
        Ok(config)
    }

    /// Checks every field and reports all problems at once.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let mut p = Problems::default();
        let t = &self.tracking;
        p.check(!self.kafka.bootstrap_servers.trim().is_empty(), || {
            "kafka.bootstrap_servers is empty".into()
        });
        p.check(!self.group_id.is_empty(), || "group_id is empty".into());
        p.check(self.drain_timeout_s >= 0.0, || {
            "drain_timeout_s must be >= 0".into()
        });
        p.check(t.n_init >= 1, || "tracking.n_init must be >= 1".into());
        p.check(t.max_age_s > 0.0, || {
            "tracking.max_age_s must be > 0".into()
        });
        p.check((0.0..=1.0).contains(&t.min_iou), || {
            "tracking.min_iou must be in [0, 1]".into()
        });
        p.check((-1.0..=1.0).contains(&t.min_appearance), || {
            "tracking.min_appearance must be in [-1, 1]".into()
        });
        p.check((0.0..=1.0).contains(&t.iou_weight), || {
            "tracking.iou_weight must be in [0, 1]".into()
        });
        p.check((-1.0..=1.0).contains(&self.reid.threshold), || {
            "reid.threshold must be in [-1, 1]".into()
        });
        p.check(self.reid.ttl_s > 0.0, || "reid.ttl_s must be > 0".into());
        p.check(self.reid.max_entries > 0, || {
            "reid.max_entries must be > 0".into()
        });
        p.finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_deploy_example_parses_and_states_the_defaults() {
        let config: TrackerConfig =
            toml::from_str(include_str!("../../deploy/config/tracker.toml")).unwrap();
        config.validate().unwrap();
        assert_eq!(config.tracking, TrackingParams::default());
        assert_eq!(config.reid, ReidParams::default());
        assert_eq!(config.group_id, default_group());
    }

    #[test]
    fn defaults_fill_in_and_bad_values_are_all_reported() {
        let config: TrackerConfig =
            toml::from_str("[kafka]\nbootstrap_servers = \"127.0.0.1:9092\"\n").unwrap();
        assert_eq!(config.tracking, TrackingParams::default());
        config.validate().unwrap();
        let bad: TrackerConfig =
            toml::from_str("[kafka]\nbootstrap_servers = \"x\"\n[tracking]\nn_init = 0\nmax_age_s = -1\n[reid]\nthreshold = 2\n").unwrap();
        let err = bad.validate().unwrap_err().to_string();
        assert!(
            err.contains("n_init") && err.contains("max_age_s") && err.contains("reid.threshold"),
            "{err}"
        );
        assert!(
            toml::from_str::<TrackerConfig>(
                "[kafka]\nbootstrap_servers = \"x\"\n[tracking]\nnit = 1\n"
            )
            .is_err()
        );
    }
}
