//! The tracker's TOML configuration.

use std::path::{Path, PathBuf};

use mot::deep_sort::DeepSortParams;
use mot::reid::ReidParams;
use serde::Deserialize;
use service_kit::config::{ConfigError, Problems};
use service_kit::kafka::KafkaSettings;

use crate::engine::EngineParams;

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
    /// Directory of the checkpoint (tracks, gallery, id allocator and the
    /// offsets they cover). Without it the tracker keeps no state across
    /// restarts: ids start again and open tracks are ended on shutdown.
    #[serde(default)]
    pub state_dir: Option<PathBuf>,
    /// Seconds between checkpoints (offsets are committed with each one).
    #[serde(default = "default_checkpoint_s")]
    pub checkpoint_interval_s: f64,
    /// Stream seconds without frames after which a camera's tracks end (the
    /// camera was blind or gone).
    #[serde(default = "default_camera_gap_s")]
    pub camera_gap_s: f64,
    /// Address of the Prometheus `/metrics` and `/healthz` endpoint; none
    /// disables it.
    #[serde(default)]
    pub metrics_address: Option<String>,
    /// Deep SORT, per camera.
    #[serde(default)]
    pub tracking: DeepSortParams,
    /// Cross-camera re-identification and the camera topology.
    #[serde(default)]
    pub reid: ReidParams,
    /// Anomaly alert rules, run on every tracked frame and on the cameras'
    /// health reports; alerts go to `argus.alerts.v1`. None: no rules.
    /// `[[alerts.topology]]` defaults to `[[reid.links]]`.
    #[serde(default)]
    pub alerts: Option<alerts::RulesConfig>,
}

fn default_group() -> String {
    "argus-tracker".into()
}
/// Long enough to read a backlog of a few thousand frames on a small box.
const fn default_drain_s() -> f64 {
    30.0
}
/// A restart replays at most this much input (the detections since the last checkpoint).
const fn default_checkpoint_s() -> f64 {
    10.0
}
/// Well above Deep SORT's max_age at the frame rates edge agents analyse (2–10 fps).
const fn default_camera_gap_s() -> f64 {
    30.0
}

impl TrackerConfig {
    /// Defaults for everything but the broker.
    pub fn new(kafka: KafkaSettings) -> Self {
        TrackerConfig {
            kafka,
            group_id: default_group(),
            drain_timeout_s: default_drain_s(),
            state_dir: None,
            checkpoint_interval_s: default_checkpoint_s(),
            camera_gap_s: default_camera_gap_s(),
            metrics_address: None,
            tracking: DeepSortParams::default(),
            reid: ReidParams::default(),
            alerts: None,
        }
    }

    /// The alert rules as the engine takes them: the re-id topology unless
    /// the rules name their own. None when no rules are configured.
    pub fn alert_rules(&self) -> Option<alerts::RulesConfig> {
        let mut rules = self.alerts.clone()?;
        if rules.topology.is_empty() {
            rules.topology = self.reid.links.clone();
        }
        Some(rules)
    }

    /// Loads the file, applies environment overrides and validates.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let mut config: TrackerConfig = service_kit::config::load(path)?;
        config.kafka.apply_env();
        config.validate()?;
        Ok(config)
    }

    /// The engine's share of the configuration.
    pub fn engine_params(&self) -> EngineParams {
        EngineParams {
            tracking: self.tracking.clone(),
            reid: self.reid.clone(),
            camera_gap_s: self.camera_gap_s,
        }
    }

    /// Checks every field and reports all problems at once.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let mut p = Problems::default();
        p.check(!self.kafka.bootstrap_servers.trim().is_empty(), || {
            "kafka.bootstrap_servers is empty".into()
        });
        p.check(!self.group_id.is_empty(), || "group_id is empty".into());
        p.check(
            self.drain_timeout_s >= 0.0 && self.drain_timeout_s.is_finite(),
            || "drain_timeout_s must be a finite number >= 0".into(),
        );
        p.check(
            self.checkpoint_interval_s > 0.0 && self.checkpoint_interval_s.is_finite(),
            || "checkpoint_interval_s must be a finite number > 0".into(),
        );
        p.check(
            self.camera_gap_s > 0.0 && self.camera_gap_s.is_finite(),
            || "camera_gap_s must be a finite number > 0".into(),
        );
        if let Some(address) = &self.metrics_address {
            p.check(address.parse::<std::net::SocketAddr>().is_ok(), || {
                format!("metrics_address {address:?} is not an address like 0.0.0.0:9102")
            });
        }
        for problem in self.tracking.validate("tracking.") {
            p.check(false, || problem);
        }
        for problem in self.reid.validate() {
            p.check(false, || format!("reid: {problem}"));
        }
        if let Some(rules) = self.alert_rules() {
            for problem in rules.validate() {
                p.check(false, || format!("alerts: {problem}"));
            }
        }
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
        assert_eq!(config.tracking, DeepSortParams::default());
        let mut reid = config.reid.clone();
        assert_eq!(reid.links.len(), 2, "the example shows a topology");
        reid.links.clear();
        assert_eq!(reid.threshold, 0.87, "tuned for the 128-d embedder");
        reid.threshold = ReidParams::default().threshold;
        assert_eq!(reid, ReidParams::default());
        assert_eq!(config.group_id, default_group());
        assert_eq!(config.checkpoint_interval_s, default_checkpoint_s());
        // The two examples that are not defaults.
        assert_eq!(config.state_dir, Some("/var/lib/argus/tracker".into()));
        assert_eq!(config.metrics_address.as_deref(), Some("0.0.0.0:9102"));
        assert_eq!(config.camera_gap_s, default_camera_gap_s());
    }

    #[test]
    fn defaults_fill_in_and_bad_values_are_all_reported() {
        let config: TrackerConfig =
            toml::from_str("[kafka]\nbootstrap_servers = \"127.0.0.1:9092\"\n").unwrap();
        assert_eq!(config.tracking, DeepSortParams::default());
        assert_eq!(config.state_dir, None);
        config.validate().unwrap();
        let bad: TrackerConfig = toml::from_str(
            "metrics_address = \"nowhere\"\ncheckpoint_interval_s = inf\n[kafka]\nbootstrap_servers = \"x\"\n\
             [tracking]\nn_init = 0\nmax_age = 0\n[reid]\nthreshold = 2\n\
             [[reid.links]]\nfrom = \"a\"\nto = \"a\"\n",
        )
        .unwrap();
        let err = bad.validate().unwrap_err().to_string();
        for needle in [
            "n_init",
            "max_age",
            "threshold",
            "metrics_address",
            "checkpoint_interval_s",
            "\"a\"",
        ] {
            assert!(err.contains(needle), "{needle} missing from: {err}");
        }
        assert!(
            toml::from_str::<TrackerConfig>(
                "[kafka]\nbootstrap_servers = \"x\"\n[tracking]\nnit = 1\n"
            )
            .is_err()
        );
    }
}
