//! The edge agent's TOML configuration.
//!
//! Relative model and spool paths are resolved against the config file's
//! directory, also when an environment variable sets them.
//!
//! # Environment overrides
//!
//! Any setting of the file can be overridden by an environment variable
//! `ARGUS_EDGE__<TABLE>__<KEY>`: the segments between double underscores
//! are keys, matched lower-cased, so
//! `ARGUS_EDGE__DETECTOR__SCORE_THRESHOLD=0.4` sets
//! `detector.score_threshold`, `ARGUS_EDGE__HEALTH_INTERVAL_S=5` a top-level
//! key and `ARGUS_EDGE__METRICS__LISTEN=0.0.0.0:9100` `metrics.listen`
//! (creating `[metrics]` if the file has none). A camera is named by its
//! `id`, ignoring case: `ARGUS_EDGE__CAMERAS__ENTRANCE__URL` sets the `url`
//! of the camera whose id is `entrance`. Only ids of ASCII letters, digits
//! and single underscores can be named (`lobby-1` cannot), and variables
//! never add cameras.
//!
//! A value is read as a TOML value when it is one (`0.4`, `true`,
//! `[0, 2]`, `"0.4"` as a string), else as the text itself (`host:9092`,
//! `/models/x.onnx`, `on-roll`); a number or boolean given to a text setting
//! is taken as its text. The variables change the parsed file before it is
//! checked, so every check covers them. A variable that names no setting, or
//! whose value does not fit, is reported by name with the file's other
//! problems; values are never printed (they may be passwords).
//! `check-config` lists the variables applied. The mechanism is
//! [`service_kit::config::overrides`].
//!
//! Two older variables still work, below the `ARGUS_EDGE__` ones:
//! `ARGUS_KAFKA_BOOTSTRAP_SERVERS` (when not empty) overrides
//! `kafka.bootstrap_servers` unless `ARGUS_EDGE__KAFKA__BOOTSTRAP_SERVERS`
//! is set, and `ORT_DYLIB_PATH` supplies `onnxruntime_library` when neither
//! the file nor `ARGUS_EDGE__ONNXRUNTIME_LIBRARY` sets it.

use std::fmt;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use service_kit::config::overrides::{self, Applied, Loaded};
use service_kit::config::{ConfigError, Problems};
use service_kit::kafka::{BOOTSTRAP_ENV, Compression, KafkaSettings, ProducerTuning};
use vision::roi::{Anchor, Polygon, RegionFilter};

use crate::source::kind::{self, Credentials, Source, SourceKind};

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
    /// The on-disk spool every outgoing message passes through.
    #[serde(default)]
    pub spool: SpoolSettings,
    /// Kafka producer tuning, delivery retries and the shutdown flush.
    #[serde(default)]
    pub egress: EgressConfig,
    /// Cameras to analyse.
    pub cameras: Vec<CameraConfig>,
    /// The Prometheus `/metrics` and `/healthz` endpoint. Default: none
    /// (not served).
    #[serde(default)]
    pub metrics: Option<MetricsConfig>,
    /// JPEG crops of the people found, sent with their detections. Default:
    /// off (no pixels leave the edge).
    #[serde(default)]
    pub crops: CropsConfig,
}

/// JPEG crops of each person box, with the face region blurred, carried in
/// `Detection.crop_jpeg`. Off by default: only boxes and embeddings leave
/// the edge unless the operator asks for pixels.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct CropsConfig {
    /// Send crops.
    #[serde(default)]
    pub enabled: bool,
    /// JPEG quality, 1 to 100.
    #[serde(default = "default_crop_quality")]
    pub quality: u8,
    /// Crops taller than this are scaled down to it (aspect kept), in pixels.
    #[serde(default = "default_crop_max_height")]
    pub max_height_px: usize,
    /// Fraction of the box's height, from its top, that is blurred (the
    /// face of a standing person); 0 sends the crop unblurred.
    #[serde(default = "default_face_blur")]
    pub face_blur: f32,
    /// Radius of the blur in crop pixels (after scaling).
    #[serde(default = "default_blur_radius")]
    pub blur_radius_px: usize,
}

impl Default for CropsConfig {
    fn default() -> Self {
        CropsConfig {
            enabled: false,
            quality: default_crop_quality(),
            max_height_px: default_crop_max_height(),
            face_blur: default_face_blur(),
            blur_radius_px: default_blur_radius(),
        }
    }
}

const fn default_crop_quality() -> u8 {
    75
}
/// Enough to recognise clothing and posture; about 3 to 5 kB per person.
const fn default_crop_max_height() -> usize {
    128
}
/// A standing person's head and shoulders.
const fn default_face_blur() -> f32 {
    0.3
}
/// Three passes of a 13-pixel box on a 128-pixel crop: features are gone.
const fn default_blur_radius() -> usize {
    6
}

/// The Prometheus endpoint: `GET /metrics` and `GET /healthz`.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct MetricsConfig {
    /// Address to listen on, `host:port` (port 0: any free port).
    pub listen: String,
    /// `/healthz` answers 503 once every camera that has not ended has been
    /// out of UP (down, stalled, reconnecting) for this many seconds, or
    /// Kafka deliveries have been failing for this long; 200 otherwise.
    #[serde(default = "default_unhealthy_after_s")]
    pub unhealthy_after_s: f64,
}

impl MetricsConfig {
    /// How long cameras or deliveries may fail before `/healthz` says 503.
    pub fn unhealthy_after(&self) -> std::time::Duration {
        seconds(self.unhealthy_after_s, default_unhealthy_after_s())
    }
}

/// A minute: longer than a camera's reconnect back-off and Kafka's
/// delivery timeout (30 s), so one hiccup does not page anyone.
const fn default_unhealthy_after_s() -> f64 {
    60.0
}

/// Every 10 s: fine enough for dashboards, negligible on the wire.
const fn default_health_interval_s() -> f64 {
    10.0
}

/// The durable spool between the agent and Kafka: every detection and
/// health report is written here first and deleted once Kafka has it, so
/// a broker outage or a restart loses nothing while the spool has room.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct SpoolSettings {
    /// Directory of the spool, created if missing; one agent per directory.
    /// A relative path is resolved against the config file's directory (or
    /// the working directory for a config built in code). Default: `spool`
    /// next to the config file.
    #[serde(default = "default_spool_dir")]
    pub dir: PathBuf,
    /// Most disk space the spool takes, in MiB. When it is full the oldest
    /// records are dropped, counted and logged as lost. Size it for the
    /// longest outage to ride out: MiB/s of detections x seconds.
    #[serde(default = "default_spool_max_mb")]
    pub max_mb: u64,
    /// Size of one spool file in MiB (1 to 1024, at most half of `max_mb`):
    /// disk space is freed, and the oldest records dropped when full, one
    /// whole file at a time.
    #[serde(default = "default_spool_segment_mb")]
    pub segment_mb: u64,
    /// When spooled records are forced to disk (fsync): `on-roll` (when a
    /// file is full and at shutdown; a power cut can take up to one file of
    /// the newest records), `always` (after every record; nothing is lost on
    /// a power cut, but slow on SD cards) or `never` (survives crashes of the
    /// agent, not of the machine; for tmpfs). A crash of the agent alone
    /// loses nothing under any of them.
    #[serde(default)]
    pub fsync: SpoolFsync,
    /// Milliseconds, at most, between writes of the spool's record of what
    /// Kafka has confirmed while confirmations come in (0 to 3600000; 0 =
    /// only when a spool file is freed and at shutdown). After a crash of
    /// the agent, messages confirmed since the last write are sent again:
    /// at most this long's worth (about one spool file with 0). Each write is
    /// one small file; it is fsynced only with `fsync = "always"`.
    #[serde(default = "default_spool_cursor_persist_interval_ms")]
    pub cursor_persist_interval_ms: u64,
}

/// Next to the config file, where an operator looks first.
fn default_spool_dir() -> PathBuf {
    PathBuf::from("spool")
}
/// 1 GiB: about 17 minutes at 1 MiB/s (20 cameras at 5 fps with 10 KB per
/// frame), hours at typical rates.
const fn default_spool_max_mb() -> u64 {
    1024
}
/// The spool crate's default: frees space in steps of under 1% of `max_mb`.
const fn default_spool_segment_mb() -> u64 {
    8
}

/// The spool crate's default (1 s): a crash resends about a second of
/// confirmed messages, for one small file write a second.
const fn default_spool_cursor_persist_interval_ms() -> u64 {
    spool::DEFAULT_CURSOR_PERSIST_INTERVAL.as_millis() as u64
}

impl Default for SpoolSettings {
    fn default() -> Self {
        SpoolSettings {
            dir: default_spool_dir(),
            max_mb: default_spool_max_mb(),
            segment_mb: default_spool_segment_mb(),
            fsync: SpoolFsync::default(),
            cursor_persist_interval_ms: default_spool_cursor_persist_interval_ms(),
        }
    }
}

impl SpoolSettings {
    /// The spool crate's configuration (sizes in bytes).
    pub fn spool_config(&self) -> spool::SpoolConfig {
        spool::SpoolConfig {
            max_bytes: self.max_mb.saturating_mul(MIB),
            segment_bytes: self.segment_mb.saturating_mul(MIB),
            fsync: match self.fsync {
                SpoolFsync::Always => spool::FsyncPolicy::Always,
                SpoolFsync::OnRoll => spool::FsyncPolicy::OnRoll,
                SpoolFsync::Never => spool::FsyncPolicy::Never,
            },
            cursor_persist_interval: std::time::Duration::from_millis(
                self.cursor_persist_interval_ms,
            ),
        }
    }
}

const MIB: u64 = 1024 * 1024;

/// When spooled records are forced to disk.
#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum SpoolFsync {
    /// After every record.
    Always,
    /// When a spool file is full, and at shutdown.
    #[default]
    OnRoll,
    /// Only at shutdown.
    Never,
}

/// The Kafka producer and its retries. `acks = all` and idempotence are
/// always on (not settable here): Kafka then holds a message on every
/// in-sync replica before the spool lets go of it, and librdkafka's own
/// retries neither duplicate nor reorder a camera's messages.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct EgressConfig {
    /// Batch compression: `lz4` (default), `zstd`, `snappy`, `gzip` or
    /// `none`.
    #[serde(default)]
    pub compression: Compression,
    /// Milliseconds a batch waits to fill before it is sent (`linger.ms`).
    #[serde(default = "default_linger_ms")]
    pub linger_ms: u32,
    /// Largest batch in bytes (`batch.size`).
    #[serde(default = "default_batch_size")]
    pub batch_size: u32,
    /// Seconds Kafka has to acknowledge a message (`message.timeout.ms`).
    /// Past it the attempt counts as failed: the agent keeps the message in
    /// the spool, waits, and sends it again, in order, with everything
    /// spooled after it.
    #[serde(default = "default_delivery_timeout_s")]
    pub delivery_timeout_s: f64,
    /// Seconds a stopping agent keeps sending what is still in the spool.
    /// Whatever Kafka has not acknowledged by then stays in the spool and is
    /// sent first at the next start.
    #[serde(default = "default_shutdown_timeout_s")]
    pub shutdown_timeout_s: f64,
}

/// A few frames of every camera per batch at 5 fps.
const fn default_linger_ms() -> u32 {
    20
}
/// librdkafka's default.
const fn default_batch_size() -> u32 {
    1_000_000
}
/// Rides out a leader election or a broker restart without a retry from the
/// spool, yet notices a dead broker in half a minute.
const fn default_delivery_timeout_s() -> f64 {
    30.0
}
/// What the agent used to wait for Kafka's flush.
const fn default_shutdown_timeout_s() -> f64 {
    30.0
}

impl Default for EgressConfig {
    fn default() -> Self {
        EgressConfig {
            compression: Compression::default(),
            linger_ms: default_linger_ms(),
            batch_size: default_batch_size(),
            delivery_timeout_s: default_delivery_timeout_s(),
            shutdown_timeout_s: default_shutdown_timeout_s(),
        }
    }
}

impl EgressConfig {
    /// The producer settings (out-of-range values fall back to the
    /// defaults; [`EdgeConfig::validate`] reports them).
    pub fn producer_tuning(&self) -> ProducerTuning {
        ProducerTuning {
            compression: self.compression,
            linger: std::time::Duration::from_millis(u64::from(self.linger_ms)),
            batch_size: self.batch_size,
            delivery_timeout: seconds(self.delivery_timeout_s, default_delivery_timeout_s()),
        }
    }

    /// How long a stop waits for Kafka.
    pub fn shutdown_timeout(&self) -> std::time::Duration {
        seconds(self.shutdown_timeout_s, default_shutdown_timeout_s())
    }
}

/// `value` seconds, or `default` seconds when `value` is negative, NaN or
/// too large for a duration.
fn seconds(value: f64, default: f64) -> std::time::Duration {
    std::time::Duration::try_from_secs_f64(value)
        .unwrap_or_else(|_| std::time::Duration::from_secs_f64(default))
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
    /// ONNX Runtime intra-op threads (0 = ONNX Runtime's default, every
    /// core). When this and (with the embedder on) the embedder's are above
    /// 0 and below the core count, batches are letterboxed one ahead on a
    /// thread of their own
    /// ([`crate::pipeline::Preparation`]); else in turn.
    #[serde(default)]
    pub intra_threads: usize,
    /// Most frames, each of a different camera, analysed in one detector
    /// call (1 to 64; 1 = one frame at a time).
    #[serde(default = "default_max_batch")]
    pub max_batch: usize,
    /// Milliseconds a batch waits, after its first frame, for frames of
    /// other live cameras (0 to 1000); a batch goes at once when full or when
    /// every live camera is in it. A camera is live while it delivered a
    /// frame within the last 10 timeouts, at least 1 s
    /// ([`live_window`](crate::batch::live_window)), so a dead camera stops
    /// delaying batches that long after its last frame.
    #[serde(default = "default_batch_timeout_ms")]
    pub batch_timeout_ms: u64,
}

/// Four cameras per call: one call serves several cameras (on this
/// project's 2-core CPU it saves no time per frame, see the README's
/// throughput figures; it pays on accelerators), and 4 letterboxed 416x416
/// inputs take 8 MiB.
const fn default_max_batch() -> usize {
    4
}
/// 20 ms: a fifth of a frame interval at 10 fps, so batching adds little
/// latency when cameras are out of step.
const fn default_batch_timeout_ms() -> u64 {
    20
}

impl DetectorConfig {
    /// How the inference thread forms batches.
    pub fn batch_policy(&self) -> crate::batch::BatchPolicy {
        crate::batch::BatchPolicy::new(
            self.max_batch.max(1),
            std::time::Duration::from_millis(self.batch_timeout_ms),
        )
    }
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
    /// ONNX model: `mobilenetv2-embedder-128.onnx` (128-d, made by
    /// `tools/fit_embedding_projection.py`) or `mobilenetv2-embedder.onnx`
    /// (1280-d, `tools/mobilenetv2_to_onnx.py`); any model with input
    /// `images` [N, 3, H, W] and one [N, D] output.
    pub model: PathBuf,
    /// Crop height fed to the model.
    #[serde(default = "default_embed_height")]
    pub input_height: usize,
    /// Crop width fed to the model.
    #[serde(default = "default_embed_width")]
    pub input_width: usize,
    /// ONNX Runtime intra-op threads (0 = ONNX Runtime's default, every
    /// core; see the detector's `intra_threads`).
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
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CameraConfig {
    /// Stable id used as the Kafka key and in every table.
    pub id: String,
    /// The source: `rtsp://[user:pass@]host/path` (also `rtsps://`),
    /// `http(s)://…`, `file:///path`, `v4l2:///dev/videoN` (or `/dev/videoN`;
    /// `?width=1280&height=720&fps=15` sets its capture, else the largest
    /// size up to 1280x720), or a live test pattern `test://` /
    /// `testsrc://?pattern=ball&width=640&height=480&fps=10`.
    pub url: String,
    /// Analyse at most this many frames per second of video, fractions
    /// allowed (0.5 = one frame every 2 s); 0 = every frame. The frames in
    /// between are decoded and counted as skipped.
    #[serde(default)]
    pub max_fps: f64,
    /// For `rtsp://`: use TCP (default) rather than UDP.
    #[serde(default = "default_true")]
    pub rtsp_tcp: bool,
    /// User name for `rtsp://` and `http(s)://` (instead of `user:pass@` in
    /// the url). Default: none.
    #[serde(default)]
    pub username: Option<String>,
    /// Password for `username`. Prefer `password_env`. Default: none.
    #[serde(default)]
    pub password: Option<Secret>,
    /// Name of an environment variable holding the password for
    /// `username`. Default: none.
    #[serde(default)]
    pub password_env: Option<String>,
    /// For `file://`: at its end, seek back to the start and play it again,
    /// forever (each time counted in `loops`). Default false.
    #[serde(default, rename = "loop")]
    pub loop_file: bool,
    /// What to do at end of stream. Default: `stop` for `file://`,
    /// `reconnect` for the live sources (all others).
    #[serde(default)]
    pub on_eos: Option<OnEos>,
    /// Seconds without a new frame (while inference is not holding the
    /// source back) after which the source counts as stalled: reported
    /// STALLED, torn down and reconnected with back-off. Default 10.
    #[serde(default = "default_stall_timeout_s")]
    pub stall_timeout_s: f64,
    /// Longest wait between reconnect attempts, seconds: waits start at
    /// 0.25-0.5 s and double up to this (equal jitter: each is between half
    /// its ceiling and its ceiling). Default 30.
    #[serde(default = "default_reconnect_max_s")]
    pub reconnect_max_s: f64,
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

/// Never printed: `Debug` shows the url without userinfo and no password.
impl fmt::Debug for CameraConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CameraConfig")
            .field("id", &self.id)
            .field("url", &kind::redact(&self.url))
            .field("max_fps", &self.max_fps)
            .field("rtsp_tcp", &self.rtsp_tcp)
            .field("username", &self.username)
            .field("password", &self.password)
            .field("password_env", &self.password_env)
            .field("loop_file", &self.loop_file)
            .field("on_eos", &self.on_eos)
            .field("stall_timeout_s", &self.stall_timeout_s)
            .field("reconnect_max_s", &self.reconnect_max_s)
            .field("roi", &self.roi)
            .field("exclude", &self.exclude)
            .field("mask_anchor", &self.mask_anchor)
            .finish()
    }
}

/// A secret from the config file; `Debug` prints `***`.
#[derive(Clone, Deserialize, PartialEq, Eq)]
#[serde(transparent)]
pub struct Secret(pub String);

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
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

/// A camera that is out for a while is tried twice a minute: quick enough to
/// notice its return, rare enough to stay out of a struggling NVR's way.
pub const fn default_reconnect_max_s() -> f64 {
    30.0
}

/// `max_fps` bounds when not 0: one frame per 100 s up to 1000 a second.
const MAX_FPS_RANGE: std::ops::RangeInclusive<f64> = 0.01..=1000.0;

impl CameraConfig {
    /// A camera with every optional key at its default.
    pub fn new(id: impl Into<String>, url: impl Into<String>) -> Self {
        CameraConfig {
            id: id.into(),
            url: url.into(),
            max_fps: 0.0,
            rtsp_tcp: default_true(),
            username: None,
            password: None,
            password_env: None,
            loop_file: false,
            on_eos: None,
            stall_timeout_s: default_stall_timeout_s(),
            reconnect_max_s: default_reconnect_max_s(),
            roi: Vec::new(),
            exclude: Vec::new(),
            mask_anchor: MaskAnchor::default(),
        }
    }

    /// The effective end-of-stream policy.
    pub fn on_eos(&self) -> OnEos {
        self.on_eos.unwrap_or(if self.is_live() {
            OnEos::Reconnect
        } else {
            OnEos::Stop
        })
    }

    /// Live sources (everything but files) shed frames when inference lags;
    /// files wait for it.
    pub fn is_live(&self) -> bool {
        kind::parse_url(&self.url).is_ok_and(|(kind, _)| kind.is_live())
    }

    /// What the camera's url names and the credentials to open it with:
    /// from the url's userinfo or from `username` with `password` or
    /// `password_env` (read now). Every problem is listed, named by camera;
    /// none repeats a secret.
    pub fn source(&self) -> Result<Source, Vec<String>> {
        let named = |problem: String| format!("camera {:?}: {problem}", self.id);
        let (kind, from_url) = kind::parse_url(&self.url).map_err(|e| vec![named(e)])?;
        let mut problems = Vec::new();
        let password = match (&self.password, &self.password_env) {
            (Some(_), Some(_)) => {
                problems.push(named("password and password_env exclude each other".into()));
                None
            }
            (Some(password), None) => Some(password.0.clone()),
            (None, Some(var)) => match std::env::var(var) {
                Ok(password) => Some(password),
                Err(_) => {
                    problems.push(named(format!(
                        "password_env names {var:?}, which is not set (or not UTF-8)"
                    )));
                    None
                }
            },
            (None, None) => None,
        };
        let from_keys = match &self.username {
            Some(user) => Some(Credentials {
                user: user.clone(),
                password: password.unwrap_or_default(),
            }),
            None => {
                if self.password.is_some() || self.password_env.is_some() {
                    problems.push(named("password without username".into()));
                }
                None
            }
        };
        if from_url.is_some() && from_keys.is_some() {
            problems.push(named(
                "credentials are given both in the url and as username; keep one".into(),
            ));
        }
        let credentials = from_url.or(from_keys);
        if credentials.is_some() && !kind.takes_credentials() {
            problems.push(named(
                "credentials apply to rtsp://, rtsps://, http:// and https:// only".into(),
            ));
        }
        if problems.is_empty() {
            Ok(Source { kind, credentials })
        } else {
            Err(problems)
        }
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

/// Prefix of the environment variables that override settings of the file:
/// `ARGUS_EDGE__DETECTOR__SCORE_THRESHOLD` sets `detector.score_threshold`.
pub const ENV_PREFIX: &str = "ARGUS_EDGE";

/// Supplies `onnxruntime_library` when neither the file nor an override sets it.
pub const ORT_LIBRARY_ENV: &str = "ORT_DYLIB_PATH";

/// A configuration and the environment variables that changed it.
#[derive(Debug)]
pub struct LoadedConfig {
    /// The configuration, validated.
    pub config: EdgeConfig,
    /// Every variable that set a setting, in the order applied; names only.
    pub overrides: Vec<Applied>,
}

impl EdgeConfig {
    /// Loads `path` with the process environment's overrides, resolves
    /// relative paths and validates (see [`EdgeConfig::load_with_env`]).
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        Self::load_with_env(path, overrides::process_env()).map(|loaded| loaded.config)
    }

    /// Loads `path`, applies the overrides found in `env` (`(name, value)`
    /// pairs; see the module docs), resolves relative paths against the
    /// file's directory and validates. Bad overrides are reported with the
    /// file's other problems, all at once.
    pub fn load_with_env(
        path: &Path,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<LoadedConfig, ConfigError> {
        let env: Vec<(String, String)> = env.into_iter().collect();
        let lookup = |name: &str| {
            env.iter()
                .find(|(var, _)| var == name)
                .map(|(_, value)| value.clone())
        };
        let Loaded {
            mut config,
            applied: mut overrides,
            problems,
        } = overrides::load_with_env::<EdgeConfig>(path, ENV_PREFIX, env.iter().cloned())?;
        let base = path.parent().unwrap_or(Path::new("."));
        config.detector.model = base.join(&config.detector.model);
        config.embedder.model = base.join(&config.embedder.model);
        config.spool.dir = base.join(&config.spool.dir);
        let mut fallback = |key: &str, var: &str| {
            let overridden = overrides.iter().any(|applied| applied.key == key);
            let value = lookup(var).filter(|value| !overridden && !value.trim().is_empty());
            if value.is_some() {
                overrides.push(Applied {
                    var: var.into(),
                    key: key.into(),
                });
            }
            value
        };
        if let Some(servers) = fallback("kafka.bootstrap_servers", BOOTSTRAP_ENV) {
            config.kafka.bootstrap_servers = servers;
        }
        if config.onnxruntime_library.is_none()
            && let Some(library) = fallback("onnxruntime_library", ORT_LIBRARY_ENV)
        {
            config.onnxruntime_library = Some(PathBuf::from(library));
        }
        let mut p = Problems::default();
        p.extend(problems);
        match config.validate() {
            Ok(()) => {}
            Err(ConfigError::Invalid(found)) => p.extend(found),
            Err(other) => return Err(other),
        }
        p.finish()?;
        Ok(LoadedConfig { config, overrides })
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
        p.check((1..=64).contains(&self.detector.max_batch), || {
            "detector.max_batch must be in [1, 64]".into()
        });
        p.check(self.detector.batch_timeout_ms <= 1000, || {
            "detector.batch_timeout_ms must be in [0, 1000]".into()
        });
        if let Some(metrics) = &self.metrics {
            p.check(
                metrics.listen.parse::<std::net::SocketAddr>().is_ok(),
                || {
                    format!(
                        "metrics.listen {:?} is not an address like 127.0.0.1:9464",
                        metrics.listen
                    )
                },
            );
            p.check(
                metrics.unhealthy_after_s > 0.0 && metrics.unhealthy_after_s <= 86_400.0,
                || "metrics.unhealthy_after_s must be > 0 and at most a day".into(),
            );
        }
        let crops = &self.crops;
        p.check((1..=100).contains(&crops.quality), || {
            format!("crops.quality = {} must be in [1, 100]", crops.quality)
        });
        p.check((16..=2048).contains(&crops.max_height_px), || {
            format!(
                "crops.max_height_px = {} must be in [16, 2048]",
                crops.max_height_px
            )
        });
        p.check((0.0..=1.0).contains(&crops.face_blur), || {
            format!("crops.face_blur = {} must be in [0, 1]", crops.face_blur)
        });
        p.check(crops.blur_radius_px <= 64, || {
            format!(
                "crops.blur_radius_px = {} must be at most 64",
                crops.blur_radius_px
            )
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
        let spool = &self.spool;
        p.check(!spool.dir.as_os_str().is_empty(), || {
            "spool.dir is empty".into()
        });
        p.check((1..=1024).contains(&spool.segment_mb), || {
            format!(
                "spool.segment_mb = {} must be in [1, 1024]",
                spool.segment_mb
            )
        });
        p.check(spool.max_mb >= 2 * spool.segment_mb, || {
            format!(
                "spool.max_mb = {} must be at least twice spool.segment_mb = {}",
                spool.max_mb, spool.segment_mb
            )
        });
        p.check(spool.cursor_persist_interval_ms <= 3_600_000, || {
            format!(
                "spool.cursor_persist_interval_ms = {} must be in [0, 3600000] (an hour)",
                spool.cursor_persist_interval_ms
            )
        });
        let egress = &self.egress;
        p.check(egress.linger_ms <= 900_000, || {
            "egress.linger_ms must be at most 900000 (15 minutes)".into()
        });
        p.check(
            egress.batch_size >= 1 && egress.batch_size <= i32::MAX as u32,
            || "egress.batch_size must be in [1, 2147483647]".into(),
        );
        p.check(
            (1.0..=86_400.0).contains(&egress.delivery_timeout_s)
                && egress.delivery_timeout_s * 1000.0 > f64::from(egress.linger_ms),
            || {
                "egress.delivery_timeout_s must be in [1, 86400] seconds and longer than linger_ms"
                    .into()
            },
        );
        p.check((0.0..=3_600.0).contains(&egress.shutdown_timeout_s), || {
            "egress.shutdown_timeout_s must be in [0, 3600]".into()
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
            match camera.source() {
                Ok(Source {
                    kind: SourceKind::File { uri },
                    ..
                }) => {
                    let path = kind::file_path(&uri).unwrap_or_default();
                    p.check(Path::new(&path).is_file(), || {
                        format!("camera {:?}: file {path:?} does not exist", camera.id)
                    });
                }
                Ok(_) => p.check(!camera.loop_file, || {
                    format!("camera {:?}: loop applies to file:// urls only", camera.id)
                }),
                Err(problems) => problems.into_iter().for_each(|problem| p.push(problem)),
            }
            p.check(!(camera.loop_file && camera.on_eos.is_some()), || {
                format!(
                    "camera {:?}: loop = true replaces on_eos; remove one",
                    camera.id
                )
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
            p.check(
                camera.max_fps == 0.0 || MAX_FPS_RANGE.contains(&camera.max_fps),
                || {
                    format!(
                        "camera {:?}: max_fps must be 0 (every frame) or from {} to {}, got {}",
                        camera.id,
                        MAX_FPS_RANGE.start(),
                        MAX_FPS_RANGE.end(),
                        camera.max_fps
                    )
                },
            );
            p.check(
                camera.reconnect_max_s > 0.0 && camera.reconnect_max_s <= 3600.0,
                || {
                    format!(
                        "camera {:?}: reconnect_max_s must be > 0 and at most an hour",
                        camera.id
                    )
                },
            );
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
            max_batch = 0
            batch_timeout_ms = 5000
            [metrics]
            listen = "localhost"
            unhealthy_after_s = 0
            [embedder]
            model = "/nonexistent/emb.onnx"
            [spool]
            max_mb = 10
            segment_mb = 8
            cursor_persist_interval_ms = 3600001
            [egress]
            linger_ms = 5000
            delivery_timeout_s = 2.0
            shutdown_timeout_s = -1.0
            [crops]
            enabled = true
            quality = 0
            max_height_px = 8
            face_blur = 1.5
            blur_radius_px = 100
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
            "spool.max_mb = 10 must be at least twice spool.segment_mb = 8",
            "spool.cursor_persist_interval_ms = 3600001 must be in [0, 3600000] (an hour)",
            "egress.delivery_timeout_s must be in [1, 86400] seconds and longer than linger_ms",
            "egress.shutdown_timeout_s must be in [0, 3600]",
            "detector.max_batch must be in [1, 64]",
            "detector.batch_timeout_ms must be in [0, 1000]",
            "metrics.listen \"localhost\" is not an address like 127.0.0.1:9464",
            "metrics.unhealthy_after_s must be > 0 and at most a day",
            "crops.quality = 0 must be in [1, 100]",
            "crops.max_height_px = 8 must be in [16, 2048]",
            "crops.face_blur = 1.5 must be in [0, 1]",
            "crops.blur_radius_px = 100 must be at most 64",
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
        assert_eq!(config.crops, CropsConfig::default(), "crops are off");
        assert_eq!(
            (config.embedder.input_height, config.embedder.input_width),
            (128, 64)
        );
        assert_eq!(
            config.spool,
            SpoolSettings {
                dir: "/var/lib/argus/edge-agent/spool".into(),
                ..SpoolSettings::default()
            }
        );
        assert_eq!(config.egress, EgressConfig::default());
        let entrance = &config.cameras[0];
        assert_eq!(entrance.username.as_deref(), Some("viewer"));
        assert_eq!(
            entrance.password_env.as_deref(),
            Some("ARGUS_CAMERA_PASSWORD")
        );
        assert!(!entrance.loop_file);
        assert_eq!(entrance.reconnect_max_s, 30.0);
        assert!(entrance.is_live());
        assert_eq!(
            (config.detector.max_batch, config.detector.batch_timeout_ms),
            (default_max_batch(), default_batch_timeout_ms())
        );
        assert_eq!(
            config.metrics,
            Some(MetricsConfig {
                listen: "0.0.0.0:9464".into(),
                unhealthy_after_s: default_unhealthy_after_s(),
            })
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
            "camera \"west\": max_fps must be 0 (every frame) or from 0.01 to 1000, got -1",
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
    fn the_spool_dir_is_next_to_the_config_file_and_sizes_are_in_mib() {
        let (dir, path) = config_dir("");
        let head = std::fs::read_to_string(&path).unwrap();
        let config = EdgeConfig::load(&path).unwrap();
        assert_eq!(config.spool.dir, dir.path().join("spool"));
        let spool = config.spool.spool_config();
        assert_eq!(
            (spool.max_bytes, spool.segment_bytes, spool.fsync),
            (1 << 30, 8 << 20, spool::FsyncPolicy::OnRoll)
        );
        assert_eq!(
            spool.cursor_persist_interval,
            std::time::Duration::from_secs(1)
        );
        spool.validate().unwrap();
        let tuning = config.egress.producer_tuning();
        assert_eq!(
            tuning,
            ProducerTuning {
                delivery_timeout: std::time::Duration::from_secs(30),
                ..ProducerTuning::default()
            }
        );

        let text = format!(
            "{head}\n[spool]\ndir = \"/srv/spool\"\nmax_mb = 2\nsegment_mb = 1\nfsync = \"always\"\n\
             cursor_persist_interval_ms = 250\n[egress]\ncompression = \"zstd\"\nlinger_ms = 5\ndelivery_timeout_s = 10\n"
        );
        std::fs::write(&path, text).unwrap();
        let config = EdgeConfig::load(&path).unwrap();
        assert_eq!(config.spool.dir, PathBuf::from("/srv/spool"));
        let spool = config.spool.spool_config();
        assert_eq!(
            (spool.max_bytes, spool.segment_bytes, spool.fsync),
            (2 << 20, 1 << 20, spool::FsyncPolicy::Always)
        );
        assert_eq!(
            spool.cursor_persist_interval,
            std::time::Duration::from_millis(250)
        );
        let tuning = config.egress.producer_tuning();
        assert_eq!(tuning.compression, Compression::Zstd);
        assert_eq!(tuning.linger, std::time::Duration::from_millis(5));
        assert_eq!(tuning.delivery_timeout, std::time::Duration::from_secs(10));
        for bad in [r#"fsync = "sometimes""#, r#"size_mb = 3"#] {
            let text = format!("{head}\n[spool]\n{bad}\n");
            assert!(toml::from_str::<EdgeConfig>(&text).is_err(), "{bad}");
        }
    }

    #[test]
    fn eos_policy_and_liveness_follow_the_source_kind() {
        let cam = |url: &str| CameraConfig::new("c", url);
        for live in [
            "rtsp://h/x",
            "rtsps://h/x",
            "http://h/mjpeg",
            "https://h/ts",
            "v4l2:///dev/video0",
            "/dev/video1",
            "test://",
            "testsrc://?fps=0.5",
        ] {
            assert!(cam(live).is_live(), "{live}");
            assert_eq!(cam(live).on_eos(), OnEos::Reconnect, "{live}");
        }
        assert!(!cam("file:///v.avi").is_live());
        assert_eq!(cam("file:///v.avi").on_eos(), OnEos::Stop);
        let stopping = CameraConfig {
            on_eos: Some(OnEos::Stop),
            ..cam("rtsp://h/x")
        };
        assert_eq!(stopping.on_eos(), OnEos::Stop);
    }

    #[test]
    fn every_camera_problem_is_listed_together() {
        let text = format!(
            r#"{VALID_HEAD}
            [[cameras]]
            id = "ftp"
            url = "ftp://operator:s3cret@nvr/1"
            [[cameras]]
            id = "fps"
            url = "rtsp://127.0.0.1:1/a"
            max_fps = 2000.0
            reconnect_max_s = 0.0
            loop = true
            [[cameras]]
            id = "both"
            url = "rtsp://admin:s3cret@127.0.0.1:1/b"
            username = "admin"
            password = "s3cret"
            password_env = "ARGUS_TEST_UNSET_CAMERA_PASSWORD"
            [[cameras]]
            id = "env"
            url = "http://127.0.0.1:1/mjpeg"
            username = "viewer"
            password_env = "ARGUS_TEST_UNSET_CAMERA_PASSWORD"
            [[cameras]]
            id = "file"
            url = "file:///nonexistent/clip.avi"
            loop = true
            on_eos = "stop"
            password = "x"
            [[cameras]]
            id = "pattern"
            url = "testsrc://?pattern=plaid&fps=0"
            username = "u"
            [[cameras]]
            id = "tiny"
            url = "test://"
            max_fps = 0.001
            "#
        );
        let config: EdgeConfig = toml::from_str(&text).unwrap();
        let err = config.validate().unwrap_err().to_string();
        for needle in [
            "camera \"ftp\": url \"ftp://***@nvr/1\": unknown scheme \"ftp\" (supported: rtsp://",
            "camera \"fps\": max_fps must be 0 (every frame) or from 0.01 to 1000, got 2000",
            "camera \"fps\": reconnect_max_s must be > 0",
            "camera \"fps\": loop applies to file:// urls only",
            "camera \"both\": password and password_env exclude each other",
            "camera \"both\": credentials are given both in the url and as username",
            "camera \"env\": password_env names \"ARGUS_TEST_UNSET_CAMERA_PASSWORD\", which is not set",
            "camera \"file\": password without username",
            "camera \"file\": loop = true replaces on_eos",
            "camera \"pattern\": url \"testsrc://?pattern=plaid&fps=0\": pattern \"plaid\" is not one of",
            "fps \"0\" is not a rate",
            "camera \"tiny\": max_fps must be 0 (every frame) or from 0.01",
        ] {
            assert!(err.contains(needle), "missing {needle:?} in:\n{err}");
        }
        assert!(!err.contains("s3cret"), "a secret in:\n{err}");
        assert!(
            !format!("{config:?}").contains("s3cret"),
            "a secret in Debug"
        );
        // The file's own problems are reported with the credentials one.
        let file = CameraConfig {
            password: None,
            ..config.cameras[4].clone()
        };
        assert!(file.source().is_ok());
        let pattern_with_user = CameraConfig::new("p", "test://");
        assert!(pattern_with_user.source().is_ok());
        let user_on_test = CameraConfig {
            username: Some("u".into()),
            ..pattern_with_user
        };
        assert_eq!(
            user_on_test.source().unwrap_err(),
            ["camera \"p\": credentials apply to rtsp://, rtsps://, http:// and https:// only"]
        );
    }

    #[test]
    fn credentials_come_from_the_url_or_the_keys() {
        let from_url = CameraConfig::new("a", "rtsp://admin:pa%3Ass@10.0.0.5/live");
        let source = from_url.source().unwrap();
        assert_eq!(
            source.kind,
            SourceKind::Rtsp {
                uri: "rtsp://10.0.0.5/live".into()
            }
        );
        let credentials = source.credentials.unwrap();
        assert_eq!(
            (credentials.user.as_str(), credentials.password.as_str()),
            ("admin", "pa:ss")
        );

        let from_keys = CameraConfig {
            username: Some("viewer".into()),
            password: Some(Secret("hunter2".into())),
            ..CameraConfig::new("b", "https://cam.local/mjpeg")
        };
        let credentials = from_keys.source().unwrap().credentials.unwrap();
        assert_eq!(credentials.password, "hunter2");

        // PATH is set in any test environment; its value stands in for a password.
        let path = std::env::var("PATH").unwrap();
        let from_env = CameraConfig {
            username: Some("viewer".into()),
            password_env: Some("PATH".into()),
            ..CameraConfig::new("c", "rtsp://cam.local/live")
        };
        assert_eq!(
            from_env.source().unwrap().credentials.unwrap().password,
            path
        );
        assert!(
            CameraConfig::new("d", "rtsp://cam.local/live")
                .source()
                .unwrap()
                .credentials
                .is_none()
        );
    }

    #[test]
    fn new_cameras_take_the_serde_defaults() {
        let text = format!(
            r#"{VALID_HEAD}
            [[cameras]]
            id = "a"
            url = "rtsp://127.0.0.1:1/a"
            "#
        );
        let config: EdgeConfig = toml::from_str(&text).unwrap();
        let parsed = format!("{:?}", config.cameras[0]);
        assert_eq!(
            parsed,
            format!("{:?}", CameraConfig::new("a", "rtsp://127.0.0.1:1/a"))
        );
    }

    /// A valid config file with empty model and library files beside it.
    fn config_dir(extra: &str) -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        for file in ["det.onnx", "emb.onnx", "other.onnx", "libonnxruntime.so"] {
            std::fs::write(dir.path().join(file), b"").unwrap();
        }
        let text = format!(
            r#"
            onnxruntime_library = "{}"
            [kafka]
            bootstrap_servers = "file-host:9092"
            [detector]
            model = "det.onnx"
            [embedder]
            model = "emb.onnx"
            [[cameras]]
            id = "entrance"
            url = "rtsp://127.0.0.1:1/a"
            [[cameras]]
            id = "yard"
            url = "rtsp://127.0.0.1:1/b"
            {extra}
            "#,
            dir.path().join("libonnxruntime.so").display()
        );
        let path = dir.path().join("edge.toml");
        std::fs::write(&path, text).unwrap();
        (dir, path)
    }

    fn vars(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(name, value)| (name.to_string(), value.to_string()))
            .collect()
    }

    #[test]
    fn environment_overrides_beat_the_file_and_are_listed_by_name() {
        let (dir, path) = config_dir("");
        let other = dir.path().join("other.onnx");
        let other = other.to_str().unwrap();
        let loaded = EdgeConfig::load_with_env(
            &path,
            vars(&[
                ("ARGUS_EDGE__DETECTOR__SCORE_THRESHOLD", "0.4"),
                ("ARGUS_EDGE__DETECTOR__MODEL", other),
                ("ARGUS_EDGE__DETECTOR__CLASSES", "[0, 2]"),
                ("ARGUS_EDGE__KAFKA__BOOTSTRAP_SERVERS", "env-host:9092"),
                ("ARGUS_KAFKA_BOOTSTRAP_SERVERS", "legacy-host:9092"),
                ("ARGUS_EDGE__METRICS__LISTEN", "0.0.0.0:9100"),
                ("ARGUS_EDGE__EMBEDDER__ENABLED", "false"),
                ("ARGUS_EDGE__EMBEDDER__MODEL", "missing/but/disabled.onnx"),
                ("ARGUS_EDGE__SPOOL__FSYNC", "never"),
                ("ARGUS_EDGE__CAMERAS__YARD__MAX_FPS", "2.5"),
                ("ARGUS_EDGE__CAMERAS__YARD__USERNAME", "1234"),
                ("ARGUS_EDGE__CAMERAS__YARD__PASSWORD", "s3cret:/x"),
            ]),
        )
        .unwrap();
        let config = &loaded.config;
        assert_eq!(config.detector.score_threshold, 0.4);
        assert_eq!(config.detector.model, PathBuf::from(other));
        assert_eq!(config.detector.classes, [0, 2]);
        assert_eq!(config.kafka.bootstrap_servers, "env-host:9092");
        assert_eq!(
            config.metrics,
            Some(MetricsConfig {
                listen: "0.0.0.0:9100".into(),
                unhealthy_after_s: default_unhealthy_after_s(),
            })
        );
        assert!(!config.embedder.enabled);
        assert_eq!(
            config.embedder.model,
            dir.path().join("missing/but/disabled.onnx"),
            "relative to the config file"
        );
        assert_eq!(config.spool.fsync, SpoolFsync::Never);
        assert_eq!(config.cameras[0].max_fps, 0.0);
        assert_eq!(config.cameras[1].max_fps, 2.5);
        assert_eq!(config.cameras[1].username.as_deref(), Some("1234"));
        assert_eq!(config.cameras[1].password, Some(Secret("s3cret:/x".into())));
        let names: Vec<(&str, &str)> = loaded
            .overrides
            .iter()
            .map(|a| (a.var.as_str(), a.key.as_str()))
            .collect();
        assert_eq!(
            names,
            [
                (
                    "ARGUS_EDGE__CAMERAS__YARD__MAX_FPS",
                    "cameras[id=\"yard\"].max_fps"
                ),
                (
                    "ARGUS_EDGE__CAMERAS__YARD__PASSWORD",
                    "cameras[id=\"yard\"].password"
                ),
                (
                    "ARGUS_EDGE__CAMERAS__YARD__USERNAME",
                    "cameras[id=\"yard\"].username"
                ),
                ("ARGUS_EDGE__DETECTOR__CLASSES", "detector.classes"),
                ("ARGUS_EDGE__DETECTOR__MODEL", "detector.model"),
                (
                    "ARGUS_EDGE__DETECTOR__SCORE_THRESHOLD",
                    "detector.score_threshold"
                ),
                ("ARGUS_EDGE__EMBEDDER__ENABLED", "embedder.enabled"),
                ("ARGUS_EDGE__EMBEDDER__MODEL", "embedder.model"),
                (
                    "ARGUS_EDGE__KAFKA__BOOTSTRAP_SERVERS",
                    "kafka.bootstrap_servers"
                ),
                ("ARGUS_EDGE__METRICS__LISTEN", "metrics.listen"),
                ("ARGUS_EDGE__SPOOL__FSYNC", "spool.fsync"),
            ]
        );
        assert!(
            !format!("{loaded:?}").contains("s3cret"),
            "a secret in Debug"
        );
    }

    #[test]
    fn the_older_variables_still_apply_below_the_new_ones() {
        let (dir, path) = config_dir("");
        let legacy = EdgeConfig::load_with_env(
            &path,
            vars(&[("ARGUS_KAFKA_BOOTSTRAP_SERVERS", "legacy-host:9092")]),
        )
        .unwrap();
        assert_eq!(legacy.config.kafka.bootstrap_servers, "legacy-host:9092");
        assert_eq!(legacy.overrides[0].var, "ARGUS_KAFKA_BOOTSTRAP_SERVERS");
        let blank =
            EdgeConfig::load_with_env(&path, vars(&[("ARGUS_KAFKA_BOOTSTRAP_SERVERS", " ")]))
                .unwrap();
        assert_eq!(blank.config.kafka.bootstrap_servers, "file-host:9092");
        assert!(blank.overrides.is_empty());

        // ORT_DYLIB_PATH only fills in a library the file leaves out.
        let library = dir.path().join("libonnxruntime.so");
        let text = std::fs::read_to_string(&path).unwrap();
        let without: String = text
            .lines()
            .filter(|line| !line.contains("onnxruntime_library"))
            .collect::<Vec<_>>()
            .join("\n");
        std::fs::write(&path, without).unwrap();
        let ort = vars(&[("ORT_DYLIB_PATH", library.to_str().unwrap())]);
        let loaded = EdgeConfig::load_with_env(&path, ort.clone()).unwrap();
        assert_eq!(loaded.config.onnxruntime_library.as_ref(), Some(&library));
        assert_eq!(
            (
                loaded.overrides[0].var.as_str(),
                loaded.overrides[0].key.as_str()
            ),
            ("ORT_DYLIB_PATH", "onnxruntime_library")
        );
        let err = EdgeConfig::load_with_env(&path, vars(&[]))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("onnxruntime_library is not set and ORT_DYLIB_PATH is empty"),
            "{err}"
        );
        let mut both = ort;
        both.extend(vars(&[(
            "ARGUS_EDGE__ONNXRUNTIME_LIBRARY",
            "/nonexistent/lib.so",
        )]));
        let err = EdgeConfig::load_with_env(&path, both)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("onnxruntime_library /nonexistent/lib.so does not exist"),
            "{err}"
        );
    }

    #[test]
    fn bad_overrides_are_named_with_every_other_problem() {
        let (_dir, path) = config_dir("max_fps = 5000.0");
        let err = EdgeConfig::load_with_env(
            &path,
            vars(&[
                ("ARGUS_EDGE__DETECTOR__SCORE_THRESHOLD", "very-secret"),
                ("ARGUS_EDGE__DETECTOR__SCORE_TRESHOLD", "0.4"),
                ("ARGUS_EDGE__CAMERAS__YARD__RTSP_TCP", "sometimes"),
                ("ARGUS_EDGE__CAMERAS__GATE__URL", "rtsp://x/y"),
                ("ARGUS_EDGE__DETECTOR__NMS_IOU_THRESHOLD", "1.5"),
                ("ARGUS_EDGE__SPOOL__MAX_MB", "-1"),
            ]),
        )
        .unwrap_err()
        .to_string();
        for needle in [
            "ARGUS_EDGE__DETECTOR__SCORE_THRESHOLD: the value does not fit detector.score_threshold: expected f32",
            "ARGUS_EDGE__DETECTOR__SCORE_TRESHOLD: there is no setting detector.score_treshold (unknown field `score_treshold`",
            "ARGUS_EDGE__CAMERAS__YARD__RTSP_TCP: the value does not fit cameras[id=\"yard\"].rtsp_tcp: expected a boolean",
            "ARGUS_EDGE__CAMERAS__GATE__URL: cameras has no element whose id is \"gate\"",
            "ARGUS_EDGE__SPOOL__MAX_MB: the value does not fit spool.max_mb: expected u64",
            // The checks run on what the variables set, and on the file.
            "detector.nms_iou_threshold must be in [0, 1]",
            "camera \"yard\": max_fps must be 0 (every frame) or from 0.01 to 1000, got 5000",
        ] {
            assert!(err.contains(needle), "missing {needle:?} in:\n{err}");
        }
        assert_eq!(err.matches("\n  - ").count(), 7, "{err}");
        assert!(!err.contains("very-secret"), "a value in:\n{err}");
    }
}
