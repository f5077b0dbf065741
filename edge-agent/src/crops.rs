//! Optional JPEG crops of the people found (`[crops]`, off by default): the
//! box cut out of the frame, scaled down to at most `max_height_px`, the top
//! `face_blur` of it blurred ([`vision::privacy::blur_top`]), JPEG-encoded
//! and carried in `Detection.crop_jpeg`.

use image::ExtendedColorType;
use image::codecs::jpeg::JpegEncoder;
use ndarray::Array3;
use schemas::v1::Detection;
use vision::bbox::BBox;
use vision::letterbox::{RgbFrame, crop_resize_into};
use vision::privacy::blur_top;

use crate::config::CropsConfig;

/// A crop could not be made.
#[derive(Debug, thiserror::Error)]
pub enum CropError {
    /// The box lies outside the frame, is degenerate or under a pixel thick.
    #[error("the box is outside the frame")]
    Outside,
    /// The JPEG encoder failed.
    #[error("JPEG encoding: {0}")]
    Encode(#[from] image::ImageError),
}

/// The size of the crop of a `w`x`h` region (both at least one pixel): at
/// most `max_height` tall, aspect kept, never wider than the region.
fn crop_size(w: f32, h: f32, max_height: usize) -> (usize, usize) {
    let height = (h.round() as usize).clamp(1, max_height.max(1));
    let width = ((w * height as f32 / h).round() as usize).clamp(1, w.ceil() as usize);
    (width, height)
}

/// The JPEG crop of `bbox` (frame pixels) in `frame`, face region blurred.
pub fn encode(
    frame: &RgbFrame<'_>,
    bbox: BBox,
    settings: &CropsConfig,
) -> Result<Vec<u8>, CropError> {
    // Under a pixel either way (a box grazing the frame's edge) is no crop.
    let region = bbox
        .clip(frame.width as f32, frame.height as f32)
        .filter(|r| r.w >= 1.0 && r.h >= 1.0)
        .ok_or(CropError::Outside)?;
    let (width, height) = crop_size(region.w, region.h, settings.max_height_px);
    // Bilinear resampling as for the embedder, with an identity
    // normalisation: (v / 255 - 0) / (1 / 255) = v.
    let mut planes = Array3::<f32>::zeros((3, height, width));
    crop_resize_into(frame, region, planes.view_mut(), [0.0; 3], [1.0 / 255.0; 3]);
    let mut rgb = Vec::with_capacity(width * height * 3);
    for y in 0..height {
        for x in 0..width {
            // Values are in [0, 255] up to rounding; `as u8` saturates.
            rgb.extend((0..3).map(|c| planes[[c, y, x]].round() as u8));
        }
    }
    blur_top(
        &mut rgb,
        width,
        height,
        settings.face_blur,
        settings.blur_radius_px,
    );
    let mut jpeg = Vec::with_capacity(width * height / 2);
    JpegEncoder::new_with_quality(&mut jpeg, settings.quality).encode(
        &rgb,
        width as u32,
        height as u32,
        ExtendedColorType::Rgb8,
    )?;
    Ok(jpeg)
}

/// Sets the crop of every detection of `frame`; a detection whose crop
/// cannot be made keeps none. Returns the number of crops and their bytes.
pub fn attach(
    frame: &RgbFrame<'_>,
    detections: &mut [Detection],
    settings: &CropsConfig,
) -> (u64, u64) {
    let (mut crops, mut bytes) = (0, 0);
    for detection in detections {
        let bbox = BBox {
            x: detection.x,
            y: detection.y,
            w: detection.width,
            h: detection.height,
        };
        if let Ok(jpeg) = encode(frame, bbox, settings) {
            crops += 1;
            bytes += jpeg.len() as u64;
            detection.crop_jpeg = jpeg;
        }
    }
    (crops, bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A 200x100 frame: a 2-pixel checkerboard in the box (40, 10, 40x80),
    /// flat grey elsewhere.
    fn frame_bytes() -> Vec<u8> {
        let (w, h) = (200, 100);
        let mut data = vec![128u8; w * h * 3];
        for y in 10..90 {
            for x in 40..80 {
                let v = if (x / 2 + y / 2) % 2 == 0 { 0 } else { 255 };
                data[(y * w + x) * 3..][..3].copy_from_slice(&[v, v, v]);
            }
        }
        data
    }

    /// Mean absolute difference between horizontal neighbours in rows `ys`
    /// of a decoded crop.
    fn detail(image: &image::RgbImage, ys: std::ops::Range<u32>) -> f64 {
        let mut total = 0.0;
        let mut count = 0.0;
        for y in ys {
            for x in 1..image.width() {
                let a = f64::from(image.get_pixel(x, y)[0]);
                let b = f64::from(image.get_pixel(x - 1, y)[0]);
                total += (a - b).abs();
                count += 1.0;
            }
        }
        total / count
    }

    fn settings(face_blur: f32) -> CropsConfig {
        CropsConfig {
            enabled: true,
            face_blur,
            ..CropsConfig::default()
        }
    }

    #[test]
    fn a_crop_is_the_box_as_a_jpeg_with_its_top_blurred() {
        let data = frame_bytes();
        let frame = RgbFrame::new(&data, 200, 100, 600).unwrap();
        let bbox = BBox {
            x: 40.0,
            y: 10.0,
            w: 40.0,
            h: 80.0,
        };
        let sharp = encode(&frame, bbox, &settings(0.0)).unwrap();
        let blurred = encode(&frame, bbox, &settings(0.3)).unwrap();
        let sharp = image::load_from_memory(&sharp).unwrap().to_rgb8();
        let blurred = image::load_from_memory(&blurred).unwrap().to_rgb8();
        assert_eq!(blurred.dimensions(), (40, 80));
        // The top 30 % (24 rows) lost its checkerboard; the rest kept it.
        assert!(detail(&sharp, 0..24) > 60.0, "{}", detail(&sharp, 0..24));
        assert!(
            detail(&blurred, 0..24) < 10.0,
            "{}",
            detail(&blurred, 0..24)
        );
        assert!(
            detail(&blurred, 30..80) > 60.0,
            "{}",
            detail(&blurred, 30..80)
        );
    }

    #[test]
    fn tall_boxes_are_scaled_down_and_boxes_off_the_frame_give_no_crop() {
        let data = frame_bytes();
        let frame = RgbFrame::new(&data, 200, 100, 600).unwrap();
        let small = CropsConfig {
            max_height_px: 40,
            ..settings(0.3)
        };
        let bbox = BBox {
            x: 40.0,
            y: 10.0,
            w: 40.0,
            h: 80.0,
        };
        let jpeg = encode(&frame, bbox, &small).unwrap();
        let image = image::load_from_memory(&jpeg).unwrap();
        assert_eq!((image.width(), image.height()), (20, 40));
        // Clipped to the frame: 190..200 x 0..100 is 10x100, scaled to 40 high.
        let edge = BBox {
            x: 190.0,
            y: -20.0,
            w: 30.0,
            h: 200.0,
        };
        let image = image::load_from_memory(&encode(&frame, edge, &small).unwrap()).unwrap();
        assert_eq!((image.width(), image.height()), (4, 40));
        let outside = BBox {
            x: 300.0,
            y: 10.0,
            w: 10.0,
            h: 10.0,
        };
        assert!(matches!(
            encode(&frame, outside, &small),
            Err(CropError::Outside)
        ));
        // A sliver along the bottom edge: too thin for a crop.
        let sliver = BBox {
            x: 0.0,
            y: 99.99,
            w: 200.0,
            h: 5.0,
        };
        assert!(matches!(
            encode(&frame, sliver, &small),
            Err(CropError::Outside)
        ));
        // A flat box is never scaled wider than itself.
        assert_eq!(crop_size(200.0, 1.0, 40), (200, 1));
        assert_eq!(crop_size(3.0, 300.0, 40), (1, 40));
    }

    #[test]
    fn attach_sets_a_crop_on_each_detection_it_can() {
        let data = frame_bytes();
        let frame = RgbFrame::new(&data, 200, 100, 600).unwrap();
        let mut detections = vec![
            Detection {
                x: 40.0,
                y: 10.0,
                width: 40.0,
                height: 80.0,
                ..Default::default()
            },
            Detection {
                x: 500.0,
                y: 10.0,
                width: 40.0,
                height: 80.0,
                ..Default::default()
            },
        ];
        let (crops, bytes) = attach(&frame, &mut detections, &settings(0.3));
        assert_eq!(crops, 1);
        assert_eq!(bytes, detections[0].crop_jpeg.len() as u64);
        assert_eq!(&detections[0].crop_jpeg[..2], &[0xFF, 0xD8], "a JPEG");
        assert!(detections[1].crop_jpeg.is_empty());
    }
}
