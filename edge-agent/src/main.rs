//! `edge-agent`: thin entry point; the agent lives in the library.

use std::path::PathBuf;
use std::process::ExitCode;

use std::time::Duration;

use clap::{Parser, Subcommand};
use edge_agent::bench::BenchOptions;
use edge_agent::config::{EdgeConfig, LoadedConfig};
use edge_agent::inference::DetectionParams;
use edge_agent::pipeline::Preparation;

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
    /// Validate a configuration file, with the environment overrides
    /// (ARGUS_EDGE__<TABLE>__<KEY>, e.g. ARGUS_EDGE__DETECTOR__SCORE_THRESHOLD,
    /// ARGUS_EDGE__CAMERAS__<ID>__URL), and report every problem. Lists the
    /// variables that changed a setting, by name only (values may be secrets).
    CheckConfig {
        /// TOML configuration.
        config: PathBuf,
    },
    /// Model tooling.
    #[command(subcommand)]
    Model(ModelCommand),
    /// Measure throughput on a video: bare detector inference (pre-letterboxed
    /// frames), bare models (the detector and the embedder called in turn,
    /// on crops cut beforehand, as many per frame as end to end embedded) and
    /// end to end (GStreamer decode, letterbox, detect, embed, quantise,
    /// protobuf, spool append: all but the network), wire bytes per frame,
    /// people per frame and resident memory. Prints a table on stderr and one
    /// JSON line on stdout.
    Bench(BenchArgs),
}

#[derive(Debug, clap::Args)]
struct BenchArgs {
    /// Take the detector, embedder, thresholds, threads, batch size and ONNX
    /// Runtime library from this configuration. Without it: the assets of
    /// scripts/setup.sh under $ARGUS_ASSETS (default ~/.cache/argus/assets)
    /// and ORT_DYLIB_PATH.
    #[arg(long, short)]
    config: Option<PathBuf>,
    /// Video file. Default: the first file:// camera of --config, else
    /// $ARGUS_ASSETS/vtest.avi.
    #[arg(long)]
    video: Option<PathBuf>,
    /// Detector ONNX model (an fp32 or int8 import). Default: the
    /// configured detector, else $ARGUS_ASSETS/yolov3-tiny.onnx.
    #[arg(long)]
    model: Option<PathBuf>,
    /// Embedder ONNX model. Default: the configured embedder, else
    /// $ARGUS_ASSETS/mobilenetv2-embedder-128.onnx (128-d; the 1280-d
    /// mobilenetv2-embedder.onnx is there too).
    #[arg(long)]
    embedder: Option<PathBuf>,
    /// Frames per detector call. Default: detector.max_batch of --config,
    /// else 1.
    #[arg(long)]
    batch: Option<usize>,
    /// Loop the video and stop after this many seconds (long runs: watch
    /// the resident memory). Default: play it once.
    #[arg(long)]
    duration: Option<f64>,
    /// Stop the end-to-end phase after this many frames.
    #[arg(long)]
    frames: Option<u64>,
    /// Seconds of each bare phase (the detector alone; the detector and the
    /// embedder in turn).
    #[arg(long, default_value_t = 5.0)]
    bare_seconds: f64,
    /// Leave the embedder out (end to end and bare models).
    #[arg(long)]
    no_embedder: bool,
    /// ONNX Runtime intra-op threads (0 = its default, all cores). Default:
    /// the configured detector's.
    #[arg(long)]
    threads: Option<usize>,
    /// Where end to end letterboxes: `ahead` on a preparation thread while
    /// the models run on the batch before, `in-turn` before each detector
    /// call, or `auto` as the agent does (ahead only when --threads is
    /// above 0 and below the core count).
    #[arg(long, value_enum, default_value_t = Prepare::Auto)]
    prepare: Prepare,
}

/// `bench --prepare`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Prepare {
    Auto,
    Ahead,
    InTurn,
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
    /// Write a darknet .weights file of deterministic random values for a
    /// .cfg (for benchmarks of architectures without published weights;
    /// import it with import-darknet).
    GenerateWeights {
        /// darknet .cfg file.
        #[arg(long)]
        cfg: PathBuf,
        /// .weights file to write.
        #[arg(long)]
        output: PathBuf,
        /// Seed: the same seed gives the same bytes.
        #[arg(long, default_value_t = 1)]
        seed: u64,
    },
}

fn main() -> ExitCode {
    for (name, value) in edge_agent::source::PROCESS_ENVIRONMENT {
        if std::env::var_os(name).is_none() {
            // SAFETY: the first statement of `main`: no other thread of this
            // process exists yet to read the environment while it changes.
            #[allow(unsafe_code)]
            unsafe {
                std::env::set_var(name, value)
            };
        }
    }
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
        Command::CheckConfig { config } => check_config(&config),
        Command::Bench(args) => bench(args),
        Command::Model(ModelCommand::GenerateWeights { cfg, output, seed }) => {
            generate_weights(&cfg, &output, seed)
        }
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

/// Validates `path` with the process environment's overrides and lists
/// the variables applied, by name.
fn check_config(path: &std::path::Path) -> ExitCode {
    let env = service_kit::config::overrides::process_env();
    match EdgeConfig::load_with_env(path, env) {
        Ok(LoadedConfig { config, overrides }) => {
            println!(
                "{}: OK ({} cameras)",
                config_path_display(&config),
                config.cameras.len()
            );
            if overrides.is_empty() {
                println!("no environment overrides");
            } else {
                println!("environment overrides (values not shown):");
                for applied in overrides {
                    println!("  {} -> {}", applied.var, applied.key);
                }
            }
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("error: {error}");
            ExitCode::from(2)
        }
    }
}

fn generate_weights(cfg: &std::path::Path, output: &std::path::Path, seed: u64) -> ExitCode {
    match edge_agent::model::generate_weights(cfg, output, seed) {
        Ok(bytes) => {
            println!("wrote {} ({bytes} bytes, seed {seed})", output.display());
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("error: {error}");
            ExitCode::FAILURE
        }
    }
}

/// The setup script's asset directory.
fn assets_dir() -> PathBuf {
    std::env::var_os("ARGUS_ASSETS")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(std::env::var_os("HOME").unwrap_or_default()).join(".cache/argus/assets")
        })
}

fn bench_options(args: BenchArgs) -> Result<BenchOptions, String> {
    let assets = assets_dir();
    let config = match &args.config {
        Some(path) => Some(EdgeConfig::load(path).map_err(|e| e.to_string())?),
        None => None,
    };
    let library = config
        .as_ref()
        .and_then(|c| c.onnxruntime_library.clone())
        .or_else(|| std::env::var_os("ORT_DYLIB_PATH").map(PathBuf::from))
        .unwrap_or_else(|| assets.join("libonnxruntime.so.1.31.1"));
    let video = args
        .video
        .or_else(|| {
            config.as_ref().and_then(|c| {
                c.cameras
                    .iter()
                    .find_map(|camera| camera.url.strip_prefix("file://").map(PathBuf::from))
            })
        })
        .unwrap_or_else(|| assets.join("vtest.avi"));
    let (model, params, threads, batch, embedder) = match &config {
        Some(c) => (
            c.detector.model.clone(),
            DetectionParams {
                score_threshold: c.detector.score_threshold,
                nms_iou_threshold: c.detector.nms_iou_threshold,
                classes: c.detector.classes.clone(),
            },
            c.detector.intra_threads,
            c.detector.max_batch,
            c.embedder.enabled.then(|| {
                (
                    c.embedder.model.clone(),
                    c.embedder.input_height,
                    c.embedder.input_width,
                )
            }),
        ),
        None => (
            assets.join("yolov3-tiny.onnx"),
            DetectionParams {
                score_threshold: 0.3,
                nms_iou_threshold: 0.45,
                classes: vec![0],
            },
            0,
            1,
            Some((assets.join("mobilenetv2-embedder-128.onnx"), 128, 64)),
        ),
    };
    let embedder = match (args.embedder, embedder) {
        (Some(path), Some((_, height, width))) => Some((path, height, width)),
        (Some(_), None) => {
            return Err("--embedder: the configuration disables the embedder".into());
        }
        (None, embedder) => embedder,
    };
    let seconds = |value: f64, what: &str| {
        Duration::try_from_secs_f64(value)
            .map_err(|_| format!("--{what} {value} is not a duration"))
    };
    Ok(BenchOptions {
        video,
        model: args.model.unwrap_or(model),
        embedder: embedder.filter(|_| !args.no_embedder),
        onnxruntime_library: library,
        params,
        intra_threads: args.threads.unwrap_or(threads),
        batch: args.batch.unwrap_or(batch).clamp(1, 64),
        bare_time: seconds(args.bare_seconds, "bare-seconds")?,
        duration: args.duration.map(|d| seconds(d, "duration")).transpose()?,
        max_frames: args.frames,
        preparation: match args.prepare {
            Prepare::Auto => None,
            Prepare::Ahead => Some(Preparation::Ahead),
            Prepare::InTurn => Some(Preparation::InTurn),
        },
    })
}

fn bench(args: BenchArgs) -> ExitCode {
    let options = match bench_options(args) {
        Ok(options) => options,
        Err(error) => {
            eprintln!("error: {error}");
            return ExitCode::from(2);
        }
    };
    let report = match edge_agent::bench::run(&options) {
        Ok(report) => report,
        Err(error) => {
            eprintln!("error: {error}");
            return ExitCode::FAILURE;
        }
    };
    let (b, e) = (&report.bare, &report.end_to_end);
    eprintln!(
        "model {} | embedder {} | {} ({}x{}) | batch {}",
        report.model,
        if report.embedder.is_empty() {
            "none"
        } else {
            &report.embedder
        },
        report.video,
        report.frame_width,
        report.frame_height,
        b.batch
    );
    eprintln!(
        "  bare inference      {:>9.1} fps  ({:.1} ms per call of {}, {} calls; letterbox {:.1} ms per frame)",
        b.fps, b.ms_per_call, b.batch, b.calls, b.letterbox_ms_per_frame
    );
    if b.embed_calls > 0 {
        eprintln!(
            "  bare models         {:>9.1} fps  (in turn: detector {:.1} ms + embedder {:.1} ms for {:.2} crops per call; {} embedder calls)",
            b.models_fps,
            b.models_detector_ms_per_call,
            b.embed_ms_per_call,
            b.embed_crops_per_call,
            b.embed_calls
        );
    }
    eprintln!(
        "  end to end          {:>9.1} fps  ({} frames in {:.1} s; detector {:.0}%, embedder {:.0}% of the time; letterbox {:.0}% {})",
        e.fps,
        e.frames,
        e.seconds,
        e.detector_share * 100.0,
        e.embedder_share * 100.0,
        e.letterbox_share * 100.0,
        if e.prepared_ahead {
            "beside them, one batch ahead"
        } else {
            "in turn"
        }
    );
    eprintln!("  end to end / bare   {:>9.2}", report.e2e_to_bare);
    if b.embed_calls > 0 {
        eprintln!("  end to end / models {:>9.2}", report.e2e_to_models);
    }
    eprintln!("  people per frame    {:>9.2}", e.persons_per_frame);
    eprintln!(
        "  wire bytes / frame  {:>9.1}  (raw RGB {} bytes: {:.0}x)",
        e.wire_bytes_per_frame, e.raw_bytes_per_frame, e.raw_to_wire
    );
    let first_pass = match e.rss_first_pass_kib {
        0 => String::new(),
        kib => format!(", {kib} KiB after the first pass of the video"),
    };
    eprintln!(
        "  RSS                 {:>9} KiB at start{first_pass}, {} KiB at the end",
        report.rss_start_kib, report.rss_end_kib
    );
    match serde_json::to_string(&report) {
        Ok(line) => println!("{line}"),
        Err(error) => {
            eprintln!("error: {error}");
            return ExitCode::FAILURE;
        }
    }
    if e.failed > 0 {
        eprintln!("error: {} frames could not be analysed", e.failed);
        return ExitCode::FAILURE;
    }
    ExitCode::SUCCESS
}

fn config_path_display(config: &EdgeConfig) -> String {
    format!("detector {}", config.detector.model.display())
}
