//! Kafka clients configured the same way in every service.
//!
//! Producers are idempotent (`enable.idempotence`, `acks=all`) and compress
//! with lz4 unless a service tunes them ([`ProducerTuning`]); consumers start
//! from the earliest offset of a new group and only store an offset after the
//! service has handled the message (and acknowledged its outputs), so a crash
//! re-delivers rather than loses.

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

/// How a producer compresses its message batches (`compression.type`).
#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Compression {
    /// No compression.
    None,
    /// gzip: small, slow.
    Gzip,
    /// Snappy.
    Snappy,
    /// LZ4: fast, the default.
    #[default]
    Lz4,
    /// Zstandard: smallest at a moderate CPU cost.
    Zstd,
}

impl Compression {
    /// librdkafka's name of the codec.
    pub const fn as_str(self) -> &'static str {
        match self {
            Compression::None => "none",
            Compression::Gzip => "gzip",
            Compression::Snappy => "snappy",
            Compression::Lz4 => "lz4",
            Compression::Zstd => "zstd",
        }
    }
}

/// Producer settings a service may tune. Idempotence and `acks=all` are not
/// among them (see [`KafkaSettings::producer_config`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProducerTuning {
    /// Batch compression (`compression.type`).
    pub compression: Compression,
    /// How long a batch waits to fill before it is sent (`linger.ms`).
    pub linger: Duration,
    /// Largest batch in bytes (`batch.size`).
    pub batch_size: u32,
    /// How long librdkafka tries to deliver a message before it reports the
    /// delivery failed (`message.timeout.ms`).
    pub delivery_timeout: Duration,
}

impl Default for ProducerTuning {
    /// lz4; 20 ms linger (a few frames of every camera per batch at 5 fps);
    /// librdkafka's own 1 MB batch size; 5 minutes of retries before a
    /// delivery is reported failed.
    fn default() -> Self {
        ProducerTuning {
            compression: Compression::Lz4,
            linger: Duration::from_millis(20),
            batch_size: 1_000_000,
            delivery_timeout: Duration::from_secs(300),
        }
    }
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

    /// An idempotent, lz4-compressing producer with the default
    /// [`ProducerTuning`].
    pub fn producer(&self, client_id: &str) -> Result<FutureProducer, KafkaError> {
        self.producer_config(client_id, &ProducerTuning::default())
            .create()
    }

    /// The configuration of an idempotent producer tuned by `tuning`, with
    /// [`properties`](Self::properties) applied last. Create producers from
    /// it with [`ClientConfig::create`] (a service that replaces its
    /// producer after failures keeps the configuration).
    ///
    /// `enable.idempotence = true` and `acks = all` are always set (a
    /// `properties` entry can still override them, at the operator's risk):
    /// the broker then writes a message only once all in-sync replicas have
    /// it, and librdkafka's internal retries neither duplicate nor reorder
    /// messages of a partition, which per-camera order depends on.
    pub fn producer_config(&self, client_id: &str, tuning: &ProducerTuning) -> ClientConfig {
        let mut config = self.base(client_id);
        config
            .set("enable.idempotence", "true")
            .set("acks", "all")
            .set("compression.type", tuning.compression.as_str())
            .set("linger.ms", tuning.linger.as_millis().to_string())
            .set("batch.size", tuning.batch_size.to_string())
            .set(
                "message.timeout.ms",
                tuning.delivery_timeout.as_millis().to_string(),
            );
        self.with_overrides(config)
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_compression_is_supported_by_this_build() {
        let settings = KafkaSettings::new("127.0.0.1:1");
        for compression in [
            Compression::None,
            Compression::Gzip,
            Compression::Snappy,
            Compression::Lz4,
            Compression::Zstd,
        ] {
            let tuning = ProducerTuning {
                compression,
                ..ProducerTuning::default()
            };
            let config = settings.producer_config("test", &tuning);
            assert_eq!(config.get("compression.type"), Some(compression.as_str()));
            let producer: Result<FutureProducer, _> = config.create();
            assert!(producer.is_ok(), "{compression:?}: {:?}", producer.err());
        }
    }

    #[test]
    fn tuning_is_applied_and_properties_win() {
        let mut settings = KafkaSettings::new("127.0.0.1:1");
        settings.properties.insert("linger.ms".into(), "5".into());
        let tuning = ProducerTuning {
            compression: Compression::Zstd,
            linger: Duration::from_millis(50),
            batch_size: 65_536,
            delivery_timeout: Duration::from_secs(12),
        };
        let config = settings.producer_config("edge", &tuning);
        for (key, value) in [
            ("client.id", "edge"),
            ("enable.idempotence", "true"),
            ("acks", "all"),
            ("compression.type", "zstd"),
            ("linger.ms", "5"),
            ("batch.size", "65536"),
            ("message.timeout.ms", "12000"),
        ] {
            assert_eq!(config.get(key), Some(value), "{key}");
        }
        let defaults =
            KafkaSettings::new("127.0.0.1:1").producer_config("x", &ProducerTuning::default());
        assert_eq!(defaults.get("compression.type"), Some("lz4"));
        assert_eq!(defaults.get("linger.ms"), Some("20"));
        assert_eq!(defaults.get("message.timeout.ms"), Some("300000"));
    }

    #[test]
    fn compression_names_parse() {
        #[derive(Debug, Deserialize)]
        struct Wrapper {
            c: Compression,
        }
        let parsed: Wrapper = toml::from_str(r#"c = "zstd""#).unwrap();
        assert_eq!(parsed.c, Compression::Zstd);
        assert!(toml::from_str::<Wrapper>(r#"c = "brotli""#).is_err());
    }
}
