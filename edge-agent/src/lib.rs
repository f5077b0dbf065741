//! The Argus edge agent: camera streams in, compact person detections out.
//!
//! # Layout
//! - [`config`]: the typed TOML configuration and its validation.
//! - [`source`]: GStreamer ingest per camera (RTSP, HTTP, files, V4L2, test
//!   pattern), the analysis rate, reconnects with back-off, camera state.
//! - [`queue`]: the frame hand-off between sources and inference (live
//!   cameras keep the newest frame; files wait).
//! - [`batch`]: the pure policy grouping frames of different cameras into
//!   one detector batch, with a timeout.
//! - [`inference`]: ONNX Runtime detector (letterbox → YOLO → NMS, batched
//!   across cameras) and appearance embedder (batched crops, L2-normalised).
//! - [`analyse_batch`] (here): a batch's detections, masked by each camera's
//!   ROI and exclusion polygons before the survivors are embedded together.
//! - [`pipeline`]: the inference stage, letterboxing the next batch on a
//!   thread of its own while the models run on this one where their
//!   threads leave a core free, else in turn (agent and `bench`).
//! - [`publish`]: protobuf encoding of detections and health reports into
//!   the durable spool.
//! - [`egress`]: the spool → Kafka sender: in-order delivery, retries from
//!   the spool, the egress counters.
//! - [`metrics`]: the Prometheus metrics and the `/healthz` rule.
//! - [`model`]: the `model import-darknet` and `model generate-weights`
//!   commands.
//! - [`bench`]: the `bench` command (inference and end-to-end throughput).
//!
//! Data flow: camera threads → [`queue::FrameQueue`] → batches of up to
//! `detector.max_batch` frames of different cameras, letterboxed (one batch
//! ahead on a preparation thread, or in turn) → one inference thread →
//! bounded channel (blocks: detections are never shed) → publisher task →
//! on-disk spool (bounded: drops its oldest records when full) → sender →
//! Kafka. Shutdown stops the sources, drains queued frames, then sends what
//! the spool holds for up to `egress.shutdown_timeout_s`; the rest stays in
//! the spool for the next start.

pub mod batch;
pub mod bench;
pub mod config;
pub mod crops;
pub mod egress;
pub mod inference;
pub mod metrics;
pub mod model;
pub mod pipeline;
pub mod publish;
pub mod queue;
pub mod source;

use std::future::Future;
use std::net::SocketAddr;
use std::ops::ControlFlow;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use schemas::v1::{Detection, Embedding, FrameDetections};
use service_kit::config::ConfigError;
use service_kit::metrics::{Registry, ServeError};
use tokio::sync::mpsc;
use vision::bbox::BBox;
use vision::letterbox::RgbFrame;
use vision::roi::RegionFilter;
use vision::yolo::Candidate;

use crate::batch::BatchPolicy;
use crate::config::EdgeConfig;
use crate::egress::EgressSummary;
use crate::inference::{DetectionParams, Detector, Embedder, InferenceError, MAX_EMBED_BATCH};
use crate::metrics::{BatchTimings, InferenceMetrics};
use crate::pipeline::{Input, Output, Preparation, Stage};
use crate::publish::{Outgoing, PublishError, PublishSettings, Publisher};
use crate::queue::{FrameQueue, NextBatch};
use crate::source::CameraStats;

/// Why the agent stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum EdgeError {
    /// The configuration is not usable (a bad ROI or exclusion polygon).
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// A model or ONNX Runtime could not be loaded.
    #[error(transparent)]
    Inference(#[from] InferenceError),
    /// The spool could not be opened or the Kafka producer created.
    #[error(transparent)]
    Publish(#[from] PublishError),
    /// The metrics endpoint could not listen.
    #[error(transparent)]
    Metrics(#[from] ServeError),
    /// A thread could not be started.
    #[error("cannot start thread: {0}")]
    Thread(#[from] std::io::Error),
}

/// Per-camera totals at the end of a run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CameraSummary {
    /// Camera id.
    pub camera_id: String,
    /// Frames delivered by the decoder.
    pub frames_in: u64,
    /// Frames not analysed because of the camera's `max_fps`.
    pub frames_skipped: u64,
    /// Frames analysed.
    pub frames_analysed: u64,
    /// Frames shed because inference was busy.
    pub frames_dropped: u64,
    /// Person boxes published.
    pub persons: u64,
    /// Person boxes dropped by the camera's ROI and exclusion masks.
    pub persons_masked: u64,
    /// Times the source was connected again.
    pub reconnects: u64,
    /// Times a looping file started over.
    pub loops: u64,
}

/// What a run did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunSummary {
    /// Per-camera totals, in config order.
    pub cameras: Vec<CameraSummary>,
    /// The spool and Kafka deliveries.
    pub egress: EgressSummary,
}

/// Runs the agent until every camera has ended or `shutdown` completes.
pub async fn run(
    config: EdgeConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<RunSummary, EdgeError> {
    run_with(config, shutdown, |_| {}).await
}

/// [`run`], calling `on_metrics` with the address the `/metrics` endpoint
/// listens on (when `[metrics]` is configured) as soon as it does: with
/// port 0 this is how a caller (a test) learns the port. The endpoint
/// serves until the run returns, through the egress's shutdown flush.
pub async fn run_with(
    config: EdgeConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
    on_metrics: impl FnOnce(SocketAddr),
) -> Result<RunSummary, EdgeError> {
    // Checked by `EdgeConfig::validate`; built here once per camera.
    let filters = config
        .cameras
        .iter()
        .map(|camera| camera.region_filter())
        .collect::<Result<Vec<_>, _>>()
        .map_err(ConfigError::Invalid)?;
    // Opening reads the whole spool (blocking), before anything else runs;
    // a spool in use by another agent fails the start here.
    let publisher = Publisher::open(PublishSettings::from_config(&config))?;
    let library = config.onnxruntime_library.clone().unwrap_or_default();
    let env = inference::environment(&library)?;
    let params = DetectionParams {
        score_threshold: config.detector.score_threshold,
        nms_iou_threshold: config.detector.nms_iou_threshold,
        classes: config.detector.classes.clone(),
    };
    let detector = Detector::load(
        &env,
        &config.detector.model,
        params,
        config.detector.intra_threads,
    )?;
    let policy = config.detector.batch_policy();
    let mut threads = vec![config.detector.intra_threads];
    if config.embedder.enabled {
        threads.push(config.embedder.intra_threads);
    }
    let preparation = Preparation::for_threads(&threads);
    let embedder = if config.embedder.enabled {
        let e = &config.embedder;
        Some(Embedder::load(
            &env,
            &e.model,
            e.input_height,
            e.input_width,
            e.intra_threads,
        )?)
    } else {
        None
    };
    tracing::info!(
        model = detector.model_id(),
        embedder = embedder.as_ref().map(|e| e.embedder_id()),
        cameras = config.cameras.len(),
        max_batch = policy.max_batch,
        batch_timeout_ms = policy.timeout.as_millis() as u64,
        prepare_ahead = preparation == Preparation::Ahead,
        "Edge agent starting"
    );
    let missing = source::missing_environment();
    let v4l2 = |camera: &&config::CameraConfig| {
        matches!(
            camera.source().map(|source| source.kind),
            Ok(source::kind::SourceKind::V4l2 { .. })
        )
    };
    if let Some(camera) = config.cameras.iter().find(v4l2)
        && !missing.is_empty()
    {
        tracing::warn!(camera = %camera.id, ?missing, "{}", source::MISSING_ENVIRONMENT);
    }
    for (camera, filter) in config.cameras.iter().zip(&filters) {
        if !filter.is_empty() {
            tracing::info!(camera = %camera.id, roi = filter.include.len(), exclude = filter.exclude.len(), anchor = ?filter.anchor, "Detection masks");
        }
    }

    let cameras = Arc::new(config.cameras.clone());
    let queue = Arc::new(FrameQueue::new(cameras.len()));
    let stats: Arc<Vec<Arc<CameraStats>>> =
        Arc::new(cameras.iter().map(|_| Arc::default()).collect());
    let stop = Arc::new(AtomicBool::new(false));
    let registry = Registry::new();
    let inference_metrics = InferenceMetrics::new(&registry, &cameras);
    // Serves until the end of the run (the trigger fires when dropped).
    let (_metrics_stop, metrics_shutdown) = service_kit::shutdown::channel();
    if let Some(metrics) = &config.metrics {
        metrics::add_agent_collector(
            &registry,
            Arc::clone(&cameras),
            Arc::clone(&stats),
            publisher.stats(),
            metrics.unhealthy_after(),
        );
        let address =
            service_kit::metrics::serve(&metrics.listen, registry.clone(), metrics_shutdown)
                .await?;
        on_metrics(address);
    }
    // Bounded; blocking senders: detections toward Kafka are never shed.
    let (out_tx, out_rx) = mpsc::channel::<Outgoing>(256);

    let mut sources = Vec::new();
    for (index, camera) in cameras.iter().enumerate() {
        let (queue, stats, stop, tx, camera) = (
            Arc::clone(&queue),
            Arc::clone(&stats[index]),
            Arc::clone(&stop),
            out_tx.clone(),
            camera.clone(),
        );
        sources.push(
            std::thread::Builder::new()
                .name(format!("camera-{}", camera.id))
                .spawn(move || {
                    let on_health = |i: usize| {
                        let _ = tx.blocking_send(Outgoing::Health(i));
                    };
                    source::run_camera(index, &camera, &queue, &stats, &stop, &on_health);
                })?,
        );
    }

    let worker = {
        let (queue, stats, cameras, tx) = (
            Arc::clone(&queue),
            Arc::clone(&stats),
            Arc::clone(&cameras),
            out_tx.clone(),
        );
        let crops = config.crops.enabled.then(|| config.crops.clone());
        std::thread::Builder::new()
            .name("inference".into())
            .spawn(move || {
                let models = Models { detector, embedder };
                let worker = Worker {
                    cameras: &cameras,
                    filters: &filters,
                    stats: &stats,
                    metrics: &inference_metrics,
                    crops: crops.as_ref(),
                    out: &tx,
                    preparation,
                };
                worker.run(&queue, &policy, models)
            })?
    };
    drop(out_tx);

    let publisher = tokio::spawn(publisher.run(out_rx, Arc::clone(&cameras), Arc::clone(&stats)));
    // A panicked inference thread counts nobody (the panic is logged).
    let worker_done =
        tokio::task::spawn_blocking(move || worker.join().unwrap_or_else(|_| Ok(Vec::new())));
    tokio::pin!(worker_done);
    let persons = tokio::select! {
        done = &mut worker_done => done.unwrap_or_else(|_| Ok(Vec::new())),
        () = shutdown => {
            tracing::info!("Stopping sources and draining queued frames");
            stop.store(true, Ordering::Relaxed);
            queue.stop();
            worker_done.await.unwrap_or_else(|_| Ok(Vec::new()))
        }
    };
    stop.store(true, Ordering::Relaxed);
    queue.stop();
    for source in sources {
        let _ = source.join();
    }
    let egress = publisher.await.unwrap_or_else(|error| {
        tracing::error!(%error, "Publisher task failed; unsent messages stay in the spool");
        EgressSummary::default()
    });
    // The preparation thread could not start: everything is stopped and
    // the spool flushed, so the error is the only thing left to report.
    let persons = persons?;
    let summary: Vec<CameraSummary> = cameras
        .iter()
        .zip(stats.iter())
        .enumerate()
        .map(|(i, (camera, s))| CameraSummary {
            camera_id: camera.id.clone(),
            frames_in: s.frames_in.load(Ordering::Relaxed),
            frames_skipped: s.frames_skipped.load(Ordering::Relaxed),
            frames_analysed: s.frames_analysed.load(Ordering::Relaxed),
            frames_dropped: s.frames_dropped.load(Ordering::Relaxed),
            persons: persons.get(i).copied().unwrap_or(0),
            persons_masked: s.persons_masked.load(Ordering::Relaxed),
            reconnects: s.reconnects.load(Ordering::Relaxed),
            loops: s.loops.load(Ordering::Relaxed),
        })
        .collect();
    let [full, all_live, timeout, stopped] = queue.closed_batches().map(|(_, n)| n);
    tracing::info!(
        full,
        all_live,
        timeout,
        stopped,
        "Batches by why they closed (all_live: every live camera was in; timeout: a live camera missed it)"
    );
    for s in &summary {
        tracing::info!(camera = %s.camera_id, frames_in = s.frames_in, frames_skipped = s.frames_skipped, frames_analysed = s.frames_analysed, frames_dropped = s.frames_dropped, persons = s.persons, persons_masked = s.persons_masked, reconnects = s.reconnects, loops = s.loops, "Camera totals");
    }
    Ok(RunSummary {
        cameras: summary,
        egress,
    })
}

/// The models the inference thread owns.
struct Models {
    detector: Detector,
    embedder: Option<Embedder>,
}

/// What the inference thread works with.
struct Worker<'a> {
    cameras: &'a [config::CameraConfig],
    filters: &'a [RegionFilter],
    stats: &'a [Arc<CameraStats>],
    metrics: &'a InferenceMetrics,
    out: &'a mpsc::Sender<Outgoing>,
    /// JPEG crops to attach; `None` when `[crops]` is off.
    crops: Option<&'a config::CropsConfig>,
    /// Where batches are letterboxed.
    preparation: Preparation,
}

impl Worker<'_> {
    /// Analyses batches until the queue closes, letterboxing each batch on
    /// a preparation thread while the batch before is in the models, or in
    /// turn (see [`pipeline`]). Returns the number of person boxes published
    /// per camera; fails only when the preparation thread cannot be started.
    fn run(
        &self,
        queue: &FrameQueue,
        policy: &BatchPolicy,
        mut models: Models,
    ) -> std::io::Result<Vec<u64>> {
        let mut persons = vec![0u64; self.cameras.len()];
        let model_id = models.detector.model_id().to_string();
        let embedder_id = models
            .embedder
            .as_ref()
            .map(|e| e.embedder_id().to_string())
            .unwrap_or_default();
        let next = || match queue.next_batch(policy) {
            NextBatch::Closed => None,
            NextBatch::Frames(frames) => Some(Input::Frames(frames)),
            NextBatch::Ended(camera) => Some(Input::Marker(camera)),
        };
        let sink = |output: Output<usize>| {
            let sent = match output {
                Output::Marker(camera) => self.send(FrameDetections {
                    schema_version: schemas::SCHEMA_VERSION,
                    camera_id: self.cameras[camera].id.clone(),
                    model_id: model_id.clone(),
                    embedder_id: embedder_id.clone(),
                    end_of_stream: true,
                    capture_ts_us: service_kit::clock::now_us(),
                    ..Default::default()
                }),
                Output::Analysed { frames, analysis } => {
                    self.publish(&frames, analysis, &mut persons, &model_id, &embedder_id)
                }
            };
            if sent {
                ControlFlow::Continue(())
            } else {
                // Nobody to publish to.
                ControlFlow::Break(())
            }
        };
        let stage = Stage {
            filters: self.filters,
            detector: &mut models.detector,
            embedder: models.embedder.as_mut(),
            preparation: self.preparation,
            max_batch: policy.max_batch,
        };
        // However the stage stops (the queue closed, the publisher gone, a
        // panic), a preparation thread must not wait for frames that will
        // never be analysed.
        pipeline::run(stage, next, || queue.stop(), sink)?;
        Ok(persons)
    }

    /// Counts and publishes the analysed `frames`; false when the publisher
    /// is gone.
    fn publish(
        &self,
        frames: &[queue::Frame],
        batch: BatchAnalysis,
        persons: &mut [u64],
        model_id: &str,
        embedder_id: &str,
    ) -> bool {
        self.metrics.batch(&batch.timings);
        for (frame, analysis) in frames.iter().zip(batch.frames) {
            let camera = &self.cameras[frame.camera];
            let analysis = match analysis {
                Ok(a) => a,
                Err(error) => {
                    tracing::warn!(camera = %camera.id, seq = frame.seq, %error, "Frame not analysed");
                    self.metrics.failed(&camera.id, 1);
                    continue;
                }
            };
            let camera_stats = &self.stats[frame.camera];
            camera_stats.frames_analysed.fetch_add(1, Ordering::Relaxed);
            camera_stats
                .persons_masked
                .fetch_add(analysis.masked, Ordering::Relaxed);
            let mut detections = analysis.detections;
            persons[frame.camera] += detections.len() as u64;
            self.metrics.analysed(&camera.id, detections.len() as u64);
            if let Some(settings) = self.crops
                && !detections.is_empty()
                && let Ok(rgb) = rgb(frame)
            {
                let (crops, bytes) = crops::attach(&rgb, &mut detections, settings);
                self.metrics.crops(&camera.id, crops, bytes);
            }
            let message = frame_message(&camera.id, frame, model_id, embedder_id, detections);
            if !self.send(message) {
                return false;
            }
        }
        true
    }

    /// Hands a message to the publisher; false when it is gone.
    fn send(&self, message: FrameDetections) -> bool {
        let sent = self.out.blocking_send(Outgoing::Frame(message)).is_ok();
        if !sent {
            tracing::error!("Publisher is gone; stopping inference");
        }
        sent
    }
}

/// What [`analyse`] found in one frame.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Analysis {
    /// The detections to publish, best first.
    pub detections: Vec<Detection>,
    /// Detections dropped by the camera's ROI and exclusion masks.
    pub masked: u64,
}

/// What [`analyse_batch`] found, and what it cost.
#[derive(Debug)]
pub struct BatchAnalysis {
    /// Each frame's analysis, in order.
    pub frames: Vec<Result<Analysis, InferenceError>>,
    /// The detector and embedder calls.
    pub timings: BatchTimings,
}

/// Detects the people of one frame, drops those the camera's `filter` masks
/// and embeds the rest.
pub fn analyse(
    frame: &queue::Frame,
    detector: &mut Detector,
    embedder: Option<&mut Embedder>,
    filter: &RegionFilter,
) -> Result<Analysis, InferenceError> {
    analyse_batch(&[(frame, filter)], detector, embedder)
        .frames
        .pop()
        .unwrap_or_else(|| Err(InferenceError::Ort("no analysis".into())))
}

/// [`analyse`] for a batch of frames, each with its camera's filter: one
/// detector call for all frames, then one embedder call for all crops kept
/// (up to [`MAX_EMBED_BATCH`] crops per call). A malformed frame fails
/// alone; a failed model call fails every frame that was in it.
pub fn analyse_batch(
    frames: &[(&queue::Frame, &RegionFilter)],
    detector: &mut Detector,
    embedder: Option<&mut Embedder>,
) -> BatchAnalysis {
    analyse_with(
        frames,
        |rgbs, timings| {
            let started = Instant::now();
            detector.letterbox(rgbs);
            timings.letterbox = Some(started.elapsed());
            let started = Instant::now();
            let found = detector.detect_letterboxed();
            timings.detect = Some(started.elapsed());
            found
        },
        embedder,
    )
}

/// The message that carries what was found in `frame` of camera `camera_id`
/// (the agent's and the bench's).
fn frame_message(
    camera_id: &str,
    frame: &queue::Frame,
    model_id: &str,
    embedder_id: &str,
    detections: Vec<Detection>,
) -> FrameDetections {
    FrameDetections {
        schema_version: schemas::SCHEMA_VERSION,
        camera_id: camera_id.to_string(),
        frame_seq: frame.seq,
        capture_ts_us: frame.capture_ts_us,
        frame_width: frame.width as u32,
        frame_height: frame.height as u32,
        model_id: model_id.to_string(),
        embedder_id: embedder_id.to_string(),
        detections,
        end_of_stream: false,
    }
}

/// A frame's pixels as [`RgbFrame`], or why they cannot be read as one.
fn rgb(frame: &queue::Frame) -> Result<RgbFrame<'_>, vision::letterbox::FrameError> {
    RgbFrame::new(&frame.data, frame.width, frame.height, frame.stride)
}

/// [`analyse_batch`] with the detector step given: `detect` gets the frames
/// that are readable (in order), records its letterbox and detector times,
/// and returns their candidates.
fn analyse_with(
    frames: &[(&queue::Frame, &RegionFilter)],
    detect: impl FnOnce(
        &[RgbFrame<'_>],
        &mut BatchTimings,
    ) -> Result<Vec<Vec<Candidate>>, InferenceError>,
    embedder: Option<&mut Embedder>,
) -> BatchAnalysis {
    let mut timings = BatchTimings::default();
    let mut results: Vec<Result<Analysis, InferenceError>> = Vec::with_capacity(frames.len());
    let mut valid = Vec::with_capacity(frames.len());
    let mut rgbs = Vec::with_capacity(frames.len());
    for (index, (frame, _)) in frames.iter().enumerate() {
        match rgb(frame) {
            Ok(rgb) => {
                rgbs.push(rgb);
                valid.push(index);
                results.push(Ok(Analysis::default()));
            }
            Err(e) => results.push(Err(InferenceError::Ort(format!("bad frame: {e}")))),
        }
    }
    if rgbs.is_empty() {
        return BatchAnalysis {
            frames: results,
            timings,
        };
    }
    let fail_all = |results: &mut Vec<Result<Analysis, InferenceError>>, error: &InferenceError| {
        for &index in &valid {
            results[index] = Err(InferenceError::Ort(error.to_string()));
        }
    };
    timings.frames = rgbs.len();
    let found = detect(&rgbs, &mut timings).and_then(|found| {
        if found.len() == rgbs.len() {
            Ok(found)
        } else {
            Err(InferenceError::Ort(format!(
                "{} detector results for {} frames",
                found.len(),
                rgbs.len()
            )))
        }
    });
    let found = match found {
        Ok(found) => found,
        Err(error) => {
            fail_all(&mut results, &error);
            return BatchAnalysis {
                frames: results,
                timings,
            };
        }
    };
    let per_frame = found
        .into_iter()
        .zip(&valid)
        .map(|(candidates, &index)| (candidates, frames[index].1))
        .collect();
    let analysed = detections(per_frame, |crops| match embedder {
        Some(embedder) => {
            let mut embeddings = Vec::with_capacity(crops.len());
            let mut batch = Vec::with_capacity(crops.len().min(MAX_EMBED_BATCH));
            for chunk in crops.chunks(MAX_EMBED_BATCH) {
                batch.clear();
                batch.extend(chunk.iter().map(|&(item, bbox)| (&rgbs[item], bbox)));
                let started = Instant::now();
                let vectors = embedder.embed_crops(&batch)?;
                timings.embed.push((started.elapsed(), chunk.len()));
                embeddings.extend(
                    vectors
                        .iter()
                        .map(|v| Some(schemas::embedding::quantise(v))),
                );
            }
            Ok(embeddings)
        }
        None => Ok(vec![None; crops.len()]),
    });
    match analysed {
        Ok(analyses) => {
            for (analysis, &index) in analyses.into_iter().zip(&valid) {
                results[index] = Ok(analysis);
            }
        }
        Err(error) => fail_all(&mut results, &error),
    }
    BatchAnalysis {
        frames: results,
        timings,
    }
}

/// The published detections of each frame's candidates (after NMS and the
/// class filter), with the frame's filter. The masks come first, so masked
/// people cost no embedding time: `embed` gets the crops of the people kept
/// in every frame, as (frame index, box), and returns one embedding each.
fn detections(
    frames: Vec<(Vec<Candidate>, &RegionFilter)>,
    embed: impl FnOnce(&[(usize, BBox)]) -> Result<Vec<Option<Embedding>>, InferenceError>,
) -> Result<Vec<Analysis>, InferenceError> {
    let mut kept = Vec::with_capacity(frames.len());
    let mut crops = Vec::new();
    for (index, (mut candidates, filter)) in frames.into_iter().enumerate() {
        let masked = if filter.is_empty() {
            0
        } else {
            filter.retain(&mut candidates) as u64
        };
        crops.extend(candidates.iter().map(|c| (index, c.bbox)));
        kept.push((candidates, masked));
    }
    let embeddings = embed(&crops)?;
    if embeddings.len() != crops.len() {
        return Err(InferenceError::Ort(format!(
            "{} embeddings for {} crops",
            embeddings.len(),
            crops.len()
        )));
    }
    let mut embeddings = embeddings.into_iter();
    Ok(kept
        .into_iter()
        .map(|(candidates, masked)| {
            let detections = candidates
                .iter()
                .map(|c| Detection {
                    x: c.bbox.x,
                    y: c.bbox.y,
                    width: c.bbox.w,
                    height: c.bbox.h,
                    score: c.score,
                    class_id: c.class_id,
                    embedding: embeddings.next().flatten(),
                    crop_jpeg: Vec::new(),
                })
                .collect();
            Analysis { detections, masked }
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use vision::roi::{Anchor, Polygon};

    use super::*;

    fn person(x: f32, y: f32, score: f32) -> Candidate {
        Candidate {
            bbox: BBox {
                x,
                y,
                w: 40.0,
                h: 100.0,
            },
            score,
            class_id: 0,
        }
    }

    fn rect(x0: f32, y0: f32, x1: f32, y1: f32) -> Polygon {
        Polygon::new(vec![[x0, y0], [x1, y0], [x1, y1], [x0, y1]]).unwrap()
    }

    /// An embedding that names the box it was made for.
    fn tag(bbox: &BBox) -> Option<Embedding> {
        Some(Embedding {
            scale: bbox.x,
            values: vec![],
        })
    }

    /// [`detections`] of one frame; `embed` gets its boxes.
    fn one(
        candidates: Vec<Candidate>,
        filter: &RegionFilter,
        embed: impl FnOnce(&[BBox]) -> Result<Vec<Option<Embedding>>, InferenceError>,
    ) -> Result<Analysis, InferenceError> {
        let analyses = detections(vec![(candidates, filter)], |crops| {
            assert!(crops.iter().all(|&(frame, _)| frame == 0));
            embed(&crops.iter().map(|&(_, b)| b).collect::<Vec<_>>())
        })?;
        assert_eq!(analyses.len(), 1);
        Ok(analyses.into_iter().next().unwrap())
    }

    #[test]
    fn a_batch_embeds_the_crops_of_all_frames_in_one_call_and_keeps_them_apart() {
        let exclude_left = RegionFilter {
            exclude: vec![rect(0.0, 0.0, 300.0, 576.0)],
            ..Default::default()
        };
        let everything = RegionFilter::default();
        let frames = vec![
            (
                vec![person(10.0, 0.0, 0.9), person(500.0, 0.0, 0.8)],
                &exclude_left,
            ),
            (Vec::new(), &exclude_left),
            (
                vec![person(20.0, 0.0, 0.7), person(30.0, 0.0, 0.6)],
                &everything,
            ),
        ];
        let mut calls = 0;
        let analyses = detections(frames, |crops| {
            calls += 1;
            let seen: Vec<(usize, f32)> = crops.iter().map(|&(i, b)| (i, b.x)).collect();
            assert_eq!(seen, [(0, 500.0), (2, 20.0), (2, 30.0)]);
            Ok(crops.iter().map(|(_, b)| tag(b)).collect())
        })
        .unwrap();
        assert_eq!(calls, 1);
        let xs = |a: &Analysis| -> Vec<(f32, f32)> {
            a.detections
                .iter()
                .map(|d| (d.x, d.embedding.as_ref().unwrap().scale))
                .collect()
        };
        assert_eq!(analyses.len(), 3);
        assert_eq!(
            (xs(&analyses[0]), analyses[0].masked),
            (vec![(500.0, 500.0)], 1)
        );
        assert_eq!((xs(&analyses[1]), analyses[1].masked), (vec![], 0));
        assert_eq!(
            (xs(&analyses[2]), analyses[2].masked),
            (vec![(20.0, 20.0), (30.0, 30.0)], 0)
        );
        let short = detections(
            vec![(vec![person(0.0, 0.0, 0.9)], &RegionFilter::default())],
            |_| Ok(Vec::new()),
        );
        assert!(
            short.is_err(),
            "a missing embedding is an error, not a shift"
        );
    }

    #[test]
    fn masked_people_are_dropped_before_embedding_and_counted() {
        // A 768x576 frame: the ROI is the floor (y >= 200), a TV screen in
        // the top-right corner and a mirror on the floor's right are masked.
        let filter = RegionFilter {
            include: vec![rect(0.0, 200.0, 768.0, 576.0)],
            exclude: vec![
                rect(600.0, 0.0, 768.0, 150.0),
                rect(650.0, 300.0, 768.0, 576.0),
            ],
            anchor: Anchor::BottomCentre,
        };
        let candidates = vec![
            person(100.0, 300.0, 0.9), // feet (120, 400): on the floor, kept
            person(620.0, 20.0, 0.8),  // feet (640, 120): in the TV, masked
            person(300.0, 50.0, 0.7),  // feet (320, 150): above the floor, masked
            person(680.0, 350.0, 0.6), // feet (700, 450): in the mirror, masked
            person(400.0, 476.0, 0.5), // feet (420, 576): on the frame's edge, kept
        ];
        let mut embedded = Vec::new();
        let analysis = one(candidates, &filter, |boxes| {
            embedded.extend_from_slice(boxes);
            Ok(boxes.iter().map(tag).collect())
        })
        .unwrap();
        assert_eq!(analysis.masked, 3);
        assert_eq!(
            embedded,
            vec![
                person(100.0, 300.0, 0.9).bbox,
                person(400.0, 476.0, 0.5).bbox
            ],
            "only the people kept are embedded"
        );
        let kept: Vec<(f32, f32, f32)> = analysis
            .detections
            .iter()
            .map(|d| (d.x, d.y, d.score))
            .collect();
        assert_eq!(kept, vec![(100.0, 300.0, 0.9), (400.0, 476.0, 0.5)]);
        for d in &analysis.detections {
            assert_eq!(
                d.embedding.as_ref().unwrap().scale,
                d.x,
                "embeddings stay with their boxes"
            );
            assert_eq!((d.width, d.height, d.class_id), (40.0, 100.0, 0));
        }
    }

    #[test]
    fn the_centre_anchor_tests_the_middle_of_the_box() {
        let filter = RegionFilter {
            exclude: vec![rect(0.0, 0.0, 768.0, 250.0)],
            anchor: Anchor::Centre,
            ..Default::default()
        };
        // Centres at y = 230 (masked) and y = 260 (kept); both feet are
        // below the exclusion.
        let candidates = vec![person(0.0, 180.0, 0.9), person(100.0, 210.0, 0.8)];
        let no_embedding = |boxes: &[BBox]| Ok(vec![None; boxes.len()]);
        let analysis = one(candidates.clone(), &filter, no_embedding).unwrap();
        assert_eq!(analysis.masked, 1);
        assert_eq!(analysis.detections.len(), 1);
        assert_eq!(analysis.detections[0].x, 100.0);
        let feet = RegionFilter {
            anchor: Anchor::BottomCentre,
            ..filter
        };
        let analysis = one(candidates, &feet, no_embedding).unwrap();
        assert_eq!((analysis.masked, analysis.detections.len()), (0, 2));
    }

    #[test]
    fn without_masks_every_candidate_is_published() {
        let candidates = vec![person(0.0, 0.0, 0.9), person(500.0, 400.0, 0.8)];
        let analysis = one(candidates, &RegionFilter::default(), |boxes| {
            Ok(vec![None; boxes.len()])
        })
        .unwrap();
        assert_eq!(analysis.masked, 0);
        assert_eq!(analysis.detections.len(), 2);
        assert!(analysis.detections.iter().all(|d| d.embedding.is_none()));
    }

    #[test]
    fn everything_masked_embeds_nothing() {
        let filter = RegionFilter {
            exclude: vec![rect(0.0, 0.0, 768.0, 576.0)],
            ..Default::default()
        };
        let candidates = vec![person(0.0, 0.0, 0.9), person(500.0, 400.0, 0.8)];
        let analysis = one(candidates, &filter, |boxes| {
            assert!(boxes.is_empty());
            Ok(Vec::new())
        })
        .unwrap();
        assert_eq!(analysis.masked, 2);
        assert!(analysis.detections.is_empty());
    }
}
