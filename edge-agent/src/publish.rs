//! Kafka egress: protobuf-encoded detections and camera health, keyed by
//! camera id. Deliveries are pipelined (many in flight, awaited in order);
//! a failed delivery is logged as an error (data loss) and counted.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use futures::StreamExt;
use futures::stream::FuturesOrdered;
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};
use rdkafka::util::Timeout;
use schemas::v1::{CameraHealth, FrameDetections};
use schemas::{topics, wire};
use service_kit::clock::now_us;
use tokio::sync::mpsc;

use crate::config::CameraConfig;
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
    }
}

/// Sends everything from `rx` until it closes, plus a health report of every
/// camera each `health_interval_s`; then flushes the producer.
pub async fn publish_loop(
    producer: FutureProducer,
    mut rx: mpsc::Receiver<Outgoing>,
    cameras: Arc<Vec<CameraConfig>>,
    stats: Arc<Vec<Arc<CameraStats>>>,
    health_interval_s: f64,
) {
    let mut in_flight = FuturesOrdered::new();
    let mut failures = 0u64;
    let mut sent = 0u64;
    let mut tick = tokio::time::interval(Duration::from_secs_f64(health_interval_s));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut closed = false;
    while !closed || !in_flight.is_empty() {
        let mut batch: Vec<(&'static str, String, Vec<u8>)> = Vec::new();
        tokio::select! {
            biased;
            Some(result) = in_flight.next(), if !in_flight.is_empty() => {
                match result {
                    Ok(_) => sent += 1,
                    Err((error, _)) => {
                        failures += 1;
                        tracing::error!(%error, failures, "Kafka delivery failed; message lost");
                    }
                }
            }
            message = rx.recv(), if !closed => match message {
                None => closed = true,
                Some(Outgoing::Frame(frame)) => batch.push((topics::DETECTIONS, frame.camera_id.clone(), wire::encode(&frame))),
                Some(Outgoing::Health(index)) => {
                    let report = health_report(&cameras[index], &stats[index]);
                    batch.push((topics::CAMERA_HEALTH, report.camera_id.clone(), wire::encode(&report)));
                }
            },
            _ = tick.tick(), if !closed => {
                for (camera, stats) in cameras.iter().zip(stats.iter()) {
                    let report = health_report(camera, stats);
                    batch.push((topics::CAMERA_HEALTH, report.camera_id.clone(), wire::encode(&report)));
                }
            }
        }
        for (topic, key, payload) in batch {
            let producer = producer.clone();
            in_flight.push_back(async move {
                let record = FutureRecord::to(topic)
                    .key(topics::key(&key))
                    .payload(&payload);
                producer.send(record, Timeout::Never).await
            });
        }
    }
    if let Err(error) = producer.flush(Timeout::After(Duration::from_secs(30))) {
        tracing::error!(%error, "Kafka flush failed");
    }
    tracing::info!(sent, failures, "Publisher stopped");
}
