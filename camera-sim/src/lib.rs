//! Camera simulator: serves a video file as several H.264 RTSP cameras on
//! loopback, for demos and tests.
//!
//! Each camera is a crop of the same video (for example the left and right
//! halves of a courtyard), so people walking across the scene move "between
//! cameras". Every RTSP client gets its own pipeline that starts at the first
//! frame and plays in real time; at the end of the clip the stream ends (EOS),
//! as a recorded camera would.
//!
//! # Layout
//! - [`SimConfig`] / [`CameraSpec`]: what to serve.
//! - [`CameraSimulator`]: a running RTSP server (own GLib main loop thread).
//! - [`run`]: the `camera-sim` command.

use std::future::Future;
use std::path::PathBuf;
use std::sync::mpsc;
use std::thread::JoinHandle;

use gstreamer_rtsp_server as rtsp;
use gstreamer_rtsp_server::glib;
use gstreamer_rtsp_server::prelude::*;

/// Why the simulator could not start.
#[derive(Debug, thiserror::Error)]
pub enum SimError {
    /// GStreamer could not be initialised.
    #[error("GStreamer initialisation failed: {0}")]
    Init(#[from] glib::Error),
    /// The configuration cannot be served.
    #[error("invalid camera simulator config: {0}")]
    Config(String),
    /// The RTSP server could not bind or attach.
    #[error("RTSP server failed to start: {0}")]
    Server(String),
}

/// Pixels cut from each side of the frame.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Crop {
    /// Pixels removed on the left.
    pub left: u32,
    /// Pixels removed on the right.
    pub right: u32,
    /// Pixels removed at the top.
    pub top: u32,
    /// Pixels removed at the bottom.
    pub bottom: u32,
}

/// One simulated camera: served at `rtsp://HOST:PORT/<name>`.
#[derive(Debug, Clone, PartialEq)]
pub struct CameraSpec {
    /// Mount name (letters, digits, `-`, `_`).
    pub name: String,
    /// Region of the video this camera sees.
    pub crop: Crop,
}

/// What the simulator serves.
#[derive(Debug, Clone)]
pub struct SimConfig {
    /// Video file any GStreamer decoder can read (e.g. vtest.avi).
    pub video: PathBuf,
    /// Loopback address to bind.
    pub address: String,
    /// TCP port; 0 picks a free one.
    pub port: u16,
    /// Cameras to serve.
    pub cameras: Vec<CameraSpec>,
    /// Stop each stream after this many frames (None: whole file).
    pub max_frames: Option<u32>,
}

impl SimConfig {
    /// The demo layout: the left and right halves of a 768-pixel-wide video
    /// as cameras `west` and `east`.
    pub fn halves(video: PathBuf, frame_width: u32) -> Self {
        let half = frame_width / 2;
        SimConfig {
            video,
            address: "127.0.0.1".into(),
            port: 0,
            cameras: vec![
                CameraSpec {
                    name: "west".into(),
                    crop: Crop {
                        right: frame_width - half,
                        ..Crop::default()
                    },
                },
                CameraSpec {
                    name: "east".into(),
                    crop: Crop {
                        left: half,
                        ..Crop::default()
                    },
                },
            ],
            max_frames: None,
        }
    }

    fn validate(&self) -> Result<(), SimError> {
        if !self.video.is_file() {
            return Err(SimError::Config(format!(
                "video {} does not exist",
                self.video.display()
            )));
        }
        if self.video.to_string_lossy().contains('"') {
            return Err(SimError::Config("video path must not contain '\"'".into()));
        }
        if self.cameras.is_empty() {
            return Err(SimError::Config("no cameras".into()));
        }
        for camera in &self.cameras {
            let ok = !camera.name.is_empty()
                && camera
                    .name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
            if !ok {
                return Err(SimError::Config(format!(
                    "camera name {:?} must be letters, digits, - or _",
                    camera.name
                )));
            }
        }
        Ok(())
    }

    /// The GStreamer launch line of one camera's media.
    fn launch(&self, camera: &CameraSpec) -> String {
        let limit = self
            .max_frames
            .map(|n| format!("identity eos-after={n} ! "))
            .unwrap_or_default();
        let Crop {
            left,
            right,
            top,
            bottom,
        } = camera.crop;
        format!(
            "( filesrc location=\"{}\" ! decodebin ! videoconvert ! {limit}\
             videocrop left={left} right={right} top={top} bottom={bottom} ! videoconvert ! video/x-raw,format=I420 ! \
             x264enc tune=zerolatency speed-preset=ultrafast key-int-max=10 bitrate=1500 ! \
             rtph264pay name=pay0 pt=96 config-interval=1 )",
            self.video.display()
        )
    }
}

/// A running simulator. Dropping it stops the server.
#[derive(Debug)]
pub struct CameraSimulator {
    port: u16,
    address: String,
    names: Vec<String>,
    main_loop: glib::MainLoop,
    thread: Option<JoinHandle<()>>,
}

impl CameraSimulator {
    /// Starts the RTSP server on its own thread and returns once it listens.
    pub fn start(config: &SimConfig) -> Result<Self, SimError> {
        config.validate()?;
        gstreamer_rtsp_server::gst::init()?;
        let context = glib::MainContext::new();
        let main_loop = glib::MainLoop::new(Some(&context), false);
        let (ready_tx, ready_rx) = mpsc::channel();
        let thread_loop = main_loop.clone();
        let thread_config = config.clone();
        let thread = std::thread::Builder::new()
            .name("camera-sim".into())
            .spawn(move || {
                let config = thread_config;
                let served = context.with_thread_default(|| {
                    let server = rtsp::RTSPServer::new();
                    server.set_address(&config.address);
                    server.set_service(&config.port.to_string());
                    let Some(mounts) = server.mount_points() else {
                        return Err(SimError::Server("server has no mount points".into()));
                    };
                    for camera in &config.cameras {
                        let factory = rtsp::RTSPMediaFactory::new();
                        factory.set_launch(&config.launch(camera));
                        factory.set_shared(false);
                        mounts.add_factory(&format!("/{}", camera.name), factory);
                    }
                    let source = server
                        .attach(Some(&context))
                        .map_err(|e| SimError::Server(e.to_string()))?;
                    Ok((server, source))
                });
                match served {
                    Ok(Ok((server, source))) => {
                        let port = u16::try_from(server.bound_port()).unwrap_or(0);
                        let _ = ready_tx.send(Ok(port));
                        thread_loop.run();
                        source.remove();
                    }
                    Ok(Err(error)) => {
                        let _ = ready_tx.send(Err(error));
                    }
                    Err(error) => {
                        let _ = ready_tx.send(Err(SimError::Server(error.to_string())));
                    }
                }
            })
            .map_err(|e| SimError::Server(e.to_string()))?;
        let port = ready_rx
            .recv()
            .map_err(|_| SimError::Server("server thread exited".into()))??;
        if port == 0 {
            return Err(SimError::Server(format!(
                "could not bind {}:{}",
                config.address, config.port
            )));
        }
        Ok(CameraSimulator {
            port,
            address: config.address.clone(),
            names: config.cameras.iter().map(|c| c.name.clone()).collect(),
            main_loop,
            thread: Some(thread),
        })
    }

    /// The bound TCP port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `(camera name, rtsp URL)` of every camera.
    pub fn urls(&self) -> Vec<(String, String)> {
        self.names
            .iter()
            .map(|n| {
                (
                    n.clone(),
                    format!("rtsp://{}:{}/{n}", self.address, self.port),
                )
            })
            .collect()
    }
}

impl Drop for CameraSimulator {
    fn drop(&mut self) {
        self.main_loop.quit();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Runs the simulator until `shutdown` completes, printing one
/// `NAME URL` line per camera on stdout.
pub async fn run(config: SimConfig, shutdown: impl Future<Output = ()>) -> Result<(), SimError> {
    let sim = CameraSimulator::start(&config)?;
    for (name, url) in sim.urls() {
        println!("{name} {url}");
        tracing::info!(camera = %name, %url, "Serving camera");
    }
    shutdown.await;
    drop(sim);
    Ok(())
}
