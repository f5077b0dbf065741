//! From the spool to Kafka: every outgoing message is first appended to the
//! durable spool (by [`publish`](crate::publish)); the sender here reads the
//! spool in order, keeps up to [`WINDOW`] records in flight to Kafka and
//! acknowledges them in the spool, in order, as Kafka confirms them.
//!
//! # Failures
//!
//! When a delivery fails (Kafka did not confirm it within the delivery
//! timeout, or refused it), the sender drops its producer, which makes
//! librdkafka give up everything it still holds, and waits for every
//! outstanding delivery report. Records Kafka confirmed after the failed one
//! are remembered and not sent again. It then rewinds the spool to the first
//! unacknowledged record and, after a back-off ([`BACKOFF_MIN`] doubling to
//! [`BACKOFF_MAX`]), sends that one record alone with a fresh producer (the
//! probe). When the probe is confirmed, the full window resumes and the
//! backlog goes out in order. A probe that Kafka refuses for good (too large,
//! invalid) is dropped, logged and counted: nothing else could get past it.
//!
//! So a camera's messages reach Kafka in spool order, once each, with two
//! exceptions, both duplicates: a record Kafka wrote but could not confirm
//! before the failure (its report was lost with the connection), and, after
//! a crash of the agent, records confirmed since the spool last saved its
//! acknowledgements (at most `spool.cursor_persist_interval_ms` ago). A fresh producer per attempt keeps librdkafka's
//! idempotence state consistent (a purged queue would leave a gap in its
//! sequence numbers).
//!
//! # Shutdown
//!
//! Once the input has ended the sender keeps going until the spool is empty
//! or the shutdown timeout has passed; then it drops the producer and syncs
//! the spool. Whatever Kafka has not confirmed stays in the spool and is sent
//! first at the next start.

use std::collections::{BTreeSet, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use futures::future::BoxFuture;
use futures::stream::FuturesOrdered;
use futures::{FutureExt, StreamExt};
use rdkafka::ClientConfig;
use rdkafka::client::ClientContext;
use rdkafka::config::RDKafkaLogLevel;
use rdkafka::error::KafkaError;
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::types::RDKafkaErrorCode;
use spool::{Record, Spool, SpoolError, SpoolStats};
use tokio::sync::Notify;
use tokio::time::Instant;

/// Most records in flight to Kafka at once: over 3 s of messages at 300
/// messages/s, far more than one round trip needs, and a few MB of memory.
pub const WINDOW: usize = 1000;
/// First pause after a failed attempt.
pub const BACKOFF_MIN: Duration = Duration::from_millis(500);
/// Longest pause between attempts: bounds how long the agent takes to
/// notice that Kafka is back.
pub const BACKOFF_MAX: Duration = Duration::from_secs(15);
/// Records read from the spool per blocking call.
const READ_BATCH: usize = 256;
/// Pause after a spool read error, or when librdkafka's queue is full with
/// nothing of ours in flight.
const RETRY_PAUSE: Duration = Duration::from_secs(1);
/// Bound on waiting for the reports of a dropped producer (librdkafka
/// itself gives up after 0.5 s).
const DROP_WAIT: Duration = Duration::from_secs(5);

/// The egress producer.
pub type EgressProducer = FutureProducer<EgressContext>;

/// Creates an egress producer from `config`.
pub fn create_producer(config: &ClientConfig) -> Result<EgressProducer, KafkaError> {
    config.create_with_context(EgressContext)
}

/// Where librdkafka's own messages go. A broker that cannot be reached is
/// what the spool is for: the sender reports its consequence, failed
/// deliveries, at WARN, so librdkafka's reports of lost connections are
/// DEBUG here, and its other errors WARN (the spool still holds the
/// messages; ERROR is for data loss).
#[derive(Debug, Clone, Copy, Default)]
pub struct EgressContext;

impl ClientContext for EgressContext {
    fn log(&self, level: RDKafkaLogLevel, facility: &str, message: &str) {
        match level {
            RDKafkaLogLevel::Emerg
            | RDKafkaLogLevel::Alert
            | RDKafkaLogLevel::Critical
            | RDKafkaLogLevel::Error
            | RDKafkaLogLevel::Warning
                if facility != CONNECTION_FAILED =>
            {
                tracing::warn!(facility, "librdkafka: {message}");
            }
            RDKafkaLogLevel::Notice | RDKafkaLogLevel::Info => {
                tracing::info!(facility, "librdkafka: {message}");
            }
            _ => tracing::debug!(facility, "librdkafka: {message}"),
        }
    }

    fn error(&self, error: KafkaError, reason: &str) {
        let unreachable = matches!(
            error.rdkafka_error_code(),
            Some(
                RDKafkaErrorCode::AllBrokersDown
                    | RDKafkaErrorCode::BrokerTransportFailure
                    | RDKafkaErrorCode::Resolve
            )
        );
        if unreachable {
            tracing::debug!(%error, reason, "Kafka unreachable");
        } else {
            tracing::warn!(%error, reason, "Kafka client error");
        }
    }
}

/// librdkafka's log facility for a failed broker connection.
const CONNECTION_FAILED: &str = "FAIL";

/// Live counters of the egress, readable from any thread (metrics, logs).
/// Counts are since the agent started.
#[derive(Debug, Default)]
pub struct EgressStats {
    /// Records written to the spool.
    pub spooled_records: AtomicU64,
    /// Records in the spool that Kafka has not confirmed yet.
    pub pending_records: AtomicU64,
    /// Their bytes on disk.
    pub pending_bytes: AtomicU64,
    /// Unsent records dropped because the spool was full (data loss).
    pub dropped_records: AtomicU64,
    /// Their bytes on disk.
    pub dropped_bytes: AtomicU64,
    /// Messages that could not be written to the spool (data loss).
    pub unspooled_records: AtomicU64,
    /// Records Kafka confirmed.
    pub delivered_records: AtomicU64,
    /// Deliveries that failed (each record is sent again from the spool).
    pub delivery_errors: AtomicU64,
    /// Records handed to Kafka again: after a failed delivery, or left in
    /// the spool by a previous run.
    pub replayed_records: AtomicU64,
    /// Records Kafka refused for good, dropped (data loss).
    pub rejected_records: AtomicU64,
    /// Unsent records found in the spool at start.
    pub recovered_records: AtomicU64,
    /// Deliveries are failing: from a failed delivery to the next confirmed one.
    pub kafka_failing: AtomicBool,
    /// Since when (Unix microseconds) deliveries have been failing; 0 while
    /// they succeed.
    pub failing_since_us: AtomicI64,
}

/// A snapshot of [`EgressStats`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct EgressSummary {
    /// See [`EgressStats::spooled_records`].
    pub spooled_records: u64,
    /// See [`EgressStats::pending_records`].
    pub pending_records: u64,
    /// See [`EgressStats::pending_bytes`].
    pub pending_bytes: u64,
    /// See [`EgressStats::dropped_records`].
    pub dropped_records: u64,
    /// See [`EgressStats::dropped_bytes`].
    pub dropped_bytes: u64,
    /// See [`EgressStats::unspooled_records`].
    pub unspooled_records: u64,
    /// See [`EgressStats::delivered_records`].
    pub delivered_records: u64,
    /// See [`EgressStats::delivery_errors`].
    pub delivery_errors: u64,
    /// See [`EgressStats::replayed_records`].
    pub replayed_records: u64,
    /// See [`EgressStats::rejected_records`].
    pub rejected_records: u64,
    /// See [`EgressStats::recovered_records`].
    pub recovered_records: u64,
    /// See [`EgressStats::kafka_failing`].
    pub kafka_failing: bool,
}

impl EgressStats {
    /// The counters now.
    pub fn summary(&self) -> EgressSummary {
        let get = |counter: &AtomicU64| counter.load(Ordering::Relaxed);
        EgressSummary {
            spooled_records: get(&self.spooled_records),
            pending_records: get(&self.pending_records),
            pending_bytes: get(&self.pending_bytes),
            dropped_records: get(&self.dropped_records),
            dropped_bytes: get(&self.dropped_bytes),
            unspooled_records: get(&self.unspooled_records),
            delivered_records: get(&self.delivered_records),
            delivery_errors: get(&self.delivery_errors),
            replayed_records: get(&self.replayed_records),
            rejected_records: get(&self.rejected_records),
            recovered_records: get(&self.recovered_records),
            kafka_failing: self.kafka_failing.load(Ordering::Relaxed),
        }
    }

    /// Copies the spool's sizes and counters (they are since open, as ours).
    fn record_spool(&self, stats: &SpoolStats) {
        let set = |counter: &AtomicU64, value: u64| counter.store(value, Ordering::Relaxed);
        set(&self.spooled_records, stats.appended);
        set(&self.pending_records, stats.pending_records);
        set(&self.pending_bytes, stats.pending_bytes);
        set(&self.dropped_records, stats.dropped_records);
        set(&self.dropped_bytes, stats.dropped_bytes);
    }

    fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }
}

/// What the spool writer and the sender share.
pub(crate) struct Shared {
    spool: Mutex<Spool>,
    /// Signalled after appends and when the input has ended.
    wake: Notify,
    /// The writer has appended its last record.
    input_closed: AtomicBool,
    pub(crate) stats: Arc<EgressStats>,
}

impl Shared {
    pub(crate) fn new(spool: Spool, stats: Arc<EgressStats>) -> Self {
        stats.record_spool(&spool.stats());
        Shared {
            spool: Mutex::new(spool),
            wake: Notify::new(),
            input_closed: AtomicBool::new(false),
            stats,
        }
    }

    /// Runs `f` on the spool in a blocking thread, then refreshes the
    /// spool's counters.
    pub(crate) async fn with_spool<T: Send + 'static>(
        self: &Arc<Self>,
        f: impl FnOnce(&mut Spool) -> T + Send + 'static,
    ) -> T {
        let shared = Arc::clone(self);
        let task = tokio::task::spawn_blocking(move || {
            let mut spool = shared.lock();
            let result = f(&mut spool);
            shared.stats.record_spool(&spool.stats());
            result
        });
        match task.await {
            Ok(result) => result,
            Err(error) if error.is_panic() => std::panic::resume_unwind(error.into_panic()),
            // Cancelled: the runtime is shutting down and drops this task
            // at its next await; there is nothing left to do.
            Err(_) => std::future::pending().await,
        }
    }

    /// The spool; a panic while it was held does not make it unusable (its
    /// methods leave it consistent when they fail).
    fn lock(&self) -> MutexGuard<'_, Spool> {
        self.spool.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// New records are in the spool.
    pub(crate) fn appended(&self) {
        self.wake.notify_one();
    }

    /// No more records will be appended.
    pub(crate) fn close_input(&self) {
        self.input_closed.store(true, Ordering::Release);
        self.wake.notify_one();
    }
}

/// How a record's delivery ended.
enum Outcome {
    /// Kafka confirmed it.
    Delivered,
    /// Kafka confirmed it before a failure of an earlier record; not sent again.
    Skipped,
    /// It failed (or its producer was dropped).
    Failed(KafkaError),
}

/// Where the sender stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Sending with the full window.
    Flowing,
    /// A delivery failed: no new sends until every outstanding report is in.
    Draining,
    /// Waiting until the next attempt.
    BackingOff(Instant),
    /// One record in flight to learn whether Kafka takes messages again.
    Probing,
}

/// What one blocking call on the spool did.
struct SpoolIo {
    records: Vec<(u64, Record)>,
    /// Every appended record has been read.
    exhausted: bool,
    /// Every record is acknowledged (or dropped).
    empty: bool,
    error: Option<SpoolError>,
}

/// The sender: spool → Kafka. See the module docs.
pub(crate) struct Sender {
    shared: Arc<Shared>,
    producer_config: ClientConfig,
    producer: Option<EgressProducer>,
    in_flight: FuturesOrdered<BoxFuture<'static, (u64, Outcome)>>,
    /// Read from the spool, not yet handed to Kafka.
    unsent: VecDeque<(u64, Record)>,
    /// Confirmed by Kafka after an earlier record failed: skipped when the
    /// spool replays them.
    delivered_ahead: BTreeSet<u64>,
    /// Everything up to here is confirmed; not yet acknowledged in the spool.
    ack_to: Option<u64>,
    /// Highest sequence number handed to Kafka (replays are below it).
    sent_up_to: u64,
    state: State,
    /// Failed attempts in a row (the back-off grows with them).
    failures: u32,
    /// When deliveries started failing.
    outage_since: Option<Instant>,
    /// A record was refused at once; nothing more is sent until its outcome
    /// is handled.
    halted_at: Option<u64>,
    /// librdkafka's queue is full: wait for a report before sending more.
    queue_full: bool,
    /// The spool has nothing more to read until the next append.
    exhausted: bool,
    /// The spool held no unacknowledged record at the last look.
    spool_empty: bool,
    /// Send and read nothing before this (after a spool read error).
    paused_until: Option<Instant>,
    shutdown_timeout: Duration,
    /// Set once the input has ended.
    deadline: Option<Instant>,
}

impl Sender {
    /// A sender over `shared`'s spool. `producer` was made from
    /// `producer_config`; `recovered_up_to` is the last sequence number a
    /// previous run may have sent.
    pub(crate) fn new(
        shared: Arc<Shared>,
        producer_config: ClientConfig,
        producer: EgressProducer,
        recovered_up_to: u64,
        shutdown_timeout: Duration,
    ) -> Self {
        Sender {
            shared,
            producer_config,
            producer: Some(producer),
            in_flight: FuturesOrdered::new(),
            unsent: VecDeque::new(),
            delivered_ahead: BTreeSet::new(),
            ack_to: None,
            sent_up_to: recovered_up_to,
            state: State::Flowing,
            failures: 0,
            outage_since: None,
            halted_at: None,
            queue_full: false,
            exhausted: false,
            spool_empty: false,
            paused_until: None,
            shutdown_timeout,
            deadline: None,
        }
    }

    /// Sends until the input has ended and the spool is empty, or the
    /// shutdown timeout has passed after the end of the input.
    pub(crate) async fn run(mut self) {
        loop {
            if self.deadline.is_none() && self.shared.input_closed.load(Ordering::Acquire) {
                self.deadline = Some(Instant::now() + self.shutdown_timeout);
            }
            let now = Instant::now();
            if self.state == State::Draining && self.in_flight.is_empty() {
                self.restart_from_spool().await;
            }
            if let State::BackingOff(until) = self.state
                && now >= until
            {
                self.state = State::Probing;
            }
            if self.paused_until.is_some_and(|at| now >= at) {
                self.paused_until = None;
            }
            let want = self
                .room()
                .saturating_sub(self.unsent.len())
                .min(READ_BATCH);
            let read = want > 0 && !self.exhausted;
            if self.ack_to.is_some() || read {
                self.spool_io(false, if read { want } else { 0 }).await;
            }
            self.send_unsent();
            if self.deadline.is_some() && self.is_done() {
                break;
            }
            if self
                .deadline
                .is_some_and(|deadline| Instant::now() >= deadline)
            {
                tracing::warn!(
                    pending = self.shared.stats.pending_records.load(Ordering::Relaxed),
                    timeout_s = self.shutdown_timeout.as_secs_f64(),
                    "Kafka did not confirm everything before the shutdown timeout; the rest stays in the spool for the next start"
                );
                break;
            }
            let backoff = match self.state {
                State::BackingOff(until) => Some(until),
                _ => None,
            };
            let shared = Arc::clone(&self.shared);
            tokio::select! {
                biased;
                Some((seq, outcome)) = self.in_flight.next(), if !self.in_flight.is_empty() => {
                    self.on_outcome(seq, outcome);
                    // Take every report that is in, then acknowledge once.
                    while let Some(Some((seq, outcome))) = self.in_flight.next().now_or_never() {
                        self.on_outcome(seq, outcome);
                    }
                }
                () = shared.wake.notified() => self.exhausted = false,
                () = sleep_until(backoff), if backoff.is_some() => {}
                () = sleep_until(self.paused_until), if self.paused_until.is_some() => {}
                () = sleep_until(self.deadline), if self.deadline.is_some() => {}
            }
        }
        self.stop().await;
    }

    /// Records that may be handed to Kafka now.
    fn room(&self) -> usize {
        if self.halted_at.is_some() || self.queue_full || self.paused_until.is_some() {
            return 0;
        }
        let window = match self.state {
            State::Flowing => WINDOW,
            State::Probing => 1,
            State::Draining | State::BackingOff(_) => 0,
        };
        window.saturating_sub(self.in_flight.len())
    }

    /// Everything appended has been confirmed and acknowledged.
    fn is_done(&self) -> bool {
        self.shared.input_closed.load(Ordering::Acquire)
            && self.spool_empty
            && self.ack_to.is_none()
            && self.in_flight.is_empty()
            && self.unsent.is_empty()
    }

    /// One blocking call on the spool: acknowledges what is confirmed,
    /// rewinds if asked, reads up to `want` records.
    async fn spool_io(&mut self, rewind: bool, want: usize) {
        let ack = self.ack_to.take();
        let io = self
            .shared
            .with_spool(move |spool| {
                let mut io = SpoolIo {
                    records: Vec::new(),
                    exhausted: false,
                    empty: false,
                    error: None,
                };
                if let Some(upto) = ack
                    && let Err(error) = spool.ack(upto)
                {
                    // The acknowledgement holds in memory; the spool saves
                    // it with the next one.
                    io.error = Some(error);
                }
                if rewind {
                    spool.rewind();
                }
                while io.records.len() < want {
                    match spool.next() {
                        Ok(Some(record)) => io.records.push(record),
                        Ok(None) => {
                            io.exhausted = true;
                            break;
                        }
                        Err(error) => {
                            io.error = Some(error);
                            break;
                        }
                    }
                }
                io.empty = spool.is_empty();
                io
            })
            .await;
        if let Some(upto) = ack {
            self.delivered_ahead = self.delivered_ahead.split_off(&(upto + 1));
        }
        if let Some(error) = io.error {
            tracing::warn!(%error, "Cannot read or acknowledge in the spool; trying again");
            self.paused_until = Some(Instant::now() + RETRY_PAUSE);
        }
        if want > 0 {
            self.exhausted = io.exhausted;
        }
        self.spool_empty = io.empty;
        self.unsent.extend(io.records);
    }

    /// Hands unsent records to Kafka while there is room.
    fn send_unsent(&mut self) {
        while self.room() > 0 {
            let Some((seq, record)) = self.unsent.pop_front() else {
                return;
            };
            if self.delivered_ahead.remove(&seq) {
                self.in_flight
                    .push_back(std::future::ready((seq, Outcome::Skipped)).boxed());
                continue;
            }
            if self.producer.is_none() {
                match create_producer(&self.producer_config) {
                    Ok(producer) => self.producer = Some(producer),
                    Err(error) => {
                        // The config was accepted at start; treat it as a
                        // failed attempt and try again after the back-off.
                        self.fail(error);
                        return;
                    }
                }
            }
            let Some(producer) = &self.producer else {
                return;
            };
            let message = FutureRecord::to(&record.topic)
                .key(&record.key)
                .payload(&record.payload)
                .timestamp(record.timestamp_ms);
            match producer.send_result(message).map_err(|(error, _)| error) {
                Ok(delivery) => {
                    if seq <= self.sent_up_to {
                        EgressStats::add(&self.shared.stats.replayed_records, 1);
                    } else {
                        self.sent_up_to = seq;
                    }
                    self.in_flight.push_back(
                        async move {
                            let outcome = match delivery.await {
                                Ok(Ok(_)) => Outcome::Delivered,
                                Ok(Err((error, _))) => Outcome::Failed(error),
                                Err(_) => Outcome::Failed(KafkaError::Canceled),
                            };
                            (seq, outcome)
                        }
                        .boxed(),
                    );
                }
                Err(KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull)) => {
                    self.unsent.push_front((seq, record));
                    if self.in_flight.is_empty() {
                        // Full of someone else's messages: look again later.
                        self.paused_until = Some(Instant::now() + RETRY_PAUSE);
                    } else {
                        self.queue_full = true;
                    }
                    return;
                }
                Err(error) => {
                    // Refused at once (e.g. larger than message.max.bytes):
                    // handled in order, like a failed delivery.
                    self.in_flight
                        .push_back(std::future::ready((seq, Outcome::Failed(error))).boxed());
                    self.halted_at = Some(seq);
                    return;
                }
            }
        }
    }

    /// Handles the delivery report of `seq` (reports come in send order).
    fn on_outcome(&mut self, seq: u64, outcome: Outcome) {
        self.queue_full = false;
        if self.halted_at == Some(seq) {
            self.halted_at = None;
        }
        let stats = Arc::clone(&self.shared.stats);
        match (self.state, outcome) {
            (State::Flowing | State::Probing, Outcome::Delivered) => {
                EgressStats::add(&stats.delivered_records, 1);
                self.ack_to = Some(seq);
                if self.failures > 0 {
                    self.failures = 0;
                    stats.kafka_failing.store(false, Ordering::Relaxed);
                    stats.failing_since_us.store(0, Ordering::Relaxed);
                    let outage = self.outage_since.take().map(|since| since.elapsed());
                    tracing::info!(
                        outage_s = outage.unwrap_or_default().as_secs_f64(),
                        pending = stats.pending_records.load(Ordering::Relaxed),
                        "Kafka confirms deliveries again; sending the spooled backlog"
                    );
                }
                self.state = State::Flowing;
            }
            (State::Flowing | State::Probing, Outcome::Skipped) => self.ack_to = Some(seq),
            (State::Probing, Outcome::Failed(error)) if is_permanent(&error) => {
                // Alone in flight, so the error is about this record.
                EgressStats::add(&stats.delivery_errors, 1);
                EgressStats::add(&stats.rejected_records, 1);
                tracing::error!(%error, seq, "Kafka refuses a message for good; dropped");
                self.ack_to = Some(seq);
            }
            (State::Flowing | State::Probing, Outcome::Failed(error)) => {
                EgressStats::add(&stats.delivery_errors, 1);
                self.fail(error);
            }
            // After a failure: later records Kafka took anyway are not sent
            // again; the rest will be.
            (State::Draining | State::BackingOff(_), Outcome::Delivered) => {
                EgressStats::add(&stats.delivered_records, 1);
                self.delivered_ahead.insert(seq);
            }
            (State::Draining | State::BackingOff(_), Outcome::Skipped) => {
                self.delivered_ahead.insert(seq);
            }
            (State::Draining | State::BackingOff(_), Outcome::Failed(error)) => {
                if !is_ours(&error) {
                    EgressStats::add(&stats.delivery_errors, 1);
                }
            }
        }
    }

    /// A delivery failed: stop sending, drop the producer (librdkafka fails
    /// what it still holds) and wait for the outstanding reports.
    fn fail(&mut self, error: KafkaError) {
        self.failures = self.failures.saturating_add(1);
        self.shared
            .stats
            .kafka_failing
            .store(true, Ordering::Relaxed);
        let pending = self.shared.stats.pending_records.load(Ordering::Relaxed);
        if self.outage_since.is_none() {
            self.outage_since = Some(Instant::now());
            self.shared
                .stats
                .failing_since_us
                .store(service_kit::clock::now_us(), Ordering::Relaxed);
            tracing::warn!(%error, pending, "Kafka delivery failed; keeping messages in the spool and retrying");
        } else {
            tracing::warn!(%error, pending, attempts = self.failures, "Kafka delivery still failing; retrying");
        }
        self.state = State::Draining;
        self.unsent.clear();
        self.halted_at = None;
        self.queue_full = false;
        if let Some(producer) = self.producer.take() {
            // Dropping purges librdkafka's queues and waits up to 0.5 s for
            // the reports: not on the runtime's threads.
            drop(tokio::task::spawn_blocking(move || drop(producer)));
        }
    }

    /// Every report of the failed attempt is in: rewind the spool to the
    /// first unacknowledged record and back off.
    async fn restart_from_spool(&mut self) {
        self.spool_io(true, 0).await;
        self.exhausted = false;
        let pause = BACKOFF_MIN
            .saturating_mul(1 << self.failures.saturating_sub(1).min(16))
            .min(BACKOFF_MAX);
        self.state = State::BackingOff(Instant::now() + pause);
    }

    /// Drops the producer, takes in the last reports, acknowledges what was
    /// confirmed in order, and syncs the spool.
    async fn stop(mut self) {
        if let Some(producer) = self.producer.take() {
            // Purges what librdkafka holds; the reports come back as errors.
            let dropped = tokio::task::spawn_blocking(move || drop(producer));
            let _ = tokio::time::timeout(DROP_WAIT, dropped).await;
        }
        let mut failed = self.state != State::Flowing && self.state != State::Probing;
        let reports = tokio::time::timeout(DROP_WAIT, async {
            while let Some((seq, outcome)) = self.in_flight.next().await {
                match outcome {
                    Outcome::Delivered if !failed => {
                        EgressStats::add(&self.shared.stats.delivered_records, 1);
                        self.ack_to = Some(seq);
                    }
                    Outcome::Skipped if !failed => self.ack_to = Some(seq),
                    // Confirmed after an unconfirmed one: sent again next time.
                    Outcome::Delivered => {
                        EgressStats::add(&self.shared.stats.delivered_records, 1);
                    }
                    Outcome::Skipped => {}
                    Outcome::Failed(error) => {
                        if !is_ours(&error) {
                            EgressStats::add(&self.shared.stats.delivery_errors, 1);
                        }
                        failed = true;
                    }
                }
            }
        })
        .await;
        if reports.is_err() {
            tracing::warn!(
                "Delivery reports missing after the producer was dropped; those records stay in the spool"
            );
        }
        let ack = self.ack_to.take();
        let synced = self
            .shared
            .with_spool(move |spool| {
                if let Some(upto) = ack {
                    spool.ack(upto)?;
                }
                spool.sync()
            })
            .await;
        if let Err(error) = synced {
            tracing::warn!(%error, "Cannot sync the spool at shutdown; a power cut now could lose its newest records or replay confirmed ones");
        }
    }
}

/// Errors that no retry can fix: the record itself is unacceptable.
fn is_permanent(error: &KafkaError) -> bool {
    matches!(
        error.rdkafka_error_code(),
        Some(
            RDKafkaErrorCode::MessageSizeTooLarge
                | RDKafkaErrorCode::InvalidMessageSize
                | RDKafkaErrorCode::InvalidRecord
        )
    )
}

/// Failures the sender caused itself by dropping its producer.
fn is_ours(error: &KafkaError) -> bool {
    matches!(error, KafkaError::Canceled)
        || matches!(
            error.rdkafka_error_code(),
            Some(RDKafkaErrorCode::PurgeQueue | RDKafkaErrorCode::PurgeInflight)
        )
}

/// Sleeps until `at`; never completes for `None`.
async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn size_errors_are_permanent_and_timeouts_are_not() {
        let production = KafkaError::MessageProduction;
        assert!(is_permanent(&production(
            RDKafkaErrorCode::MessageSizeTooLarge
        )));
        assert!(is_permanent(&production(RDKafkaErrorCode::InvalidRecord)));
        assert!(!is_permanent(&production(
            RDKafkaErrorCode::MessageTimedOut
        )));
        assert!(!is_permanent(&production(
            RDKafkaErrorCode::MessageBatchTooLarge
        )));
        assert!(is_ours(&KafkaError::Canceled));
        assert!(is_ours(&production(RDKafkaErrorCode::PurgeQueue)));
        assert!(!is_ours(&production(RDKafkaErrorCode::MessageTimedOut)));
    }
}
