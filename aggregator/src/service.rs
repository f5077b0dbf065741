//! The aggregator service: consume events, buffer rows, and on every flush
//! write Parquet files and commit them together with the offsets they cover
//! (see [`crate::manifest`]): exactly once, across crashes at any moment.
//!
//! - Start: load the manifest, delete files no commit lists, read back the
//!   event ids and person ids of the dedup window, subscribe.
//! - Messages below the manifest's offset for their partition are already
//!   in a committed file and are skipped (Kafka's own committed offsets are
//!   only a hint, stored after the manifest commit).
//! - Event ids drop at-least-once re-deliveries from the tracker.
//! - A failed flush keeps its rows and offsets and stops consumption until a
//!   retry succeeds, so an unavailable store back-pressures into Kafka.
//! - Maintenance (compaction, retention, deferred deletes) commits through
//!   the same log; replaced files are deleted after a grace period.
//! - The HTTP API and the alert webhooks ([`crate::webhooks`], their own
//!   consumer groups) run as tasks beside the consumer loop.

use std::collections::HashMap;
use std::future::Future;
use std::time::{Duration, Instant};

use datafusion::arrow::array::{Array, AsArray, RecordBatch};
use datafusion::arrow::compute::concat_batches;
use datafusion::arrow::datatypes::{TimestampMicrosecondType, UInt64Type};
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::message::{BorrowedMessage, Message};
use rdkafka::{Offset, TopicPartitionList};
use schemas::tables::Table;
use schemas::v1::{
    Alert, AlertAction, CameraHealth, FrameDetections, IdMerge, PresenceEvent, TrackSummary,
};
use schemas::{topics, wire};
use service_kit::clock::now_us;
use service_kit::kafka::Progress;
use service_kit::shutdown::Shutdown;

use crate::config::AggregatorConfig;
use crate::manifest::{FileEntry, Manifest, ManifestError, State};
use crate::query::{self, QueryError, QueryOptions};
use crate::rows::{Added, Rows, alert_key, utc_date};
use crate::store::{Storage, StoreError, live_files_by_partition, sort_by_time};
use crate::webhooks::{WebhookError, WebhookStats, Webhooks};

/// The aggregator stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum AggregatorError {
    /// Kafka refused a client.
    #[error("Kafka: {0}")]
    Kafka(#[from] rdkafka::error::KafkaError),
    /// Storage could not be opened or read at start-up.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The commit log is unreadable or another writer owns it.
    #[error(transparent)]
    Manifest(#[from] ManifestError),
    /// Rows could not be turned into Arrow batches.
    #[error("building record batches: {0}")]
    Arrow(#[from] datafusion::arrow::error::ArrowError),
    /// Existing tables could not be read at start-up.
    #[error("reading existing tables: {0}")]
    Query(#[from] QueryError),
    /// A webhook's settings are invalid, or its consumer or HTTP client
    /// could not be created.
    #[error(transparent)]
    Webhook(#[from] WebhookError),
}

/// Totals of a run.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct AggregatorStats {
    /// Messages consumed.
    pub messages: u64,
    /// Messages already in committed files (re-read after a restart), skipped.
    pub already_committed: u64,
    /// Messages that could not be decoded (skipped).
    pub malformed: u64,
    /// Re-delivered events ignored.
    pub duplicates: u64,
    /// Rows written.
    pub rows: u64,
    /// Parquet files written.
    pub files: u64,
    /// Manifest commits made.
    pub commits: u64,
    /// Flushes that failed and were retried.
    pub flush_errors: u64,
    /// Files merged away by compaction.
    pub compacted_files: u64,
    /// Files removed by retention.
    pub expired_files: u64,
    /// Uncommitted files deleted at start-up.
    pub swept_files: u64,
    /// Totals of every webhook, by name.
    pub webhooks: Vec<WebhookStats>,
}

/// Runs the aggregator until `shutdown` completes and the drain finishes.
pub async fn run(
    config: AggregatorConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<AggregatorStats, AggregatorError> {
    let storage = config.storage()?;
    let tables = storage.describe();
    let mut writer = Writer::open(&config, storage).await?;
    let (stop_api, api_stopped) = tokio::sync::oneshot::channel::<()>();
    let api = match &config.http {
        Some(_) => {
            let config = config.clone();
            let stopped = async move {
                let _ = api_stopped.await;
            };
            Some(tokio::spawn(async move {
                crate::api::serve_config(&config, stopped).await
            }))
        }
        None => None,
    };
    let consumer = config.kafka.consumer(
        "argus-aggregator",
        &config.group_id,
        &[
            topics::PRESENCE,
            topics::DETECTIONS,
            topics::CAMERA_HEALTH,
            topics::ALERTS,
            topics::ALERT_ACTIONS,
            topics::IDENTITY,
            topics::TRACKS,
        ],
    )?;
    let mut shutdown = Shutdown::from_future(shutdown);
    let webhooks = Webhooks::new(&config.webhooks, &config.kafka, &config.group_id)?;
    // A set, so that returning early with an error stops the webhooks too.
    let mut webhook_task = tokio::task::JoinSet::new();
    if !webhooks.is_empty() {
        webhook_task.spawn(webhooks.run(shutdown.clone()));
    }
    let mut progress = Progress::default();
    let mut flush_tick = tokio::time::interval(Duration::from_secs_f64(config.flush_interval_s));
    flush_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut maintain_tick =
        tokio::time::interval(Duration::from_secs_f64(config.compaction.interval_s));
    maintain_tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut drain_deadline: Option<Instant> = None;
    let mut last_check = Instant::now();
    tracing::info!(
        tables = %tables,
        group = %config.group_id,
        commit = writer.state.seq,
        "Aggregator consuming"
    );
    loop {
        tokio::select! {
            biased;
            () = shutdown.wait(), if drain_deadline.is_none() => {
                tracing::info!("Draining events already written");
                drain_deadline = Some(Instant::now() + Duration::from_secs_f64(config.drain_timeout_s));
            }
            _ = flush_tick.tick() => {
                if writer.flush(&consumer).await? {
                    writer.rows.prune(now_us());
                }
            }
            _ = maintain_tick.tick(), if writer.healthy => {
                if let Err(error) = writer.maintain().await {
                    if matches!(error, AggregatorError::Manifest(ManifestError::Conflict { .. })) {
                        return Err(error);
                    }
                    tracing::warn!(%error, "Maintenance failed; retried at the next pass");
                }
            }
            message = consumer.recv(), if writer.healthy => {
                let message = message?;
                writer.stats.messages += 1;
                progress.record(&message);
                if let Some((topic, partition, offset)) = writer.consume(&message) {
                    drop(message);
                    if let Err(error) = consumer.seek(&topic, partition, Offset::Offset(offset), Duration::from_secs(10)) {
                        tracing::error!(%error, topic, partition, offset, "Seek failed");
                        return Err(error.into());
                    }
                }
            }
            () = tokio::time::sleep(Duration::from_millis(200)), if drain_deadline.is_some() || !writer.healthy => {}
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
    if !writer.flush(&consumer).await? {
        tracing::warn!("Last flush failed; its rows are read again on next start");
    }
    if let Err(error) = consumer.commit_consumer_state(rdkafka::consumer::CommitMode::Sync) {
        tracing::warn!(%error, "Final offset commit failed");
    }
    let _ = stop_api.send(());
    if let Some(api) = api {
        match api.await {
            Ok(Ok(())) => {}
            Ok(Err(error)) => tracing::error!(%error, "HTTP API failed"),
            Err(error) => tracing::error!(%error, "HTTP API task failed"),
        }
    }
    let mut stats = writer.stats;
    while let Some(done) = webhook_task.join_next().await {
        match done {
            Ok(totals) => stats.webhooks = totals,
            Err(error) => tracing::error!(%error, "Webhook task failed"),
        }
    }
    tracing::info!(
        messages = stats.messages,
        rows = stats.rows,
        files = stats.files,
        commits = stats.commits,
        already_committed = stats.already_committed,
        malformed = stats.malformed,
        duplicates = stats.duplicates,
        "Aggregator stopped"
    );
    Ok(stats)
}

/// The writing side: buffers, the committed state and maintenance.
struct Writer {
    storage: Storage,
    manifest: Manifest,
    state: State,
    rows: Rows,
    /// Next offsets of consumed messages not yet committed.
    pending: HashMap<(String, i32), i64>,
    /// Batches taken from `rows` whose flush has not succeeded yet.
    unwritten: Vec<(Table, String, RecordBatch)>,
    /// Files written by a failed flush, committed with the retry.
    written: Vec<FileEntry>,
    /// Replaced files and when they may be deleted.
    doomed: Vec<(Instant, Vec<String>)>,
    /// Per partition, the offset last sought back to.
    sought: HashMap<(String, i32), i64>,
    /// Held while this writer runs: a second writer on the same directory is refused.
    _lock: Option<std::fs::File>,
    healthy: bool,
    writer_id: String,
    file_seq: u64,
    compaction: crate::config::CompactionConfig,
    retention_days: u32,
    stats: AggregatorStats,
}

impl Writer {
    async fn open(config: &AggregatorConfig, storage: Storage) -> Result<Self, AggregatorError> {
        Self::open_with(
            storage,
            config.dedup_window_s,
            config.compaction.clone(),
            config.retention_days,
        )
        .await
    }

    async fn open_with(
        storage: Storage,
        dedup_window_s: f64,
        compaction: crate::config::CompactionConfig,
        retention_days: u32,
    ) -> Result<Self, AggregatorError> {
        let lock = storage.lock_writer()?;
        let manifest = storage.manifest();
        let mut state = manifest.load().await?;
        let writer_id = format!(
            "{:x}",
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_micros())
                .unwrap_or(0)
        );
        if state.seq == 0 {
            // No commit yet: tables written before the manifest existed (an
            // upgrade) are adopted as they are, never deleted; their Kafka
            // offsets stay those the consumer group committed.
            let adopted = storage.existing_files().await?;
            if !adopted.is_empty() {
                tracing::info!(
                    files = adopted.len(),
                    "Adopting tables written without a manifest"
                );
            }
            manifest
                .commit(
                    &mut state,
                    &writer_id,
                    now_us(),
                    adopted,
                    Vec::new(),
                    &Default::default(),
                )
                .await?;
        }
        let swept = storage.sweep_uncommitted(&state).await?;
        if !swept.is_empty() {
            tracing::info!(
                files = swept.len(),
                "Deleted files no commit lists (an interrupted flush or compaction)"
            );
        }
        let mut rows = Rows::new(dedup_window_s);
        remember_recent(&storage, &mut rows, dedup_window_s).await?;
        Ok(Writer {
            manifest,
            storage,
            state,
            rows,
            pending: HashMap::new(),
            unwritten: Vec::new(),
            written: Vec::new(),
            doomed: Vec::new(),
            sought: HashMap::new(),
            _lock: lock,
            healthy: true,
            writer_id,
            file_seq: 0,
            compaction,
            retention_days,
            stats: AggregatorStats {
                swept_files: swept.len() as u64,
                ..AggregatorStats::default()
            },
        })
    }

    /// Buffers one message unless a committed file already holds it.
    /// Where consumption of a partition must continue: after what is
    /// committed or buffered, whichever is further.
    fn expected_next(&self, topic: &str, partition: i32) -> Option<i64> {
        let committed = self.state.next_offset(topic, partition);
        let buffered = self.pending.get(&(topic.to_string(), partition)).copied();
        committed.max(buffered)
    }

    /// Buffers one message unless a committed file or the buffers already
    /// hold it. A message beyond what we hold (Kafka's committed offset
    /// ahead of the manifest: a restored or re-created data directory, a
    /// commit lost to a power cut) makes the consumer seek back to the
    /// manifest's offset first; returns that seek for the caller to do.
    fn consume(&mut self, message: &BorrowedMessage<'_>) -> Option<(String, i32, i64)> {
        let (topic, partition, offset) = (message.topic(), message.partition(), message.offset());
        let key = (topic.to_string(), partition);
        if let Some(next) = self.expected_next(topic, partition) {
            if offset < next {
                // Re-delivered after a restart or a rebalance.
                self.stats.already_committed += 1;
                return None;
            }
            // Seek back once per target: offsets can legitimately skip
            // (transaction markers), so a second jump is accepted.
            if offset > next && self.sought.get(&key) != Some(&next) {
                self.sought.insert(key, next);
                tracing::warn!(
                    topic,
                    partition,
                    offset,
                    next,
                    "Kafka resumed past the manifest's offset; seeking back"
                );
                return Some((topic.to_string(), partition, next));
            }
        }
        match add(&mut self.rows, message) {
            Ok(added) => self.stats.duplicates += added.duplicates as u64,
            Err(error) => {
                self.stats.malformed += 1;
                tracing::warn!(%error, topic, offset, "Skipping undecodable event");
            }
        }
        self.pending.insert(key, offset + 1);
        None
    }

    fn next_stem(&mut self) -> String {
        self.file_seq += 1;
        format!("{}-{:06}", self.writer_id, self.file_seq)
    }

    /// Writes buffered rows and commits them with their offsets. Returns
    /// false (and keeps everything for the next try) if storage failed; only
    /// a second writer on the same storage is fatal.
    async fn flush(&mut self, consumer: &StreamConsumer) -> Result<bool, AggregatorError> {
        self.unwritten.extend(self.rows.take_batches()?);
        if self.unwritten.is_empty() && self.written.is_empty() && self.pending.is_empty() {
            return Ok(true);
        }
        match self.try_flush().await {
            Ok(()) => {}
            Err(AggregatorError::Manifest(error @ ManifestError::Conflict { .. })) => {
                return Err(error.into());
            }
            Err(error) => {
                self.stats.flush_errors += 1;
                if self.healthy {
                    tracing::error!(%error, "Flush failed; consumption paused, retrying");
                }
                self.healthy = false;
                return Ok(false);
            }
        }
        if !self.healthy {
            tracing::info!("Flush succeeded again; consuming");
        }
        self.healthy = true;
        let mut hint = TopicPartitionList::new();
        for ((topic, partition), next) in self.pending.drain() {
            hint.add_partition_offset(&topic, partition, Offset::Offset(next))?;
        }
        if hint.count() > 0
            && let Err(error) = consumer.store_offsets(&hint)
        {
            // The manifest is the source of truth; Kafka's offsets only save re-reading.
            tracing::debug!(%error, "Could not store offsets in Kafka");
        }
        Ok(true)
    }

    async fn try_flush(&mut self) -> Result<(), AggregatorError> {
        while let Some((table, date, batch)) = self.unwritten.pop() {
            let stem = self.next_stem();
            match self.storage.put_parquet(table, &date, &stem, &batch).await {
                Ok(entry) => self.written.push(entry),
                Err(error) => {
                    self.unwritten.push((table, date, batch));
                    return Err(error.into());
                }
            }
        }
        let mut offsets = self.state.offsets.clone();
        offsets.extend(self.pending.iter().map(|(k, v)| (k.clone(), *v)));
        self.commit(self.written.clone(), Vec::new(), &offsets)
            .await?;
        let written = std::mem::take(&mut self.written);
        self.stats.files += written.len() as u64;
        self.stats.rows += written.iter().map(|f| f.rows).sum::<u64>();
        for file in &written {
            tracing::debug!(path = %file.path, rows = file.rows, "Committed Parquet file");
        }
        Ok(())
    }

    /// One manifest commit.
    async fn commit(
        &mut self,
        added: Vec<FileEntry>,
        removed: Vec<String>,
        offsets: &std::collections::BTreeMap<(String, i32), i64>,
    ) -> Result<(), AggregatorError> {
        let now = now_us();
        self.manifest
            .commit(
                &mut self.state,
                &self.writer_id,
                now,
                added,
                removed,
                offsets,
            )
            .await?;
        self.stats.commits += 1;
        Ok(())
    }

    /// Deletes files whose grace period ended, applies retention, compacts.
    async fn maintain(&mut self) -> Result<(), AggregatorError> {
        let now = Instant::now();
        let (due, later): (Vec<_>, Vec<_>) = std::mem::take(&mut self.doomed)
            .into_iter()
            .partition(|(at, _)| *at <= now);
        self.doomed = later;
        for (_, paths) in due {
            self.storage.delete(&paths).await?;
        }
        if self.retention_days > 0 {
            let cutoff = utc_date(now_us() - i64::from(self.retention_days) * 86_400_000_000);
            let expired = expired_files(&self.state, &cutoff);
            if !expired.is_empty() {
                self.commit_replacement(Vec::new(), expired.clone()).await?;
                self.stats.expired_files += expired.len() as u64;
                tracing::info!(files = expired.len(), before = %cutoff, "Retention removed old partitions");
            }
        }
        self.compact().await
    }

    /// Merges each partition's small files into files of at most
    /// `target_rows` rows, sorted by time; one commit per merged file.
    async fn compact(&mut self) -> Result<(), AggregatorError> {
        let target = self.compaction.target_rows;
        for ((table_name, date), files) in live_files_by_partition(&self.state) {
            let Some(table) = Table::from_name(&table_name) else {
                continue;
            };
            let small: Vec<FileEntry> = files.into_iter().filter(|f| f.rows < target).collect();
            if small.len() < self.compaction.min_files {
                continue;
            }
            for bundle in bundles(small, target) {
                if bundle.len() < 2 {
                    continue;
                }
                let mut batches = Vec::with_capacity(bundle.len());
                for file in &bundle {
                    let stored = self.storage.read_parquet(&file.path).await?;
                    batches.push(crate::store::conform(table, &stored)?);
                }
                let merged = concat_batches(&table.schema(), &batches)?;
                let merged = sort_by_time(table, &merged)?;
                let stem = self.next_stem();
                let entry = self
                    .storage
                    .put_parquet(table, &date, &stem, &merged)
                    .await?;
                let removed: Vec<String> = bundle.iter().map(|f| f.path.clone()).collect();
                tracing::info!(table = table.name(), %date, files = removed.len(), rows = entry.rows, "Compacted");
                self.stats.compacted_files += removed.len() as u64;
                self.commit_replacement(vec![entry], removed).await?;
            }
        }
        Ok(())
    }

    /// Commits `added` in place of `removed` (offsets unchanged) and
    /// schedules the removed files for deletion after the grace period.
    async fn commit_replacement(
        &mut self,
        added: Vec<FileEntry>,
        removed: Vec<String>,
    ) -> Result<(), AggregatorError> {
        let offsets = self.state.offsets.clone();
        self.commit(added, removed.clone(), &offsets).await?;
        let grace = Duration::from_secs_f64(self.compaction.delete_grace_s);
        self.doomed.push((Instant::now() + grace, removed));
        Ok(())
    }
}

/// Bulk loading without Kafka (synthetic data, benchmarks, imports): the
/// same row buffers, Parquet files and manifest commits as the service.
pub struct Loader {
    writer: Writer,
}

impl Loader {
    /// Opens `storage` for writing (sweeping uncommitted files, reading back
    /// the dedup window) with default compaction settings.
    pub async fn open(storage: Storage) -> Result<Self, AggregatorError> {
        let writer = Writer::open_with(
            storage,
            crate::config::AggregatorConfig::DEFAULT_DEDUP_WINDOW_S,
            crate::config::CompactionConfig::default(),
            0,
        )
        .await?;
        Ok(Loader { writer })
    }

    /// Buffers one encoded message of `topic`.
    pub fn add_payload(&mut self, topic: &str, payload: &[u8]) -> Result<Added, wire::DecodeError> {
        add_payload(&mut self.writer.rows, topic, payload)
    }

    /// Buffers one synthetic event.
    pub fn add(&mut self, event: &crate::synth::SynthEvent) -> Added {
        use crate::synth::SynthEvent;
        let rows = &mut self.writer.rows;
        match event {
            SynthEvent::Presence(e) => rows.add_presence(e),
            SynthEvent::Merge(m) => rows.add_merge(m),
            SynthEvent::Health(h) => rows.add_health(h),
        }
    }

    /// Rows buffered and not yet written.
    pub fn pending(&self) -> usize {
        self.writer.rows.pending()
    }

    /// Writes and commits what is buffered, then forgets ids older than the window.
    pub async fn flush(&mut self) -> Result<(), AggregatorError> {
        self.writer
            .unwritten
            .extend(self.writer.rows.take_batches()?);
        self.writer.try_flush().await?;
        self.writer.rows.prune(now_us());
        Ok(())
    }

    /// Merges small files as the service's maintenance pass does.
    pub async fn compact(&mut self) -> Result<(), AggregatorError> {
        self.writer.compact().await
    }

    /// Deletes the files compaction replaced now, without a grace period
    /// (no reader may be using the storage).
    pub async fn purge_replaced(&mut self) -> Result<(), AggregatorError> {
        for (_, paths) in std::mem::take(&mut self.writer.doomed) {
            self.writer.storage.delete(&paths).await?;
        }
        Ok(())
    }

    /// Totals so far.
    pub fn stats(&self) -> &AggregatorStats {
        &self.writer.stats
    }
}

/// Tables retention never shortens: one row per person and per merge, and
/// dropping them would split people again (a merge chain loses a link) or
/// lose the first sighting of someone still coming back.
const KEPT_FOREVER: [Table; 2] = [Table::UniquePeople, Table::IdMerges];

/// Live files of partitions dated before `cutoff` (`YYYY-MM-DD`), except
/// those of [`KEPT_FOREVER`] tables.
fn expired_files(state: &State, cutoff: &str) -> Vec<String> {
    state
        .files
        .values()
        .filter(|f| f.date.as_str() < cutoff)
        .filter(|f| !KEPT_FOREVER.iter().any(|t| t.name() == f.table))
        .map(|f| f.path.clone())
        .collect()
}

/// Groups files, oldest name first, into bundles of at most `target` rows.
fn bundles(mut files: Vec<FileEntry>, target: u64) -> Vec<Vec<FileEntry>> {
    files.sort_by(|a, b| a.path.cmp(&b.path));
    let mut out: Vec<Vec<FileEntry>> = Vec::new();
    let mut rows = 0;
    for file in files {
        if out.is_empty() || rows + file.rows > target {
            out.push(Vec::new());
            rows = 0;
        }
        rows += file.rows;
        if let Some(last) = out.last_mut() {
            last.push(file);
        }
    }
    out
}

/// Reads back the event ids and person ids of the dedup window from the
/// committed tables, so a tracker replay after our restart is still dropped.
async fn remember_recent(
    storage: &Storage,
    rows: &mut Rows,
    window_s: f64,
) -> Result<(), QueryError> {
    let ctx = query::open(storage, &QueryOptions::default()).await?;
    let since_us = now_us() - (window_s * 1e6) as i64;
    let since_date = utc_date(since_us - 86_400_000_000);
    let events = format!(
        "SELECT event_id, exit AS ts FROM people_present_raw WHERE date >= '{since_date}' \
         UNION ALL SELECT event_id, ts FROM id_merges WHERE date >= '{since_date}' \
         UNION ALL SELECT event_id, last_seen AS ts FROM tracks_raw WHERE date >= '{since_date}'"
    );
    let mut events_read = 0;
    for batch in query::sql(&ctx, &events).await? {
        let ids = batch.column(0).as_string::<i32>();
        let ts = batch.column(1).as_primitive::<TimestampMicrosecondType>();
        events_read += batch.num_rows();
        rows.know_events((0..batch.num_rows()).map(|i| (ids.value(i).to_string(), ts.value(i))));
    }
    let actions = format!("SELECT action_id, ts FROM alert_actions WHERE date >= '{since_date}'");
    for batch in query::sql(&ctx, &actions).await? {
        let ids = batch.column(0).as_string::<i32>();
        let ts = batch.column(1).as_primitive::<TimestampMicrosecondType>();
        events_read += batch.num_rows();
        rows.know_events((0..batch.num_rows()).map(|i| (ids.value(i).to_string(), ts.value(i))));
    }
    let alerts = format!("SELECT alert_id, closed, ts FROM alerts WHERE date >= '{since_date}'");
    for batch in query::sql(&ctx, &alerts).await? {
        let ids = batch.column(0).as_string::<i32>();
        let closed = batch.column(1).as_boolean();
        let ts = batch.column(2).as_primitive::<TimestampMicrosecondType>();
        events_read += batch.num_rows();
        rows.know_events(
            (0..batch.num_rows()).map(|i| (alert_key(ids.value(i), closed.value(i)), ts.value(i))),
        );
    }
    let people = format!(
        "SELECT id, first_seen FROM unique_people_raw WHERE date >= '{since_date}' \
         UNION ALL SELECT person_id, exit FROM people_present_raw WHERE date >= '{since_date}'"
    );
    let mut people_read = 0;
    for batch in query::sql(&ctx, &people).await? {
        let ids = batch.column(0).as_primitive::<UInt64Type>();
        let ts = batch.column(1).as_primitive::<TimestampMicrosecondType>();
        people_read += batch.num_rows();
        rows.know_people(
            (0..batch.num_rows())
                .filter(|&i| ids.is_valid(i))
                .map(|i| (ids.value(i), ts.value(i))),
        );
    }
    let (events, people) = rows.remembered();
    tracing::info!(
        events_read,
        people_read,
        events,
        people,
        "Read back the dedup window"
    );
    Ok(())
}

/// Decodes a message by topic and buffers its rows.
fn add(rows: &mut Rows, message: &BorrowedMessage<'_>) -> Result<Added, wire::DecodeError> {
    add_payload(rows, message.topic(), message.payload().unwrap_or_default())
}

/// Decodes a payload of `topic` and buffers its rows (unknown topics add nothing).
pub fn add_payload(
    rows: &mut Rows,
    topic: &str,
    payload: &[u8],
) -> Result<Added, wire::DecodeError> {
    Ok(match topic {
        topics::PRESENCE => rows.add_presence(&wire::decode::<PresenceEvent>(payload)?),
        topics::DETECTIONS => rows.add_frame(&wire::decode::<FrameDetections>(payload)?),
        topics::CAMERA_HEALTH => rows.add_health(&wire::decode::<CameraHealth>(payload)?),
        topics::ALERTS => rows.add_alert(&wire::decode::<Alert>(payload)?),
        topics::ALERT_ACTIONS => rows.add_action(&wire::decode::<AlertAction>(payload)?),
        topics::IDENTITY => rows.add_merge(&wire::decode::<IdMerge>(payload)?),
        topics::TRACKS => rows.add_track(&wire::decode::<TrackSummary>(payload)?),
        _ => Added::default(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(name: &str, rows: u64) -> FileEntry {
        FileEntry {
            path: name.into(),
            table: "frames".into(),
            date: "2026-11-22".into(),
            rows,
            bytes: 1,
        }
    }

    #[test]
    fn retention_drops_old_partitions_but_keeps_people_and_merges() {
        let mut state = State::default();
        for (table, date) in [
            ("people_present", "2026-10-01"),
            ("frames", "2026-10-01"),
            ("unique_people", "2026-10-01"),
            ("id_merges", "2026-10-01"),
            ("people_present", "2026-11-20"),
        ] {
            let path = format!("{table}/date={date}/part-1.parquet");
            let file = FileEntry {
                path: path.clone(),
                table: table.into(),
                date: date.into(),
                rows: 1,
                bytes: 1,
            };
            state.files.insert(path, file);
        }
        let mut expired = expired_files(&state, "2026-11-01");
        expired.sort();
        assert_eq!(
            expired,
            vec![
                "frames/date=2026-10-01/part-1.parquet",
                "people_present/date=2026-10-01/part-1.parquet"
            ]
        );
        assert!(expired_files(&state, "2026-09-01").is_empty());
    }

    #[test]
    fn bundles_respect_the_target_and_keep_name_order() {
        let files = vec![
            entry("c", 40),
            entry("a", 60),
            entry("b", 50),
            entry("d", 100),
        ];
        let sizes: Vec<Vec<String>> = bundles(files, 100)
            .into_iter()
            .map(|b| b.into_iter().map(|f| f.path).collect())
            .collect();
        assert_eq!(sizes, vec![vec!["a"], vec!["b", "c"], vec!["d"]]);
    }
}
