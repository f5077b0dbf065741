//! The whole agent with its Prometheus endpoint: real models on a short
//! clip of vtest.avi played by two file cameras, a third camera that never
//! delivers (an RTSP server that accepts and stays silent), and the embedded
//! broker as Kafka. `/metrics` is scraped over HTTP while the agent runs.
//!
//! Needs the assets from `scripts/setup.sh`.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use broker::EmbeddedBroker;
use edge_agent::config::EdgeConfig;
use gstreamer as gst;
use gstreamer::prelude::*;

#[allow(dead_code)] // each test crate uses part of it
mod common;

use common::asset;

/// Frames of the clip.
const FRAMES: u64 = 16;

/// Writes the first `frames` frames of vtest.avi as an MJPEG AVI.
fn clip(path: &Path, frames: u64) {
    gst::init().unwrap();
    let line = format!(
        "uridecodebin uri=file://{} ! identity eos-after={frames} ! videoconvert ! jpegenc ! \
         avimux ! filesink location={}",
        asset("vtest.avi").display(),
        path.display()
    );
    let pipeline = gst::parse::launch(&line)
        .unwrap()
        .downcast::<gst::Pipeline>()
        .unwrap();
    pipeline.set_state(gst::State::Playing).unwrap();
    let bus = pipeline.bus().unwrap();
    let message = bus
        .timed_pop_filtered(
            gst::ClockTime::from_seconds(60),
            &[gst::MessageType::Eos, gst::MessageType::Error],
        )
        .expect("the clip is written within a minute");
    pipeline.set_state(gst::State::Null).unwrap();
    assert!(
        matches!(message.view(), gst::MessageView::Eos(_)),
        "{message:?}"
    );
}

/// `GET path` over HTTP/1.1: (status code, body).
fn get(address: SocketAddr, path: &str) -> (u16, String) {
    let mut stream = TcpStream::connect(address).unwrap();
    stream
        .write_all(format!("GET {path} HTTP/1.1\r\nHost: agent\r\n\r\n").as_bytes())
        .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    let status = response
        .split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or(0);
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, body)| body.to_string())
        .unwrap_or_default();
    (status, body)
}

/// The value of one series in a Prometheus text exposition.
fn value(metrics: &str, series: &str) -> Option<f64> {
    metrics
        .lines()
        .find_map(|line| line.strip_prefix(series)?.strip_prefix(' '))
        .and_then(|v| v.parse().ok())
}

fn config(clip: &Path, spool: &Path, bootstrap: &str, silent_port: u16) -> EdgeConfig {
    let text = format!(
        r#"
        onnxruntime_library = "{lib}"
        health_interval_s = 0.5
        [kafka]
        bootstrap_servers = "{bootstrap}"
        [spool]
        dir = "{spool}"
        [egress]
        linger_ms = 5
        delivery_timeout_s = 10
        shutdown_timeout_s = 10
        [metrics]
        listen = "127.0.0.1:0"
        unhealthy_after_s = 1.0
        [detector]
        model = "{detector}"
        max_batch = 4
        batch_timeout_ms = 20
        # One thread per model leaves a core free, so batches are
        # letterboxed ahead on the preparation thread (the end-to-end tests
        # take ONNX Runtime's default and letterbox in turn).
        intra_threads = 1
        [embedder]
        model = "{embedder}"
        intra_threads = 1
        [crops]
        enabled = true
        [[cameras]]
        id = "a"
        url = "file://{clip}"
        [[cameras]]
        id = "b"
        url = "file://{clip}"
        [[cameras]]
        id = "silent"
        url = "rtsp://127.0.0.1:{silent_port}/nothing"
        stall_timeout_s = 0.5
        "#,
        lib = asset("libonnxruntime.so.1.31.1").display(),
        spool = spool.display(),
        detector = asset("yolov3-tiny.onnx").display(),
        embedder = asset("mobilenetv2-embedder.onnx").display(),
        clip = clip.display(),
    );
    let config: EdgeConfig = toml::from_str(&text).unwrap();
    config.validate().unwrap();
    config
}

#[test]
fn metrics_count_every_frame_person_batch_and_delivery_and_healthz_sees_dead_cameras() {
    let dir = tempfile::tempdir().unwrap();
    let clip_path = dir.path().join("clip.avi");
    clip(&clip_path, FRAMES);
    // Accepts RTSP connections and never answers: a camera that never
    // delivers and never ends.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let silent_port = listener.local_addr().unwrap().port();
    let held = Arc::new(Mutex::new(Vec::new()));
    {
        let held = Arc::clone(&held);
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                held.lock().unwrap().push(stream);
            }
        });
    }
    let broker = EmbeddedBroker::start(1, None).unwrap();
    let config = config(
        &clip_path,
        &dir.path().join("spool"),
        &broker.bootstrap_servers(),
        silent_port,
    );

    let runtime = tokio::runtime::Runtime::new().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let (address_tx, address_rx) = std::sync::mpsc::channel();
    let agent = runtime.spawn(edge_agent::run_with(
        config,
        async {
            let _ = stopped.await;
        },
        move |address| address_tx.send(address).unwrap(),
    ));
    let address = address_rx
        .recv_timeout(Duration::from_secs(60))
        .expect("the metrics endpoint listens");

    // Until both clips are analysed and delivered, and /healthz has seen
    // the silent camera alone for a second.
    let frames = FRAMES as f64;
    let deadline = Instant::now() + Duration::from_secs(180);
    let mut statuses = Vec::new();
    let metrics = loop {
        let (status, metrics) = get(address, "/metrics");
        assert_eq!(status, 200);
        let (health, _) = get(address, "/healthz");
        statuses.push(health);
        let analysed = |camera: &str| {
            value(
                &metrics,
                &format!("argus_edge_frames_analysed_total{{camera=\"{camera}\"}}"),
            )
        };
        let done = analysed("a") == Some(frames)
            && analysed("b") == Some(frames)
            && value(&metrics, "argus_edge_egress_pending_records") == Some(0.0)
            && value(&metrics, "argus_edge_egress_delivered_records_total")
                >= Some(2.0 * frames + 2.0)
            && health == 503;
        if done {
            break metrics;
        }
        assert!(Instant::now() < deadline, "not done in time:\n{metrics}");
        std::thread::sleep(Duration::from_millis(100));
    };
    let v = |series: &str| {
        value(&metrics, series).unwrap_or_else(|| panic!("no {series} in:\n{metrics}"))
    };
    for camera in ["a", "b"] {
        let c = format!("{{camera=\"{camera}\"}}");
        assert_eq!(v(&format!("argus_edge_frames_in_total{c}")), frames);
        assert_eq!(v(&format!("argus_edge_frames_dropped_total{c}")), 0.0);
        assert_eq!(v(&format!("argus_edge_frames_failed_total{c}")), 0.0);
        assert_eq!(v(&format!("argus_edge_persons_masked_total{c}")), 0.0);
        assert_eq!(v(&format!("argus_edge_reconnects_total{c}")), 0.0);
        assert_eq!(v(&format!("argus_edge_camera_up{c}")), 0.0, "ended");
        assert_eq!(
            v(&format!(
                "argus_edge_camera_state{{camera=\"{camera}\",state=\"ended\"}}"
            )),
            1.0
        );
    }
    let persons = v("argus_edge_persons_total{camera=\"a\"}");
    assert!(
        persons >= frames,
        "vtest.avi shows several people: {persons}"
    );
    assert_eq!(
        v("argus_edge_persons_total{camera=\"b\"}"),
        persons,
        "the same clip gives the same people, batched or not"
    );
    assert_eq!(
        v("argus_edge_embedder_crops_total"),
        2.0 * persons,
        "every person published was embedded"
    );
    // Every person box lies in its frame, so every one got its JPEG crop.
    let crops = v("argus_edge_crops_total{camera=\"a\"}");
    assert_eq!(crops, persons);
    let crop_bytes = v("argus_edge_crop_bytes_total{camera=\"a\"}") / crops;
    assert!(
        (300.0..20_000.0).contains(&crop_bytes),
        "{crop_bytes} bytes per crop"
    );
    let silent = "{camera=\"silent\"}";
    assert_eq!(v(&format!("argus_edge_frames_in_total{silent}")), 0.0);
    assert_eq!(v(&format!("argus_edge_frames_analysed_total{silent}")), 0.0);
    assert_eq!(v(&format!("argus_edge_camera_up{silent}")), 0.0);
    assert!(v(&format!("argus_edge_reconnects_total{silent}")) >= 1.0);

    // Every analysed frame went through exactly one detector call, with at
    // most one frame per camera: no batch holds more than the two cameras
    // that deliver.
    assert_eq!(v("argus_edge_detector_batch_frames_sum"), 2.0 * frames);
    let batches = v("argus_edge_detector_batch_frames_count");
    assert!(
        (frames..=2.0 * frames).contains(&batches),
        "{batches} batches"
    );
    assert_eq!(
        v("argus_edge_detector_batch_frames_bucket{le=\"2\"}"),
        batches
    );
    assert_eq!(v("argus_edge_detector_latency_seconds_count"), batches);
    assert_eq!(
        v("argus_edge_detector_latency_seconds_bucket{le=\"+Inf\"}"),
        batches
    );
    assert!(v("argus_edge_detector_latency_seconds_sum") > 0.0);
    // Each batch was letterboxed once, ahead of its detector call.
    assert_eq!(v("argus_edge_letterbox_seconds_count"), batches);
    assert!(v("argus_edge_letterbox_seconds_sum") > 0.0);
    assert!(v("argus_edge_embedder_latency_seconds_count") >= 1.0);

    // Frames and end-of-stream markers, plus health reports, all delivered.
    let spooled = v("argus_edge_egress_spooled_records_total");
    assert!(spooled >= 2.0 * frames + 2.0, "{spooled} spooled");
    assert_eq!(v("argus_edge_egress_dropped_records_total"), 0.0);
    assert_eq!(v("argus_edge_egress_delivery_errors_total"), 0.0);
    assert_eq!(v("argus_edge_egress_failing"), 0.0);
    assert_eq!(v("argus_edge_egress_pending_bytes"), 0.0);
    assert!(
        metrics.contains("# TYPE argus_edge_detector_latency_seconds histogram\n"),
        "{metrics}"
    );

    // Healthy while the files played; 503 once only the silent camera is
    // left and it has been down for unhealthy_after_s.
    assert!(statuses.contains(&200), "{statuses:?}");
    assert_eq!(statuses.last(), Some(&503));

    stop.send(()).unwrap();
    let summary = runtime
        .block_on(async { tokio::time::timeout(Duration::from_secs(60), agent).await })
        .expect("the agent stops")
        .unwrap()
        .unwrap();
    assert_eq!(summary.cameras[0].persons as f64, persons);
    assert_eq!(summary.cameras[1].persons as f64, persons);
    assert_eq!(summary.cameras[0].frames_analysed, FRAMES);
    assert!(
        !held.lock().unwrap().is_empty(),
        "the silent camera connected"
    );

    // On the wire: each detection carries a JPEG of its box, scaled to at
    // most 128 pixels high (the blur is tested in crops.rs).
    let crops_seen = runtime.block_on(wire_crops(&broker.bootstrap_servers()));
    assert_eq!(crops_seen.len() as f64, 2.0 * persons);
    for (detection, image) in &crops_seen {
        // The box clipped to the 768x576 frame.
        let visible = (detection.y + detection.height).min(576.0) - detection.y.max(0.0);
        let height = visible.min(128.0).round() as u32;
        assert!(
            image.height().abs_diff(height) <= 1 && image.width() >= 1,
            "{}x{} crop of a {}x{} box",
            image.width(),
            image.height(),
            detection.width,
            detection.height
        );
    }
}

/// The person detections published on the detections topic with their
/// decoded JPEG crops.
async fn wire_crops(bootstrap: &str) -> Vec<(schemas::v1::Detection, image::RgbImage)> {
    use rdkafka::Message;
    let consumer = service_kit::kafka::KafkaSettings::new(bootstrap)
        .consumer("crops-check", "crops-check", &[schemas::topics::DETECTIONS])
        .unwrap();
    let mut crops = Vec::new();
    let mut frames = 0;
    while frames < 2 * FRAMES {
        let message = tokio::time::timeout(Duration::from_secs(30), consumer.recv())
            .await
            .expect("every frame is on the detections topic")
            .unwrap();
        let frame: schemas::v1::FrameDetections =
            schemas::wire::decode(message.payload().unwrap_or_default()).unwrap();
        if frame.end_of_stream {
            continue;
        }
        frames += 1;
        for detection in frame.detections {
            let image = image::load_from_memory(&detection.crop_jpeg)
                .expect("a JPEG crop")
                .to_rgb8();
            crops.push((detection, image));
        }
    }
    crops
}
