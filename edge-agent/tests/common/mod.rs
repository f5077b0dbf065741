//! Shared by the edge agent's integration tests and benches (`mod common;`,
//! or `#[path = "../tests/common/mod.rs"] mod common;` from a bench).

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use edge_agent::config::{CameraConfig, OnEos};
use edge_agent::inference::{self, DetectionParams};
use edge_agent::queue::{Frame, FrameQueue, Next};
use edge_agent::source::{self, CameraStats};

/// A file of the asset cache that `scripts/setup.sh` fills (`ARGUS_ASSETS`,
/// else `~/.cache/argus/assets`); panics with what to run if it is missing.
pub fn asset(name: &str) -> PathBuf {
    let dir = std::env::var_os("ARGUS_ASSETS")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(std::env::var_os("HOME").unwrap_or_default()).join(".cache/argus/assets")
        });
    let path = dir.join(name);
    assert!(
        path.is_file(),
        "{} is missing: run `bash scripts/setup.sh` first",
        path.display()
    );
    path
}

/// The ONNX Runtime environment on the asset cache's library.
pub fn ort_environment() -> ort::environment::Environment {
    inference::environment(&asset("libonnxruntime.so.1.31.1")).unwrap()
}

/// People only, at the agent's default thresholds (score 0.3, NMS IoU 0.45:
/// edge-agent/src/config.rs).
pub fn person_params() -> DetectionParams {
    DetectionParams {
        score_threshold: 0.3,
        nms_iou_threshold: 0.45,
        classes: vec![0],
    }
}

/// A file camera on vtest.avi, delivering every frame.
pub fn vtest_camera() -> CameraConfig {
    CameraConfig {
        on_eos: Some(OnEos::Stop),
        ..CameraConfig::new("file", format!("file://{}", asset("vtest.avi").display()))
    }
}

/// The frames of vtest.avi whose sequence number `wanted` accepts, decoded
/// by the agent's own source, until `count` are collected.
pub fn vtest_frames(wanted: impl Fn(u64) -> bool, count: usize) -> Vec<Frame> {
    let camera = vtest_camera();
    let queue = Arc::new(FrameQueue::new(1));
    let stats = Arc::new(CameraStats::default());
    let stop = Arc::new(AtomicBool::new(false));
    let source = {
        let (queue, stats, stop) = (Arc::clone(&queue), Arc::clone(&stats), Arc::clone(&stop));
        std::thread::spawn(move || source::run_camera(0, &camera, &queue, &stats, &stop, &|_| {}))
    };
    let mut frames = Vec::new();
    while let Next::Frame(frame) = queue.next() {
        if frames.len() < count && wanted(frame.seq) {
            frames.push(frame);
            if frames.len() == count {
                stop.store(true, Ordering::Relaxed);
                queue.stop();
            }
        }
    }
    source.join().unwrap();
    assert_eq!(frames.len(), count, "vtest.avi ran out of frames");
    frames
}
