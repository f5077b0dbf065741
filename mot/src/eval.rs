//! CLEAR-MOT and IDF1 evaluation of tracker output against ground truth,
//! with the semantics of py-motmetrics 1.4.0 (`MOTAccumulator`,
//! `compare_to_groundtruth`, `compute_many(..., generate_overall=True)`).
//!
//! An [`Accumulator`] is fed one frame at a time with ground-truth objects
//! and tracker hypotheses and turns each frame into [`Event`]s:
//! 1. an object still visible next to the hypothesis it was last paired with,
//!    within the distance threshold, keeps it (a match, even if another
//!    hypothesis is closer);
//! 2. the remaining objects and hypotheses are paired by a minimum-cost
//!    assignment (as many pairs as possible, then least total distance); a
//!    pair is a switch when the object was last paired with another
//!    hypothesis, at any earlier frame;
//! 3. objects left over are misses, hypotheses left over false positives.
//!
//! The identity measures (IDF1, IDP, IDR) come from a separate, global
//! one-to-one assignment of object ids to hypothesis ids that maximises the
//! number of frames in which the paired ids are within the threshold.
//!
//! Distances are `1 - IoU` of `[x, y, w, h]` boxes; a pair farther than
//! `max_distance` (motmetrics' `distth`, 0.5 for MOTChallenge) cannot be
//! matched.

use std::collections::HashMap;

use crate::assignment;
use crate::motchallenge::Row;

/// A track is mostly tracked from this tracked fraction of its frames on.
pub const MOSTLY_TRACKED: f64 = 0.8;
/// A track is mostly lost below this tracked fraction of its frames.
pub const MOSTLY_LOST: f64 = 0.2;

/// One ground-truth object or tracker hypothesis in one frame.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct IdBox {
    /// Object or hypothesis id.
    pub id: i64,
    /// `[left, top, width, height]`.
    pub bbox: [f64; 4],
}

/// What happened to one object or hypothesis in one frame.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum EventKind {
    /// The object is paired with the hypothesis it was last paired with, or
    /// with its first hypothesis.
    Match {
        object: i64,
        hypothesis: i64,
        distance: f64,
    },
    /// The object is paired with a hypothesis other than its last one.
    Switch {
        object: i64,
        hypothesis: i64,
        distance: f64,
        /// The hypothesis the object was last paired with.
        previous: i64,
    },
    /// The object is not paired.
    Miss { object: i64 },
    /// The hypothesis is not paired.
    FalsePositive { hypothesis: i64 },
}

/// One event of one frame.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Event {
    /// The frame passed to [`Accumulator::update`].
    pub frame: u32,
    /// What happened.
    pub kind: EventKind,
}

/// Tracking events of one sequence, fed frame by frame in increasing frame
/// order, each frame once.
#[derive(Debug, Clone)]
pub struct Accumulator {
    max_distance: f64,
    frames: u64,
    /// Object id → the hypothesis it was last paired with (kept while the
    /// object is out of view).
    last_pairing: HashMap<i64, i64>,
    events: Vec<Event>,
    /// Frames in which each object id appears.
    object_frames: HashMap<i64, u64>,
    /// Frames in which each hypothesis id appears.
    hypothesis_frames: HashMap<i64, u64>,
    /// (object, hypothesis) → pairs within the threshold, over all frames.
    pair_hits: HashMap<(i64, i64), u64>,
}

impl Accumulator {
    /// An empty accumulator for [`Accumulator::update`]; pairs whose IoU
    /// distance (`1 - IoU`) exceeds `max_distance` are never matched. A NaN
    /// `max_distance` forbids every pair.
    pub fn new(max_distance: f64) -> Self {
        Self {
            max_distance,
            frames: 0,
            last_pairing: HashMap::new(),
            events: Vec::new(),
            object_frames: HashMap::new(),
            hypothesis_frames: HashMap::new(),
            pair_hits: HashMap::new(),
        }
    }

    /// Adds one frame of ground-truth `objects` and tracker `hypotheses`.
    /// Boxes with a non-finite coordinate are never paired.
    pub fn update(&mut self, frame: u32, objects: &[IdBox], hypotheses: &[IdBox]) {
        let mut distances = Vec::with_capacity(objects.len() * hypotheses.len());
        for o in objects {
            for h in hypotheses {
                let d = iou(&o.bbox, &h.bbox)
                    .map(|iou| 1.0 - iou)
                    .filter(|&d| d <= self.max_distance);
                distances.push(d.unwrap_or(f64::NAN));
            }
        }
        let object_ids: Vec<i64> = objects.iter().map(|o| o.id).collect();
        let hypothesis_ids: Vec<i64> = hypotheses.iter().map(|h| h.id).collect();
        self.update_with_distances(frame, &object_ids, &hypothesis_ids, &distances);
    }

    /// Adds one frame given the row-major `objects × hypotheses` distance
    /// matrix directly (any distance, not only IoU; `max_distance` is not
    /// applied). Non-finite entries, and entries missing from a short
    /// slice, are pairs that may not be matched.
    pub fn update_with_distances(
        &mut self,
        frame: u32,
        objects: &[i64],
        hypotheses: &[i64],
        distances: &[f64],
    ) {
        let (rows, cols) = (objects.len(), hypotheses.len());
        let distance = |r: usize, c: usize| {
            distances
                .get(r * cols + c)
                .copied()
                .filter(|d| d.is_finite())
        };
        self.frames += 1;
        self.count_identities(objects, hypotheses, &distance);

        let mut object_done = vec![false; rows];
        let mut hypothesis_done = vec![false; cols];
        if rows > 0 && cols > 0 {
            // 1. Pairs carried over from earlier frames, in object order.
            for (r, object) in objects.iter().enumerate() {
                let Some(&previous) = self.last_pairing.get(object) else {
                    continue;
                };
                let Some(c) = (0..cols).find(|&c| !hypothesis_done[c] && hypotheses[c] == previous)
                else {
                    continue;
                };
                if let Some(d) = distance(r, c) {
                    object_done[r] = true;
                    hypothesis_done[c] = true;
                    self.push(
                        frame,
                        EventKind::Match {
                            object: *object,
                            hypothesis: previous,
                            distance: d,
                        },
                    );
                }
            }
            // 2. The rest by minimum-cost assignment.
            let cost: Vec<f64> = (0..rows * cols)
                .map(|k| {
                    let (r, c) = (k / cols, k % cols);
                    if object_done[r] || hypothesis_done[c] {
                        f64::NAN
                    } else {
                        distance(r, c).unwrap_or(f64::NAN)
                    }
                })
                .collect();
            for (r, c) in assignment::solve(&cost, rows, cols).into_iter().enumerate() {
                let Some(c) = c else { continue };
                let Some(d) = cost.get(r * cols + c).copied().filter(|d| d.is_finite()) else {
                    continue;
                };
                let (object, hypothesis) = (objects[r], hypotheses[c]);
                let kind = match self.last_pairing.insert(object, hypothesis) {
                    Some(previous) if previous != hypothesis => EventKind::Switch {
                        object,
                        hypothesis,
                        distance: d,
                        previous,
                    },
                    _ => EventKind::Match {
                        object,
                        hypothesis,
                        distance: d,
                    },
                };
                object_done[r] = true;
                hypothesis_done[c] = true;
                self.push(frame, kind);
            }
        }
        // 3. and 4. What is left over.
        for (object, done) in objects.iter().zip(&object_done) {
            if !done {
                self.push(frame, EventKind::Miss { object: *object });
            }
        }
        for (hypothesis, done) in hypotheses.iter().zip(&hypothesis_done) {
            if !done {
                self.push(
                    frame,
                    EventKind::FalsePositive {
                        hypothesis: *hypothesis,
                    },
                );
            }
        }
    }

    /// The events so far, frame by frame.
    pub fn events(&self) -> &[Event] {
        &self.events
    }

    /// The metrics of this sequence.
    pub fn metrics(&self) -> Metrics {
        let mut m = Counts {
            num_frames: self.frames,
            ..Counts::default()
        };
        let mut tracks: HashMap<i64, TrackStats> = HashMap::new();
        let mut distance_sum = 0.0;
        for event in &self.events {
            match event.kind {
                EventKind::Match {
                    object, distance, ..
                } => {
                    m.num_matches += 1;
                    distance_sum += distance;
                    tracks.entry(object).or_default().tracked();
                }
                EventKind::Switch {
                    object, distance, ..
                } => {
                    m.num_switches += 1;
                    distance_sum += distance;
                    tracks.entry(object).or_default().tracked();
                }
                EventKind::Miss { object } => {
                    m.num_misses += 1;
                    tracks.entry(object).or_default().missed();
                }
                EventKind::FalsePositive { .. } => m.num_false_positives += 1,
            }
        }
        m.num_objects = m.num_matches + m.num_switches + m.num_misses;
        m.num_predictions = m.num_matches + m.num_switches + m.num_false_positives;
        m.num_unique_objects = tracks.len() as u64;
        for track in tracks.values() {
            m.num_fragmentations += track.fragmentations;
            // The same float comparison as motmetrics (4 / 5 >= 0.8 holds).
            let ratio = track.tracked as f64 / track.frames as f64;
            if ratio >= MOSTLY_TRACKED {
                m.mostly_tracked += 1;
            } else if ratio >= MOSTLY_LOST {
                m.partially_tracked += 1;
            } else {
                m.mostly_lost += 1;
            }
        }
        let idtp_pairs = self.identity_true_positives();
        let object_frames: u64 = self.object_frames.values().sum();
        let hypothesis_frames: u64 = self.hypothesis_frames.values().sum();
        m.idfn = object_frames.saturating_sub(idtp_pairs);
        m.idfp = hypothesis_frames.saturating_sub(idtp_pairs);
        m.idtp = m.num_objects.saturating_sub(m.idfn);
        Metrics::from_counts(m, distance_sum)
    }

    fn push(&mut self, frame: u32, kind: EventKind) {
        self.events.push(Event { frame, kind });
    }

    /// Counts, for the identity measures, the frames each id appears in and
    /// the pairs within the threshold.
    fn count_identities(
        &mut self,
        objects: &[i64],
        hypotheses: &[i64],
        distance: &impl Fn(usize, usize) -> Option<f64>,
    ) {
        for id in unique(objects) {
            *self.object_frames.entry(id).or_default() += 1;
        }
        for id in unique(hypotheses) {
            *self.hypothesis_frames.entry(id).or_default() += 1;
        }
        for (r, &object) in objects.iter().enumerate() {
            for (c, &hypothesis) in hypotheses.iter().enumerate() {
                if distance(r, c).is_some() {
                    *self.pair_hits.entry((object, hypothesis)).or_default() += 1;
                }
            }
        }
    }

    /// The largest total of pair hits over one-to-one pairings of object ids
    /// with hypothesis ids. motmetrics solves the same problem on an
    /// `(objects + hypotheses)²` matrix of IDFP + IDFN costs with a dummy
    /// partner for every id; leaving an id unpaired costs what pairing it
    /// with zero hits costs, so the optimum is the same.
    fn identity_true_positives(&self) -> u64 {
        let mut objects: Vec<i64> = self.object_frames.keys().copied().collect();
        let mut hypotheses: Vec<i64> = self.hypothesis_frames.keys().copied().collect();
        objects.sort_unstable();
        hypotheses.sort_unstable();
        let (rows, cols) = (objects.len(), hypotheses.len());
        if rows == 0 || cols == 0 || self.pair_hits.is_empty() {
            return 0;
        }
        let row_of: HashMap<i64, usize> =
            objects.iter().enumerate().map(|(i, &o)| (o, i)).collect();
        let col_of: HashMap<i64, usize> = hypotheses
            .iter()
            .enumerate()
            .map(|(i, &h)| (h, i))
            .collect();
        // Integer counts, so the sums below are exact.
        let mut cost = vec![0.0f64; rows * cols];
        for (&(o, h), &hits) in &self.pair_hits {
            if let (Some(&r), Some(&c)) = (row_of.get(&o), col_of.get(&h)) {
                cost[r * cols + c] = -(hits as f64);
            }
        }
        assignment::solve(&cost, rows, cols)
            .into_iter()
            .enumerate()
            .filter_map(|(r, c)| c.map(|c| (r, c)))
            .map(|(r, c)| {
                self.pair_hits
                    .get(&(objects[r], hypotheses[c]))
                    .copied()
                    .unwrap_or(0)
            })
            .sum()
    }
}

/// Per ground-truth object: frames seen, frames tracked, fragmentations.
#[derive(Debug, Default)]
struct TrackStats {
    frames: u64,
    tracked: u64,
    fragmentations: u64,
    was_tracked: bool,
    in_gap: bool,
}

impl TrackStats {
    fn tracked(&mut self) {
        self.frames += 1;
        self.tracked += 1;
        if self.in_gap {
            self.fragmentations += 1;
        }
        self.was_tracked = true;
        self.in_gap = false;
    }

    /// A miss counts towards a fragmentation only when the object was tracked
    /// before and is tracked again afterwards.
    fn missed(&mut self) {
        self.frames += 1;
        self.in_gap = self.was_tracked;
    }
}

/// Each distinct id of one frame once.
fn unique(ids: &[i64]) -> Vec<i64> {
    let mut ids = ids.to_vec();
    ids.sort_unstable();
    ids.dedup();
    ids
}

/// Intersection over union of two `[x, y, w, h]` boxes, computed as
/// motmetrics' `boxiou` does: negative sizes count as empty, boxes that do
/// not overlap (or have no area) give 0. `None` when a coordinate is not
/// finite (motmetrics gets NaN and never pairs such boxes).
pub fn iou(a: &[f64; 4], b: &[f64; 4]) -> Option<f64> {
    if !a.iter().chain(b).all(|v| v.is_finite()) {
        return None;
    }
    let (a_max_x, a_max_y) = (a[0] + a[2], a[1] + a[3]);
    let (b_max_x, b_max_y) = (b[0] + b[2], b[1] + b[3]);
    let inter_w = (a_max_x.min(b_max_x) - a[0].max(b[0])).max(0.0);
    let inter_h = (a_max_y.min(b_max_y) - a[1].max(b[1])).max(0.0);
    let inter = inter_w * inter_h;
    if inter == 0.0 {
        return Some(0.0);
    }
    let a_area = (a_max_x - a[0]).max(0.0) * (a_max_y - a[1]).max(0.0);
    let b_area = (b_max_x - b[0]).max(0.0) * (b_max_y - b[1]).max(0.0);
    let iou = inter / (a_area + b_area - inter);
    iou.is_finite().then_some(iou)
}

/// Evaluates a whole sequence of MOTChallenge rows: every frame present in
/// either `ground_truth` or `hypotheses`, in increasing order, with the boxes
/// of a frame in the order of the rows.
///
/// Every row is used; filter first if needed (motmetrics' `loadtxt` keeps
/// rows with `conf >= -1`; MOTChallenge ground truth marks rows to ignore
/// with `conf = 0`).
pub fn evaluate(ground_truth: &[Row], hypotheses: &[Row], max_distance: f64) -> Accumulator {
    let by_frame = |rows: &[Row]| {
        let mut frames: Vec<(u32, IdBox)> = rows
            .iter()
            .map(|r| {
                let bbox = [r.x, r.y, r.w, r.h];
                (r.frame, IdBox { id: r.id, bbox })
            })
            .collect();
        // Stable: rows of one frame keep their order.
        frames.sort_by_key(|&(frame, _)| frame);
        frames
    };
    let (gt, hyp) = (by_frame(ground_truth), by_frame(hypotheses));
    let mut acc = Accumulator::new(max_distance);
    let (mut i, mut j) = (0, 0);
    let (mut objects, mut hyps) = (Vec::new(), Vec::new());
    while i < gt.len() || j < hyp.len() {
        let frame = match (gt.get(i), hyp.get(j)) {
            (Some(g), Some(h)) => g.0.min(h.0),
            (Some(g), None) => g.0,
            (None, Some(h)) => h.0,
            (None, None) => break,
        };
        objects.clear();
        hyps.clear();
        while let Some(&(_, b)) = gt.get(i).filter(|g| g.0 == frame) {
            objects.push(b);
            i += 1;
        }
        while let Some(&(_, b)) = hyp.get(j).filter(|h| h.0 == frame) {
            hyps.push(b);
            j += 1;
        }
        acc.update(frame, &objects, &hyps);
    }
    acc
}

/// CLEAR-MOT and identity metrics of one sequence ([`Accumulator::metrics`])
/// or of several ([`Metrics::overall`]).
///
/// A ratio whose denominator is zero (no objects, no predictions) is 0 here,
/// where motmetrics reports NaN or -inf; every field is always finite.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Metrics {
    /// Multiple object tracking accuracy:
    /// `1 - (misses + switches + false positives) / objects`; may be negative.
    pub mota: f64,
    /// Multiple object tracking precision: mean distance (`1 - IoU`) of the
    /// matched and switched pairs; lower is better.
    pub motp: f64,
    /// Identity F1: `2 idtp / (objects + predictions)`.
    pub idf1: f64,
    /// Identity precision: `idtp / (idtp + idfp)`.
    pub idp: f64,
    /// Identity recall: `idtp / (idtp + idfn)`.
    pub idr: f64,
    /// Detected objects (matches and switches) over objects.
    pub recall: f64,
    /// Detected objects over detected objects and false positives.
    pub precision: f64,
    /// Frames evaluated.
    pub num_frames: u64,
    /// Distinct ground-truth ids.
    pub num_unique_objects: u64,
    /// Objects tracked in at least 80 % of the frames they appear in.
    pub mostly_tracked: u64,
    /// Objects tracked in 20 % to 80 % of their frames.
    pub partially_tracked: u64,
    /// Objects tracked in less than 20 % of their frames.
    pub mostly_lost: u64,
    /// Hypotheses paired with no object.
    pub num_false_positives: u64,
    /// Objects paired with no hypothesis.
    pub num_misses: u64,
    /// Objects paired with a hypothesis other than their last one.
    pub num_switches: u64,
    /// Tracked → missed → tracked-again interruptions of an object's track.
    pub num_fragmentations: u64,
    /// Ground-truth boxes.
    pub num_objects: u64,
    /// Hypothesis boxes.
    pub num_predictions: u64,
    /// Pairs that are not switches.
    pub num_matches: u64,
    /// Identity true positives (boxes of the globally paired ids within the
    /// threshold).
    pub idtp: u64,
    /// Identity false positives.
    pub idfp: u64,
    /// Identity false negatives.
    pub idfn: u64,
}

/// The additive part of [`Metrics`].
#[derive(Debug, Default)]
struct Counts {
    num_frames: u64,
    num_unique_objects: u64,
    mostly_tracked: u64,
    partially_tracked: u64,
    mostly_lost: u64,
    num_false_positives: u64,
    num_misses: u64,
    num_switches: u64,
    num_fragmentations: u64,
    num_objects: u64,
    num_predictions: u64,
    num_matches: u64,
    idtp: u64,
    idfp: u64,
    idfn: u64,
}

impl Metrics {
    /// The metrics of several sequences together, as motmetrics'
    /// `generate_overall`: counts are summed (so ids of different sequences
    /// are distinct objects), ratios are recomputed from the sums and MOTP is
    /// the mean distance over all detections. Not an average of the parts.
    pub fn overall(parts: &[Metrics]) -> Metrics {
        let mut m = Counts::default();
        let mut distance_sum = 0.0;
        for p in parts {
            m.num_frames += p.num_frames;
            m.num_unique_objects += p.num_unique_objects;
            m.mostly_tracked += p.mostly_tracked;
            m.partially_tracked += p.partially_tracked;
            m.mostly_lost += p.mostly_lost;
            m.num_false_positives += p.num_false_positives;
            m.num_misses += p.num_misses;
            m.num_switches += p.num_switches;
            m.num_fragmentations += p.num_fragmentations;
            m.num_objects += p.num_objects;
            m.num_predictions += p.num_predictions;
            m.num_matches += p.num_matches;
            m.idtp += p.idtp;
            m.idfp += p.idfp;
            m.idfn += p.idfn;
            distance_sum += p.motp * (p.num_matches + p.num_switches) as f64;
        }
        Metrics::from_counts(m, distance_sum)
    }

    fn from_counts(c: Counts, distance_sum: f64) -> Metrics {
        let detections = c.num_matches + c.num_switches;
        let errors = c.num_misses + c.num_switches + c.num_false_positives;
        Metrics {
            mota: if c.num_objects == 0 {
                0.0
            } else {
                1.0 - ratio(errors as f64, c.num_objects)
            },
            motp: ratio(distance_sum, detections),
            idf1: ratio(2.0 * c.idtp as f64, c.num_objects + c.num_predictions),
            idp: ratio(c.idtp as f64, c.idtp + c.idfp),
            idr: ratio(c.idtp as f64, c.idtp + c.idfn),
            recall: ratio(detections as f64, c.num_objects),
            precision: ratio(detections as f64, detections + c.num_false_positives),
            num_frames: c.num_frames,
            num_unique_objects: c.num_unique_objects,
            mostly_tracked: c.mostly_tracked,
            partially_tracked: c.partially_tracked,
            mostly_lost: c.mostly_lost,
            num_false_positives: c.num_false_positives,
            num_misses: c.num_misses,
            num_switches: c.num_switches,
            num_fragmentations: c.num_fragmentations,
            num_objects: c.num_objects,
            num_predictions: c.num_predictions,
            num_matches: c.num_matches,
            idtp: c.idtp,
            idfp: c.idfp,
            idfn: c.idfn,
        }
    }
}

/// `num / den`, 0 when `den` is 0.
fn ratio(num: f64, den: u64) -> f64 {
    if den == 0 { 0.0 } else { num / den as f64 }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SIDE: f64 = 10.0;

    /// A 10 × 10 box at `x`.
    fn at(id: i64, x: f64) -> IdBox {
        IdBox {
            id,
            bbox: [x, 0.0, SIDE, SIDE],
        }
    }

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 1e-12
    }

    #[test]
    fn iou_follows_boxiou_on_overlap_touching_empty_and_bad_boxes() {
        let a = [0.0, 0.0, 10.0, 10.0];
        // 8 × 10 overlap, union 120.
        assert!(close(
            iou(&a, &[2.0, 0.0, 10.0, 10.0]).unwrap(),
            80.0 / 120.0
        ));
        assert_eq!(iou(&a, &a), Some(1.0));
        assert_eq!(iou(&a, &[10.0, 0.0, 5.0, 5.0]), Some(0.0), "touching");
        assert_eq!(iou(&a, &[2.0, 2.0, 0.0, 0.0]), Some(0.0), "zero size");
        assert_eq!(iou(&[0.0; 4], &[0.0; 4]), Some(0.0), "both empty");
        assert_eq!(iou(&a, &[0.0, 0.0, -5.0, 10.0]), Some(0.0), "negative size");
        assert_eq!(iou(&a, &[f64::NAN, 0.0, 1.0, 1.0]), None);
        assert_eq!(iou(&[0.0, 0.0, f64::INFINITY, 1.0], &a), None);
    }

    #[test]
    fn swapped_ids_make_two_switches_and_halve_idf1() {
        // Objects 1 and 2 for four frames; hypotheses 10 and 20 swap after
        // frame 2.
        let mut acc = Accumulator::new(0.5);
        for frame in 1..=4 {
            let (on_1, on_2) = if frame <= 2 { (10, 20) } else { (20, 10) };
            acc.update(
                frame,
                &[at(1, 0.0), at(2, 100.0)],
                &[at(on_1, 0.0), at(on_2, 100.0)],
            );
        }
        let kinds: Vec<_> = acc
            .events()
            .iter()
            .filter(|e| e.frame == 3)
            .map(|e| e.kind)
            .collect();
        assert_eq!(
            kinds,
            vec![
                EventKind::Switch {
                    object: 1,
                    hypothesis: 20,
                    distance: 0.0,
                    previous: 10
                },
                EventKind::Switch {
                    object: 2,
                    hypothesis: 10,
                    distance: 0.0,
                    previous: 20
                },
            ]
        );
        let m = acc.metrics();
        assert_eq!((m.num_matches, m.num_switches, m.num_misses), (6, 2, 0));
        assert_eq!((m.num_false_positives, m.num_fragmentations), (0, 0));
        assert!(close(m.mota, 1.0 - 2.0 / 8.0));
        assert_eq!(m.motp, 0.0);
        // Each object spends 2 of its 4 frames on each hypothesis: the best
        // global pairing keeps 2 + 2 of the 8 boxes.
        assert_eq!((m.idtp, m.idfp, m.idfn), (4, 4, 4));
        assert!(close(m.idf1, 0.5) && close(m.idp, 0.5) && close(m.idr, 0.5));
        assert_eq!((m.mostly_tracked, m.num_unique_objects), (2, 2));
    }

    #[test]
    fn misses_false_positives_fragmentations_and_track_classes() {
        // Object 1 (10 frames): tracked 7, missed at 3, 4 and 6 (at 6 the
        // hypothesis is 6 px off: IoU 0.25, a miss and a false positive).
        // Object 2 (frames 1-5): tracked 4/5 = 0.8, mostly tracked.
        // Object 3 (frames 1-5): never tracked, mostly lost.
        // Object 4 (frames 1-5): tracked at frame 3 only, 1/5 = 0.2, partial.
        // Hypothesis 99 at frame 2 overlaps nothing.
        let mut acc = Accumulator::new(0.5);
        for frame in 1..=10u32 {
            let mut objects = vec![at(1, 0.0)];
            let mut hyps = Vec::new();
            match frame {
                3 | 4 => {}
                6 => hyps.push(at(10, 6.0)),
                _ => hyps.push(at(10, 0.0)),
            }
            if frame <= 5 {
                objects.extend([at(2, 100.0), at(3, 200.0), at(4, 300.0)]);
                if frame <= 4 {
                    hyps.push(at(20, 100.0));
                }
                if frame == 3 {
                    hyps.push(at(40, 300.0));
                }
            }
            if frame == 2 {
                hyps.push(at(99, 1000.0));
            }
            acc.update(frame, &objects, &hyps);
        }
        let m = acc.metrics();
        assert_eq!(m.num_frames, 10);
        assert_eq!((m.num_objects, m.num_predictions), (25, 14));
        assert_eq!((m.num_matches, m.num_switches), (12, 0));
        assert_eq!((m.num_misses, m.num_false_positives), (13, 2));
        assert_eq!(m.num_fragmentations, 2, "object 1: gaps 3-4 and 6");
        assert_eq!(m.num_unique_objects, 4);
        assert_eq!(
            (m.mostly_tracked, m.partially_tracked, m.mostly_lost),
            (1, 2, 1)
        );
        assert!(close(m.mota, 1.0 - 15.0 / 25.0));
        assert!(close(m.recall, 12.0 / 25.0));
        assert!(close(m.precision, 12.0 / 14.0));
        assert_eq!((m.idtp, m.idfn, m.idfp), (12, 13, 2));
        assert!(close(m.idf1, 24.0 / 39.0));
    }

    #[test]
    fn a_previous_pairing_wins_over_a_closer_hypothesis_until_it_is_out_of_range() {
        let mut acc = Accumulator::new(0.5);
        acc.update(1, &[at(1, 0.0)], &[at(10, 0.0)]);
        // Hypothesis 10 drifted 2 px (distance 1/3), 11 sits exactly on it.
        acc.update(2, &[at(1, 0.0)], &[at(11, 0.0), at(10, 2.0)]);
        // Object 1 is out of view for a frame: no event, no fragmentation.
        acc.update(3, &[], &[at(11, 50.0)]);
        // Back with hypothesis 11 only: a switch, even after the gap.
        acc.update(4, &[at(1, 0.0)], &[at(11, 0.0)]);
        let kinds: Vec<_> = acc.events().iter().map(|e| e.kind).collect();
        assert!(matches!(kinds[0], EventKind::Match { hypothesis: 10, .. }));
        assert!(
            matches!(kinds[1], EventKind::Match { hypothesis: 10, distance, .. } if close(distance, 1.0 / 3.0))
        );
        assert_eq!(kinds[2], EventKind::FalsePositive { hypothesis: 11 });
        assert_eq!(kinds[3], EventKind::FalsePositive { hypothesis: 11 });
        assert_eq!(
            kinds[4],
            EventKind::Switch {
                object: 1,
                hypothesis: 11,
                distance: 0.0,
                previous: 10
            }
        );
        let m = acc.metrics();
        assert_eq!(
            (m.num_switches, m.num_fragmentations, m.num_false_positives),
            (1, 0, 2)
        );
        assert!(close(m.motp, (1.0 / 3.0) / 3.0));
    }

    #[test]
    fn assignment_prefers_more_pairs_then_less_distance() {
        // Object 1 can only take hypothesis 1; object 2 is closer to 1 but
        // can take 2 as well: both are paired.
        let mut acc = Accumulator::new(0.5);
        acc.update_with_distances(1, &[1, 2], &[1, 2], &[0.4, f64::NAN, 0.1, 0.3]);
        let m = acc.metrics();
        assert_eq!(
            (m.num_matches, m.num_misses, m.num_false_positives),
            (2, 0, 0)
        );
        assert!(close(m.motp, 0.35));
    }

    #[test]
    fn degenerate_input_never_panics_and_gives_finite_metrics() {
        let empty = Accumulator::new(0.5).metrics();
        assert_eq!(empty, Metrics::overall(&[]));
        assert_eq!(
            (empty.mota, empty.motp, empty.idf1, empty.recall),
            (0.0, 0.0, 0.0, 0.0)
        );

        let mut acc = Accumulator::new(0.5);
        acc.update(1, &[], &[]);
        let nan_box = IdBox {
            id: 7,
            bbox: [f64::NAN; 4],
        };
        acc.update(2, &[nan_box, at(1, 0.0)], &[nan_box, at(2, 0.0)]);
        let zero = IdBox {
            id: 3,
            bbox: [5.0, 5.0, 0.0, 0.0],
        };
        acc.update(3, &[zero], &[zero]);
        // A short matrix; object 1 was last paired with hypothesis 2.
        acc.update_with_distances(4, &[1, 2], &[5], &[0.1]);
        let m = acc.metrics();
        assert_eq!(m.num_frames, 4);
        assert_eq!((m.num_matches, m.num_switches), (1, 1));
        assert_eq!((m.num_misses, m.num_false_positives), (3, 2));
        let all = [m.mota, m.motp, m.idf1, m.idp, m.idr, m.recall, m.precision];
        assert!(all.iter().all(|v| v.is_finite()), "{m:?}");

        // Zero-size boxes have distance 1: pairable only with a threshold of 1.
        let mut loose = Accumulator::new(1.0);
        loose.update(1, &[zero], &[zero]);
        assert_eq!(loose.metrics().motp, 1.0);
    }

    #[test]
    fn overall_sums_counts_and_recomputes_ratios() {
        let mut a = Accumulator::new(0.5);
        a.update(1, &[at(1, 0.0)], &[at(1, 2.0)]); // distance 1/3
        let mut b = Accumulator::new(0.5);
        for frame in 1..=3 {
            b.update(frame, &[at(1, 0.0)], &[]); // three misses
        }
        let (a, b) = (a.metrics(), b.metrics());
        let all = Metrics::overall(&[a.clone(), b.clone()]);
        assert_eq!(
            (all.num_objects, all.num_matches, all.num_misses),
            (4, 1, 3)
        );
        assert_eq!(all.num_unique_objects, 2, "the same id in two sequences");
        assert!(
            close(all.mota, 1.0 - 3.0 / 4.0),
            "not the mean of {} and {}",
            a.mota,
            b.mota
        );
        assert!(close(all.motp, 1.0 / 3.0));
        assert!(close(all.idf1, 2.0 / 5.0));
    }

    #[test]
    fn evaluate_groups_rows_by_frame_including_frames_of_one_side_only() {
        let row = |frame, id, x| Row {
            frame,
            id,
            x,
            y: 0.0,
            w: SIDE,
            h: SIDE,
            conf: 1.0,
            extra: Vec::new(),
        };
        let gt = [row(2, 1, 0.0), row(1, 1, 0.0), row(1, 2, 50.0)];
        let hyp = [row(1, 9, 0.0), row(3, 9, 0.0)];
        let acc = evaluate(&gt, &hyp, 0.5);
        let frames: Vec<u32> = acc.events().iter().map(|e| e.frame).collect();
        assert_eq!(frames, vec![1, 1, 2, 3]);
        let m = acc.metrics();
        assert_eq!(m.num_frames, 3);
        assert_eq!(
            (m.num_matches, m.num_misses, m.num_false_positives),
            (1, 2, 1)
        );
    }
}
