//! The publisher: protobuf-encodes detections and camera health, keyed by
//! camera id, and appends them to the durable spool, from which the
//! [`egress`](crate::egress) sender delivers them to Kafka in order. Kafka
//! being slow or gone never holds up the inference thread: the spool takes
//! everything while it has room, then drops its oldest records (logged at
//! ERROR and counted). Health reports go through the same spool, so they
//! never overtake a camera's detections.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use rdkafka::ClientConfig;
use rdkafka::error::KafkaError;
use schemas::v1::{CameraHealth, FrameDetections};
use schemas::{topics, wire};
use service_kit::clock::now_us;
use spool::{Record, Recovery, Spool, SpoolConfig, SpoolError};
use tokio::sync::mpsc;

use crate::config::{CameraConfig, EdgeConfig};
use crate::egress::{EgressProducer, EgressStats, EgressSummary, Sender, Shared, create_producer};
use crate::source::CameraStats;

/// What the publisher sends.
#[derive(Debug)]
pub enum Outgoing {
    /// Detections of one analysed frame (or an end-of-stream marker).
    Frame(FrameDetections),
    /// The camera at this index changed state: report its health now.
    Health(usize),
}

/// The health report of a camera from its live counters.
pub fn health_report(camera: &CameraConfig, stats: &CameraStats) -> CameraHealth {
    let (state, since, detail) = stats.state();
    CameraHealth {
        schema_version: schemas::SCHEMA_VERSION,
        camera_id: camera.id.clone(),
        state: state as i32,
        since_ts_us: since,
        ts_us: now_us(),
        frames_in: stats.frames_in.load(Ordering::Relaxed),
        frames_analysed: stats.frames_analysed.load(Ordering::Relaxed),
        frames_dropped: stats.frames_dropped.load(Ordering::Relaxed),
        detail,
        frames_skipped: stats.frames_skipped.load(Ordering::Relaxed),
        reconnects: stats.reconnects.load(Ordering::Relaxed),
        loops: stats.loops.load(Ordering::Relaxed),
    }
}

/// Where and how the publisher sends.
#[derive(Debug, Clone)]
pub struct PublishSettings {
    /// The spool directory (one publisher at a time).
    pub spool_dir: PathBuf,
    /// Spool size bounds and fsync policy.
    pub spool: SpoolConfig,
    /// What producers are made from
    /// ([`KafkaSettings::producer_config`](service_kit::kafka::KafkaSettings::producer_config)):
    /// one at start and a fresh one after each failed delivery.
    pub producer: ClientConfig,
    /// Between periodic health reports of every camera.
    pub health_interval: Duration,
    /// How long a stop keeps sending what is left in the spool.
    pub shutdown_timeout: Duration,
}

impl PublishSettings {
    /// The settings of an agent's config.
    pub fn from_config(config: &EdgeConfig) -> Self {
        PublishSettings {
            spool_dir: config.spool.dir.clone(),
            spool: config.spool.spool_config(),
            producer: config
                .kafka
                .producer_config("argus-edge-agent", &config.egress.producer_tuning()),
            health_interval: Duration::try_from_secs_f64(config.health_interval_s)
                .unwrap_or(Duration::from_secs(10)),
            shutdown_timeout: config.egress.shutdown_timeout(),
        }
    }
}

/// Why the publisher cannot start.
#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    /// The spool cannot be opened (in use, unreadable, bad bounds).
    #[error(transparent)]
    Spool(#[from] SpoolError),
    /// The producer configuration is refused.
    #[error("Kafka producer: {0}")]
    Kafka(#[from] KafkaError),
}

/// Shortest period of the health reports (a zero period would spin).
const MIN_HEALTH_INTERVAL: Duration = Duration::from_millis(100);

/// Records appended to the spool per blocking call at most.
const APPEND_BATCH: usize = 256;

/// An open spool and a producer, ready to [`run`](Publisher::run).
pub struct Publisher {
    settings: PublishSettings,
    producer: EgressProducer,
    shared: Arc<Shared>,
    recovery: Recovery,
}

impl std::fmt::Debug for Publisher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Publisher")
            .field("spool_dir", &self.settings.spool_dir)
            .field("recovery", &self.recovery)
            .finish_non_exhaustive()
    }
}

impl Publisher {
    /// Creates the producer, opens the spool (reading and verifying all of
    /// it: blocking, O(spool size)) and logs what the spool held.
    pub fn open(settings: PublishSettings) -> Result<Self, PublishError> {
        let producer = create_producer(&settings.producer)?;
        let (spool, recovery) = Spool::open(&settings.spool_dir, settings.spool.clone())?;
        log_recovery(&settings, &recovery);
        let stats = Arc::new(EgressStats::default());
        stats
            .recovered_records
            .store(recovery.records, Ordering::Relaxed);
        Ok(Publisher {
            shared: Arc::new(Shared::new(spool, stats)),
            settings,
            producer,
            recovery,
        })
    }

    /// What opening the spool found.
    pub fn recovery(&self) -> &Recovery {
        &self.recovery
    }

    /// The live counters (they keep counting while [`run`](Self::run) runs).
    pub fn stats(&self) -> Arc<EgressStats> {
        Arc::clone(&self.shared.stats)
    }

    /// Spools everything from `rx` until it closes, plus a health report of
    /// every camera each `health_interval`, while the sender delivers the
    /// spool to Kafka. After `rx` closes, keeps sending until the spool is
    /// empty or `shutdown_timeout` has passed, then syncs the spool.
    pub async fn run(
        self,
        rx: mpsc::Receiver<Outgoing>,
        cameras: Arc<Vec<CameraConfig>>,
        camera_stats: Arc<Vec<Arc<CameraStats>>>,
    ) -> EgressSummary {
        let Publisher {
            settings,
            producer,
            shared,
            recovery,
        } = self;
        let sender = Sender::new(
            Arc::clone(&shared),
            settings.producer.clone(),
            producer,
            recovery.next_seq.saturating_sub(1),
            settings.shutdown_timeout,
        );
        let writer = write_loop(
            Arc::clone(&shared),
            rx,
            cameras,
            camera_stats,
            settings.health_interval,
        );
        tokio::join!(writer, sender.run());
        let summary = shared.stats.summary();
        tracing::info!(
            delivered = summary.delivered_records,
            pending = summary.pending_records,
            pending_bytes = summary.pending_bytes,
            delivery_errors = summary.delivery_errors,
            replayed = summary.replayed_records,
            dropped = summary.dropped_records,
            rejected = summary.rejected_records,
            unspooled = summary.unspooled_records,
            "Publisher stopped"
        );
        summary
    }
}

/// Appends what `rx` brings, and periodic health reports, to the spool.
async fn write_loop(
    shared: Arc<Shared>,
    mut rx: mpsc::Receiver<Outgoing>,
    cameras: Arc<Vec<CameraConfig>>,
    camera_stats: Arc<Vec<Arc<CameraStats>>>,
    health_interval: Duration,
) {
    let mut tick = tokio::time::interval(health_interval.max(MIN_HEALTH_INTERVAL));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let health = |index: usize| {
        let report = health_report(cameras.get(index)?, camera_stats.get(index)?);
        Some(record(
            topics::CAMERA_HEALTH,
            &report.camera_id,
            wire::encode(&report),
        ))
    };
    let encode = |message: Outgoing| match message {
        Outgoing::Frame(frame) => Some(record(
            topics::DETECTIONS,
            &frame.camera_id,
            wire::encode(&frame),
        )),
        Outgoing::Health(index) => health(index),
    };
    let mut dropped_seen = shared.stats.dropped_records.load(Ordering::Relaxed);
    loop {
        let mut batch = Vec::new();
        // The tick first: it is ready once per interval, so it cannot starve
        // the input, while a busy input could starve it.
        tokio::select! {
            biased;
            _ = tick.tick() => batch.extend((0..cameras.len()).filter_map(&health)),
            message = rx.recv() => match message {
                None => break,
                Some(message) => {
                    batch.extend(encode(message));
                    while batch.len() < APPEND_BATCH {
                        match rx.try_recv() {
                            Ok(message) => batch.extend(encode(message)),
                            Err(_) => break,
                        }
                    }
                }
            },
        }
        append(&shared, batch, &mut dropped_seen).await;
    }
    shared.close_input();
}

/// A spool record stamped now.
fn record(topic: &str, camera_id: &str, payload: Vec<u8>) -> Record {
    Record::new(topic, topics::key(camera_id), payload, now_us() / 1000)
}

/// Appends `batch`; logs records that could not be spooled and records the
/// spool dropped to make room, both lost.
async fn append(shared: &Arc<Shared>, batch: Vec<Record>, dropped_seen: &mut u64) {
    if batch.is_empty() {
        return;
    }
    let (failed, error) = shared
        .with_spool(move |spool| {
            let mut failed = 0u64;
            let mut first_error = None;
            for record in &batch {
                if let Err(error) = spool.append(record) {
                    failed += 1;
                    first_error.get_or_insert(error);
                }
            }
            (failed, first_error)
        })
        .await;
    shared.appended();
    let stats = &shared.stats;
    if let Some(error) = error {
        let total = stats.unspooled_records.fetch_add(failed, Ordering::Relaxed) + failed;
        tracing::error!(%error, lost = failed, lost_total = total, "Messages could not be spooled; lost");
    }
    let dropped = stats.dropped_records.load(Ordering::Relaxed);
    if dropped > *dropped_seen {
        tracing::error!(
            dropped = dropped - *dropped_seen,
            dropped_total = dropped,
            dropped_bytes_total = stats.dropped_bytes.load(Ordering::Relaxed),
            pending = stats.pending_records.load(Ordering::Relaxed),
            "Spool full; its oldest unsent messages were dropped"
        );
        *dropped_seen = dropped;
    }
}

/// Logs what opening the spool found: records to replay at INFO, repairs
/// at WARN, lost records at ERROR.
fn log_recovery(settings: &PublishSettings, recovery: &Recovery) {
    let dir = settings.spool_dir.display();
    if recovery.records > 0 {
        tracing::info!(%dir, records = recovery.records, bytes = recovery.bytes, "Spool holds messages of a previous run; sending them first");
    } else {
        tracing::info!(%dir, "Spool open and empty");
    }
    if recovery.torn_tail || recovery.cursor_invalid {
        tracing::warn!(%dir, torn_tail = recovery.torn_tail, truncated_bytes = recovery.truncated_bytes, cursor_invalid = recovery.cursor_invalid, "Spool repaired after an unclean stop; messages Kafka already has may be sent again");
    }
    if recovery.corrupt_segments > 0 || recovery.dropped_records > 0 {
        tracing::error!(%dir, corrupt_segments = recovery.corrupt_segments, truncated_bytes = recovery.truncated_bytes, dropped = recovery.dropped_records, "Spool lost messages at open: corrupt files, or more than max_mb on disk");
    }
}
