//! `edge-agent bench`: how fast this box analyses a video, and what the
//! analysis costs on the wire.
//!
//! Three figures from the same run, on the same models and batch size:
//! - **bare inference**: the detector model alone (`Session::run`) on
//!   frames letterboxed beforehand, `batch` frames per call;
//! - **bare models**: the detector and the embedder called in turn, as
//!   analysing frames must call them (each model's working set can push
//!   the other's out of the caches), on the same letterboxed frames and on
//!   as many crops per detector call as the end-to-end phase embedded per
//!   `batch` frames on average, cut and normalised beforehand (crops of the people
//!   in the first frames, repeated as needed), in calls of at most
//!   [`MAX_EMBED_BATCH`] crops with a fractional count interpolated: the
//!   inference an analysed frame cannot do without, so end to end against
//!   it is what the pipeline around the models costs;
//! - **end to end**: everything the agent does to a frame except the
//!   network: GStreamer decodes the file as fast as it can (to RGB, on its
//!   own thread, as a camera source does), consecutive frames form batches
//!   of `batch` (standing in for that many cameras), letterboxed as the
//!   agent does (one batch ahead on a preparation thread where the models'
//!   threads leave a core free, else in turn: see
//!   [`Preparation`](crate::pipeline::Preparation)), then detect, NMS, embed
//!   the crops, quantise, encode the protobuf `FrameDetections` and append
//!   it to a spool in a temporary directory (acknowledged at once, as if
//!   Kafka confirmed it instantly): the agent's own
//!   [`pipeline`](crate::pipeline).
//!
//! Also: the mean encoded `FrameDetections` size against the raw RGB frame,
//! people per frame, and the process's resident memory (`VmRSS`) before the
//! models are loaded and at the end (with `duration`, the video loops, for
//! leak hunting). The report is one JSON object per line.

use std::ops::ControlFlow;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use gstreamer as gst;
use gstreamer::prelude::*;
use gstreamer_app as gst_app;
use schemas::{topics, wire};
use serde::Serialize;
use spool::{FsyncPolicy, Record, Spool, SpoolConfig};
use vision::bbox::BBox;
use vision::letterbox::RgbFrame;
use vision::roi::RegionFilter;

use crate::inference::{
    self, DetectionParams, Detector, Embedder, InferenceError, MAX_EMBED_BATCH,
};
use crate::pipeline::{self, Input, Output, Preparation, Stage};
use crate::queue::{Frame, Pixels};

/// What to benchmark.
#[derive(Debug, Clone)]
pub struct BenchOptions {
    /// The video file.
    pub video: PathBuf,
    /// The detector (made by `model import-darknet`).
    pub model: PathBuf,
    /// The embedder and its crop `(height, width)`; `None` skips embedding.
    pub embedder: Option<(PathBuf, usize, usize)>,
    /// `libonnxruntime.so`.
    pub onnxruntime_library: PathBuf,
    /// Thresholds and classes.
    pub params: DetectionParams,
    /// ONNX Runtime intra-op threads (0 = its default).
    pub intra_threads: usize,
    /// Frames per detector call.
    pub batch: usize,
    /// How long each bare phase runs (the detector alone; the detector and
    /// the embedder in turn, shared among the embedder call sizes timed).
    pub bare_time: Duration,
    /// End to end: loop the video and stop when this much time has passed;
    /// `None` plays it once.
    pub duration: Option<Duration>,
    /// End to end: stop after this many frames.
    pub max_frames: Option<u64>,
    /// End to end: where batches are letterboxed; `None` as the agent
    /// decides ([`Preparation::for_threads`] of `intra_threads`).
    pub preparation: Option<Preparation>,
}

/// Bare inference figures.
#[derive(Debug, Clone, Serialize)]
pub struct BareReport {
    /// Frames per call.
    pub batch: usize,
    /// Calls timed.
    pub calls: u64,
    /// Frames per second.
    pub fps: f64,
    /// Mean milliseconds per call.
    pub ms_per_call: f64,
    /// Mean milliseconds to letterbox one frame (not in `fps`).
    pub letterbox_ms_per_frame: f64,
    /// Crops to embed per detector call in the bare models figure: end-to-end
    /// people per frame times `batch` (0 without an embedder; with 0 the
    /// embedder is not timed, as end to end had nobody to embed).
    pub embed_crops_per_call: f64,
    /// Embedder calls timed, each right after a detector call (0 without an
    /// embedder or crops).
    pub embed_calls: u64,
    /// Mean milliseconds of a detector call made right after an embedder
    /// call, in the bare models phase (= `ms_per_call` without an embedder
    /// or crops).
    pub models_detector_ms_per_call: f64,
    /// Embedder milliseconds per detector call, on crops cut beforehand
    /// (cutting them is not counted, as letterboxing is not): calls of at
    /// most [`MAX_EMBED_BATCH`] crops, as end to end makes them, the last
    /// one's time interpolated between the whole numbers of crops around its
    /// fractional count.
    pub embed_ms_per_call: f64,
    /// Frames per second of the detector and the embedder alone, called in
    /// turn: `batch` frames per `models_detector_ms_per_call +
    /// embed_ms_per_call` (= `fps` without an embedder or crops).
    pub models_fps: f64,
}

/// End-to-end figures.
#[derive(Debug, Clone, Serialize)]
pub struct EndToEndReport {
    /// Frames per detector call.
    pub batch: usize,
    /// Frames analysed.
    pub frames: u64,
    /// Seconds from starting the decoder to the last frame spooled.
    pub seconds: f64,
    /// Frames per second.
    pub fps: f64,
    /// Whether batches were letterboxed on a preparation thread, one ahead
    /// of the models, rather than in turn (`--prepare`).
    pub prepared_ahead: bool,
    /// Share of the time spent letterboxing (beside the models when
    /// prepared ahead, else part of the time in turn).
    pub letterbox_share: f64,
    /// Share of the time in detector calls (model, decoding, NMS).
    pub detector_share: f64,
    /// Share of the time in embedder calls.
    pub embedder_share: f64,
    /// People published per frame.
    pub persons_per_frame: f64,
    /// Mean encoded `FrameDetections` bytes per frame.
    pub wire_bytes_per_frame: f64,
    /// Bytes of one raw RGB frame.
    pub raw_bytes_per_frame: u64,
    /// Raw RGB bytes per wire byte.
    pub raw_to_wire: f64,
    /// Frames that could not be analysed.
    pub failed: u64,
    /// With `duration`: `VmRSS` in KiB when the video first ended (compare
    /// with the end: growth after the first pass would be a leak); else 0.
    pub rss_first_pass_kib: u64,
}

/// The whole report.
#[derive(Debug, Clone, Serialize)]
pub struct BenchReport {
    /// `<stem>@<W>x<H>` of the detector.
    pub model: String,
    /// The embedder id, or empty.
    pub embedder: String,
    /// The video.
    pub video: String,
    /// Frame size of the video.
    pub frame_width: usize,
    /// Frame size of the video.
    pub frame_height: usize,
    /// Bare inference.
    pub bare: BareReport,
    /// End to end.
    pub end_to_end: EndToEndReport,
    /// End-to-end fps / bare (detector) fps.
    pub e2e_to_bare: f64,
    /// End-to-end fps / bare models (detector + embedder) fps.
    pub e2e_to_models: f64,
    /// `VmRSS` in KiB before the models were loaded.
    pub rss_start_kib: u64,
    /// `VmRSS` in KiB at the end.
    pub rss_end_kib: u64,
}

/// Why the benchmark could not run.
#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    /// A model could not be loaded or run.
    #[error(transparent)]
    Inference(#[from] InferenceError),
    /// The video could not be decoded.
    #[error("video {path}: {message}")]
    Video {
        /// The file.
        path: String,
        /// What went wrong.
        message: String,
    },
    /// The temporary spool failed.
    #[error("spool: {0}")]
    Spool(#[from] spool::SpoolError),
    /// The preparation thread could not be started.
    #[error("cannot start thread: {0}")]
    Thread(std::io::Error),
}

/// Resident memory of this process, KiB (0 where `/proc` is missing).
pub fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find_map(|line| line.strip_prefix("VmRSS:"))
                .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
        })
        .unwrap_or(0)
}

/// Runs the benchmark.
pub fn run(options: &BenchOptions) -> Result<BenchReport, BenchError> {
    let rss_start_kib = rss_kib();
    let env = inference::environment(&options.onnxruntime_library)?;
    let mut detector = Detector::load(
        &env,
        &options.model,
        options.params.clone(),
        options.intra_threads,
    )?;
    let batch = options.batch.max(1);
    detector.reserve(batch);
    let mut embedder = match &options.embedder {
        Some((path, height, width)) => Some(Embedder::load(
            &env,
            path,
            *height,
            *width,
            options.intra_threads,
        )?),
        None => None,
    };

    // Bare inference on the video's first frames.
    let mut video = Video::open(&options.video)?;
    let mut first = Vec::with_capacity(batch);
    while first.len() < batch {
        match video.next_frame(0)? {
            Some(frame) => first.push(frame),
            None if first.is_empty() => {
                return Err(video.error("no frames"));
            }
            None => break,
        }
    }
    drop(video);
    while first.len() < batch {
        let copy = clone_frame(&first[first.len() - 1]);
        first.push(copy);
    }
    let (frame_width, frame_height) = (first[0].width, first[0].height);
    let rgbs = first
        .iter()
        .map(|f| RgbFrame::new(&f.data, f.width, f.height, f.stride))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| BenchError::Video {
            path: options.video.display().to_string(),
            message: e.to_string(),
        })?;
    let started = Instant::now();
    let mut letterboxed = 0;
    while letterboxed < 20 || started.elapsed() < Duration::from_millis(500) {
        detector.letterbox(&rgbs);
        letterboxed += rgbs.len();
    }
    let letterbox_ms_per_frame = started.elapsed().as_secs_f64() * 1000.0 / letterboxed as f64;
    for _ in 0..2 {
        detector.forward(batch)?; // warm-up
    }
    let started = Instant::now();
    let mut calls = 0u64;
    while calls < 5 || started.elapsed() < options.bare_time {
        detector.forward(batch)?;
        calls += 1;
    }
    let bare_s = started.elapsed().as_secs_f64();
    let ms_per_call = bare_s * 1000.0 / calls as f64;
    let mut bare = BareReport {
        batch,
        calls,
        fps: (calls * batch as u64) as f64 / bare_s,
        ms_per_call,
        letterbox_ms_per_frame,
        embed_crops_per_call: 0.0,
        embed_calls: 0,
        models_detector_ms_per_call: ms_per_call,
        embed_ms_per_call: 0.0,
        models_fps: 0.0,
    };
    // Warms the embedder (and the detector's decoding path) on those frames.
    let filter = RegionFilter::default();
    let items: Vec<(&Frame, &RegionFilter)> = first.iter().map(|f| (f, &filter)).collect();
    crate::analyse_batch(&items, &mut detector, embedder.as_mut());
    drop(items);

    let end_to_end = end_to_end(options, batch, &mut detector, embedder.as_mut())?;
    let crops = end_to_end.persons_per_frame * batch as f64;
    if let Some(embedder) = embedder.as_mut().filter(|_| crops > 0.0) {
        let models = bare_models(embedder, &mut detector, &rgbs, crops, options.bare_time)?;
        bare.embed_crops_per_call = crops;
        bare.embed_calls = models.embed_calls;
        bare.models_detector_ms_per_call = models.detector_ms;
        bare.embed_ms_per_call = models.embed_ms;
    }
    bare.models_fps =
        batch as f64 * 1000.0 / (bare.models_detector_ms_per_call + bare.embed_ms_per_call);
    Ok(BenchReport {
        model: detector.model_id().to_string(),
        embedder: embedder
            .as_ref()
            .map(|e| e.embedder_id().to_string())
            .unwrap_or_default(),
        video: options.video.display().to_string(),
        frame_width,
        frame_height,
        e2e_to_bare: end_to_end.fps / bare.fps,
        e2e_to_models: end_to_end.fps / bare.models_fps,
        bare,
        end_to_end,
        rss_start_kib,
        rss_end_kib: rss_kib(),
    })
}

/// The bare models phase's figures.
struct BareModels {
    /// Embedder calls timed.
    embed_calls: u64,
    /// Mean milliseconds of a detector call made after an embedder call.
    detector_ms: f64,
    /// Embedder milliseconds per detector call.
    embed_ms: f64,
}

/// Times the detector (on `frames`, letterboxed once) and the embedder in
/// turn, for `crops` crops (a mean, so fractional) per detector call, split
/// as end to end splits them: whole calls of [`MAX_EMBED_BATCH`] and one
/// remainder call, whose time is interpolated between the whole numbers of
/// crops around it. Each call size is timed for an equal share of `time`,
/// every embedder call right after a detector call, on crops cut once
/// beforehand from the people the detector finds in `frames` (repeated to
/// make up the number; the whole first frame if it finds nobody). Above
/// [`MAX_EMBED_BATCH`] crops per detector call (large batches), end to end
/// makes its embedder calls back to back after one detector call, while
/// here each follows a detector call: the figure then prices the turns a
/// little high.
fn bare_models(
    embedder: &mut Embedder,
    detector: &mut Detector,
    frames: &[RgbFrame<'_>],
    crops: f64,
    time: Duration,
) -> Result<BareModels, BenchError> {
    let mut people: Vec<(&RgbFrame<'_>, BBox)> = detector
        .detect_batch(frames)?
        .into_iter()
        .zip(frames)
        .flat_map(|(candidates, frame)| candidates.into_iter().map(move |c| (frame, c.bbox)))
        .collect();
    if people.is_empty() {
        let frame = &frames[0];
        let whole = BBox {
            x: 0.0,
            y: 0.0,
            w: frame.width as f32,
            h: frame.height as f32,
        };
        people.push((frame, whole));
    }
    let Split {
        full_calls,
        below,
        above,
        fraction,
    } = split_crops(crops);
    let mut sizes = vec![below, above];
    if full_calls > 0.0 {
        sizes.push(MAX_EMBED_BATCH);
    }
    sizes.retain(|&n| n > 0);
    sizes.dedup();
    let share = time / sizes.len().max(1) as u32;
    let detector_batch = frames.len();
    let (mut total_calls, mut detector_s) = (0u64, 0.0);
    // Milliseconds per embedder call of `n` crops, each call right after a
    // detector call (timed on its own).
    let mut ms = |n: usize| -> Result<f64, BenchError> {
        if n == 0 {
            return Ok(0.0);
        }
        let batch: Vec<(&RgbFrame<'_>, BBox)> = people.iter().copied().cycle().take(n).collect();
        embedder.prepare(&batch);
        for _ in 0..2 {
            detector.forward(detector_batch)?; // warm-up
            embedder.forward()?;
        }
        let started = Instant::now();
        let (mut calls, mut embed_s) = (0u64, 0.0);
        while calls < 5 || started.elapsed() < share {
            let detecting = Instant::now();
            detector.forward(detector_batch)?;
            let embedding = Instant::now();
            embedder.forward()?;
            detector_s += (embedding - detecting).as_secs_f64();
            embed_s += embedding.elapsed().as_secs_f64();
            calls += 1;
        }
        total_calls += calls;
        Ok(embed_s * 1000.0 / calls as f64)
    };
    let full_ms = if full_calls > 0.0 {
        full_calls * ms(MAX_EMBED_BATCH)?
    } else {
        0.0
    };
    let below_ms = ms(below)?;
    let above_ms = if above == below { below_ms } else { ms(above)? };
    let rest_ms = below_ms + (above_ms - below_ms) * fraction;
    Ok(BareModels {
        embed_calls: total_calls,
        detector_ms: detector_s * 1000.0 / total_calls.max(1) as f64,
        embed_ms: full_ms + rest_ms,
    })
}

/// A mean number of crops per detector call as end to end embeds them.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Split {
    /// Calls of [`MAX_EMBED_BATCH`] crops.
    full_calls: f64,
    /// The whole numbers of crops around the remainder call's count.
    below: usize,
    above: usize,
    /// Where the remainder lies between them (0 = `below`).
    fraction: f64,
}

fn split_crops(crops: f64) -> Split {
    let per_call = MAX_EMBED_BATCH as f64;
    let full_calls = (crops.max(0.0) / per_call).floor();
    let rest = crops.max(0.0) - full_calls * per_call;
    let below = rest.floor();
    Split {
        full_calls,
        below: below as usize,
        above: rest.ceil() as usize,
        fraction: rest - below,
    }
}

fn clone_frame(frame: &Frame) -> Frame {
    Frame {
        data: frame.data.clone(),
        ..*frame
    }
}

/// The end-to-end phase.
fn end_to_end(
    options: &BenchOptions,
    batch: usize,
    detector: &mut Detector,
    embedder: Option<&mut Embedder>,
) -> Result<EndToEndReport, BenchError> {
    let dir = std::env::temp_dir().join(format!("argus-bench-spool-{}", std::process::id()));
    let _cleanup = RemoveDirOnDrop(dir.clone());
    let (mut spool, _) = Spool::open(
        &dir,
        SpoolConfig {
            max_bytes: 256 << 20,
            segment_bytes: 8 << 20,
            fsync: FsyncPolicy::OnRoll,
            ..SpoolConfig::default()
        },
    )?;
    let cameras: Vec<String> = (0..batch).map(|i| format!("bench-{i}")).collect();
    let model_id = detector.model_id().to_string();
    let embedder_id = embedder
        .as_ref()
        .map(|e| e.embedder_id().to_string())
        .unwrap_or_default();
    let (mut frames, mut failed, mut persons, mut wire_bytes, mut raw_bytes) = (0u64, 0, 0, 0, 0);
    let (mut letterbox_s, mut detect_s, mut embed_s) = (0.0, 0.0, 0.0);
    let limit = options.max_frames.unwrap_or(u64::MAX);
    let started = Instant::now();
    let mut video = Video::open(&options.video)?;
    let mut seq = 0u64;
    let mut ended = false;
    let mut rss_first_pass_kib = None;
    let preparation = options
        .preparation
        .unwrap_or_else(|| Preparation::for_threads(&[options.intra_threads]));
    // The source (on the preparation thread when there is one): the next
    // `batch` frames of the video (looping it with `duration`), a decoding
    // error as a marker, or `None` once the frames, the time or the video
    // ran out.
    let next = || {
        if ended {
            return None;
        }
        let mut pending = Vec::with_capacity(batch);
        while pending.len() < batch {
            if seq >= limit || options.duration.is_some_and(|d| started.elapsed() >= d) {
                ended = true;
                break;
            }
            match video.next_frame(pending.len()) {
                Ok(Some(mut frame)) => {
                    frame.seq = seq;
                    seq += 1;
                    pending.push(frame);
                }
                Ok(None) if options.duration.is_some() && seq > 0 => {
                    rss_first_pass_kib.get_or_insert_with(rss_kib);
                    match Video::open(&options.video) {
                        Ok(again) => video = again,
                        Err(error) => {
                            ended = true;
                            return Some(Input::Marker(error));
                        }
                    }
                }
                Ok(None) => {
                    ended = true;
                    break;
                }
                Err(error) => {
                    ended = true;
                    return Some(Input::Marker(error));
                }
            }
        }
        (!pending.is_empty()).then_some(Input::Frames(pending))
    };
    let mut error = None;
    let sink = |output: Output<BenchError>| {
        let (pending, analysed) = match output {
            Output::Marker(e) => {
                error = Some(e);
                return ControlFlow::Break(());
            }
            Output::Analysed { frames, analysis } => (frames, analysis),
        };
        let t = &analysed.timings;
        let seconds = |d: Option<Duration>| d.map(|d| d.as_secs_f64()).unwrap_or(0.0);
        letterbox_s += seconds(t.letterbox);
        detect_s += seconds(t.detect);
        embed_s += t.embed.iter().map(|(d, _)| d.as_secs_f64()).sum::<f64>();
        let mut last_seq = 0;
        for (frame, analysis) in pending.iter().zip(analysed.frames) {
            let Ok(analysis) = analysis else {
                failed += 1;
                continue;
            };
            persons += analysis.detections.len() as u64;
            let message = crate::frame_message(
                &cameras[frame.camera],
                frame,
                &model_id,
                &embedder_id,
                analysis.detections,
            );
            let payload = wire::encode(&message);
            wire_bytes += payload.len() as u64;
            raw_bytes += (frame.width * frame.height * 3) as u64;
            let record = Record::new(
                topics::DETECTIONS,
                topics::key(&message.camera_id),
                payload,
                frame.capture_ts_us / 1000,
            );
            match spool.append(&record) {
                Ok(seq) => last_seq = seq,
                Err(e) => {
                    error = Some(e.into());
                    return ControlFlow::Break(());
                }
            }
            frames += 1;
        }
        if last_seq > 0
            && let Err(e) = spool.ack(last_seq)
        {
            error = Some(e.into());
            return ControlFlow::Break(());
        }
        ControlFlow::Continue(())
    };
    let stage = Stage {
        // No masks: every camera gets the empty filter.
        filters: &[],
        detector,
        embedder,
        preparation,
        max_batch: batch,
    };
    // The video source never waits for input: nothing to halt.
    pipeline::run(stage, next, || (), sink).map_err(BenchError::Thread)?;
    if let Some(error) = error {
        return Err(error);
    }
    let seconds = started.elapsed().as_secs_f64();
    let per_frame = |total: u64| total as f64 / frames.max(1) as f64;
    Ok(EndToEndReport {
        batch,
        frames,
        seconds,
        fps: frames as f64 / seconds,
        prepared_ahead: preparation == Preparation::Ahead,
        letterbox_share: letterbox_s / seconds,
        detector_share: detect_s / seconds,
        embedder_share: embed_s / seconds,
        persons_per_frame: per_frame(persons),
        wire_bytes_per_frame: per_frame(wire_bytes),
        raw_bytes_per_frame: raw_bytes / frames.max(1),
        raw_to_wire: raw_bytes as f64 / wire_bytes.max(1) as f64,
        failed,
        rss_first_pass_kib: rss_first_pass_kib.unwrap_or(0),
    })
}

/// Removes a directory (the temporary spool) when dropped.
struct RemoveDirOnDrop(PathBuf);

impl Drop for RemoveDirOnDrop {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A file decoded to RGB by GStreamer as fast as it goes, pulled frame by
/// frame; the pipeline is set to Null when dropped.
struct Video {
    path: PathBuf,
    pipeline: gst::Pipeline,
    sink: gst_app::AppSink,
}

impl Drop for Video {
    fn drop(&mut self) {
        let _ = self.pipeline.set_state(gst::State::Null);
    }
}

impl Video {
    fn open(path: &Path) -> Result<Self, BenchError> {
        let fail = |message: String| BenchError::Video {
            path: path.display().to_string(),
            message,
        };
        gst::init().map_err(|e| fail(e.to_string()))?;
        let absolute = std::path::absolute(path).map_err(|e| fail(e.to_string()))?;
        let uri = gst::glib::filename_to_uri(&absolute, None).map_err(|e| fail(e.to_string()))?;
        let line = format!(
            "uridecodebin uri=\"{uri}\" ! videoconvert ! video/x-raw,format=RGB ! \
             appsink name=sink sync=false max-buffers=4 drop=false emit-signals=false"
        );
        let pipeline = gst::parse::launch(&line)
            .map_err(|e| fail(format!("pipeline: {e}")))?
            .downcast::<gst::Pipeline>()
            .map_err(|_| fail("launch line did not make a pipeline".into()))?;
        let sink = pipeline
            .by_name("sink")
            .and_then(|sink| sink.downcast::<gst_app::AppSink>().ok())
            .ok_or_else(|| fail("pipeline has no appsink".into()))?;
        let video = Video {
            path: path.to_path_buf(),
            pipeline,
            sink,
        };
        video
            .pipeline
            .set_state(gst::State::Playing)
            .map_err(|e| fail(format!("cannot play: {e}")))?;
        Ok(video)
    }

    fn error(&self, message: &str) -> BenchError {
        BenchError::Video {
            path: self.path.display().to_string(),
            message: message.to_string(),
        }
    }

    /// The next frame for camera index `camera`, or `None` at the end.
    fn next_frame(&mut self, camera: usize) -> Result<Option<Frame>, BenchError> {
        let Ok(sample) = self.sink.pull_sample() else {
            // EOS or an error: an error is on the bus.
            if let Some(bus) = self.pipeline.bus()
                && let Some(message) = bus.pop_filtered(&[gst::MessageType::Error])
                && let gst::MessageView::Error(err) = message.view()
            {
                return Err(self.error(&err.error().to_string()));
            }
            return Ok(None);
        };
        let info = sample
            .caps()
            .and_then(|caps| gstreamer_video::VideoInfo::from_caps(caps).ok())
            .ok_or_else(|| self.error("sample without video caps"))?;
        let buffer = sample
            .buffer()
            .ok_or_else(|| self.error("sample without buffer"))?;
        let data = buffer
            .to_owned()
            .into_mapped_buffer_readable()
            .map_err(|_| self.error("unreadable buffer"))?;
        let stride =
            usize::try_from(info.stride()[0]).map_err(|_| self.error("negative stride"))?;
        Ok(Some(Frame {
            camera,
            seq: 0,
            capture_ts_us: service_kit::clock::now_us(),
            width: info.width() as usize,
            height: info.height() as usize,
            stride,
            data: Pixels::Mapped(data),
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::{MAX_EMBED_BATCH, Split, split_crops};

    #[test]
    fn crops_split_into_full_calls_and_an_interpolated_rest() {
        let split = |full_calls, below, above, fraction| Split {
            full_calls,
            below,
            above,
            fraction,
        };
        assert_eq!(split_crops(0.0), split(0.0, 0, 0, 0.0));
        assert_eq!(split_crops(5.5), split(0.0, 5, 6, 0.5));
        assert_eq!(split_crops(6.0), split(0.0, 6, 6, 0.0));
        assert_eq!(MAX_EMBED_BATCH, 64);
        // 16 frames of 5.75 people: one call of 64 and one of 28.
        assert_eq!(split_crops(92.0), split(1.0, 28, 28, 0.0));
        let s = split_crops(128.25);
        assert_eq!((s.full_calls, s.below, s.above), (2.0, 0, 1));
        assert!((s.fraction - 0.25).abs() < 1e-12);
    }
}
