//! Kafka clients configured the same way in every service.
//!
//! Producers are idempotent (`enable.idempotence`, `acks=all`) and compress
//! with lz4; consumers start from the earliest offset of a new group and only
//! store an offset after the service has handled the message (and acknowledged
//! its outputs), so a crash re-delivers rather than loses.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use rdkafka::ClientConfig;
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::error::KafkaError;
use rdkafka::message::{BorrowedMessage, Message};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::util::Timeout;
use serde::Deserialize;

/// Connection settings shared by every Kafka client of a service.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct KafkaSettings {
    /// Broker list, as Kafka's `bootstrap.servers` (`host:port,host:port`).
    /// Environment override: `ARGUS_KAFKA_BOOTSTRAP_SERVERS`.
    pub bootstrap_servers: String,
    /// Extra librdkafka properties passed through verbatim, e.g.
    /// `security.protocol`, `sasl.mechanisms`. They override the defaults.
    #[serde(default)]
    pub properties: BTreeMap<String, String>,
}

/// Environment variable that overrides `bootstrap_servers` in every service.
pub const BOOTSTRAP_ENV: &str = "ARGUS_KAFKA_BOOTSTRAP_SERVERS";

impl KafkaSettings {
    /// Settings for `bootstrap_servers` with no extra properties.
    pub fn new(bootstrap_servers: impl Into<String>) -> Self {
        KafkaSettings {
            bootstrap_servers: bootstrap_servers.into(),
            properties: BTreeMap::new(),
        }
    }

    /// Applies [`BOOTSTRAP_ENV`] when it is set and not empty.
    pub fn apply_env(&mut self) {
        if let Ok(servers) = std::env::var(BOOTSTRAP_ENV)
            && !servers.trim().is_empty()
        {
            self.bootstrap_servers = servers;
        }
    }

    fn base(&self, client_id: &str) -> ClientConfig {
        let mut config = ClientConfig::new();
        config
            .set("bootstrap.servers", &self.bootstrap_servers)
            .set("client.id", client_id);
        config
    }

    fn with_overrides(&self, mut config: ClientConfig) -> ClientConfig {
        for (key, value) in &self.properties {
            config.set(key, value);
        }
        config
    }

    /// An idempotent, lz4-compressing producer.
    pub fn producer(&self, client_id: &str) -> Result<FutureProducer, KafkaError> {
        let mut config = self.base(client_id);
        config
            .set("enable.idempotence", "true")
            .set("acks", "all")
            .set("compression.type", "lz4")
            .set("linger.ms", "20")
            // Keep retrying for 5 minutes before a delivery is reported failed.
            .set("message.timeout.ms", "300000");
        self.with_overrides(config).create()
    }

    /// A consumer in `group_id` subscribed to `topics`. Offsets are stored
    /// explicitly with [`StreamConsumer::store_offset_from_message`] once a
    /// message is handled, and committed in the background.
    pub fn consumer(
        &self,
        client_id: &str,
        group_id: &str,
        topics: &[&str],
    ) -> Result<StreamConsumer, KafkaError> {
        let mut config = self.base(client_id);
        config
            .set("group.id", group_id)
            .set("auto.offset.reset", "earliest")
            .set("enable.auto.commit", "true")
            .set("auto.commit.interval.ms", "1000")
            .set("enable.auto.offset.store", "false")
            .set("enable.partition.eof", "false");
        let consumer: StreamConsumer = self.with_overrides(config).create()?;
        consumer.subscribe(topics)?;
        Ok(consumer)
    }
}

/// Sends one message and waits until Kafka acknowledged it (or `timeout`
/// passed in the producer's queue).
pub async fn send(
    producer: &FutureProducer,
    topic: &str,
    key: &[u8],
    payload: &[u8],
    timeout: Timeout,
) -> Result<(), KafkaError> {
    let record = FutureRecord::to(topic).key(key).payload(payload);
    producer
        .send(record, timeout)
        .await
        .map(|_| ())
        .map_err(|(error, _)| error)
}

/// Tracks the next offset to read per partition, to know when a consumer has
/// caught up with everything written before a shutdown (the drain).
#[derive(Debug, Default)]
pub struct Progress {
    next: HashMap<(String, i32), i64>,
}

impl Progress {
    /// Records that `message` has been handled.
    pub fn record(&mut self, message: &BorrowedMessage<'_>) {
        self.next.insert(
            (message.topic().to_string(), message.partition()),
            message.offset() + 1,
        );
    }

    /// True when every assigned partition has been read up to its high
    /// watermark. An empty assignment is not caught up (the group may still be
    /// rebalancing); callers bound the wait with a deadline.
    pub fn caught_up(
        &self,
        consumer: &StreamConsumer,
        timeout: Duration,
    ) -> Result<bool, KafkaError> {
        let assignment = consumer.assignment()?;
        if assignment.count() == 0 {
            return Ok(false);
        }
        // Where the group stood before this run: covers partitions with nothing new.
        let committed = consumer.committed_offsets(assignment.clone(), timeout)?;
        for element in assignment.elements() {
            let (topic, partition) = (element.topic(), element.partition());
            let (low, high) = consumer.fetch_watermarks(topic, partition, timeout)?;
            if high <= low {
                continue;
            }
            let read = self.next.get(&(topic.to_string(), partition)).copied();
            let start = committed
                .find_partition(topic, partition)
                .and_then(|p| p.offset().to_raw())
                .filter(|offset| *offset >= 0);
            if read.or(start).unwrap_or(low) < high {
                return Ok(false);
            }
        }
        Ok(true)
    }
}
