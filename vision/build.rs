//! Generates the Rust types of `proto/onnx.proto` (the ONNX subset written by
//! the darknet importer) into `$OUT_DIR/onnx.rs` with prost-build.
//!
//! Needs `protoc`: from `$PROTOC` when set, else from `PATH` (Debian package
//! `protobuf-compiler`, installed by `scripts/setup.sh`).

fn main() -> std::io::Result<()> {
    println!("cargo:rerun-if-changed=proto/onnx.proto");
    println!("cargo:rerun-if-env-changed=PROTOC");
    prost_build::Config::new().compile_protos(&["proto/onnx.proto"], &["proto/"])
}
