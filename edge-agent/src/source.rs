//! Camera ingest with GStreamer.
//!
//! Each camera runs on its own thread. Its `url` picks the source
//! ([`kind`]): RTSP (TCP or UDP), HTTP(S) and files through `uridecodebin`,
//! V4L2 devices through `v4l2src`, a capsfilter for their capture mode
//! (what the URL sets, else the largest size up to 1280x720 the device
//! lists when it opens) and `decodebin`, and a live `videotestsrc`.
//! Decoding takes hardware decoders where GStreamer ranks them first and
//! software ones otherwise. Decoded frames pass the camera's analysis rate
//! ([`rate`], a probe in front of the RGB conversion, so skipped frames cost
//! no conversion), are converted to RGB and handed by the `appsink` callback
//! to the [`FrameQueue`]: live sources keep the newest frame, files wait.
//!
//! Every decoded frame counts in `frames_in` and is exactly one of: analysed
//! (`frames_analysed`), skipped by the rate limit (`frames_skipped`), shed by
//! the queue because inference was busy (`frames_dropped`), or, at a stop,
//! still queued.
//!
//! # Health states
//!
//! ```text
//! start ──► DOWN "starting"
//!
//! any state ──── first frame of an attempt ─────────────────► UP
//! UP/outage ──── no frame for stall_timeout_s ──────────────► STALLED      ┐ torn down, tried
//! UP/outage ──── error: refused, 404, 401, bad stream ──────► DOWN         ├ again after a back-off,
//! UP/outage ──── end of a live stream ──────────────────────► RECONNECTING ┘ forever
//! UP ─────────── end of a file (no loop, on_eos = "stop") ──► ENDED (final)
//! ```
//!
//! STALLED, DOWN and RECONNECTING are the *outage* states (the alert rule
//! `camera_down` counts all three). During an outage the state names the
//! cause of the latest failed attempt and stays while the agent waits and
//! tries again, so periodic health reports read it too; the detail says what
//! failed and when the next attempt is. A change between outage states keeps
//! `since`, which therefore marks the start of the outage: a camera that is
//! refused, then stalls, then is refused again is one outage, not three
//! short ones. A looping file (`loop = true`) seeks back to its start at its
//! end, without tearing the pipeline down, and counts `loops`.

pub mod backoff;
pub mod kind;
pub mod rate;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use gstreamer as gst;
use gstreamer::prelude::*;
use gstreamer_app as gst_app;
use schemas::v1::camera_health::State;
use service_kit::clock::now_us;

use crate::config::{CameraConfig, OnEos};
use crate::queue::{Frame, FrameQueue, Pixels, Put, WhenFull};
use crate::source::backoff::Backoff;
use crate::source::kind::{Redactor, Source, SourceKind};
use crate::source::rate::RateLimit;

/// Environment variables GStreamer reads while cameras run, with the value
/// the agent needs, for `main` to set before any thread starts (setting the
/// environment of a running, multi-threaded process is unsound). A variable
/// the operator has set is left as it is.
///
/// - `GST_V4L2_FORCE_DRAIN`: GStreamer 1.22's V4L2 elements otherwise
///   "orphan" their buffer pool at every stop and never free it, leaking a
///   duplicate of the device's file descriptor. The device then stays open:
///   after a reconnect it is busy, and a USB camera pulled out and plugged
///   back in can neither get its node back nor be reopened. With the
///   variable set (any value) a stop drains and releases the pool; measured
///   in the V4L2 test VM (edge-agent/tests/ingest.rs), a stop then leaves no
///   descriptor open, with or without an unplug first.
pub const PROCESS_ENVIRONMENT: &[(&str, &str)] = &[("GST_V4L2_FORCE_DRAIN", "1")];

/// What the agent logs at start when a V4L2 camera would run without the
/// variables of [`PROCESS_ENVIRONMENT`].
pub const MISSING_ENVIRONMENT: &str = "V4L2 devices will stay open after a reconnect: \
     the edge-agent binary sets these variables, this process lacks them";

/// The variables of [`PROCESS_ENVIRONMENT`] missing from this process's
/// environment: empty once `main` has set them. The agent warns at start
/// when a V4L2 camera would run without them.
pub fn missing_environment() -> Vec<&'static str> {
    PROCESS_ENVIRONMENT
        .iter()
        .filter(|(name, _)| std::env::var_os(name).is_none())
        .map(|(name, _)| *name)
        .collect()
}

/// Counters and state of one camera, shared with the health reporter.
#[derive(Debug)]
pub struct CameraStats {
    /// Frames delivered by the decoder.
    pub frames_in: AtomicU64,
    /// Frames decoded but not analysed because of the camera's `max_fps`.
    pub frames_skipped: AtomicU64,
    /// Frames the detector analysed.
    pub frames_analysed: AtomicU64,
    /// Frames shed because inference was busy.
    pub frames_dropped: AtomicU64,
    /// Person boxes dropped by the camera's ROI and exclusion masks.
    pub persons_masked: AtomicU64,
    /// Times the source was torn down and connected again (errors, stalls,
    /// end of a live stream).
    pub reconnects: AtomicU64,
    /// Times a looping file went back to its start.
    pub loops: AtomicU64,
    state: Mutex<(State, i64, String)>,
}

impl Default for CameraStats {
    fn default() -> Self {
        CameraStats {
            frames_in: AtomicU64::new(0),
            frames_skipped: AtomicU64::new(0),
            frames_analysed: AtomicU64::new(0),
            frames_dropped: AtomicU64::new(0),
            persons_masked: AtomicU64::new(0),
            reconnects: AtomicU64::new(0),
            loops: AtomicU64::new(0),
            state: Mutex::new((State::Down, now_us(), "starting".into())),
        }
    }
}

/// Whether a state is part of an outage (what `camera_down` alerts count).
pub fn is_outage(state: State) -> bool {
    matches!(state, State::Stalled | State::Reconnecting | State::Down)
}

impl CameraStats {
    /// Sets the state and its detail; returns true when the state changed.
    pub fn set_state(&self, state: State, detail: impl Into<String>) -> bool {
        self.set_state_at(state, detail, now_us())
    }

    /// [`set_state`](Self::set_state) at time `now_us`. `since` moves to
    /// `now_us` when the state changes, except between outage states, where
    /// it keeps the start of the outage. The detail is always replaced.
    pub fn set_state_at(&self, state: State, detail: impl Into<String>, now_us: i64) -> bool {
        let mut current = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let changed = current.0 != state;
        let since = if !changed || (is_outage(current.0) && is_outage(state)) {
            current.1
        } else {
            now_us
        };
        *current = (state, since, detail.into());
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
    /// End of stream.
    Eos,
    /// The source failed: `summary` for the health detail, `debug` for logs.
    Error { summary: String, debug: String },
    /// No frame for `stall_timeout_s`.
    Stalled(String),
    /// The agent is stopping.
    Stopped,
}

impl RunEnd {
    fn error(summary: impl Into<String>) -> Self {
        RunEnd::Error {
            summary: summary.into(),
            debug: String::new(),
        }
    }
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
    let source = match camera.source() {
        Ok(source) => source,
        Err(problems) => {
            // `EdgeConfig::validate` lists these before the agent starts;
            // here only when, say, a password variable vanished since.
            let error = problems.join("; ");
            tracing::error!(camera = %camera.id, %error, "Camera cannot start");
            if stats.set_state(State::Down, error) {
                on_health(index);
            }
            queue.end(index);
            return;
        }
    };
    let redactor = Redactor::new(source.credentials.as_ref());
    let cap = Duration::from_secs_f64(camera.reconnect_max_s);
    let mut backoff = Backoff::new(cap, backoff::seed(index));
    let mut seq = 0u64;
    tracing::info!(camera = %camera.id, source = %source.kind, live = source.kind.is_live(), max_fps = camera.max_fps, "Camera starting");
    loop {
        let before = seq;
        let end = match play_once(
            index, camera, &source, &redactor, queue, stats, stop, &mut seq, on_health,
        ) {
            Ok(end) => end,
            Err(summary) => RunEnd::error(summary),
        };
        if stop.load(Ordering::Relaxed) {
            return;
        }
        let delivered = seq > before;
        let (state, cause) = match end {
            RunEnd::Stopped => return,
            RunEnd::Eos if camera.loop_file && delivered => {
                // The file could not be seeked: play it again from the start.
                stats.loops.fetch_add(1, Ordering::Relaxed);
                continue;
            }
            RunEnd::Eos if camera.loop_file => (State::Down, "file ended without a frame".into()),
            RunEnd::Eos if camera.on_eos() == OnEos::Stop => {
                tracing::info!(camera = %camera.id, frames = seq, "Camera stream ended");
                queue.end(index);
                if stats.set_state(State::Ended, "end of stream") {
                    on_health(index);
                }
                return;
            }
            RunEnd::Eos => (State::Reconnecting, "end of stream".to_string()),
            RunEnd::Error {
                summary,
                debug: details,
            } => {
                tracing::debug!(camera = %camera.id, error = %summary, %details, "Camera pipeline error");
                let hint = source
                    .kind
                    .negotiation_hint()
                    .filter(|_| details.contains("not-negotiated"));
                match hint {
                    Some(hint) => (State::Down, format!("{summary} {hint}")),
                    None => (State::Down, summary),
                }
            }
            RunEnd::Stalled(summary) => (State::Stalled, summary),
        };
        // A run that delivered frames was healthy: start the back-off over.
        if delivered {
            backoff.reset();
        }
        let delay = backoff.next_delay();
        let attempt = backoff.attempts();
        stats.reconnects.fetch_add(1, Ordering::Relaxed);
        tracing::warn!(
            camera = %camera.id,
            source = %source.kind,
            state = state.as_str_name(),
            error = %cause,
            attempt,
            delay_ms = delay.as_millis() as u64,
            "Camera lost; reconnecting after a back-off"
        );
        let detail = format!(
            "{cause}; reconnecting in {:.1} s (attempt {attempt})",
            delay.as_secs_f64()
        );
        if stats.set_state(state, detail) {
            on_health(index);
        }
        if !sleep_unless_stopped(delay, stop) {
            return;
        }
    }
}

/// Sleeps `delay` in short steps; false when `stop` was set meanwhile.
fn sleep_unless_stopped(delay: Duration, stop: &AtomicBool) -> bool {
    let until = Instant::now() + delay;
    loop {
        if stop.load(Ordering::Relaxed) {
            return false;
        }
        let left = until.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return true;
        }
        std::thread::sleep(left.min(Duration::from_millis(50)));
    }
}

/// Sets a pipeline to Null when dropped, whatever path leaves the function.
struct NullOnDrop(gst::Pipeline);

impl Drop for NullOnDrop {
    fn drop(&mut self) {
        let _ = self.0.set_state(gst::State::Null);
    }
}

/// Stream time across the loops of a file: each loop's timestamps continue
/// where the previous loop ended, so rates, sequence and capture times stay
/// monotonic.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Timeline {
    /// Added to this loop's timestamps, µs.
    offset_us: u64,
    /// End of the latest frame of this loop (timestamp + duration), µs.
    loop_end_us: u64,
}

impl Timeline {
    /// The stream time of a frame of the current loop.
    pub fn stream_time(&mut self, pts_us: u64, duration_us: u64) -> u64 {
        self.loop_end_us = self.loop_end_us.max(pts_us.saturating_add(duration_us));
        pts_us.saturating_add(self.offset_us)
    }

    /// The file starts again: later timestamps follow this loop's end.
    pub fn next_loop(&mut self) {
        self.offset_us = self.offset_us.saturating_add(self.loop_end_us);
        self.loop_end_us = 0;
    }

    /// Whether timestamps are shifted (after a first loop).
    pub fn shifted(&self) -> bool {
        self.offset_us > 0
    }
}

#[allow(clippy::too_many_arguments)]
fn play_once(
    index: usize,
    camera: &CameraConfig,
    source: &Source,
    redactor: &Redactor,
    queue: &Arc<FrameQueue>,
    stats: &Arc<CameraStats>,
    stop: &AtomicBool,
    seq: &mut u64,
    on_health: &dyn Fn(usize),
) -> Result<RunEnd, String> {
    gst::init().map_err(|e| format!("GStreamer initialisation: {e}"))?;
    let pipeline = gst::parse::launch(&source.kind.launch_line())
        .map_err(|e| redactor.clean(&format!("pipeline: {e}")))?
        .downcast::<gst::Pipeline>()
        .map_err(|_| "launch line did not make a pipeline".to_string())?;
    let pipeline = NullOnDrop(pipeline);
    let by_name = |name: &str| {
        pipeline
            .0
            .by_name(name)
            .ok_or_else(|| format!("pipeline has no {name}"))
    };
    if matches!(
        source.kind,
        SourceKind::Rtsp { .. } | SourceKind::Http { .. }
    ) {
        let tcp = camera.rtsp_tcp;
        let credentials = source.credentials.clone();
        by_name("src")?.connect("source-setup", false, move |args| {
            let element = args.get(1).and_then(|v| v.get::<gst::Element>().ok())?;
            if element.has_property("protocols") {
                // rtspsrc
                element.set_property_from_str("protocols", if tcp { "tcp" } else { "udp" });
                element.set_property("latency", 200u32);
            }
            if let Some(credentials) = &credentials
                && element.has_property("user-id")
            {
                // rtspsrc and souphttpsrc
                element.set_property("user-id", &credentials.user);
                element.set_property("user-pw", &credentials.password);
            }
            None
        });
    }

    // Frames decoded in this run; also their sequence numbers.
    let decoded = Arc::new(AtomicU64::new(0));
    let timeline = Arc::new(Mutex::new(Timeline::default()));
    {
        let (decoded, timeline, stats) = (
            Arc::clone(&decoded),
            Arc::clone(&timeline),
            Arc::clone(stats),
        );
        let limit = Mutex::new(RateLimit::new(camera.max_fps));
        let (start_seq, started) = (*seq, Instant::now());
        let pad = by_name("convert")?
            .static_pad("sink")
            .ok_or("videoconvert has no sink pad")?;
        pad.add_probe(gst::PadProbeType::BUFFER, move |_, info| {
            let Some(buffer) = info.buffer_mut() else {
                return gst::PadProbeReturn::Ok;
            };
            let n = decoded.fetch_add(1, Ordering::Relaxed);
            stats.frames_in.fetch_add(1, Ordering::Relaxed);
            // Stream time; the wall clock for a source without timestamps.
            let pts = buffer
                .pts()
                .map_or_else(|| started.elapsed().as_micros() as u64, |t| t.useconds());
            let duration = buffer.duration().map_or(0, |t| t.useconds());
            let (ts, shifted) = {
                let mut timeline = timeline.lock().unwrap_or_else(|p| p.into_inner());
                (timeline.stream_time(pts, duration), timeline.shifted())
            };
            let admitted = limit.lock().unwrap_or_else(|p| p.into_inner()).admit(ts);
            if !admitted {
                stats.frames_skipped.fetch_add(1, Ordering::Relaxed);
                // Taken and handled here (`Drop` would leave GStreamer to
                // free a buffer the binding already took).
                drop(info.take_buffer());
                return gst::PadProbeReturn::Handled;
            }
            // The conversion keeps timestamps and offset: the frame's
            // sequence number rides in the offset to the appsink.
            let buffer = buffer.make_mut();
            buffer.set_offset(start_seq + n);
            if shifted {
                buffer.set_pts(gst::ClockTime::from_useconds(ts));
            }
            gst::PadProbeReturn::Ok
        });
    }

    let sink = by_name("sink")?
        .downcast::<gst_app::AppSink>()
        .map_err(|_| "sink is not an appsink".to_string())?;
    let when_full = if source.kind.is_live() {
        WhenFull::KeepNewest
    } else {
        WhenFull::Wait
    };
    let first: Arc<Mutex<Option<(u64, i64)>>> = Arc::default();
    let (queue_cb, stats_cb, first_cb) = (Arc::clone(queue), Arc::clone(stats), Arc::clone(&first));
    // True while a frame waits for room in the queue (inference is behind):
    // backpressure, not a stalled source.
    let held_back = Arc::new(AtomicBool::new(false));
    let held_back_cb = Arc::clone(&held_back);
    sink.set_callbacks(
        gst_app::AppSinkCallbacks::builder()
            .new_sample(move |sink| {
                let sample = sink.pull_sample().map_err(|_| gst::FlowError::Eos)?;
                let Some(frame) = frame_from_sample(index, &sample, &first_cb) else {
                    return Ok(gst::FlowSuccess::Ok);
                };
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
    let bus = pipeline.0.bus().ok_or("pipeline has no bus")?;
    // The element that refused a state says why on the bus (a device that
    // is busy or gone, say); the state change error itself does not.
    let refused = |error: gst::StateChangeError| {
        let reason = bus
            .pop_filtered(&[gst::MessageType::Error])
            .and_then(|message| match message.view() {
                gst::MessageView::Error(err) => Some(err.error().to_string()),
                _ => None,
            })
            .unwrap_or_else(|| error.to_string());
        redactor.clean(&format!("cannot start {}: {reason}", source.kind))
    };
    if let SourceKind::V4l2 {
        size: None, fps, ..
    } = source.kind
    {
        // Open the device (READY), read the modes it lists, and set the
        // largest size up to the preferred maximum.
        pipeline.0.set_state(gst::State::Ready).map_err(refused)?;
        let offered = by_name("src")?
            .static_pad("src")
            .ok_or("v4l2src has no src pad")?
            .query_caps(None);
        match kind::preferred_v4l2_mode(&offered, fps) {
            Some(mode) => {
                tracing::debug!(camera = %camera.id, %mode, "V4L2 capture mode");
                by_name("capture")?.set_property("caps", &mode);
            }
            None => {
                let (width, height) = kind::V4L2_PREFERRED_MAX;
                tracing::info!(camera = %camera.id, %offered, "V4L2 device offers no mode up to {width}x{height}; capturing at a size it offers");
            }
        }
    }
    pipeline.0.set_state(gst::State::Playing).map_err(refused)?;
    let mut reported_up = false;
    let stall_after = Duration::from_secs_f64(camera.stall_timeout_s);
    let (mut last_count, mut last_progress) = (0, Instant::now());
    let mut decoded_at_loop = 0;
    let end = loop {
        if stop.load(Ordering::Relaxed) {
            break RunEnd::Stopped;
        }
        let count = decoded.load(Ordering::Relaxed);
        if count != last_count || held_back.load(Ordering::Relaxed) {
            (last_count, last_progress) = (count, Instant::now());
        } else if last_progress.elapsed() >= stall_after {
            break RunEnd::Stalled(format!(
                "stalled: no frame for {:.1} s",
                last_progress.elapsed().as_secs_f64()
            ));
        }
        if !reported_up && count > 0 {
            reported_up = true;
            if stats.set_state(State::Up, "receiving frames") {
                on_health(index);
            }
            tracing::info!(camera = %camera.id, source = %source.kind, "Camera receiving frames");
        }
        let Some(message) = bus.timed_pop_filtered(
            gst::ClockTime::from_mseconds(100),
            &[gst::MessageType::Eos, gst::MessageType::Error],
        ) else {
            continue;
        };
        match message.view() {
            gst::MessageView::Eos(_) if camera.loop_file => {
                let count = decoded.load(Ordering::Relaxed);
                if count == decoded_at_loop {
                    break RunEnd::error("file ended without a frame");
                }
                decoded_at_loop = count;
                timeline
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .next_loop();
                let seek = pipeline.0.seek_simple(
                    gst::SeekFlags::FLUSH | gst::SeekFlags::KEY_UNIT,
                    gst::ClockTime::ZERO,
                );
                match seek {
                    Ok(()) => {
                        let loops = stats.loops.fetch_add(1, Ordering::Relaxed) + 1;
                        tracing::debug!(camera = %camera.id, loops, "File looped");
                    }
                    Err(error) => {
                        tracing::info!(camera = %camera.id, %error, "File cannot seek; restarting it");
                        break RunEnd::Eos;
                    }
                }
            }
            gst::MessageView::Eos(_) => break RunEnd::Eos,
            gst::MessageView::Error(err) => {
                let from = err.src().map(|s| s.name().to_string()).unwrap_or_default();
                let debug = err.debug().map(|d| d.to_string()).unwrap_or_default();
                break RunEnd::Error {
                    summary: redactor.clean(&format!("{from}: {}", err.error())),
                    debug: redactor.clean(&debug),
                };
            }
            _ => {}
        }
    };
    *seq += decoded.load(Ordering::Relaxed);
    Ok(end)
}

fn frame_from_sample(
    camera: usize,
    sample: &gst::Sample,
    first: &Mutex<Option<(u64, i64)>>,
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
    Some(Frame {
        camera,
        seq: buffer.offset(),
        capture_ts_us,
        width: info.width() as usize,
        height: info.height() as usize,
        stride: usize::try_from(info.stride()[0]).ok()?,
        data: Pixels::Mapped(buffer.to_owned().into_mapped_buffer_readable().ok()?),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn since_marks_the_start_of_an_outage_across_its_states() {
        let stats = CameraStats::default();
        assert!(stats.set_state_at(State::Up, "receiving frames", 1_000));
        assert!(stats.set_state_at(State::Stalled, "stalled", 2_000));
        assert!(stats.set_state_at(State::Down, "refused", 3_000));
        assert_eq!(stats.state(), (State::Down, 2_000, "refused".into()));
        assert!(!stats.set_state_at(State::Down, "refused again", 4_000));
        assert_eq!(stats.state(), (State::Down, 2_000, "refused again".into()));
        assert!(stats.set_state_at(State::Reconnecting, "end of stream", 5_000));
        assert_eq!(stats.state().1, 2_000);
        assert!(stats.set_state_at(State::Up, "receiving frames", 6_000));
        assert_eq!(stats.state().1, 6_000, "the outage is over");
        assert!(stats.set_state_at(State::Down, "refused", 7_000));
        assert_eq!(stats.state().1, 7_000, "a new outage");
        assert!(stats.set_state_at(State::Ended, "end of stream", 8_000));
        assert_eq!(stats.state().1, 8_000);
        assert!(is_outage(State::Stalled) && !is_outage(State::Ended) && !is_outage(State::Up));
    }

    #[test]
    fn a_new_camera_is_down_until_its_first_frame() {
        let stats = CameraStats::default();
        let (state, since, detail) = stats.state();
        assert_eq!((state, detail.as_str()), (State::Down, "starting"));
        assert!(!stats.set_state_at(State::Down, "connection refused", since + 5));
        assert_eq!(stats.state().1, since, "still the same outage");
    }

    #[test]
    fn loops_continue_the_timeline() {
        let mut timeline = Timeline::default();
        assert!(!timeline.shifted());
        assert_eq!(timeline.stream_time(0, 100_000), 0);
        assert_eq!(timeline.stream_time(1_900_000, 100_000), 1_900_000);
        timeline.next_loop();
        assert!(timeline.shifted());
        assert_eq!(timeline.stream_time(0, 100_000), 2_000_000);
        assert_eq!(timeline.stream_time(1_900_000, 100_000), 3_900_000);
        timeline.next_loop();
        assert_eq!(timeline.stream_time(500_000, 0), 4_500_000);
    }
}
