//! Synthetic presence streams with known truth (pure, no I/O): the oracle
//! for tests of the canned SQL reports, and the load for benchmarks at tens
//! of millions of presence rows.
//!
//! # Model
//! A store of [`Department`]s, each watched by a few cameras. Every day,
//! [`SynthConfig::people_per_day`] people arrive during opening hours: a
//! uniform share plus [`ArrivalPeak`] bumps (midday and late afternoon by
//! default). A person walks a route: the first department, then, with
//! probability [`SynthConfig::continue_probability`] per step, another
//! department drawn uniformly from the others (a random walk over all
//! departments; revisits allowed, at most
//! [`SynthConfig::max_department_stops`] stops). A fraction
//! [`SynthConfig::full_tour_fraction`] instead tour every department: the
//! first, then all others in random order. At each stop the person is seen
//! by 1 to [`SynthConfig::max_visits_per_department`] cameras of the
//! department (not the same camera twice in a row when there are several).
//! Each camera visit lasts a log-normal dwell, clamped to
//! [`MIN_DWELL_S`]..=[`SynthConfig::dwell_max_s`]; visits are separated by
//! log-normal walks, short within a department, longer between departments,
//! clamped to [`MIN_WALK_S`]..=[`MAX_WALK_FACTOR`] × the median.
//!
//! A route that would run past midnight is moved earlier so that it ends
//! before midnight (never earlier than the day's start); visits that still
//! would not end before midnight (routes longer than a day) are cut. So every
//! event of a day lies in that day and a day is generated alone: the stream
//! holds one day in memory at a time.
//!
//! # Outages
//! An [`Outage`] makes its camera blind on `[from_us, to_us)`. A visit
//! `[enter, exit]` at that camera **overlapping** an outage
//! (`enter < to_us && from_us <= exit`) is dropped entirely: neither ENTER nor
//! EXIT is emitted and it is absent from the truth. Overlapping outages of a
//! camera count as their union; outages of unknown cameras and empty ones are
//! ignored. A camera's tracker restarts after an outage, so its event-id
//! epoch becomes the outage end and track ids start again from 1.
//!
//! Health reports ([`CameraHealth`]), per camera: one every
//! [`SynthConfig::health_interval_s`] from the stream start; DOWN (since the
//! outage start) when the report time is inside an outage, UP otherwise
//! (since the end of the last outage, or the stream start). On top of these,
//! a DOWN report at each outage start and an UP report at each outage end
//! that fall inside the stream (not repeated where a periodic report falls
//! on the same microsecond).
//!
//! # Splits and merges
//! A fraction [`SynthConfig::split_fraction`] of people with at least two
//! planned visits lose their identity from a random visit on (not the first):
//! the tracker sees them under a new person id from there. One [`IdMerge`]
//! from the new id into the old one follows, at the exit of one of the first
//! [`MERGE_EVIDENCE_VISITS`] visits under the new id (the tracker merges when
//! a track ends), with that visit's camera. If outages leave no emitted visit
//! before or after the split, the person is not split: one id, no merge.
//!
//! # Ids
//! Person ids are minted like the tracker does: increasing from
//! [`SynthConfig::first_person_id`] in order of each identity's first ENTER
//! (so a merge always goes from a newer, larger id into an older, smaller
//! one). Track ids count up per camera and epoch in order of ENTER, skipping
//! a few (tentative tracks that were never confirmed). Event ids are
//! `<camera>:<epoch hex>:<track>:enter|exit` and `merge:<from>:<into>`, as
//! the tracker writes them.
//!
//! # Order
//! Events come in non-decreasing time order (ENTER at its enter time, EXIT
//! at its exit time, merges and health reports at their `ts_us`); at equal
//! times ENTER, EXIT, merge, health, then generation order.
//!
//! # Truth
//! [`Truth::generate`] plans every day without building events and keeps
//! every emitted visit ([`Visit`]), person ([`PersonTruth`]) and merge
//! ([`MergeTruth`]); [`Synth::current_day`] gives the truth of the day being
//! streamed. The [`Truth`] methods are the reports' expected answers, written
//! as plain Rust.
//!
//! # Cost
//! Planning a day keeps its visits (64 bytes each), two 16-byte sort keys
//! per visit and a few bytes per person: about 200 bytes per presence row of
//! the largest day at the peak (1M people a day, about 6M rows, is about
//! 1 GB). A release build streams 3–4M events a second on one core.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::ops::Range;

use mot::rng::SplitMix64;
use schemas::v1::camera_health::State;
use schemas::v1::presence_event::Kind;
use schemas::v1::{CameraHealth, IdMerge, PresenceEvent};

/// Microseconds in a day.
pub const DAY_US: i64 = 86_400_000_000;
/// Microseconds in an hour.
pub const HOUR_US: i64 = 3_600_000_000;
/// Shortest camera visit, seconds (a confirmed track needs a few frames).
pub const MIN_DWELL_S: f64 = 1.0;
/// Shortest walk between two camera visits, seconds.
pub const MIN_WALK_S: f64 = 1.0;
/// Longest walk, as a multiple of its median.
pub const MAX_WALK_FACTOR: f64 = 20.0;
/// A merge happens at the exit of one of this many first visits under the
/// new id.
pub const MERGE_EVIDENCE_VISITS: usize = 3;
/// Mean number of tentative (never confirmed) tracks between two confirmed
/// ones on a camera: the gaps in track ids.
const TENTATIVE_TRACKS_MEAN: f64 = 0.3;
/// Largest start day accepted (±2^60 µs, about 36,000 years): keeps all time
/// arithmetic far from overflow.
const MAX_ABS_START_US: i64 = 1 << 60;
/// Largest number of days accepted.
const MAX_DAYS: u32 = 1_000_000;

/// A department of the store and the cameras that watch it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Department {
    /// Department name, e.g. `"grocery"`.
    pub name: String,
    /// Camera ids watching it. A camera listed under several departments
    /// belongs to the first; a department without cameras is left out.
    pub cameras: Vec<String>,
}

/// A camera is blind on `[from_us, to_us)`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outage {
    /// The blind camera.
    pub camera_id: String,
    /// First blind microsecond (Unix µs).
    pub from_us: i64,
    /// First microsecond seen again (Unix µs).
    pub to_us: i64,
}

/// A bump in the arrival rate: a normal distribution over the opening hours,
/// truncated to them.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ArrivalPeak {
    /// Centre, as a fraction of the opening hours (0 = opening, 1 = closing).
    pub at: f64,
    /// Standard deviation, as a fraction of the opening hours.
    pub spread: f64,
    /// Share of arrivals, relative to the other peaks and
    /// [`SynthConfig::arrival_uniform_weight`].
    pub weight: f64,
}

/// Everything that shapes a synthetic stream. Values out of range are
/// clamped (documented per field); nothing panics.
#[derive(Debug, Clone, PartialEq)]
pub struct SynthConfig {
    /// Seed of every random draw: the same configuration gives the same stream.
    pub seed: u64,
    /// The first day, Unix µs, rounded down to its UTC midnight (clamped to
    /// ±2^60).
    pub start_day_us: i64,
    /// Days generated (at most 1,000,000).
    pub days: u32,
    /// Departments and their cameras; every route starts at the first.
    pub departments: Vec<Department>,
    /// People arriving per day.
    pub people_per_day: u32,
    /// Opening time, seconds after midnight UTC: the first possible arrival.
    /// An empty or reversed opening window (or one past 86,400) means all day.
    pub open_s: u32,
    /// Closing time, seconds after midnight UTC: no arrivals from then on
    /// (people already inside finish their route).
    pub close_s: u32,
    /// Share of arrivals spread uniformly over the opening hours, relative
    /// to the peaks' weights.
    pub arrival_uniform_weight: f64,
    /// Bumps in the arrival rate.
    pub arrival_peaks: Vec<ArrivalPeak>,
    /// Fraction of people who visit every department (clamped to [0, 1]).
    pub full_tour_fraction: f64,
    /// Probability of moving on to another department after each stop
    /// (clamped to [0, 1]).
    pub continue_probability: f64,
    /// Most department stops of a route that is not a full tour (1..=1000).
    pub max_department_stops: u32,
    /// Most camera visits per department stop (1..=100); the number is
    /// uniform from 1.
    pub max_visits_per_department: u32,
    /// Median camera visit, seconds (log-normal).
    pub dwell_median_s: f64,
    /// Log-normal shape of camera visits (σ of the log).
    pub dwell_sigma: f64,
    /// Longest camera visit, seconds (at least [`MIN_DWELL_S`], at most a day).
    pub dwell_max_s: f64,
    /// Median walk between two cameras of one department, seconds.
    pub walk_within_median_s: f64,
    /// Median walk from one department to the next, seconds.
    pub walk_between_median_s: f64,
    /// Log-normal shape of walks (σ of the log).
    pub walk_sigma: f64,
    /// Fraction of people (with two visits or more) whose identity the
    /// tracker splits (clamped to [0, 1]).
    pub split_fraction: f64,
    /// Camera outages.
    pub outages: Vec<Outage>,
    /// Seconds between periodic health reports of each camera; 0 sends only
    /// the reports at outage starts and ends.
    pub health_interval_s: u32,
    /// The first person id minted (0 is taken as 1: 0 means "no person").
    pub first_person_id: u64,
    /// Frames analysed per second of camera time: detections per EXIT and
    /// frame counters of health reports (clamped to [0, 1000]).
    pub analysed_fps: f64,
}

impl Default for SynthConfig {
    /// A small store on Monday 2025-01-06, open 08:00–21:00 UTC: five
    /// departments with 2–4 cameras each (14 cameras), 2,000 people a day
    /// with arrival bumps around 12:30 and 17:45, 10% full tours, median
    /// visit 90 s (σ 1: 90th percentile ~5 min, 99th ~15 min, at most 45
    /// min), 5% identity splits, no outages, health reports every minute.
    /// About 6 presence intervals per person.
    fn default() -> Self {
        let department = |name: &str, n: usize| Department {
            name: name.to_string(),
            cameras: (1..=n).map(|i| format!("{name}-{i}")).collect(),
        };
        SynthConfig {
            seed: 1,
            start_day_us: 1_736_121_600_000_000,
            days: 1,
            departments: vec![
                department("entrance", 2),
                department("grocery", 4),
                department("electronics", 3),
                department("clothing", 3),
                department("checkout", 2),
            ],
            people_per_day: 2_000,
            open_s: 8 * 3600,
            close_s: 21 * 3600,
            arrival_uniform_weight: 0.25,
            arrival_peaks: vec![
                ArrivalPeak {
                    at: 0.35,
                    spread: 0.08,
                    weight: 0.30,
                },
                ArrivalPeak {
                    at: 0.75,
                    spread: 0.12,
                    weight: 0.45,
                },
            ],
            full_tour_fraction: 0.10,
            continue_probability: 0.65,
            max_department_stops: 8,
            max_visits_per_department: 3,
            dwell_median_s: 90.0,
            dwell_sigma: 1.0,
            dwell_max_s: 45.0 * 60.0,
            walk_within_median_s: 20.0,
            walk_between_median_s: 60.0,
            walk_sigma: 0.6,
            split_fraction: 0.05,
            outages: Vec::new(),
            health_interval_s: 60,
            first_person_id: 1,
            analysed_fps: 5.0,
        }
    }
}

impl SynthConfig {
    /// `(camera_id, department)` for every camera that is used, in
    /// department order: the mapping the SQL reports join on.
    pub fn camera_departments(&self) -> Vec<(String, String)> {
        let m = Model::new(self);
        m.camera_ids
            .iter()
            .zip(&m.camera_dept)
            .map(|(c, &d)| (c.clone(), m.dept_names[d as usize].clone()))
            .collect()
    }
}

/// One event of the stream.
#[derive(Debug, Clone, PartialEq)]
pub enum SynthEvent {
    /// A person entered (at `enter_ts_us`) or left (at `exit_ts_us`) a camera.
    Presence(PresenceEvent),
    /// Two person ids are one person.
    Merge(IdMerge),
    /// A camera's periodic or state-change health report.
    Health(CameraHealth),
}

impl SynthEvent {
    /// The time the event is ordered by.
    pub fn ts_us(&self) -> i64 {
        match self {
            SynthEvent::Presence(p) if p.kind == Kind::Exit as i32 => p.exit_ts_us,
            SynthEvent::Presence(p) => p.enter_ts_us,
            SynthEvent::Merge(m) => m.ts_us,
            SynthEvent::Health(h) => h.ts_us,
        }
    }
}

/// One emitted presence interval and who it really was.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Visit {
    /// The real person (numbered from 0 over the whole stream, in arrival
    /// order per day); the same before and after a split.
    pub true_person: u64,
    /// The person id the tracker emitted.
    pub person_id: u64,
    /// Index into [`Truth::camera_ids`].
    pub camera: u32,
    /// Index into [`Truth::departments`].
    pub department: u32,
    /// ENTER time, Unix µs.
    pub enter_us: i64,
    /// EXIT time, Unix µs (after `enter_us`).
    pub exit_us: i64,
    /// The per-camera track id.
    pub track_id: u64,
    /// The camera's tracker epoch (stream start or last outage end), Unix µs.
    pub epoch_us: i64,
    /// Detections of the track.
    pub detections: u32,
    /// Mean detector score of the track.
    pub mean_score: f32,
}

/// One real person of the stream.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PersonTruth {
    /// The real person's number (see [`Visit::true_person`]).
    pub true_person: u64,
    /// Arrival time drawn (the route may have been moved earlier to end
    /// before midnight), Unix µs.
    pub arrival_us: i64,
    /// Whether the route tours every department.
    pub full_tour: bool,
    /// Visits planned.
    pub planned_visits: u32,
    /// Planned visits not emitted (outages, or cut at midnight).
    pub dropped_visits: u32,
    /// The id of the emitted visits (before the split); `None` when nothing
    /// was emitted.
    pub person_id: Option<u64>,
    /// The id after the split, when the person was split.
    pub split_id: Option<u64>,
}

/// One emitted id merge and who it was.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MergeTruth {
    /// The real person.
    pub true_person: u64,
    /// The newer id, retired.
    pub from_person_id: u64,
    /// The older id, kept.
    pub into_person_id: u64,
    /// When the merge was emitted, Unix µs.
    pub ts_us: i64,
    /// Index into [`Truth::camera_ids`] of the camera of the evidence.
    pub camera: u32,
    /// Similarity reported.
    pub similarity: f32,
}

/// The truth of one day of the stream.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Day {
    /// The day's UTC midnight, Unix µs.
    pub start_us: i64,
    /// People who arrived that day.
    pub people: Vec<PersonTruth>,
    /// Emitted visits, in ENTER order.
    pub visits: Vec<Visit>,
    /// Emitted merges.
    pub merges: Vec<MergeTruth>,
}

/// The truth of a whole stream, and the reports' expected answers.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Truth {
    /// Department names (those with cameras), indexed by [`Visit::department`].
    pub departments: Vec<String>,
    /// Camera ids, indexed by [`Visit::camera`].
    pub camera_ids: Vec<String>,
    /// Every real person.
    pub people: Vec<PersonTruth>,
    /// Every emitted visit.
    pub visits: Vec<Visit>,
    /// Every emitted merge.
    pub merges: Vec<MergeTruth>,
}

/// Transitions from one department to another.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TransitionCount {
    /// Transitions.
    pub transitions: u64,
    /// Distinct (merged) people who made them.
    pub people: u64,
}

/// One step of a person's path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PathStep {
    /// The id the visit was emitted with.
    pub person_id: u64,
    /// Camera id.
    pub camera_id: String,
    /// Department name.
    pub department: String,
    /// ENTER time, Unix µs.
    pub enter_us: i64,
    /// EXIT time, Unix µs.
    pub exit_us: i64,
}

impl Truth {
    /// Plans every day of `config` (the same draws as [`Synth`]) and keeps
    /// the truth. Memory grows with the whole stream: for tests and
    /// moderate sizes; stream with [`Synth`] and [`Synth::current_day`] for
    /// large ones.
    pub fn generate(config: &SynthConfig) -> Truth {
        let mut planner = Planner::new(config);
        let mut truth = Truth {
            departments: planner.model.dept_names.clone(),
            camera_ids: planner.model.camera_ids.clone(),
            ..Truth::default()
        };
        while let Some(plan) = planner.plan_day() {
            truth.people.extend(plan.day.people);
            truth.visits.extend(plan.day.visits);
            truth.merges.extend(plan.day.merges);
        }
        truth
    }

    /// `from → into` of every merge.
    fn merge_map(&self) -> HashMap<u64, u64> {
        self.merges
            .iter()
            .map(|m| (m.from_person_id, m.into_person_id))
            .collect()
    }

    /// The id `person_id` ends up as once every merge is applied.
    pub fn merged_id(&self, person_id: u64) -> u64 {
        resolve(&self.merge_map(), person_id)
    }

    /// Distinct person ids emitted, merges ignored.
    pub fn unique_people_before_merges(&self) -> usize {
        let ids: BTreeSet<u64> = self.visits.iter().map(|v| v.person_id).collect();
        ids.len()
    }

    /// Distinct person ids once merges are applied.
    pub fn unique_people_after_merges(&self) -> usize {
        let merges = self.merge_map();
        let ids: BTreeSet<u64> = self
            .visits
            .iter()
            .map(|v| resolve(&merges, v.person_id))
            .collect();
        ids.len()
    }

    /// Real people with at least one emitted visit (equals
    /// [`Truth::unique_people_after_merges`]: every split is merged).
    pub fn true_people_seen(&self) -> usize {
        let ids: BTreeSet<u64> = self.visits.iter().map(|v| v.true_person).collect();
        ids.len()
    }

    /// Emitted visits per merged person, ordered by `(enter, exit)`.
    fn visits_by_person(&self) -> BTreeMap<u64, Vec<&Visit>> {
        let merges = self.merge_map();
        let mut by_person: BTreeMap<u64, Vec<&Visit>> = BTreeMap::new();
        for v in &self.visits {
            by_person
                .entry(resolve(&merges, v.person_id))
                .or_default()
                .push(v);
        }
        for visits in by_person.values_mut() {
            visits.sort_by_key(|v| (v.enter_us, v.exit_us));
        }
        by_person
    }

    /// Department transitions `(from, to)`: two consecutive visits of one
    /// merged person, ordered by `(enter, exit)`, in different departments;
    /// with `arrivals`, only those whose second visit entered in it.
    pub fn transitions(
        &self,
        arrivals: Option<Range<i64>>,
    ) -> BTreeMap<(String, String), TransitionCount> {
        let mut found: BTreeMap<(u32, u32), (u64, BTreeSet<u64>)> = BTreeMap::new();
        for (person, visits) in self.visits_by_person() {
            for pair in visits.windows(2) {
                let (a, b) = (pair[0], pair[1]);
                let in_window = arrivals.as_ref().is_none_or(|w| w.contains(&b.enter_us));
                if a.department != b.department && in_window {
                    let entry = found.entry((a.department, b.department)).or_default();
                    entry.0 += 1;
                    entry.1.insert(person);
                }
            }
        }
        found
            .into_iter()
            .map(|((a, b), (transitions, people))| {
                let count = TransitionCount {
                    transitions,
                    people: people.len() as u64,
                };
                ((self.department(a), self.department(b)), count)
            })
            .collect()
    }

    /// Merged ids of the people with a visit in every department entered on
    /// the UTC day of `day_us`.
    pub fn people_in_every_department(&self, day_us: i64) -> BTreeSet<u64> {
        let day = day_us.div_euclid(DAY_US);
        let mut seen: BTreeMap<u64, BTreeSet<u32>> = BTreeMap::new();
        let merges = self.merge_map();
        for v in &self.visits {
            if v.enter_us.div_euclid(DAY_US) == day {
                let person = resolve(&merges, v.person_id);
                seen.entry(person).or_default().insert(v.department);
            }
        }
        seen.into_iter()
            .filter(|(_, departments)| departments.len() == self.departments.len())
            .map(|(person, _)| person)
            .collect()
    }

    /// Visits per `(department, hour)`, the hour being the start of the UTC
    /// hour of the visit's enter, Unix µs.
    pub fn visits_per_department_hour(&self) -> BTreeMap<(String, i64), u64> {
        let mut counts: BTreeMap<(u32, i64), u64> = BTreeMap::new();
        for v in &self.visits {
            let hour = v.enter_us.div_euclid(HOUR_US) * HOUR_US;
            *counts.entry((v.department, hour)).or_default() += 1;
        }
        counts
            .into_iter()
            .map(|((d, hour), n)| ((self.department(d), hour), n))
            .collect()
    }

    /// The path of the person `person_id` belongs to once merged (any of
    /// their ids), ordered by `(enter, exit)`.
    pub fn path(&self, person_id: u64) -> Vec<PathStep> {
        let person = self.merged_id(person_id);
        let visits = self.visits_by_person().remove(&person).unwrap_or_default();
        visits
            .into_iter()
            .map(|v| PathStep {
                person_id: v.person_id,
                camera_id: self.camera(v.camera),
                department: self.department(v.department),
                enter_us: v.enter_us,
                exit_us: v.exit_us,
            })
            .collect()
    }

    fn department(&self, index: u32) -> String {
        self.departments
            .get(index as usize)
            .cloned()
            .unwrap_or_default()
    }

    fn camera(&self, index: u32) -> String {
        self.camera_ids
            .get(index as usize)
            .cloned()
            .unwrap_or_default()
    }
}

/// Follows merges from `id` to the id it ends up as (a cycle, which
/// generated merges never form, stops after as many steps as merges).
fn resolve(merges: &HashMap<u64, u64>, id: u64) -> u64 {
    let mut id = id;
    for _ in 0..merges.len() {
        match merges.get(&id) {
            Some(&into) => id = into,
            None => break,
        }
    }
    id
}

/// The stream: an iterator of [`SynthEvent`]s in time order, one day
/// planned at a time.
#[derive(Debug)]
pub struct Synth {
    planner: Planner,
    current: Option<DayPlan>,
    pos: usize,
    /// Per camera: epoch and the event-id prefix `<camera>:<epoch hex>:`.
    prefixes: Vec<(i64, String)>,
}

impl Synth {
    /// The stream of `config`.
    pub fn new(config: &SynthConfig) -> Synth {
        Synth {
            planner: Planner::new(config),
            current: None,
            pos: 0,
            prefixes: Vec::new(),
        }
    }

    /// The truth of the day whose events are being streamed (`None` before
    /// the first event).
    pub fn current_day(&self) -> Option<&Day> {
        self.current.as_ref().map(|plan| &plan.day)
    }
}

impl Iterator for Synth {
    type Item = SynthEvent;

    fn next(&mut self) -> Option<SynthEvent> {
        loop {
            if let Some(plan) = &self.current
                && let Some(&key) = plan.keys.get(self.pos)
            {
                self.pos += 1;
                return Some(event(&self.planner.model, &mut self.prefixes, plan, key));
            }
            self.current = None; // one day in memory at a time
            self.current = Some(self.planner.plan_day()?);
            self.pos = 0;
        }
    }
}

/// A log-normal duration, clamped.
#[derive(Debug, Clone, Copy)]
struct Duration {
    median_s: f64,
    sigma: f64,
    min_s: f64,
    max_s: f64,
}

impl Duration {
    /// Validated: finite, positive median; finite, non-negative sigma;
    /// `min_s <= max_s`.
    fn new(median_s: f64, sigma: f64, min_s: f64, max_s: f64) -> Duration {
        let max_s = if max_s.is_finite() {
            max_s.clamp(min_s, 86_400.0)
        } else {
            min_s
        };
        let median_s = if median_s.is_finite() && median_s > 0.0 {
            median_s
        } else {
            min_s
        };
        let sigma = if sigma.is_finite() {
            sigma.max(0.0)
        } else {
            0.0
        };
        Duration {
            median_s,
            sigma,
            min_s,
            max_s,
        }
    }

    fn sample_us(&self, rng: &mut SplitMix64) -> i64 {
        let s = self.median_s * (self.sigma * rng.gaussian()).exp();
        // `s` is finite and positive or +inf; clamp bounds are finite, ordered.
        (s.clamp(self.min_s, self.max_s) * 1e6).round() as i64
    }
}

/// The configuration, validated and indexed.
#[derive(Debug, Clone)]
struct Model {
    seed: u64,
    start_us: i64,
    days: u32,
    dept_names: Vec<String>,
    dept_cameras: Vec<Vec<u32>>,
    camera_ids: Vec<String>,
    camera_dept: Vec<u32>,
    people_per_day: u32,
    open_us: i64,
    close_us: i64,
    /// Cumulative weight and component: `None` uniform, `Some((centre,
    /// sd))` a peak, µs after midnight.
    arrivals: Vec<(f64, Option<(f64, f64)>)>,
    full_tour: f64,
    continue_p: f64,
    max_stops: usize,
    max_visits: usize,
    dwell: Duration,
    walk_within: Duration,
    walk_between: Duration,
    split: f64,
    /// Per camera: disjoint outages sorted by start.
    outages: Vec<Vec<(i64, i64)>>,
    /// Per camera: `down[i]` = blind time within the stream of outages `..i`.
    down: Vec<Vec<i64>>,
    health_interval_us: i64,
    first_person_id: u64,
    analysed_fps: f64,
}

fn probability(p: f64) -> f64 {
    if p.is_finite() {
        p.clamp(0.0, 1.0)
    } else {
        0.0
    }
}

impl Model {
    fn new(c: &SynthConfig) -> Model {
        let mut dept_names = Vec::new();
        let mut dept_cameras = Vec::new();
        let mut camera_ids: Vec<String> = Vec::new();
        let mut camera_dept = Vec::new();
        let mut index: HashMap<&str, u32> = HashMap::new();
        for d in &c.departments {
            let mut cameras = Vec::new();
            for cam in &d.cameras {
                if index.contains_key(cam.as_str()) {
                    continue;
                }
                let i = camera_ids.len() as u32;
                index.insert(cam, i);
                camera_ids.push(cam.clone());
                camera_dept.push(dept_names.len() as u32);
                cameras.push(i);
            }
            if !cameras.is_empty() {
                dept_names.push(d.name.clone());
                dept_cameras.push(cameras);
            }
        }
        let start_us = c
            .start_day_us
            .clamp(-MAX_ABS_START_US, MAX_ABS_START_US)
            .div_euclid(DAY_US)
            * DAY_US;
        let days = c.days.min(MAX_DAYS);
        let end_us = start_us + i64::from(days) * DAY_US;

        let (open_s, close_s) = if c.open_s < c.close_s && c.close_s <= 86_400 {
            (c.open_s, c.close_s)
        } else {
            (0, 86_400)
        };
        let (open_us, close_us) = (
            i64::from(open_s) * 1_000_000,
            i64::from(close_s) * 1_000_000,
        );
        let span = (close_us - open_us) as f64;
        let weight = |w: f64| if w.is_finite() { w.max(0.0) } else { 0.0 };
        let mut arrivals = Vec::new();
        let mut total = weight(c.arrival_uniform_weight);
        if total > 0.0 {
            arrivals.push((total, None));
        }
        for p in &c.arrival_peaks {
            let (w, at, spread) = (weight(p.weight), p.at, p.spread);
            if w > 0.0 && at.is_finite() && spread.is_finite() && spread > 0.0 {
                total += w;
                let centre = open_us as f64 + at * span;
                arrivals.push((total, Some((centre, spread * span))));
            }
        }

        let mut outages = vec![Vec::new(); camera_ids.len()];
        for o in &c.outages {
            let Some(&cam) = index.get(o.camera_id.as_str()) else {
                continue;
            };
            let from = o.from_us.clamp(start_us - DAY_US, end_us + DAY_US);
            let to = o.to_us.clamp(start_us - DAY_US, end_us + DAY_US);
            if from < to {
                outages[cam as usize].push((from, to));
            }
        }
        for list in &mut outages {
            list.sort_unstable();
            let mut union: Vec<(i64, i64)> = Vec::with_capacity(list.len());
            for &(from, to) in list.iter() {
                match union.last_mut() {
                    Some(last) if from <= last.1 => last.1 = last.1.max(to),
                    _ => union.push((from, to)),
                }
            }
            *list = union;
        }
        let down = outages
            .iter()
            .map(|list| {
                let mut sums = vec![0];
                let mut sum = 0;
                for &(from, to) in list {
                    sum += (to - from.max(start_us)).max(0);
                    sums.push(sum);
                }
                sums
            })
            .collect();

        let fps = if c.analysed_fps.is_finite() {
            c.analysed_fps.clamp(0.0, 1000.0)
        } else {
            0.0
        };
        let walk = |median: f64| {
            let median = if median.is_finite() && median > 0.0 {
                median.max(MIN_WALK_S)
            } else {
                MIN_WALK_S
            };
            Duration::new(median, c.walk_sigma, MIN_WALK_S, median * MAX_WALK_FACTOR)
        };
        Model {
            seed: c.seed,
            start_us,
            days,
            dept_names,
            dept_cameras,
            camera_ids,
            camera_dept,
            people_per_day: c.people_per_day,
            open_us,
            close_us,
            arrivals,
            full_tour: probability(c.full_tour_fraction),
            continue_p: probability(c.continue_probability),
            max_stops: c.max_department_stops.clamp(1, 1000) as usize,
            max_visits: c.max_visits_per_department.clamp(1, 100) as usize,
            dwell: Duration::new(c.dwell_median_s, c.dwell_sigma, MIN_DWELL_S, c.dwell_max_s),
            walk_within: walk(c.walk_within_median_s),
            walk_between: walk(c.walk_between_median_s),
            split: probability(c.split_fraction),
            outages,
            down,
            health_interval_us: i64::from(c.health_interval_s) * 1_000_000,
            first_person_id: c.first_person_id.max(1),
            analysed_fps: fps,
        }
    }

    /// An arrival time, µs after midnight, within opening hours.
    fn arrival_offset_us(&self, rng: &mut SplitMix64) -> i64 {
        let uniform = |rng: &mut SplitMix64| {
            self.open_us + (rng.uniform() * (self.close_us - self.open_us) as f64) as i64
        };
        let total = self.arrivals.last().map_or(0.0, |a| a.0);
        let pick = rng.uniform() * total;
        let component = self.arrivals.iter().find(|a| pick < a.0).map(|a| a.1);
        let Some(Some((centre, sd))) = component else {
            return uniform(rng);
        };
        for _ in 0..16 {
            let t = (centre + sd * rng.gaussian()) as i64;
            if (self.open_us..self.close_us).contains(&t) {
                return t;
            }
        }
        uniform(rng)
    }

    /// Plans a route into `legs`: `(camera, enter, exit)` µs after arrival.
    fn route(
        &self,
        rng: &mut SplitMix64,
        full_tour: bool,
        stops: &mut Vec<u32>,
        legs: &mut Vec<(u32, i64, i64)>,
    ) {
        let n = self.dept_cameras.len() as u32;
        stops.clear();
        legs.clear();
        if n == 0 {
            return;
        }
        stops.push(0);
        if full_tour {
            stops.extend(1..n);
            for i in (2..stops.len()).rev() {
                let j = 1 + rng.index(i);
                stops.swap(i, j);
            }
        } else {
            while n > 1 && stops.len() < self.max_stops && rng.uniform() < self.continue_p {
                let here = stops[stops.len() - 1];
                let step = 1 + rng.index(n as usize - 1) as u32;
                stops.push((here + step) % n);
            }
        }
        let mut t = 0i64;
        for &dept in stops.iter() {
            let cameras = &self.dept_cameras[dept as usize];
            let visits = 1 + rng.index(self.max_visits);
            let mut previous = None;
            for j in 0..visits {
                if !legs.is_empty() {
                    let walk = if j == 0 {
                        &self.walk_between
                    } else {
                        &self.walk_within
                    };
                    t += walk.sample_us(rng);
                }
                let mut camera = cameras[rng.index(cameras.len())];
                if cameras.len() > 1 && previous == Some(camera) {
                    let k = cameras.iter().position(|&c| c == camera).unwrap_or(0);
                    camera = cameras[(k + 1 + rng.index(cameras.len() - 1)) % cameras.len()];
                }
                previous = Some(camera);
                let dwell = self.dwell.sample_us(rng);
                legs.push((camera, t, t + dwell));
                t += dwell;
            }
        }
    }

    /// The camera's tracker epoch for a visit `[enter, exit]`, or `None` when
    /// the visit overlaps an outage.
    fn epoch_if_seen(&self, camera: u32, enter: i64, exit: i64) -> Option<i64> {
        let list = &self.outages[camera as usize];
        let i = list.partition_point(|o| o.0 <= exit);
        match i.checked_sub(1).map(|i| list[i]) {
            None => Some(self.start_us),
            Some((_, to)) if enter < to => None,
            Some((_, to)) => Some(to.max(self.start_us)),
        }
    }

    /// `(down, since, analysed frames so far)` of a camera at `t`.
    fn health_at(&self, camera: u32, t: i64) -> (bool, i64, u64) {
        let list = &self.outages[camera as usize];
        let i = list.partition_point(|o| o.0 <= t);
        let (down, since, blind) = match i.checked_sub(1) {
            None => (false, self.start_us, 0),
            Some(j) => {
                let (from, to) = list[j];
                let partial = (to.min(t) - from.max(self.start_us)).max(0);
                let blind = self.down[camera as usize][j] + partial;
                if t < to {
                    (true, from, blind)
                } else {
                    (false, to.max(self.start_us), blind)
                }
            }
        };
        let seen_s = (t - self.start_us - blind).max(0) as f64 / 1e6;
        (down, since, (seen_s * self.analysed_fps) as u64)
    }
}

/// Event ranks at equal times.
const ENTER: u8 = 0;
const EXIT: u8 = 1;
const MERGE: u8 = 2;
const HEALTH: u8 = 3;
const INDEX_BITS: u32 = 40;

/// Sort key: time, then rank, then index.
fn key(ts: i64, rank: u8, index: usize) -> u128 {
    let time = (ts as u64) ^ (1 << 63);
    (u128::from(time) << 64)
        | (u128::from(rank) << INDEX_BITS)
        | (index as u128 & ((1 << INDEX_BITS) - 1))
}

/// `key` with another index (the order of keys is by time and rank only
/// from then on).
fn rekey(key: u128, index: usize) -> u128 {
    (key & !((1 << INDEX_BITS) - 1)) | (index as u128 & ((1 << INDEX_BITS) - 1))
}

fn unkey(key: u128) -> (u8, usize) {
    let rank = (key >> INDEX_BITS) as u8;
    (rank, (key & ((1 << INDEX_BITS) - 1)) as usize)
}

/// A periodic or state-change health report.
#[derive(Debug, Clone, Copy)]
struct HealthReport {
    camera: u32,
    ts_us: i64,
    down: bool,
    since_us: i64,
    frames: u64,
}

/// A day: its truth, health reports and the order of its events.
#[derive(Debug, Clone)]
struct DayPlan {
    day: Day,
    health: Vec<HealthReport>,
    keys: Vec<u128>,
}

/// Per person while planning a day.
#[derive(Debug, Clone, Copy)]
struct Slot {
    /// Index of the first visit under the new id (`usize::MAX`: not split).
    split_visit: usize,
    /// Minted ids before and after the split (0: not yet).
    ids: [u64; 2],
}

/// Plans day after day, carrying ids and track counters over.
#[derive(Debug)]
struct Planner {
    model: Model,
    next_day: u32,
    next_true_person: u64,
    next_person_id: u64,
    /// Per camera: current epoch and next track id.
    tracks: Vec<(i64, u64)>,
}

impl Planner {
    fn new(config: &SynthConfig) -> Planner {
        let model = Model::new(config);
        Planner {
            next_day: 0,
            next_true_person: 0,
            next_person_id: model.first_person_id,
            tracks: vec![(model.start_us, 1); model.camera_ids.len()],
            model,
        }
    }

    fn plan_day(&mut self) -> Option<DayPlan> {
        let m = &self.model;
        if self.next_day >= m.days {
            return None;
        }
        let d = self.next_day;
        self.next_day += 1;
        let day_start = m.start_us + i64::from(d) * DAY_US;
        let day_end = day_start + DAY_US;
        let mut rng = SplitMix64::new(
            m.seed
                ^ u64::from(d)
                    .wrapping_add(1)
                    .wrapping_mul(0xD1B5_4A32_D192_ED03),
        );
        let base = self.next_true_person;
        let n = m.people_per_day as usize;
        let mut day = Day {
            start_us: day_start,
            people: Vec::with_capacity(n),
            visits: Vec::with_capacity(n * 6),
            merges: Vec::new(),
        };
        let mut slots = Vec::with_capacity(n);
        let mut merge_people = Vec::new();
        let (mut stops, mut legs) = (Vec::new(), Vec::new());
        // People in arrival order: visits come out nearly in time order,
        // so the sorted events below touch memory nearly in sequence.
        let mut arrivals: Vec<i64> = (0..n)
            .map(|_| day_start + m.arrival_offset_us(&mut rng))
            .collect();
        arrivals.sort_unstable();
        for (p, &arrival) in arrivals.iter().enumerate() {
            let true_person = base + p as u64;
            let full_tour = rng.uniform() < m.full_tour;
            m.route(&mut rng, full_tour, &mut stops, &mut legs);
            let total = legs.last().map_or(0, |l| l.2);
            let start = if arrival + total >= day_end {
                (day_end - 1 - total).max(day_start)
            } else {
                arrival
            };
            let split_at = if legs.len() >= 2 && rng.uniform() < m.split {
                1 + rng.index(legs.len() - 1)
            } else {
                usize::MAX
            };
            let first_visit = day.visits.len();
            let mut split_visit = usize::MAX;
            let mut dropped = 0;
            for (i, &(camera, enter, exit)) in legs.iter().enumerate() {
                let (enter, exit) = (start + enter, start + exit);
                if exit >= day_end {
                    dropped += legs.len() - i;
                    break;
                }
                let Some(epoch) = m.epoch_if_seen(camera, enter, exit) else {
                    dropped += 1;
                    continue;
                };
                if i >= split_at && split_visit == usize::MAX {
                    split_visit = day.visits.len();
                }
                let seconds = (exit - enter) as f64 / 1e6;
                let seen = 0.6 + 0.4 * rng.uniform();
                day.visits.push(Visit {
                    true_person,
                    person_id: 0,
                    camera,
                    department: m.camera_dept[camera as usize],
                    enter_us: enter,
                    exit_us: exit,
                    track_id: 0,
                    epoch_us: epoch,
                    detections: ((seconds * m.analysed_fps * seen).round() as u32).max(1),
                    mean_score: (0.55 + 0.4 * rng.uniform()) as f32,
                });
            }
            if split_visit == first_visit {
                split_visit = usize::MAX; // nothing was seen before the split
            }
            if split_visit != usize::MAX {
                let after = day.visits.len() - split_visit;
                let evidence =
                    day.visits[split_visit + rng.index(after.min(MERGE_EVIDENCE_VISITS))];
                day.merges.push(MergeTruth {
                    true_person,
                    from_person_id: 0,
                    into_person_id: 0,
                    ts_us: evidence.exit_us,
                    camera: evidence.camera,
                    similarity: (0.72 + 0.2 * rng.uniform()) as f32,
                });
                merge_people.push(p);
            }
            day.people.push(PersonTruth {
                true_person,
                arrival_us: arrival,
                full_tour,
                planned_visits: legs.len() as u32,
                dropped_visits: dropped as u32,
                person_id: None,
                split_id: None,
            });
            slots.push(Slot {
                split_visit,
                ids: [0, 0],
            });
        }
        self.next_true_person = base + n as u64;

        let mut health = Vec::new();
        for camera in 0..m.camera_ids.len() as u32 {
            self.health_reports(camera, day_start, day_end, &mut health);
        }

        let mut keys = Vec::with_capacity(2 * day.visits.len() + day.merges.len() + health.len());
        for (i, v) in day.visits.iter().enumerate() {
            keys.push(key(v.enter_us, ENTER, i));
            keys.push(key(v.exit_us, EXIT, i));
        }
        for (i, merge) in day.merges.iter().enumerate() {
            keys.push(key(merge.ts_us, MERGE, i));
        }
        for (i, h) in health.iter().enumerate() {
            keys.push(key(h.ts_us, HEALTH, i));
        }
        keys.sort_unstable();

        // Ids and track ids are handed out in ENTER order, as the tracker
        // does. Visits are moved into ENTER order too, so that streaming
        // reads them nearly in sequence (an EXIT follows its ENTER: every
        // visit lasts at least MIN_DWELL_S).
        let mut ordered = Vec::with_capacity(day.visits.len());
        let mut moved = vec![0; day.visits.len()];
        for k in &mut keys {
            let (rank, i) = unkey(*k);
            if rank == EXIT {
                *k = rekey(*k, moved[i]);
            }
            if rank != ENTER {
                continue;
            }
            moved[i] = ordered.len();
            *k = rekey(*k, ordered.len());
            let mut v = day.visits[i];
            let slot = &mut slots[(v.true_person - base) as usize];
            let part = usize::from(i >= slot.split_visit);
            if slot.ids[part] == 0 {
                slot.ids[part] = self.next_person_id;
                self.next_person_id = self.next_person_id.saturating_add(1);
            }
            v.person_id = slot.ids[part];
            let track = &mut self.tracks[v.camera as usize];
            if track.0 != v.epoch_us {
                *track = (v.epoch_us, 1);
            }
            v.track_id = track.1;
            let skipped = rng.poisson(TENTATIVE_TRACKS_MEAN) as u64;
            track.1 = track.1.saturating_add(1 + skipped);
            ordered.push(v);
        }
        day.visits = ordered;
        for (merge, &p) in day.merges.iter_mut().zip(&merge_people) {
            merge.into_person_id = slots[p].ids[0];
            merge.from_person_id = slots[p].ids[1];
        }
        for (person, slot) in day.people.iter_mut().zip(&slots) {
            person.person_id = Some(slot.ids[0]).filter(|&id| id != 0);
            person.split_id = Some(slot.ids[1]).filter(|&id| id != 0);
        }
        Some(DayPlan { day, health, keys })
    }

    /// A camera's health reports of one day, in no particular order.
    fn health_reports(&self, camera: u32, from: i64, to: i64, out: &mut Vec<HealthReport>) {
        let m = &self.model;
        let iv = m.health_interval_us;
        let on_tick = |t: i64| iv > 0 && (t - m.start_us).rem_euclid(iv) == 0;
        let mut report = |t: i64| {
            let (down, since_us, frames) = m.health_at(camera, t);
            out.push(HealthReport {
                camera,
                ts_us: t,
                down,
                since_us,
                frames,
            });
        };
        if iv > 0 {
            let mut t = m.start_us + (from - m.start_us + iv - 1).div_euclid(iv) * iv;
            while t < to {
                report(t);
                t += iv;
            }
        }
        for &(start, end) in &m.outages[camera as usize] {
            for edge in [start, end] {
                if (from..to).contains(&edge) && !on_tick(edge) {
                    report(edge);
                }
            }
        }
    }
}

/// Appends `n` in decimal (what `format!("{n}")` writes, without the
/// formatting machinery).
fn push_decimal(s: &mut String, n: u64) {
    let mut digits = [0u8; 20];
    let mut i = digits.len();
    let mut n = n;
    loop {
        i -= 1;
        digits[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    s.extend(digits[i..].iter().map(|&d| char::from(d)));
}

/// The event of `key` in `plan`; `prefixes` caches event-id prefixes.
fn event(m: &Model, prefixes: &mut Vec<(i64, String)>, plan: &DayPlan, key: u128) -> SynthEvent {
    let (rank, i) = unkey(key);
    match rank {
        ENTER | EXIT => {
            let v = &plan.day.visits[i];
            let camera_id = m.camera_ids[v.camera as usize].clone();
            let enter = rank == ENTER;
            if prefixes.len() < m.camera_ids.len() {
                prefixes.resize(m.camera_ids.len(), (i64::MIN, String::new()));
            }
            let (epoch, prefix) = &mut prefixes[v.camera as usize];
            if *epoch != v.epoch_us || prefix.is_empty() {
                *epoch = v.epoch_us;
                *prefix = format!("{camera_id}:{:x}:", v.epoch_us);
            }
            let suffix = if enter { ":enter" } else { ":exit" };
            let mut event_id = String::with_capacity(prefix.len() + 20 + suffix.len());
            event_id.push_str(prefix);
            push_decimal(&mut event_id, v.track_id);
            event_id.push_str(suffix);
            SynthEvent::Presence(PresenceEvent {
                schema_version: schemas::SCHEMA_VERSION,
                event_id,
                kind: if enter { Kind::Enter } else { Kind::Exit } as i32,
                person_id: v.person_id,
                camera_id,
                track_id: v.track_id,
                enter_ts_us: v.enter_us,
                exit_ts_us: if enter { 0 } else { v.exit_us },
                detections: if enter { 0 } else { v.detections },
                mean_score: if enter { 0.0 } else { v.mean_score },
            })
        }
        MERGE => {
            let merge = &plan.day.merges[i];
            SynthEvent::Merge(IdMerge {
                schema_version: schemas::SCHEMA_VERSION,
                event_id: format!("merge:{}:{}", merge.from_person_id, merge.into_person_id),
                from_person_id: merge.from_person_id,
                into_person_id: merge.into_person_id,
                ts_us: merge.ts_us,
                camera_id: m.camera_ids[merge.camera as usize].clone(),
                similarity: merge.similarity,
            })
        }
        _ => {
            let h = &plan.health[i];
            SynthEvent::Health(CameraHealth {
                schema_version: schemas::SCHEMA_VERSION,
                camera_id: m.camera_ids[h.camera as usize].clone(),
                state: if h.down { State::Down } else { State::Up } as i32,
                since_ts_us: h.since_us,
                ts_us: h.ts_us,
                frames_in: h.frames,
                frames_analysed: h.frames,
                frames_dropped: 0,
                detail: if h.down { "outage" } else { "" }.to_string(),
                ..Default::default()
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::*;

    const MONDAY: i64 = 1_736_121_600_000_000;

    fn at(day: i64, hour: i64, minute: i64) -> i64 {
        MONDAY + day * DAY_US + hour * HOUR_US + minute * 60_000_000
    }

    /// Two days, splits, full tours and outages, one across midnight.
    fn busy() -> SynthConfig {
        SynthConfig {
            seed: 7,
            days: 2,
            people_per_day: 400,
            full_tour_fraction: 0.2,
            split_fraction: 0.2,
            outages: vec![
                Outage {
                    camera_id: "grocery-1".into(),
                    from_us: at(0, 11, 0),
                    to_us: at(0, 13, 30),
                },
                Outage {
                    camera_id: "checkout-2".into(),
                    from_us: at(0, 20, 0),
                    to_us: at(1, 9, 0) + 30_000_000,
                },
                Outage {
                    camera_id: "entrance-1".into(),
                    from_us: at(1, 17, 0) + 1,
                    to_us: at(1, 17, 5) + 7,
                },
            ],
            ..SynthConfig::default()
        }
    }

    fn presence(events: &[SynthEvent]) -> impl Iterator<Item = &PresenceEvent> {
        events.iter().filter_map(|e| match e {
            SynthEvent::Presence(p) => Some(p),
            _ => None,
        })
    }

    fn merges(events: &[SynthEvent]) -> Vec<&IdMerge> {
        events
            .iter()
            .filter_map(|e| match e {
                SynthEvent::Merge(m) => Some(m),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn the_same_seed_gives_the_same_stream() {
        let a: Vec<SynthEvent> = Synth::new(&busy()).collect();
        let b: Vec<SynthEvent> = Synth::new(&busy()).collect();
        assert!(a.len() > 5_000);
        assert_eq!(a, b);
        let other = SynthConfig { seed: 8, ..busy() };
        assert_ne!(a, Synth::new(&other).collect::<Vec<_>>());
    }

    #[test]
    fn events_are_in_time_order_within_the_stream_days() {
        let config = busy();
        let events: Vec<SynthEvent> = Synth::new(&config).collect();
        assert!(events.windows(2).all(|w| w[0].ts_us() <= w[1].ts_us()));
        let first = events.first().map(SynthEvent::ts_us);
        let last = events.last().map(SynthEvent::ts_us);
        assert_eq!(first, Some(MONDAY));
        assert!(last.is_some_and(|t| t < MONDAY + 2 * DAY_US));
    }

    #[test]
    fn every_exit_follows_its_enter_and_event_ids_are_unique() {
        let events: Vec<SynthEvent> = Synth::new(&busy()).collect();
        let mut ids = HashSet::new();
        let mut open = HashMap::new();
        let mut exits = 0;
        for p in presence(&events) {
            assert!(ids.insert(p.event_id.clone()), "{}", p.event_id);
            if p.kind == Kind::Enter as i32 {
                let stem = p.event_id.strip_suffix(":enter").unwrap();
                open.insert(stem.to_string(), (p.person_id, p.enter_ts_us, p.track_id));
            } else {
                assert_eq!(p.kind, Kind::Exit as i32);
                let stem = p.event_id.strip_suffix(":exit").unwrap();
                let enter = open.remove(stem).expect("an ENTER before its EXIT");
                assert_eq!(enter, (p.person_id, p.enter_ts_us, p.track_id));
                assert!(p.exit_ts_us > p.enter_ts_us && p.detections >= 1);
                assert!(stem.starts_with(&format!("{}:", p.camera_id)));
                exits += 1;
            }
        }
        assert!(open.is_empty());
        assert_eq!(exits, Truth::generate(&busy()).visits.len());
    }

    #[test]
    fn no_emitted_visit_overlaps_an_outage_of_its_camera() {
        let config = busy();
        let events: Vec<SynthEvent> = Synth::new(&config).collect();
        let mut at_outage_cameras = 0;
        for p in presence(&events).filter(|p| p.kind == Kind::Exit as i32) {
            for o in config.outages.iter().filter(|o| o.camera_id == p.camera_id) {
                at_outage_cameras += 1;
                assert!(
                    !(p.enter_ts_us < o.to_us && o.from_us <= p.exit_ts_us),
                    "{p:?} overlaps {o:?}"
                );
            }
        }
        assert!(at_outage_cameras > 100);
        let truth = Truth::generate(&config);
        assert!(truth.people.iter().any(|p| p.dropped_visits > 0));
        // After an outage the camera's tracker restarts: new epoch, track 1.
        let grocery = presence(&events)
            .find(|p| p.camera_id == "grocery-1" && p.enter_ts_us >= at(0, 13, 30))
            .unwrap();
        assert_eq!(
            grocery.event_id,
            format!("grocery-1:{:x}:1:enter", at(0, 13, 30))
        );
    }

    #[test]
    fn merges_go_from_a_newer_id_into_an_older_one_once_per_split_person() {
        let config = busy();
        let events: Vec<SynthEvent> = Synth::new(&config).collect();
        let truth = Truth::generate(&config);
        let split: Vec<&PersonTruth> = truth
            .people
            .iter()
            .filter(|p| p.split_id.is_some())
            .collect();
        assert!(split.len() > 50);
        let merges = merges(&events);
        assert_eq!(merges.len(), split.len());
        for p in split {
            let (old, new) = (p.person_id.unwrap(), p.split_id.unwrap());
            let found: Vec<_> = merges.iter().filter(|m| m.from_person_id == new).collect();
            assert_eq!(found.len(), 1);
            assert_eq!(found[0].into_person_id, old);
            assert!(new > old);
        }
        // Each merge comes after both ids were seen, and after the last
        // visit under the old id.
        let mut first_enter = HashMap::new();
        let mut last_exit = HashMap::new();
        for e in &events {
            match e {
                SynthEvent::Presence(p) if p.kind == Kind::Enter as i32 => {
                    first_enter.entry(p.person_id).or_insert(p.enter_ts_us);
                }
                SynthEvent::Presence(p) => {
                    last_exit.insert(p.person_id, p.exit_ts_us);
                }
                SynthEvent::Merge(m) => {
                    assert!(first_enter.contains_key(&m.from_person_id));
                    assert!(last_exit[&m.into_person_id] < first_enter[&m.from_person_id]);
                    assert_eq!(
                        m.event_id,
                        format!("merge:{}:{}", m.from_person_id, m.into_person_id)
                    );
                }
                SynthEvent::Health(_) => {}
            }
        }
        // Ids are minted in order of first ENTER, from 1.
        let mut order: Vec<(i64, u64)> = first_enter.iter().map(|(&id, &t)| (t, id)).collect();
        order.sort_unstable();
        let ids: Vec<u64> = order.iter().map(|o| o.1).collect();
        assert_eq!(ids, (1..=ids.len() as u64).collect::<Vec<_>>());
        assert_eq!(truth.unique_people_after_merges(), truth.true_people_seen());
        assert_eq!(
            truth.unique_people_before_merges(),
            truth.true_people_seen() + merges.len()
        );
    }

    #[test]
    fn full_tour_people_visit_every_department() {
        let config = SynthConfig {
            full_tour_fraction: 0.3,
            ..SynthConfig::default()
        };
        let truth = Truth::generate(&config);
        let mut tours = 0;
        for p in truth.people.iter().filter(|p| p.full_tour) {
            let departments: BTreeSet<u32> = truth
                .visits
                .iter()
                .filter(|v| v.true_person == p.true_person)
                .map(|v| v.department)
                .collect();
            assert_eq!(departments.len(), 5, "{p:?}");
            tours += 1;
        }
        assert!(tours > 400);
        let everywhere = truth.people_in_every_department(MONDAY);
        assert!(everywhere.len() >= tours);
    }

    #[test]
    fn health_is_down_during_outages_and_up_otherwise() {
        let config = busy();
        let events: Vec<SynthEvent> = Synth::new(&config).collect();
        let mut per_camera: HashMap<&str, usize> = HashMap::new();
        let mut edges = 0;
        for e in &events {
            let SynthEvent::Health(h) = e else { continue };
            *per_camera.entry(&h.camera_id).or_default() += 1;
            let outages = config.outages.iter().filter(|o| o.camera_id == h.camera_id);
            let inside = outages
                .clone()
                .find(|o| o.from_us <= h.ts_us && h.ts_us < o.to_us);
            match inside {
                Some(o) => {
                    assert_eq!(h.state, State::Down as i32, "{h:?}");
                    assert_eq!(h.since_ts_us, o.from_us);
                }
                None => {
                    assert_eq!(h.state, State::Up as i32, "{h:?}");
                    let since = outages
                        .map(|o| o.to_us)
                        .filter(|&to| to <= h.ts_us)
                        .max()
                        .unwrap_or(MONDAY);
                    assert_eq!(h.since_ts_us, since);
                }
            }
            if config
                .outages
                .iter()
                .any(|o| o.camera_id == h.camera_id && (o.from_us == h.ts_us || o.to_us == h.ts_us))
            {
                edges += 1;
            }
        }
        // Every outage start and end is reported (all fall inside the stream).
        assert_eq!(edges, 6);
        assert_eq!(per_camera.len(), 14);
        // 2 × 1,440 periodic reports per camera, plus the off-tick edges
        // (entrance-1: start and end; checkout-2: end).
        assert_eq!(per_camera["grocery-1"], 2 * 1_440);
        assert_eq!(per_camera["checkout-2"], 2 * 1_440 + 1);
        assert_eq!(per_camera["entrance-1"], 2 * 1_440 + 2);
    }

    /// Two departments with one camera each, three people, one visit per
    /// department, everyone arriving between 10:00 and 10:30.
    fn tiny() -> SynthConfig {
        SynthConfig {
            departments: vec![
                Department {
                    name: "entrance".into(),
                    cameras: vec!["door".into()],
                },
                Department {
                    name: "grocery".into(),
                    cameras: vec!["aisle".into()],
                },
            ],
            people_per_day: 3,
            open_s: 10 * 3600,
            close_s: 10 * 3600 + 1800,
            full_tour_fraction: 0.0,
            continue_probability: 1.0,
            max_department_stops: 2,
            max_visits_per_department: 1,
            dwell_max_s: 60.0,
            walk_between_median_s: 10.0,
            split_fraction: 0.0,
            ..SynthConfig::default()
        }
    }

    fn names(pairs: &[(&str, &str, u64, u64)]) -> BTreeMap<(String, String), TransitionCount> {
        pairs
            .iter()
            .map(|&(a, b, transitions, people)| {
                let count = TransitionCount {
                    transitions,
                    people,
                };
                ((a.to_string(), b.to_string()), count)
            })
            .collect()
    }

    #[test]
    fn truth_of_a_tiny_store() {
        let truth = Truth::generate(&tiny());
        assert_eq!(truth.visits.len(), 6);
        assert_eq!(truth.unique_people_before_merges(), 3);
        assert_eq!(truth.unique_people_after_merges(), 3);
        assert_eq!(
            truth.transitions(None),
            names(&[("entrance", "grocery", 3, 3)])
        );
        assert_eq!(
            truth.transitions(Some(at(0, 0, 0)..at(0, 10, 0))),
            names(&[])
        );
        assert_eq!(
            truth.people_in_every_department(at(0, 12, 0)),
            BTreeSet::from([1, 2, 3])
        );
        assert!(truth.people_in_every_department(at(1, 0, 0)).is_empty());
        let per_hour = BTreeMap::from([
            (("entrance".to_string(), at(0, 10, 0)), 3),
            (("grocery".to_string(), at(0, 10, 0)), 3),
        ]);
        assert_eq!(truth.visits_per_department_hour(), per_hour);
        for id in 1..=3 {
            let path = truth.path(id);
            let places: Vec<&str> = path.iter().map(|s| s.camera_id.as_str()).collect();
            assert_eq!(places, ["door", "aisle"]);
            assert!(path[0].exit_us < path[1].enter_us);
        }
        let events: Vec<SynthEvent> = Synth::new(&tiny()).collect();
        assert_eq!(presence(&events).count(), 12);
    }

    #[test]
    fn truth_of_a_tiny_store_with_splits() {
        let truth = Truth::generate(&SynthConfig {
            split_fraction: 1.0,
            ..tiny()
        });
        assert_eq!(truth.merges.len(), 3);
        assert_eq!(truth.unique_people_before_merges(), 6);
        assert_eq!(truth.unique_people_after_merges(), 3);
        assert_eq!(
            truth.transitions(None),
            names(&[("entrance", "grocery", 3, 3)])
        );
        assert_eq!(truth.people_in_every_department(at(0, 0, 0)).len(), 3);
        for m in &truth.merges {
            let path = truth.path(m.from_person_id);
            let ids: Vec<u64> = path.iter().map(|s| s.person_id).collect();
            assert_eq!(ids, [m.into_person_id, m.from_person_id]);
        }
    }

    #[test]
    fn truth_of_a_tiny_store_with_a_blind_aisle() {
        let config = SynthConfig {
            split_fraction: 1.0,
            outages: vec![Outage {
                camera_id: "aisle".into(),
                from_us: at(0, 9, 0),
                to_us: at(0, 12, 0),
            }],
            ..tiny()
        };
        let truth = Truth::generate(&config);
        assert_eq!(truth.visits.len(), 3);
        assert!(truth.merges.is_empty(), "no split without a visit after it");
        assert_eq!(truth.unique_people_before_merges(), 3);
        assert!(truth.transitions(None).is_empty());
        assert!(truth.people_in_every_department(at(0, 0, 0)).is_empty());
    }

    #[test]
    fn oracles_on_a_hand_written_truth() {
        let visit = |person_id, department, enter_min: i64| Visit {
            true_person: 0,
            person_id,
            camera: department,
            department,
            enter_us: at(0, 10, enter_min),
            exit_us: at(0, 10, enter_min + 1),
            track_id: 1,
            epoch_us: MONDAY,
            detections: 1,
            mean_score: 0.9,
        };
        let truth = Truth {
            departments: vec!["a".into(), "b".into(), "c".into()],
            camera_ids: vec!["ca".into(), "cb".into(), "cc".into()],
            people: Vec::new(),
            // Person 1: a b b a c, split into 4 from the second b on;
            // person 2: c a.
            visits: vec![
                visit(4, 0, 30),
                visit(1, 0, 0),
                visit(1, 1, 10),
                visit(4, 1, 20),
                visit(4, 2, 40),
                visit(2, 2, 5),
                visit(2, 0, 15),
            ],
            merges: vec![MergeTruth {
                true_person: 0,
                from_person_id: 4,
                into_person_id: 1,
                ts_us: at(0, 10, 21),
                camera: 1,
                similarity: 0.8,
            }],
        };
        assert_eq!(truth.unique_people_before_merges(), 3);
        assert_eq!(truth.unique_people_after_merges(), 2);
        assert_eq!(
            truth.transitions(None),
            names(&[
                ("a", "b", 1, 1),
                ("a", "c", 1, 1),
                ("b", "a", 1, 1),
                ("c", "a", 1, 1)
            ])
        );
        assert_eq!(
            truth.transitions(Some(at(0, 10, 15)..at(0, 10, 40))),
            names(&[("b", "a", 1, 1), ("c", "a", 1, 1)])
        );
        assert_eq!(
            truth.people_in_every_department(MONDAY),
            BTreeSet::from([1])
        );
        let path = truth.path(4);
        let steps: Vec<&str> = path.iter().map(|s| s.department.as_str()).collect();
        assert_eq!(steps, ["a", "b", "b", "a", "c"]);
        assert_eq!(
            truth.visits_per_department_hour()[&("a".to_string(), at(0, 10, 0))],
            3
        );
    }

    #[test]
    fn default_stream_is_plausible() {
        let config = SynthConfig::default();
        let truth = Truth::generate(&config);
        let people = truth.true_people_seen();
        assert_eq!(people, 2_000);
        let per_person = truth.visits.len() as f64 / people as f64;
        assert!((4.0..9.0).contains(&per_person), "{per_person}");
        // Arrivals within opening hours, busier late afternoon than at opening.
        let hour = |p: &PersonTruth| (p.arrival_us - MONDAY).div_euclid(HOUR_US);
        assert!(truth.people.iter().all(|p| (8..21).contains(&hour(p))));
        let count = |h| truth.people.iter().filter(|p| hour(p) == h).count();
        assert!(count(17) > 2 * count(8), "{} {}", count(17), count(8));
        // Dwell: seconds to tens of minutes, median near 90 s.
        let mut dwell: Vec<i64> = truth
            .visits
            .iter()
            .map(|v| v.exit_us - v.enter_us)
            .collect();
        dwell.sort_unstable();
        let median = dwell[dwell.len() / 2] as f64 / 1e6;
        assert!((70.0..110.0).contains(&median), "{median}");
        assert!(dwell[0] >= 1_000_000 && dwell[dwell.len() - 1] <= 2_700_000_000);
        assert!(truth.merges.len() > 50 && truth.merges.len() < 160);
        assert_eq!(
            config.camera_departments()[0],
            ("entrance-1".to_string(), "entrance".to_string())
        );
        // Malformed numbers are clamped, not a panic.
        let odd = SynthConfig {
            start_day_us: i64::MIN,
            open_s: 90_000,
            dwell_median_s: f64::NAN,
            dwell_sigma: f64::INFINITY,
            dwell_max_s: -1.0,
            walk_between_median_s: f64::INFINITY,
            split_fraction: f64::NAN,
            analysed_fps: -3.0,
            people_per_day: 50,
            arrival_peaks: vec![ArrivalPeak {
                at: f64::NAN,
                spread: 0.0,
                weight: 1.0,
            }],
            outages: vec![Outage {
                camera_id: "grocery-1".into(),
                from_us: i64::MIN,
                to_us: i64::MAX,
            }],
            ..config
        };
        assert!(Synth::new(&odd).count() > 100);
    }
}
