//! Camera simulator: serves a video file as several H.264 RTSP cameras on
//! loopback, for demos and tests.
//!
//! Each camera is a crop of the same video (for example the left and right
//! halves of a courtyard), so people walking across the scene move "between
//! cameras". Every RTSP client gets its own pipeline that starts at the first
//! frame and plays in real time. At the end of the clip the stream ends (EOS),
//! as a recorded camera would, or, with [`SimConfig::loop_clip`], the clip
//! starts over on the same connection with timestamps running on, forever,
//! as a live camera would.
//!
//! Dropping a [`CameraSimulator`] closes its clients' connections and its
//! port, like a killed camera; a new simulator can then listen on the same
//! port (pin [`SimConfig::port`] to the first one's [`CameraSimulator::port`]).
//!
//! # Layout
//! - [`SimConfig`] / [`CameraSpec`]: what to serve.
//! - [`CameraSimulator`]: a running RTSP server (own GLib main loop thread).
//! - [`run`]: the `camera-sim` command.

use std::future::Future;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, mpsc};
use std::thread::JoinHandle;

use gstreamer as gst;
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
    /// Stop each stream after this many frames (None: whole file, or
    /// forever with `loop_clip`).
    pub max_frames: Option<u32>,
    /// Play the clip again from its start at its end, on the same
    /// connection, forever (soak tests, long demos).
    pub loop_clip: bool,
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
            loop_clip: false,
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
        let looping = if self.loop_clip {
            format!("identity name={LOOP_ELEMENT} silent=true ! ")
        } else {
            String::new()
        };
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
            "( filesrc location=\"{}\" ! decodebin ! videoconvert ! {looping}{limit}\
             videocrop left={left} right={right} top={top} bottom={bottom} ! videoconvert ! video/x-raw,format=I420 ! \
             x264enc tune=zerolatency speed-preset=ultrafast key-int-max=10 bitrate=1500 ! \
             rtph264pay name=pay0 pt=96 config-interval=1 )",
            self.video.display()
        )
    }
}

/// Name of the element of a looping media whose source pad joins the loops.
const LOOP_ELEMENT: &str = "loop";

/// Where a looping media is in its clip.
#[derive(Debug, Default)]
struct LoopState {
    /// Added to the timestamps of the current pass, ns.
    offset_ns: u64,
    /// End of the latest frame of the current pass, ns.
    end_ns: u64,
    /// A seek back to the start is under way: its flush and new segment
    /// stay upstream of the loop element.
    seeking: bool,
    /// The first segment went downstream (made open-ended).
    segment_sent: bool,
}

/// Makes a media's pipeline play its clip forever: at the end of the clip
/// the loop element's source pad holds the EOS back and seeks the decoder to
/// the start; the seek's flush and segment stay upstream, and the next
/// pass's timestamps continue where the last pass ended, so the encoder and
/// the client see one endless stream.
fn loop_media(element: &gst::Element) {
    let Some(identity) = element
        .downcast_ref::<gst::Bin>()
        .and_then(|bin| bin.by_name(LOOP_ELEMENT))
    else {
        tracing::error!("Looping media has no loop element; it will play once");
        return;
    };
    let Some(pad) = identity.static_pad("src") else {
        return;
    };
    let state = Arc::new(Mutex::new(LoopState::default()));
    let mask = gst::PadProbeType::BUFFER
        | gst::PadProbeType::EVENT_DOWNSTREAM
        | gst::PadProbeType::EVENT_FLUSH
        | gst::PadProbeType::QUERY_UPSTREAM;
    pad.add_probe(mask, move |pad, info| {
        if let Some(query) = info.query_mut() {
            // An endless stream: no segment end or duration (the SDP range
            // is open, "npt=0-") and no seeking.
            match query.view_mut() {
                gst::QueryViewMut::Segment(segment) => {
                    segment.set(1.0, gst::ClockTime::ZERO, gst::ClockTime::NONE);
                    return gst::PadProbeReturn::Handled;
                }
                gst::QueryViewMut::Duration(duration) => {
                    duration.set(gst::ClockTime::NONE);
                    return gst::PadProbeReturn::Handled;
                }
                gst::QueryViewMut::Seeking(seeking) => {
                    seeking.set(false, gst::ClockTime::ZERO, gst::ClockTime::NONE);
                    return gst::PadProbeReturn::Handled;
                }
                _ => return gst::PadProbeReturn::Ok,
            }
        }
        let mut state = state.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(buffer) = info.buffer_mut() {
            // The first frame of a pass: the seek is done.
            state.seeking = false;
            let (pts, duration) = (buffer.pts(), buffer.duration());
            if let Some(pts) = pts {
                let end = pts.nseconds() + duration.map_or(0, |d| d.nseconds());
                state.end_ns = state.end_ns.max(end);
                if state.offset_ns > 0 {
                    let shift = gst::ClockTime::from_nseconds(state.offset_ns);
                    let buffer = buffer.make_mut();
                    buffer.set_pts(pts + shift);
                    if let Some(dts) = buffer.dts() {
                        buffer.set_dts(dts + shift);
                    }
                }
            }
            return gst::PadProbeReturn::Ok;
        }
        let Some(event) = info.event().cloned() else {
            return gst::PadProbeReturn::Ok;
        };
        let hold_back = match event.view() {
            gst::EventView::Eos(_) => {
                if !state.seeking {
                    state.seeking = true;
                    state.offset_ns += state.end_ns;
                    state.end_ns = 0;
                    if let Some(element) = pad.parent_element() {
                        // Not from the streaming thread that carries the EOS.
                        element.call_async(seek_to_start);
                    }
                }
                true
            }
            // The end of a pass is not the end of the stream.
            gst::EventView::StreamGroupDone(_) => true,
            // The seek's flush and new segments (until its first frame).
            gst::EventView::FlushStart(_)
            | gst::EventView::FlushStop(_)
            | gst::EventView::Segment(_)
                if state.seeking =>
            {
                true
            }
            gst::EventView::Segment(segment) if !state.segment_sent => {
                state.segment_sent = true;
                // Open-ended, so that later passes are not clipped.
                if let Some(time) = segment.segment().downcast_ref::<gst::ClockTime>()
                    && time.stop().is_some()
                {
                    let mut open = time.clone();
                    open.set_stop(gst::ClockTime::NONE);
                    info.data = Some(gst::PadProbeData::Event(gst::event::Segment::new(&open)));
                }
                false
            }
            _ => false,
        };
        if hold_back {
            // Taken and handled (not `Drop`: the probe owns the event).
            drop(info.take_event());
            gst::PadProbeReturn::Handled
        } else {
            gst::PadProbeReturn::Ok
        }
    });
}

/// Seeks a looping media's decoder back to the start of the clip.
fn seek_to_start(element: &gst::Element) {
    let seek = gst::event::Seek::new(
        1.0,
        gst::SeekFlags::FLUSH | gst::SeekFlags::KEY_UNIT,
        gst::SeekType::Set,
        gst::ClockTime::ZERO,
        gst::SeekType::None,
        gst::ClockTime::NONE,
    );
    if !element.send_event(seek) {
        tracing::warn!("Seeking the clip back to its start failed");
    }
}

/// A running simulator. Dropping it stops the server and closes its
/// clients' connections.
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
                        if config.loop_clip {
                            factory.connect_media_configure(|_, media| {
                                loop_media(&media.element());
                            });
                        }
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
                        // Stop listening, then close every client (and with
                        // them their sessions' pipelines), as a killed
                        // camera would.
                        // The source belongs to this thread's context, not
                        // the default one `SourceId::remove` looks in.
                        if let Some(source) = context.find_source_by_id(&source) {
                            source.destroy();
                        }
                        server.client_filter(Some(&mut |_, _| rtsp::RTSPFilterResult::Remove));
                        // Let the closes run (bounded: nothing else is attached).
                        for _ in 0..1000 {
                            if !context.iteration(false) {
                                break;
                            }
                        }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_looping_camera_gets_a_loop_element_before_the_frame_limit() {
        let mut config = SimConfig::halves(PathBuf::from("/v.avi"), 768);
        let west = config.cameras[0].clone();
        assert!(!config.launch(&west).contains("name=loop"));
        config.loop_clip = true;
        config.max_frames = Some(100);
        let launch = config.launch(&west);
        let looping = launch.find("identity name=loop silent=true ! ").unwrap();
        let limit = launch.find("identity eos-after=100 ! ").unwrap();
        assert!(looping < limit, "{launch}");
        assert!(launch.contains("videocrop left=0 right=384 top=0 bottom=0"));
    }
}
