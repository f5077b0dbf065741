//! The edge agent's TOML configuration.
//!
//! Relative model paths are resolved against the config file's directory.
//! `ARGUS_KAFKA_BOOTSTRAP_SERVERS` overrides `kafka.bootstrap_servers` and
//! `ORT_DYLIB_PATH` supplies `onnxruntime_library` when it is not set.

use std::path::{Path, PathBuf};

use serde::Deserialize;
use service_kit::config::{ConfigError, Problems};
use service_kit::kafka::KafkaSettings;

/// Everything the edge agent needs.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EdgeConfig {
    /// Kafka connection.
    pub kafka: KafkaSettings,
    /// Path of `libonnxruntime.so` (ONNX Runtime 1.31). Default: `ORT_DYLIB_PATH`.
    #[serde(default)]
    pub onnxruntime_library: Option<PathBuf>,
    /// Person detector.
    pub detector: DetectorConfig,
    /// Appearance embedder.
    pub embedder: EmbedderConfig,
    /// Seconds between periodic camera health reports.
    #[serde(default = "default_health_interval_s")]
    pub health_interval_s: f64,
    /// Cameras to analyse.
    pub cameras: Vec<CameraConfig>,
}

/// Every 10 s: fine enough for dashboards, negligible on the wire.
const fn default_health_interval_s() -> f64 {
    10.0
}

/// The detector model and its thresholds.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DetectorConfig {
    /// ONNX model made by `edge-agent model import-darknet`.
    pub model: PathBuf,
    /// Minimum objectness x class probability.
    #[serde(default = "default_score_threshold")]
    pub score_threshold: f32,
    /// IoU above which same-class boxes are suppressed.
    #[serde(default = "default_nms_iou")]
    pub nms_iou_threshold: f32,
    /// Class indices to keep (COCO: 0 = person).
    #[serde(default = "default_classes")]
    pub classes: Vec<u32>,
    /// ONNX Runtime intra-op threads (0 = ONNX Runtime's default).
    #[serde(default)]
    pub intra_threads: usize,
}

/// darknet's own demo threshold is 0.25; 0.3 trims most false positives of yolov3-tiny.
const fn default_score_threshold() -> f32 {
    0.3
}
/// darknet's NMS default.
const fn default_nms_iou() -> f32 {
    0.45
}
fn default_classes() -> Vec<u32> {
    vec![0]
}

/// The appearance embedder.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EmbedderConfig {
    /// Compute embeddings (the tracker's re-identification needs them).
    #[serde(default = "default_true")]
    pub enabled: bool,
    /// ONNX model made by `tools/mobilenetv2_to_onnx.py`.
    pub model: PathBuf,
    /// Crop height fed to the model.
    #[serde(default = "default_embed_height")]
    pub input_height: usize,
    /// Crop width fed to the model.
    #[serde(default = "default_embed_width")]
    pub input_width: usize,
    /// ONNX Runtime intra-op threads (0 = ONNX Runtime's default).
    #[serde(default)]
    pub intra_threads: usize,
}

const fn default_true() -> bool {
    true
}
/// Deep SORT's person crop size (128x64): ~10x cheaper than 224x224.
const fn default_embed_height() -> usize {
    128
}
const fn default_embed_width() -> usize {
    64
}

/// What to do when a camera's stream ends.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum OnEos {
    /// Report the camera ENDED and stop it (recorded files, test clips).
    Stop,
    /// Reconnect after a back-off (live cameras).
    Reconnect,
}

/// One camera.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CameraConfig {
    /// Stable id used as the Kafka key and in every table.
    pub id: String,
    /// Any URI GStreamer's `uridecodebin` opens: `rtsp://`, `file://`, `http://`.
    pub url: String,
    /// Analyse at most this many frames per second (0 = every frame).
    #[serde(default)]
    pub max_fps: f64,
    /// For `rtsp://`: use TCP (default) rather than UDP.
    #[serde(default = "default_true")]
    pub rtsp_tcp: bool,
    /// What to do at end of stream. Default: `reconnect` for `rtsp://`, `stop` otherwise.
    #[serde(default)]
    pub on_eos: Option<OnEos>,
    /// Seconds without a new frame (while inference is not holding the
    /// source back) after which the source counts as stalled: reported
    /// STALLED, torn down and reconnected with back-off. Default 10.
    #[serde(default = "default_stall_timeout_s")]
    pub stall_timeout_s: f64,
}

/// Long enough for an RTSP camera to connect and deliver its first frame.
pub const fn default_stall_timeout_s() -> f64 {
    10.0
}

impl CameraConfig {
    /// The effective end-of-stream policy.
    pub fn on_eos(&self) -> OnEos {
        self.on_eos.unwrap_or(if self.is_live() {
            OnEos::Reconnect
        } else {
            OnEos::Stop
        })
    }

    /// Live sources shed frames when inference lags; files wait for it.
    pub fn is_live(&self) -> bool {
        self.url.starts_with("rtsp://") || self.url.starts_with("rtsps://")
    }
}

impl EdgeConfig {
    /// Loads, resolves relative paths, applies environment overrides and validates.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let mut config: EdgeConfig = service_kit::config::load(path)?;
        let base = path.parent().unwrap_or(Path::new("."));
        config.detector.model = base.join(&config.detector.model);
        config.embedder.model = base.join(&config.embedder.model);
        config.kafka.apply_env();
        if config.onnxruntime_library.is_none() {
            config.onnxruntime_library = std::env::var_os("ORT_DYLIB_PATH").map(PathBuf::from);
        }
        config.validate()?;
        Ok(config)
    }

    /// Checks every field and reports all problems at once.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let mut p = Problems::default();
        p.check(!self.kafka.bootstrap_servers.trim().is_empty(), || {
            "kafka.bootstrap_servers is empty".into()
        });
        match &self.onnxruntime_library {
            None => p.push("onnxruntime_library is not set and ORT_DYLIB_PATH is empty".into()),
            Some(lib) => p.check(lib.is_file(), || {
                format!("onnxruntime_library {} does not exist", lib.display())
            }),
        }
        p.check(self.detector.model.is_file(), || {
            format!(
                "detector.model {} does not exist",
                self.detector.model.display()
            )
        });
        p.check((0.0..=1.0).contains(&self.detector.score_threshold), || {
            "detector.score_threshold must be in [0, 1]".into()
        });
        p.check(
            (0.0..=1.0).contains(&self.detector.nms_iou_threshold),
            || "detector.nms_iou_threshold must be in [0, 1]".into(),
        );
        p.check(!self.detector.classes.is_empty(), || {
            "detector.classes is empty".into()
        });
        if self.embedder.enabled {
            p.check(self.embedder.model.is_file(), || {
                format!(
                    "embedder.model {} does not exist",
                    self.embedder.model.display()
                )
            });
            p.check(
                self.embedder.input_height >= 16 && self.embedder.input_width >= 16,
                || "embedder.input_height and input_width must be at least 16".into(),
            );
        }
        p.check(self.health_interval_s > 0.0, || {
            "health_interval_s must be positive".into()
        });
        p.check(!self.cameras.is_empty(), || {
            "no [[cameras]] configured".into()
        });
        let mut seen = std::collections::HashSet::new();
        for camera in &self.cameras {
            p.check(!camera.id.is_empty(), || "a camera has an empty id".into());
            p.check(seen.insert(camera.id.as_str()), || {
                format!("camera id {:?} is used twice", camera.id)
            });
            p.check(camera.url.contains("://"), || {
                format!("camera {:?}: url {:?} is not a URI", camera.id, camera.url)
            });
            p.check(
                camera.stall_timeout_s > 0.0 && camera.stall_timeout_s <= 86_400.0,
                || {
                    format!(
                        "camera {:?}: stall_timeout_s must be > 0 and at most a day",
                        camera.id
                    )
                },
            );
            p.check(camera.max_fps >= 0.0 && camera.max_fps.is_finite(), || {
                format!("camera {:?}: max_fps must be >= 0", camera.id)
            });
        }
        p.finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_problem_is_listed() {
        let text = r#"
            onnxruntime_library = "/nonexistent/libonnxruntime.so"
            [kafka]
            bootstrap_servers = ""
            [detector]
            model = "/nonexistent/det.onnx"
            score_threshold = 1.5
            [embedder]
            model = "/nonexistent/emb.onnx"
            [[cameras]]
            id = "a"
            url = "rtsp://127.0.0.1:1/a"
            [[cameras]]
            id = "a"
            url = "nonsense"
        "#;
        let config: EdgeConfig = toml::from_str(text).unwrap();
        let err = config.validate().unwrap_err().to_string();
        for needle in [
            "bootstrap_servers is empty",
            "libonnxruntime.so does not exist",
            "det.onnx does not exist",
            "score_threshold must be in [0, 1]",
            "emb.onnx does not exist",
            "\"a\" is used twice",
            "\"nonsense\" is not a URI",
        ] {
            assert!(err.contains(needle), "missing {needle:?} in:\n{err}");
        }
    }

    #[test]
    fn the_deploy_example_parses_with_every_key() {
        let text = include_str!("../../deploy/config/edge-agent.toml");
        let config: EdgeConfig = toml::from_str(text).unwrap();
        assert_eq!(config.cameras.len(), 2);
        assert_eq!(config.cameras[1].on_eos(), OnEos::Reconnect);
        assert_eq!(
            (config.embedder.input_height, config.embedder.input_width),
            (128, 64)
        );
    }

    #[test]
    fn eos_policy_follows_the_source_kind() {
        let cam = |url: &str| CameraConfig {
            id: "c".into(),
            url: url.into(),
            max_fps: 0.0,
            stall_timeout_s: default_stall_timeout_s(),
            rtsp_tcp: true,
            on_eos: None,
        };
        assert_eq!(cam("rtsp://h/x").on_eos(), OnEos::Reconnect);
        assert!(cam("rtsp://h/x").is_live());
        assert_eq!(cam("file:///v.avi").on_eos(), OnEos::Stop);
    }
}
