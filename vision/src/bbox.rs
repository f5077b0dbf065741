//! Axis-aligned boxes.

/// A box by its top-left corner and size, in pixels.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct BBox {
    /// Left edge.
    pub x: f32,
    /// Top edge.
    pub y: f32,
    /// Width (non-negative for a valid box).
    pub w: f32,
    /// Height (non-negative for a valid box).
    pub h: f32,
}

impl BBox {
    /// A box from its centre and size.
    pub fn from_center(cx: f32, cy: f32, w: f32, h: f32) -> Self {
        BBox {
            x: cx - w / 2.0,
            y: cy - h / 2.0,
            w,
            h,
        }
    }

    /// Area, 0 for degenerate or non-finite boxes.
    pub fn area(&self) -> f32 {
        if self.is_valid() {
            self.w * self.h
        } else {
            0.0
        }
    }

    /// Finite with positive width and height.
    pub fn is_valid(&self) -> bool {
        [self.x, self.y, self.w, self.h]
            .iter()
            .all(|v| v.is_finite())
            && self.w > 0.0
            && self.h > 0.0
    }

    /// Intersection over union in [0, 1]; 0 when either box is invalid.
    pub fn iou(&self, other: &BBox) -> f32 {
        let ix = (self.x + self.w).min(other.x + other.w) - self.x.max(other.x);
        let iy = (self.y + self.h).min(other.y + other.h) - self.y.max(other.y);
        if !(ix > 0.0 && iy > 0.0) {
            return 0.0;
        }
        let inter = ix * iy;
        let union = self.area() + other.area() - inter;
        if union > 0.0 {
            (inter / union).clamp(0.0, 1.0)
        } else {
            0.0
        }
    }

    /// The part of the box inside `[0, width) x [0, height)`; `None` when nothing is left.
    pub fn clip(&self, width: f32, height: f32) -> Option<BBox> {
        let x0 = self.x.max(0.0);
        let y0 = self.y.max(0.0);
        let x1 = (self.x + self.w).min(width);
        let y1 = (self.y + self.h).min(height);
        let clipped = BBox {
            x: x0,
            y: y0,
            w: x1 - x0,
            h: y1 - y0,
        };
        clipped.is_valid().then_some(clipped)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn iou_of_known_overlaps() {
        let a = BBox {
            x: 0.0,
            y: 0.0,
            w: 10.0,
            h: 10.0,
        };
        assert_eq!(a.iou(&a), 1.0);
        let b = BBox {
            x: 5.0,
            y: 0.0,
            w: 10.0,
            h: 10.0,
        };
        assert!((a.iou(&b) - 50.0 / 150.0).abs() < 1e-6);
        let far = BBox {
            x: 20.0,
            y: 20.0,
            w: 1.0,
            h: 1.0,
        };
        assert_eq!(a.iou(&far), 0.0);
    }

    #[test]
    fn degenerate_and_nan_boxes_have_zero_iou() {
        let a = BBox {
            x: 0.0,
            y: 0.0,
            w: 10.0,
            h: 10.0,
        };
        assert_eq!(
            a.iou(&BBox {
                x: f32::NAN,
                y: 0.0,
                w: 10.0,
                h: 10.0
            }),
            0.0
        );
        assert_eq!(
            a.iou(&BBox {
                x: 0.0,
                y: 0.0,
                w: 0.0,
                h: 10.0
            }),
            0.0
        );
    }

    #[test]
    fn clip_keeps_the_inside() {
        let b = BBox {
            x: -5.0,
            y: 90.0,
            w: 20.0,
            h: 20.0,
        };
        assert_eq!(
            b.clip(100.0, 100.0),
            Some(BBox {
                x: 0.0,
                y: 90.0,
                w: 15.0,
                h: 10.0
            })
        );
        assert_eq!(
            BBox {
                x: 200.0,
                y: 0.0,
                w: 5.0,
                h: 5.0
            }
            .clip(100.0, 100.0),
            None
        );
    }
}
