//! Camera ingest with GStreamer.
//!
//! Each camera runs on its own thread: `uridecodebin` (RTSP, files, HTTP;
//! hardware decoders where GStreamer ranks them first) → optional frame-rate
//! cap → RGB → `appsink`, whose callback hands frames to the [`FrameQueue`].
//! The thread watches the bus: an error or an end of stream on a live camera
//! is followed by a reconnect with exponential back-off; the end of a file
//! ends the camera. Every state change is reported as camera health.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use gstreamer as gst;
use gstreamer::prelude::*;
use gstreamer_app as gst_app;
use schemas::v1::camera_health::State;
use service_kit::clock::now_us;

use crate::config::{CameraConfig, OnEos};
use crate::queue::{Frame, FrameQueue, Put, WhenFull};

/// Counters and state of one camera, shared with the health reporter.
#[derive(Debug)]
pub struct CameraStats {
    /// Frames delivered by the decoder.
    pub frames_in: AtomicU64,
    /// Frames the detector analysed.
    pub frames_analysed: AtomicU64,
    /// Frames shed because inference was busy.
    pub frames_dropped: AtomicU64,
    /// Person boxes dropped by the camera's ROI and exclusion masks.
    pub persons_masked: AtomicU64,
    /// Times the source was torn down and connected again (errors, stalls,
    /// end of a live stream).
    pub reconnects: AtomicU64,
    state: std::sync::Mutex<(State, i64, String)>,
}

impl Default for CameraStats {
    fn default() -> Self {
        CameraStats {
            frames_in: AtomicU64::new(0),
            frames_analysed: AtomicU64::new(0),
            frames_dropped: AtomicU64::new(0),
            persons_masked: AtomicU64::new(0),
            reconnects: AtomicU64::new(0),
            state: std::sync::Mutex::new((State::Down, now_us(), "starting".into())),
        }
    }
}

impl CameraStats {
    /// Sets the state; returns true when it changed.
    pub fn set_state(&self, state: State, detail: impl Into<String>) -> bool {
        let mut current = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let changed = current.0 != state;
        if changed {
            *current = (state, now_us(), detail.into());
        }
        changed
    }

    /// `(state, since, detail)`.
    pub fn state(&self) -> (State, i64, String) {
        self.state.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

/// Why a pipeline run ended.
#[derive(Debug)]
enum RunEnd {
    Eos,
    Error(String),
    /// No frame for `stall_timeout_s`.
    Stalled(String),
    Stopped,
}

/// The launch line for a camera.
pub fn launch_line(camera: &CameraConfig) -> String {
    let rate = if camera.max_fps > 0.0 {
        format!(
            "videorate drop-only=true max-rate={} ! ",
            camera.max_fps.ceil().max(1.0) as u32
        )
    } else {
        String::new()
    };
    format!(
        "uridecodebin name=src uri=\"{}\" ! {rate}videoconvert ! video/x-raw,format=RGB ! \
         appsink name=sink sync=false max-buffers=1 drop=false emit-signals=false",
        camera.url.replace('"', "%22")
    )
}

/// A camera's ingest thread body: runs until `stop` is set or the stream ends
/// for good. `on_health` is called on every state change.
pub fn run_camera(
    index: usize,
    camera: &CameraConfig,
    queue: &Arc<FrameQueue>,
    stats: &Arc<CameraStats>,
    stop: &AtomicBool,
    on_health: &dyn Fn(usize),
) {
    const FIRST_BACKOFF: Duration = Duration::from_millis(500);
    let mut backoff = FIRST_BACKOFF;
    let mut seq = 0u64;
    loop {
        let before = seq;
        let end = match play_once(index, camera, queue, stats, stop, &mut seq, on_health) {
            Ok(end) => end,
            Err(error) => RunEnd::Error(error),
        };
        if stop.load(Ordering::Relaxed) {
            return;
        }
        match &end {
            RunEnd::Stopped => return,
            RunEnd::Eos if camera.on_eos() == OnEos::Stop => {
                tracing::info!(camera = %camera.id, frames = seq, "Camera stream ended");
                queue.end(index);
                if stats.set_state(State::Ended, "end of stream") {
                    on_health(index);
                }
                return;
            }
            RunEnd::Eos => {
                tracing::warn!(camera = %camera.id, "Camera stream ended; reconnecting");
            }
            RunEnd::Error(error) => {
                tracing::warn!(camera = %camera.id, %error, backoff_ms = backoff.as_millis() as u64, "Camera failed; reconnecting");
            }
            RunEnd::Stalled(error) => {
                tracing::warn!(camera = %camera.id, %error, backoff_ms = backoff.as_millis() as u64, "Camera stalled; reconnecting");
            }
        }
        stats.reconnects.fetch_add(1, Ordering::Relaxed);
        // A run that delivered frames was healthy: start the back-off over.
        if seq > before {
            backoff = FIRST_BACKOFF;
        }
        // A stalled camera stays STALLED (the state health reports read)
        // until frames flow again; any other failure is RECONNECTING.
        let (state, detail) = match end {
            RunEnd::Stalled(_) => (State::Stalled, "no frames; reconnecting"),
            _ => (State::Reconnecting, "reconnecting"),
        };
        if stats.set_state(state, detail) {
            on_health(index);
        }
        let until = std::time::Instant::now() + backoff;
        while std::time::Instant::now() < until {
            if stop.load(Ordering::Relaxed) {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        backoff = (backoff * 2).min(Duration::from_secs(30));
    }
}

/// Sets a pipeline to Null when dropped, whatever path leaves the function.
struct NullOnDrop(gst::Pipeline);

impl Drop for NullOnDrop {
    fn drop(&mut self) {
        let _ = self.0.set_state(gst::State::Null);
    }
}

fn play_once(
    index: usize,
    camera: &CameraConfig,
    queue: &Arc<FrameQueue>,
    stats: &Arc<CameraStats>,
    stop: &AtomicBool,
    seq: &mut u64,
    on_health: &dyn Fn(usize),
) -> Result<RunEnd, String> {
    gst::init().map_err(|e| e.to_string())?;
    let pipeline = gst::parse::launch(&launch_line(camera))
        .map_err(|e| format!("pipeline: {e}"))?
        .downcast::<gst::Pipeline>()
        .map_err(|_| "launch line did not make a pipeline".to_string())?;
    let pipeline = NullOnDrop(pipeline);
    let by_name = |name: &str| {
        pipeline
            .0
            .by_name(name)
            .ok_or_else(|| format!("pipeline has no {name}"))
    };
    if camera.is_live() {
        let tcp = camera.rtsp_tcp;
        by_name("src")?.connect("source-setup", false, move |args| {
            if let Some(source) = args.get(1).and_then(|v| v.get::<gst::Element>().ok())
                && source.has_property("protocols")
            {
                source.set_property_from_str("protocols", if tcp { "tcp" } else { "udp" });
                source.set_property("latency", 200u32);
            }
            None
        });
    }
    let sink = by_name("sink")?
        .downcast::<gst_app::AppSink>()
        .map_err(|_| "sink is not an appsink".to_string())?;
    let when_full = if camera.is_live() {
        WhenFull::KeepNewest
    } else {
        WhenFull::Wait
    };
    let first: Arc<std::sync::Mutex<Option<(u64, i64)>>> = Arc::default();
    let (queue_cb, stats_cb, first_cb) = (Arc::clone(queue), Arc::clone(stats), Arc::clone(&first));
    let start_seq = *seq;
    let delivered = Arc::new(AtomicU64::new(0));
    let delivered_cb = Arc::clone(&delivered);
    // True while a frame waits for room in the queue (inference is behind):
    // backpressure, not a stalled source.
    let held_back = Arc::new(AtomicBool::new(false));
    let held_back_cb = Arc::clone(&held_back);
    sink.set_callbacks(
        gst_app::AppSinkCallbacks::builder()
            .new_sample(move |sink| {
                let sample = sink.pull_sample().map_err(|_| gst::FlowError::Eos)?;
                let Some(frame) = frame_from_sample(
                    index,
                    &sample,
                    &first_cb,
                    start_seq + delivered_cb.load(Ordering::Relaxed),
                ) else {
                    return Ok(gst::FlowSuccess::Ok);
                };
                delivered_cb.fetch_add(1, Ordering::Relaxed);
                stats_cb.frames_in.fetch_add(1, Ordering::Relaxed);
                held_back_cb.store(true, Ordering::Relaxed);
                let put = queue_cb.put(frame, when_full);
                held_back_cb.store(false, Ordering::Relaxed);
                match put {
                    Put::Stored => Ok(gst::FlowSuccess::Ok),
                    Put::Replaced => {
                        stats_cb.frames_dropped.fetch_add(1, Ordering::Relaxed);
                        Ok(gst::FlowSuccess::Ok)
                    }
                    Put::Stopped => Err(gst::FlowError::Flushing),
                }
            })
            .build(),
    );
    pipeline
        .0
        .set_state(gst::State::Playing)
        .map_err(|e| format!("cannot start {}: {e}", camera.url))?;
    let bus = pipeline.0.bus().ok_or("pipeline has no bus")?;
    let mut reported_up = false;
    let stall_after = Duration::from_secs_f64(camera.stall_timeout_s);
    let (mut last_count, mut last_progress) = (0, std::time::Instant::now());
    let end = loop {
        if stop.load(Ordering::Relaxed) {
            break RunEnd::Stopped;
        }
        let count = delivered.load(Ordering::Relaxed);
        if count != last_count || held_back.load(Ordering::Relaxed) {
            (last_count, last_progress) = (count, std::time::Instant::now());
        } else if last_progress.elapsed() >= stall_after {
            break RunEnd::Stalled(format!(
                "stalled: no frame for {:.1} s",
                last_progress.elapsed().as_secs_f64()
            ));
        }
        if !reported_up && delivered.load(Ordering::Relaxed) > 0 {
            reported_up = true;
            if stats.set_state(State::Up, "receiving frames") {
                on_health(index);
            }
        }
        let Some(message) = bus.timed_pop_filtered(
            gst::ClockTime::from_mseconds(100),
            &[gst::MessageType::Eos, gst::MessageType::Error],
        ) else {
            continue;
        };
        match message.view() {
            gst::MessageView::Eos(_) => break RunEnd::Eos,
            gst::MessageView::Error(err) => {
                let from = err
                    .src()
                    .map(|s| s.path_string().to_string())
                    .unwrap_or_default();
                let debug = err.debug().map(|d| d.to_string()).unwrap_or_default();
                break RunEnd::Error(format!("{from}: {} ({debug})", err.error()));
            }
            _ => {}
        }
    };
    *seq = start_seq + delivered.load(Ordering::Relaxed);
    Ok(end)
}

fn frame_from_sample(
    camera: usize,
    sample: &gst::Sample,
    first: &std::sync::Mutex<Option<(u64, i64)>>,
    seq: u64,
) -> Option<Frame> {
    let caps = sample.caps()?;
    let info = gstreamer_video::VideoInfo::from_caps(caps).ok()?;
    let buffer = sample.buffer()?;
    let pts = buffer.pts().map(|t| t.useconds()).unwrap_or(0);
    let capture_ts_us = {
        // Stream time mapped onto the wall clock at the first frame, so
        // timestamps are monotonic and spaced as the source spaced them.
        let mut first = first.lock().unwrap_or_else(|p| p.into_inner());
        let (pts0, wall0) = *first.get_or_insert((pts, now_us()));
        wall0 + pts.saturating_sub(pts0) as i64
    };
    let map = buffer.map_readable().ok()?;
    Some(Frame {
        camera,
        seq,
        capture_ts_us,
        width: info.width() as usize,
        height: info.height() as usize,
        stride: usize::try_from(info.stride()[0]).ok()?,
        data: map.as_slice().to_vec(),
    })
}
