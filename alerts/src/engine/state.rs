//! What the engine remembers of cameras and persons: each camera's health,
//! activity and clock, each person's visit to a camera (path, speed), and
//! each person's last camera.

use std::collections::{BTreeMap, VecDeque};

use super::checks::Seen;
use super::{Limits, us_to_secs};
use crate::HealthState;
use crate::config::MAX_SPEED_OBSERVATIONS;

/// How far back, in speed windows, the speed estimate stretches at low
/// frame rates to find `speed_min_observations` observations.
const SPEED_STRETCH: i64 = 5;

/// What is known of a camera.
#[derive(Debug, Clone)]
pub(crate) struct CameraState {
    /// Its latest frame.
    pub(crate) last_frame_us: Option<i64>,
    /// Its latest health report.
    pub(crate) last_report_us: Option<i64>,
    /// Capture time of its latest frame or report; none before the first.
    last_heard_us: Option<i64>,
    /// When the engine began watching it (its first input, or the engine's
    /// first input for cameras that camera_down rules name).
    watched_since_us: i64,
    /// How far the engine's clock was ahead of `last_heard_us` when that
    /// input arrived: the camera's lag (a Kafka backlog, a slow edge).
    lag_us: i64,
    /// Its latest reported state.
    pub(crate) health: Option<Health>,
    /// Persons seen on it.
    pub(crate) visits: BTreeMap<u64, Visit>,
}

/// A reported health state.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Health {
    /// The state.
    pub(crate) state: HealthState,
    /// When the camera entered it (as reported, at most `known_us`).
    pub(crate) since_us: i64,
    /// The first report of it.
    pub(crate) known_us: i64,
}

/// A camera being down.
#[derive(Debug, Clone, Copy)]
pub(crate) struct DownEpisode {
    /// Since when (camera time).
    pub(crate) since_us: i64,
    /// Since when the engine knows.
    pub(crate) known_us: i64,
    /// The reported state, or none for silence.
    pub(crate) state: Option<HealthState>,
}

impl CameraState {
    /// A camera watched from `ts`, not heard from yet.
    pub(crate) fn new(ts: i64) -> Self {
        CameraState {
            last_frame_us: None,
            last_report_us: None,
            last_heard_us: None,
            watched_since_us: ts,
            lag_us: 0,
            health: None,
            visits: BTreeMap::new(),
        }
    }

    /// Records input captured at `ts` arriving when the engine's clock
    /// reads `now`: the camera is alive, and its lag is measured anew.
    pub(crate) fn heard(&mut self, ts: i64, now: i64) {
        if self.last_heard_us.is_none_or(|last| ts >= last) {
            self.last_heard_us = Some(ts);
            self.lag_us = now.saturating_sub(ts).max(0);
        }
    }

    /// The camera's own time when the engine's clock reads `now`: the clock
    /// less the camera's lag, so a camera whose input arrives late (but
    /// arrives) is judged on its own timestamps, and a silent one ages with
    /// the engine's clock.
    pub(crate) fn clock(&self, now: i64) -> i64 {
        let heard = self.last_heard_us.unwrap_or(self.watched_since_us);
        now.saturating_sub(self.lag_us).max(heard)
    }

    /// Whether the camera is down when the engine's clock reads `now`: by
    /// its reported state, or silent for at least `max_down_us` of its own
    /// time. ENDED is never down.
    pub(crate) fn down(&self, now: i64, max_down_us: i64) -> Option<DownEpisode> {
        let heard = self.last_heard_us.unwrap_or(self.watched_since_us);
        match self.health {
            Some(h) if h.state.is_down() => Some(DownEpisode {
                since_us: h.since_us,
                known_us: h.known_us,
                state: Some(h.state),
            }),
            Some(h) if h.state == HealthState::Ended => None,
            _ if self.clock(now).saturating_sub(heard) >= max_down_us => Some(DownEpisode {
                since_us: heard,
                known_us: heard,
                state: None,
            }),
            _ => None,
        }
    }
}

/// A person's visit to a camera.
#[derive(Debug, Clone)]
pub(crate) struct Visit {
    /// First observation.
    pub(crate) first_seen_us: i64,
    /// Latest observation.
    pub(crate) last_seen_us: i64,
    /// Latest feet point.
    pub(crate) last_feet: [f64; 2],
    /// Latest box centre.
    last_centre: [f64; 2],
    /// Distance travelled by the box centre, pixels.
    pub(crate) path_px: f64,
    /// Recent box centres, oldest first, for the speed.
    samples: VecDeque<(i64, [f64; 2])>,
    /// Smoothed calibrated speed, once there are enough samples.
    pub(crate) speed: Option<f64>,
    /// Largest smoothed speed.
    pub(crate) max_speed: f64,
}

impl Visit {
    /// A visit starting with this observation.
    pub(crate) fn new(ts: i64, seen: &Seen) -> Self {
        Visit {
            first_seen_us: ts,
            last_seen_us: ts,
            last_feet: seen.feet,
            last_centre: seen.centre,
            path_px: 0.0,
            samples: VecDeque::from([(ts, seen.centre)]),
            speed: None,
            max_speed: 0.0,
        }
    }

    /// Adds a later observation: path, samples, speed.
    pub(crate) fn observe(&mut self, ts: i64, seen: &Seen, limits: &Limits, factor: f64) {
        let [x, y] = seen.centre;
        let step = (x - self.last_centre[0]).hypot(y - self.last_centre[1]);
        if step.is_finite() {
            self.path_px += step;
        }
        self.last_seen_us = ts;
        self.last_feet = seen.feet;
        self.last_centre = seen.centre;
        self.samples.push_back((ts, seen.centre));
        let window_start = ts.saturating_sub(limits.speed_window_us);
        let stretch_start = ts.saturating_sub(limits.speed_window_us.saturating_mul(SPEED_STRETCH));
        let min = limits.speed_min_observations;
        while self.samples.front().is_some_and(|&(t, _)| {
            t < stretch_start || (t < window_start && self.samples.len() > min)
        }) || self.samples.len() > MAX_SPEED_OBSERVATIONS
        {
            self.samples.pop_front();
        }
        self.speed = if self.samples.len() >= min {
            theil_sen_speed(&self.samples).map(|speed| speed / factor)
        } else {
            None
        };
        if let Some(speed) = self.speed {
            self.max_speed = self.max_speed.max(speed);
        }
    }
}

/// Speed (units per second) of a point moving through the samples: the
/// Theil–Sen estimate per axis, the median of the slopes between every two
/// samples, which a single wild sample cannot drag (breakdown point 29%).
fn theil_sen_speed(samples: &VecDeque<(i64, [f64; 2])>) -> Option<f64> {
    let pairs = samples.len() * samples.len().saturating_sub(1) / 2;
    let (mut vx, mut vy) = (Vec::with_capacity(pairs), Vec::with_capacity(pairs));
    for (i, &(t0, [x0, y0])) in samples.iter().enumerate() {
        for &(t1, [x1, y1]) in samples.iter().skip(i + 1) {
            let dt = us_to_secs(t1.saturating_sub(t0));
            if dt > 0.0 {
                vx.push((x1 - x0) / dt);
                vy.push((y1 - y0) / dt);
            }
        }
    }
    let speed = median(&mut vx)?.hypot(median(&mut vy)?);
    speed.is_finite().then_some(speed)
}

/// The median (mean of the middle two for an even count); none when empty.
fn median(values: &mut [f64]) -> Option<f64> {
    values.sort_unstable_by(f64::total_cmp);
    let n = values.len();
    match n {
        0 => None,
        _ if n % 2 == 1 => Some(values[n / 2]),
        _ => Some((values[n / 2 - 1] + values[n / 2]) / 2.0),
    }
}

/// The camera a person was seen on last.
#[derive(Debug, Clone)]
pub(crate) struct LastCamera {
    /// The camera.
    pub(crate) camera: String,
    /// When the person was last seen there.
    pub(crate) seen_us: i64,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn samples(points: &[(i64, f64, f64)]) -> VecDeque<(i64, [f64; 2])> {
        points.iter().map(|&(t, x, y)| (t, [x, y])).collect()
    }

    #[test]
    fn theil_sen_is_exact_on_a_line_and_ignores_one_outlier() {
        let line: Vec<(i64, f64, f64)> = (0..5)
            .map(|i| (i * 100_000, 3.0 * i as f64, 4.0 * i as f64))
            .collect();
        assert_eq!(theil_sen_speed(&samples(&line)), Some(50.0));
        for wild in 0..5 {
            let mut still: Vec<(i64, f64, f64)> =
                (0..5).map(|i| (i * 100_000, 10.0, 10.0)).collect();
            still[wild].1 = 500.0;
            assert_eq!(
                theil_sen_speed(&samples(&still)),
                Some(0.0),
                "outlier at {wild}"
            );
        }
        assert_eq!(theil_sen_speed(&samples(&[(0, 1.0, 1.0)])), None);
        assert_eq!(
            theil_sen_speed(&samples(&[(5, 1.0, 1.0), (5, 2.0, 2.0)])),
            None,
            "no time"
        );
    }

    #[test]
    fn camera_clock_follows_its_lag_and_silence_ages_it() {
        let mut camera = CameraState::new(100);
        assert_eq!(camera.clock(150), 150, "never heard: the engine's clock");
        assert!(camera.down(129, 30).is_none());
        assert_eq!(camera.down(130, 30).map(|d| d.since_us), Some(100));
        camera.heard(120, 200);
        assert_eq!(camera.clock(210), 130, "80 behind the engine");
        assert_eq!(camera.clock(0), 120, "never before what it sent");
        assert!(camera.down(229, 30).is_none());
        let silent = camera.down(230, 30).unwrap();
        assert_eq!((silent.since_us, silent.state), (120, None));
        camera.heard(110, 240);
        assert_eq!(camera.clock(240), 160, "older input does not move the lag");
        camera.health = Some(Health {
            state: HealthState::Ended,
            since_us: 125,
            known_us: 125,
        });
        assert!(camera.down(1_000_000, 30).is_none(), "ENDED is not down");
    }

    #[test]
    fn median_of_odd_even_and_empty() {
        assert_eq!(median(&mut [3.0, 1.0, 2.0]), Some(2.0));
        assert_eq!(median(&mut [4.0, 1.0, 3.0, 2.0]), Some(2.5));
        assert_eq!(median(&mut []), None);
    }
}
