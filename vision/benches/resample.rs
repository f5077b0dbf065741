//! Preprocessing throughput of a reused `Resampler`, as the agent uses it:
//! letterboxing (a 768x576 frame, vtest.avi's size, into the detector's
//! 3x416x416 input) and crop resizing (five person-sized boxes into the
//! embedder's 3x128x64 input), single thread.
//!
//! `cargo bench -p vision --bench resample` prints milliseconds per call,
//! the median of 15 rounds of one second's worth of calls each. The frame is
//! a deterministic pattern: the work does not depend on the pixel values.

use std::hint::black_box;
use std::time::{Duration, Instant};

use ndarray::Array3;
use vision::bbox::BBox;
use vision::letterbox::{Resampler, RgbFrame};

const ROUNDS: usize = 15;
const ROUND_TIME: Duration = Duration::from_millis(1000);

/// Median milliseconds per call of `f` over [`ROUNDS`] rounds.
fn time(mut f: impl FnMut()) -> f64 {
    f(); // warm-up
    let mut per_call: Vec<f64> = (0..ROUNDS)
        .map(|_| {
            let started = Instant::now();
            let mut calls = 0u32;
            while started.elapsed() < ROUND_TIME {
                f();
                calls += 1;
            }
            started.elapsed().as_secs_f64() * 1e3 / f64::from(calls)
        })
        .collect();
    per_call.sort_by(f64::total_cmp);
    per_call[ROUNDS / 2]
}

fn main() {
    let (width, height) = (768, 576);
    let data: Vec<u8> = (0..width * height * 3)
        .map(|i| (i * 7919 % 251) as u8)
        .collect();
    let frame = RgbFrame::new(&data, width, height, width * 3).unwrap();

    let mut resampler = Resampler::default();
    let mut detector_input = Array3::<f32>::zeros((3, 416, 416));
    let letterbox = time(|| {
        black_box(resampler.letterbox(&frame, detector_input.view_mut()));
    });
    println!("letterbox 768x576 -> 416x416      {letterbox:.3} ms per frame");

    // Five people 60 to 140 px tall, as in vtest.avi.
    let boxes: Vec<BBox> = (0..5)
        .map(|i| BBox {
            x: 50.0 + 130.0 * i as f32,
            y: 200.0 + 17.5 * i as f32,
            w: 25.0 + 8.0 * i as f32,
            h: 60.0 + 20.0 * i as f32,
        })
        .collect();
    let mut crops = Array3::<f32>::zeros((3, 128, 64));
    let crop = time(|| {
        for &b in &boxes {
            resampler.crop_resize(
                &frame,
                b,
                crops.view_mut(),
                [0.485, 0.456, 0.406],
                [0.229, 0.224, 0.225],
            );
            black_box(&crops);
        }
    });
    println!("crop_resize 5 boxes -> 128x64     {crop:.3} ms per frame");
}
