//! Synthetic data sets and the figures of `aggregator bench`.
//!
//! - [`generate`]: a [`crate::synth`] stream written through the service's
//!   own buffers, Parquet files and commits ([`Loader`]), one commit per
//!   `flush_rows` buffered rows, then compacted like the running service.
//! - [`ingest`]: events/s of the ingest path on one thread: protobuf decode,
//!   dedup, row buffers, Arrow batches, sorting, Parquet encoding, storage
//!   and manifest commits (Kafka itself excluded).
//! - [`time_report`]: wall time of a canned report's queries.

use std::time::{Duration, Instant};

use datafusion::prelude::SessionContext;
use schemas::{topics, wire};

use crate::reports::{self, Report, ReportError};
use crate::service::{AggregatorError, AggregatorStats, Loader};
use crate::store::Storage;
use crate::synth::{Synth, SynthConfig, SynthEvent};

/// Writes the synthetic stream of `config` into `storage`.
pub async fn generate(
    storage: Storage,
    config: &SynthConfig,
    flush_rows: usize,
) -> Result<AggregatorStats, AggregatorError> {
    let mut loader = Loader::open(storage).await?;
    for event in Synth::new(config) {
        loader.add(&event);
        if loader.pending() >= flush_rows {
            loader.flush().await?;
        }
    }
    loader.flush().await?;
    loader.compact().await?;
    loader.purge_replaced().await?;
    Ok(loader.stats().clone())
}

/// Figures of one ingest run.
#[derive(Debug, Clone)]
pub struct IngestFigures {
    /// Messages fed.
    pub events: u64,
    /// Rows written.
    pub rows: u64,
    /// Parquet files written.
    pub files: u64,
    /// Time decoding and buffering.
    pub buffering: Duration,
    /// Time building batches, encoding, storing and committing.
    pub writing: Duration,
}

impl IngestFigures {
    /// Events per second over the whole run (one thread).
    pub fn events_per_s(&self) -> f64 {
        self.events as f64 / (self.buffering + self.writing).as_secs_f64().max(1e-9)
    }
}

/// The topic and encoded payload of a synthetic event, as Kafka delivers it.
pub fn encode(event: &SynthEvent) -> (&'static str, Vec<u8>) {
    match event {
        SynthEvent::Presence(e) => (topics::PRESENCE, wire::encode(e)),
        SynthEvent::Merge(m) => (topics::IDENTITY, wire::encode(m)),
        SynthEvent::Health(h) => (topics::CAMERA_HEALTH, wire::encode(h)),
    }
}

/// Feeds `messages` (pre-encoded) through the ingest path into `storage`,
/// writing every `flush_rows` rows; times the two halves separately.
pub async fn ingest(
    storage: Storage,
    messages: &[(&'static str, Vec<u8>)],
    flush_rows: usize,
) -> Result<IngestFigures, AggregatorError> {
    let mut loader = Loader::open(storage).await?;
    let mut buffering = Duration::ZERO;
    let mut writing = Duration::ZERO;
    let mut chunk_start = 0;
    while chunk_start < messages.len() {
        let started = Instant::now();
        let mut i = chunk_start;
        while i < messages.len() && loader.pending() < flush_rows {
            let (topic, payload) = &messages[i];
            // Synthetic payloads always decode; a failure would be a bug here.
            let _ = loader.add_payload(topic, payload);
            i += 1;
        }
        buffering += started.elapsed();
        let started = Instant::now();
        loader.flush().await?;
        writing += started.elapsed();
        chunk_start = i;
    }
    let stats = loader.stats();
    Ok(IngestFigures {
        events: messages.len() as u64,
        rows: stats.rows,
        files: stats.files,
        buffering,
        writing,
    })
}

/// Runs a report `repeat` times; returns each run's wall time.
pub async fn time_report(
    ctx: &SessionContext,
    report: &Report,
    repeat: usize,
) -> Result<Vec<Duration>, ReportError> {
    let mut times = Vec::with_capacity(repeat);
    for _ in 0..repeat {
        let started = Instant::now();
        reports::run(ctx, report).await?;
        times.push(started.elapsed());
    }
    Ok(times)
}
