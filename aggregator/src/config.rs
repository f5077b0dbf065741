//! The aggregator's TOML configuration.

use std::path::{Path, PathBuf};

use serde::Deserialize;
use service_kit::config::{ConfigError, Problems};
use service_kit::kafka::KafkaSettings;

use crate::store::{S3Settings, Storage, StoreError};
use crate::webhooks::WebhookSettings;

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
    /// resolved against the config file's directory. Exactly one of
    /// `data_dir` and `[s3]` is set.
    #[serde(default)]
    pub data_dir: Option<PathBuf>,
    /// The tables in an S3-compatible bucket instead of `data_dir`.
    #[serde(default)]
    pub s3: Option<S3Settings>,
    /// Seconds between Parquet flushes (offsets are committed after each).
    #[serde(default = "default_flush_s")]
    pub flush_interval_s: f64,
    /// Seconds allowed on shutdown to finish reading what was already written.
    #[serde(default = "default_drain_s")]
    pub drain_timeout_s: f64,
    /// How long event ids are remembered to drop re-delivered events (a
    /// tracker replaying after a crash). Ids of the stored rows of this
    /// window are read back at start-up.
    #[serde(default = "default_dedup_window_s")]
    pub dedup_window_s: f64,
    /// Small-file compaction.
    #[serde(default)]
    pub compaction: CompactionConfig,
    /// Days of partitions to keep (by partition date, UTC); 0 keeps everything.
    #[serde(default)]
    pub retention_days: u32,
    /// Camera → department (zone) mapping for the canned reports.
    #[serde(default)]
    pub departments: Vec<Department>,
    /// Memory all running queries of the HTTP API may hold together, MiB; a
    /// query that needs more fails alone.
    #[serde(default = "default_query_memory_limit_mb")]
    pub query_memory_limit_mb: u64,
    /// The analysts' HTTP API (`POST /sql`, `GET /reports/...`); off when absent.
    #[serde(default)]
    pub http: Option<crate::http::HttpSettings>,
    /// `[[webhooks]]`: HTTP receivers of alerts, each with its own consumer
    /// group, filter and retries (see [`crate::webhooks`]); none by default.
    #[serde(default)]
    pub webhooks: Vec<WebhookSettings>,
}

const fn default_query_memory_limit_mb() -> u64 {
    1024
}

/// A department (or zone) and the cameras that watch it.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Department {
    /// Name used in reports, e.g. "electronics".
    pub name: String,
    /// Camera ids; a camera belongs to at most one department.
    pub cameras: Vec<String>,
}

impl Department {
    /// Departments from `(camera_id, department)` pairs, in first-seen order.
    pub fn group(pairs: impl IntoIterator<Item = (String, String)>) -> Vec<Department> {
        let mut out: Vec<Department> = Vec::new();
        for (camera, name) in pairs {
            match out.iter_mut().find(|d| d.name == name) {
                Some(d) => d.cameras.push(camera),
                None => out.push(Department {
                    name,
                    cameras: vec![camera],
                }),
            }
        }
        out
    }
}

/// When and how small Parquet files are merged.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CompactionConfig {
    /// Seconds between maintenance passes (compaction, retention, deletes).
    #[serde(default = "default_compact_interval_s")]
    pub interval_s: f64,
    /// A partition is compacted once it holds this many small files.
    #[serde(default = "default_compact_min_files")]
    pub min_files: usize,
    /// Files with fewer rows are "small"; compacted files hold at most this many.
    #[serde(default = "default_compact_target_rows")]
    pub target_rows: u64,
    /// Seconds a replaced file stays on storage for queries that already listed it.
    #[serde(default = "default_delete_grace_s")]
    pub delete_grace_s: f64,
}

impl Default for CompactionConfig {
    fn default() -> Self {
        CompactionConfig {
            interval_s: default_compact_interval_s(),
            min_files: default_compact_min_files(),
            target_rows: default_compact_target_rows(),
            delete_grace_s: default_delete_grace_s(),
        }
    }
}

const fn default_compact_interval_s() -> f64 {
    300.0
}
const fn default_compact_min_files() -> usize {
    8
}
const fn default_compact_target_rows() -> u64 {
    1_000_000
}
const fn default_delete_grace_s() -> f64 {
    300.0
}
/// Two days: longer than any tracker outage we expect to be replayed.
const fn default_dedup_window_s() -> f64 {
    172_800.0
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
    /// Default of [`AggregatorConfig::dedup_window_s`].
    pub const DEFAULT_DEDUP_WINDOW_S: f64 = default_dedup_window_s();

    /// Defaults for everything but the broker and the data directory.
    pub fn new(kafka: KafkaSettings, data_dir: PathBuf) -> Self {
        AggregatorConfig {
            kafka,
            group_id: default_group(),
            data_dir: Some(data_dir),
            s3: None,
            flush_interval_s: default_flush_s(),
            drain_timeout_s: default_drain_s(),
            dedup_window_s: default_dedup_window_s(),
            compaction: CompactionConfig::default(),
            retention_days: 0,
            departments: Vec::new(),
            query_memory_limit_mb: default_query_memory_limit_mb(),
            http: None,
            webhooks: Vec::new(),
        }
    }

    /// Loads the file, resolves paths, applies environment overrides and validates.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let mut config: AggregatorConfig = service_kit::config::load(path)?;
        if let Some(dir) = &mut config.data_dir {
            *dir = path.parent().unwrap_or(Path::new(".")).join(&*dir);
        }
        config.kafka.apply_env();
        if let Ok(token) = std::env::var("ARGUS_HTTP_TOKEN")
            && let Some(http) = &mut config.http
        {
            http.token = Some(token);
        }
        for webhook in &mut config.webhooks {
            webhook.apply_env(|var| std::env::var(var).ok());
        }
        config.validate()?;
        Ok(config)
    }

    /// Opens the configured storage: `data_dir` or the `[s3]` bucket.
    pub fn storage(&self) -> Result<Storage, StoreError> {
        match (&self.data_dir, &self.s3) {
            (Some(dir), None) => Storage::local(dir),
            (None, Some(s3)) => Storage::s3(s3),
            _ => Err(StoreError::Config(
                "set exactly one of data_dir and [s3]".into(),
            )),
        }
    }

    /// Checks every field and reports all problems at once.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let mut p = Problems::default();
        p.check(self.data_dir.is_some() != self.s3.is_some(), || {
            "set exactly one of data_dir (a local directory) and [s3] (a bucket)".into()
        });
        if let Some(s3) = &self.s3 {
            for problem in s3.validate() {
                p.check(false, || format!("s3: {problem}"));
            }
        }
        p.check(!self.kafka.bootstrap_servers.trim().is_empty(), || {
            "kafka.bootstrap_servers is empty".into()
        });
        p.check(!self.group_id.is_empty(), || "group_id is empty".into());
        let seconds = |v: f64| v.is_finite() && (0.0..=31_536_000.0).contains(&v);
        p.check(
            self.flush_interval_s > 0.0 && seconds(self.flush_interval_s),
            || "flush_interval_s must be > 0 and at most a year".into(),
        );
        p.check(seconds(self.drain_timeout_s), || {
            "drain_timeout_s must be >= 0 and at most a year".into()
        });
        p.check(seconds(self.dedup_window_s), || {
            "dedup_window_s must be >= 0 and at most a year".into()
        });
        let c = &self.compaction;
        p.check(c.interval_s > 0.0, || {
            "compaction.interval_s must be > 0".into()
        });
        p.check(c.min_files >= 2, || {
            "compaction.min_files must be >= 2".into()
        });
        p.check(c.target_rows > 0, || {
            "compaction.target_rows must be > 0".into()
        });
        p.check(seconds(c.delete_grace_s), || {
            "compaction.delete_grace_s must be >= 0 and at most a year".into()
        });
        p.check(self.query_memory_limit_mb > 0, || {
            "query_memory_limit_mb must be > 0".into()
        });
        if let Some(http) = &self.http {
            for problem in http.validate() {
                p.check(false, || format!("http: {problem}"));
            }
            p.check(http.listen.ip().is_loopback() || http.token.is_some(), || {
                format!(
                    "http.listen {} is reachable from other hosts: set http.token (or ARGUS_HTTP_TOKEN)",
                    http.listen
                )
            });
        }
        let mut owner = std::collections::HashMap::new();
        for (i, d) in self.departments.iter().enumerate() {
            p.check(!d.name.trim().is_empty(), || {
                format!("departments[{i}].name is empty")
            });
            p.check(!d.cameras.is_empty(), || {
                format!("department {:?} has no cameras", d.name)
            });
            for camera in &d.cameras {
                if let Some(other) = owner.insert(camera.as_str(), d.name.as_str()) {
                    p.check(false, || {
                        format!(
                            "camera {camera:?} is in departments {other:?} and {:?}",
                            d.name
                        )
                    });
                }
            }
        }
        let mut names: Vec<_> = self.departments.iter().map(|d| d.name.as_str()).collect();
        names.sort_unstable();
        for pair in names.windows(2) {
            p.check(pair[0] != pair[1], || {
                format!("department {:?} is listed twice", pair[0])
            });
        }
        self.validate_webhooks(&mut p);
        p.finish()
    }

    fn validate_webhooks(&self, p: &mut Problems) {
        let mut names = std::collections::HashMap::new();
        let mut secret_vars = std::collections::HashMap::new();
        for (i, w) in self.webhooks.iter().enumerate() {
            for problem in w.validate() {
                p.push(format!("webhooks[{i}] ({:?}): {problem}", w.name));
            }
            if names.insert(w.name.as_str(), i).is_some() {
                p.push(format!("webhook {:?} is listed twice", w.name));
            } else if let Some(other) = secret_vars.insert(w.secret_env(), w.name.as_str()) {
                p.push(format!(
                    "webhooks {other:?} and {:?} share the secret variable {}; rename one",
                    w.name,
                    w.secret_env()
                ));
            }
        }
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
        assert_eq!(config.compaction, CompactionConfig::default());
        assert_eq!(config.departments.len(), 2);
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

    #[test]
    fn the_commented_webhook_example_is_valid_and_states_the_defaults() {
        let text = include_str!("../../deploy/config/aggregator.toml");
        let start = text.find("# [[webhooks]]").unwrap();
        let block: Vec<&str> = text[start..]
            .lines()
            .take_while(|line| line.starts_with('#'))
            .map(|line| line.strip_prefix("# ").unwrap_or(line))
            .collect();
        let config: AggregatorConfig =
            toml::from_str(&format!("{text}\n{}\n", block.join("\n"))).unwrap();
        config.validate().unwrap();
        assert_eq!(
            config.webhooks,
            vec![WebhookSettings::new(
                "ops-pager",
                "https://pager.example.com/argus",
                "change-me"
            )]
        );
    }

    #[test]
    fn storage_is_a_directory_or_a_bucket_and_s3_mistakes_are_reported() {
        let parse = |text: &str| -> AggregatorConfig {
            toml::from_str(&format!(
                "{text}\n[kafka]\nbootstrap_servers = \"k:9092\"\n"
            ))
            .unwrap()
        };
        let neither = parse("").validate().unwrap_err().to_string();
        assert!(neither.contains("exactly one of data_dir"), "{neither}");
        let both = parse("data_dir = \"t\"\ns3 = { bucket = \"b\" }")
            .validate()
            .unwrap_err()
            .to_string();
        assert!(both.contains("exactly one of data_dir"), "{both}");
        let bad = parse(
            "s3 = { bucket = \"a/b\", endpoint = \"http://127.0.0.1:9000\", access_key_id = \"k\" }",
        );
        let err = bad.validate().unwrap_err().to_string();
        for needle in [
            "s3: bucket \"a/b\"",
            "set allow_http = true",
            "access_key_id and secret_access_key go together",
        ] {
            assert!(err.contains(needle), "{needle} missing from {err}");
        }
        let good = parse(
            "[s3]\nbucket = \"argus\"\nprefix = \"/site-1/tables/\"\nendpoint = \"http://127.0.0.1:9000\"\nallow_http = true",
        );
        good.validate().unwrap();
        let storage = good.storage().unwrap();
        assert_eq!(storage.describe(), "s3://argus/site-1/tables");
        assert_eq!(
            storage.table_url(schemas::tables::Table::Frames),
            "s3://argus/site-1/tables/frames/"
        );
        assert!(format!("{:?}", good.s3).contains("bucket"));
        let secret =
            parse("s3 = { bucket = \"b\", access_key_id = \"k\", secret_access_key = \"hush\" }");
        assert!(
            !format!("{secret:?}").contains("hush"),
            "secrets stay out of logs"
        );
    }

    #[test]
    fn department_mistakes_are_all_reported() {
        let config: AggregatorConfig = toml::from_str(
            r#"
            data_dir = "t"
            [kafka]
            bootstrap_servers = "k:9092"
            [[departments]]
            name = "a"
            cameras = ["c1", "c2"]
            [[departments]]
            name = "b"
            cameras = ["c2"]
            [[departments]]
            name = "a"
            cameras = []
            [compaction]
            min_files = 1
            "#,
        )
        .unwrap();
        let err = config.validate().unwrap_err().to_string();
        for needle in [
            "camera \"c2\" is in departments \"a\" and \"b\"",
            "department \"a\" has no cameras",
            "department \"a\" is listed twice",
            "compaction.min_files",
        ] {
            assert!(err.contains(needle), "{needle} missing from {err}");
        }
    }
}
