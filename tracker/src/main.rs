//! `tracker`: thin entry point; the service lives in the library.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use tracker::config::TrackerConfig;

/// Argus tracker: consumes detections, tracks people per camera,
/// re-identifies them across cameras and publishes presence events.
#[derive(Debug, Parser)]
#[command(version)]
struct Args {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run until SIGINT/SIGTERM, then drain, close open tracks and exit.
    Run {
        /// TOML configuration (see deploy/config/tracker.toml).
        #[arg(long, short)]
        config: PathBuf,
    },
    /// Validate a configuration file and report every problem.
    CheckConfig {
        /// TOML configuration.
        config: PathBuf,
    },
}

fn main() -> ExitCode {
    service_kit::logging::init();
    let (path, check_only) = match Args::parse().command {
        Command::Run { config } => (config, false),
        Command::CheckConfig { config } => (config, true),
    };
    let config = match TrackerConfig::load(&path) {
        Ok(config) => config,
        Err(error) => {
            eprintln!("error: {error}");
            return ExitCode::from(2);
        }
    };
    if check_only {
        println!("{}: OK", path.display());
        return ExitCode::SUCCESS;
    }
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("error: cannot start the runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(tracker::run(config, service_kit::shutdown::signal())) {
        Ok(_) => ExitCode::SUCCESS,
        Err(error) => {
            tracing::error!(%error, "Tracker failed");
            ExitCode::FAILURE
        }
    }
}
