//! Blurring the face region of a person crop before it leaves the edge.
//!
//! A person box holds the head in its top part, so the top `fraction` of a
//! crop's rows is box-blurred: `passes` separable passes of a box filter of
//! `2 * radius + 1` pixels (three passes approach a Gaussian), each pixel
//! averaged with its neighbours inside the blurred band only (edges
//! clamped), so the body below neither bleeds into it nor changes.

/// Passes of the box filter.
pub const PASSES: usize = 3;

/// The largest radius applied (larger ones are cut to it): window sums stay
/// far from overflowing and the work per pixel bounded.
pub const MAX_RADIUS: usize = 1024;

/// Blurs the top `fraction` (clamped to `[0, 1]`; NaN counts as 0) of the
/// rows of a packed RGB24 image (`width * height * 3` bytes, rows
/// contiguous) in place with a box filter of `radius` pixels (at most
/// [`MAX_RADIUS`]). A radius of 0,
/// an empty band or a buffer shorter than the image leaves it unchanged.
pub fn blur_top(rgb: &mut [u8], width: usize, height: usize, fraction: f32, radius: usize) {
    let fraction = if fraction.is_nan() {
        0.0
    } else {
        fraction.clamp(0.0, 1.0)
    };
    let rows = ((height as f32 * fraction).ceil() as usize).min(height);
    let radius = radius.min(MAX_RADIUS);
    if radius == 0 || rows == 0 || width == 0 || rgb.len() < width * height * 3 {
        return;
    }
    let band = &mut rgb[..rows * width * 3];
    let mut line = Vec::with_capacity(width.max(rows));
    for _ in 0..PASSES {
        for y in 0..rows {
            for c in 0..3 {
                line.clear();
                line.extend((0..width).map(|x| band[(y * width + x) * 3 + c]));
                box_filter(&line, radius, |x, v| band[(y * width + x) * 3 + c] = v);
            }
        }
        for x in 0..width {
            for c in 0..3 {
                line.clear();
                line.extend((0..rows).map(|y| band[(y * width + x) * 3 + c]));
                box_filter(&line, radius, |y, v| band[(y * width + x) * 3 + c] = v);
            }
        }
    }
}

/// The mean of each value's window of `2 * radius + 1` values (indices
/// clamped to the line), rounded, passed to `out` with its index.
fn box_filter(line: &[u8], radius: usize, mut out: impl FnMut(usize, u8)) {
    let n = line.len();
    if n == 0 {
        return;
    }
    let at = |i: isize| u32::from(line[i.clamp(0, n as isize - 1) as usize]);
    let r = radius as isize;
    let window = 2 * radius as u32 + 1;
    let mut sum: u32 = (-r..=r).map(at).sum();
    for i in 0..n as isize {
        out(i as usize, ((sum + window / 2) / window) as u8);
        sum = sum + at(i + r + 1) - at(i - r);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A checkerboard of 2-pixel squares, black and white.
    fn checkerboard(width: usize, height: usize) -> Vec<u8> {
        let mut rgb = Vec::with_capacity(width * height * 3);
        for y in 0..height {
            for x in 0..width {
                let v = if (x / 2 + y / 2) % 2 == 0 { 0 } else { 255 };
                rgb.extend([v, v, v]);
            }
        }
        rgb
    }

    /// Mean absolute difference between horizontal neighbours in rows `ys`.
    fn detail(rgb: &[u8], width: usize, ys: std::ops::Range<usize>) -> f64 {
        let mut total = 0.0;
        let mut count = 0.0;
        for y in ys {
            for x in 1..width {
                let a = f64::from(rgb[(y * width + x) * 3]);
                let b = f64::from(rgb[(y * width + x - 1) * 3]);
                total += (a - b).abs();
                count += 1.0;
            }
        }
        total / count
    }

    #[test]
    fn the_top_band_loses_its_detail_and_the_rest_is_untouched() {
        let (w, h) = (32, 64);
        let original = checkerboard(w, h);
        let mut rgb = original.clone();
        blur_top(&mut rgb, w, h, 0.25, 3);
        // 16 rows blurred: a 2-pixel checkerboard averages to grey.
        assert!(detail(&original, w, 0..16) > 100.0);
        assert!(detail(&rgb, w, 0..16) < 10.0, "{}", detail(&rgb, w, 0..16));
        assert!(rgb[..16 * w * 3].iter().all(|&v| (96..=160).contains(&v)));
        assert_eq!(rgb[16 * w * 3..], original[16 * w * 3..]);
    }

    #[test]
    fn a_flat_image_stays_flat() {
        let mut rgb = vec![77u8; 10 * 10 * 3];
        blur_top(&mut rgb, 10, 10, 1.0, 4);
        assert!(rgb.iter().all(|&v| v == 77));
    }

    #[test]
    fn nothing_changes_without_a_band_or_a_radius_or_with_a_short_buffer() {
        let original = checkerboard(8, 8);
        for (fraction, radius) in [(0.0, 3), (f32::NAN, 3), (-1.0, 3), (0.5, 0)] {
            let mut rgb = original.clone();
            blur_top(&mut rgb, 8, 8, fraction, radius);
            assert_eq!(rgb, original, "fraction {fraction}, radius {radius}");
        }
        let mut short = original[..10].to_vec();
        blur_top(&mut short, 8, 8, 1.0, 2);
        assert_eq!(short, original[..10]);
        blur_top(&mut [], 0, 0, 1.0, 2);
    }

    #[test]
    fn a_fraction_above_one_blurs_the_whole_image_and_radius_may_exceed_it() {
        let (w, h) = (6, 4);
        let mut rgb = checkerboard(w, h);
        blur_top(&mut rgb, w, h, 5.0, 50);
        assert!(detail(&rgb, w, 0..h) < 10.0);
        let mut rgb = checkerboard(w, h);
        blur_top(&mut rgb, w, h, 1.0, usize::MAX);
        assert!(detail(&rgb, w, 0..h) < 10.0);
    }

    #[test]
    fn the_box_filter_averages_its_window_with_clamped_edges() {
        let mut out = vec![0u8; 5];
        box_filter(&[0, 0, 30, 0, 0], 1, |i, v| out[i] = v);
        assert_eq!(out, [0, 10, 10, 10, 0]);
        box_filter(&[90, 0, 0], 1, |i, v| out[i] = v);
        // index 0: (90 + 90 + 0) / 3; index 1: (90 + 0 + 0) / 3; index 2: 0.
        assert_eq!(out[..3], [60, 30, 0]);
    }
}
