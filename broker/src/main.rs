//! `broker`: an embedded Kafka-protocol broker for demos and tests.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;

/// Runs librdkafka's mock Kafka cluster on a loopback port and creates the
/// Argus topics. Prints the bootstrap address (host:port) on stdout. Data is
/// kept in memory only; use Apache Kafka in production.
#[derive(Debug, Parser)]
#[command(version)]
struct Args {
    /// Number of brokers in the cluster.
    #[arg(long, default_value_t = 1)]
    brokers: i32,
    /// Partitions per topic (default: each topic's own default).
    #[arg(long)]
    partitions: Option<i32>,
    /// Also write the bootstrap address to this file once listening.
    #[arg(long)]
    address_file: Option<PathBuf>,
}

fn main() -> ExitCode {
    service_kit::logging::init();
    let args = Args::parse();
    let config = broker::BrokerConfig {
        brokers: args.brokers,
        partitions: args.partitions,
        address_file: args.address_file,
    };
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            tracing::error!(%error, "Cannot start the runtime");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(broker::run(config, service_kit::shutdown::signal())) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            tracing::error!(%error, "Broker failed");
            ExitCode::FAILURE
        }
    }
}
