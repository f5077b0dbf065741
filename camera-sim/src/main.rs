//! `camera-sim`: serves a video file as RTSP cameras on loopback.

use std::path::PathBuf;
use std::process::ExitCode;

use camera_sim::{CameraSpec, Crop, SimConfig};
use clap::Parser;

/// Serves a video file as several H.264 RTSP cameras (crops of the same
/// video) on loopback. Prints `NAME URL` per camera on stdout.
#[derive(Debug, Parser)]
#[command(version)]
struct Args {
    /// Video file to serve (e.g. vtest.avi).
    video: PathBuf,
    /// Port to listen on (0 picks a free port).
    #[arg(long, default_value_t = 8554)]
    port: u16,
    /// Address to bind (loopback by default).
    #[arg(long, default_value = "127.0.0.1")]
    address: String,
    /// A camera as NAME or NAME=LEFT,TOP,RIGHT,BOTTOM (pixels cropped from each
    /// side). Repeatable. Default: `west` and `east`, the two halves of a
    /// 768-pixel-wide video.
    #[arg(long = "camera", value_parser = parse_camera)]
    cameras: Vec<CameraSpec>,
    /// End each stream after this many frames.
    #[arg(long)]
    max_frames: Option<u32>,
    /// Play the video again from its start at its end, on the same
    /// connection, forever (each client still starts at the first frame).
    #[arg(long = "loop")]
    loop_clip: bool,
}

fn parse_camera(text: &str) -> Result<CameraSpec, String> {
    let (name, crop) = match text.split_once('=') {
        None => {
            return Ok(CameraSpec {
                name: text.to_string(),
                crop: Crop::default(),
            });
        }
        Some(parts) => parts,
    };
    let values: Vec<u32> = crop
        .split(',')
        .map(|v| {
            v.trim()
                .parse::<u32>()
                .map_err(|_| format!("crop value {v:?} is not a pixel count"))
        })
        .collect::<Result<_, _>>()?;
    let [left, top, right, bottom] = values[..] else {
        return Err("crop must be LEFT,TOP,RIGHT,BOTTOM".into());
    };
    Ok(CameraSpec {
        name: name.to_string(),
        crop: Crop {
            left,
            top,
            right,
            bottom,
        },
    })
}

fn main() -> ExitCode {
    service_kit::logging::init();
    let args = Args::parse();
    let mut config = SimConfig::halves(args.video, 768);
    config.port = args.port;
    config.address = args.address;
    config.max_frames = args.max_frames;
    config.loop_clip = args.loop_clip;
    if !args.cameras.is_empty() {
        config.cameras = args.cameras;
    }
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
    match runtime.block_on(camera_sim::run(config, service_kit::shutdown::signal())) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            tracing::error!(%error, "Camera simulator failed");
            ExitCode::FAILURE
        }
    }
}
