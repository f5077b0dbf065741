//! Deep SORT (Wojke, Bewley, Paulus 2017), per camera, written from the paper.
//!
//! Each [`DeepSort::step`] is one frame:
//! 1. every track's [Kalman state](crate::kalman) is predicted one frame ahead;
//! 2. **matching cascade**: confirmed tracks are matched to detections by
//!    appearance — the smallest cosine distance between the detection's
//!    embedding and the track's gallery of its last `nn_budget` embeddings —
//!    gated by the Mahalanobis distance of the detection from the track's
//!    predicted box (chi-square 0.95 quantile, 4 degrees of freedom) and by
//!    `max_cosine_distance`. Tracks seen most recently choose first: age
//!    level 1, then 2, … up to `max_age`, each level an optimal assignment;
//! 3. **IoU association**: tentative tracks and confirmed tracks missed for
//!    exactly one frame are matched to the leftover detections by
//!    `1 − IoU` (at most `max_iou_distance`);
//! 4. matched tracks are updated; unmatched detections start tentative
//!    tracks; a tentative track is confirmed after `n_init` hits and deleted
//!    on its first miss; a confirmed track is deleted after `max_age` misses.
//!
//! The combined cost is `λ·d_mahalanobis + (1 − λ)·d_cosine` over pairs that
//! pass both gates; the paper's experiments (and the default) use `λ = 0`.
//! Invalid detections (non-finite, zero or negative size) are skipped and
//! covariances that are not positive definite are handled, both counted in
//! [`DeepSortStats`]; nothing here panics on data.

use serde::{Deserialize, Serialize};

use crate::assignment::solve_gated_sparse;
use crate::kalman::{CHI2INV95_4DOF, Gate, KalmanFilter, KalmanState, tlwh_to_xyah};
use crate::vector::{dot, normalised};

/// Deep SORT's parameters (the paper's values by default).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DeepSortParams {
    /// Largest cosine distance (1 − cosine similarity) for an appearance match.
    pub max_cosine_distance: f64,
    /// Largest `1 − IoU` for a match in the IoU stage.
    pub max_iou_distance: f64,
    /// Frames a confirmed track may go unmatched before it is deleted.
    pub max_age: u32,
    /// Hits before a tentative track is confirmed.
    pub n_init: u32,
    /// Appearance samples kept per track (the gallery budget).
    pub nn_budget: usize,
    /// Weight of the Mahalanobis distance in the combined cost, in [0, 1].
    pub lambda: f64,
}

impl Default for DeepSortParams {
    fn default() -> Self {
        // Values of the paper and of its reference implementation.
        DeepSortParams {
            max_cosine_distance: 0.2,
            max_iou_distance: 0.7,
            max_age: 30,
            n_init: 3,
            nn_budget: 100,
            lambda: 0.0,
        }
    }
}

impl DeepSortParams {
    /// Every problem with the values, each a sentence naming the field.
    pub fn validate(&self, prefix: &str) -> Vec<String> {
        let mut problems = Vec::new();
        if !(0.0..=2.0).contains(&self.max_cosine_distance) {
            problems.push(format!("{prefix}max_cosine_distance must be in [0, 2]"));
        }
        if !(0.0..=1.0).contains(&self.max_iou_distance) {
            problems.push(format!("{prefix}max_iou_distance must be in [0, 1]"));
        }
        if self.max_age == 0 {
            problems.push(format!("{prefix}max_age must be >= 1"));
        }
        if self.n_init == 0 {
            problems.push(format!("{prefix}n_init must be >= 1"));
        }
        if self.nn_budget == 0 {
            problems.push(format!("{prefix}nn_budget must be >= 1"));
        }
        if !(0.0..=1.0).contains(&self.lambda) {
            problems.push(format!("{prefix}lambda must be in [0, 1]"));
        }
        problems
    }
}

/// One detection of a frame.
#[derive(Debug, Clone, PartialEq)]
pub struct Detection {
    /// `(left, top, width, height)` in pixels.
    pub tlwh: [f64; 4],
    /// Detector confidence.
    pub confidence: f64,
    /// Appearance embedding (any scale; normalised here). May be empty.
    pub feature: Vec<f32>,
}

/// Where a track is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum TrackState {
    /// Seen fewer than `n_init` times.
    Tentative,
    /// Confirmed; reported.
    Confirmed,
}

/// The last `budget` unit-length embeddings of a track, in one buffer.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
struct FeatureGallery {
    dim: usize,
    samples: Vec<f32>,
    /// Index of the slot the next sample overwrites once full.
    next: usize,
}

impl FeatureGallery {
    fn len(&self) -> usize {
        self.samples.len().checked_div(self.dim).unwrap_or(0)
    }

    fn push(&mut self, feature: &[f32], budget: usize) {
        if feature.is_empty() {
            return;
        }
        let budget = budget.max(1);
        if self.dim != feature.len() {
            // A new embedder (different length): start over.
            self.dim = feature.len();
            self.samples.clear();
            self.next = 0;
        }
        if self.len() > budget {
            // The budget shrank (a checkpoint restored under a new configuration).
            self.keep_newest(budget);
        }
        if self.len() < budget {
            self.samples.extend_from_slice(feature);
        } else {
            let at = (self.next % budget) * self.dim;
            self.samples[at..at + self.dim].copy_from_slice(feature);
        }
        self.next = (self.next + 1) % budget;
    }

    /// Keeps the `budget` most recent samples, oldest first.
    fn keep_newest(&mut self, budget: usize) {
        let (len, dim) = (self.len(), self.dim);
        // Full ring: the oldest sample is at `next`; filling up: at 0 (next == len).
        let oldest = self.next % len.max(1);
        let chronological: Vec<f32> = (0..len)
            .flat_map(|k| {
                let i = (oldest + k) % len;
                self.samples[i * dim..(i + 1) * dim].iter().copied()
            })
            .collect();
        self.samples = chronological[(len - budget.min(len)) * dim..].to_vec();
        self.next = 0;
    }

    /// Smallest cosine distance from `q` (unit length) to any sample; `None`
    /// when there is nothing comparable.
    fn min_distance(&self, q: &[f32]) -> Option<f64> {
        if q.is_empty() || q.len() != self.dim || self.samples.is_empty() {
            return None;
        }
        let best = self
            .samples
            .chunks_exact(self.dim)
            .map(|s| dot(s, q))
            .fold(f32::NEG_INFINITY, f32::max);
        best.is_finite().then(|| 1.0 - f64::from(best))
    }
}

/// One tracked object of one camera.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Track {
    /// Per-tracker id, from 1.
    pub id: u64,
    /// Tentative or confirmed.
    pub state: TrackState,
    /// Kalman mean and covariance.
    pub kalman: KalmanState,
    /// Detections matched so far.
    pub hits: u32,
    /// Frames since the track started.
    pub age: u32,
    /// Frames since the last match (0: matched in the latest step).
    pub time_since_update: u32,
    /// Index, in the latest step's detections, of the one this track matched.
    pub matched_detection: Option<usize>,
    gallery: FeatureGallery,
    /// Sum of every unit embedding matched (its direction is the mean appearance).
    appearance_sum: Vec<f64>,
}

impl Track {
    /// The Kalman box `(left, top, width, height)`.
    pub fn tlwh(&self) -> [f64; 4] {
        self.kalman.tlwh()
    }

    /// True once confirmed.
    pub fn is_confirmed(&self) -> bool {
        self.state == TrackState::Confirmed
    }

    /// Unit-length mean appearance over the track's whole life (empty when
    /// it never had an embedding).
    pub fn appearance(&self) -> Vec<f32> {
        let v: Vec<f32> = self.appearance_sum.iter().map(|x| *x as f32).collect();
        normalised(&v)
    }

    /// Appearance samples held.
    pub fn gallery_len(&self) -> usize {
        self.gallery.len()
    }

    fn absorb_feature(&mut self, feature: &[f32], budget: usize) {
        if feature.is_empty() {
            return;
        }
        self.gallery.push(feature, budget);
        if self.appearance_sum.len() != feature.len() {
            self.appearance_sum = vec![0.0; feature.len()];
        }
        for (s, v) in self.appearance_sum.iter_mut().zip(feature) {
            *s += f64::from(*v);
        }
    }
}

/// What happened to tracks in a step.
#[derive(Debug, Clone, PartialEq)]
pub enum TrackEvent {
    /// The track with this id was confirmed in this step.
    Confirmed(u64),
    /// A confirmed track was deleted (`max_age` misses) in this step.
    Deleted(Box<Track>),
}

/// Counts of data the tracker had to work around.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeepSortStats {
    /// Detections skipped: non-finite, or zero or negative width or height.
    pub rejected_detections: u64,
    /// Covariances that were not positive definite (track gated out or re-initialised).
    pub numeric_failures: u64,
    /// Detections matched to tracks.
    pub matches: u64,
    /// Tracks started.
    pub tracks_started: u64,
}

/// The Deep SORT tracker of one camera.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DeepSort {
    params: DeepSortParams,
    #[serde(skip)]
    kf: KalmanFilter,
    tracks: Vec<Track>,
    next_id: u64,
    stats: DeepSortStats,
}

impl DeepSort {
    /// An empty tracker; track ids start at 1.
    pub fn new(params: DeepSortParams) -> Self {
        DeepSort {
            params,
            kf: KalmanFilter::default(),
            tracks: Vec::new(),
            next_id: 1,
            stats: DeepSortStats::default(),
        }
    }

    /// The parameters.
    pub fn params(&self) -> &DeepSortParams {
        &self.params
    }

    /// Replaces the parameters (e.g. a restored checkpoint under a new
    /// configuration); they apply from the next step.
    pub fn set_params(&mut self, params: DeepSortParams) {
        self.params = params;
    }

    /// Live tracks (tentative and confirmed).
    pub fn tracks(&self) -> &[Track] {
        &self.tracks
    }

    /// A live track by id.
    pub fn track(&self, id: u64) -> Option<&Track> {
        self.tracks.iter().find(|t| t.id == id)
    }

    /// Counters since creation.
    pub fn stats(&self) -> DeepSortStats {
        self.stats
    }

    /// Confirmed tracks matched in the latest step: what a frame reports.
    pub fn reported(&self) -> impl Iterator<Item = &Track> {
        self.tracks
            .iter()
            .filter(|t| t.is_confirmed() && t.time_since_update == 0)
    }

    /// Removes every track; returns the confirmed ones (stream ended).
    pub fn close_all(&mut self) -> Vec<Track> {
        std::mem::take(&mut self.tracks)
            .into_iter()
            .filter(Track::is_confirmed)
            .collect()
    }

    /// Processes one frame: predict, associate, update, start and delete tracks.
    pub fn step(&mut self, detections: &[Detection]) -> Vec<TrackEvent> {
        for track in &mut self.tracks {
            track.kalman = self.kf.predict(&track.kalman);
            track.age = track.age.saturating_add(1);
            track.time_since_update = track.time_since_update.saturating_add(1);
            track.matched_detection = None;
        }
        // Valid detections: measurement and unit feature.
        let mut valid: Vec<(usize, [f64; 4], Vec<f32>)> = Vec::with_capacity(detections.len());
        for (i, d) in detections.iter().enumerate() {
            match tlwh_to_xyah(d.tlwh) {
                Some(z) => valid.push((i, z, normalised(&d.feature))),
                None => self.stats.rejected_detections += 1,
            }
        }
        let matches = self.associate(detections, &valid);

        let mut events = Vec::new();
        let mut matched_track = vec![false; self.tracks.len()];
        let mut matched_det = vec![false; valid.len()];
        for &(t, v) in &matches {
            matched_track[t] = true;
            matched_det[v] = true;
            let (det_index, z, feature) = &valid[v];
            let track = &mut self.tracks[t];
            track.kalman = match self.kf.update(&track.kalman, z) {
                Some(updated) => updated,
                None => {
                    self.stats.numeric_failures += 1;
                    self.kf.initiate(z)
                }
            };
            track.hits = track.hits.saturating_add(1);
            track.time_since_update = 0;
            track.matched_detection = Some(*det_index);
            track.absorb_feature(feature, self.params.nn_budget);
            self.stats.matches += 1;
            if track.state == TrackState::Tentative && track.hits >= self.params.n_init {
                track.state = TrackState::Confirmed;
                events.push(TrackEvent::Confirmed(track.id));
            }
        }
        let max_age = self.params.max_age;
        let mut kept = Vec::with_capacity(self.tracks.len() + valid.len());
        for (track, matched) in std::mem::take(&mut self.tracks)
            .into_iter()
            .zip(matched_track)
        {
            let deleted = !matched
                && (track.state == TrackState::Tentative || track.time_since_update > max_age);
            if !deleted {
                kept.push(track);
            } else if track.is_confirmed() {
                events.push(TrackEvent::Deleted(Box::new(track)));
            }
        }
        self.tracks = kept;
        for (v, (det_index, z, feature)) in valid.iter().enumerate() {
            if matched_det[v] {
                continue;
            }
            let mut track = Track {
                id: self.next_id,
                state: TrackState::Tentative,
                kalman: self.kf.initiate(z),
                hits: 1,
                age: 1,
                time_since_update: 0,
                matched_detection: Some(*det_index),
                gallery: FeatureGallery::default(),
                appearance_sum: Vec::new(),
            };
            track.absorb_feature(feature, self.params.nn_budget);
            self.next_id = self.next_id.saturating_add(1);
            self.stats.tracks_started += 1;
            self.tracks.push(track);
        }
        events
    }

    /// Matching cascade, then IoU association. Returns (track index, valid
    /// detection index) pairs.
    ///
    /// Candidates are found through detections sorted by position, so a
    /// track only scores the detections its gate (or its box) can reach:
    /// the work grows with plausible pairs, not tracks × detections.
    fn associate(
        &mut self,
        detections: &[Detection],
        valid: &[(usize, [f64; 4], Vec<f32>)],
    ) -> Vec<(usize, usize)> {
        let p = &self.params;
        let mut matches = Vec::new();
        let mut is_unmatched = vec![true; valid.len()];
        let mut unmatched_left = valid.len();
        let mut track_matched = vec![false; self.tracks.len()];

        // Valid detections by centre x, for the gate's x range.
        let mut by_x: Vec<usize> = (0..valid.len()).collect();
        by_x.sort_by(|&a, &b| valid[a].1[0].total_cmp(&valid[b].1[0]));
        let xs: Vec<f64> = by_x.iter().map(|&v| valid[v].1[0]).collect();

        // Gates of confirmed tracks, once per frame.
        let gates: Vec<Option<Gate>> = self
            .tracks
            .iter()
            .map(|t| {
                if t.is_confirmed() {
                    self.kf.gate(&t.kalman)
                } else {
                    None
                }
            })
            .collect();
        self.stats.numeric_failures += self
            .tracks
            .iter()
            .zip(&gates)
            .filter(|(t, g)| t.is_confirmed() && g.is_none())
            .count() as u64;

        let max_cost = p.lambda * CHI2INV95_4DOF + (1.0 - p.lambda) * p.max_cosine_distance;
        let mut edges = Vec::new();
        for level in 1..=p.max_age {
            if unmatched_left == 0 {
                break;
            }
            let rows: Vec<usize> = (0..self.tracks.len())
                .filter(|&t| {
                    self.tracks[t].is_confirmed() && self.tracks[t].time_since_update == level
                })
                .collect();
            if rows.is_empty() {
                continue;
            }
            edges.clear();
            for (r, &t) in rows.iter().enumerate() {
                let Some(gate) = gates[t] else { continue };
                let (lo, hi) = gate.x_range(CHI2INV95_4DOF);
                let first = xs.partition_point(|&x| x < lo);
                for &v in by_x[first..].iter().take_while(|&&v| valid[v].1[0] <= hi) {
                    if !is_unmatched[v] {
                        continue;
                    }
                    let maha = gate.distance(&valid[v].1);
                    if maha > CHI2INV95_4DOF {
                        continue;
                    }
                    let Some(cos) = self.tracks[t].gallery.min_distance(&valid[v].2) else {
                        continue;
                    };
                    if cos <= p.max_cosine_distance {
                        edges.push((r, v, p.lambda * maha + (1.0 - p.lambda) * cos));
                    }
                }
            }
            let assigned = solve_gated_sparse(rows.len(), valid.len(), &edges, max_cost);
            for (r, col) in assigned.into_iter().enumerate() {
                if let Some(v) = col {
                    matches.push((rows[r], v));
                    track_matched[rows[r]] = true;
                    is_unmatched[v] = false;
                    unmatched_left -= 1;
                }
            }
        }

        // IoU stage: tentative tracks, and confirmed ones missed for exactly one frame.
        let rows: Vec<usize> = (0..self.tracks.len())
            .filter(|&t| !self.tracks[t].is_confirmed())
            .chain((0..self.tracks.len()).filter(|&t| {
                self.tracks[t].is_confirmed()
                    && !track_matched[t]
                    && self.tracks[t].time_since_update == 1
            }))
            .collect();
        if rows.is_empty() || unmatched_left == 0 {
            return matches;
        }
        // Overlap needs |Δ centre x| < (w_track + w_detection) / 2.
        let widest = valid
            .iter()
            .map(|(i, ..)| detections[*i].tlwh[2])
            .fold(0.0f64, f64::max);
        edges.clear();
        for (r, &t) in rows.iter().enumerate() {
            if self.tracks[t].time_since_update > 1 {
                continue;
            }
            let tb = self.tracks[t].tlwh();
            let half = (tb[2].abs() + widest) / 2.0;
            let cx = tb[0] + tb[2] / 2.0;
            if !(half.is_finite() && cx.is_finite()) {
                continue;
            }
            let first = xs.partition_point(|&x| x < cx - half);
            for &v in by_x[first..]
                .iter()
                .take_while(|&&v| valid[v].1[0] <= cx + half)
            {
                if is_unmatched[v] {
                    edges.push((r, v, 1.0 - iou(&tb, &detections[valid[v].0].tlwh)));
                }
            }
        }
        let assigned = solve_gated_sparse(rows.len(), valid.len(), &edges, p.max_iou_distance);
        for (r, col) in assigned.into_iter().enumerate() {
            if let Some(v) = col {
                matches.push((rows[r], v));
            }
        }
        matches
    }
}

/// Intersection over union of two `(left, top, width, height)` boxes; 0 for
/// degenerate or non-finite boxes.
pub fn iou(a: &[f64; 4], b: &[f64; 4]) -> f64 {
    let ok = |r: &[f64; 4]| r.iter().all(|v| v.is_finite()) && r[2] > 0.0 && r[3] > 0.0;
    if !ok(a) || !ok(b) {
        return 0.0;
    }
    let iw = (a[0] + a[2]).min(b[0] + b[2]) - a[0].max(b[0]);
    let ih = (a[1] + a[3]).min(b[1] + b[3]) - a[1].max(b[1]);
    if iw <= 0.0 || ih <= 0.0 {
        return 0.0;
    }
    let inter = iw * ih;
    inter / (a[2] * a[3] + b[2] * b[3] - inter)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn det(x: f64, y: f64, feature: &[f32]) -> Detection {
        Detection {
            tlwh: [x, y, 40.0, 100.0],
            confidence: 0.9,
            feature: feature.to_vec(),
        }
    }

    const RED: [f32; 3] = [1.0, 0.1, 0.0];
    const BLUE: [f32; 3] = [0.0, 0.1, 1.0];

    #[test]
    fn a_track_is_tentative_until_n_init_hits_then_confirmed_then_deleted_after_max_age() {
        let mut ds = DeepSort::new(DeepSortParams {
            max_age: 5,
            ..Default::default()
        });
        let mut events = Vec::new();
        for i in 0..3 {
            events.extend(ds.step(&[det(100.0 + 2.0 * f64::from(i), 50.0, &RED)]));
            assert_eq!(ds.reported().count(), usize::from(i == 2));
        }
        assert_eq!(events, vec![TrackEvent::Confirmed(1)]);
        for _ in 0..5 {
            assert!(ds.step(&[]).is_empty(), "alive through max_age misses");
        }
        match &ds.step(&[])[..] {
            [TrackEvent::Deleted(t)] => assert_eq!((t.id, t.hits, t.time_since_update), (1, 3, 6)),
            other => panic!("expected the deletion, got {other:?}"),
        }
        assert!(ds.tracks().is_empty());
    }

    #[test]
    fn a_tentative_track_dies_on_its_first_miss() {
        let mut ds = DeepSort::new(DeepSortParams::default());
        ds.step(&[det(10.0, 10.0, &RED)]);
        ds.step(&[det(11.0, 10.0, &RED)]);
        assert!(
            ds.step(&[]).is_empty(),
            "no Deleted event for tentative tracks"
        );
        assert!(ds.tracks().is_empty());
    }

    #[test]
    fn the_cascade_recovers_a_person_after_an_occlusion_by_appearance() {
        let mut ds = DeepSort::new(DeepSortParams::default());
        for i in 0..10 {
            ds.step(&[det(100.0 + 3.0 * f64::from(i), 50.0, &RED)]);
        }
        // Hidden for 5 frames (IoU stage cannot help after one miss)…
        for _ in 0..5 {
            ds.step(&[]);
        }
        // …reappears where the Kalman filter expects it, plus a stranger.
        ds.step(&[det(145.0, 50.0, &RED), det(400.0, 50.0, &BLUE)]);
        let reported: Vec<u64> = ds.reported().map(|t| t.id).collect();
        assert_eq!(reported, vec![1]);
        assert_eq!(ds.track(1).unwrap().hits, 11);
    }

    #[test]
    fn appearance_outside_max_cosine_distance_or_position_outside_the_gate_does_not_match() {
        let mut ds = DeepSort::new(DeepSortParams::default());
        for i in 0..5 {
            ds.step(&[det(100.0 + f64::from(i), 50.0, &RED)]);
        }
        ds.step(&[]);
        ds.step(&[]);
        // Right place, wrong appearance: a new track, not a match.
        ds.step(&[det(105.0, 50.0, &BLUE)]);
        assert_eq!(ds.track(1).unwrap().time_since_update, 3);
        assert!(ds.tracks().iter().any(|t| t.id == 2));
        // Right appearance, far away: gated out by Mahalanobis distance.
        ds.step(&[det(600.0, 400.0, &RED)]);
        assert_eq!(ds.track(1).unwrap().time_since_update, 4);
    }

    #[test]
    fn two_people_crossing_keep_their_ids_by_appearance() {
        let mut ds = DeepSort::new(DeepSortParams::default());
        let mut last = Vec::new();
        for i in 0..30 {
            let f = f64::from(i);
            // Listed in alternating order so that order cannot carry identity.
            let (a, b) = (
                det(100.0 + 8.0 * f, 50.0, &RED),
                det(332.0 - 8.0 * f, 50.0, &BLUE),
            );
            ds.step(&if i % 2 == 0 { vec![a, b] } else { vec![b, a] });
            last = ds.reported().map(|t| (t.id, t.tlwh()[0])).collect();
        }
        last.sort_by_key(|(id, _)| *id);
        assert_eq!(last.len(), 2, "{last:?}");
        // Track 1 was RED (first in frame 0), now at x ≈ 332; track 2 BLUE at ≈ 100.
        assert!(
            (last[0].1 - 332.0).abs() < 5.0 && (last[1].1 - 100.0).abs() < 5.0,
            "{last:?}"
        );
    }

    #[test]
    fn the_gallery_keeps_only_the_budget_and_the_mean_appearance_uses_everything() {
        let mut ds = DeepSort::new(DeepSortParams {
            nn_budget: 4,
            ..Default::default()
        });
        for i in 0..10 {
            let f = if i < 5 { RED } else { [0.9, 0.3, 0.1] };
            ds.step(&[det(100.0, 50.0, &f)]);
        }
        let t = ds.track(1).unwrap();
        assert_eq!(t.gallery_len(), 4);
        let mean = t.appearance();
        assert!((mean.iter().map(|v| v * v).sum::<f32>() - 1.0).abs() < 1e-5);
    }

    #[test]
    fn a_smaller_budget_after_a_restore_keeps_the_newest_samples() {
        let mut ds = DeepSort::new(DeepSortParams {
            nn_budget: 30,
            ..Default::default()
        });
        for i in 0..25 {
            let f = [1.0, 0.01 * i as f32, 0.0];
            ds.step(&[det(100.0, 50.0, &f)]);
        }
        ds.set_params(DeepSortParams {
            nn_budget: 10,
            ..Default::default()
        });
        for _ in 0..3 {
            ds.step(&[det(100.0, 50.0, &BLUE)]);
        }
        let t = ds.track(1).unwrap();
        assert_eq!((t.gallery_len(), t.hits), (10, 28));
        // The newest RED-ish sample (i = 24) survived; the oldest (i = 0) did not.
        let newest = normalised(&[1.0, 0.24, 0.0]);
        let oldest = normalised(&[1.0, 0.0, 0.0]);
        assert!(t.gallery.min_distance(&newest).unwrap() < 1e-6);
        assert!(t.gallery.min_distance(&oldest).unwrap() > 1e-4);
    }

    #[test]
    fn the_cascade_gives_the_most_recently_seen_track_priority() {
        // Two confirmed look-alikes; track 1 then misses a frame. The last
        // detection is closer to track 1 in appearance and position, but the
        // cascade lets track 2 (seen one frame ago) choose first; one global
        // assignment would give it to track 1.
        let red2 = [1.0, 0.15, 0.0];
        let mut ds = DeepSort::new(DeepSortParams::default());
        for _ in 0..5 {
            ds.step(&[det(100.0, 50.0, &RED), det(112.0, 50.0, &red2)]);
        }
        ds.step(&[det(112.0, 50.0, &red2)]);
        assert_eq!(ds.track(1).unwrap().time_since_update, 1);
        assert_eq!(ds.track(2).unwrap().time_since_update, 0);
        ds.step(&[det(103.0, 50.0, &RED)]);
        assert_eq!(
            ds.track(2).unwrap().time_since_update,
            0,
            "level 1 chooses first"
        );
        assert_eq!(ds.track(1).unwrap().time_since_update, 2);
    }

    #[test]
    fn bad_detections_are_skipped_and_counted() {
        let mut ds = DeepSort::new(DeepSortParams::default());
        let bad = [
            Detection {
                tlwh: [f64::NAN, 0.0, 10.0, 10.0],
                confidence: 1.0,
                feature: vec![],
            },
            Detection {
                tlwh: [0.0, 0.0, 10.0, 0.0],
                confidence: 1.0,
                feature: vec![],
            },
            Detection {
                tlwh: [0.0, 0.0, -1.0, 10.0],
                confidence: 1.0,
                feature: vec![f32::NAN],
            },
        ];
        ds.step(&bad);
        assert!(ds.tracks().is_empty());
        assert_eq!(ds.stats().rejected_detections, 3);
        // A NaN embedding on a valid box: tracked, without appearance.
        ds.step(&[Detection {
            tlwh: [0.0, 0.0, 10.0, 20.0],
            confidence: 1.0,
            feature: vec![f32::NAN; 3],
        }]);
        assert_eq!(ds.tracks().len(), 1);
        assert_eq!(ds.tracks()[0].gallery_len(), 0);
    }

    #[test]
    fn state_survives_a_serde_round_trip() {
        let mut ds = DeepSort::new(DeepSortParams::default());
        for i in 0..4 {
            ds.step(&[det(100.0 + f64::from(i), 50.0, &RED)]);
        }
        let json = serde_json::to_string(&ds).unwrap();
        let mut back: DeepSort = serde_json::from_str(&json).unwrap();
        let a = ds.step(&[det(105.0, 50.0, &RED)]);
        let b = back.step(&[det(105.0, 50.0, &RED)]);
        assert_eq!(a, b);
        // JSON keeps every f64 to within an ulp or so (no `float_roundtrip`).
        assert_eq!(ds.tracks().len(), back.tracks().len());
        for (x, y) in ds.tracks().iter().zip(back.tracks()) {
            assert_eq!(
                (x.id, x.state, x.hits, x.age),
                (y.id, y.state, y.hits, y.age)
            );
            let (mx, my) = (x.kalman.mean, y.kalman.mean);
            assert!(
                mx.iter().zip(my).all(|(a, b)| (a - b).abs() < 1e-9),
                "{mx:?} {my:?}"
            );
            assert_eq!(x.gallery_len(), y.gallery_len());
        }
    }

    #[test]
    fn iou_of_boxes() {
        assert_eq!(iou(&[0.0, 0.0, 10.0, 10.0], &[0.0, 0.0, 10.0, 10.0]), 1.0);
        assert!((iou(&[0.0, 0.0, 10.0, 10.0], &[5.0, 0.0, 10.0, 10.0]) - 1.0 / 3.0).abs() < 1e-12);
        assert_eq!(iou(&[0.0, 0.0, 10.0, 10.0], &[20.0, 0.0, 10.0, 10.0]), 0.0);
        assert_eq!(iou(&[0.0, 0.0, 0.0, 10.0], &[0.0, 0.0, 10.0, 10.0]), 0.0);
    }
}
