//! `aggregator`: thin entry point; the service lives in the library.

use std::path::PathBuf;
use std::process::ExitCode;

use aggregator::config::AggregatorConfig;
use clap::{Parser, Subcommand};

/// Argus aggregator: writes presence, frame, health and alert events to
/// Parquet tables and answers SQL over them with DataFusion.
#[derive(Debug, Parser)]
#[command(version)]
struct Args {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run until SIGINT/SIGTERM, then drain, write the last rows and exit.
    Run {
        /// TOML configuration (see deploy/config/aggregator.toml).
        #[arg(long, short)]
        config: PathBuf,
    },
    /// Validate a configuration file and report every problem.
    CheckConfig {
        /// TOML configuration.
        config: PathBuf,
    },
    /// Run SQL over the tables and print the result. Tables: people_present,
    /// unique_people, frames, camera_health, alerts; view: transitions.
    Sql {
        /// Directory holding the tables (the `data_dir` of the config).
        #[arg(long)]
        data_dir: PathBuf,
        /// Print the statement before its result.
        #[arg(long)]
        echo: bool,
        /// SQL statements, run in order.
        #[arg(required = true)]
        statements: Vec<String>,
    },
}

fn main() -> ExitCode {
    service_kit::logging::init();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("error: cannot start the runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    match Args::parse().command {
        Command::Run { config } => {
            let config = match AggregatorConfig::load(&config) {
                Ok(config) => config,
                Err(error) => {
                    eprintln!("error: {error}");
                    return ExitCode::from(2);
                }
            };
            match runtime.block_on(aggregator::run(config, service_kit::shutdown::signal())) {
                Ok(_) => ExitCode::SUCCESS,
                Err(error) => {
                    tracing::error!(%error, "Aggregator failed");
                    ExitCode::FAILURE
                }
            }
        }
        Command::CheckConfig { config } => match AggregatorConfig::load(&config) {
            Ok(_) => {
                println!("{}: OK", config.display());
                ExitCode::SUCCESS
            }
            Err(error) => {
                eprintln!("error: {error}");
                ExitCode::from(2)
            }
        },
        Command::Sql {
            data_dir,
            echo,
            statements,
        } => runtime.block_on(async {
            let ctx = match aggregator::query::context(&data_dir).await {
                Ok(ctx) => ctx,
                Err(error) => {
                    eprintln!("error: {error}");
                    return ExitCode::FAILURE;
                }
            };
            for statement in statements {
                if echo {
                    println!("> {statement}");
                }
                match aggregator::query::sql_text(&ctx, &statement).await {
                    Ok(text) => println!("{text}"),
                    Err(error) => {
                        eprintln!("error: {error}");
                        return ExitCode::FAILURE;
                    }
                }
            }
            ExitCode::SUCCESS
        }),
    }
}
