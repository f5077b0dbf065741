//! The tracker service: consume detections, track, publish presence events.
//!
//! Offsets of a detections message are stored only after the presence events
//! it caused are acknowledged by Kafka (at-least-once; event ids let
//! consumers deduplicate). On shutdown the tracker first reads everything
//! already written to its partitions (bounded by `drain_timeout_s`), then
//! ends all open tracks and flushes.

use std::future::Future;
use std::time::{Duration, Instant};

use rdkafka::consumer::Consumer;
use rdkafka::message::Message;
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};
use rdkafka::util::Timeout;
use schemas::v1::{FrameDetections, PresenceEvent};
use schemas::{topics, wire};
use service_kit::kafka::Progress;
use service_kit::shutdown::Shutdown;

use crate::config::TrackerConfig;
use crate::engine::Engine;

/// The tracker stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum TrackerError {
    /// Kafka refused a client or a delivery.
    #[error("Kafka: {0}")]
    Kafka(#[from] rdkafka::error::KafkaError),
}

/// Totals of a run.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct TrackerStats {
    /// Detection messages handled.
    pub frames: u64,
    /// Messages that could not be decoded (skipped, offset stored).
    pub malformed: u64,
    /// Presence events published.
    pub events: u64,
}

/// Runs the tracker until `shutdown` completes and the drain finishes.
pub async fn run(
    config: TrackerConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<TrackerStats, TrackerError> {
    let consumer =
        config
            .kafka
            .consumer("argus-tracker", &config.group_id, &[topics::DETECTIONS])?;
    let producer = config.kafka.producer("argus-tracker")?;
    let run_id = format!(
        "{:x}",
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_micros())
            .unwrap_or(0)
    );
    let mut engine = Engine::new(config.tracking.clone(), config.reid.clone(), run_id);
    let mut stats = TrackerStats::default();
    let mut progress = Progress::default();
    let mut shutdown = Shutdown::from_future(shutdown);
    let mut drain_deadline: Option<Instant> = None;
    let mut last_check = Instant::now();
    tracing::info!(group = %config.group_id, "Tracker consuming detections");
    loop {
        tokio::select! {
            biased;
            () = shutdown.wait(), if drain_deadline.is_none() => {
                tracing::info!("Draining detections already written");
                drain_deadline = Some(Instant::now() + Duration::from_secs_f64(config.drain_timeout_s));
            }
            message = consumer.recv() => {
                let message = message?;
                stats.frames += 1;
                let events = match message.payload().map(wire::decode::<FrameDetections>) {
                    Some(Ok(frame)) => engine.on_frame(&frame),
                    Some(Err(error)) => {
                        stats.malformed += 1;
                        tracing::warn!(%error, partition = message.partition(), offset = message.offset(), "Skipping undecodable detections");
                        Vec::new()
                    }
                    None => {
                        stats.malformed += 1;
                        Vec::new()
                    }
                };
                stats.events += publish(&producer, &events).await? as u64;
                consumer.store_offset_from_message(&message)?;
                progress.record(&message);
            }
            () = tokio::time::sleep(Duration::from_millis(200)), if drain_deadline.is_some() => {}
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
    let closing = engine.close_all();
    stats.events += publish(&producer, &closing).await? as u64;
    producer.flush(Timeout::After(Duration::from_secs(30)))?;
    if let Err(error) = consumer.commit_consumer_state(rdkafka::consumer::CommitMode::Sync) {
        tracing::warn!(%error, "Final offset commit failed");
    }
    tracing::info!(
        frames = stats.frames,
        malformed = stats.malformed,
        events = stats.events,
        "Tracker stopped"
    );
    Ok(stats)
}

/// Publishes events and waits until Kafka acknowledged all of them.
async fn publish(
    producer: &FutureProducer,
    events: &[PresenceEvent],
) -> Result<usize, TrackerError> {
    let deliveries: Vec<_> = events
        .iter()
        .map(|event| {
            let payload = wire::encode(event);
            let key = event.camera_id.clone();
            async move {
                let record = FutureRecord::to(topics::PRESENCE)
                    .key(topics::key(&key))
                    .payload(&payload);
                producer.send(record, Timeout::Never).await
            }
        })
        .collect();
    for result in futures::future::join_all(deliveries).await {
        result.map_err(|(error, _)| error)?;
    }
    Ok(events.len())
}
