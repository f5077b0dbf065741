//! Where and when a rule applies: polygon zones in image pixels and daily
//! UTC time windows (pure geometry and arithmetic, no clock reads).

use std::fmt;
use std::str::FromStr;

/// Microseconds in a day.
const DAY_US: i64 = 86_400 * 1_000_000;

/// A closed polygon zone in image pixels (simple or not; even-odd filling).
///
/// Built with [`Polygon::new`], which refuses fewer than three points,
/// non-finite coordinates and polygons without area.
#[derive(Debug, Clone, PartialEq)]
pub struct Polygon {
    /// Vertices in order; the last one connects back to the first.
    points: Vec<[f64; 2]>,
}

impl Polygon {
    /// A polygon from its vertices, or a message saying what is wrong.
    pub fn new(points: &[[f64; 2]]) -> Result<Polygon, String> {
        if points.len() < 3 {
            return Err(format!(
                "a zone needs at least 3 points [x, y], got {}",
                points.len()
            ));
        }
        if let Some(bad) = points
            .iter()
            .position(|p| !(p[0].is_finite() && p[1].is_finite()))
        {
            return Err(format!("zone point {bad} is not finite: {:?}", points[bad]));
        }
        let polygon = Polygon {
            points: points.to_vec(),
        };
        if polygon.is_collinear() {
            return Err("zone has no area (all points on one line)".to_owned());
        }
        Ok(polygon)
    }

    /// The vertices, in order.
    pub fn points(&self) -> &[[f64; 2]] {
        &self.points
    }

    /// Absolute net area (shoelace formula), square pixels. The lobes of a
    /// self-intersecting polygon that turn opposite ways cancel out.
    pub fn area(&self) -> f64 {
        let twice: f64 = self.edges().map(|(a, b)| a[0] * b[1] - b[0] * a[1]).sum();
        (twice / 2.0).abs()
    }

    /// Whether every vertex lies on one line (or one point).
    fn is_collinear(&self) -> bool {
        let [first, rest @ ..] = self.points.as_slice() else {
            return true;
        };
        let Some(other) = rest.iter().find(|p| *p != first) else {
            return true;
        };
        rest.iter().all(|p| {
            (other[0] - first[0]) * (p[1] - first[1]) - (other[1] - first[1]) * (p[0] - first[0])
                == 0.0
        })
    }

    /// Whether the point lies inside the polygon or on its boundary
    /// (even-odd rule). Non-finite points are never inside.
    pub fn contains(&self, x: f64, y: f64) -> bool {
        if !(x.is_finite() && y.is_finite()) {
            return false;
        }
        let mut inside = false;
        for (a, b) in self.edges() {
            if on_segment(a, b, x, y) {
                return true;
            }
            // Half-open in y, so a ray through a vertex counts it once.
            if (a[1] > y) != (b[1] > y) {
                let cross_x = a[0] + (y - a[1]) / (b[1] - a[1]) * (b[0] - a[0]);
                if x < cross_x {
                    inside = !inside;
                }
            }
        }
        inside
    }

    /// Edges as pairs of consecutive vertices, closing back to the first.
    fn edges(&self) -> impl Iterator<Item = ([f64; 2], [f64; 2])> + '_ {
        let next = self.points.iter().cycle().skip(1);
        self.points.iter().copied().zip(next.copied())
    }
}

/// Whether `(x, y)` lies on the segment `a`–`b` (exactly: collinear and
/// within its bounding box).
fn on_segment(a: [f64; 2], b: [f64; 2], x: f64, y: f64) -> bool {
    let cross = (b[0] - a[0]) * (y - a[1]) - (b[1] - a[1]) * (x - a[0]);
    cross == 0.0
        && x >= a[0].min(b[0])
        && x <= a[0].max(b[0])
        && y >= a[1].min(b[1])
        && y <= a[1].max(b[1])
}

/// A daily time window in UTC, `"HH:MM-HH:MM"`: from the start (included)
/// to the end (excluded). A window whose end is before its start wraps
/// midnight (`"22:00-06:00"`); `"24:00"` is allowed as an end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DailyWindow {
    /// Start, microseconds after midnight UTC.
    start_us: i64,
    /// End, microseconds after midnight UTC (up to a whole day).
    end_us: i64,
}

impl DailyWindow {
    /// Whether the instant (µs since the Unix epoch) falls in the window.
    pub fn contains(&self, ts_us: i64) -> bool {
        let of_day = ts_us.rem_euclid(DAY_US);
        if self.start_us < self.end_us {
            self.start_us <= of_day && of_day < self.end_us
        } else {
            of_day >= self.start_us || of_day < self.end_us
        }
    }

    /// The first end of the window strictly after `ts_us` (saturating).
    pub fn end_after(&self, ts_us: i64) -> i64 {
        let midnight = ts_us.saturating_sub(ts_us.rem_euclid(DAY_US));
        let end = midnight.saturating_add(self.end_us);
        if end > ts_us {
            end
        } else {
            end.saturating_add(DAY_US)
        }
    }
}

impl FromStr for DailyWindow {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let bad = || {
            format!("window must be \"HH:MM-HH:MM\" in UTC (e.g. \"22:00-06:00\"), got {text:?}")
        };
        let (start, end) = text.split_once('-').ok_or_else(bad)?;
        let start = minutes_of_day(start.trim(), false).ok_or_else(bad)?;
        let end = minutes_of_day(end.trim(), true).ok_or_else(bad)?;
        if start == end || (start == 0 && end == 24 * 60) {
            return Err(format!(
                "window {text:?} covers the whole day or none of it; leave `window` out to always apply"
            ));
        }
        Ok(DailyWindow {
            start_us: start * 60_000_000,
            end_us: end * 60_000_000,
        })
    }
}

impl fmt::Display for DailyWindow {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let hm = |us: i64| (us / 3_600_000_000, us / 60_000_000 % 60);
        let (sh, sm) = hm(self.start_us);
        let (eh, em) = hm(self.end_us);
        write!(f, "{sh:02}:{sm:02}-{eh:02}:{em:02}")
    }
}

/// Minutes after midnight of a strict `HH:MM`; `24:00` only as an end.
fn minutes_of_day(text: &str, is_end: bool) -> Option<i64> {
    let (h, m) = text.split_once(':')?;
    let two_digits = |s: &str| {
        (s.len() == 2 && s.bytes().all(|b| b.is_ascii_digit()))
            .then(|| s.parse::<i64>().ok())
            .flatten()
    };
    let (h, m) = (two_digits(h)?, two_digits(m)?);
    match (h, m) {
        (24, 0) if is_end => Some(24 * 60),
        (0..=23, 0..=59) => Some(h * 60 + m),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 2024-01-01T00:00:00Z.
    const MIDNIGHT: i64 = 1_704_067_200_000_000;
    const H: i64 = 3_600_000_000;
    const M: i64 = 60_000_000;

    fn polygon(points: &[[f64; 2]]) -> Polygon {
        Polygon::new(points).unwrap()
    }

    #[test]
    fn square_contains_inside_and_boundary_not_outside() {
        let square = polygon(&[[0.0, 0.0], [10.0, 0.0], [10.0, 10.0], [0.0, 10.0]]);
        assert_eq!(square.area(), 100.0);
        assert!(square.contains(5.0, 5.0));
        assert!(square.contains(0.0, 5.0), "left edge");
        assert!(square.contains(10.0, 10.0), "corner");
        assert!(square.contains(5.0, 0.0), "top edge");
        assert!(!square.contains(10.000_001, 5.0));
        assert!(
            !square.contains(-1.0, 10.0),
            "on the line of an edge, outside it"
        );
        assert!(!square.contains(f64::NAN, 5.0));
        assert!(!square.contains(f64::INFINITY, 5.0));
    }

    #[test]
    fn concave_polygon_excludes_its_notch() {
        // A "U": two legs joined at the bottom, the notch between them open
        // at the top (image y grows downwards, but the rule does not care).
        let u = polygon(&[
            [0.0, 0.0],
            [3.0, 0.0],
            [3.0, 7.0],
            [7.0, 7.0],
            [7.0, 0.0],
            [10.0, 0.0],
            [10.0, 10.0],
            [0.0, 10.0],
        ]);
        assert!(u.contains(1.5, 3.0), "left leg");
        assert!(u.contains(8.5, 3.0), "right leg");
        assert!(u.contains(5.0, 8.5), "base");
        assert!(!u.contains(5.0, 3.0), "notch");
        assert!(u.contains(5.0, 7.0), "bottom of the notch is boundary");
        // A ray from the notch's height crossing both legs' vertices.
        assert!(!u.contains(-1.0, 0.0));
        assert!(u.contains(3.0, 3.0), "notch wall");
        assert!(!u.contains(5.0, 0.0), "mouth of the notch");
    }

    #[test]
    fn self_intersecting_polygon_uses_even_odd() {
        // A bow tie: the two triangles are inside, above and below the
        // crossing point are not.
        let bow = polygon(&[[0.0, 0.0], [10.0, 10.0], [10.0, 0.0], [0.0, 10.0]]);
        assert!(bow.contains(2.0, 5.0));
        assert!(bow.contains(8.0, 5.0));
        assert!(!bow.contains(5.0, 2.0));
        assert!(bow.contains(5.0, 5.0), "the crossing lies on both edges");
        assert_eq!(bow.area(), 0.0, "its lobes cancel, yet it is a zone");
    }

    #[test]
    fn bad_polygons_are_refused() {
        assert!(
            Polygon::new(&[[0.0, 0.0], [1.0, 1.0]])
                .unwrap_err()
                .contains("at least 3")
        );
        assert!(Polygon::new(&[]).is_err());
        let line = Polygon::new(&[[0.0, 0.0], [1.0, 1.0], [2.0, 2.0]]);
        assert!(line.unwrap_err().contains("no area"));
        let point = Polygon::new(&[[1.0, 1.0], [1.0, 1.0], [1.0, 1.0]]);
        assert!(point.unwrap_err().contains("no area"));
        let nan = Polygon::new(&[[0.0, 0.0], [1.0, f64::NAN], [2.0, 0.0]]);
        assert!(nan.unwrap_err().contains("point 1"));
    }

    #[test]
    fn windows_parse_strictly() {
        let w: DailyWindow = "08:30-17:00".parse().unwrap();
        assert_eq!(w.to_string(), "08:30-17:00");
        assert_eq!(
            "22:00-24:00".parse::<DailyWindow>().unwrap().to_string(),
            "22:00-24:00"
        );
        assert_eq!(
            " 22:00 - 06:00 "
                .parse::<DailyWindow>()
                .unwrap()
                .to_string(),
            "22:00-06:00"
        );
        for bad in [
            "",
            "8:00-17:00",
            "08:00",
            "08:00-",
            "25:00-06:00",
            "08:60-09:00",
            "24:00-06:00",
            "08:00-17:00-18:00",
            "ab:cd-ef:gh",
            "+8:00-17:00",
            "08:00-08:00",
            "00:00-24:00",
        ] {
            assert!(
                bad.parse::<DailyWindow>().is_err(),
                "{bad:?} must be refused"
            );
        }
    }

    #[test]
    fn window_contains_its_start_not_its_end() {
        let w: DailyWindow = "08:00-17:00".parse().unwrap();
        assert!(!w.contains(MIDNIGHT + 8 * H - 1));
        assert!(w.contains(MIDNIGHT + 8 * H));
        assert!(w.contains(MIDNIGHT + 17 * H - 1));
        assert!(!w.contains(MIDNIGHT + 17 * H));
        assert!(
            w.contains(MIDNIGHT + 9 * H - 5 * 24 * H),
            "any day, also before"
        );
        assert!(w.contains(9 * H - 3 * 24 * H), "negative instants too");
    }

    #[test]
    fn window_wrapping_midnight() {
        let w: DailyWindow = "22:00-06:00".parse().unwrap();
        assert!(w.contains(MIDNIGHT + 23 * H));
        assert!(w.contains(MIDNIGHT), "midnight itself");
        assert!(w.contains(MIDNIGHT + 5 * H + 59 * M));
        assert!(!w.contains(MIDNIGHT + 6 * H));
        assert!(!w.contains(MIDNIGHT + 12 * H));
        assert!(w.contains(MIDNIGHT + 22 * H));
        assert_eq!(w.end_after(MIDNIGHT + 23 * H), MIDNIGHT + 30 * H);
        assert_eq!(w.end_after(MIDNIGHT + 3 * H), MIDNIGHT + 6 * H);
        assert_eq!(
            w.end_after(MIDNIGHT + 6 * H),
            MIDNIGHT + 30 * H,
            "strictly after"
        );
        let day: DailyWindow = "08:00-17:00".parse().unwrap();
        assert_eq!(day.end_after(MIDNIGHT + 9 * H), MIDNIGHT + 17 * H);
        assert_eq!(day.end_after(i64::MAX), i64::MAX, "saturates");
        let late: DailyWindow = "22:00-24:00".parse().unwrap();
        assert!(late.contains(MIDNIGHT + 24 * H - 1) && !late.contains(MIDNIGHT + 24 * H));
    }
}
