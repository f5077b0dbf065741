//! The Argus aggregator: events in, Parquet tables and SQL answers out.
//!
//! # Layout
//! - [`config`]: the typed TOML configuration.
//! - [`rows`]: row buffers per table, turned into Arrow record batches with
//!   the schemas from `schemas::tables`.
//! - [`manifest`]: the commit log that makes files visible together with the
//!   Kafka offsets they cover (exactly once).
//! - [`store`]: the object store (local or S3), Parquet encoding and the
//!   committed view queries read through.
//! - [`query`]: DataFusion over the committed tables, with the views that
//!   apply id merges, and text rendering of results.
//! - [`service`]: the Kafka consumer loop: buffer, write, commit, maintain.

pub mod api;
pub mod bench;
pub mod config;
pub mod format;
pub mod http;
pub mod manifest;
pub mod query;
pub mod reports;
pub mod rows;
pub mod service;
pub mod store;
pub mod synth;

pub use service::{AggregatorError, AggregatorStats, run};
