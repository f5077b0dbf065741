//! `edge-agent`: thin entry point; the agent lives in the library.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use edge_agent::config::EdgeConfig;

/// Argus edge agent: decodes camera streams, detects people with a YOLO model
/// in ONNX Runtime, embeds their appearance and publishes compact detections
/// to Kafka. No pixels leave the edge.
#[derive(Debug, Parser)]
#[command(version)]
struct Args {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the agent until every camera has ended or SIGINT/SIGTERM.
    Run {
        /// TOML configuration (see deploy/config/edge-agent.toml).
        #[arg(long, short)]
        config: PathBuf,
    },
    /// Validate a configuration file and report every problem.
    CheckConfig {
        /// TOML configuration.
        config: PathBuf,
    },
    /// Model tooling.
    #[command(subcommand)]
    Model(ModelCommand),
}

#[derive(Debug, Subcommand)]
enum ModelCommand {
    /// Convert a darknet YOLO (v2 region or v3 heads) .cfg + .weights to ONNX.
    ImportDarknet {
        /// darknet .cfg file.
        #[arg(long)]
        cfg: PathBuf,
        /// darknet .weights file.
        #[arg(long)]
        weights: PathBuf,
        /// ONNX file to write.
        #[arg(long)]
        output: PathBuf,
    },
}

fn main() -> ExitCode {
    service_kit::logging::init();
    match Args::parse().command {
        Command::Run { config } => {
            let config = match EdgeConfig::load(&config) {
                Ok(config) => config,
                Err(error) => {
                    eprintln!("error: {error}");
                    return ExitCode::from(2);
                }
            };
            let runtime = match tokio::runtime::Runtime::new() {
                Ok(runtime) => runtime,
                Err(error) => {
                    eprintln!("error: cannot start the runtime: {error}");
                    return ExitCode::FAILURE;
                }
            };
            match runtime.block_on(edge_agent::run(config, service_kit::shutdown::signal())) {
                Ok(_) => ExitCode::SUCCESS,
                Err(error) => {
                    tracing::error!(%error, "Edge agent failed");
                    ExitCode::FAILURE
                }
            }
        }
        Command::CheckConfig { config } => match EdgeConfig::load(&config) {
            Ok(config) => {
                println!(
                    "{}: OK ({} cameras)",
                    config_path_display(&config),
                    config.cameras.len()
                );
                ExitCode::SUCCESS
            }
            Err(error) => {
                eprintln!("error: {error}");
                ExitCode::from(2)
            }
        },
        Command::Model(ModelCommand::ImportDarknet {
            cfg,
            weights,
            output,
        }) => {
            let started = std::time::Instant::now();
            match edge_agent::model::import_darknet(&cfg, &weights, &output) {
                Ok(spec) => {
                    println!(
                        "wrote {} in {:.2}s: {spec}",
                        output.display(),
                        started.elapsed().as_secs_f64()
                    );
                    ExitCode::SUCCESS
                }
                Err(error) => {
                    eprintln!("error: {error}");
                    ExitCode::FAILURE
                }
            }
        }
    }
}

fn config_path_display(config: &EdgeConfig) -> String {
    format!("detector {}", config.detector.model.display())
}
