//! `edge-agent check-config` as an operator runs it: the real binary, with
//! environment variables set on the child process only.

use std::path::Path;
use std::process::{Command, Output};

/// A valid config file with empty model and library files beside it.
fn write_config(dir: &Path) -> std::path::PathBuf {
    for file in ["det.onnx", "emb.onnx", "libonnxruntime.so"] {
        std::fs::write(dir.join(file), b"").unwrap();
    }
    let path = dir.join("edge.toml");
    std::fs::write(
        &path,
        r#"
        onnxruntime_library = "libonnxruntime.so"
        [kafka]
        bootstrap_servers = "localhost:9092"
        [detector]
        model = "det.onnx"
        [embedder]
        model = "emb.onnx"
        [[cameras]]
        id = "entrance"
        url = "rtsp://127.0.0.1:1/a"
        "#
        .replace(
            "libonnxruntime.so",
            &dir.join("libonnxruntime.so").display().to_string(),
        ),
    )
    .unwrap();
    path
}

fn check_config(config: &Path, env: &[(&str, &str)]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_edge-agent"))
        .arg("check-config")
        .arg(config)
        .env_clear()
        .envs(env.iter().copied())
        .output()
        .unwrap()
}

#[test]
fn check_config_lists_the_overrides_by_name_only() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path());
    let output = check_config(
        &config,
        &[
            ("ARGUS_EDGE__CAMERAS__ENTRANCE__USERNAME", "admin"),
            ("ARGUS_EDGE__CAMERAS__ENTRANCE__PASSWORD", "hunter2-secret"),
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
            "  ARGUS_EDGE__CAMERAS__ENTRANCE__PASSWORD -> cameras[id=\"entrance\"].password",
            "  ARGUS_EDGE__CAMERAS__ENTRANCE__USERNAME -> cameras[id=\"entrance\"].username",
            "  ARGUS_EDGE__DETECTOR__SCORE_THRESHOLD -> detector.score_threshold",
        ]
    );
    assert!(lines[0].ends_with(": OK (1 cameras)"), "{stdout}");
    assert!(!stdout.contains("hunter2"), "a secret in:\n{stdout}");

    let plain = check_config(&config, &[]);
    let stdout = String::from_utf8(plain.stdout).unwrap();
    assert!(plain.status.success(), "{stdout}");
    assert_eq!(stdout.lines().nth(1), Some("no environment overrides"));
}

#[test]
fn check_config_names_every_bad_variable_and_fails() {
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path());
    let output = check_config(
        &config,
        &[
            ("ARGUS_EDGE__DETECTOR__SCORE_THRESHOLD", "hunter2-secret"),
            ("ARGUS_EDGE__CAMERAS__ENTRANCE__PASWORD", "x"),
            ("ARGUS_EDGE__EGRESS__LINGER_MS", "-5"),
        ],
    );
    let stderr = String::from_utf8(output.stderr).unwrap();
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    for needle in [
        "ARGUS_EDGE__DETECTOR__SCORE_THRESHOLD: the value does not fit detector.score_threshold: expected f32",
        "ARGUS_EDGE__CAMERAS__ENTRANCE__PASWORD: there is no setting cameras[id=\"entrance\"].pasword",
        "ARGUS_EDGE__EGRESS__LINGER_MS: the value does not fit egress.linger_ms: expected u32",
    ] {
        assert!(stderr.contains(needle), "missing {needle:?} in:\n{stderr}");
    }
    assert!(!stderr.contains("hunter2"), "a secret in:\n{stderr}");
}
