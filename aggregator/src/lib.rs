//! The Argus aggregator: events in, Parquet tables and SQL answers out.
//!
//! # Layout
//! - [`config`]: the typed TOML configuration.
//! - [`rows`]: row buffers per table, turned into Arrow record batches with
//!   the schemas from `schemas::tables`.
//! - [`manifest`]: the commit log that makes files visible together with the
//!   Kafka offsets they cover (exactly once).
//! - [`store`]: storage through `object_store` (a local directory or an S3 bucket), Parquet encoding and the
//!   committed view queries read through.
//! - [`query`]: DataFusion over the committed tables, with the views that
//!   apply id merges, and text rendering of results.
//! - [`service`]: the Kafka consumer loop: buffer, write, commit, maintain.
//! - [`reports`]: the canned reports by department, as SQL.
//! - [`format`](mod@format): query results as a text table, CSV, JSON, Arrow IPC or
//!   Parquet.
//! - [`http`]: the read-only SQL service for analysts (`POST /sql`) with its
//!   limits on time, memory, concurrency and size; [`api`] adds the reports
//!   and the security console ([`console`]) and builds it from the configuration.
//! - [`webhooks`]: alert delivery to HTTP receivers, each webhook with its
//!   own consumer group, signed requests and bounded retries.
//! - [`synth`]: synthetic presence streams with known truth, the oracle of
//!   the report tests and the load of the benchmarks; [`bench`]: the figures.

pub mod api;
pub mod bench;
pub mod config;
pub mod console;
pub mod format;
pub mod http;
pub mod manifest;
pub mod query;
pub mod reports;
pub mod rows;
pub mod service;
pub mod store;
pub mod synth;
pub mod webhooks;

pub use service::{AggregatorError, AggregatorStats, run};
