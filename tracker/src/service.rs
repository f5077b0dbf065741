//! The tracker service: consume detections, track, publish presence events,
//! id merges and track summaries; with `[alerts]`, also run the alert rules
//! on every tracked frame and on the cameras' health reports (a second
//! consumer, group `<group_id>-health`, from the latest report) and publish
//! alerts.
//!
//! Delivery: a detections message counts as handled once every output it
//! caused is acknowledged by Kafka (at-least-once; event ids let consumers
//! deduplicate).
//! - With `state_dir`, the engine's whole state and the offsets it covers are
//!   checkpointed every `checkpoint_interval_s` (atomic rename), and those
//!   offsets are committed to Kafka only after the checkpoint is on disk. On
//!   start the checkpoint is restored and messages it already covers are
//!   skipped, so a restart keeps every id and track; replayed input yields
//!   the same event ids.
//! - Without it, offsets are stored per message and committed in the
//!   background, and open tracks are ended on shutdown.
//!
//! On shutdown the tracker first reads everything already written to its
//! partitions (bounded by `drain_timeout_s`), then checkpoints (or ends open
//! tracks) and flushes.

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use rdkafka::consumer::{CommitMode, Consumer, StreamConsumer};
use rdkafka::error::KafkaResult;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{BorrowedMessage, Message};
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};
use rdkafka::util::Timeout;
use rdkafka::{Offset, TopicPartitionList};
use schemas::v1::{Alert, CameraHealth, FrameDetections};
use schemas::{topics, wire};
use service_kit::clock::now_us;
use service_kit::kafka::{self, Progress};
use service_kit::metrics::{self, Registry};
use service_kit::shutdown::Shutdown;

use crate::alerting::{self, Alerting};
use crate::config::TrackerConfig;
use crate::engine::{Engine, EngineError, Output, Restored};

/// The tracker stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum TrackerError {
    /// Kafka refused a client or a delivery.
    #[error("Kafka: {0}")]
    Kafka(#[from] rdkafka::error::KafkaError),
    /// The tracking engine cannot go on.
    #[error(transparent)]
    Engine(#[from] EngineError),
    /// The checkpoint could not be read or written.
    #[error("checkpoint {path}: {message}")]
    Checkpoint {
        /// Checkpoint file.
        path: PathBuf,
        /// What went wrong.
        message: String,
    },
    /// The metrics endpoint could not start.
    #[error(transparent)]
    Metrics(#[from] metrics::ServeError),
    /// The alert rules are invalid.
    #[error(transparent)]
    Rules(#[from] alerts::ConfigError),
}

/// Totals of a run.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct TrackerStats {
    /// Detection messages tracked.
    pub frames: u64,
    /// Messages that could not be decoded (skipped, offset stored).
    pub malformed: u64,
    /// Messages skipped because the restored checkpoint already covered them.
    pub replayed: u64,
    /// Events published (presence, merges, summaries).
    pub events: u64,
    /// Alert events published (raises and closes).
    pub alerts: u64,
    /// Checkpoints written.
    pub checkpoints: u64,
}

/// The checkpoint file in `state_dir`.
pub const CHECKPOINT_FILE: &str = "tracker-state.json";
const CHECKPOINT_VERSION: u32 = 1;

#[derive(serde::Serialize)]
struct CheckpointOut<'a> {
    version: u32,
    /// Next offset to read per detections partition: everything before is in `engine`.
    offsets: &'a BTreeMap<i32, i64>,
    engine: crate::engine::Snapshot<'a>,
    /// Alerts open at the checkpoint: a restart after a crash closes them.
    open_alerts: &'a [alerts::AlertEvent],
}

#[derive(serde::Deserialize)]
struct CheckpointIn {
    version: u32,
    offsets: BTreeMap<i32, i64>,
    engine: Restored,
    #[serde(default)]
    open_alerts: Vec<alerts::AlertEvent>,
}

fn checkpoint_error(path: &Path, message: impl std::fmt::Display) -> TrackerError {
    TrackerError::Checkpoint {
        path: path.to_path_buf(),
        message: message.to_string(),
    }
}

/// Reads the checkpoint, if there is one.
fn load_checkpoint(dir: &Path) -> Result<Option<CheckpointIn>, TrackerError> {
    let path = dir.join(CHECKPOINT_FILE);
    let bytes = match std::fs::read(&path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(checkpoint_error(&path, e)),
    };
    let checkpoint: CheckpointIn = serde_json::from_slice(&bytes).map_err(|e| {
        checkpoint_error(
            &path,
            format!("{e} (move the file away to start without state)"),
        )
    })?;
    if checkpoint.version != CHECKPOINT_VERSION {
        return Err(checkpoint_error(
            &path,
            format!("version {} is not {CHECKPOINT_VERSION}", checkpoint.version),
        ));
    }
    Ok(Some(checkpoint))
}

/// Writes the checkpoint atomically (temporary file, fsync, rename, fsync
/// of the directory); returns its size.
fn write_checkpoint(
    dir: &Path,
    offsets: &BTreeMap<i32, i64>,
    engine: &Engine,
    open_alerts: &[alerts::AlertEvent],
) -> Result<u64, TrackerError> {
    let path = dir.join(CHECKPOINT_FILE);
    let tmp = dir.join(format!("{CHECKPOINT_FILE}.partial"));
    let err = |e: std::io::Error| checkpoint_error(&path, e);
    std::fs::create_dir_all(dir).map_err(err)?;
    let body = serde_json::to_vec(&CheckpointOut {
        version: CHECKPOINT_VERSION,
        offsets,
        engine: engine.snapshot(),
        open_alerts,
    })
    .map_err(|e| checkpoint_error(&path, e))?;
    let mut file = std::fs::File::create(&tmp).map_err(err)?;
    file.write_all(&body).map_err(err)?;
    file.sync_all().map_err(err)?;
    drop(file);
    std::fs::rename(&tmp, &path).map_err(err)?;
    if let Ok(d) = std::fs::File::open(dir) {
        let _ = d.sync_all();
    }
    Ok(body.len() as u64)
}

/// Commits the offsets a checkpoint covers, for the partitions held now.
fn commit(
    consumer: &StreamConsumer,
    offsets: &BTreeMap<i32, i64>,
    mode: CommitMode,
) -> Result<(), TrackerError> {
    // Only partitions this instance holds now: after a rebalance another
    // instance owns the rest, and its commits must not be overwritten.
    let assigned = consumer.assignment()?;
    let mut list = TopicPartitionList::new();
    for (&partition, &offset) in offsets {
        if assigned
            .find_partition(topics::DETECTIONS, partition)
            .is_some()
        {
            list.add_partition_offset(topics::DETECTIONS, partition, Offset::Offset(offset))?;
        }
    }
    if list.count() == 0 {
        return Ok(());
    }
    consumer.commit(&list, mode)?;
    Ok(())
}

/// Runs the tracker until `shutdown` completes and the drain finishes.
pub async fn run(
    config: TrackerConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<TrackerStats, TrackerError> {
    let registry = Registry::new();
    let mut shutdown = Shutdown::from_future(shutdown);
    if let Some(address) = &config.metrics_address {
        metrics::serve(address, registry.clone(), shutdown.clone()).await?;
    }
    let state_dir = config.state_dir.clone();
    let mut kafka = config.kafka.clone();
    if state_dir.is_some() {
        // Offsets are committed with checkpoints only.
        kafka
            .properties
            .entry("enable.auto.commit".into())
            .or_insert_with(|| "false".into());
    }
    let consumer = kafka.consumer("argus-tracker", &config.group_id, &[topics::DETECTIONS])?;
    let producer = kafka.producer("argus-tracker")?;
    let mut alerting = config
        .alert_rules()
        .map(|rules| Alerting::new(&rules))
        .transpose()?;
    // Health is state, not history: a new group starts at the latest report.
    let health = match alerting {
        Some(_) => {
            let mut settings = config.kafka.clone();
            settings
                .properties
                .entry("auto.offset.reset".into())
                .or_insert_with(|| "latest".into());
            let group = format!("{}-health", config.group_id);
            Some(settings.consumer("argus-tracker-health", &group, &[topics::CAMERA_HEALTH])?)
        }
        None => None,
    };

    let params = config.engine_params();
    let mut left_open = Vec::new();
    let (mut engine, covered) = match state_dir
        .as_deref()
        .map(load_checkpoint)
        .transpose()?
        .flatten()
    {
        Some(checkpoint) => {
            tracing::info!(offsets = ?checkpoint.offsets, "Tracker state restored from checkpoint");
            left_open = checkpoint.open_alerts;
            (
                Engine::restore(params, checkpoint.engine),
                checkpoint.offsets,
            )
        }
        None => (Engine::new(params), BTreeMap::new()),
    };
    let mut next_offsets = covered.clone();
    let mut checkpoints = state_dir.map(|dir| Checkpoints {
        dir,
        every: Duration::from_secs_f64(config.checkpoint_interval_s),
        last: Instant::now(),
        covered: covered.clone(),
        // The restored list: once the restart has closed those alerts, the
        // next checkpoint (written at once, the set changed) drops them.
        open_alert_ids: left_open.iter().map(|a| a.alert_id.clone()).collect(),
        written: 0,
    });
    let mut stats = TrackerStats::default();
    // Alerts a crash left open are closed now (the rules start afresh and
    // raise again what still holds).
    if !left_open.is_empty() {
        let closes = alerting::closing(&left_open, now_us(), "the tracker restarted");
        tracing::info!(
            alerts = closes.len(),
            "Closing alerts left open by the last run"
        );
        if let Some(alerting) = &mut alerting {
            stats.alerts += publish_alerts(&producer, &closes, alerting, &registry).await? as u64;
        } else {
            for close in &closes {
                send_alert(&producer, close).await?;
            }
        }
    }
    let mut progress = Progress::default();
    let mut drain_deadline: Option<Instant> = None;
    let mut last_check = Instant::now();
    // When each camera's latest frame arrived: a camera whose frames stop
    // arriving (edge box gone without an end-of-stream marker, or its
    // partition moved to another instance) has its tracks ended.
    let silence = Duration::from_secs_f64(config.camera_gap_s);
    // Restored cameras get the full grace period to send again.
    let mut arrivals: HashMap<String, Instant> = engine
        .cameras()
        .map(|id| (id.to_string(), Instant::now()))
        .collect();
    let mut last_sweep = Instant::now();
    tracing::info!(group = %config.group_id, checkpoints = checkpoints.is_some(), "Tracker consuming detections");
    loop {
        tokio::select! {
            biased;
            () = shutdown.wait(), if drain_deadline.is_none() => {
                tracing::info!("Draining detections already written");
                drain_deadline = Some(Instant::now() + Duration::from_secs_f64(config.drain_timeout_s));
            }
            message = consumer.recv() => {
                let message = message?;
                let (partition, offset) = (message.partition(), message.offset());
                progress.record(&message);
                if offset < covered.get(&partition).copied().unwrap_or(i64::MIN) {
                    stats.replayed += 1;
                    registry.count("argus_tracker_replayed_messages_total", "Messages skipped because the restored checkpoint covers them.", &[], 1);
                    continue;
                }
                let outputs = match message.payload().map(wire::decode::<FrameDetections>) {
                    Some(Ok(frame)) => {
                        stats.frames += 1;
                        registry.count("argus_tracker_frames_total", "Detection messages tracked.", &[("camera", frame.camera_id.as_str())], 1);
                        registry.gauge("argus_tracker_lag_seconds", "Wall clock minus capture time of the latest frame tracked.", &[], now_us().saturating_sub(frame.capture_ts_us) as f64 / 1e6);
                        arrivals.insert(frame.camera_id.clone(), Instant::now());
                        let outputs = engine.on_frame(&frame)?;
                        if let Some(alerting) = &mut alerting {
                            let raised = alerting.on_frame(&engine, &frame, &outputs);
                            stats.alerts += publish_alerts(&producer, &raised, alerting, &registry).await? as u64;
                        }
                        outputs
                    }
                    Some(Err(error)) => {
                        stats.malformed += 1;
                        registry.count("argus_tracker_malformed_messages_total", "Messages that could not be decoded (skipped).", &[], 1);
                        tracing::warn!(%error, partition, offset, "Skipping undecodable detections");
                        Vec::new()
                    }
                    None => {
                        stats.malformed += 1;
                        registry.count("argus_tracker_malformed_messages_total", "Messages that could not be decoded (skipped).", &[], 1);
                        tracing::warn!(partition, offset, "Skipping detections message without payload");
                        Vec::new()
                    }
                };
                stats.events += publish(&producer, &outputs, &registry).await? as u64;
                if checkpoints.is_none() {
                    consumer.store_offset_from_message(&message)?;
                }
                next_offsets.insert(partition, offset + 1);
                report(&registry, &engine);
            }
            report = next_message(health.as_ref()) => {
                if let (Some(alerting), Some(consumer)) = (&mut alerting, &health) {
                    match report {
                        Ok(message) => {
                            match message.payload().map(wire::decode::<CameraHealth>) {
                                Some(Ok(report)) => {
                                    let raised = alerting.on_health(&report);
                                    stats.alerts += publish_alerts(&producer, &raised, alerting, &registry).await? as u64;
                                }
                                Some(Err(error)) => tracing::warn!(%error, "Skipping undecodable camera health report"),
                                None => tracing::warn!("Skipping camera health report without payload"),
                            }
                            if let Err(error) = consumer.store_offset_from_message(&message) {
                                tracing::warn!(%error, "Could not store the health consumer's offset");
                            }
                        }
                        Err(error) => tracing::warn!(%error, "Camera health consumer error"),
                    }
                }
            }
            // Idle tick: checkpoints, the silence sweep and the drain check run
            // even when no message arrives.
            () = tokio::time::sleep(Duration::from_millis(200)) => {}
        }
        if let Some(alerting) = &mut alerting {
            let due = alerting.tick(now_us());
            stats.alerts += publish_alerts(&producer, &due, alerting, &registry).await? as u64;
        }
        if last_sweep.elapsed() >= Duration::from_secs(1) {
            last_sweep = Instant::now();
            let silent: Vec<String> = engine
                .cameras()
                .filter(|id| arrivals.get(*id).is_some_and(|t| t.elapsed() > silence))
                .map(str::to_string)
                .collect();
            for camera in silent {
                tracing::info!(%camera, "No frames for camera_gap_s; ending its tracks");
                arrivals.remove(&camera);
                let outputs = engine.end_camera(&camera);
                stats.events += publish(&producer, &outputs, &registry).await? as u64;
                if let Some(alerting) = &mut alerting {
                    let closed = alerting.on_outputs(&outputs);
                    stats.alerts +=
                        publish_alerts(&producer, &closed, alerting, &registry).await? as u64;
                }
            }
        }
        if let Some(checkpoints) = &mut checkpoints {
            let open = alerting
                .as_ref()
                .map(Alerting::open_events)
                .unwrap_or_default();
            checkpoints.tick(&next_offsets, &engine, &open, &consumer, &registry)?;
        }
        if let Some(deadline) = drain_deadline
            && last_check.elapsed() >= Duration::from_millis(200)
        {
            last_check = Instant::now();
            if progress.caught_up(&consumer, Duration::from_secs(5))? {
                break;
            }
            if Instant::now() >= deadline {
                tracing::warn!(
                    "Drain deadline reached before catching up; the rest is read on next start"
                );
                break;
            }
        }
    }
    if checkpoints.is_none() {
        let closing = engine.close_all();
        stats.events += publish(&producer, &closing, &registry).await? as u64;
    }
    // Open alerts are closed on a clean stop: their conditions are no
    // longer watched (a restart raises again what still holds).
    if let Some(alerting) = &mut alerting {
        let closes = alerting::closing(&alerting.open_events(), now_us(), "the tracker stopped");
        stats.alerts += publish_alerts(&producer, &closes, alerting, &registry).await? as u64;
    }
    producer.flush(Timeout::After(Duration::from_secs(30)))?;
    match &mut checkpoints {
        // Synchronous: the final commit must reach the broker before the consumer goes.
        Some(checkpoints) => {
            checkpoints.write(
                &next_offsets,
                &engine,
                &[],
                &consumer,
                &registry,
                CommitMode::Sync,
            )?;
            stats.checkpoints = checkpoints.written;
        }
        None => match consumer.commit_consumer_state(CommitMode::Sync) {
            // Nothing stored since the last background commit: nothing to do.
            Err(KafkaError::ConsumerCommit(RDKafkaErrorCode::NoOffset)) | Ok(()) => {}
            Err(error) => tracing::warn!(%error, "Final offset commit failed"),
        },
    }
    // Leave the group now, so that a restarted instance is assigned the
    // partitions without waiting for this member's session to time out.
    consumer.unsubscribe();
    tracing::info!(
        frames = stats.frames,
        malformed = stats.malformed,
        replayed = stats.replayed,
        events = stats.events,
        alerts = stats.alerts,
        alert_latency_p50_ms = alerting.as_ref().and_then(|a| a.latency_quantile_ms(0.5)),
        alert_latency_p95_ms = alerting.as_ref().and_then(|a| a.latency_quantile_ms(0.95)),
        checkpoints = stats.checkpoints,
        "Tracker stopped"
    );
    Ok(stats)
}

/// When and where checkpoints are written, and what the latest one covers.
struct Checkpoints {
    dir: PathBuf,
    every: Duration,
    last: Instant,
    /// Offsets covered by the latest checkpoint (an idle tracker writes none).
    covered: BTreeMap<i32, i64>,
    /// Ids of the open alerts the latest checkpoint lists.
    open_alert_ids: Vec<String>,
    written: u64,
}

impl Checkpoints {
    /// Writes a checkpoint when one is due and there is something new, and
    /// at once when the set of open alerts changed (so a crash leaves none
    /// unlisted, also while no detections arrive).
    fn tick(
        &mut self,
        offsets: &BTreeMap<i32, i64>,
        engine: &Engine,
        open_alerts: &[alerts::AlertEvent],
        consumer: &StreamConsumer,
        registry: &Registry,
    ) -> Result<(), TrackerError> {
        let alerts_changed = open_alerts.len() != self.open_alert_ids.len()
            || open_alerts
                .iter()
                .zip(&self.open_alert_ids)
                .any(|(a, id)| a.alert_id != *id);
        let due = self.last.elapsed() >= self.every && *offsets != self.covered;
        if !due && !alerts_changed {
            return Ok(());
        }
        self.write(
            offsets,
            engine,
            open_alerts,
            consumer,
            registry,
            CommitMode::Async,
        )
    }

    /// Writes a checkpoint, then commits the offsets it covers.
    fn write(
        &mut self,
        offsets: &BTreeMap<i32, i64>,
        engine: &Engine,
        open_alerts: &[alerts::AlertEvent],
        consumer: &StreamConsumer,
        registry: &Registry,
        mode: CommitMode,
    ) -> Result<(), TrackerError> {
        self.last = Instant::now();
        let bytes = write_checkpoint(&self.dir, offsets, engine, open_alerts)?;
        self.covered = offsets.clone();
        self.open_alert_ids = open_alerts.iter().map(|a| a.alert_id.clone()).collect();
        self.written += 1;
        // The checkpoint is the source of truth: messages it covers are skipped
        // on restart, so a failed commit (e.g. during a rebalance) costs only a
        // re-read of those messages, never a duplicate or a loss.
        if let Err(error) = commit(consumer, offsets, mode) {
            registry.count(
                "argus_tracker_commit_errors_total",
                "Offset commits Kafka refused (the checkpoint still covers them).",
                &[],
                1,
            );
            tracing::warn!(%error, "Offset commit failed; the checkpoint covers these messages");
        }
        registry.count(
            "argus_tracker_checkpoints_total",
            "Checkpoints written.",
            &[],
            1,
        );
        registry.gauge(
            "argus_tracker_checkpoint_bytes",
            "Size of the latest checkpoint.",
            &[],
            bytes as f64,
        );
        tracing::debug!(bytes, ?offsets, "Checkpoint written");
        Ok(())
    }
}

/// Engine gauges and totals, once per message.
fn report(registry: &Registry, engine: &Engine) {
    let g = engine.gallery_stats();
    let t = engine.tracking_stats();
    registry.gauge(
        "argus_tracker_tracks_alive",
        "Tracks alive (tentative and confirmed) over all cameras.",
        &[],
        engine.live_tracks() as f64,
    );
    registry.gauge(
        "argus_tracker_gallery_entries",
        "Ended sightings held by the re-identification gallery.",
        &[],
        g.entries as f64,
    );
    registry.count_total(
        "argus_tracker_reid_ids_minted_total",
        "Global person ids minted.",
        &[],
        g.ids_minted,
    );
    registry.count_total(
        "argus_tracker_reid_matches_total",
        "New tracks that re-used a person id.",
        &[],
        g.matches,
    );
    registry.count_total(
        "argus_tracker_reid_merges_total",
        "Person ids merged into another.",
        &[],
        g.merges,
    );
    registry.count_total(
        "argus_tracker_rejected_detections_total",
        "Detections skipped: non-finite, or zero or negative size.",
        &[],
        t.rejected_detections,
    );
    registry.count_total(
        "argus_tracker_numeric_failures_total",
        "Covariances that were not positive definite (handled).",
        &[],
        t.numeric_failures,
    );
    registry.count_total(
        "argus_tracker_matches_total",
        "Detections matched to tracks.",
        &[],
        t.matches,
    );
}

/// The next message of an optional consumer (never, without one).
async fn next_message(consumer: Option<&StreamConsumer>) -> KafkaResult<BorrowedMessage<'_>> {
    match consumer {
        Some(consumer) => consumer.recv().await,
        None => std::future::pending().await,
    }
}

/// Sends one alert and waits for Kafka's acknowledgement.
async fn send_alert(producer: &FutureProducer, alert: &Alert) -> Result<(), TrackerError> {
    let key = topics::key(&alert.camera_id);
    let payload = wire::encode(alert);
    Ok(kafka::send(producer, topics::ALERTS, key, &payload, Timeout::Never).await?)
}

/// Upper bounds of the alert latency histogram, seconds.
const LATENCY_BUCKETS_S: [(f64, &str); 8] = [
    (0.05, "0.05"),
    (0.1, "0.1"),
    (0.25, "0.25"),
    (0.5, "0.5"),
    (1.0, "1"),
    (2.5, "2.5"),
    (10.0, "10"),
    (f64::INFINITY, "+Inf"),
];

/// Publishes alerts and waits until Kafka acknowledged all; the latency of
/// each raise (trigger capture time to acknowledgement) goes to the
/// histogram `argus_tracker_alert_latency_seconds` and the log.
async fn publish_alerts(
    producer: &FutureProducer,
    alerts: &[Alert],
    alerting: &mut Alerting,
    registry: &Registry,
) -> Result<usize, TrackerError> {
    if alerts.is_empty() {
        return Ok(0);
    }
    let deliveries: Vec<_> = alerts
        .iter()
        .map(|alert| send_alert(producer, alert))
        .collect();
    for (alert, result) in alerts
        .iter()
        .zip(futures::future::join_all(deliveries).await)
    {
        result?;
        let action = if alert.closed { "closed" } else { "raised" };
        registry.count(
            "argus_tracker_alerts_total",
            "Alert events published and acknowledged, by rule and action.",
            &[("rule", alert.rule.as_str()), ("action", action)],
            1,
        );
        if alert.closed {
            tracing::info!(alert = %alert.alert_id, camera = %alert.camera_id, "Alert closed");
            continue;
        }
        let latency_s = now_us().saturating_sub(alert.trigger_ts_us) as f64 / 1e6;
        alerting.record_latency(latency_s * 1000.0);
        for (bound, label) in LATENCY_BUCKETS_S {
            if latency_s <= bound {
                registry.count(
                    "argus_tracker_alert_latency_seconds_bucket",
                    "Raised alerts by latency from the triggering frame's capture to Kafka's acknowledgement (cumulative buckets).",
                    &[("le", label)],
                    1,
                );
            }
        }
        registry.count(
            "argus_tracker_alert_latency_seconds_count",
            "Raised alerts whose latency was measured.",
            &[],
            1,
        );
        tracing::info!(
            alert = %alert.alert_id,
            rule = %alert.rule,
            camera = %alert.camera_id,
            persons = ?alert.person_ids,
            latency_ms = latency_s * 1000.0,
            message = %alert.message,
            "Alert raised"
        );
    }
    registry.gauge(
        "argus_tracker_alerts_open",
        "Alerts raised and not yet closed.",
        &[],
        alerting.open() as f64,
    );
    Ok(alerts.len())
}

/// Publishes outputs to their topics and waits until Kafka acknowledged all.
async fn publish(
    producer: &FutureProducer,
    outputs: &[Output],
    registry: &Registry,
) -> Result<usize, TrackerError> {
    let deliveries: Vec<_> = outputs
        .iter()
        .map(|output| {
            let (topic, kind, key, payload) = match output {
                Output::Presence(e) => (
                    topics::PRESENCE,
                    if e.kind == schemas::v1::presence_event::Kind::Exit as i32 {
                        "exit"
                    } else {
                        "enter"
                    },
                    e.camera_id.clone(),
                    wire::encode(e),
                ),
                Output::Merge(m) => (
                    topics::IDENTITY,
                    "merge",
                    m.camera_id.clone(),
                    wire::encode(m),
                ),
                Output::Summary(s) => (
                    topics::TRACKS,
                    "summary",
                    s.camera_id.clone(),
                    wire::encode(s),
                ),
            };
            async move {
                let record = FutureRecord::to(topic)
                    .key(topics::key(&key))
                    .payload(&payload);
                producer.send(record, Timeout::Never).await.map(|_| kind)
            }
        })
        .collect();
    for result in futures::future::join_all(deliveries).await {
        let kind = result.map_err(|(error, _)| error)?;
        registry.count(
            "argus_tracker_events_total",
            "Events published and acknowledged, by kind.",
            &[("kind", kind)],
            1,
        );
    }
    Ok(outputs.len())
}
