//! Generates the Rust types of `proto/argus/v1/argus.proto` with prost.
//! Needs `protoc` (Debian `protobuf-compiler`, installed by scripts/setup.sh).

fn main() -> std::io::Result<()> {
    println!("cargo:rerun-if-changed=proto/argus/v1/argus.proto");
    prost_build::Config::new().compile_protos(&["proto/argus/v1/argus.proto"], &["proto"])
}
