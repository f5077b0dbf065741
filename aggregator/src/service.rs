//! The aggregator service: consume events, buffer rows, write Parquet, and
//! only then store the Kafka offsets of what was written (a crash re-reads
//! and never loses rows; event ids suppress the duplicates within a run).

use std::collections::HashMap;
use std::future::Future;
use std::time::{Duration, Instant};

use datafusion::arrow::array::{Array, UInt64Array};
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::message::{BorrowedMessage, Message};
use rdkafka::{Offset, TopicPartitionList};
use schemas::v1::{Alert, CameraHealth, FrameDetections, IdMerge, PresenceEvent, TrackSummary};
use schemas::{topics, wire};
use service_kit::kafka::Progress;
use service_kit::shutdown::Shutdown;

use crate::config::AggregatorConfig;
use crate::query::{self, QueryError};
use crate::rows::{Added, Rows};
use crate::store::{self, StoreError};

/// The aggregator stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum AggregatorError {
    /// Kafka refused a client or an offset commit.
    #[error("Kafka: {0}")]
    Kafka(#[from] rdkafka::error::KafkaError),
    /// A Parquet file could not be written (nothing was committed for it).
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Rows could not be turned into Arrow batches.
    #[error("building record batches: {0}")]
    Arrow(#[from] datafusion::arrow::error::ArrowError),
    /// Existing tables could not be read at start-up.
    #[error("reading existing tables: {0}")]
    Query(#[from] QueryError),
}

/// Totals of a run.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct AggregatorStats {
    /// Messages consumed.
    pub messages: u64,
    /// Messages that could not be decoded (skipped).
    pub malformed: u64,
    /// Re-delivered events ignored.
    pub duplicates: u64,
    /// Rows written.
    pub rows: u64,
    /// Parquet files written.
    pub files: u64,
}

/// Runs the aggregator until `shutdown` completes and the drain finishes.
pub async fn run(
    config: AggregatorConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<AggregatorStats, AggregatorError> {
    std::fs::create_dir_all(&config.data_dir).map_err(|source| StoreError::Io {
        path: config.data_dir.clone(),
        source,
    })?;
    let mut rows = Rows::default();
    rows.know_people(existing_people(&config).await?);
    let consumer = config.kafka.consumer(
        "argus-aggregator",
        &config.group_id,
        &[
            topics::PRESENCE,
            topics::DETECTIONS,
            topics::CAMERA_HEALTH,
            topics::ALERTS,
            topics::IDENTITY,
            topics::TRACKS,
        ],
    )?;
    let writer_id = format!(
        "{:x}",
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_micros())
            .unwrap_or(0)
    );
    let mut stats = AggregatorStats::default();
    let mut unflushed: HashMap<(String, i32), i64> = HashMap::new();
    let mut progress = Progress::default();
    let mut shutdown = Shutdown::from_future(shutdown);
    let mut flush_tick = tokio::time::interval(Duration::from_secs_f64(config.flush_interval_s));
    flush_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut drain_deadline: Option<Instant> = None;
    let mut last_check = Instant::now();
    tracing::info!(data_dir = %config.data_dir.display(), group = %config.group_id, "Aggregator consuming");
    loop {
        tokio::select! {
            biased;
            () = shutdown.wait(), if drain_deadline.is_none() => {
                tracing::info!("Draining events already written");
                drain_deadline = Some(Instant::now() + Duration::from_secs_f64(config.drain_timeout_s));
            }
            _ = flush_tick.tick() => {
                flush(&config, &consumer, &mut rows, &mut unflushed, &writer_id, &mut stats)?;
            }
            message = consumer.recv() => {
                let message = message?;
                stats.messages += 1;
                match add(&mut rows, &message) {
                    Ok(added) => {
                        stats.duplicates += added.duplicates as u64;
                    }
                    Err(error) => {
                        stats.malformed += 1;
                        tracing::warn!(%error, topic = message.topic(), offset = message.offset(), "Skipping undecodable event");
                    }
                }
                unflushed.insert((message.topic().to_string(), message.partition()), message.offset() + 1);
                progress.record(&message);
            }
            () = tokio::time::sleep(Duration::from_millis(200)), if drain_deadline.is_some() => {}
        }
        if let Some(deadline) = drain_deadline
            && last_check.elapsed() >= Duration::from_millis(200)
        {
            last_check = Instant::now();
            if progress.caught_up(&consumer, Duration::from_secs(5))? {
                break;
            }
            if Instant::now() >= deadline {
                tracing::warn!(
                    "Drain deadline reached before catching up; the rest is read on next start"
                );
                break;
            }
        }
    }
    flush(
        &config,
        &consumer,
        &mut rows,
        &mut unflushed,
        &writer_id,
        &mut stats,
    )?;
    if let Err(error) = consumer.commit_consumer_state(rdkafka::consumer::CommitMode::Sync) {
        tracing::warn!(%error, "Final offset commit failed");
    }
    tracing::info!(
        messages = stats.messages,
        rows = stats.rows,
        files = stats.files,
        malformed = stats.malformed,
        duplicates = stats.duplicates,
        "Aggregator stopped"
    );
    Ok(stats)
}

/// Person ids already in `unique_people`, so a restart does not add them twice.
async fn existing_people(config: &AggregatorConfig) -> Result<Vec<u64>, QueryError> {
    let ctx = query::context(&config.data_dir).await?;
    let batches = query::sql(&ctx, "SELECT id FROM unique_people").await?;
    Ok(batches
        .iter()
        .filter_map(|b| {
            b.column(0)
                .as_any()
                .downcast_ref::<UInt64Array>()
                .map(|a| a.iter().flatten().collect::<Vec<_>>())
        })
        .flatten()
        .collect())
}

/// Decodes a message by topic and buffers its rows.
fn add(rows: &mut Rows, message: &BorrowedMessage<'_>) -> Result<Added, wire::DecodeError> {
    let payload = message.payload().unwrap_or_default();
    Ok(match message.topic() {
        topics::PRESENCE => rows.add_presence(&wire::decode::<PresenceEvent>(payload)?),
        topics::DETECTIONS => rows.add_frame(&wire::decode::<FrameDetections>(payload)?),
        topics::CAMERA_HEALTH => rows.add_health(&wire::decode::<CameraHealth>(payload)?),
        topics::ALERTS => rows.add_alert(&wire::decode::<Alert>(payload)?),
        topics::IDENTITY => rows.add_merge(&wire::decode::<IdMerge>(payload)?),
        topics::TRACKS => rows.add_track(&wire::decode::<TrackSummary>(payload)?),
        _ => Added::default(),
    })
}

/// Writes buffered rows, then stores the offsets of the messages they came from.
fn flush(
    config: &AggregatorConfig,
    consumer: &StreamConsumer,
    rows: &mut Rows,
    unflushed: &mut HashMap<(String, i32), i64>,
    writer_id: &str,
    stats: &mut AggregatorStats,
) -> Result<(), AggregatorError> {
    for (table, date, batch) in rows.take_batches()? {
        let stem = format!("{writer_id}-{:06}", stats.files);
        let path = store::write_batch(&config.data_dir, table, &date, &batch, &stem)?;
        stats.files += 1;
        stats.rows += batch.num_rows() as u64;
        tracing::debug!(table = table.name(), rows = batch.num_rows(), path = %path.display(), "Wrote Parquet file");
    }
    if unflushed.is_empty() {
        return Ok(());
    }
    let mut offsets = TopicPartitionList::new();
    for ((topic, partition), next) in unflushed.drain() {
        offsets.add_partition_offset(&topic, partition, Offset::Offset(next))?;
    }
    consumer.store_offsets(&offsets)?;
    Ok(())
}
