//! Helpers for the end-to-end tests in `tests/`: where the assets prepared
//! by `scripts/setup.sh` live.

use std::path::PathBuf;

/// The assets directory (`ARGUS_ASSETS`, default `~/.cache/argus/assets`).
/// Panics with the fix when it has not been prepared: these tests must not
/// pass silently without their inputs.
pub fn assets() -> PathBuf {
    let dir = std::env::var_os("ARGUS_ASSETS")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache/argus/assets")))
        .unwrap_or_else(|| PathBuf::from(".cache/argus/assets"));
    for needed in [
        "yolov3-tiny.onnx",
        "mobilenetv2-embedder.onnx",
        "vtest.avi",
        "libonnxruntime.so.1.31.1",
    ] {
        assert!(
            dir.join(needed).is_file(),
            "{} is missing: run `bash scripts/setup.sh` first",
            dir.join(needed).display()
        );
    }
    dir
}
