//! Frame to tensor resampling: letterboxing for the detector and crop
//! resizing for the embedder, both bilinear, written straight into a
//! caller-owned `[3, H, W]` tensor view (no intermediate image: one blended
//! source row at a time, in a [`Resampler`]'s reusable buffers).

use ndarray::{ArrayView1, ArrayViewMut3, Zip, s};

use crate::bbox::BBox;

/// A packed RGB24 frame borrowed from the decoder.
#[derive(Debug, Clone, Copy)]
pub struct RgbFrame<'a> {
    /// Pixel bytes, row after row.
    pub data: &'a [u8],
    /// Width in pixels.
    pub width: usize,
    /// Height in pixels.
    pub height: usize,
    /// Bytes from one row to the next (at least `3 * width`).
    pub stride: usize,
}

/// A frame whose buffer does not match its declared geometry.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("frame {width}x{height} (stride {stride}) needs {needed} bytes, buffer has {len}")]
pub struct FrameError {
    width: usize,
    height: usize,
    stride: usize,
    needed: usize,
    len: usize,
}

impl<'a> RgbFrame<'a> {
    /// Checks that `data` holds the whole frame.
    pub fn new(
        data: &'a [u8],
        width: usize,
        height: usize,
        stride: usize,
    ) -> Result<Self, FrameError> {
        let needed = if width == 0 || height == 0 {
            0
        } else {
            stride * (height - 1) + 3 * width
        };
        if width == 0 || height == 0 || stride < 3 * width || data.len() < needed {
            return Err(FrameError {
                width,
                height,
                stride,
                needed,
                len: data.len(),
            });
        }
        Ok(RgbFrame {
            data,
            width,
            height,
            stride,
        })
    }
}

/// The geometry of a letterbox: source pixels map to `source * scale + pad`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Letterbox {
    /// Uniform scale from source to network pixels.
    pub scale: f32,
    /// Horizontal padding in network pixels.
    pub pad_x: f32,
    /// Vertical padding in network pixels.
    pub pad_y: f32,
}

impl Letterbox {
    /// Fits a `src_w x src_h` frame into `dst_w x dst_h`, keeping the aspect ratio, centred.
    pub fn fit(src_w: usize, src_h: usize, dst_w: usize, dst_h: usize) -> Self {
        let scale = (dst_w as f32 / src_w.max(1) as f32).min(dst_h as f32 / src_h.max(1) as f32);
        // `src * scale` can land a hair above `dst` (720 x f32(416 / 720) =
        // 416.00003): the padding is then 0, not -1.
        let pad_x = ((dst_w as f32 - src_w as f32 * scale) / 2.0)
            .floor()
            .max(0.0);
        let pad_y = ((dst_h as f32 - src_h as f32 * scale) / 2.0)
            .floor()
            .max(0.0);
        Letterbox {
            scale,
            pad_x,
            pad_y,
        }
    }

    /// Maps a box from network pixels back to source pixels.
    pub fn to_source(&self, b: BBox) -> BBox {
        BBox {
            x: (b.x - self.pad_x) / self.scale,
            y: (b.y - self.pad_y) / self.scale,
            w: b.w / self.scale,
            h: b.h / self.scale,
        }
    }
}

/// Grey used by darknet for letterbox padding.
pub const PAD_VALUE: f32 = 0.5;

/// Letterboxes `frame` into `dst` (`[3, H, W]`, RGB in [0, 1], padding
/// [`PAD_VALUE`]) and returns the geometry for mapping boxes back. A frame
/// that does not hold the rows it declares (built by hand past
/// [`RgbFrame::new`]) is not read: `dst` is all padding. Allocates
/// its working rows each call: a [`Resampler`] reuses them.
pub fn letterbox_into(frame: &RgbFrame<'_>, dst: ArrayViewMut3<'_, f32>) -> Letterbox {
    Resampler::default().letterbox(frame, dst)
}

/// Resizes the `region` of `frame` to fill `dst` (`[3, H, W]`), normalising
/// each channel as `(v / 255 - mean) / std` (ImageNet-style). The region is
/// clipped to the frame; an empty region, or a frame that does not hold the
/// rows it declares, fills `dst` with the normalised zero.
/// Allocates its working rows each call: a [`Resampler`] reuses them.
pub fn crop_resize_into(
    frame: &RgbFrame<'_>,
    region: BBox,
    dst: ArrayViewMut3<'_, f32>,
    mean: [f32; 3],
    std: [f32; 3],
) {
    Resampler::default().crop_resize(frame, region, dst, mean, std);
}

/// Bilinear resampling with pixel-centre alignment, in two passes per target
/// row: the two source rows it falls between are blended into one row of
/// floats (contiguous, so the compiler vectorises it), then each target
/// pixel blends two neighbours of that row at its precomputed column. The
/// buffers grow to the largest frame and target seen, then are reused: no
/// allocation per frame.
#[derive(Debug, Default, Clone)]
pub struct Resampler {
    /// The blended source row: 3 floats per pixel of the columns in use.
    row: Vec<f32>,
    /// Per target column, where its two neighbours are in `row`.
    columns: Vec<Column>,
}

/// The two neighbours of a target column: offsets into the blended row (of
/// their red value) and the weight of the right one.
#[derive(Debug, Clone, Copy)]
struct Column {
    left: usize,
    right: usize,
    weight: f32,
}

/// The rectangle of the destination tensor that receives the resampled region.
struct Target {
    x: usize,
    y: usize,
    w: usize,
    h: usize,
}

/// Per-channel `value * scale + offset` applied to resampled 0..=255 values.
struct Affine {
    scale: [f32; 3],
    offset: [f32; 3],
}

impl Resampler {
    /// [`letterbox_into`] with this resampler's buffers.
    pub fn letterbox(
        &mut self,
        frame: &RgbFrame<'_>,
        mut dst: ArrayViewMut3<'_, f32>,
    ) -> Letterbox {
        let (_, dst_h, dst_w) = dst.dim();
        let lb = Letterbox::fit(frame.width, frame.height, dst_w, dst_h);
        let inner_w =
            ((frame.width as f32 * lb.scale).round() as usize).min(dst_w - lb.pad_x as usize);
        let inner_h =
            ((frame.height as f32 * lb.scale).round() as usize).min(dst_h - lb.pad_y as usize);
        let source = BBox {
            x: 0.0,
            y: 0.0,
            w: frame.width as f32,
            h: frame.height as f32,
        };
        let target = Target {
            x: lb.pad_x as usize,
            y: lb.pad_y as usize,
            w: inner_w,
            h: inner_h,
        };
        let map = Affine {
            scale: [1.0 / 255.0; 3],
            offset: [0.0; 3],
        };
        // Only the padding is filled: the inside is overwritten anyway.
        let (x, y) = (target.x, target.y);
        let (xs, ys) = (x..x + target.w, y..y + target.h);
        dst.slice_mut(s![.., ..y, ..]).fill(PAD_VALUE);
        dst.slice_mut(s![.., y + target.h.., ..]).fill(PAD_VALUE);
        dst.slice_mut(s![.., ys.clone(), ..x]).fill(PAD_VALUE);
        dst.slice_mut(s![.., ys.clone(), x + target.w..])
            .fill(PAD_VALUE);
        if !self.resample(frame, source, &mut dst, target, &map) {
            dst.slice_mut(s![.., ys, xs]).fill(PAD_VALUE);
        }
        lb
    }

    /// [`crop_resize_into`] with this resampler's buffers.
    pub fn crop_resize(
        &mut self,
        frame: &RgbFrame<'_>,
        region: BBox,
        mut dst: ArrayViewMut3<'_, f32>,
        mean: [f32; 3],
        std: [f32; 3],
    ) {
        let (_, dst_h, dst_w) = dst.dim();
        let blank = |dst: &mut ArrayViewMut3<'_, f32>| {
            for c in 0..3 {
                dst.index_axis_mut(ndarray::Axis(0), c)
                    .fill(-mean[c] / std[c]);
            }
        };
        let Some(region) = region.clip(frame.width as f32, frame.height as f32) else {
            blank(&mut dst);
            return;
        };
        let target = Target {
            x: 0,
            y: 0,
            w: dst_w,
            h: dst_h,
        };
        let map = Affine {
            scale: std.map(|s| 1.0 / (255.0 * s)),
            offset: [0, 1, 2].map(|c| -mean[c] / std[c]),
        };
        if !self.resample(frame, region, &mut dst, target, &map) {
            blank(&mut dst);
        }
    }

    /// Resamples `source` (frame pixels) into `target` of `dst`; false (and
    /// `dst` untouched) for a frame that does not hold its rows.
    fn resample(
        &mut self,
        frame: &RgbFrame<'_>,
        source: BBox,
        dst: &mut ArrayViewMut3<'_, f32>,
        target: Target,
        map: &Affine,
    ) -> bool {
        // `RgbFrame`'s fields are public: a frame built by hand may not hold
        // the rows it claims, and is then left out rather than read past.
        if RgbFrame::new(frame.data, frame.width, frame.height, frame.stride).is_err() {
            return false;
        }
        if target.w == 0 || target.h == 0 {
            return true;
        }
        let sx = source.w / target.w as f32;
        let sy = source.h / target.h as f32;
        let max_x = (frame.width - 1) as f32;
        let max_y = (frame.height - 1) as f32;
        // Columns only move right, so the first column's left neighbour and
        // the last one's right neighbour bound the source pixels in use.
        let neighbours = |tx: usize| {
            let fx = (source.x + (tx as f32 + 0.5) * sx - 0.5).clamp(0.0, max_x);
            let x0 = fx as usize;
            (x0, (x0 + 1).min(frame.width - 1), fx - x0 as f32)
        };
        let first = neighbours(0).0;
        let last = neighbours(target.w - 1).1;
        self.columns.clear();
        self.columns.extend((0..target.w).map(|tx| {
            let (x0, x1, weight) = neighbours(tx);
            Column {
                left: 3 * (x0 - first),
                right: 3 * (x1 - first),
                weight,
            }
        }));
        let span = 3 * first..3 * (last + 1);
        self.row.resize(span.len(), 0.0);
        // Checked above: every row is inside `data`.
        let source_row = |y: usize| &frame.data[y * frame.stride..][span.clone()];
        for ty in 0..target.h {
            let fy = (source.y + (ty as f32 + 0.5) * sy - 0.5).clamp(0.0, max_y);
            let y0 = fy as usize;
            let y1 = (y0 + 1).min(frame.height - 1);
            let wy = fy - y0 as f32;
            for ((blended, &top), &bottom) in
                self.row.iter_mut().zip(source_row(y0)).zip(source_row(y1))
            {
                *blended = f32::from(top) * (1.0 - wy) + f32::from(bottom) * wy;
            }
            let (y, x) = (target.y + ty, target.x..target.x + target.w);
            let (red, green, blue) =
                dst.multi_slice_mut((s![0, y, x.clone()], s![1, y, x.clone()], s![2, y, x]));
            let row = &self.row;
            Zip::from(red)
                .and(green)
                .and(blue)
                .and(ArrayView1::from(&self.columns[..]))
                .for_each(|red, green, blue, column| {
                    let left = &row[column.left..column.left + 3];
                    let right = &row[column.right..column.right + 3];
                    let (wl, wr) = (1.0 - column.weight, column.weight);
                    *red = (left[0] * wl + right[0] * wr) * map.scale[0] + map.offset[0];
                    *green = (left[1] * wl + right[1] * wr) * map.scale[1] + map.offset[1];
                    *blue = (left[2] * wl + right[2] * wr) * map.scale[2] + map.offset[2];
                });
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use ndarray::Array3;

    use super::*;

    #[test]
    fn wide_frame_is_padded_top_and_bottom_and_boxes_map_back() {
        // 8x4 frame into 8x8: scale 1, 2 rows of padding above and below.
        let data: Vec<u8> = (0..8 * 4).flat_map(|i| [i as u8 * 4, 100, 200]).collect();
        let frame = RgbFrame::new(&data, 8, 4, 24).unwrap();
        let mut t = Array3::<f32>::zeros((3, 8, 8));
        let lb = letterbox_into(&frame, t.view_mut());
        assert_eq!(
            lb,
            Letterbox {
                scale: 1.0,
                pad_x: 0.0,
                pad_y: 2.0
            }
        );
        assert_eq!(t[[0, 0, 0]], PAD_VALUE);
        assert_eq!(t[[1, 7, 7]], PAD_VALUE);
        assert!(
            (t[[0, 2, 3]] - 12.0 / 255.0).abs() < 1e-6,
            "pixel (3,0) red = 3*4"
        );
        assert!((t[[2, 5, 7]] - 200.0 / 255.0).abs() < 1e-6);
        let back = lb.to_source(BBox {
            x: 2.0,
            y: 3.0,
            w: 4.0,
            h: 2.0,
        });
        assert_eq!(
            back,
            BBox {
                x: 2.0,
                y: 1.0,
                w: 4.0,
                h: 2.0
            }
        );
    }

    #[test]
    fn downscale_averages_neighbours() {
        // 4x2 frame of alternating columns 0 / 200 halved to 2x1: bilinear at centres gives 100.
        let data: Vec<u8> = (0..8)
            .flat_map(|i| {
                if i % 2 == 0 {
                    [0, 0, 0]
                } else {
                    [200, 200, 200]
                }
            })
            .collect();
        let frame = RgbFrame::new(&data, 4, 2, 12).unwrap();
        let mut t = Array3::<f32>::zeros((3, 1, 2));
        crop_resize_into(
            &frame,
            BBox {
                x: 0.0,
                y: 0.0,
                w: 4.0,
                h: 2.0,
            },
            t.view_mut(),
            [0.0; 3],
            [1.0; 3],
        );
        assert!(
            (t[[0, 0, 0]] - 100.0 / 255.0).abs() < 1e-5,
            "{}",
            t[[0, 0, 0]]
        );
    }

    /// The straightforward per-pixel bilinear sample of channel `c` at
    /// target pixel (`tx`, `ty`), as [`resample`] defines it.
    fn bilinear(frame: &RgbFrame<'_>, source: BBox, size: (usize, usize), at: [usize; 3]) -> f32 {
        let [c, ty, tx] = at;
        let pixel = |x: usize, y: usize| f32::from(frame.data[y * frame.stride + x * 3 + c]);
        let fx = (source.x + (tx as f32 + 0.5) * (source.w / size.0 as f32) - 0.5)
            .clamp(0.0, (frame.width - 1) as f32);
        let fy = (source.y + (ty as f32 + 0.5) * (source.h / size.1 as f32) - 0.5)
            .clamp(0.0, (frame.height - 1) as f32);
        let (x0, y0) = (fx as usize, fy as usize);
        let (x1, y1) = (
            (x0 + 1).min(frame.width - 1),
            (y0 + 1).min(frame.height - 1),
        );
        let (wx, wy) = (fx - x0 as f32, fy - y0 as f32);
        let top = pixel(x0, y0) * (1.0 - wx) + pixel(x1, y0) * wx;
        let bottom = pixel(x0, y1) * (1.0 - wx) + pixel(x1, y1) * wx;
        top * (1.0 - wy) + bottom * wy
    }

    #[test]
    fn every_pixel_is_the_bilinear_sample_and_padding_is_grey() {
        // 37x23 pixels with 5 spare bytes per row, into a 20x16 tensor:
        // scale 20/37, 12 rows of picture between 1 and 3 rows of grey.
        let (w, h, stride) = (37, 23, 37 * 3 + 5);
        let data: Vec<u8> = (0..stride * h).map(|i| (i * 7919 % 251) as u8).collect();
        let frame = RgbFrame::new(&data, w, h, stride).unwrap();
        let mut t = Array3::<f32>::from_elem((3, 16, 20), f32::NAN);
        let lb = letterbox_into(&frame, t.view_mut());
        assert_eq!((lb.pad_x, lb.pad_y), (0.0, 1.0));
        let inner_h = (h as f32 * lb.scale).round() as usize;
        let whole = BBox {
            x: 0.0,
            y: 0.0,
            w: w as f32,
            h: h as f32,
        };
        for ((c, y, x), &v) in t.indexed_iter() {
            if y < 1 || y > inner_h {
                assert_eq!(v, PAD_VALUE, "[{c}, {y}, {x}]");
            } else {
                let want = bilinear(&frame, whole, (20, inner_h), [c, y - 1, x]) / 255.0;
                assert!((v - want).abs() < 1e-6, "[{c}, {y}, {x}]: {v} != {want}");
            }
        }

        // A crop with fractional edges, partly off the frame, into 8x16.
        let region = BBox {
            x: 30.25,
            y: -3.5,
            w: 12.0,
            h: 20.75,
        };
        let clipped = region.clip(w as f32, h as f32).unwrap();
        let mut t = Array3::<f32>::from_elem((3, 16, 8), f32::NAN);
        crop_resize_into(&frame, region, t.view_mut(), [0.5; 3], [0.25; 3]);
        for ((c, y, x), &v) in t.indexed_iter() {
            let want = (bilinear(&frame, clipped, (8, 16), [c, y, x]) / 255.0 - 0.5) / 0.25;
            assert!((v - want).abs() < 1e-5, "[{c}, {y}, {x}]: {v} != {want}");
        }

        // One resampler through a crop, a letterbox and the crop again gives
        // what fresh buffers give: nothing carries over from call to call.
        let mut resampler = Resampler::default();
        let mut reused = Array3::<f32>::zeros((3, 16, 8));
        resampler.crop_resize(&frame, region, reused.view_mut(), [0.5; 3], [0.25; 3]);
        assert_eq!(reused, t);
        let mut boxed = Array3::<f32>::zeros((3, 16, 20));
        resampler.letterbox(&frame, boxed.view_mut());
        let mut fresh = Array3::<f32>::zeros((3, 16, 20));
        letterbox_into(&frame, fresh.view_mut());
        assert_eq!(boxed, fresh);
        resampler.crop_resize(&frame, region, reused.view_mut(), [0.5; 3], [0.25; 3]);
        assert_eq!(reused, t);
    }

    #[test]
    fn single_pixel_rows_and_columns_and_upscaling_follow_the_formula() {
        // 1x5, 5x1 and 3x2 frames, each into a larger 7x9 crop (upscaling);
        // the last frame's buffer ends right after its last pixel, short of
        // a full stride.
        for (w, h, stride) in [(1, 5, 3), (5, 1, 15), (3, 2, 12)] {
            let data: Vec<u8> = (0..stride * (h - 1) + 3 * w)
                .map(|i| (i * 37 % 256) as u8)
                .collect();
            let frame = RgbFrame::new(&data, w, h, stride).unwrap();
            let whole = BBox {
                x: 0.0,
                y: 0.0,
                w: w as f32,
                h: h as f32,
            };
            let mut t = Array3::<f32>::from_elem((3, 9, 7), f32::NAN);
            crop_resize_into(&frame, whole, t.view_mut(), [0.0; 3], [1.0; 3]);
            for ((c, y, x), &v) in t.indexed_iter() {
                let want = bilinear(&frame, whole, (7, 9), [c, y, x]) / 255.0;
                assert!(
                    (v - want).abs() < 1e-6,
                    "{w}x{h} [{c}, {y}, {x}]: {v} != {want}"
                );
            }
        }
    }

    #[test]
    fn a_frame_that_does_not_hold_its_rows_is_left_out() {
        // Built by hand past `RgbFrame::new`: 4x2 declared (so the letterbox
        // has padding too), one row held.
        let data = [7u8; 12];
        let frame = RgbFrame {
            data: &data,
            width: 4,
            height: 2,
            stride: 12,
        };
        // Whatever the tensors held before is overwritten: grey for the
        // detector, the normalised zero for the embedder.
        let mut t = Array3::<f32>::from_elem((3, 8, 8), f32::NAN);
        letterbox_into(&frame, t.view_mut());
        assert!(t.iter().all(|&v| v == PAD_VALUE));
        let whole = BBox {
            x: 0.0,
            y: 0.0,
            w: 4.0,
            h: 2.0,
        };
        let mut t = Array3::<f32>::from_elem((3, 4, 2), f32::NAN);
        crop_resize_into(&frame, whole, t.view_mut(), [0.5; 3], [0.25; 3]);
        assert!(t.iter().all(|&v| v == -2.0), "{t:?}");
    }

    #[test]
    fn a_reused_tensor_keeps_nothing_of_the_previous_frame() {
        // Only the padding is filled before resampling: a tall frame's
        // picture must not show through a wide frame's padding, nor the
        // other way round.
        let tall: Vec<u8> = (0..6 * 20 * 3).map(|i| (i % 200) as u8).collect();
        let tall = RgbFrame::new(&tall, 6, 20, 18).unwrap();
        let wide: Vec<u8> = (0..20 * 6 * 3).map(|i| (i % 150 + 50) as u8).collect();
        let wide = RgbFrame::new(&wide, 20, 6, 60).unwrap();
        let mut resampler = Resampler::default();
        let mut reused = Array3::<f32>::from_elem((3, 10, 10), f32::NAN);
        for (frame, other) in [(&tall, &wide), (&wide, &tall), (&tall, &wide)] {
            resampler.letterbox(other, reused.view_mut());
            resampler.letterbox(frame, reused.view_mut());
            let mut fresh = Array3::<f32>::zeros((3, 10, 10));
            letterbox_into(frame, fresh.view_mut());
            assert_eq!(reused, fresh, "{}x{}", frame.width, frame.height);
        }
    }

    #[test]
    fn pal_frames_are_letterboxed_without_negative_padding() {
        // 720 x f32(416 / 720) rounds to just over 416.
        for (w, h) in [(720, 576), (720, 480), (1440, 1080)] {
            let lb = Letterbox::fit(w, h, 416, 416);
            assert_eq!(lb.pad_x, 0.0, "{w}x{h}");
            assert!(lb.pad_y > 0.0, "{w}x{h}");
            let back = lb.to_source(BBox {
                x: 0.0,
                y: lb.pad_y,
                w: 416.0,
                h: 10.0,
            });
            assert!(back.x.abs() < 1e-3, "{w}x{h}: left edge maps to {}", back.x);
        }
    }

    #[test]
    fn short_buffers_and_empty_crops_are_handled() {
        assert!(RgbFrame::new(&[0; 10], 4, 2, 12).is_err());
        let data = [255u8; 12];
        let frame = RgbFrame::new(&data, 2, 2, 6).unwrap();
        let mut t = Array3::<f32>::zeros((3, 2, 2));
        crop_resize_into(
            &frame,
            BBox {
                x: 50.0,
                y: 50.0,
                w: 4.0,
                h: 4.0,
            },
            t.view_mut(),
            [0.5; 3],
            [0.25; 3],
        );
        assert!(t.iter().all(|&v| (v + 2.0).abs() < 1e-6));
    }
}
