//! Seeded degradation of ground truth into detections with appearance
//! embeddings, to evaluate trackers without a detector or a re-id network.
//!
//! The model, per ground-truth box that is not an ignore region (`conf != 0`):
//! - **occlusion**: the fraction of the box covered by the union of the other
//!   ground-truth boxes of the frame whose bottom edge is lower (closer to
//!   the camera). Ignore regions occlude too: they are real objects.
//! - **miss**: dropped with a probability interpolated linearly from
//!   [`NoiseParams::miss_rate`] (fully visible) to
//!   [`NoiseParams::occluded_miss_rate`] (fully covered).
//! - **jitter**: centre moved by gaussian noise proportional to the width and
//!   height, width and height scaled by log-normal factors; both grow with
//!   occlusion up to [`OCCLUDED_JITTER_GAIN`] times at full cover.
//! - **score**: around [`VISIBLE_SCORE`], lower when occluded.
//! - **embedding**: a fixed random unit prototype per identity (from the seed
//!   and the id alone), plus gaussian noise whose expected norm grows from
//!   [`NoiseParams::embedding_sigma`] to
//!   [`NoiseParams::occluded_embedding_sigma`] with occlusion, L2-normalised.
//!
//! Per frame, from the first to the last ground-truth frame (gaps longer than
//! [`MAX_FALSE_POSITIVE_GAP`] excepted), a Poisson number
//! of false positives is added: the size of a random ground-truth box scaled
//! by a log-normal factor, placed uniformly in the extent of all ground-truth
//! boxes, with a random unit embedding and a low score. Detections of a frame
//! come out in random order (a detector does not sort by identity).
//!
//! Everything is a pure function of the input, the parameters and the seed
//! (own splitmix64 generator, no dependency). Nothing panics on data: boxes
//! that are not finite or have no positive size produce nothing, parameters
//! out of range are clamped (see [`NoiseParams::sanitized`]).

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::motchallenge::Row;
use crate::rng::SplitMix64 as Rng;
use crate::vector::unit_or_first_axis;

/// Jitter (position and size) at full occlusion, relative to a fully visible
/// box: occluded boxes are localised worse.
pub const OCCLUDED_JITTER_GAIN: f64 = 2.0;

/// Mean score of a fully visible true detection.
pub const VISIBLE_SCORE: f64 = 0.9;

/// How much the mean score of a true detection drops at full occlusion.
pub const OCCLUDED_SCORE_DROP: f64 = 0.4;

/// Standard deviation of a true detection's score.
pub const SCORE_SIGMA: f64 = 0.05;

/// False positives score uniformly in this range (below true detections).
pub const FALSE_POSITIVE_SCORES: (f64, f64) = (0.2, 0.6);

/// Standard deviation of the log of a false positive's scale relative to the
/// ground-truth box it borrows its size from; the scale is then clamped to
/// [`FALSE_POSITIVE_SCALES`].
pub const FALSE_POSITIVE_SIZE_SIGMA: f64 = 0.25;

/// Range of a false positive's scale relative to its ground-truth box.
pub const FALSE_POSITIVE_SCALES: (f64, f64) = (0.5, 2.0);

/// Upper bound of [`NoiseParams::false_positives_per_frame`].
pub const MAX_FALSE_POSITIVES_PER_FRAME: f64 = 100.0;

/// Frames without ground truth between two frames with some get false
/// positives too, unless the gap is longer than this (40 s at 25 fps): a cut,
/// or a corrupt frame number that must not create billions of rows.
pub const MAX_FALSE_POSITIVE_GAP: u32 = 1000;

/// Upper bound of every `*_sigma` parameter.
pub const MAX_SIGMA: f64 = 10.0;

/// A named set of [`NoiseParams`], usable on a command line
/// (`low`, `medium`, `high`; parsing ignores case).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum NoiseLevel {
    /// A good detector on an easy scene: few misses outside occlusion, rare
    /// false positives, distinctive embeddings.
    Low,
    /// A typical real-time detector: misses under occlusion, about one false
    /// positive per frame, embeddings that blur when occluded.
    Medium,
    /// A weak detector: frequent misses, several false positives per frame,
    /// loose boxes, embeddings near Deep SORT's 0.2 cosine gate.
    High,
}

impl NoiseLevel {
    /// Every level, least noisy first.
    pub const ALL: [NoiseLevel; 3] = [NoiseLevel::Low, NoiseLevel::Medium, NoiseLevel::High];

    /// The command-line name.
    pub const fn name(self) -> &'static str {
        match self {
            NoiseLevel::Low => "low",
            NoiseLevel::Medium => "medium",
            NoiseLevel::High => "high",
        }
    }

    /// The parameters this level stands for.
    pub const fn params(self) -> NoiseParams {
        match self {
            NoiseLevel::Low => NoiseParams {
                position_sigma: 0.02,
                size_sigma: 0.03,
                miss_rate: 0.02,
                occluded_miss_rate: 0.3,
                false_positives_per_frame: 0.2,
                embedding_sigma: 0.2,
                occluded_embedding_sigma: 0.6,
            },
            NoiseLevel::Medium => NoiseParams {
                position_sigma: 0.05,
                size_sigma: 0.07,
                miss_rate: 0.08,
                occluded_miss_rate: 0.6,
                false_positives_per_frame: 1.0,
                embedding_sigma: 0.35,
                occluded_embedding_sigma: 1.0,
            },
            NoiseLevel::High => NoiseParams {
                position_sigma: 0.1,
                size_sigma: 0.12,
                miss_rate: 0.2,
                occluded_miss_rate: 0.85,
                false_positives_per_frame: 3.0,
                embedding_sigma: 0.5,
                occluded_embedding_sigma: 1.5,
            },
        }
    }
}

impl fmt::Display for NoiseLevel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A noise level name that is not one of [`NoiseLevel::ALL`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnknownNoiseLevel(pub String);

impl fmt::Display for UnknownNoiseLevel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "unknown noise level {:?}; expected one of", self.0)?;
        for (i, level) in NoiseLevel::ALL.iter().enumerate() {
            write!(f, "{}{level}", if i == 0 { " " } else { ", " })?;
        }
        Ok(())
    }
}

impl std::error::Error for UnknownNoiseLevel {}

impl FromStr for NoiseLevel {
    type Err = UnknownNoiseLevel;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        NoiseLevel::ALL
            .into_iter()
            .find(|level| level.name().eq_ignore_ascii_case(s.trim()))
            .ok_or_else(|| UnknownNoiseLevel(s.to_owned()))
    }
}

impl From<NoiseLevel> for NoiseParams {
    fn from(level: NoiseLevel) -> Self {
        level.params()
    }
}

/// How ground truth is degraded. Fractions are of the box's own size; the
/// "occluded" values apply to a fully covered box, and a partly covered one
/// gets the linear interpolation by its covered fraction.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NoiseParams {
    /// Standard deviation of the box centre's displacement, as a fraction of
    /// the box width (horizontally) and height (vertically).
    pub position_sigma: f64,
    /// Standard deviation of the natural log of the width and height scale
    /// factors (0.05: about ±5 %), drawn independently.
    pub size_sigma: f64,
    /// Probability that a fully visible person is not detected.
    pub miss_rate: f64,
    /// Probability that a fully covered person is not detected.
    pub occluded_miss_rate: f64,
    /// Mean number of false positives per frame (Poisson distributed).
    pub false_positives_per_frame: f64,
    /// Expected L2 norm of the gaussian noise added to the identity's unit
    /// prototype when fully visible (per component: `sigma / sqrt(dim)`).
    /// Two such embeddings of one identity have a cosine distance of about
    /// `1 - 1 / (1 + sigma²)`.
    pub embedding_sigma: f64,
    /// The same when fully covered.
    pub occluded_embedding_sigma: f64,
}

impl NoiseParams {
    /// The parameters as used: non-finite or negative values become 0,
    /// probabilities are clamped to `[0, 1]`, sigmas to [`MAX_SIGMA`] and
    /// the false-positive rate to [`MAX_FALSE_POSITIVES_PER_FRAME`].
    pub fn sanitized(&self) -> NoiseParams {
        let clamp = |v: f64, max: f64| {
            if v.is_finite() {
                v.clamp(0.0, max)
            } else {
                0.0
            }
        };
        NoiseParams {
            position_sigma: clamp(self.position_sigma, MAX_SIGMA),
            size_sigma: clamp(self.size_sigma, MAX_SIGMA),
            miss_rate: clamp(self.miss_rate, 1.0),
            occluded_miss_rate: clamp(self.occluded_miss_rate, 1.0),
            false_positives_per_frame: clamp(
                self.false_positives_per_frame,
                MAX_FALSE_POSITIVES_PER_FRAME,
            ),
            embedding_sigma: clamp(self.embedding_sigma, MAX_SIGMA),
            occluded_embedding_sigma: clamp(self.occluded_embedding_sigma, MAX_SIGMA),
        }
    }
}

/// Degrades ground truth into detection rows (`id = -1`, `conf` = a detector
/// score, `extra` = a unit embedding of `dim` values), sorted by frame.
///
/// Same input, parameters and seed give the same output.
pub fn degrade(gt: &[Row], params: &NoiseParams, dim: usize, seed: u64) -> Vec<Row> {
    degrade_labelled(gt, params, dim, seed)
        .into_iter()
        .map(|d| d.row)
        .collect()
}

/// A synthetic detection and where it came from.
#[derive(Debug, Clone, PartialEq)]
struct Synthesized {
    row: Row,
    /// Ground-truth id, `None` for a false positive.
    truth: Option<i64>,
    /// Covered fraction of the ground-truth box (0 for false positives).
    occlusion: f64,
}

/// Left, top, right, bottom.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Rect {
    l: f64,
    t: f64,
    r: f64,
    b: f64,
}

impl Rect {
    /// `None` unless finite with positive width and height.
    fn of(row: &Row) -> Option<Rect> {
        let rect = Rect {
            l: row.x,
            t: row.y,
            r: row.x + row.w,
            b: row.y + row.h,
        };
        let ok = [rect.l, rect.t, rect.r, rect.b]
            .iter()
            .all(|v| v.is_finite())
            && row.w > 0.0
            && row.h > 0.0;
        ok.then_some(rect)
    }

    fn area(&self) -> f64 {
        (self.r - self.l).max(0.0) * (self.b - self.t).max(0.0)
    }

    fn intersect(&self, o: &Rect) -> Rect {
        Rect {
            l: self.l.max(o.l),
            t: self.t.max(o.t),
            r: self.r.min(o.r),
            b: self.b.min(o.b),
        }
    }
}

/// Fraction of `target` covered by the union of `occluders` (exact, by
/// coordinate compression: O(k³) for k overlapping occluders).
fn covered_fraction(target: &Rect, occluders: &[Rect]) -> f64 {
    let area = target.area();
    if area <= 0.0 {
        return 0.0;
    }
    let clipped: Vec<Rect> = occluders
        .iter()
        .map(|o| target.intersect(o))
        .filter(|c| c.area() > 0.0)
        .collect();
    if clipped.is_empty() {
        return 0.0;
    }
    let axis = |lo: fn(&Rect) -> f64, hi: fn(&Rect) -> f64| {
        let mut v: Vec<f64> = clipped.iter().flat_map(|c| [lo(c), hi(c)]).collect();
        v.sort_by(f64::total_cmp);
        v.dedup();
        v
    };
    let xs = axis(|c| c.l, |c| c.r);
    let ys = axis(|c| c.t, |c| c.b);
    let mut covered = 0.0;
    for x in xs.windows(2) {
        let cx = (x[0] + x[1]) / 2.0;
        for y in ys.windows(2) {
            let cy = (y[0] + y[1]) / 2.0;
            if clipped
                .iter()
                .any(|c| c.l <= cx && cx < c.r && c.t <= cy && cy < c.b)
            {
                covered += (x[1] - x[0]) * (y[1] - y[0]);
            }
        }
    }
    (covered / area).clamp(0.0, 1.0)
}

/// One splitmix64 step of `x`: decorrelates seeds derived from small numbers.
fn mix(x: u64) -> u64 {
    Rng::new(x).next_u64()
}

/// The generator of an identity's prototype: a function of the seed and the
/// id alone, so an identity looks the same whatever else is in the input.
fn prototype_rng(seed: u64, id: i64) -> Rng {
    /// Separates this stream from the main one ("prototyp" in ASCII).
    const PROTOTYPE_STREAM: u64 = 0x7072_6f74_6f74_7970;
    // `as`: the id's bits, reinterpreted; any i64 is fine.
    Rng::new(mix(mix(seed ^ PROTOTYPE_STREAM) ^ id as u64))
}

fn lerp(a: f64, b: f64, t: f64) -> f64 {
    a + (b - a) * t
}

/// Ground-truth boxes of one frame, with their rectangles.
struct FrameTruth<'a> {
    rows: Vec<(&'a Row, Rect)>,
}

/// What false positives are drawn from: the extent of the scene and the
/// sizes of people in it.
struct Scene {
    extent: Rect,
    sizes: Vec<(f64, f64)>,
}

fn degrade_labelled(gt: &[Row], params: &NoiseParams, dim: usize, seed: u64) -> Vec<Synthesized> {
    let p = params.sanitized();
    let mut frames: BTreeMap<u32, FrameTruth<'_>> = BTreeMap::new();
    for row in gt {
        if let Some(rect) = Rect::of(row) {
            frames
                .entry(row.frame)
                .or_insert_with(|| FrameTruth { rows: Vec::new() })
                .rows
                .push((row, rect));
        }
    }
    let scene = scene_of(frames.values());

    let mut rng = Rng::new(mix(seed));
    let mut prototypes: HashMap<i64, Vec<f64>> = HashMap::new();
    let mut out = Vec::new();
    // Ground-truth frames and the frames between them (a detector reports
    // false positives in frames without anyone too), except across gaps
    // longer than MAX_FALSE_POSITIVE_GAP.
    let keys: Vec<u32> = frames.keys().copied().collect();
    let frame_numbers = keys
        .iter()
        .enumerate()
        .flat_map(|(i, &f)| match keys.get(i + 1) {
            // Keys are sorted and unique: n > f.
            Some(&n) if n - f - 1 <= MAX_FALSE_POSITIVE_GAP => f..=n - 1,
            _ => f..=f,
        });
    for frame in frame_numbers {
        let start = out.len();
        if let Some(truth) = frames.get(&frame) {
            for (i, &(row, rect)) in truth.rows.iter().enumerate() {
                if row.conf == 0.0 {
                    continue;
                }
                let closer: Vec<Rect> = truth
                    .rows
                    .iter()
                    .enumerate()
                    .filter(|&(j, (_, o))| j != i && o.b > rect.b)
                    .map(|(_, &(_, o))| o)
                    .collect();
                let occlusion = covered_fraction(&rect, &closer);
                let prototype = prototypes
                    .entry(row.id)
                    .or_insert_with(|| prototype_rng(seed, row.id).unit_vector(dim));
                if let Some(d) = detect(row, occlusion, prototype, &p, &mut rng) {
                    out.push(d);
                }
            }
        }
        if let Some(scene) = &scene {
            for _ in 0..rng.poisson(p.false_positives_per_frame) {
                if let Some(d) = false_positive(frame, scene, dim, &mut rng) {
                    out.push(d);
                }
            }
        }
        // Fisher-Yates: detector order says nothing about identity.
        let detections = &mut out[start..];
        for i in (1..detections.len()).rev() {
            detections.swap(i, rng.index(i + 1));
        }
    }
    out
}

/// The extent of all ground-truth boxes and their sizes; `None` without any.
fn scene_of<'a>(frames: impl Iterator<Item = &'a FrameTruth<'a>>) -> Option<Scene> {
    let mut extent: Option<Rect> = None;
    let mut sizes = Vec::new();
    for (row, rect) in frames.flat_map(|f| f.rows.iter()) {
        if row.conf == 0.0 {
            continue;
        }
        sizes.push((row.w, row.h));
        extent = Some(match extent {
            None => *rect,
            Some(e) => Rect {
                l: e.l.min(rect.l),
                t: e.t.min(rect.t),
                r: e.r.max(rect.r),
                b: e.b.max(rect.b),
            },
        });
    }
    extent.map(|extent| Scene { extent, sizes })
}

/// The detection of one ground-truth box, or `None` when it is missed.
fn detect(
    row: &Row,
    occlusion: f64,
    prototype: &[f64],
    p: &NoiseParams,
    rng: &mut Rng,
) -> Option<Synthesized> {
    if rng.uniform() < lerp(p.miss_rate, p.occluded_miss_rate, occlusion) {
        return None;
    }
    let gain = lerp(1.0, OCCLUDED_JITTER_GAIN, occlusion);
    let cx = row.x + row.w / 2.0 + rng.gaussian() * p.position_sigma * gain * row.w;
    let cy = row.y + row.h / 2.0 + rng.gaussian() * p.position_sigma * gain * row.h;
    let w = row.w * (rng.gaussian() * p.size_sigma * gain).exp();
    let h = row.h * (rng.gaussian() * p.size_sigma * gain).exp();
    let score = (VISIBLE_SCORE - OCCLUDED_SCORE_DROP * occlusion + SCORE_SIGMA * rng.gaussian())
        .clamp(0.05, 1.0);
    let sigma = lerp(p.embedding_sigma, p.occluded_embedding_sigma, occlusion);
    let component_sigma = sigma / (prototype.len().max(1) as f64).sqrt();
    let embedding: Vec<f64> = prototype
        .iter()
        .map(|v| v + component_sigma * rng.gaussian())
        .collect();
    Some(Synthesized {
        row: detection_row(
            row.frame,
            [cx - w / 2.0, cy - h / 2.0, w, h],
            score,
            unit_or_first_axis(embedding),
        )?,
        truth: Some(row.id),
        occlusion,
    })
}

/// A false positive: a person-sized box anywhere in the scene.
fn false_positive(frame: u32, scene: &Scene, dim: usize, rng: &mut Rng) -> Option<Synthesized> {
    let (w0, h0) = *scene.sizes.get(rng.index(scene.sizes.len()))?;
    let (smallest, largest) = FALSE_POSITIVE_SCALES;
    let scale = (FALSE_POSITIVE_SIZE_SIGMA * rng.gaussian())
        .exp()
        .clamp(smallest, largest);
    let (w, h) = (w0 * scale, h0 * scale);
    let e = scene.extent;
    let x = e.l + rng.uniform() * (e.r - e.l - w).max(0.0);
    let y = e.t + rng.uniform() * (e.b - e.t - h).max(0.0);
    let (lo, hi) = FALSE_POSITIVE_SCORES;
    let score = lo + (hi - lo) * rng.uniform();
    Some(Synthesized {
        row: detection_row(frame, [x, y, w, h], score, rng.unit_vector(dim))?,
        truth: None,
        occlusion: 0.0,
    })
}

/// A detection row; `None` unless the box is finite with a positive size.
fn detection_row(
    frame: u32,
    [x, y, w, h]: [f64; 4],
    score: f64,
    embedding: Vec<f64>,
) -> Option<Row> {
    let ok = [x, y, w, h].iter().all(|v| v.is_finite()) && w > 0.0 && h > 0.0;
    ok.then(|| Row {
        frame,
        id: -1,
        x,
        y,
        w,
        h,
        conf: score,
        extra: embedding.into_iter().map(|v| v as f32).collect(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gt_row(frame: u32, id: i64, x: f64, y: f64, w: f64, h: f64) -> Row {
        Row {
            frame,
            id,
            x,
            y,
            w,
            h,
            conf: 1.0,
            extra: Vec::new(),
        }
    }

    /// `people` walkers side by side, never overlapping, for `frames` frames.
    fn apart(frames: u32, people: i64) -> Vec<Row> {
        let mut gt = Vec::new();
        for f in 1..=frames {
            for id in 1..=people {
                gt.push(gt_row(
                    f,
                    id,
                    100.0 * id as f64 + f64::from(f % 7),
                    50.0,
                    40.0,
                    100.0,
                ));
            }
        }
        gt
    }

    const QUIET: NoiseParams = NoiseParams {
        position_sigma: 0.0,
        size_sigma: 0.0,
        miss_rate: 0.0,
        occluded_miss_rate: 0.0,
        false_positives_per_frame: 0.0,
        embedding_sigma: 0.0,
        occluded_embedding_sigma: 0.0,
    };

    fn cosine(a: &[f32], b: &[f32]) -> f64 {
        a.iter()
            .zip(b)
            .map(|(x, y)| f64::from(*x) * f64::from(*y))
            .sum()
    }

    fn iou(a: &Row, b: &Row) -> f64 {
        let (ra, rb) = (Rect::of(a).unwrap(), Rect::of(b).unwrap());
        let inter = ra.intersect(&rb).area();
        inter / (ra.area() + rb.area() - inter)
    }

    /// Mean pairwise cosine within each identity and across identities.
    fn within_and_across(dets: &[Synthesized]) -> (f64, f64) {
        let (mut within, mut across) = ((0.0, 0), (0.0, 0));
        for (i, a) in dets.iter().enumerate() {
            for b in &dets[i + 1..] {
                let (Some(ta), Some(tb)) = (a.truth, b.truth) else {
                    continue;
                };
                let acc = if ta == tb { &mut within } else { &mut across };
                acc.0 += cosine(&a.row.extra, &b.row.extra);
                acc.1 += 1;
            }
        }
        (
            within.0 / f64::from(within.1),
            across.0 / f64::from(across.1),
        )
    }

    #[test]
    fn same_seed_same_output_and_another_seed_another() {
        let gt = apart(50, 5);
        let params = NoiseLevel::Medium.params();
        let a = degrade(&gt, &params, 16, 7);
        assert_eq!(a, degrade(&gt, &params, 16, 7));
        assert_ne!(a, degrade(&gt, &params, 16, 8));
    }

    #[test]
    fn rows_are_detections_sorted_by_frame_with_unit_embeddings() {
        let gt = apart(30, 4);
        let dets = degrade(&gt, &NoiseLevel::High.params(), 32, 1);
        assert!(!dets.is_empty());
        assert!(dets.windows(2).all(|w| w[0].frame <= w[1].frame));
        for d in &dets {
            assert_eq!(d.id, -1);
            assert!(d.w > 0.0 && d.h > 0.0 && d.x.is_finite() && d.y.is_finite());
            assert!(d.conf > 0.0 && d.conf <= 1.0);
            assert_eq!(d.extra.len(), 32);
            assert!((cosine(&d.extra, &d.extra) - 1.0).abs() < 1e-5);
        }
    }

    #[test]
    fn miss_rate_matches_the_parameter_on_visible_people() {
        let gt = apart(2000, 10);
        let params = NoiseParams {
            miss_rate: 0.1,
            occluded_miss_rate: 1.0,
            ..QUIET
        };
        let n = gt.len() as f64;
        let missed = n - degrade(&gt, &params, 4, 3).len() as f64;
        // Binomial: sd = sqrt(n p (1-p)) ≈ 42; allow 5 sd.
        let sd = (n * 0.1 * 0.9).sqrt();
        assert!(
            (missed - 0.1 * n).abs() < 5.0 * sd,
            "missed {missed} of {n}"
        );
    }

    #[test]
    fn false_positive_count_matches_the_parameter() {
        let gt = apart(4000, 3);
        let params = NoiseParams {
            false_positives_per_frame: 2.5,
            ..QUIET
        };
        let dets = degrade_labelled(&gt, &params, 4, 5);
        let fps = dets.iter().filter(|d| d.truth.is_none()).count() as f64;
        assert_eq!(
            dets.len() as f64 - fps,
            gt.len() as f64,
            "no misses at miss rate 0"
        );
        // Poisson total over 4000 frames: mean 10000, sd 100.
        assert!((fps - 10_000.0).abs() < 500.0, "{fps} false positives");
        // Person-sized, inside the scene, scored below true detections.
        for d in dets.iter().filter(|d| d.truth.is_none()) {
            assert!(d.row.h >= 50.0 && d.row.h <= 200.0, "{:?}", d.row);
            assert!(d.row.x >= 100.0 && d.row.y >= 50.0);
            assert!(d.row.conf < 0.6);
        }
    }

    #[test]
    fn false_positives_fill_frames_without_people() {
        let gt = vec![
            gt_row(1, 1, 0.0, 0.0, 10.0, 20.0),
            gt_row(100, 1, 5.0, 0.0, 10.0, 20.0),
        ];
        let params = NoiseParams {
            false_positives_per_frame: 3.0,
            ..QUIET
        };
        let dets = degrade(&gt, &params, 2, 9);
        assert!(dets.iter().any(|d| d.frame > 1 && d.frame < 100));
        assert!(dets.iter().all(|d| (1..=100).contains(&d.frame)));
    }

    #[test]
    fn occluded_people_are_missed_more() {
        // Person 2 stands behind person 1 (whose bottom edge is lower),
        // three quarters covered; person 3 stands apart.
        let mut gt = Vec::new();
        for f in 1..=3000 {
            gt.push(gt_row(f, 1, 0.0, 0.0, 40.0, 100.0));
            gt.push(gt_row(f, 2, 10.0, -10.0, 40.0, 100.0));
            gt.push(gt_row(f, 3, 500.0, 0.0, 40.0, 100.0));
        }
        let params = NoiseParams {
            miss_rate: 0.0,
            occluded_miss_rate: 0.8,
            ..QUIET
        };
        let dets = degrade_labelled(&gt, &params, 4, 11);
        let seen = |id| dets.iter().filter(|d| d.truth == Some(id)).count() as f64 / 3000.0;
        assert_eq!(seen(1), 1.0);
        assert_eq!(seen(3), 1.0);
        // Covered fraction of person 2: (30 × 90) / (40 × 100) = 0.675.
        let occlusion = dets.iter().find(|d| d.truth == Some(2)).unwrap().occlusion;
        assert!((occlusion - 0.675).abs() < 1e-12, "{occlusion}");
        let expected = 1.0 - 0.8 * 0.675;
        assert!(
            (seen(2) - expected).abs() < 0.04,
            "seen {} expected {expected}",
            seen(2)
        );
    }

    #[test]
    fn covered_fraction_counts_overlapping_occluders_once() {
        let target = Rect {
            l: 0.0,
            t: 0.0,
            r: 10.0,
            b: 10.0,
        };
        let left = Rect {
            l: -5.0,
            t: -5.0,
            r: 5.0,
            b: 20.0,
        };
        let also_left = Rect {
            l: 0.0,
            t: 0.0,
            r: 5.0,
            b: 5.0,
        };
        let corner = Rect {
            l: 5.0,
            t: 5.0,
            r: 15.0,
            b: 15.0,
        };
        assert_eq!(covered_fraction(&target, &[]), 0.0);
        assert_eq!(covered_fraction(&target, &[left, also_left]), 0.5);
        assert_eq!(covered_fraction(&target, &[left, also_left, corner]), 0.75);
        assert_eq!(
            covered_fraction(
                &target,
                &[Rect {
                    l: -1.0,
                    t: -1.0,
                    r: 11.0,
                    b: 11.0
                }]
            ),
            1.0
        );
    }

    #[test]
    fn embeddings_cluster_by_identity_and_blur_when_occluded() {
        let gt = apart(40, 6);
        let dets = degrade_labelled(&gt, &NoiseLevel::Medium.params(), 128, 2);
        let (within, across) = within_and_across(&dets);
        // sigma 0.35: within ≈ 1 / (1 + 0.35²) ≈ 0.89; across ≈ 0.
        assert!(within > 0.8, "within {within}");
        assert!(across.abs() < 0.1, "across {across}");

        // Person 2 is always half behind person 1.
        let mut gt = Vec::new();
        for f in 1..=200 {
            gt.push(gt_row(f, 1, 0.0, 0.0, 40.0, 100.0));
            gt.push(gt_row(f, 2, 20.0, -1.0, 40.0, 100.0));
        }
        let params = NoiseLevel::Medium.params();
        let dets = degrade_labelled(&gt, &params, 128, 4);
        let mean_within = |id| {
            let own: Vec<&Synthesized> = dets.iter().filter(|d| d.truth == Some(id)).collect();
            let (mut sum, mut n) = (0.0, 0.0);
            for (i, a) in own.iter().enumerate() {
                for b in &own[i + 1..] {
                    sum += cosine(&a.row.extra, &b.row.extra);
                    n += 1.0;
                }
            }
            sum / n
        };
        let (visible, occluded) = (mean_within(1), mean_within(2));
        assert!(
            visible > occluded + 0.1,
            "visible {visible} occluded {occluded}"
        );
    }

    #[test]
    fn low_noise_keeps_boxes_close_to_the_truth() {
        let gt = apart(200, 5);
        let dets = degrade_labelled(&gt, &NoiseLevel::Low.params(), 8, 6);
        let ious: Vec<f64> = dets
            .iter()
            .filter_map(|d| {
                let id = d.truth?;
                let truth = gt.iter().find(|g| g.frame == d.row.frame && g.id == id)?;
                Some(iou(&d.row, truth))
            })
            .collect();
        assert!(ious.len() > 900);
        let mean = ious.iter().sum::<f64>() / ious.len() as f64;
        assert!(mean > 0.9, "mean IoU {mean}");
        assert!(
            ious.iter().all(|&v| v > 0.6),
            "min IoU {:?}",
            ious.iter().copied().reduce(f64::min)
        );
    }

    #[test]
    fn levels_grow_noisier() {
        let [low, medium, high] = NoiseLevel::ALL.map(NoiseLevel::params);
        for (a, b) in [(low, medium), (medium, high)] {
            assert!(a.position_sigma < b.position_sigma && a.size_sigma < b.size_sigma);
            assert!(a.miss_rate < b.miss_rate && a.occluded_miss_rate < b.occluded_miss_rate);
            assert!(a.false_positives_per_frame < b.false_positives_per_frame);
            assert!(a.embedding_sigma < b.embedding_sigma);
            assert!(a.occluded_embedding_sigma < b.occluded_embedding_sigma);
        }
        for p in [low, medium, high] {
            assert_eq!(p.sanitized(), p);
        }
    }

    #[test]
    fn level_names_round_trip() {
        for level in NoiseLevel::ALL {
            assert_eq!(level.to_string().parse::<NoiseLevel>(), Ok(level));
        }
        assert_eq!(" HIGH ".parse::<NoiseLevel>(), Ok(NoiseLevel::High));
        let e = "extreme".parse::<NoiseLevel>().unwrap_err();
        assert_eq!(
            e.to_string(),
            "unknown noise level \"extreme\"; expected one of low, medium, high"
        );
    }

    #[test]
    fn ignore_regions_produce_nothing_but_still_occlude() {
        let mut gt = Vec::new();
        for f in 1..=500 {
            gt.push(Row {
                conf: 0.0,
                ..gt_row(f, 9, 0.0, 0.0, 100.0, 200.0)
            });
            gt.push(gt_row(f, 1, 10.0, 10.0, 40.0, 100.0));
        }
        let params = NoiseParams {
            occluded_miss_rate: 1.0,
            ..QUIET
        };
        assert!(
            degrade_labelled(&gt, &QUIET, 4, 1)
                .iter()
                .all(|d| d.truth == Some(1))
        );
        assert!(degrade(&gt, &params, 4, 1).is_empty());
    }

    #[test]
    fn bad_data_and_parameters_never_panic() {
        let mut gt = apart(5, 2);
        gt.push(gt_row(3, 4, f64::NAN, 0.0, 10.0, 10.0));
        gt.push(gt_row(3, 5, 0.0, 0.0, -10.0, 10.0));
        gt.push(gt_row(3, 6, 0.0, 0.0, f64::INFINITY, 10.0));
        gt.push(gt_row(3, 7, f64::MAX, f64::MAX, f64::MAX, f64::MAX));
        gt.push(gt_row(u32::MAX, i64::MIN, 0.0, 0.0, 1.0, 1.0));
        let wild = NoiseParams {
            position_sigma: f64::INFINITY,
            size_sigma: 1e300,
            miss_rate: -1.0,
            occluded_miss_rate: f64::NAN,
            false_positives_per_frame: 1e12,
            embedding_sigma: f64::NEG_INFINITY,
            occluded_embedding_sigma: 5.0,
        };
        for dim in [0, 1, 3] {
            for params in [wild, NoiseLevel::High.params()] {
                for d in degrade(&gt, &params, dim, u64::MAX) {
                    assert!([d.x, d.y, d.w, d.h, d.conf].iter().all(|v| v.is_finite()));
                    assert!(d.extra.iter().all(|v| v.is_finite()) && d.extra.len() == dim);
                }
            }
        }
        // Six ground-truth frames, the gap to u32::MAX too long to fill.
        assert!(degrade(&gt, &wild, 2, 0).len() <= 6 * 100 * 3);
        assert!(degrade(&[], &NoiseLevel::High.params(), 8, 0).is_empty());
    }
}
