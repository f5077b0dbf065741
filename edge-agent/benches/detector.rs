//! Bare detector latency, float32 against int8: `Detector::detect`
//! (letterbox, ONNX Runtime, decoding, NMS) on the same frames of vtest.avi
//! with two intra-op threads.
//!
//! `cargo bench -p edge-agent --bench detector` needs the assets of
//! `scripts/setup.sh` (`yolov3-tiny.onnx` and `yolov3-tiny-int8.onnx` in
//! `$ARGUS_ASSETS`). The two models take turns pass by pass over the same
//! frames, so a machine whose load drifts slows both alike; the first pass is
//! warm-up and not counted. (Not frame by frame: ONNX Runtime's intra-op
//! threads spin for a while after each run, and one session's spinning
//! threads would slow the other's run.)

use std::time::{Duration, Instant};

use edge_agent::inference::Detector;
use vision::letterbox::RgbFrame;

#[path = "../tests/common/mod.rs"]
#[allow(dead_code)] // the bench uses part of it
mod common;

use common::{asset, ort_environment, person_params, vtest_frames};

/// Intra-op threads of each session: the cores of a small edge box.
const THREADS: usize = 2;
/// Frames 4, 20, 36, ... of vtest.avi (none of them calibrated the int8 model).
const FRAMES: usize = 50;
/// Timed passes over the frames, after one warm-up pass.
const PASSES: usize = 4;

fn millis(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// Mean and median of `times`, in milliseconds.
fn summary(times: &mut [Duration]) -> (f64, f64) {
    times.sort();
    let mean = millis(times.iter().sum::<Duration>()) / times.len() as f64;
    (mean, millis(times[times.len() / 2]))
}

fn main() {
    let env = ort_environment();
    let params = person_params();
    let mut models = [
        Detector::load(&env, &asset("yolov3-tiny.onnx"), params.clone(), THREADS).unwrap(),
        Detector::load(&env, &asset("yolov3-tiny-int8.onnx"), params, THREADS).unwrap(),
    ];
    let frames = vtest_frames(|seq| seq % 16 == 4, FRAMES);
    let mut times = [Vec::new(), Vec::new()];
    for pass in 0..=PASSES {
        for (model, times) in models.iter_mut().zip(&mut times) {
            for frame in &frames {
                let rgb =
                    RgbFrame::new(&frame.data, frame.width, frame.height, frame.stride).unwrap();
                let start = Instant::now();
                std::hint::black_box(model.detect(&rgb).unwrap());
                if pass > 0 {
                    times.push(start.elapsed());
                }
            }
        }
    }
    let mut medians = [0.0; 2];
    for ((model, times), median) in models.iter().zip(&mut times).zip(&mut medians) {
        let (mean, med) = summary(times);
        *median = med;
        println!(
            "{:<26} {mean:7.2} ms/frame mean, {med:7.2} median ({} runs, {THREADS} threads)",
            model.model_id(),
            times.len()
        );
    }
    println!(
        "int8 speed-up (median): {:.2}x",
        medians[0] / medians[1].max(f64::MIN_POSITIVE)
    );
}
