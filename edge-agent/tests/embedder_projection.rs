//! The 128-d embedder (tools/fit_embedding_projection.py: the 1280-d
//! MobileNetV2 embedder with a projection onto the top 128 principal axes of
//! its uncentred features appended) against the 1280-d one it came from,
//! through the agent's own analysis path, on frames of vtest.avi the
//! projection was not fitted on (the same people, other frames). Needs the
//! assets from `scripts/setup.sh`.

use edge_agent::inference::{Detector, Embedder};
use schemas::v1::Detection;
use vision::bbox::BBox;
use vision::roi::RegionFilter;

#[allow(dead_code)] // each test crate uses part of it
mod common;

use common::{asset, ort_environment, person_params, vtest_frames};

/// The projection is fitted on frames 0, 8, 16, ...; pairs (t, t + 2) with
/// t = 3 mod 8 are held out (the tool measures on the same kind of pairs).
const FIT_EVERY: u64 = 8;
const GAP: u64 = 2;
/// Boxes of frames t and t + 2 matched with at least this IoU are taken as
/// the same person. (Many people in vtest.avi are small and far away, and
/// yolov3-tiny's boxes of them jitter: about one box in five finds its match.)
const SAME_MIN_IOU: f32 = 0.6;

/// The quantised embedding of every detection, as floats (what the tracker sees).
fn wire_vectors(detections: &[Detection]) -> Vec<Vec<f32>> {
    detections
        .iter()
        .map(|d| {
            let embedding = d.embedding.as_ref().expect("embeddings are enabled");
            schemas::embedding::dequantise(embedding)
        })
        .collect()
}

fn bbox(d: &Detection) -> BBox {
    BBox {
        x: d.x,
        y: d.y,
        w: d.width,
        h: d.height,
    }
}

/// One-to-one matches between the boxes of two frames, greedily from the
/// highest IoU, down to [`SAME_MIN_IOU`].
fn same_person_pairs(a: &[Detection], b: &[Detection]) -> Vec<(usize, usize)> {
    let mut scored: Vec<(f32, usize, usize)> = a
        .iter()
        .enumerate()
        .flat_map(|(i, p)| {
            b.iter()
                .enumerate()
                .map(move |(j, q)| (bbox(p).iou(&bbox(q)), i, j))
        })
        .filter(|(iou, _, _)| *iou >= SAME_MIN_IOU)
        .collect();
    scored.sort_by(|x, y| y.0.total_cmp(&x.0));
    let (mut used_a, mut used_b) = (vec![false; a.len()], vec![false; b.len()]);
    let mut pairs = Vec::new();
    for (_, i, j) in scored {
        if !used_a[i] && !used_b[j] {
            used_a[i] = true;
            used_b[j] = true;
            pairs.push((i, j));
        }
    }
    pairs
}

/// ROC AUC of `positive` vs `negative` scores: the probability that a
/// positive outscores a negative, ties counting one half.
fn auc(positive: &[f32], negative: &[f32]) -> f64 {
    let mut wins = 0.0f64;
    for p in positive {
        for n in negative {
            wins += match p.total_cmp(n) {
                std::cmp::Ordering::Greater => 1.0,
                std::cmp::Ordering::Equal => 0.5,
                std::cmp::Ordering::Less => 0.0,
            };
        }
    }
    wins / (positive.len() * negative.len()) as f64
}

fn cosine(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

/// Cosine similarities of same-person and different-people pairs.
#[derive(Debug, Default)]
struct Separation {
    same: Vec<f32>,
    different: Vec<f32>,
}

impl Separation {
    fn add(&mut self, first: &[Vec<f32>], second: &[Vec<f32>], same: &[(usize, usize)]) {
        self.same
            .extend(same.iter().map(|&(i, j)| cosine(&first[i], &second[j])));
        for (i, a) in first.iter().enumerate() {
            self.different
                .extend(first[i + 1..].iter().map(|b| cosine(a, b)));
        }
    }

    fn mean(values: &[f32]) -> f32 {
        values.iter().sum::<f32>() / values.len().max(1) as f32
    }

    fn auc(&self) -> f64 {
        auc(&self.same, &self.different)
    }
}

#[test]
fn the_128_d_embedder_separates_people_as_well_as_the_1280_d_one() {
    let env = ort_environment();
    let mut detector =
        Detector::load(&env, &asset("yolov3-tiny.onnx"), person_params(), 0).unwrap();
    let mut full = Embedder::load(&env, &asset("mobilenetv2-embedder.onnx"), 128, 64, 0).unwrap();
    let mut projected =
        Embedder::load(&env, &asset("mobilenetv2-embedder-128.onnx"), 128, 64, 0).unwrap();
    assert_eq!(projected.embedder_id(), "mobilenetv2-embedder-128@128x64");

    // 32 held-out pairs of frames: (3, 5), (27, 29), ... (none a multiple of 8).
    let frames = vtest_frames(
        |seq| seq % (3 * FIT_EVERY) == 3 || seq % (3 * FIT_EVERY) == 3 + GAP,
        64,
    );
    let filter = RegionFilter::default();
    let (mut full_sep, mut projected_sep) = (Separation::default(), Separation::default());
    let mut people = 0;
    for pair in frames.chunks_exact(2) {
        assert_eq!(pair[1].seq, pair[0].seq + GAP);
        let mut analyse = |embedder: &mut Embedder, frame| {
            edge_agent::analyse(frame, &mut detector, Some(embedder), &filter)
                .unwrap()
                .detections
        };
        let (full_a, full_b) = (analyse(&mut full, &pair[0]), analyse(&mut full, &pair[1]));
        let (proj_a, proj_b) = (
            analyse(&mut projected, &pair[0]),
            analyse(&mut projected, &pair[1]),
        );
        // Same detector, same frames: the same boxes both times.
        assert_eq!(
            full_a.iter().map(bbox).collect::<Vec<_>>(),
            proj_a.iter().map(bbox).collect::<Vec<_>>()
        );
        people += full_a.len() + full_b.len();
        let same = same_person_pairs(&full_a, &full_b);
        let (fa, fb) = (wire_vectors(&full_a), wire_vectors(&full_b));
        let (pa, pb) = (wire_vectors(&proj_a), wire_vectors(&proj_b));
        for v in fa.iter().chain(&fb) {
            assert_eq!(v.len(), 1280);
        }
        for v in pa.iter().chain(&pb) {
            assert_eq!(v.len(), 128, "the projected embedder's wire vectors");
            let norm = cosine(v, v).sqrt();
            // int8 with a scale of max|v| / 127: well within 1 %.
            assert!((norm - 1.0).abs() < 0.01, "wire vector norm {norm}");
        }
        full_sep.add(&fa, &fb, &same);
        projected_sep.add(&pa, &pb, &same);
    }
    let (full_auc, projected_auc) = (full_sep.auc(), projected_sep.auc());
    println!(
        "{people} people on {} held-out frames; {} same-person pairs, {} different-people pairs\n\
         1280-d: same {:.3}, different {:.3}, AUC {full_auc:.4}\n\
         128-d:  same {:.3}, different {:.3}, AUC {projected_auc:.4}",
        frames.len(),
        full_sep.same.len(),
        full_sep.different.len(),
        Separation::mean(&full_sep.same),
        Separation::mean(&full_sep.different),
        Separation::mean(&projected_sep.same),
        Separation::mean(&projected_sep.different),
    );
    assert!(
        full_sep.same.len() >= 20 && full_sep.different.len() >= 200,
        "vtest.avi has people walking: {} same, {} different pairs",
        full_sep.same.len(),
        full_sep.different.len()
    );
    assert!(
        full_auc > 0.9,
        "the 1280-d embedder tells people apart at all: AUC {full_auc}"
    );
    assert!(
        projected_auc >= full_auc - 0.02,
        "128-d AUC {projected_auc:.4} is more than 0.02 below 1280-d's {full_auc:.4}"
    );
}
