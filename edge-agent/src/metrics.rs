//! The agent's Prometheus metrics and its `/healthz` rule, served when the
//! config has a `[metrics]` section.
//!
//! # Metrics
//!
//! Per camera (label `camera`), copied from the camera's counters
//! ([`CameraStats`]) at every scrape:
//! - `argus_edge_frames_in_total`: frames delivered by the decoder;
//! - `argus_edge_frames_analysed_total`: frames the detector analysed;
//! - `argus_edge_frames_dropped_total`: frames shed by the queue because
//!   inference was busy (live cameras keep the newest);
//! - `argus_edge_persons_masked_total`: people dropped by ROI and exclusion
//!   masks;
//! - `argus_edge_reconnects_total`: source reconnects;
//! - `argus_edge_camera_up` (gauge): 1 while the camera is UP, else 0;
//! - `argus_edge_camera_state` (gauge, label `state`: `up`, `stalled`,
//!   `reconnecting`, `down`, `ended`): 1 for the camera's current state.
//!
//! Per camera, counted by the inference thread as it publishes:
//! - `argus_edge_persons_total`: person boxes published;
//! - `argus_edge_frames_failed_total`: frames that could not be analysed
//!   (logged at WARN with the error);
//! - `argus_edge_crops_total` and `argus_edge_crop_bytes_total`: JPEG crops
//!   sent and their bytes (only with `[crops] enabled`).
//!
//! Per batch, by the inference thread:
//! - `argus_edge_letterbox_seconds` (histogram): letterboxing a whole
//!   batch into the detector's input (on the preparation thread, while the
//!   models run on the batch before, where there is one);
//! - `argus_edge_detector_latency_seconds` (histogram): one detector call
//!   (model, decoding, NMS) for a whole batch;
//! - `argus_edge_detector_batch_frames` (histogram): frames per detector
//!   call;
//! - `argus_edge_embedder_latency_seconds` (histogram): one embedder call
//!   (crop, model, normalisation);
//! - `argus_edge_embedder_crops_total`: crops embedded.
//!
//! The egress (no labels), copied from [`EgressStats`] at every scrape:
//! `argus_edge_egress_spooled_records_total`,
//! `argus_edge_egress_delivered_records_total`,
//! `argus_edge_egress_delivery_errors_total`,
//! `argus_edge_egress_replayed_records_total`,
//! `argus_edge_egress_dropped_records_total` and `_dropped_bytes_total`
//! (spool full), `argus_edge_egress_unspooled_records_total`,
//! `argus_edge_egress_rejected_records_total`,
//! `argus_edge_egress_recovered_records_total`, and the gauges
//! `argus_edge_egress_pending_records`, `argus_edge_egress_pending_bytes`
//! (the spool's unsent backlog on disk) and `argus_edge_egress_failing`.
//!
//! # Health
//!
//! `/healthz` answers 503 when [`unhealthy_reason`] finds a reason: every
//! camera that has not ended has been out of UP for `unhealthy_after_s`, or
//! Kafka deliveries have been failing for that long. Otherwise 200: a
//! stopping agent whose cameras all ended is healthy. A change either way is
//! logged (WARN with the reason, INFO when healthy again).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use schemas::v1::camera_health::State;
use service_kit::metrics::Registry;

use crate::config::CameraConfig;
use crate::egress::EgressStats;
use crate::source::CameraStats;

/// Latency buckets, seconds: 1 ms to 5 s.
pub const LATENCY_BUCKETS_S: [f64; 12] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
];

/// Batch size buckets, frames (`max_batch` is at most 64).
pub const BATCH_BUCKETS: [f64; 10] = [1.0, 2.0, 3.0, 4.0, 6.0, 8.0, 12.0, 16.0, 32.0, 64.0];

/// What one inference batch cost.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct BatchTimings {
    /// Frames in the detector call.
    pub frames: usize,
    /// Letterboxing the frames into the detector's input; `None` when there
    /// was no detector call.
    pub letterbox: Option<Duration>,
    /// The detector call; `None` when there was none (no valid frame).
    pub detect: Option<Duration>,
    /// Each embedder call and its number of crops.
    pub embed: Vec<(Duration, usize)>,
}

/// The inference thread's metrics.
#[derive(Debug, Clone)]
pub struct InferenceMetrics {
    registry: Registry,
}

impl InferenceMetrics {
    /// Metrics in `registry`; every camera's series start at 0.
    pub fn new(registry: &Registry, cameras: &[CameraConfig]) -> Self {
        let metrics = InferenceMetrics {
            registry: registry.clone(),
        };
        for camera in cameras {
            metrics.analysed(&camera.id, 0);
            metrics.failed(&camera.id, 0);
        }
        metrics
    }

    /// Records a batch's detector and embedder calls.
    pub fn batch(&self, timings: &BatchTimings) {
        let r = &self.registry;
        if let Some(letterbox) = timings.letterbox {
            r.observe(
                "argus_edge_letterbox_seconds",
                "Seconds to letterbox a whole batch into the detector's input (one batch ahead on the preparation thread, where there is one).",
                &LATENCY_BUCKETS_S,
                &[],
                &[letterbox.as_secs_f64()],
            );
        }
        if let Some(detect) = timings.detect {
            r.observe(
                "argus_edge_detector_latency_seconds",
                "Seconds per detector call (model, decoding, NMS) for a whole batch.",
                &LATENCY_BUCKETS_S,
                &[],
                &[detect.as_secs_f64()],
            );
            r.observe(
                "argus_edge_detector_batch_frames",
                "Frames per detector call, each of a different camera.",
                &BATCH_BUCKETS,
                &[],
                &[timings.frames as f64],
            );
        }
        if !timings.embed.is_empty() {
            let seconds: Vec<f64> = timings.embed.iter().map(|(d, _)| d.as_secs_f64()).collect();
            r.observe(
                "argus_edge_embedder_latency_seconds",
                "Seconds per embedder call (crops of every frame of a batch).",
                &LATENCY_BUCKETS_S,
                &[],
                &seconds,
            );
            r.count(
                "argus_edge_embedder_crops_total",
                "Person crops embedded.",
                &[],
                timings.embed.iter().map(|&(_, n)| n as u64).sum(),
            );
        }
    }

    /// Counts the person boxes published for a frame of `camera`.
    pub fn analysed(&self, camera: &str, persons: u64) {
        self.registry.count(
            "argus_edge_persons_total",
            "Person boxes published, per camera.",
            &[("camera", camera)],
            persons,
        );
    }

    /// Counts the JPEG crops sent with a frame of `camera`, and their bytes.
    pub fn crops(&self, camera: &str, crops: u64, bytes: u64) {
        let labels = [("camera", camera)];
        self.registry.count(
            "argus_edge_crops_total",
            "JPEG person crops sent, per camera.",
            &labels,
            crops,
        );
        self.registry.count(
            "argus_edge_crop_bytes_total",
            "Bytes of JPEG person crops sent, per camera.",
            &labels,
            bytes,
        );
    }

    /// Counts frames of `camera` that could not be analysed.
    pub fn failed(&self, camera: &str, frames: u64) {
        self.registry.count(
            "argus_edge_frames_failed_total",
            "Frames that could not be analysed (logged at WARN), per camera.",
            &[("camera", camera)],
            frames,
        );
    }
}

/// Why `/healthz` should answer 503, if it should, at `now_us`: `cameras`
/// are each camera's `(state, since)`, `egress_failing_since_us` when Kafka
/// deliveries started failing (0: they succeed), `after` the grace period.
pub fn unhealthy_reason(
    now_us: i64,
    cameras: &[(State, i64)],
    egress_failing_since_us: i64,
    after: Duration,
) -> Option<String> {
    let after_us = i64::try_from(after.as_micros()).unwrap_or(i64::MAX);
    let for_long = |since: i64| now_us.saturating_sub(since) >= after_us;
    if egress_failing_since_us > 0 && for_long(egress_failing_since_us) {
        return Some(format!(
            "Kafka deliveries have been failing for {:.0} s",
            now_us.saturating_sub(egress_failing_since_us) as f64 / 1e6
        ));
    }
    let mut open = cameras.iter().filter(|(state, _)| *state != State::Ended);
    let mut any_open = false;
    let all_down = open.all(|&(state, since)| {
        any_open = true;
        state != State::Up && for_long(since)
    });
    if any_open && all_down {
        return Some(format!(
            "no camera is up: every camera that has not ended has been down, stalled or \
             reconnecting for at least {:.0} s",
            after.as_secs_f64()
        ));
    }
    None
}

/// The name of a state in the `state` label.
fn state_label(state: State) -> String {
    state.as_str_name().to_ascii_lowercase()
}

/// Every camera state (as the schema lists them, so new ones join).
fn all_states() -> impl Iterator<Item = State> {
    (1..).map_while(|code| State::try_from(code).ok())
}

/// Adds the collector that copies the cameras' and the egress's counters
/// into `registry` and decides health, at every scrape.
pub fn add_agent_collector(
    registry: &Registry,
    cameras: Arc<Vec<CameraConfig>>,
    stats: Arc<Vec<Arc<CameraStats>>>,
    egress: Arc<EgressStats>,
    unhealthy_after: Duration,
) {
    let was_healthy = AtomicBool::new(true);
    registry.add_collector(move |r| {
        let get = |counter: &AtomicU64| counter.load(Ordering::Relaxed);
        let mut states = Vec::with_capacity(cameras.len());
        for (camera, s) in cameras.iter().zip(stats.iter()) {
            let labels = [("camera", camera.id.as_str())];
            r.count_total(
                "argus_edge_frames_in_total",
                "Frames delivered by the decoder, per camera.",
                &labels,
                get(&s.frames_in),
            );
            r.count_total(
                "argus_edge_frames_analysed_total",
                "Frames the detector analysed, per camera.",
                &labels,
                get(&s.frames_analysed),
            );
            r.count_total(
                "argus_edge_frames_dropped_total",
                "Frames shed by the queue because inference was busy (live cameras keep the newest), per camera.",
                &labels,
                get(&s.frames_dropped),
            );
            r.count_total(
                "argus_edge_frames_skipped_total",
                "Frames decoded but not analysed because of the camera's max_fps, per camera.",
                &labels,
                get(&s.frames_skipped),
            );
            r.count_total(
                "argus_edge_loops_total",
                "Times a looping file camera went back to its start.",
                &labels,
                get(&s.loops),
            );
            r.count_total(
                "argus_edge_persons_masked_total",
                "Person boxes dropped by the camera's ROI and exclusion masks.",
                &labels,
                get(&s.persons_masked),
            );
            r.count_total(
                "argus_edge_reconnects_total",
                "Times the camera's source was connected again.",
                &labels,
                get(&s.reconnects),
            );
            let (state, since, _) = s.state();
            states.push((state, since));
            r.gauge(
                "argus_edge_camera_up",
                "1 while the camera delivers frames (UP), else 0.",
                &labels,
                f64::from(u8::from(state == State::Up)),
            );
            for each in all_states() {
                let name = state_label(each);
                r.gauge(
                    "argus_edge_camera_state",
                    "1 for the camera's current state (up, stalled, reconnecting, down, ended).",
                    &[("camera", camera.id.as_str()), ("state", name.as_str())],
                    f64::from(u8::from(state == each)),
                );
            }
        }
        collect_egress(r, &egress);
        let failing_since = egress.failing_since_us.load(Ordering::Relaxed);
        let reason = unhealthy_reason(
            service_kit::clock::now_us(),
            &states,
            failing_since,
            unhealthy_after,
        );
        let healthy = reason.is_none();
        r.set_healthy(healthy);
        if was_healthy.swap(healthy, Ordering::Relaxed) != healthy {
            match reason {
                Some(reason) => tracing::warn!(%reason, "Edge agent unhealthy; /healthz answers 503"),
                None => tracing::info!("Edge agent healthy again"),
            }
        }
    });
}

fn collect_egress(r: &Registry, egress: &EgressStats) {
    let e = egress.summary();
    let counters = [
        (
            "argus_edge_egress_spooled_records_total",
            "Records written to the spool.",
            e.spooled_records,
        ),
        (
            "argus_edge_egress_delivered_records_total",
            "Records Kafka confirmed.",
            e.delivered_records,
        ),
        (
            "argus_edge_egress_delivery_errors_total",
            "Failed deliveries (each record is sent again from the spool).",
            e.delivery_errors,
        ),
        (
            "argus_edge_egress_replayed_records_total",
            "Records sent again: after a failed delivery, or left in the spool by a previous run.",
            e.replayed_records,
        ),
        (
            "argus_edge_egress_dropped_records_total",
            "Unsent records dropped because the spool was full (data loss).",
            e.dropped_records,
        ),
        (
            "argus_edge_egress_dropped_bytes_total",
            "Bytes of the records dropped because the spool was full.",
            e.dropped_bytes,
        ),
        (
            "argus_edge_egress_unspooled_records_total",
            "Messages that could not be written to the spool (data loss).",
            e.unspooled_records,
        ),
        (
            "argus_edge_egress_rejected_records_total",
            "Records Kafka refused for good, dropped (data loss).",
            e.rejected_records,
        ),
        (
            "argus_edge_egress_recovered_records_total",
            "Unsent records found in the spool at start.",
            e.recovered_records,
        ),
    ];
    for (name, help, total) in counters {
        r.count_total(name, help, &[], total);
    }
    r.gauge(
        "argus_edge_egress_pending_records",
        "Records in the spool that Kafka has not confirmed.",
        &[],
        e.pending_records as f64,
    );
    r.gauge(
        "argus_edge_egress_pending_bytes",
        "Bytes on disk of the records Kafka has not confirmed.",
        &[],
        e.pending_bytes as f64,
    );
    r.gauge(
        "argus_edge_egress_failing",
        "1 while Kafka deliveries fail (from a failed delivery to the next confirmed one).",
        &[],
        f64::from(u8::from(e.kafka_failing)),
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: i64 = 1_000_000;
    const AFTER: Duration = Duration::from_secs(60);

    #[test]
    fn healthy_while_a_camera_is_up_or_the_outage_is_young() {
        let now = 1_000 * S;
        let up = (State::Up, now - 500 * S);
        let long_down = (State::Stalled, now - 120 * S);
        let young_down = (State::Reconnecting, now - 10 * S);
        assert_eq!(unhealthy_reason(now, &[up, long_down], 0, AFTER), None);
        assert_eq!(
            unhealthy_reason(now, &[young_down, long_down], 0, AFTER),
            None
        );
        assert_eq!(
            unhealthy_reason(now, &[up], now - 30 * S, AFTER),
            None,
            "Kafka failing for 30 s: the spool rides it out"
        );
    }

    #[test]
    fn unhealthy_when_every_open_camera_is_down_for_long_or_kafka_keeps_failing() {
        let now = 1_000 * S;
        let ended = (State::Ended, now - 500 * S);
        let down = (State::Down, now - 60 * S);
        let stalled = (State::Stalled, now - 61 * S);
        let reason = unhealthy_reason(now, &[ended, down, stalled], 0, AFTER).unwrap();
        assert!(reason.starts_with("no camera is up"), "{reason}");
        let reason = unhealthy_reason(now, &[(State::Up, 0)], now - 90 * S, AFTER).unwrap();
        assert_eq!(reason, "Kafka deliveries have been failing for 90 s");
    }

    #[test]
    fn ended_cameras_never_make_the_agent_unhealthy() {
        let now = 1_000 * S;
        let ended = (State::Ended, 0);
        assert_eq!(unhealthy_reason(now, &[ended, ended], 0, AFTER), None);
        assert_eq!(unhealthy_reason(now, &[], 0, AFTER), None);
    }

    #[test]
    fn state_labels_name_every_state() {
        let names: Vec<String> = all_states().map(state_label).collect();
        assert_eq!(names, ["up", "stalled", "reconnecting", "down", "ended"]);
    }
}
