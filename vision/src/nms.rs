//! Non-maximum suppression.

use crate::yolo::Candidate;

/// Greedy class-aware NMS: keeps the best-scoring candidate and drops every
/// other candidate of the same class overlapping it by more than
/// `iou_threshold`. Returns the survivors, best first. Candidates with a
/// non-finite score are dropped.
pub fn nms(mut candidates: Vec<Candidate>, iou_threshold: f32) -> Vec<Candidate> {
    candidates.retain(|c| c.score.is_finite());
    candidates.sort_by(|a, b| b.score.total_cmp(&a.score));
    let mut kept: Vec<Candidate> = Vec::with_capacity(candidates.len().min(64));
    for candidate in candidates {
        let suppressed = kept.iter().any(|k| {
            k.class_id == candidate.class_id && k.bbox.iou(&candidate.bbox) > iou_threshold
        });
        if !suppressed {
            kept.push(candidate);
        }
    }
    kept
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bbox::BBox;

    fn cand(x: f32, score: f32, class_id: u32) -> Candidate {
        Candidate {
            bbox: BBox {
                x,
                y: 0.0,
                w: 10.0,
                h: 10.0,
            },
            score,
            class_id,
        }
    }

    #[test]
    fn overlapping_same_class_boxes_collapse_to_the_best() {
        let kept = nms(
            vec![cand(0.0, 0.6, 0), cand(1.0, 0.9, 0), cand(30.0, 0.5, 0)],
            0.45,
        );
        assert_eq!(kept, vec![cand(1.0, 0.9, 0), cand(30.0, 0.5, 0)]);
    }

    #[test]
    fn other_classes_are_not_suppressed() {
        let kept = nms(vec![cand(0.0, 0.9, 0), cand(0.0, 0.8, 1)], 0.45);
        assert_eq!(kept.len(), 2);
    }

    #[test]
    fn threshold_is_exclusive_and_nan_scores_are_dropped() {
        // IoU of boxes shifted by 5 px = 50 / 150 = 1/3.
        assert_eq!(
            nms(vec![cand(0.0, 0.9, 0), cand(5.0, 0.8, 0)], 1.0 / 3.0).len(),
            2
        );
        assert_eq!(
            nms(vec![cand(0.0, 0.9, 0), cand(5.0, 0.8, 0)], 0.3).len(),
            1
        );
        let kept = nms(vec![cand(0.0, f32::NAN, 0), cand(50.0, 0.7, 0)], 0.45);
        assert_eq!(kept, vec![cand(50.0, 0.7, 0)]);
    }
}
