//! The edge agent's TOML configuration.
//!
//! Relative model paths are resolved against the config file's directory.
//! `ARGUS_KAFKA_BOOTSTRAP_SERVERS` overrides `kafka.bootstrap_servers` and
//! `ORT_DYLIB_PATH` supplies `onnxruntime_library` when it is not set.

use std::path::{Path, PathBuf};

use serde::Deserialize;
use service_kit::config::{ConfigError, Problems};
use service_kit::kafka::KafkaSettings;
use vision::roi::{Anchor, Polygon, RegionFilter};

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
    /// Regions of interest: polygons, each a list of `[x, y]` points in
    /// source-frame pixels. When any is given, only people whose anchor lies
    /// inside one of them are kept. Default: none (the whole frame).
    #[serde(default)]
    pub roi: Vec<Vec<[f32; 2]>>,
    /// Exclusion masks (posters, screens, mirrors, reflective windows):
    /// polygons like `roi`; people whose anchor lies inside one are dropped,
    /// also where an ROI covers them. Default: none.
    #[serde(default)]
    pub exclude: Vec<Vec<[f32; 2]>>,
    /// The point of a person's box tested against `roi` and `exclude`.
    #[serde(default)]
    pub mask_anchor: MaskAnchor,
}

/// The point of a box tested against a camera's polygons.
#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum MaskAnchor {
    /// Middle of the bottom edge: the feet of a standing person.
    #[default]
    BottomCentre,
    /// Centre of the box.
    Centre,
}

impl From<MaskAnchor> for Anchor {
    fn from(anchor: MaskAnchor) -> Self {
        match anchor {
            MaskAnchor::BottomCentre => Anchor::BottomCentre,
            MaskAnchor::Centre => Anchor::Centre,
        }
    }
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

    /// The camera's ROI and exclusion masks; every bad polygon is listed,
    /// named by camera, key and index.
    pub fn region_filter(&self) -> Result<RegionFilter, Vec<String>> {
        let mut problems = Vec::new();
        let mut polygons = |key: &str, list: &[Vec<[f32; 2]>]| -> Vec<Polygon> {
            list.iter()
                .enumerate()
                .filter_map(|(index, points)| {
                    Polygon::new(points.clone())
                        .map_err(|e| {
                            problems
                                .push(format!("camera {:?}: {key} polygon {index}: {e}", self.id));
                        })
                        .ok()
                })
                .collect()
        };
        let include = polygons("roi", &self.roi);
        let exclude = polygons("exclude", &self.exclude);
        if problems.is_empty() {
            Ok(RegionFilter {
                include,
                exclude,
                anchor: self.mask_anchor.into(),
            })
        } else {
            Err(problems)
        }
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
            if let Err(problems) = camera.region_filter() {
                problems.into_iter().for_each(|problem| p.push(problem));
            }
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
        let masked = config.cameras[0].region_filter().unwrap();
        assert_eq!((masked.include.len(), masked.exclude.len()), (1, 2));
        assert_eq!(masked.anchor, Anchor::BottomCentre);
        assert!(config.cameras[1].region_filter().unwrap().is_empty());
    }

    const VALID_HEAD: &str = r#"
        onnxruntime_library = "/nonexistent/libonnxruntime.so"
        [kafka]
        bootstrap_servers = "localhost:9092"
        [detector]
        model = "/nonexistent/det.onnx"
        [embedder]
        enabled = false
        model = "/nonexistent/emb.onnx"
    "#;

    #[test]
    fn masks_parse_from_integer_pixels_into_a_region_filter() {
        let text = format!(
            r#"{VALID_HEAD}
            [[cameras]]
            id = "east"
            url = "rtsp://127.0.0.1:1/east"
            roi = [[[0, 200], [768, 200], [768, 576], [0, 576]]]
            exclude = [[[600, 0], [768, 0], [768, 150.5], [600, 150.5]], [[10, 300], [60, 300], [35, 350]]]
            mask_anchor = "centre"
            "#
        );
        let config: EdgeConfig = toml::from_str(&text).unwrap();
        let camera = &config.cameras[0];
        assert_eq!(camera.roi[0][1], [768.0, 200.0]);
        assert_eq!(camera.exclude[0][2], [768.0, 150.5]);
        assert_eq!(camera.mask_anchor, MaskAnchor::Centre);
        let filter = camera.region_filter().unwrap();
        assert_eq!((filter.include.len(), filter.exclude.len()), (1, 2));
        assert_eq!(filter.anchor, Anchor::Centre);
        let centred_at = |x: f32, y: f32| vision::bbox::BBox::from_center(x, y, 20.0, 40.0);
        assert!(filter.keeps(&centred_at(300.0, 400.0)));
        assert!(!filter.keeps(&centred_at(300.0, 100.0)), "outside the ROI");
        assert!(!filter.keeps(&centred_at(35.0, 310.0)), "in the triangle");
    }

    #[test]
    fn no_masks_by_default_and_unknown_anchors_are_refused() {
        let text = format!(
            r#"{VALID_HEAD}
            [[cameras]]
            id = "a"
            url = "rtsp://127.0.0.1:1/a"
            "#
        );
        let config: EdgeConfig = toml::from_str(&text).unwrap();
        assert_eq!(config.cameras[0].mask_anchor, MaskAnchor::BottomCentre);
        assert!(config.cameras[0].region_filter().unwrap().is_empty());
        for bad in [
            r#"mask_anchor = "feet""#,
            r#"roi = [[[0, 0], [1, 0], [1]]]"#,
            r#"masks = []"#,
        ] {
            let text = format!(
                r#"{VALID_HEAD}
                [[cameras]]
                id = "a"
                url = "rtsp://127.0.0.1:1/a"
                {bad}
                "#
            );
            assert!(toml::from_str::<EdgeConfig>(&text).is_err(), "{bad}");
        }
    }

    #[test]
    fn every_bad_polygon_is_listed_with_its_camera_and_index() {
        let text = format!(
            r#"{VALID_HEAD}
            [[cameras]]
            id = "east"
            url = "rtsp://127.0.0.1:1/east"
            roi = [[[0, 0], [10, 0], [10, 10]], [[0, 0], [10, 0]]]
            exclude = [[[0, 0], [5, 5], [10, 10], [20, 20]]]
            [[cameras]]
            id = "west"
            url = "rtsp://127.0.0.1:1/west"
            max_fps = -1.0
            exclude = [[[0, 0], [10, 0], [10, 10]], [[0, 0], [10, 0], [10, 10]], []]
            "#
        );
        let config: EdgeConfig = toml::from_str(&text).unwrap();
        let err = config.validate().unwrap_err().to_string();
        for needle in [
            "camera \"east\": roi polygon 1: a polygon needs at least 3 points, got 2",
            "camera \"east\": exclude polygon 0: the polygon encloses no area",
            "camera \"west\": exclude polygon 2: a polygon needs at least 3 points, got 0",
            "camera \"west\": max_fps must be >= 0",
            "det.onnx does not exist",
        ] {
            assert!(err.contains(needle), "missing {needle:?} in:\n{err}");
        }
        for absent in ["roi polygon 0", "exclude polygon 1", "\"west\": roi"] {
            assert!(!err.contains(absent), "{absent:?} is fine, in:\n{err}");
        }
        assert_eq!(
            config.cameras[1].region_filter().unwrap_err(),
            vec!["camera \"west\": exclude polygon 2: a polygon needs at least 3 points, got 0"]
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
            roi: Vec::new(),
            exclude: Vec::new(),
            mask_anchor: MaskAnchor::default(),
        };
        assert_eq!(cam("rtsp://h/x").on_eos(), OnEos::Reconnect);
        assert!(cam("rtsp://h/x").is_live());
        assert_eq!(cam("file:///v.avi").on_eos(), OnEos::Stop);
    }
}
