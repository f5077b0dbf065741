//! The rule engine: a pure state machine. Observations (frames, health
//! reports, track ends) and the passing of time go in, alert events come
//! out; nothing here reads a clock or does I/O.
//!
//! # Layout
//! - this module: the inputs and outputs, and [`Engine`], which records
//!   input and moves time.
//! - `checks`: the compiled rules, one check per kind, and their state.
//! - `state`: what is remembered of cameras (health, clock) and persons
//!   (visits: path and smoothed speed; last camera).
//! - `book`: alert slots: one open alert per rule, camera and subject,
//!   cool-downs, the raise and close events.
//!
//! # Time
//! Every timestamp is in microseconds since the Unix epoch. The engine's
//! clock is the latest timestamp it was given (frames, reports, track
//! ends, [`Engine::tick`]); it never goes back. Each camera also has its own
//! clock: the engine's clock less the camera's lag, measured whenever its
//! input arrives. A camera whose frames arrive late but steadily (a Kafka
//! backlog after a restart, with ticks on the wall clock) is judged on its
//! own timestamps, while a silent camera ages with the engine's clock.
//!
//! Time-based changes (a person gone for `absence_s`, a camera down for
//! `max_down_s`) happen as soon as input moves a camera's clock past them,
//! and carry the instant they became true, not the instant they were
//! noticed: replaying the same inputs gives the same events and alert ids
//! however often `tick` is called.
//!
//! # Bad input
//! Inputs with a timestamp outside `0..=`[`MAX_TS_US`], frames not later
//! than their camera's previous frame, health reports older than their
//! camera's previous report, and tracks with non-finite boxes are skipped
//! and counted in [`EngineStats`]; none of them panics.

mod book;
mod checks;
mod state;

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

use crate::config::{ConfigError, RulesConfig, Severity};
use book::{AlertBook, AlertKey, Raise};
use checks::{Check, CompiledRule, FrameCtx, Paths, Raiser, Seen, Stay, compile, impossible_paths};
use state::{CameraState, Health, LastCamera, Visit};

/// Latest timestamp accepted: 9999-12-31T23:59:59.999999Z, in µs.
pub const MAX_TS_US: i64 = 253_402_300_799_999_999;
/// Input time between sweeps of forgotten persons and expired cool-downs:
/// forgetting is a memory bound, to the second is plenty.
const SWEEP_INTERVAL_US: i64 = 1_000_000;

/// One confirmed track in an analysed frame.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct TrackObs {
    /// Global person id: the same person on every camera.
    pub person_id: u64,
    /// The camera's own track id.
    pub track_id: u64,
    /// Left edge of the box, pixels.
    pub x: f32,
    /// Top edge of the box, pixels.
    pub y: f32,
    /// Box width, pixels.
    pub width: f32,
    /// Box height, pixels.
    pub height: f32,
}

impl TrackObs {
    /// The bottom centre of the box (the feet), which zones are tested with.
    pub fn feet(&self) -> [f64; 2] {
        let (x, y, w, h) = self.wide();
        [x + w / 2.0, y + h]
    }

    /// The centre of the box, which speeds are measured on.
    pub fn centre(&self) -> [f64; 2] {
        let (x, y, w, h) = self.wide();
        [x + w / 2.0, y + h / 2.0]
    }

    /// Whether every coordinate is finite (other tracks are skipped).
    pub fn is_finite(&self) -> bool {
        [self.x, self.y, self.width, self.height]
            .iter()
            .all(|v| v.is_finite())
    }

    /// The box in `f64`, where sums of finite `f32`s stay finite.
    fn wide(&self) -> (f64, f64, f64, f64) {
        (
            f64::from(self.x),
            f64::from(self.y),
            f64::from(self.width),
            f64::from(self.height),
        )
    }
}

/// One analysed frame of a camera: its confirmed tracks.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct FrameObs {
    /// Camera id.
    pub camera_id: String,
    /// Capture timestamp, µs since the Unix epoch.
    pub ts_us: i64,
    /// Confirmed tracks, each with its global person id.
    pub tracks: Vec<TrackObs>,
}

/// A camera's state as its health reports give it (the `schemas`
/// `CameraHealth.State`, without the unspecified value).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum HealthState {
    /// Frames are flowing.
    Up,
    /// No frames for a while (the edge agent connects again).
    Stalled,
    /// The live stream ended; connecting again.
    Reconnecting,
    /// Not started yet, or the source failed (refused, unreachable,
    /// unauthorised); the edge agent keeps trying.
    Down,
    /// The stream finished (a file); not a fault.
    Ended,
}

impl HealthState {
    /// Whether the state counts as down for `camera_down`.
    pub fn is_down(self) -> bool {
        matches!(
            self,
            HealthState::Stalled | HealthState::Reconnecting | HealthState::Down
        )
    }

    /// The state as the health reports spell it.
    pub fn as_str(self) -> &'static str {
        match self {
            HealthState::Up => "UP",
            HealthState::Stalled => "STALLED",
            HealthState::Reconnecting => "RECONNECTING",
            HealthState::Down => "DOWN",
            HealthState::Ended => "ENDED",
        }
    }
}

/// A camera health report.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HealthObs {
    /// Camera id.
    pub camera_id: String,
    /// The camera's state.
    pub state: HealthState,
    /// When the camera entered `state`, µs since the Unix epoch.
    pub since_us: i64,
    /// When the report was made, µs since the Unix epoch.
    pub ts_us: i64,
}

/// What an alert is based on: a small summary of the subject.
///
/// Person fields describe the person's current visit to the alert's camera.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Evidence {
    /// First observation of the person on this camera (this visit); for a
    /// camera alert, none.
    pub first_seen_us: Option<i64>,
    /// Latest observation of the person on this camera; for a camera
    /// alert, the camera's latest frame.
    pub last_seen_us: Option<i64>,
    /// Latest feet point (bottom centre of the box), pixels.
    pub last_position: Option<[f64; 2]>,
    /// Distance the box centre travelled on this camera, pixels.
    pub path_px: f64,
    /// Largest smoothed speed on this camera, calibrated units per second.
    pub max_speed: f64,
    /// Seconds the condition has held: in the zone (loitering,
    /// restricted), over the limit (occupancy), down (camera_down), on the
    /// camera (running, impossible_path).
    pub dwell_s: f64,
    /// For impossible_path: the camera the person was on before.
    pub previous_camera: Option<String>,
    /// For impossible_path: when the person was last seen there.
    pub previous_seen_us: Option<i64>,
    /// For occupancy: distinct people in the zone.
    pub count: Option<u32>,
}

/// An alert raised or closed.
///
/// Every raise is followed, sooner or later, by exactly one close with the
/// same `alert_id`; the `schemas` crate's users map this onto `Alert`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AlertEvent {
    /// `"{rule}:{camera}:{subject}:{raise_ts_us}"`, subject being the
    /// person id or `camera`: the same inputs give the same id.
    pub alert_id: String,
    /// The rule's name.
    pub rule: String,
    /// The rule's severity.
    pub severity: Severity,
    /// Camera the alert is about.
    pub camera_id: String,
    /// People involved (sorted); empty for camera alerts.
    pub person_ids: Vec<u64>,
    /// When the alert was raised, or closed, µs since the Unix epoch.
    pub ts_us: i64,
    /// What happened, in a sentence.
    pub message: String,
    /// Whether this event closes the alert.
    pub closed: bool,
    /// A summary of the subject when the event was made.
    pub evidence: Evidence,
    /// Capture timestamp of the observation that made the condition true
    /// (for a time-based condition, the instant it became true); compare
    /// with the wall clock for latency. A close carries its own instant.
    pub trigger_ts_us: i64,
}

/// Counters and sizes, for metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct EngineStats {
    /// Frames skipped: timestamp out of range, not later than the camera's
    /// previous frame, or from a camera beyond `max_cameras`.
    pub skipped_frames: u64,
    /// Tracks skipped: non-finite boxes, or a person twice in one frame.
    pub skipped_tracks: u64,
    /// Health reports skipped: timestamp out of range, older than the
    /// camera's previous report, or from a camera beyond `max_cameras`.
    pub skipped_reports: u64,
    /// Track ends and ticks skipped for a timestamp out of range.
    pub skipped_other: u64,
    /// Persons forgotten early because their camera was at
    /// `max_persons_per_camera`.
    pub evicted_persons: u64,
    /// Cameras remembered.
    pub cameras: usize,
    /// Persons remembered, summed over cameras.
    pub persons_on_cameras: usize,
    /// Persons whose last camera is remembered (for impossible_path).
    pub persons: usize,
    /// Alerts open.
    pub open_alerts: usize,
}

/// The alert engine: compiled rules and everything they remember.
pub struct Engine {
    /// Rules in configuration order, with their state.
    rules: Vec<CompiledRule>,
    /// The topology, for impossible_path.
    paths: Paths,
    /// Image units per speed unit, per camera (missing: 1.0).
    calibration: BTreeMap<String, f64>,
    /// Memory bounds and speed estimation.
    limits: Limits,
    /// The engine's clock: the latest input timestamp (none before the first).
    now_us: Option<i64>,
    /// When forgotten persons and cool-downs are swept next.
    next_sweep_us: i64,
    /// What is known of each camera.
    cameras: BTreeMap<String, CameraState>,
    /// The camera each person was seen on last.
    persons: BTreeMap<u64, LastCamera>,
    /// Open alerts and cool-downs.
    book: AlertBook,
    /// Counters.
    stats: EngineStats,
}

impl fmt::Debug for Engine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Engine")
            .field("rules", &self.rules.len())
            .field("now_us", &self.now_us)
            .field("stats", &self.stats())
            .finish_non_exhaustive()
    }
}

impl Engine {
    /// An engine for a configuration, or every problem the configuration has.
    pub fn new(config: &RulesConfig) -> Result<Engine, ConfigError> {
        let problems = config.validate();
        if !problems.is_empty() {
            return Err(ConfigError { problems });
        }
        let rules = config
            .rules
            .iter()
            .map(compile)
            .collect::<Result<Vec<_>, String>>()
            .map_err(|problem| ConfigError {
                problems: vec![problem],
            })?;
        Ok(Engine {
            rules,
            paths: Paths::new(&config.topology),
            calibration: config.calibration.clone(),
            limits: Limits {
                forget_us: secs_to_us(config.forget_after_s),
                max_persons_per_camera: config.max_persons_per_camera,
                max_cameras: config.max_cameras,
                speed_window_us: secs_to_us(config.speed_window_s),
                speed_min_observations: config.speed_min_observations,
            },
            now_us: None,
            next_sweep_us: i64::MIN,
            cameras: BTreeMap::new(),
            persons: BTreeMap::new(),
            book: AlertBook::default(),
            stats: EngineStats::default(),
        })
    }

    /// One analysed frame of a camera: its confirmed tracks with their
    /// global person ids and boxes.
    pub fn on_frame(&mut self, frame: &FrameObs) -> Vec<AlertEvent> {
        let mut out = Vec::new();
        let (camera, ts) = (frame.camera_id.as_str(), frame.ts_us);
        let fresh = valid_ts(ts)
            && self.admit_camera(camera, ts)
            && self
                .cameras
                .get(camera)
                .is_some_and(|c| c.last_frame_us.is_none_or(|last| ts > last));
        if !fresh {
            self.stats.skipped_frames += 1;
            return out;
        }
        self.advance(ts, &mut out);
        self.hear(camera, ts);
        self.expire(Some(camera), &mut out);
        let seen = self.record_frame(frame, &mut out);
        self.apply_frame(camera, ts, &seen, &mut out);
        self.check_cameras_down(Some(camera), Some(ts), &mut out);
        finish(out)
    }

    /// A camera health report.
    pub fn on_health(&mut self, report: &HealthObs) -> Vec<AlertEvent> {
        let mut out = Vec::new();
        let (camera, ts) = (report.camera_id.as_str(), report.ts_us);
        let fresh = valid_ts(ts)
            && self.admit_camera(camera, ts)
            && self
                .cameras
                .get(camera)
                .is_some_and(|c| c.last_report_us.is_none_or(|last| ts >= last));
        if !fresh {
            self.stats.skipped_reports += 1;
            return out;
        }
        self.advance(ts, &mut out);
        let since = if valid_ts(report.since_us) {
            report.since_us.min(ts)
        } else {
            ts
        };
        self.hear(camera, ts);
        let mut was_down = false;
        if let Some(state) = self.cameras.get_mut(camera) {
            state.last_report_us = Some(ts);
            was_down = state.health.is_some_and(|h| h.state.is_down());
            if state.health.is_none_or(|h| h.state != report.state) {
                state.health = Some(Health {
                    state: report.state,
                    since_us: since,
                    known_us: ts,
                });
            }
        }
        // Back UP from a reported fault: since it says when. Otherwise (a
        // silent camera heard again, or ENDED): now.
        let recovered_at = if report.state == HealthState::Up && was_down {
            since
        } else {
            ts
        };
        self.check_cameras_down(Some(camera), Some(recovered_at), &mut out);
        finish(out)
    }

    /// A track ended: the person left the camera. Their alerts on the
    /// camera close and what the camera knew of them is forgotten (their
    /// last camera is kept, for impossible_path).
    pub fn on_track_end(&mut self, camera_id: &str, person_id: u64, ts_us: i64) -> Vec<AlertEvent> {
        let mut out = Vec::new();
        if !valid_ts(ts_us) {
            self.stats.skipped_other += 1;
            return out;
        }
        self.advance(ts_us, &mut out);
        self.drop_person(camera_id, person_id, ts_us, Gone::TrackEnded, &mut out);
        finish(out)
    }

    /// Time passes without input (the service calls this every ~250 ms):
    /// raises and closes what depends on time alone.
    pub fn tick(&mut self, now_us: i64) -> Vec<AlertEvent> {
        let mut out = Vec::new();
        if !valid_ts(now_us) {
            self.stats.skipped_other += 1;
            return out;
        }
        self.advance(now_us, &mut out);
        finish(out)
    }

    /// The raise events of the alerts open now, by rule, camera and subject.
    pub fn open_alerts(&self) -> impl Iterator<Item = &AlertEvent> {
        self.book.open.values()
    }

    /// The engine's clock: the latest input timestamp, if any.
    pub fn now_us(&self) -> Option<i64> {
        self.now_us
    }

    /// Counters and sizes.
    pub fn stats(&self) -> EngineStats {
        EngineStats {
            cameras: self.cameras.len(),
            persons_on_cameras: self.cameras.values().map(|c| c.visits.len()).sum(),
            persons: self.persons.len(),
            open_alerts: self.book.open.len(),
            ..self.stats
        }
    }

    /// Whether the camera is (now) remembered; a new one is, below
    /// `max_cameras`, from `ts`.
    fn admit_camera(&mut self, camera: &str, ts: i64) -> bool {
        if self.cameras.contains_key(camera) {
            return true;
        }
        if self.cameras.len() >= self.limits.max_cameras {
            return false;
        }
        self.cameras.insert(camera.to_owned(), CameraState::new(ts));
        true
    }

    /// Records that input captured at `ts` came from the camera now.
    fn hear(&mut self, camera: &str, ts: i64) {
        let now = self.now_us.unwrap_or(ts);
        if let Some(state) = self.cameras.get_mut(camera) {
            state.heard(ts, now);
        }
    }

    /// Moves the clock to `now` (never back) and applies what time alone changes.
    fn advance(&mut self, now: i64, out: &mut Vec<AlertEvent>) {
        match self.now_us {
            Some(clock) if now <= clock => return,
            Some(_) => {}
            None => self.start(now),
        }
        self.now_us = Some(now);
        self.expire(None, out);
        if now >= self.next_sweep_us {
            self.sweep(now, out);
            self.next_sweep_us = now.saturating_add(SWEEP_INTERVAL_US);
        }
        self.check_cameras_down(None, None, out);
    }

    /// At the first input: cameras that camera_down rules list by name are
    /// watched from now on, whether they ever report or not.
    fn start(&mut self, now: i64) {
        for rule in &self.rules {
            if matches!(rule.check, Check::CameraDown(_)) {
                for camera in &rule.meta.cameras {
                    self.cameras
                        .entry(camera.clone())
                        .or_insert_with(|| CameraState::new(now));
                }
            }
        }
    }

    /// Closes what time has ended, on one camera or all, each judged on its
    /// own clock: people gone from zones, runners slowed down, crowds on
    /// cameras that stopped sending frames.
    fn expire(&mut self, only: Option<&str>, out: &mut Vec<AlertEvent>) {
        let now = self.now_us.unwrap_or(0);
        let cameras = &self.cameras;
        let is_due = |camera: &str, at: i64| {
            only.is_none_or(|only| only == camera)
                && at <= cameras.get(camera).map_or(now, |c| c.clock(now))
        };
        for (index, rule) in self.rules.iter_mut().enumerate() {
            let CompiledRule { meta, check } = rule;
            match check {
                Check::Dwell(dwell) => {
                    let due: Vec<((String, u64), Stay, i64, bool)> = dwell
                        .stays
                        .iter()
                        .filter_map(|(key, stay)| {
                            let (at, window_ended) = dwell.leave_at(stay);
                            is_due(&key.0, at).then(|| (key.clone(), *stay, at, window_ended))
                        })
                        .collect();
                    for ((camera, person), stay, at, window_ended) in due {
                        dwell.stays.remove(&(camera.clone(), person));
                        let key = AlertKey::person(index, &camera, person);
                        let visit = visit_of(cameras, &camera, person);
                        self.book.close(&key, meta, at, out, |_| {
                            let dwell_s = us_to_secs(stay.last_in_us - stay.entered_us);
                            let message = match (window_ended, dwell.window) {
                                (true, Some(window)) => format!(
                                    "Window {window} UTC ended with person {person} in the zone of camera {camera}"
                                ),
                                _ => format!(
                                    "Person {person} left the zone of camera {camera} after {dwell_s:.1} s"
                                ),
                            };
                            let evidence = Evidence {
                                dwell_s,
                                ..person_evidence(visit)
                            };
                            (message, evidence)
                        });
                    }
                }
                Check::Running(running) => {
                    let absence = running.absence_us;
                    let due: Vec<((String, u64), i64)> = running
                        .fast
                        .iter()
                        .filter(|((camera, _), last)| is_due(camera, last.saturating_add(absence)))
                        .map(|(key, last)| (key.clone(), *last))
                        .collect();
                    for ((camera, person), last_fast) in due {
                        running.fast.remove(&(camera.clone(), person));
                        let key = AlertKey::person(index, &camera, person);
                        let visit = visit_of(cameras, &camera, person);
                        let at = last_fast.saturating_add(absence);
                        self.book.close(&key, meta, at, out, |_| {
                            let message = format!(
                                "Person {person} on camera {camera} has not been faster than {} for {:.1} s",
                                running.max_speed,
                                us_to_secs(absence)
                            );
                            (message, running_evidence(visit, at))
                        });
                    }
                }
                Check::Occupancy(occupancy) => {
                    let absence = occupancy.absence_us;
                    let due: Vec<(String, i64)> = occupancy
                        .crowds
                        .iter()
                        .filter(|(camera, crowd)| {
                            is_due(camera, crowd.last_frame_us.saturating_add(absence))
                        })
                        .map(|(camera, crowd)| (camera.clone(), crowd.last_frame_us))
                        .collect();
                    for (camera, last_frame) in due {
                        occupancy.crowds.remove(&camera);
                        let key = AlertKey::camera(index, &camera);
                        let at = last_frame.saturating_add(absence);
                        self.book.close(&key, meta, at, out, |open| {
                            let message = format!(
                                "Camera {camera} sent no frames for {:.1} s; occupancy unknown",
                                us_to_secs(absence)
                            );
                            let evidence = Evidence {
                                last_seen_us: Some(last_frame),
                                ..open.evidence.clone()
                            };
                            (message, evidence)
                        });
                    }
                }
                Check::ImpossiblePath | Check::CameraDown(_) => {}
            }
        }
    }

    /// Forgets persons unseen for `forget_after_s`, and expired cool-downs
    /// (each on its camera's clock).
    fn sweep(&mut self, now: i64, out: &mut Vec<AlertEvent>) {
        let forget = self.limits.forget_us;
        let stale: Vec<(String, u64, i64)> = self
            .cameras
            .iter()
            .flat_map(|(camera, state)| {
                let clock = state.clock(now);
                state
                    .visits
                    .iter()
                    .filter(move |(_, visit)| visit.last_seen_us.saturating_add(forget) <= clock)
                    .map(|(person, visit)| (camera.clone(), *person, visit.last_seen_us))
            })
            .collect();
        for (camera, person, last_seen) in stale {
            let at = last_seen.saturating_add(forget);
            self.drop_person(&camera, person, at, Gone::Forgotten, out);
        }
        let cameras = &self.cameras;
        let clock = |camera: &str| cameras.get(camera).map_or(now, |c| c.clock(now));
        self.persons
            .retain(|_, last| last.seen_us.saturating_add(forget) > clock(&last.camera));
        self.book
            .cooldown_until
            .retain(|key, until| *until > clock(&key.camera));
    }

    /// Records a frame on its camera: activity, each person's visit (path,
    /// speed) and last camera. Returns the usable tracks.
    fn record_frame(&mut self, frame: &FrameObs, out: &mut Vec<AlertEvent>) -> Vec<Seen> {
        let (camera, ts) = (frame.camera_id.as_str(), frame.ts_us);
        let mut seen: Vec<Seen> = Vec::with_capacity(frame.tracks.len());
        for track in &frame.tracks {
            if !track.is_finite() || seen.iter().any(|s| s.person == track.person_id) {
                self.stats.skipped_tracks += 1;
                continue;
            }
            seen.push(Seen {
                person: track.person_id,
                feet: track.feet(),
                centre: track.centre(),
                speed: None,
                transition: None,
            });
        }
        for s in &seen {
            self.make_room(camera, s.person, ts, out);
        }
        let factor = self.calibration.get(camera).copied().unwrap_or(1.0);
        let limits = self.limits;
        let Some(state) = self.cameras.get_mut(camera) else {
            return Vec::new(); // admitted by on_frame; nothing to record otherwise
        };
        state.last_frame_us = Some(ts);
        if state.health.is_some_and(|h| h.state == HealthState::Ended) {
            state.health = None; // frames again after the end: watch it anew
        }
        let max_persons = limits
            .max_persons_per_camera
            .saturating_mul(limits.max_cameras);
        for s in &mut seen {
            let visit = state
                .visits
                .entry(s.person)
                .and_modify(|visit| visit.observe(ts, s, &limits, factor))
                .or_insert_with(|| Visit::new(ts, s));
            s.speed = visit.speed;
            let room = self.persons.len() < max_persons;
            match self.persons.get_mut(&s.person) {
                Some(last) if last.camera != camera => {
                    let previous = std::mem::replace(&mut last.camera, camera.to_owned());
                    s.transition = Some((previous, last.seen_us));
                    last.seen_us = ts;
                }
                Some(last) => last.seen_us = last.seen_us.max(ts),
                None if room => {
                    let last = LastCamera {
                        camera: camera.to_owned(),
                        seen_us: ts,
                    };
                    self.persons.insert(s.person, last);
                }
                None => {}
            }
        }
        seen
    }

    /// Before a new person is remembered on a full camera, forgets the one
    /// seen least recently there.
    fn make_room(&mut self, camera: &str, person: u64, ts: i64, out: &mut Vec<AlertEvent>) {
        let Some(state) = self.cameras.get(camera) else {
            return;
        };
        if state.visits.len() < self.limits.max_persons_per_camera
            || state.visits.contains_key(&person)
        {
            return;
        }
        let victim = state
            .visits
            .iter()
            .min_by_key(|(id, visit)| (visit.last_seen_us, **id))
            .map(|(id, _)| *id);
        if let Some(victim) = victim {
            self.stats.evicted_persons += 1;
            self.drop_person(camera, victim, ts, Gone::Evicted, out);
        }
    }

    /// Applies the observation rules to a recorded frame.
    fn apply_frame(&mut self, camera: &str, ts: i64, seen: &[Seen], out: &mut Vec<AlertEvent>) {
        let frame = FrameCtx {
            camera,
            ts,
            seen,
            visits: self.cameras.get(camera).map(|c| &c.visits),
        };
        for (index, rule) in self.rules.iter_mut().enumerate() {
            let CompiledRule { meta, check } = rule;
            if !meta.applies(camera) {
                continue;
            }
            let alert = Raiser {
                index,
                meta,
                book: &mut self.book,
                out: &mut *out,
            };
            match check {
                Check::Dwell(dwell) => dwell.observe(&frame, alert),
                Check::Occupancy(occupancy) => occupancy.observe(&frame, alert),
                Check::Running(running) => running.observe(&frame, alert),
                Check::ImpossiblePath => impossible_paths(&self.paths, &frame, alert),
                Check::CameraDown(_) => {}
            }
        }
    }

    /// Raises and closes camera_down alerts: for one camera (after its
    /// input, closing at `recovered_at` when it is up again) or for all.
    fn check_cameras_down(
        &mut self,
        only: Option<&str>,
        recovered_at: Option<i64>,
        out: &mut Vec<AlertEvent>,
    ) {
        let now = self.now_us.unwrap_or(0);
        for (index, rule) in self.rules.iter().enumerate() {
            let Check::CameraDown(down) = &rule.check else {
                continue;
            };
            let watched: Vec<&String> = match only {
                Some(camera) => self
                    .cameras
                    .get_key_value(camera)
                    .map(|(name, _)| name)
                    .filter(|name| rule.meta.applies(name))
                    .into_iter()
                    .collect(),
                None if rule.meta.cameras.is_empty() => self.cameras.keys().collect(),
                None => rule.meta.cameras.iter().collect(),
            };
            for camera in watched {
                let Some(state) = self.cameras.get(camera) else {
                    continue;
                };
                let key = AlertKey::camera(index, camera);
                match state.down(now, down.max_down_us) {
                    Some(episode) => {
                        let mut at = episode
                            .since_us
                            .saturating_add(down.max_down_us)
                            .max(episode.known_us);
                        if let Some(until) = self.book.cooldown_until.get(&key) {
                            at = at.max(*until);
                        }
                        if state.clock(now) < at || self.book.open.contains_key(&key) {
                            continue;
                        }
                        let down_s = us_to_secs(at.saturating_sub(episode.since_us));
                        let limit = us_to_secs(down.max_down_us);
                        let message = match episode.state {
                            Some(health) => format!(
                                "Camera {camera} has been {} for {down_s:.1} s (limit {limit} s)",
                                health.as_str()
                            ),
                            None => format!(
                                "Camera {camera} has sent no frames or health reports for {down_s:.1} s (limit {limit} s)"
                            ),
                        };
                        let evidence = Evidence {
                            last_seen_us: state.last_frame_us,
                            dwell_s: down_s,
                            ..Evidence::default()
                        };
                        let raise = Raise {
                            ts_us: at,
                            trigger_ts_us: at,
                            person_ids: Vec::new(),
                            message,
                            evidence,
                        };
                        self.book.raise(key, &rule.meta, raise, out);
                    }
                    None => {
                        let at = recovered_at.unwrap_or(now);
                        let ended = state.health.is_some_and(|h| h.state == HealthState::Ended);
                        self.book.close(&key, &rule.meta, at, out, |open| {
                            let since =
                                open.ts_us.saturating_sub(secs_to_us(open.evidence.dwell_s));
                            let down_s = us_to_secs(at.max(open.ts_us).saturating_sub(since));
                            let message = if ended {
                                format!("Camera {camera} ended its stream")
                            } else {
                                format!("Camera {camera} is up again after {down_s:.1} s")
                            };
                            let evidence = Evidence {
                                last_seen_us: state.last_frame_us,
                                dwell_s: down_s,
                                ..Evidence::default()
                            };
                            (message, evidence)
                        });
                    }
                }
            }
        }
    }

    /// Forgets a person on a camera, closing their alerts there at `ts`.
    fn drop_person(
        &mut self,
        camera: &str,
        person: u64,
        ts: i64,
        why: Gone,
        out: &mut Vec<AlertEvent>,
    ) {
        let key = (camera.to_owned(), person);
        let visit = visit_of(&self.cameras, camera, person);
        let forget_s = us_to_secs(self.limits.forget_us);
        for (index, rule) in self.rules.iter_mut().enumerate() {
            let CompiledRule { meta, check } = rule;
            let mut evidence = person_evidence(visit);
            match check {
                Check::Dwell(dwell) => {
                    if let Some(stay) = dwell.stays.remove(&key) {
                        evidence.dwell_s = us_to_secs(stay.last_in_us - stay.entered_us);
                    }
                }
                Check::Running(running) => {
                    running.fast.remove(&key);
                    evidence = running_evidence(visit, ts);
                }
                Check::Occupancy(_) | Check::ImpossiblePath | Check::CameraDown(_) => continue,
            }
            let alert = AlertKey::person(index, camera, person);
            self.book.close(&alert, meta, ts, out, |_| {
                let message = match why {
                    Gone::TrackEnded => format!("Person {person}'s track on camera {camera} ended"),
                    Gone::Forgotten => {
                        format!("Person {person} unseen on camera {camera} for {forget_s} s; forgotten")
                    }
                    Gone::Evicted => format!(
                        "Person {person} forgotten on camera {camera}: too many persons remembered there"
                    ),
                };
                (message, evidence)
            });
        }
        if let Some(state) = self.cameras.get_mut(camera) {
            state.visits.remove(&person);
        }
    }
}

/// Why a person's state on a camera is dropped.
#[derive(Debug, Clone, Copy)]
enum Gone {
    /// The tracker ended the track.
    TrackEnded,
    /// Unseen for `forget_after_s`.
    Forgotten,
    /// The camera was at `max_persons_per_camera`.
    Evicted,
}

/// Memory bounds and speed estimation, from the configuration.
#[derive(Debug, Clone, Copy)]
struct Limits {
    /// Unseen this long, a person is forgotten.
    forget_us: i64,
    /// Most persons remembered per camera.
    max_persons_per_camera: usize,
    /// Most cameras remembered.
    max_cameras: usize,
    /// Span of the speed estimate.
    speed_window_us: i64,
    /// Fewest observations for a speed estimate.
    speed_min_observations: usize,
}

/// A person's visit to a camera, if remembered.
fn visit_of<'a>(
    cameras: &'a BTreeMap<String, CameraState>,
    camera: &str,
    person: u64,
) -> Option<&'a Visit> {
    cameras.get(camera).and_then(|c| c.visits.get(&person))
}

/// The evidence a visit gives.
fn person_evidence(visit: Option<&Visit>) -> Evidence {
    match visit {
        Some(v) => Evidence {
            first_seen_us: Some(v.first_seen_us),
            last_seen_us: Some(v.last_seen_us),
            last_position: Some(v.last_feet),
            path_px: v.path_px,
            max_speed: v.max_speed,
            ..Evidence::default()
        },
        None => Evidence::default(),
    }
}

/// The evidence for running: the visit, with the time on the camera.
fn running_evidence(visit: Option<&Visit>, ts: i64) -> Evidence {
    let dwell_s = visit.map_or(0.0, |v| us_to_secs(ts.saturating_sub(v.first_seen_us)));
    Evidence {
        dwell_s,
        ..person_evidence(visit)
    }
}

/// Whether a timestamp is in the accepted range.
fn valid_ts(ts: i64) -> bool {
    (0..=MAX_TS_US).contains(&ts)
}

/// Seconds (validated finite, ≥ 0) to µs; `as` saturates.
fn secs_to_us(secs: f64) -> i64 {
    (secs * 1e6).round() as i64
}

/// µs to seconds.
fn us_to_secs(us: i64) -> f64 {
    us as f64 / 1e6
}

/// Events in time order (a raise before its close at the same instant).
fn finish(mut out: Vec<AlertEvent>) -> Vec<AlertEvent> {
    out.sort_by_key(|event| event.ts_us);
    out
}
