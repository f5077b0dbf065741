//! The Argus edge agent: camera streams in, compact person detections out.
//!
//! # Layout
//! - [`config`]: the typed TOML configuration and its validation.
//! - [`source`]: GStreamer ingest per camera, reconnects, camera state.
//! - [`queue`]: the frame hand-off between sources and inference (live
//!   cameras keep the newest frame; files wait).
//! - [`inference`]: ONNX Runtime detector (letterbox → YOLO → NMS) and
//!   appearance embedder (batched crops, L2-normalised).
//! - [`publish`]: protobuf encoding and the Kafka producer.
//! - [`model`]: the `model import-darknet` command.
//!
//! Data flow: camera threads → [`queue::FrameQueue`] → one inference thread →
//! bounded channel (blocks: detections are never shed) → publisher task →
//! Kafka. Shutdown stops the sources, drains queued frames, then flushes Kafka.

pub mod config;
pub mod inference;
pub mod model;
pub mod publish;
pub mod queue;
pub mod source;

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use schemas::v1::{Detection, FrameDetections};
use tokio::sync::mpsc;
use vision::letterbox::RgbFrame;

use crate::config::EdgeConfig;
use crate::inference::{DetectionParams, Detector, Embedder, InferenceError};
use crate::publish::Outgoing;
use crate::queue::{FrameQueue, Next};
use crate::source::CameraStats;

/// Why the agent stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum EdgeError {
    /// A model or ONNX Runtime could not be loaded.
    #[error(transparent)]
    Inference(#[from] InferenceError),
    /// The Kafka producer could not be created.
    #[error("Kafka producer: {0}")]
    Kafka(#[from] rdkafka::error::KafkaError),
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
    /// Frames analysed.
    pub frames_analysed: u64,
    /// Frames shed.
    pub frames_dropped: u64,
    /// Person boxes published.
    pub persons: u64,
    /// Times the source was connected again.
    pub reconnects: u64,
}

/// Runs the agent until every camera has ended or `shutdown` completes.
pub async fn run(
    config: EdgeConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<Vec<CameraSummary>, EdgeError> {
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
    let producer = config.kafka.producer("argus-edge-agent")?;
    tracing::info!(
        model = detector.model_id(),
        embedder = embedder.as_ref().map(|e| e.embedder_id()),
        cameras = config.cameras.len(),
        "Edge agent starting"
    );

    let cameras = Arc::new(config.cameras.clone());
    let queue = Arc::new(FrameQueue::new(cameras.len()));
    let stats: Arc<Vec<Arc<CameraStats>>> =
        Arc::new(cameras.iter().map(|_| Arc::default()).collect());
    let stop = Arc::new(AtomicBool::new(false));
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
        std::thread::Builder::new()
            .name("inference".into())
            .spawn(move || inference_loop(&queue, &cameras, &stats, detector, embedder, &tx))?
    };
    drop(out_tx);

    let publisher = tokio::spawn(publish::publish_loop(
        producer,
        out_rx,
        Arc::clone(&cameras),
        Arc::clone(&stats),
        config.health_interval_s,
    ));
    let worker_done = tokio::task::spawn_blocking(move || worker.join().unwrap_or_default());
    tokio::pin!(worker_done);
    let persons = tokio::select! {
        done = &mut worker_done => done.unwrap_or_default(),
        () = shutdown => {
            tracing::info!("Stopping sources and draining queued frames");
            stop.store(true, Ordering::Relaxed);
            queue.stop();
            worker_done.await.unwrap_or_default()
        }
    };
    stop.store(true, Ordering::Relaxed);
    queue.stop();
    for source in sources {
        let _ = source.join();
    }
    if let Err(error) = publisher.await {
        tracing::error!(%error, "Publisher task failed");
    }
    let summary: Vec<CameraSummary> = cameras
        .iter()
        .zip(stats.iter())
        .enumerate()
        .map(|(i, (camera, s))| CameraSummary {
            camera_id: camera.id.clone(),
            frames_in: s.frames_in.load(Ordering::Relaxed),
            frames_analysed: s.frames_analysed.load(Ordering::Relaxed),
            frames_dropped: s.frames_dropped.load(Ordering::Relaxed),
            persons: persons.get(i).copied().unwrap_or(0),
            reconnects: s.reconnects.load(Ordering::Relaxed),
        })
        .collect();
    for s in &summary {
        tracing::info!(camera = %s.camera_id, frames_in = s.frames_in, frames_analysed = s.frames_analysed, frames_dropped = s.frames_dropped, persons = s.persons, reconnects = s.reconnects, "Camera totals");
    }
    Ok(summary)
}

/// The inference thread: analyses frames until the queue closes. Returns the
/// number of person boxes published per camera.
fn inference_loop(
    queue: &FrameQueue,
    cameras: &[config::CameraConfig],
    stats: &[Arc<CameraStats>],
    mut detector: Detector,
    mut embedder: Option<Embedder>,
    out: &mpsc::Sender<Outgoing>,
) -> Vec<u64> {
    let mut persons = vec![0u64; cameras.len()];
    let model_id = detector.model_id().to_string();
    let embedder_id = embedder
        .as_ref()
        .map(|e| e.embedder_id().to_string())
        .unwrap_or_default();
    loop {
        let message = match queue.next() {
            Next::Closed => break,
            Next::Ended(camera) => FrameDetections {
                schema_version: schemas::SCHEMA_VERSION,
                camera_id: cameras[camera].id.clone(),
                model_id: model_id.clone(),
                embedder_id: embedder_id.clone(),
                end_of_stream: true,
                capture_ts_us: service_kit::clock::now_us(),
                ..Default::default()
            },
            Next::Frame(frame) => {
                let camera = &cameras[frame.camera];
                let detections = match analyse(&frame, &mut detector, embedder.as_mut()) {
                    Ok(d) => d,
                    Err(error) => {
                        tracing::warn!(camera = %camera.id, seq = frame.seq, %error, "Frame not analysed");
                        continue;
                    }
                };
                stats[frame.camera]
                    .frames_analysed
                    .fetch_add(1, Ordering::Relaxed);
                persons[frame.camera] += detections.len() as u64;
                FrameDetections {
                    schema_version: schemas::SCHEMA_VERSION,
                    camera_id: camera.id.clone(),
                    frame_seq: frame.seq,
                    capture_ts_us: frame.capture_ts_us,
                    frame_width: frame.width as u32,
                    frame_height: frame.height as u32,
                    model_id: model_id.clone(),
                    embedder_id: embedder_id.clone(),
                    detections,
                    end_of_stream: false,
                }
            }
        };
        if out.blocking_send(Outgoing::Frame(message)).is_err() {
            tracing::error!("Publisher is gone; stopping inference");
            break;
        }
    }
    persons
}

/// Detects and embeds the people of one frame.
fn analyse(
    frame: &queue::Frame,
    detector: &mut Detector,
    embedder: Option<&mut Embedder>,
) -> Result<Vec<Detection>, InferenceError> {
    let rgb = RgbFrame::new(&frame.data, frame.width, frame.height, frame.stride)
        .map_err(|e| InferenceError::Ort(format!("bad frame: {e}")))?;
    let candidates = detector.detect(&rgb)?;
    let embeddings = match embedder {
        Some(embedder) => {
            let boxes: Vec<_> = candidates.iter().map(|c| c.bbox).collect();
            embedder
                .embed(&rgb, &boxes)?
                .into_iter()
                .map(|v| Some(schemas::embedding::quantise(&v)))
                .collect()
        }
        None => vec![None; candidates.len()],
    };
    Ok(candidates
        .iter()
        .zip(embeddings)
        .map(|(c, embedding)| Detection {
            x: c.bbox.x,
            y: c.bbox.y,
            width: c.bbox.w,
            height: c.bbox.h,
            score: c.score,
            class_id: c.class_id,
            embedding,
        })
        .collect())
}
