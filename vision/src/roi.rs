//! Regions of interest and exclusion masks: polygons in source-frame pixels
//! that decide which detections count.
//!
//! A [`RegionFilter`] keeps a box when one point of it, its [`Anchor`] (the
//! feet by default), lies inside some include polygon (or no include polygon
//! is given) and inside no exclude polygon: an exclusion wins over an ROI.
//!
//! Inside means the **non-zero winding rule**, and the **boundary counts as
//! inside**: a point on an edge or a vertex is inside the polygon. That makes
//! an ROI drawn along the frame's border keep boxes clipped to the frame
//! (their feet lie exactly on the bottom edge), and an exclusion drawn up to a
//! line drop people standing on that line.

use crate::bbox::BBox;
use crate::yolo::Candidate;

/// Why points do not make a [`Polygon`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PolygonError {
    /// Fewer than 3 points.
    #[error("a polygon needs at least 3 points, got {0}")]
    TooFewPoints(usize),
    /// A coordinate is NaN or infinite.
    #[error("point {index} is not finite")]
    NotFinite {
        /// Index of the first bad point.
        index: usize,
    },
    /// The outline encloses no area.
    #[error(
        "the polygon encloses no area (its points lie on one line, or its outline cancels out)"
    )]
    ZeroArea,
}

/// A closed polygon of at least 3 points `[x, y]`, in pixels; the last point
/// connects back to the first (repeating the first point at the end is
/// allowed and changes nothing). Concave and self-crossing outlines work.
#[derive(Debug, Clone, PartialEq)]
pub struct Polygon {
    points: Vec<[f32; 2]>,
    /// Bounding box corners, for a quick rejection.
    min: [f32; 2],
    max: [f32; 2],
}

impl Polygon {
    /// Validates the points: at least 3, all finite, enclosing a non-zero
    /// area: an area within `f32` rounding of zero (points on one line, an
    /// outline that cancels out) is refused.
    pub fn new(points: Vec<[f32; 2]>) -> Result<Self, PolygonError> {
        if points.len() < 3 {
            return Err(PolygonError::TooFewPoints(points.len()));
        }
        if let Some(index) = points
            .iter()
            .position(|p| !(p[0].is_finite() && p[1].is_finite()))
        {
            return Err(PolygonError::NotFinite { index });
        }
        let mut min = points[0];
        let mut max = points[0];
        for p in &points {
            min = [min[0].min(p[0]), min[1].min(p[1])];
            max = [max[0].max(p[0]), max[1].max(p[1])];
        }
        let polygon = Polygon { points, min, max };
        // Relative to the size, so that the `f32` rounding of points on one
        // line never passes for an area. Finite `f32` coordinates keep every
        // `f64` product here finite.
        let dx = f64::from(max[0]) - f64::from(min[0]);
        let dy = f64::from(max[1]) - f64::from(min[1]);
        if polygon.area() <= f64::from(f32::EPSILON) * (dx * dx + dy * dy) {
            return Err(PolygonError::ZeroArea);
        }
        Ok(polygon)
    }

    /// The points as given.
    pub fn points(&self) -> &[[f32; 2]] {
        &self.points
    }

    /// The enclosed area by the shoelace formula (absolute value of the signed
    /// area; parts of a self-crossing outline that wind opposite ways subtract).
    pub fn area(&self) -> f64 {
        // Relative to the first point, which also makes the closing edge's
        // term zero.
        let o = self.points[0];
        let rel = |p: [f32; 2]| {
            (
                f64::from(p[0]) - f64::from(o[0]),
                f64::from(p[1]) - f64::from(o[1]),
            )
        };
        let twice: f64 = self
            .points
            .windows(2)
            .map(|w| {
                let (ax, ay) = rel(w[0]);
                let (bx, by) = rel(w[1]);
                ax * by - bx * ay
            })
            .sum();
        twice.abs() / 2.0
    }

    /// Whether `(x, y)` is inside: non-zero winding number, or on the boundary
    /// (any edge or vertex). False for NaN. The arithmetic is in `f64`, which
    /// decides boundary points exactly for pixel coordinates (integers or
    /// `f32` anchors of moderate magnitude); elsewhere within rounding.
    pub fn contains(&self, x: f32, y: f32) -> bool {
        // Also false for NaN.
        if !(x >= self.min[0] && x <= self.max[0] && y >= self.min[1] && y <= self.max[1]) {
            return false;
        }
        let (px, py) = (f64::from(x), f64::from(y));
        let n = self.points.len();
        let mut winding = 0i64;
        for i in 0..n {
            let [ax, ay] = self.points[i].map(f64::from);
            let [bx, by] = self.points[(i + 1) % n].map(f64::from);
            // > 0: p is left of a→b (y down: visually right); 0: on its line.
            let cross = (bx - ax) * (py - ay) - (by - ay) * (px - ax);
            if cross == 0.0
                && px >= ax.min(bx)
                && px <= ax.max(bx)
                && py >= ay.min(by)
                && py <= ay.max(by)
            {
                return true;
            }
            // Dan Sunday's winding number: upward crossings to the left of
            // p count +1, downward crossings to its right -1.
            if ay <= py {
                if by > py && cross > 0.0 {
                    winding += 1;
                }
            } else if by <= py && cross < 0.0 {
                winding -= 1;
            }
        }
        winding != 0
    }
}

impl TryFrom<Vec<[f32; 2]>> for Polygon {
    type Error = PolygonError;

    fn try_from(points: Vec<[f32; 2]>) -> Result<Self, PolygonError> {
        Polygon::new(points)
    }
}

/// The point of a box tested against the polygons.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Anchor {
    /// Middle of the bottom edge: where a standing person's feet are, so
    /// floor areas drawn on the image select people standing in them.
    #[default]
    BottomCentre,
    /// Centre of the box.
    Centre,
}

impl Anchor {
    /// The anchor point `(x, y)` of `bbox`.
    pub fn point(self, bbox: &BBox) -> (f32, f32) {
        let x = bbox.x + bbox.w / 2.0;
        match self {
            Anchor::BottomCentre => (x, bbox.y + bbox.h),
            Anchor::Centre => (x, bbox.y + bbox.h / 2.0),
        }
    }
}

/// Something with a box, for [`RegionFilter::retain`].
pub trait HasBBox {
    /// The box tested.
    fn bbox(&self) -> &BBox;
}

impl HasBBox for BBox {
    fn bbox(&self) -> &BBox {
        self
    }
}

impl HasBBox for Candidate {
    fn bbox(&self) -> &BBox {
        &self.bbox
    }
}

/// Which detections of a camera count: the anchor of a kept box is inside
/// some `include` polygon (any point when `include` is empty) and inside no
/// `exclude` polygon. The default keeps every finite box.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct RegionFilter {
    /// Regions of interest; empty means the whole frame.
    pub include: Vec<Polygon>,
    /// Masked regions (posters, screens, mirrors); they win over `include`.
    pub exclude: Vec<Polygon>,
    /// The point of a box tested.
    pub anchor: Anchor,
}

impl RegionFilter {
    /// True when the filter has no polygon: it keeps every finite box.
    pub fn is_empty(&self) -> bool {
        self.include.is_empty() && self.exclude.is_empty()
    }

    /// Whether the box counts. A box with a NaN or infinite coordinate is
    /// never kept.
    pub fn keeps(&self, bbox: &BBox) -> bool {
        if ![bbox.x, bbox.y, bbox.w, bbox.h]
            .iter()
            .all(|v| v.is_finite())
        {
            return false;
        }
        let (x, y) = self.anchor.point(bbox);
        if !(x.is_finite() && y.is_finite()) {
            return false;
        }
        (self.include.is_empty() || self.include.iter().any(|p| p.contains(x, y)))
            && !self.exclude.iter().any(|p| p.contains(x, y))
    }

    /// Keeps the items whose box [`keeps`](Self::keeps) accepts, in order;
    /// returns how many were dropped.
    pub fn retain<T: HasBBox>(&self, items: &mut Vec<T>) -> usize {
        let before = items.len();
        items.retain(|item| self.keeps(item.bbox()));
        before - items.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn poly(points: &[[f32; 2]]) -> Polygon {
        Polygon::new(points.to_vec()).unwrap()
    }

    fn square(x0: f32, y0: f32, x1: f32, y1: f32) -> Polygon {
        poly(&[[x0, y0], [x1, y0], [x1, y1], [x0, y1]])
    }

    /// A box whose bottom centre (the default anchor) is at `(x, y)`.
    fn feet_at(x: f32, y: f32) -> BBox {
        BBox {
            x: x - 5.0,
            y: y - 20.0,
            w: 10.0,
            h: 20.0,
        }
    }

    /// An L: the 0..10 square minus its top-right quarter 5..10 x 0..5.
    fn l_shape() -> Polygon {
        poly(&[
            [0.0, 0.0],
            [5.0, 0.0],
            [5.0, 5.0],
            [10.0, 5.0],
            [10.0, 10.0],
            [0.0, 10.0],
        ])
    }

    /// A U opening upwards: the 0..30 x 0..30 square minus the notch 10..20 x 0..20.
    fn u_shape() -> Polygon {
        poly(&[
            [0.0, 0.0],
            [10.0, 0.0],
            [10.0, 20.0],
            [20.0, 20.0],
            [20.0, 0.0],
            [30.0, 0.0],
            [30.0, 30.0],
            [0.0, 30.0],
        ])
    }

    #[test]
    fn convex_polygons_contain_their_inside_only() {
        let s = square(0.0, 0.0, 10.0, 10.0);
        assert!(s.contains(5.0, 5.0));
        assert!(s.contains(0.001, 9.999));
        assert!(!s.contains(-0.001, 5.0));
        assert!(!s.contains(5.0, 10.001));
        assert!(!s.contains(50.0, 50.0));
        let triangle = poly(&[[0.0, 0.0], [10.0, 0.0], [0.0, 10.0]]);
        assert!(triangle.contains(2.0, 2.0));
        assert!(!triangle.contains(6.0, 6.0), "beyond the hypotenuse");
        assert_eq!(s.area(), 100.0);
        assert_eq!(triangle.area(), 50.0);
    }

    #[test]
    fn both_orientations_work() {
        let clockwise = poly(&[[0.0, 0.0], [0.0, 10.0], [10.0, 10.0], [10.0, 0.0]]);
        assert!(clockwise.contains(5.0, 5.0));
        assert!(!clockwise.contains(15.0, 5.0));
        assert_eq!(clockwise.area(), 100.0);
    }

    #[test]
    fn an_l_shape_excludes_its_missing_corner() {
        let l = l_shape();
        assert!(l.contains(2.0, 2.0), "upper arm");
        assert!(l.contains(8.0, 8.0), "right foot");
        assert!(l.contains(2.0, 8.0), "corner of the L");
        assert!(!l.contains(8.0, 2.0), "the missing quarter");
        assert!(!l.contains(7.5, 4.999));
        assert!(l.contains(7.5, 5.0), "on the inner edge");
        assert_eq!(l.area(), 75.0);
    }

    #[test]
    fn a_u_shape_leaves_its_notch_outside() {
        let u = u_shape();
        assert!(u.contains(5.0, 5.0), "left arm");
        assert!(u.contains(25.0, 5.0), "right arm");
        assert!(u.contains(15.0, 25.0), "bottom bar");
        assert!(!u.contains(15.0, 5.0), "the notch");
        assert!(!u.contains(15.0, 19.9), "deep in the notch");
        // Rays from the notch cross both arms: exactly the case a naive
        // convex test gets wrong.
        assert!(!u.contains(11.0, 10.0));
        assert!(!u.contains(19.0, 10.0));
        // A horizontal line through a notch vertex.
        assert!(u.contains(5.0, 20.0));
        assert!(!u.contains(15.0, 19.999));
        assert!(u.contains(25.0, 20.0));
        assert!(!u.contains(35.0, 20.0));
        assert!(!u.contains(-1.0, 20.0));
    }

    #[test]
    fn vertices_and_edges_are_inside() {
        let s = square(0.0, 0.0, 10.0, 10.0);
        for (x, y) in [(0.0, 0.0), (10.0, 0.0), (10.0, 10.0), (0.0, 10.0)] {
            assert!(s.contains(x, y), "vertex ({x}, {y})");
        }
        for (x, y) in [(5.0, 0.0), (10.0, 5.0), (5.0, 10.0), (0.0, 5.0)] {
            assert!(s.contains(x, y), "edge point ({x}, {y})");
        }
        // On an edge's line but beyond the edge.
        assert!(!s.contains(12.0, 0.0));
        assert!(!s.contains(0.0, -3.0));
        // Slanted edges too, and the reflex vertex of the L.
        let triangle = poly(&[[0.0, 0.0], [10.0, 0.0], [0.0, 10.0]]);
        assert!(triangle.contains(5.0, 5.0));
        assert!(triangle.contains(2.5, 7.5));
        assert!(!triangle.contains(5.0, 5.001));
        assert!(l_shape().contains(5.0, 5.0));
        assert!(l_shape().contains(5.0, 2.0));
    }

    #[test]
    fn a_frame_sized_roi_keeps_boxes_clipped_to_the_frame() {
        let frame = square(0.0, 0.0, 768.0, 576.0);
        let filter = RegionFilter {
            include: vec![frame],
            ..Default::default()
        };
        // Clipped at the bottom: the feet lie exactly on the frame's edge.
        let clipped = BBox {
            x: 700.0,
            y: 476.0,
            w: 68.0,
            h: 100.0,
        };
        assert!(filter.keeps(&clipped));
    }

    #[test]
    fn self_crossing_outlines_use_the_winding_rule() {
        // A bow tie: both lobes are inside.
        let bow = poly(&[[0.0, 0.0], [10.0, 10.0], [10.0, 0.0], [0.0, 20.0]]);
        assert!(bow.contains(8.0, 5.0));
        assert!(bow.contains(1.0, 10.0));
        assert!(!bow.contains(5.0, 1.0));
        // A square walked twice: winding number 2 is still inside (even-odd
        // would call it outside).
        let twice = poly(&[
            [0.0, 0.0],
            [10.0, 0.0],
            [10.0, 10.0],
            [0.0, 10.0],
            [0.0, 0.0],
            [10.0, 0.0],
            [10.0, 10.0],
            [0.0, 10.0],
        ]);
        assert!(twice.contains(5.0, 5.0));
        assert!(!twice.contains(15.0, 5.0));
    }

    #[test]
    fn a_repeated_closing_point_changes_nothing() {
        let closed = poly(&[[0.0, 0.0], [10.0, 0.0], [10.0, 10.0], [0.0, 0.0]]);
        assert!(closed.contains(8.0, 2.0));
        assert!(!closed.contains(2.0, 8.0));
        assert_eq!(closed.area(), 50.0);
    }

    #[test]
    fn degenerate_polygons_are_refused() {
        assert_eq!(
            Polygon::new(vec![]).unwrap_err(),
            PolygonError::TooFewPoints(0)
        );
        assert_eq!(
            Polygon::new(vec![[0.0, 0.0], [1.0, 1.0]]).unwrap_err(),
            PolygonError::TooFewPoints(2)
        );
        assert_eq!(
            Polygon::new(vec![[0.0, 0.0], [1.0, f32::NAN], [1.0, 0.0]]).unwrap_err(),
            PolygonError::NotFinite { index: 1 }
        );
        assert_eq!(
            Polygon::new(vec![[0.0, 0.0], [1.0, 0.0], [f32::INFINITY, 1.0]]).unwrap_err(),
            PolygonError::NotFinite { index: 2 }
        );
        // Collinear, all one point, back and forth, and an outline whose
        // two loops cancel.
        for points in [
            vec![[0.0, 0.0], [5.0, 5.0], [10.0, 10.0]],
            vec![[0.1, 0.7], [0.3, 2.1], [0.7, 4.9], [0.2, 1.4]],
            vec![[3.0, 3.0]; 4],
            vec![[0.0, 0.0], [10.0, 0.0], [0.0, 0.0]],
            vec![[0.0, 0.0], [10.0, 10.0], [10.0, 0.0], [0.0, 10.0]],
        ] {
            assert_eq!(
                Polygon::new(points.clone()).unwrap_err(),
                PolygonError::ZeroArea,
                "{points:?}"
            );
        }
        assert_eq!(
            PolygonError::TooFewPoints(2).to_string(),
            "a polygon needs at least 3 points, got 2"
        );
        // A thin but real polygon is fine.
        assert!(Polygon::try_from(vec![[0.0, 0.0], [100.0, 0.0], [100.0, 0.5]]).is_ok());
    }

    #[test]
    fn nan_points_are_outside() {
        let s = square(0.0, 0.0, 10.0, 10.0);
        assert!(!s.contains(f32::NAN, 5.0));
        assert!(!s.contains(5.0, f32::NAN));
        assert!(!s.contains(f32::INFINITY, 5.0));
    }

    #[test]
    fn anchors_pick_the_feet_or_the_centre() {
        let b = BBox {
            x: 10.0,
            y: 20.0,
            w: 30.0,
            h: 40.0,
        };
        assert_eq!(Anchor::BottomCentre.point(&b), (25.0, 60.0));
        assert_eq!(Anchor::Centre.point(&b), (25.0, 40.0));
        assert_eq!(Anchor::default(), Anchor::BottomCentre);
        // Feet in the lower half, centre in the upper half.
        let lower = square(0.0, 50.0, 100.0, 100.0);
        let feet = RegionFilter {
            include: vec![lower.clone()],
            ..Default::default()
        };
        let centre = RegionFilter {
            include: vec![lower],
            anchor: Anchor::Centre,
            ..Default::default()
        };
        assert!(feet.keeps(&b));
        assert!(!centre.keeps(&b));
    }

    #[test]
    fn an_empty_include_list_keeps_everything_finite() {
        let filter = RegionFilter::default();
        assert!(filter.is_empty());
        assert!(filter.keeps(&feet_at(5.0, 5.0)));
        assert!(filter.keeps(&feet_at(-1e6, 1e6)));
        let only_exclude = RegionFilter {
            exclude: vec![square(0.0, 0.0, 10.0, 10.0)],
            ..Default::default()
        };
        assert!(!only_exclude.is_empty());
        assert!(only_exclude.keeps(&feet_at(50.0, 50.0)));
        assert!(!only_exclude.keeps(&feet_at(5.0, 5.0)));
    }

    #[test]
    fn include_keeps_the_inside_of_any_polygon() {
        let filter = RegionFilter {
            include: vec![square(0.0, 0.0, 10.0, 10.0), square(20.0, 0.0, 30.0, 10.0)],
            ..Default::default()
        };
        assert!(filter.keeps(&feet_at(5.0, 5.0)));
        assert!(filter.keeps(&feet_at(25.0, 5.0)));
        assert!(!filter.keeps(&feet_at(15.0, 5.0)));
        assert!(!filter.keeps(&feet_at(5.0, 15.0)));
    }

    #[test]
    fn exclusion_wins_where_it_overlaps_the_roi() {
        let filter = RegionFilter {
            include: vec![square(0.0, 0.0, 100.0, 100.0)],
            exclude: vec![square(50.0, 50.0, 150.0, 150.0)],
            anchor: Anchor::BottomCentre,
        };
        assert!(filter.keeps(&feet_at(25.0, 25.0)), "ROI only");
        assert!(!filter.keeps(&feet_at(75.0, 75.0)), "ROI and exclusion");
        assert!(
            !filter.keeps(&feet_at(50.0, 50.0)),
            "on the exclusion's corner"
        );
        assert!(!filter.keeps(&feet_at(125.0, 125.0)), "exclusion only");
        assert!(!filter.keeps(&feet_at(200.0, 200.0)), "neither");
    }

    #[test]
    fn nan_boxes_are_never_kept_and_never_panic() {
        let filters = [
            RegionFilter::default(),
            RegionFilter {
                include: vec![square(0.0, 0.0, 100.0, 100.0)],
                ..Default::default()
            },
            RegionFilter {
                exclude: vec![square(0.0, 0.0, 100.0, 100.0)],
                anchor: Anchor::Centre,
                ..Default::default()
            },
        ];
        let good = feet_at(50.0, 50.0);
        for filter in &filters {
            for bad in [
                BBox {
                    x: f32::NAN,
                    ..good
                },
                BBox {
                    y: f32::NAN,
                    ..good
                },
                BBox {
                    w: f32::NAN,
                    ..good
                },
                BBox {
                    h: f32::NAN,
                    ..good
                },
                BBox {
                    x: f32::INFINITY,
                    ..good
                },
                BBox {
                    y: f32::MAX,
                    h: f32::MAX,
                    ..good
                },
            ] {
                assert!(!filter.keeps(&bad), "{bad:?} with {filter:?}");
            }
        }
    }

    #[test]
    fn retain_drops_masked_items_in_order_and_counts_them() {
        let filter = RegionFilter {
            include: vec![square(0.0, 0.0, 100.0, 100.0)],
            exclude: vec![square(0.0, 0.0, 20.0, 20.0)],
            ..Default::default()
        };
        let cand = |x: f32, y: f32, score: f32| Candidate {
            bbox: feet_at(x, y),
            score,
            class_id: 0,
        };
        let mut candidates = vec![
            cand(50.0, 50.0, 0.9),
            cand(10.0, 10.0, 0.8),
            cand(150.0, 50.0, 0.7),
            cand(60.0, 90.0, 0.6),
            Candidate {
                bbox: BBox {
                    x: f32::NAN,
                    ..feet_at(50.0, 50.0)
                },
                score: 0.5,
                class_id: 0,
            },
        ];
        assert_eq!(filter.retain(&mut candidates), 3);
        assert_eq!(
            candidates,
            vec![cand(50.0, 50.0, 0.9), cand(60.0, 90.0, 0.6)]
        );
        let mut boxes = vec![feet_at(50.0, 50.0), feet_at(10.0, 10.0)];
        assert_eq!(filter.retain(&mut boxes), 1);
        assert_eq!(boxes, vec![feet_at(50.0, 50.0)]);
        let mut none: Vec<BBox> = Vec::new();
        assert_eq!(filter.retain(&mut none), 0);
    }
}
