//! The Argus wire contract.
//!
//! # Layout
//! - [`v1`]: the protobuf messages generated from `proto/argus/v1/argus.proto`
//!   (the single source of truth for everything that crosses Kafka).
//! - [`topics`]: topic names and the message key convention.
//! - [`wire`]: encoding and decoding with schema-version checks.
//! - [`embedding`]: int8 quantisation of appearance vectors.
//! - [`tables`]: Arrow schemas of the Parquet tables the aggregator writes.

pub mod embedding;
pub mod tables;
pub mod topics;
pub mod wire;

/// Generated protobuf types of the `argus.v1` package.
#[allow(missing_docs, clippy::all)]
pub mod v1 {
    include!(concat!(env!("OUT_DIR"), "/argus.v1.rs"));
}

/// Version written into every message's `schema_version` field by this build.
pub const SCHEMA_VERSION: u32 = 1;
