//! `edge-agent check-config` as an operator runs it: the real binary, with
//! environment variables set on the child process only.

use std::path::Path;
use std::process::{Command, Output};

/// The deploy example, whose model and library paths do not exist here.
const DEPLOY_EXAMPLE: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../deploy/config/edge-agent.toml"
);

/// Overrides that point the deploy example's paths at empty files in `dir`,
/// plus the camera password its `password_env` names.
fn local_paths(dir: &Path) -> Vec<(String, String)> {
    let mut env = vec![(
        "ARGUS_CAMERA_PASSWORD".to_string(),
        "hunter2-secret".to_string(),
    )];
    for (var, file) in [
        ("ARGUS_EDGE__ONNXRUNTIME_LIBRARY", "libonnxruntime.so"),
        ("ARGUS_EDGE__DETECTOR__MODEL", "det.onnx"),
        ("ARGUS_EDGE__EMBEDDER__MODEL", "emb.onnx"),
    ] {
        let path = dir.join(file);
        std::fs::write(&path, b"").unwrap();
        env.push((var.into(), path.display().to_string()));
    }
    env
}

fn check_config(dir: &Path, env: &[(&str, &str)]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_edge-agent"))
        .arg("check-config")
        .arg(DEPLOY_EXAMPLE)
        .env_clear()
        .envs(local_paths(dir))
        .envs(env.iter().copied())
        .output()
        .unwrap()
}

#[test]
fn check_config_lists_the_overrides_by_name_only() {
    let dir = tempfile::tempdir().unwrap();
    let output = check_config(
        dir.path(),
        &[
            ("ARGUS_EDGE__CAMERAS__HALL__USERNAME", "admin"),
            ("ARGUS_EDGE__CAMERAS__HALL__PASSWORD", "hunter2-secret"),
            ("ARGUS_EDGE__DETECTOR__SCORE_THRESHOLD", "0.4"),
        ],
    );
    let stdout = String::from_utf8(output.stdout).unwrap();
    assert!(output.status.success(), "{stdout}");
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(
        lines[1..],
        [
            "environment overrides (values not shown):",
            "  ARGUS_EDGE__CAMERAS__HALL__PASSWORD -> cameras[id=\"hall\"].password",
            "  ARGUS_EDGE__CAMERAS__HALL__USERNAME -> cameras[id=\"hall\"].username",
            "  ARGUS_EDGE__DETECTOR__MODEL -> detector.model",
            "  ARGUS_EDGE__DETECTOR__SCORE_THRESHOLD -> detector.score_threshold",
            "  ARGUS_EDGE__EMBEDDER__MODEL -> embedder.model",
            "  ARGUS_EDGE__ONNXRUNTIME_LIBRARY -> onnxruntime_library",
        ]
    );
    assert!(lines[0].ends_with("det.onnx: OK (2 cameras)"), "{stdout}");
    assert!(!stdout.contains("hunter2"), "a secret in:\n{stdout}");

    // Without the overrides the deploy example's paths do not exist here.
    let plain = Command::new(env!("CARGO_BIN_EXE_edge-agent"))
        .args(["check-config", DEPLOY_EXAMPLE])
        .env_clear()
        .env("ARGUS_CAMERA_PASSWORD", "x")
        .output()
        .unwrap();
    let stderr = String::from_utf8(plain.stderr).unwrap();
    assert_eq!(plain.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("detector.model /opt/argus/models/yolov3-tiny.onnx does not exist"),
        "{stderr}"
    );
}

#[test]
fn check_config_names_every_bad_variable_and_fails() {
    let dir = tempfile::tempdir().unwrap();
    let output = check_config(
        dir.path(),
        &[
            ("ARGUS_EDGE__DETECTOR__SCORE_THRESHOLD", "hunter2-secret"),
            ("ARGUS_EDGE__CAMERAS__ENTRANCE__PASWORD", "x"),
            ("ARGUS_EDGE__CAMERAS__LOBBY__URL", "rtsp://x/y"),
            ("ARGUS_EDGE__EGRESS__LINGER_MS", "-5"),
        ],
    );
    let stderr = String::from_utf8(output.stderr).unwrap();
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    for needle in [
        "ARGUS_EDGE__DETECTOR__SCORE_THRESHOLD: the value does not fit detector.score_threshold: expected f32",
        "ARGUS_EDGE__CAMERAS__ENTRANCE__PASWORD: there is no setting cameras[id=\"entrance\"].pasword",
        "ARGUS_EDGE__EGRESS__LINGER_MS: the value does not fit egress.linger_ms: expected u32",
        "ARGUS_EDGE__CAMERAS__LOBBY__URL: cameras has no element whose id is \"lobby\"",
    ] {
        assert!(stderr.contains(needle), "missing {needle:?} in:\n{stderr}");
    }
    assert!(!stderr.contains("hunter2"), "a secret in:\n{stderr}");
}
