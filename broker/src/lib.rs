//! An embedded Kafka-protocol broker for demos and tests.
//!
//! It hosts librdkafka's mock cluster, which speaks the real Kafka protocol on
//! a loopback TCP port (produce, fetch, consumer groups, offset commits), so the
//! services talk to it exactly as they would to Apache Kafka. Data is held in
//! this process's memory only: it is a demo and test broker, not storage. In
//! production point the services' `bootstrap_servers` at a Kafka cluster
//! instead (see `deploy/`).
//!
//! # Layout
//! - [`EmbeddedBroker`]: start a cluster and create the Argus topics; take
//!   its brokers down and up again to test outages.
//! - [`run`]: the `broker` command: start, announce the address, wait for shutdown.

use std::future::Future;
use std::path::PathBuf;

use rdkafka::mocking::MockCluster;
use rdkafka::producer::DefaultProducerContext;

/// The broker could not be started.
#[derive(Debug, thiserror::Error)]
pub enum BrokerError {
    /// librdkafka refused to create the cluster or a topic.
    #[error("mock cluster: {0}")]
    Kafka(#[from] rdkafka::error::KafkaError),
    /// The address file could not be written.
    #[error("cannot write {path}: {source}")]
    AddressFile {
        /// File path.
        path: PathBuf,
        /// I/O error.
        source: std::io::Error,
    },
}

/// A running mock cluster with the Argus topics. Dropping it stops the broker.
/// Not `Send`: keep it on the thread that made it.
pub struct EmbeddedBroker {
    cluster: MockCluster<'static, DefaultProducerContext>,
}

impl std::fmt::Debug for EmbeddedBroker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EmbeddedBroker")
            .field("bootstrap_servers", &self.bootstrap_servers())
            .finish()
    }
}

impl EmbeddedBroker {
    /// Starts a cluster of `brokers` brokers on loopback and creates every
    /// topic in [`schemas::topics::ALL`] with `partitions` partitions each
    /// (`None` keeps each topic's default).
    pub fn start(brokers: i32, partitions: Option<i32>) -> Result<Self, BrokerError> {
        let cluster = MockCluster::new(brokers)?;
        for (topic, default_partitions) in schemas::topics::ALL {
            cluster.create_topic(topic, partitions.unwrap_or(default_partitions), 1)?;
        }
        Ok(EmbeddedBroker { cluster })
    }

    /// The `bootstrap.servers` string for clients (127.0.0.1 ports).
    pub fn bootstrap_servers(&self) -> String {
        self.cluster.bootstrap_servers()
    }

    /// Takes every broker down, as in an outage: open connections are
    /// closed and new ones refused until [`broker_up`](Self::broker_up).
    /// The data and the listening ports are kept. Leadership does not move.
    pub fn broker_down(&self) -> Result<(), BrokerError> {
        Ok(self.cluster.broker_down(ALL_BROKERS)?)
    }

    /// Lets every broker accept connections again after
    /// [`broker_down`](Self::broker_down).
    pub fn broker_up(&self) -> Result<(), BrokerError> {
        Ok(self.cluster.broker_up(ALL_BROKERS)?)
    }
}

/// librdkafka's mock API: broker id -1 addresses every broker.
const ALL_BROKERS: i32 = -1;

/// Settings of the `broker` command.
#[derive(Debug, Clone)]
pub struct BrokerConfig {
    /// Number of brokers in the mock cluster.
    pub brokers: i32,
    /// Partitions per topic; `None` uses each topic's default.
    pub partitions: Option<i32>,
    /// Where to write the bootstrap address once listening (for scripts).
    pub address_file: Option<PathBuf>,
}

/// Runs the broker until `shutdown` completes. Prints the bootstrap address
/// on stdout (one line) and writes it to the address file, if configured.
pub async fn run(
    config: BrokerConfig,
    shutdown: impl Future<Output = ()>,
) -> Result<(), BrokerError> {
    let broker = EmbeddedBroker::start(config.brokers, config.partitions)?;
    let address = broker.bootstrap_servers();
    if let Some(path) = &config.address_file {
        let tmp = path.with_extension("tmp");
        std::fs::write(&tmp, format!("{address}\n"))
            .and_then(|()| std::fs::rename(&tmp, path))
            .map_err(|source| BrokerError::AddressFile {
                path: path.clone(),
                source,
            })?;
    }
    println!("{address}");
    tracing::info!(bootstrap_servers = %address, topics = schemas::topics::ALL.len(), "Broker listening");
    shutdown.await;
    tracing::info!("Broker stopping; its in-memory data is discarded");
    drop(broker);
    if let Some(path) = &config.address_file {
        let _ = std::fs::remove_file(path);
    }
    Ok(())
}
