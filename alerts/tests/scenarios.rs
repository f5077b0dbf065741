//! Scripted scenarios for every rule kind: tracks, health reports and ticks
//! go in, and the exact alert events (ids, times, people, cameras) are
//! checked. Each rule has a scenario that must alert and near misses that
//! must not.

use std::collections::BTreeMap;

use alerts::{
    AlertEvent, Engine, FrameObs, HealthObs, HealthState, MAX_TS_US, RulesConfig, Severity,
    TrackObs,
};

const S: i64 = 1_000_000;
const MS: i64 = 1_000;
/// 2024-01-01T00:00:00Z.
const MIDNIGHT: i64 = 1_704_067_200 * S;
/// 2024-01-01T12:00:00Z: most scenarios start here.
const NOON: i64 = MIDNIGHT + 12 * 3_600 * S;

fn engine(rules: &str) -> Engine {
    let config: RulesConfig = toml::from_str(rules).unwrap();
    Engine::new(&config).unwrap()
}

/// A person whose feet are at (x, y): a 20 × 40 box standing on the point.
fn at(person: u64, x: f32, y: f32) -> TrackObs {
    TrackObs {
        person_id: person,
        track_id: person + 1_000,
        x: x - 10.0,
        y: y - 40.0,
        width: 20.0,
        height: 40.0,
    }
}

/// Feeds an engine and keeps every event it returns.
struct Script {
    engine: Engine,
    events: Vec<AlertEvent>,
}

impl Script {
    fn new(rules: &str) -> Self {
        Script {
            engine: engine(rules),
            events: Vec::new(),
        }
    }

    fn keep(&mut self, events: Vec<AlertEvent>) {
        assert!(
            events.windows(2).all(|w| w[0].ts_us <= w[1].ts_us),
            "events of one call come in time order: {events:#?}"
        );
        self.events.extend(events);
    }

    fn frame(&mut self, camera: &str, ts_us: i64, tracks: Vec<TrackObs>) {
        let frame = FrameObs {
            camera_id: camera.into(),
            ts_us,
            tracks,
        };
        let events = self.engine.on_frame(&frame);
        self.keep(events);
    }

    /// Frames every `step` from `from` to `to` (both included), the same
    /// tracks in each, with ticks in between every 250 ms.
    fn frames(&mut self, camera: &str, from: i64, to: i64, step: i64, tracks: &[TrackObs]) {
        let mut ts = from;
        while ts <= to {
            self.frame(camera, ts, tracks.to_vec());
            self.ticks(ts, (ts + step).min(to + 1));
            ts += step;
        }
    }

    /// Ticks every 250 ms in `[from, to)`, after `from`.
    fn ticks(&mut self, from: i64, to: i64) {
        let mut ts = from + 250 * MS;
        while ts < to {
            self.tick(ts);
            ts += 250 * MS;
        }
    }

    fn tick(&mut self, ts_us: i64) {
        let events = self.engine.tick(ts_us);
        self.keep(events);
    }

    fn health(&mut self, camera: &str, state: HealthState, since_us: i64, ts_us: i64) {
        let report = HealthObs {
            camera_id: camera.into(),
            state,
            since_us,
            ts_us,
        };
        let events = self.engine.on_health(&report);
        self.keep(events);
    }

    fn track_end(&mut self, camera: &str, person: u64, ts_us: i64) {
        let events = self.engine.on_track_end(camera, person, ts_us);
        self.keep(events);
    }

    fn raises(&self) -> Vec<&AlertEvent> {
        self.events.iter().filter(|e| !e.closed).collect()
    }

    fn closes(&self) -> Vec<&AlertEvent> {
        self.events.iter().filter(|e| e.closed).collect()
    }

    /// Every raise is closed at most once, after it, and nothing closes
    /// that was not raised; returns the events, checked.
    fn checked(&self) -> &[AlertEvent] {
        let mut open: BTreeMap<&str, &AlertEvent> = BTreeMap::new();
        let mut done: Vec<&str> = Vec::new();
        for event in &self.events {
            let id = event.alert_id.as_str();
            if event.closed {
                let raise = open
                    .remove(id)
                    .unwrap_or_else(|| panic!("close without raise: {id}"));
                assert!(
                    event.ts_us >= raise.ts_us,
                    "{id} closes before it was raised"
                );
                assert_eq!(
                    (
                        &event.rule,
                        &event.camera_id,
                        &event.person_ids,
                        event.severity
                    ),
                    (
                        &raise.rule,
                        &raise.camera_id,
                        &raise.person_ids,
                        raise.severity
                    )
                );
                done.push(id);
            } else {
                assert!(!done.contains(&id), "{id} raised twice");
                assert!(open.insert(id, event).is_none(), "{id} raised twice");
            }
        }
        &self.events
    }
}

/// Asserts that no event came out and that every input was used, so a
/// near miss is not passed by input the engine skipped.
fn assert_quiet(s: &Script) {
    assert_eq!(s.checked(), []);
    let stats = s.engine.stats();
    assert_eq!(
        (
            stats.skipped_frames,
            stats.skipped_tracks,
            stats.skipped_reports
        ),
        (0, 0, 0)
    );
}

/// `(alert_id, closed, ts_us)` of every event, for exact comparisons.
fn timeline(events: &[AlertEvent]) -> Vec<(String, bool, i64)> {
    events
        .iter()
        .map(|e| (e.alert_id.clone(), e.closed, e.ts_us))
        .collect()
}

// ---------------------------------------------------------------- loitering

const LOITERING: &str = r#"
    [[rules]]
    name = "lobby"
    kind = "loitering"
    cameras = ["west"]
    zone = [[0, 0], [100, 0], [100, 100], [0, 100]]
    max_dwell_s = 10
    absence_s = 5
    cooldown_s = 60
"#;

#[test]
fn loitering_raises_once_and_closes_when_the_person_leaves_the_zone() {
    let mut s = Script::new(LOITERING);
    s.frames("west", NOON, NOON + 20 * S, 500 * MS, &[at(7, 50.0, 50.0)]);
    assert_eq!(s.engine.open_alerts().count(), 1);
    // Still on the camera, outside the zone.
    s.frames(
        "west",
        NOON + 20_500 * MS,
        NOON + 30 * S,
        500 * MS,
        &[at(7, 200.0, 50.0)],
    );
    let events = s.checked();
    assert_eq!(
        timeline(events),
        [
            (
                format!("lobby:west:7:{}", NOON + 10 * S),
                false,
                NOON + 10 * S
            ),
            (
                format!("lobby:west:7:{}", NOON + 10 * S),
                true,
                NOON + 25 * S
            ),
        ]
    );
    let (raise, close) = (&events[0], &events[1]);
    assert_eq!(raise.rule, "lobby");
    assert_eq!(raise.severity, Severity::Warning);
    assert_eq!(raise.camera_id, "west");
    assert_eq!(raise.person_ids, [7]);
    assert_eq!(raise.trigger_ts_us, NOON + 10 * S);
    assert_eq!(raise.evidence.dwell_s, 10.0);
    assert_eq!(raise.evidence.first_seen_us, Some(NOON));
    assert_eq!(raise.evidence.last_position, Some([50.0, 50.0]));
    assert!(raise.message.contains("stayed 10.0 s"), "{}", raise.message);
    assert_eq!(close.evidence.dwell_s, 20.0, "time in the zone");
    assert_eq!(close.evidence.path_px, 150.0, "walked out of it");
    assert_eq!(s.engine.open_alerts().count(), 0);
}

#[test]
fn loitering_just_under_the_limit_outside_the_zone_or_camera_does_not_raise() {
    let mut s = Script::new(LOITERING);
    // 9.5 s in the zone, then out of it for a minute.
    s.frames(
        "west",
        NOON,
        NOON + 9_500 * MS,
        500 * MS,
        &[at(1, 50.0, 50.0)],
    );
    s.frames(
        "west",
        NOON + 10 * S,
        NOON + 70 * S,
        500 * MS,
        &[at(1, 150.0, 50.0)],
    );
    // A minute just outside the zone (feet below its lower edge; the
    // box's top is inside).
    s.frames(
        "west",
        NOON + 71 * S,
        NOON + 131 * S,
        500 * MS,
        &[at(2, 50.0, 100.5)],
    );
    // A minute in the zone's pixels on a camera the rule does not watch.
    s.frames("east", NOON, NOON + 60 * S, 500 * MS, &[at(3, 50.0, 50.0)]);
    s.tick(NOON + 200 * S);
    assert_quiet(&s);
}

#[test]
fn loitering_on_the_zone_boundary_counts_as_inside() {
    let mut s = Script::new(LOITERING);
    s.frames("west", NOON, NOON + 10 * S, S, &[at(4, 100.0, 100.0)]);
    assert_eq!(s.raises().len(), 1);
}

#[test]
fn loitering_closes_when_the_track_ends() {
    let mut s = Script::new(LOITERING);
    s.frames("west", NOON, NOON + 15 * S, 500 * MS, &[at(7, 50.0, 50.0)]);
    s.track_end("west", 7, NOON + 15_200 * MS);
    s.tick(NOON + 60 * S);
    let id = format!("lobby:west:7:{}", NOON + 10 * S);
    assert_eq!(
        timeline(s.checked()),
        [
            (id.clone(), false, NOON + 10 * S),
            (id, true, NOON + 15_200 * MS)
        ]
    );
    assert!(s.closes()[0].message.contains("track on camera west ended"));
}

#[test]
fn loitering_cooldown_blocks_a_quick_return_but_not_a_later_stay() {
    let mut s = Script::new(LOITERING);
    let inside = [at(7, 50.0, 50.0)];
    // Raise at 10 s, leave at 20 s: closed at 25 s, cool-down until 85 s.
    s.frames("west", NOON, NOON + 20 * S, 500 * MS, &inside);
    // Back at 30 s for 20 s: long enough, but within the cool-down.
    s.frames("west", NOON + 30 * S, NOON + 50 * S, 500 * MS, &inside);
    // Back at 80 s: 10 s later (90 s) the cool-down is over.
    s.frames("west", NOON + 80 * S, NOON + 100 * S, 500 * MS, &inside);
    s.tick(NOON + 200 * S);
    let first = format!("lobby:west:7:{}", NOON + 10 * S);
    let second = format!("lobby:west:7:{}", NOON + 90 * S);
    assert_eq!(
        timeline(s.checked()),
        [
            (first.clone(), false, NOON + 10 * S),
            (first, true, NOON + 25 * S),
            (second.clone(), false, NOON + 90 * S),
            (second, true, NOON + 105 * S),
        ]
    );
}

#[test]
fn loitering_in_a_concave_zone_ignores_its_notch() {
    // A "U" open at the top: legs x 0–30 and 70–100, joined for y 70–100.
    let mut s = Script::new(
        r#"
        [[rules]]
        name = "u"
        kind = "loitering"
        zone = [[0, 0], [30, 0], [30, 70], [70, 70], [70, 0], [100, 0], [100, 100], [0, 100]]
        max_dwell_s = 10
        "#,
    );
    s.frames(
        "west",
        NOON,
        NOON + 60 * S,
        S,
        &[at(1, 50.0, 30.0), at(2, 85.0, 30.0)],
    );
    let raises = s.raises();
    assert_eq!(raises.len(), 1);
    assert_eq!(
        raises[0].person_ids,
        [2],
        "the notch is outside; the leg inside"
    );
}

// --------------------------------------------------------------- restricted

const RESTRICTED: &str = r#"
    [[rules]]
    name = "night"
    kind = "restricted"
    severity = "critical"
    cameras = ["east"]
    zone = [[0, 0], [100, 0], [100, 100], [0, 100]]
    window = "22:00-06:00"
"#;

#[test]
fn restricted_raises_at_once_and_closes_when_the_window_ends() {
    let mut s = Script::new(RESTRICTED);
    let from = MIDNIGHT + (5 * 3_600 + 59 * 60 + 50) * S; // 05:59:50
    s.frames("east", from, from + 20 * S, S, &[at(5, 50.0, 50.0)]);
    s.tick(from + 60 * S);
    let id = format!("night:east:5:{from}");
    assert_eq!(
        timeline(s.checked()),
        [
            (id.clone(), false, from),
            (id, true, MIDNIGHT + 6 * 3_600 * S)
        ]
    );
    let raise = &s.events[0];
    assert_eq!(
        (raise.severity, raise.trigger_ts_us),
        (Severity::Critical, from)
    );
    assert_eq!(raise.person_ids, [5]);
    assert!(
        raise.message.contains("during 22:00-06:00 UTC"),
        "{}",
        raise.message
    );
    assert!(
        s.events[1].message.contains("ended"),
        "{}",
        s.events[1].message
    );
}

#[test]
fn restricted_window_wraps_midnight_and_closes_when_the_person_leaves() {
    let mut s = Script::new(RESTRICTED);
    let from = MIDNIGHT - 2 * S; // 23:59:58 the day before
    s.frames(
        "east",
        from,
        MIDNIGHT + 5 * S,
        500 * MS,
        &[at(5, 50.0, 50.0)],
    );
    // Out of the zone from then on.
    s.frames(
        "east",
        MIDNIGHT + 5_500 * MS,
        MIDNIGHT + 20 * S,
        500 * MS,
        &[at(5, 500.0, 50.0)],
    );
    let id = format!("night:east:5:{from}");
    assert_eq!(
        timeline(s.checked()),
        [(id.clone(), false, from), (id, true, MIDNIGHT + 10 * S)]
    );
    assert_eq!(s.events[1].evidence.dwell_s, 7.0);
}

#[test]
fn restricted_outside_the_window_or_the_zone_does_not_raise() {
    let mut s = Script::new(RESTRICTED);
    // In the zone at noon, outside the window.
    s.frames("east", NOON, NOON + 60 * S, S, &[at(1, 50.0, 50.0)]);
    // Up to the window's start, not into it: 21:59:00–21:59:59.
    let before = MIDNIGHT + 22 * 3_600 * S - 60 * S;
    s.frames("east", before, before + 59 * S, S, &[at(3, 50.0, 50.0)]);
    // Next to the zone at 23:00, inside the window.
    let late = MIDNIGHT + 23 * 3_600 * S;
    s.frames("east", late, late + 60 * S, S, &[at(2, 150.0, 50.0)]);
    assert_quiet(&s);
}

// ---------------------------------------------------------------- occupancy

const OCCUPANCY: &str = r#"
    [[rules]]
    name = "crowd"
    kind = "occupancy"
    zone = [[0, 0], [300, 0], [300, 300], [0, 300]]
    max_people = 2
    min_duration_s = 2
"#;

#[test]
fn occupancy_above_the_limit_long_enough_raises_and_closes_at_the_limit() {
    let mut s = Script::new(OCCUPANCY);
    let three = [
        at(1, 10.0, 10.0),
        at(2, 20.0, 20.0),
        at(3, 30.0, 30.0),
        at(9, 500.0, 500.0),
    ];
    s.frames("west", NOON, NOON + 5 * S, 500 * MS, &three);
    s.frames(
        "west",
        NOON + 5_500 * MS,
        NOON + 10 * S,
        500 * MS,
        &three[..2],
    );
    let id = format!("crowd:west:camera:{}", NOON + 2 * S);
    assert_eq!(
        timeline(s.checked()),
        [
            (id.clone(), false, NOON + 2 * S),
            (id, true, NOON + 5_500 * MS)
        ]
    );
    let (raise, close) = (&s.events[0], &s.events[1]);
    assert_eq!(raise.person_ids, [1, 2, 3], "person 9 is outside the zone");
    assert_eq!(
        (raise.camera_id.as_str(), raise.trigger_ts_us),
        ("west", NOON + 2 * S)
    );
    assert_eq!(
        (raise.evidence.count, raise.evidence.dwell_s),
        (Some(3), 2.0)
    );
    assert_eq!(close.evidence.count, Some(2));
    assert_eq!(close.person_ids, [1, 2, 3]);
}

#[test]
fn occupancy_spikes_shorter_than_min_duration_do_not_raise() {
    let mut s = Script::new(OCCUPANCY);
    let two = [at(1, 10.0, 10.0), at(2, 20.0, 20.0), at(9, 500.0, 500.0)];
    let three = [at(1, 10.0, 10.0), at(2, 20.0, 20.0), at(3, 30.0, 30.0)];
    s.frames("west", NOON, NOON + 2_500 * MS, 500 * MS, &two);
    // One frame with a third person (a false detection).
    s.frame("west", NOON + 3 * S, three.to_vec());
    s.frames("west", NOON + 3_500 * MS, NOON + 4_500 * MS, 500 * MS, &two);
    // Three people for 1.5 s: 5.0, 5.5, 6.0 and 6.5 s.
    s.frames("west", NOON + 5 * S, NOON + 6_500 * MS, 500 * MS, &three);
    s.frames("west", NOON + 7 * S, NOON + 20 * S, 500 * MS, &two);
    // Two people on each of two cameras: counted per camera.
    s.frames("east", NOON, NOON + 20 * S, 500 * MS, &two);
    assert_quiet(&s);
}

#[test]
fn occupancy_closes_when_the_camera_stops_sending_frames() {
    let mut s = Script::new(OCCUPANCY);
    let three = [at(1, 10.0, 10.0), at(2, 20.0, 20.0), at(3, 30.0, 30.0)];
    s.frames("west", NOON, NOON + 4 * S, 500 * MS, &three);
    s.ticks(NOON + 4 * S, NOON + 20 * S);
    let id = format!("crowd:west:camera:{}", NOON + 2 * S);
    assert_eq!(
        timeline(s.checked()),
        [(id.clone(), false, NOON + 2 * S), (id, true, NOON + 9 * S)]
    );
}

// ------------------------------------------------------------------ running

/// West: 10 px per metre, so the limit of 3.2 m/s is 32 px/s.
const RUNNING: &str = r#"
    [calibration]
    west = 10.0
    east = 100.0

    [[rules]]
    name = "run"
    kind = "running"
    max_speed = 3.2
    absence_s = 2.0
"#;

#[test]
fn running_raises_on_the_smoothed_speed_and_closes_after_slowing_down() {
    let mut s = Script::new(RUNNING);
    // 10 fps: walks at 1 m/s for 3 s, runs at 6 m/s for 3 s, then stands.
    for k in 0..=120_i64 {
        let t = k as f32 / 10.0;
        let x = match t {
            t if t <= 3.0 => 100.0 + 10.0 * t,
            t if t <= 6.0 => 130.0 + 60.0 * (t - 3.0),
            _ => 310.0,
        };
        s.frame("west", NOON + k * 100 * MS, vec![at(1, x, 200.0)]);
    }
    s.tick(NOON + 20 * S);
    // Theil–Sen over the last second (11 frames): the median slope is
    // 26.7 px/s at 3.4 s and 35 px/s at 3.5 s, so it raises at 3.5 s; it is
    // 40 px/s at 6.4 s and 30 px/s at 6.5 s, so the last fast frame is at
    // 6.4 s and the alert closes 2 s later.
    let id = format!("run:west:1:{}", NOON + 3_500 * MS);
    assert_eq!(
        timeline(s.checked()),
        [
            (id.clone(), false, NOON + 3_500 * MS),
            (id, true, NOON + 8_400 * MS)
        ]
    );
    let raise = &s.events[0];
    assert_eq!(
        (raise.person_ids.as_slice(), raise.camera_id.as_str()),
        ([1_u64].as_slice(), "west")
    );
    assert!(
        (raise.evidence.max_speed - 3.5).abs() < 1e-3,
        "{:?}",
        raise.evidence
    );
    assert!(
        s.events[1].evidence.max_speed >= 5.9,
        "{:?}",
        s.events[1].evidence
    );
}

#[test]
fn running_ignores_a_single_noisy_box_slow_walkers_and_calibrated_cameras() {
    let mut s = Script::new(RUNNING);
    for k in 0..=100_i64 {
        let t = k as f32 / 10.0;
        let ts = NOON + k * 100 * MS;
        // Standing, but one frame's box jumps 100 px away.
        let jumpy = if k == 50 {
            at(2, 150.0, 50.0)
        } else {
            at(2, 50.0, 50.0)
        };
        // Walking briskly at 2.5 m/s (25 px/s), under the limit.
        let brisk = at(3, 50.0 + 25.0 * t, 300.0);
        s.frame("west", ts, vec![jumpy, brisk]);
        // 60 px/s is 6 m/s on west, but 0.6 m/s on east.
        s.frame("east", ts, vec![at(4, 60.0 * t, 300.0)]);
    }
    s.tick(NOON + 30 * S);
    assert_quiet(&s);
}

// ---------------------------------------------------------- impossible path

const PATHS: &str = r#"
    [[topology]]
    from = "west"
    to = "east"
    min_transit_s = 5
    max_transit_s = 60

    [[topology]]
    from = "east"
    to = "north"

    [[rules]]
    name = "path"
    kind = "impossible_path"
    severity = "info"
"#;

#[test]
fn impossible_path_raises_and_closes_at_once_for_too_fast_or_unlinked() {
    let mut s = Script::new(PATHS);
    s.frames(
        "west",
        NOON,
        NOON + 10 * S,
        S,
        &[at(7, 50.0, 50.0), at(9, 60.0, 60.0)],
    );
    // 2 s after west: faster than the 5 s minimum.
    s.frames(
        "east",
        NOON + 12 * S,
        NOON + 15 * S,
        S,
        &[at(7, 50.0, 50.0)],
    );
    // A camera with no link from west at all, however late.
    s.frames(
        "south",
        NOON + 50 * S,
        NOON + 52 * S,
        S,
        &[at(9, 50.0, 50.0)],
    );
    let fast = format!("path:east:7:{}", NOON + 12 * S);
    let unlinked = format!("path:south:9:{}", NOON + 50 * S);
    assert_eq!(
        timeline(s.checked()),
        [
            (fast.clone(), false, NOON + 12 * S),
            (fast, true, NOON + 12 * S),
            (unlinked.clone(), false, NOON + 50 * S),
            (unlinked, true, NOON + 50 * S),
        ]
    );
    let raise = &s.events[0];
    assert_eq!(raise.severity, Severity::Info);
    assert_eq!(
        (raise.camera_id.as_str(), raise.person_ids.as_slice()),
        ("east", [7_u64].as_slice())
    );
    assert_eq!(raise.evidence.previous_camera.as_deref(), Some("west"));
    assert_eq!(raise.evidence.previous_seen_us, Some(NOON + 10 * S));
    assert!(
        raise
            .message
            .contains("faster than the 5.0 s minimum transit"),
        "{}",
        raise.message
    );
    assert!(
        s.events[2]
            .message
            .contains("no link from camera west to camera south")
    );
    assert_eq!(s.engine.open_alerts().count(), 0);
}

#[test]
fn impossible_path_allows_enough_transit_late_arrivals_and_overlapping_views() {
    let mut s = Script::new(PATHS);
    s.frames(
        "west",
        NOON,
        NOON + 10 * S,
        S,
        &[at(8, 50.0, 50.0), at(10, 60.0, 60.0)],
    );
    // 6 s after west: slower than the 5 s minimum.
    s.frames(
        "east",
        NOON + 16 * S,
        NOON + 20 * S,
        S,
        &[at(8, 50.0, 50.0)],
    );
    // 190 s: later than the 60 s maximum is late, not impossible.
    s.frames(
        "east",
        NOON + 200 * S,
        NOON + 201 * S,
        S,
        &[at(10, 50.0, 50.0)],
    );
    // East and north overlap: seen on both at once, back and forth.
    for k in 0..10 {
        let ts = NOON + 300 * S + k * 500 * MS;
        s.frame("north", ts, vec![at(11, 50.0, 50.0)]);
        s.frame("east", ts, vec![at(11, 50.0, 50.0)]);
    }
    // And back from east to west in time.
    s.frames(
        "west",
        NOON + 310 * S,
        NOON + 311 * S,
        S,
        &[at(11, 50.0, 50.0)],
    );
    assert_quiet(&s);
}

// -------------------------------------------------------------- camera down

const DOWN: &str = r#"
    [[rules]]
    name = "down"
    kind = "camera_down"
    severity = "critical"
    max_down_s = 30
"#;

/// Health reports every 5 s in `[from, to]`: a camera that reports is not silent.
fn reports(s: &mut Script, camera: &str, state: HealthState, since: i64, from: i64, to: i64) {
    let mut ts = from;
    while ts <= to {
        s.health(camera, state, since, ts);
        s.ticks(ts, (ts + 5 * S).min(to + 1));
        ts += 5 * S;
    }
}

#[test]
fn camera_down_raises_after_max_down_and_closes_when_up_again() {
    let mut s = Script::new(DOWN);
    reports(&mut s, "west", HealthState::Up, NOON, NOON, NOON + 95 * S);
    // Stalled 20 s (from 100 to 120 s): shorter than the limit.
    reports(
        &mut s,
        "west",
        HealthState::Stalled,
        NOON + 100 * S,
        NOON + 100 * S,
        NOON + 115 * S,
    );
    reports(
        &mut s,
        "west",
        HealthState::Up,
        NOON + 119_500 * MS,
        NOON + 120 * S,
        NOON + 195 * S,
    );
    assert_quiet(&s);
    // Down from 200 s, reported from 201 s; up again at 244 s, reported at 245 s.
    reports(
        &mut s,
        "west",
        HealthState::Down,
        NOON + 200 * S,
        NOON + 201 * S,
        NOON + 241 * S,
    );
    reports(
        &mut s,
        "west",
        HealthState::Up,
        NOON + 244 * S,
        NOON + 245 * S,
        NOON + 300 * S,
    );
    let id = format!("down:west:camera:{}", NOON + 230 * S);
    assert_eq!(
        timeline(s.checked()),
        [
            (id.clone(), false, NOON + 230 * S),
            (id, true, NOON + 244 * S)
        ]
    );
    let (raise, close) = (&s.events[0], &s.events[1]);
    assert_eq!(
        (raise.severity, raise.trigger_ts_us),
        (Severity::Critical, NOON + 230 * S)
    );
    assert!(raise.person_ids.is_empty());
    assert!(
        raise.message.contains("DOWN for 30.0 s"),
        "{}",
        raise.message
    );
    assert_eq!(raise.evidence.dwell_s, 30.0);
    assert!(
        close.message.contains("up again after 44.0 s"),
        "{}",
        close.message
    );
}

#[test]
fn camera_down_counts_silence_and_closes_on_the_next_frame() {
    let mut s = Script::new(DOWN);
    s.frames("west", NOON, NOON + 50 * S, S, &[]);
    s.ticks(NOON + 50 * S, NOON + 90 * S);
    s.frame("west", NOON + 90 * S, vec![]);
    s.frames("west", NOON + 91 * S, NOON + 150 * S, S, &[]);
    let id = format!("down:west:camera:{}", NOON + 80 * S);
    assert_eq!(
        timeline(s.checked()),
        [
            (id.clone(), false, NOON + 80 * S),
            (id, true, NOON + 90 * S)
        ]
    );
    assert!(
        s.events[0]
            .message
            .contains("no frames or health reports for 30.0 s")
    );
    assert_eq!(s.events[0].evidence.last_seen_us, Some(NOON + 50 * S));
}

#[test]
fn camera_down_silent_camera_closes_when_heard_again() {
    let mut s = Script::new(DOWN);
    s.health("west", HealthState::Up, NOON - 3_600 * S, NOON);
    s.ticks(NOON, NOON + 40 * S);
    // Its reports were lost for a while; it has been UP all along.
    s.health("west", HealthState::Up, NOON - 3_600 * S, NOON + 40 * S);
    let id = format!("down:west:camera:{}", NOON + 30 * S);
    assert_eq!(
        timeline(s.checked()),
        [
            (id.clone(), false, NOON + 30 * S),
            (id, true, NOON + 40 * S)
        ]
    );
}

#[test]
fn camera_down_watches_listed_cameras_that_never_report_but_not_ended_ones() {
    let mut s = Script::new(
        r#"
        [[rules]]
        name = "down"
        kind = "camera_down"
        cameras = ["west", "ghost", "file"]
        max_down_s = 30
        "#,
    );
    // A file source: frames, then ENDED, then nothing.
    s.frames("file", NOON, NOON + 10 * S, S, &[]);
    s.health("file", HealthState::Ended, NOON + 10 * S, NOON + 10 * S);
    // West sends frames all along (its first ten seconds are behind the
    // engine's clock, which is fine).
    s.frames("west", NOON, NOON + 200 * S, S, &[]);
    let id = format!("down:ghost:camera:{}", NOON + 30 * S);
    assert_eq!(timeline(s.checked()), [(id, false, NOON + 30 * S)]);
    assert_eq!(s.engine.open_alerts().count(), 1, "ghost is still down");
}

// ----------------------------------------------------------- cross-cutting

#[test]
fn replay_gives_the_same_alerts_whatever_the_tick_rate() {
    let rules = format!("{LOITERING}{OCCUPANCY}{DOWN}");
    let run = |tick_every: Option<i64>| {
        let mut s = Script::new(&rules);
        let crowd = [at(1, 50.0, 50.0), at(2, 60.0, 60.0), at(3, 70.0, 70.0)];
        for k in 0..=40 {
            let ts = NOON + k * 500 * MS;
            s.frame("west", ts, crowd.to_vec());
            if let Some(every) = tick_every {
                let mut t = ts + every;
                while t < ts + 500 * MS {
                    s.tick(t);
                    t += every;
                }
            }
        }
        // West goes quiet; ticks at the given rate, or one at the end.
        let mut t = NOON + 20 * S;
        while let Some(every) = tick_every.filter(|_| t < NOON + 120 * S) {
            t += every;
            s.tick(t);
        }
        s.tick(NOON + 120 * S);
        let mut events = timeline(s.checked());
        events.sort();
        events
    };
    let reference = run(Some(250 * MS));
    // Three loiterers and the crowd, raised and closed; west silent.
    assert_eq!(reference.len(), 9, "{reference:#?}");
    assert_eq!(run(Some(3 * S)), reference);
    assert_eq!(run(None), reference);
}

#[test]
fn a_camera_behind_the_clock_is_judged_on_its_own_time() {
    // The service restarts and ticks on the wall clock, ten minutes after
    // the frames it now reads from a backlog, which it catches up quickly.
    let mut s = Script::new(&format!("{LOITERING}{DOWN}"));
    let wall = NOON + 600 * S;
    s.tick(wall);
    for k in 0..=40 {
        let ts = NOON + k * 500 * MS;
        s.frame("west", ts, vec![at(7, 50.0, 50.0)]);
        s.tick(wall + k * 10 * MS);
    }
    // Caught up: the wall clock goes on without frames.
    let caught_up = wall + 400 * MS;
    s.ticks(caught_up, caught_up + 29 * S);
    let lobby = format!("lobby:west:7:{}", NOON + 10 * S);
    let expected = vec![
        (lobby.clone(), false, NOON + 10 * S),
        (lobby, true, NOON + 25 * S),
    ];
    assert_eq!(
        timeline(s.checked()),
        expected,
        "not silent while catching up"
    );
    // Then west really is silent.
    s.tick(caught_up + 30 * S);
    let down = format!("down:west:camera:{}", NOON + 50 * S);
    assert_eq!(timeline(&s.events[2..]), [(down, false, NOON + 50 * S)]);
}

#[test]
fn non_finite_boxes_are_skipped_without_panicking() {
    let mut s = Script::new(&format!("{LOITERING}{OCCUPANCY}{RUNNING}"));
    let bad = |person, x: f32, width: f32| TrackObs {
        x,
        width,
        ..at(person, 50.0, 50.0)
    };
    for k in 0..=100_i64 {
        let ts = NOON + k * 200 * MS;
        let tracks = vec![
            bad(1, f32::NAN, 20.0),
            bad(2, 40.0, f32::INFINITY),
            bad(3, f32::NEG_INFINITY, 20.0),
            TrackObs {
                y: f32::NAN,
                ..at(4, 50.0, 50.0)
            },
            at(5, 50.0, 50.0),
        ];
        s.frame("west", ts, tracks);
    }
    let raises = s.raises();
    assert_eq!(raises.len(), 1, "only person 5 loiters: {raises:#?}");
    assert_eq!(raises[0].person_ids, [5]);
    assert_eq!(s.engine.stats().skipped_tracks, 4 * 101);
}

#[test]
fn out_of_order_and_extreme_inputs_do_not_panic() {
    let config: RulesConfig = toml::from_str(include_str!(
        "../../deploy/config/alerts-rules.example.toml"
    ))
    .unwrap();
    let mut s = Script {
        engine: Engine::new(&config).unwrap(),
        events: Vec::new(),
    };
    let huge = TrackObs {
        person_id: u64::MAX,
        track_id: u64::MAX,
        x: f32::MAX,
        y: -f32::MAX,
        width: f32::MAX,
        height: f32::MAX,
    };
    let person = |x| at(1, x, 400.0);
    s.frame("west", NOON + 10 * S, vec![person(100.0), huge]);
    s.frame("west", NOON + 5 * S, vec![person(100.0)]); // earlier: skipped
    s.frame("west", NOON + 10 * S, vec![person(100.0)]); // same instant: skipped
    s.frame(
        "west",
        NOON + 11 * S,
        vec![person(f32::MIN_POSITIVE), huge, huge],
    );
    s.frame("east", NOON + 9 * S, vec![person(100.0)]); // behind another camera: fine
    for ts in [i64::MIN, -1, MAX_TS_US + 1, i64::MAX] {
        s.frame("west", ts, vec![person(100.0)]);
        s.tick(ts);
        s.track_end("west", 1, ts);
        s.health("west", HealthState::Down, ts, ts);
    }
    s.tick(NOON); // backwards: nothing
    s.health("west", HealthState::Stalled, i64::MIN, NOON + 12 * S);
    s.health("west", HealthState::Down, NOON + 100 * S, NOON + 13 * S); // since after ts
    s.health("west", HealthState::Up, NOON + 20 * S, NOON + 12 * S); // older report: skipped
    s.track_end("west", 1, NOON + S); // older than the last frame
    s.track_end("nowhere", 42, NOON + 14 * S);
    s.frame("west", NOON + 15 * S, vec![person(1e30), huge]);
    s.frame("west", NOON + 15_001 * MS, vec![person(-1e30)]);
    s.tick(MAX_TS_US);
    s.frame("west", MAX_TS_US, vec![person(100.0)]);
    s.health("west", HealthState::Up, MAX_TS_US, MAX_TS_US);
    s.checked();
    let stats = s.engine.stats();
    assert_eq!(stats.skipped_frames, 2 + 4);
    assert_eq!(stats.skipped_reports, 1 + 4);
    assert_eq!(stats.skipped_other, 8);
    assert_eq!(stats.skipped_tracks, 1, "the same person twice in a frame");
    assert!(s.engine.now_us() == Some(MAX_TS_US));
}

#[test]
fn memory_is_bounded_per_camera_and_forgotten_persons_close_their_alerts() {
    let mut s = Script::new(&format!(
        "max_persons_per_camera = 3\nforget_after_s = 30\n{}",
        r#"
        [[rules]]
        name = "stay"
        kind = "loitering"
        max_dwell_s = 1
        absence_s = 100
        "#
    ));
    for person in 0..10 {
        s.frame(
            "west",
            NOON + person as i64 * S,
            vec![at(person, 50.0, 50.0)],
        );
    }
    let stats = s.engine.stats();
    assert_eq!((stats.persons_on_cameras, stats.evicted_persons), (3, 7));
    assert_eq!(stats.persons, 10);
    // Person 9 keeps coming, long enough to loiter; then nobody.
    s.frames(
        "west",
        NOON + 10 * S,
        NOON + 12 * S,
        S,
        &[at(9, 50.0, 50.0)],
    );
    assert_eq!(s.engine.open_alerts().count(), 1);
    s.tick(NOON + 100 * S);
    let stats = s.engine.stats();
    assert_eq!(
        (stats.persons_on_cameras, stats.persons, stats.open_alerts),
        (0, 0, 0)
    );
    let id = format!("stay:west:9:{}", NOON + 10 * S);
    assert_eq!(
        timeline(s.checked()),
        [
            (id.clone(), false, NOON + 10 * S),
            (id, true, NOON + 42 * S)
        ]
    );
    assert!(
        s.events[1].message.contains("forgotten"),
        "{}",
        s.events[1].message
    );
}
