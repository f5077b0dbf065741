//! The alert rules inside the tracker: tracked frames, track ends and camera
//! health reports go into the pure [`alerts::Engine`]; what it raises and
//! closes goes out as `schemas::v1::Alert` on `argus.alerts.v1`.
//!
//! Rules run here because the tracker is where a frame's people get their
//! global ids: the alert for a frame leaves within the handling of that
//! frame, which is what keeps the trigger-to-Kafka latency low.

use std::time::{Duration, Instant};

use alerts::{AlertEvent, FrameObs, HealthObs, HealthState, Severity};
use schemas::v1::camera_health::State;
use schemas::v1::{Alert, AlertEvidence, CameraHealth, FrameDetections, alert};

use crate::engine::{Engine, Output};

/// How often time-based conditions are checked without input.
const TICK: Duration = Duration::from_millis(250);

/// Latencies kept for the percentile in the logs (the newest).
const LATENCY_SAMPLES: usize = 4096;

/// The rules engine and what the service reports about it.
#[derive(Debug)]
pub struct Alerting {
    rules: alerts::Engine,
    last_tick: Instant,
    latencies_ms: Vec<f64>,
    next_sample: usize,
}

impl Alerting {
    /// Rules from the configuration (already validated).
    pub fn new(rules: &alerts::RulesConfig) -> Result<Self, alerts::ConfigError> {
        Ok(Alerting {
            rules: alerts::Engine::new(rules)?,
            last_tick: Instant::now(),
            latencies_ms: Vec::new(),
            next_sample: 0,
        })
    }

    /// A tracked frame and what tracking it produced: track ends first
    /// (their people left), then the people the frame shows.
    pub fn on_frame(
        &mut self,
        tracker: &Engine,
        frame: &FrameDetections,
        outputs: &[Output],
    ) -> Vec<Alert> {
        let mut alerts = self.on_outputs(outputs);
        if !frame.end_of_stream {
            let observed = FrameObs {
                camera_id: frame.camera_id.clone(),
                ts_us: frame.capture_ts_us,
                tracks: tracker.persons_in_frame(&frame.camera_id, frame.capture_ts_us),
            };
            alerts.extend(self.rules.on_frame(&observed).iter().map(to_proto));
        }
        alerts
    }

    /// Track ends among tracking outputs (people who left a camera).
    pub fn on_outputs(&mut self, outputs: &[Output]) -> Vec<Alert> {
        let mut events = Vec::new();
        for output in outputs {
            if let Output::Summary(summary) = output
                && summary.person_id != 0
            {
                events.extend(self.rules.on_track_end(
                    &summary.camera_id,
                    summary.person_id,
                    summary.last_ts_us,
                ));
            }
        }
        events.iter().map(to_proto).collect()
    }

    /// A camera health report from an edge agent.
    pub fn on_health(&mut self, report: &CameraHealth) -> Vec<Alert> {
        let state = match report.state() {
            State::Up => HealthState::Up,
            State::Stalled => HealthState::Stalled,
            State::Reconnecting => HealthState::Reconnecting,
            State::Down | State::Unspecified => HealthState::Down,
            State::Ended => HealthState::Ended,
        };
        let observed = HealthObs {
            camera_id: report.camera_id.clone(),
            state,
            since_us: report.since_ts_us,
            ts_us: report.ts_us,
        };
        self.rules
            .on_health(&observed)
            .iter()
            .map(to_proto)
            .collect()
    }

    /// Time-based conditions, at most every 250 ms.
    pub fn tick(&mut self, now_us: i64) -> Vec<Alert> {
        if self.last_tick.elapsed() < TICK {
            return Vec::new();
        }
        self.last_tick = Instant::now();
        self.rules.tick(now_us).iter().map(to_proto).collect()
    }

    /// Alerts open now.
    pub fn open(&self) -> usize {
        self.rules.open_alerts().count()
    }

    /// The raise events of the alerts open now (for the checkpoint).
    pub fn open_events(&self) -> Vec<AlertEvent> {
        self.rules.open_alerts().cloned().collect()
    }

    /// Counters of input the rules skipped.
    pub fn stats(&self) -> alerts::EngineStats {
        self.rules.stats()
    }

    /// Records the latency of a raise acknowledged by Kafka.
    pub fn record_latency(&mut self, ms: f64) {
        if self.latencies_ms.len() < LATENCY_SAMPLES {
            self.latencies_ms.push(ms);
        } else {
            self.latencies_ms[self.next_sample] = ms;
            self.next_sample = (self.next_sample + 1) % LATENCY_SAMPLES;
        }
    }

    /// The `q`-quantile (0..=1) of the recorded latencies, ms; None before any.
    pub fn latency_quantile_ms(&self, q: f64) -> Option<f64> {
        quantile(&self.latencies_ms, q)
    }
}

/// Close events, at `now_us`, for alerts whose conditions are no longer
/// watched (the tracker stopped, or restarted after a crash): every raise
/// gets its close.
pub fn closing(open: &[AlertEvent], now_us: i64, why: &str) -> Vec<Alert> {
    open.iter()
        .map(|raised| {
            let close = AlertEvent {
                closed: true,
                ts_us: now_us.max(raised.ts_us),
                trigger_ts_us: now_us.max(raised.ts_us),
                message: format!("Closed: {why} ({})", raised.message),
                ..raised.clone()
            };
            to_proto(&close)
        })
        .collect()
}

/// Nearest-rank quantile; None for no samples.
fn quantile(samples: &[f64], q: f64) -> Option<f64> {
    let mut sorted: Vec<f64> = samples.iter().copied().filter(|v| v.is_finite()).collect();
    if sorted.is_empty() {
        return None;
    }
    sorted.sort_by(f64::total_cmp);
    let rank = (q.clamp(0.0, 1.0) * sorted.len() as f64).ceil() as usize;
    Some(sorted[rank.clamp(1, sorted.len()) - 1])
}

/// The wire form of an alert event.
pub fn to_proto(event: &AlertEvent) -> Alert {
    let evidence = &event.evidence;
    let [last_x, last_y] = evidence.last_position.unwrap_or_default();
    let mut out = Alert {
        schema_version: schemas::SCHEMA_VERSION,
        alert_id: event.alert_id.clone(),
        rule: event.rule.clone(),
        camera_id: event.camera_id.clone(),
        person_ids: event.person_ids.clone(),
        ts_us: event.ts_us,
        message: event.message.clone(),
        closed: event.closed,
        trigger_ts_us: event.trigger_ts_us,
        evidence: Some(AlertEvidence {
            first_seen_ts_us: evidence.first_seen_us.unwrap_or_default(),
            last_seen_ts_us: evidence.last_seen_us.unwrap_or_default(),
            last_x: last_x as f32,
            last_y: last_y as f32,
            path_px: evidence.path_px as f32,
            max_speed: evidence.max_speed as f32,
            dwell_s: evidence.dwell_s as f32,
            previous_camera_id: evidence.previous_camera.clone().unwrap_or_default(),
            previous_seen_ts_us: evidence.previous_seen_us.unwrap_or_default(),
            count: evidence.count.unwrap_or_default(),
        }),
        ..Default::default()
    };
    out.set_severity(match event.severity {
        Severity::Info => alert::Severity::Info,
        Severity::Warning => alert::Severity::Warning,
        Severity::Critical => alert::Severity::Critical,
    });
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_use_the_nearest_rank() {
        assert_eq!(quantile(&[], 0.95), None);
        let samples: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(quantile(&samples, 0.95), Some(95.0));
        assert_eq!(quantile(&samples, 0.0), Some(1.0));
        assert_eq!(quantile(&samples, 1.0), Some(100.0));
        assert_eq!(quantile(&[f64::NAN, 3.0], 0.5), Some(3.0));
    }

    #[test]
    fn events_map_onto_the_wire_alert() {
        let event = AlertEvent {
            alert_id: "loiter:cam:7:1000".into(),
            rule: "loiter".into(),
            severity: Severity::Critical,
            camera_id: "cam".into(),
            person_ids: vec![7],
            ts_us: 1000,
            message: "person 7 stayed".into(),
            closed: false,
            evidence: alerts::Evidence {
                first_seen_us: Some(10),
                last_position: Some([1.5, 2.5]),
                dwell_s: 31.0,
                ..Default::default()
            },
            trigger_ts_us: 990,
        };
        let alert = to_proto(&event);
        assert_eq!(alert.severity(), alert::Severity::Critical);
        assert_eq!(alert.person_ids, vec![7]);
        assert_eq!(alert.trigger_ts_us, 990);
        let evidence = alert.evidence.unwrap();
        assert_eq!(
            (evidence.first_seen_ts_us, evidence.last_x, evidence.dwell_s),
            (10, 1.5, 31.0)
        );
        assert_eq!(evidence.previous_camera_id, "");
    }

    #[test]
    fn unknown_health_states_count_as_down() {
        let config: alerts::RulesConfig = toml::from_str(
            "[[rules]]\nname = \"down\"\nkind = \"camera_down\"\nmax_down_s = 5.0\n",
        )
        .unwrap();
        let mut alerting = Alerting::new(&config).unwrap();
        let mut report = CameraHealth {
            camera_id: "cam".into(),
            since_ts_us: 1_000_000,
            ts_us: 1_000_000,
            ..Default::default()
        };
        report.set_state(State::Unspecified);
        assert!(alerting.on_health(&report).is_empty());
        report.ts_us = 7_000_000;
        let raised = alerting.on_health(&report);
        assert_eq!(raised.len(), 1, "{raised:?}");
        assert_eq!(raised[0].ts_us, 6_000_000);
        assert!(!raised[0].closed);
        assert_eq!(alerting.open(), 1);
    }
}
