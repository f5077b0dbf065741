//! `tracker`: thin entry point; the service lives in the library.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args as ClapArgs, Parser, Subcommand};
use mot::deep_sort::DeepSortParams;
use mot::synth::NoiseLevel;
use tracker::config::TrackerConfig;

/// Argus tracker: consumes detections, tracks people per camera with Deep
/// SORT, re-identifies them across cameras and publishes presence events,
/// id merges and track summaries.
#[derive(Debug, Parser)]
#[command(version)]
struct Args {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run until SIGINT/SIGTERM, then drain, checkpoint (or close open tracks) and exit.
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
    /// Evaluate the tracker on MOTChallenge files.
    #[command(subcommand)]
    Eval(Eval),
}

#[derive(Debug, Subcommand)]
enum Eval {
    /// Degrade ground truth into detections with appearance embeddings.
    Synth {
        /// MOTChallenge ground truth (frame,id,x,y,w,h,conf,...).
        #[arg(long)]
        gt: PathBuf,
        /// Noise level: low, medium or high.
        #[arg(long, default_value = "medium")]
        noise: NoiseLevel,
        /// Random seed (same seed, same detections).
        #[arg(long, default_value_t = 7)]
        seed: u64,
        /// Embedding length.
        #[arg(long, default_value_t = 128)]
        dim: usize,
        /// Detections file to write (MOT rows, embedding in the extra columns).
        #[arg(long)]
        out: PathBuf,
    },
    /// Track a detections file; prints the timing as JSON.
    Run {
        /// Detections (MOT rows; columns after the tenth are the embedding).
        #[arg(long)]
        detections: PathBuf,
        /// Tracks file to write (MOT rows of confirmed tracks matched per frame).
        #[arg(long)]
        out: PathBuf,
        #[command(flatten)]
        params: TrackingArgs,
        /// Track the file this many times, each with a fresh tracker (timing);
        /// the tracks of the first run are written.
        #[arg(long, default_value_t = 1)]
        repeat: u32,
    },
    /// Score a tracks file against ground truth; prints the metrics as JSON.
    Score {
        /// MOTChallenge ground truth.
        #[arg(long)]
        gt: PathBuf,
        /// Tracks (MOT rows).
        #[arg(long)]
        tracks: PathBuf,
    },
}

/// Deep SORT parameters (defaults: the paper's).
#[derive(Debug, ClapArgs)]
struct TrackingArgs {
    /// Frames a confirmed track may be missed before deletion.
    #[arg(long, default_value_t = 30)]
    max_age: u32,
    /// Hits before a track is confirmed.
    #[arg(long, default_value_t = 3)]
    n_init: u32,
    /// Largest 1 − IoU in the IoU stage.
    #[arg(long, default_value_t = 0.7)]
    max_iou_distance: f64,
    /// Largest cosine distance for an appearance match.
    #[arg(long, default_value_t = 0.2)]
    max_cosine_distance: f64,
    /// Appearance samples kept per track.
    #[arg(long, default_value_t = 100)]
    nn_budget: usize,
}

fn eval(command: Eval) -> Result<String, Box<dyn std::error::Error>> {
    Ok(match command {
        Eval::Synth {
            gt,
            noise,
            seed,
            dim,
            out,
        } => {
            let n = tracker::eval::synthesise(&gt, noise, seed, dim, &out)?;
            format!("{{\"detections\":{n}}}")
        }
        Eval::Run {
            detections,
            out,
            params,
            repeat,
        } => {
            let params = DeepSortParams {
                max_age: params.max_age,
                n_init: params.n_init,
                max_iou_distance: params.max_iou_distance,
                max_cosine_distance: params.max_cosine_distance,
                nn_budget: params.nn_budget,
                ..DeepSortParams::default()
            };
            let problems = params.validate("--");
            if !problems.is_empty() {
                return Err(problems.join("; ").into());
            }
            serde_json::to_string(&tracker::eval::track(&detections, &params, repeat, &out)?)?
        }
        Eval::Score { gt, tracks } => serde_json::to_string(&tracker::eval::score(&gt, &tracks)?)?,
    })
}

fn main() -> ExitCode {
    service_kit::logging::init();
    let (path, check_only) = match Args::parse().command {
        Command::Run { config } => (config, false),
        Command::CheckConfig { config } => (config, true),
        Command::Eval(command) => {
            return match eval(command) {
                Ok(json) => {
                    println!("{json}");
                    ExitCode::SUCCESS
                }
                Err(error) => {
                    eprintln!("error: {error}");
                    ExitCode::FAILURE
                }
            };
        }
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
