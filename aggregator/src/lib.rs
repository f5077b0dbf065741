//! The Argus aggregator: events in, Parquet tables and SQL answers out.
//!
//! # Layout
//! - [`config`]: the typed TOML configuration.
//! - [`rows`]: row buffers per table, turned into Arrow record batches with
//!   the schemas from `schemas::tables`.
//! - [`store`]: Parquet files, date-partitioned, written atomically.
//! - [`query`]: DataFusion over the Parquet tables, the `transitions` view
//!   and text rendering of results.
//! - [`service`]: the Kafka consumer loop: buffer, flush, then commit.

pub mod config;
pub mod query;
pub mod rows;
pub mod service;
pub mod store;

pub use service::{AggregatorError, AggregatorStats, run};
