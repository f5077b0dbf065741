//! The egress through the spool against the embedded broker, with outages:
//! every detection reaches Kafka exactly once and in order per camera while
//! the spool has room, across a broker outage and across a restart of the
//! publisher; a full spool drops its oldest records and counts them.
//!
//! The real publisher runs (`Publisher::open` + `run`), fed synthetic
//! `FrameDetections`; no model or camera is involved.

use std::collections::{BTreeMap, HashSet};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use broker::EmbeddedBroker;
use edge_agent::config::{CameraConfig, OnEos};
use edge_agent::egress::EgressSummary;
use edge_agent::publish::{Outgoing, PublishSettings, Publisher};
use edge_agent::source::CameraStats;
use rdkafka::Message;
use rdkafka::consumer::Consumer;
use schemas::topics;
use schemas::v1::FrameDetections;
use service_kit::kafka::{KafkaSettings, ProducerTuning};
use spool::{FsyncPolicy, Spool, SpoolConfig};
use tokio::runtime::Runtime;
use tokio::sync::mpsc;

const CAMERAS: [&str; 3] = ["east", "hall", "west"];
/// Short, so that an outage of a few seconds makes deliveries fail.
const DELIVERY_TIMEOUT: Duration = Duration::from_millis(1500);

fn settings_with(
    broker: &EmbeddedBroker,
    dir: &Path,
    spool: SpoolConfig,
    shutdown: Duration,
    properties: &[(&str, &str)],
) -> PublishSettings {
    let mut settings = settings(broker, dir, spool, shutdown);
    for (key, value) in properties {
        settings.producer.set(*key, *value);
    }
    settings
}

fn settings(
    broker: &EmbeddedBroker,
    dir: &Path,
    spool: SpoolConfig,
    shutdown: Duration,
) -> PublishSettings {
    let mut kafka = KafkaSettings::new(broker.bootstrap_servers());
    // Reconnect soon after the broker is back (librdkafka's default grows to 10 s).
    kafka
        .properties
        .insert("reconnect.backoff.max.ms".into(), "500".into());
    let tuning = ProducerTuning {
        linger: Duration::from_millis(5),
        delivery_timeout: DELIVERY_TIMEOUT,
        ..ProducerTuning::default()
    };
    PublishSettings {
        spool_dir: dir.to_path_buf(),
        spool,
        producer: kafka.producer_config("egress-test", &tuning),
        health_interval: Duration::from_secs(1),
        shutdown_timeout: shutdown,
    }
}

fn roomy_spool() -> SpoolConfig {
    SpoolConfig {
        max_bytes: 64 << 20,
        // Small segments: acknowledged records are deleted as the test runs.
        segment_bytes: 64 << 10,
        fsync: FsyncPolicy::OnRoll,
        ..SpoolConfig::default()
    }
}

fn camera(id: &str) -> CameraConfig {
    CameraConfig {
        on_eos: Some(OnEos::Stop),
        ..CameraConfig::new(id, format!("rtsp://127.0.0.1:1/{id}"))
    }
}

fn frame(camera_id: &str, frame_seq: u64) -> FrameDetections {
    FrameDetections {
        schema_version: schemas::SCHEMA_VERSION,
        camera_id: camera_id.into(),
        frame_seq,
        capture_ts_us: service_kit::clock::now_us(),
        frame_width: 768,
        frame_height: 576,
        model_id: "synthetic".into(),
        ..Default::default()
    }
}

/// Starts `publisher` on `runtime`; `with_health` gives it the cameras, so
/// that it also spools their health reports.
fn start(
    runtime: &Runtime,
    publisher: Publisher,
    with_health: bool,
) -> (
    mpsc::Sender<Outgoing>,
    tokio::task::JoinHandle<EgressSummary>,
) {
    let cameras: Vec<CameraConfig> = if with_health {
        CAMERAS.iter().map(|id| camera(id)).collect()
    } else {
        Vec::new()
    };
    let stats = cameras
        .iter()
        .map(|_| Arc::default())
        .collect::<Vec<Arc<CameraStats>>>();
    let (tx, rx) = mpsc::channel(256);
    let run = runtime.spawn(publisher.run(rx, Arc::new(cameras), Arc::new(stats)));
    (tx, run)
}

/// Sends frames of every camera in turn, one round per `every`, until
/// `stop` is set (or `rounds` rounds); returns what it sent, in order.
async fn produce(
    tx: mpsc::Sender<Outgoing>,
    every: Duration,
    rounds: u64,
    stop: Arc<AtomicBool>,
) -> Vec<(String, u64)> {
    let mut sent = Vec::new();
    for seq in 0..rounds {
        if stop.load(Ordering::Relaxed) {
            break;
        }
        for camera in CAMERAS {
            tx.send(Outgoing::Frame(frame(camera, seq))).await.unwrap();
            sent.push((camera.to_string(), seq));
        }
        if !every.is_zero() {
            tokio::time::sleep(every).await;
        }
    }
    sent
}

/// Every message of `topic`, read from the beginning up to the high
/// watermarks (so duplicates are read too).
fn read_topic(runtime: &Runtime, broker: &EmbeddedBroker, topic: &str) -> Vec<Vec<u8>> {
    static READERS: AtomicUsize = AtomicUsize::new(0);
    let group = format!("reader-{}", READERS.fetch_add(1, Ordering::Relaxed));
    let kafka = KafkaSettings::new(broker.bootstrap_servers());
    runtime.block_on(async {
        let consumer = kafka.consumer("reader", &group, &[topic]).unwrap();
        let partitions = topics::ALL
            .iter()
            .find(|(name, _)| *name == topic)
            .map(|(_, partitions)| *partitions)
            .unwrap();
        let mut total = 0;
        for partition in 0..partitions {
            let (low, high) = consumer
                .fetch_watermarks(topic, partition, Duration::from_secs(5))
                .unwrap();
            total += (high - low) as usize;
        }
        let mut payloads = Vec::with_capacity(total);
        while payloads.len() < total {
            let message = tokio::time::timeout(Duration::from_secs(15), consumer.recv())
                .await
                .expect("every written message is readable")
                .unwrap();
            payloads.push(message.payload().unwrap_or_default().to_vec());
        }
        payloads
    })
}

/// The detections in Kafka: (camera, frame_seq) in topic order per camera.
fn delivered_frames(runtime: &Runtime, broker: &EmbeddedBroker) -> BTreeMap<String, Vec<u64>> {
    let mut per_camera: BTreeMap<String, Vec<u64>> = BTreeMap::new();
    for payload in read_topic(runtime, broker, topics::DETECTIONS) {
        let frame: FrameDetections = schemas::wire::decode(&payload).unwrap();
        per_camera
            .entry(frame.camera_id)
            .or_default()
            .push(frame.frame_seq);
    }
    per_camera
}

/// What was sent, per camera, in order.
fn per_camera(sent: &[(String, u64)]) -> BTreeMap<String, Vec<u64>> {
    let mut per_camera: BTreeMap<String, Vec<u64>> = BTreeMap::new();
    for (camera, seq) in sent {
        per_camera.entry(camera.clone()).or_default().push(*seq);
    }
    per_camera
}

/// Reopens the spool: how many records it still holds.
fn left_in_spool(dir: &Path) -> u64 {
    let (_spool, recovery) = Spool::open(dir, roomy_spool()).unwrap();
    recovery.records
}

#[test]
fn a_broker_outage_loses_nothing_and_keeps_each_cameras_order() {
    let runtime = Runtime::new().unwrap();
    // librdkafka's mock cluster is not Send: it stays on this thread.
    let broker = EmbeddedBroker::start(1, None).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let publisher = Publisher::open(settings(
        &broker,
        dir.path(),
        roomy_spool(),
        Duration::from_secs(20),
    ))
    .unwrap();
    let (tx, run) = start(&runtime, publisher, true);
    let stop = Arc::new(AtomicBool::new(false));
    // About 300 messages/s, as 60 cameras at 5 fps.
    let producer = runtime.spawn(produce(
        tx,
        Duration::from_millis(10),
        u64::MAX,
        Arc::clone(&stop),
    ));

    std::thread::sleep(Duration::from_millis(1500));
    broker.broker_down().unwrap();
    std::thread::sleep(Duration::from_secs(5));
    broker.broker_up().unwrap();
    std::thread::sleep(Duration::from_millis(1500));
    stop.store(true, Ordering::Relaxed);
    let sent = runtime.block_on(producer).unwrap();
    let started = Instant::now();
    let summary = runtime.block_on(run).unwrap();
    eprintln!(
        "{} frames sent; drained in {:?} after the input ended; {summary:?}",
        sent.len(),
        started.elapsed()
    );

    let delivered = delivered_frames(&runtime, &broker);
    assert_eq!(
        delivered,
        per_camera(&sent),
        "every frame once, in order per camera"
    );
    assert!(
        summary.delivery_errors > 0,
        "the outage was felt: {summary:?}"
    );
    assert!(
        summary.replayed_records > 0,
        "failed records were sent again: {summary:?}"
    );
    assert_eq!(
        (
            summary.pending_records,
            summary.dropped_records,
            summary.rejected_records,
            summary.unspooled_records
        ),
        (0, 0, 0, 0),
        "{summary:?}"
    );
    assert!(!summary.kafka_failing);
    assert_eq!(left_in_spool(dir.path()), 0);
    let health = read_topic(&runtime, &broker, topics::CAMERA_HEALTH);
    assert!(
        health.len() >= CAMERAS.len(),
        "health reports go through the spool too"
    );
    assert_eq!(
        summary.delivered_records,
        (sent.len() + health.len()) as u64,
        "{summary:?}"
    );
}

#[test]
fn what_a_stop_during_an_outage_leaves_in_the_spool_is_sent_after_a_restart() {
    let runtime = Runtime::new().unwrap();
    let broker = EmbeddedBroker::start(1, None).unwrap();
    broker.broker_down().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let shutdown = Duration::from_secs(2);

    let publisher =
        Publisher::open(settings(&broker, dir.path(), roomy_spool(), shutdown)).unwrap();
    let (tx, run) = start(&runtime, publisher, false);
    let sent = runtime.block_on(produce(tx, Duration::ZERO, 100, Arc::default()));
    let started = Instant::now();
    let first = runtime.block_on(run).unwrap();
    let stop_took = started.elapsed();
    eprintln!("first run stopped in {stop_took:?}: {first:?}");
    assert!(
        stop_took < shutdown + Duration::from_secs(3),
        "a stop with Kafka down is bounded: {stop_took:?}"
    );
    assert_eq!(
        (
            first.delivered_records,
            first.pending_records,
            first.dropped_records
        ),
        (0, sent.len() as u64, 0),
        "{first:?}"
    );

    broker.broker_up().unwrap();
    let publisher = Publisher::open(settings(
        &broker,
        dir.path(),
        roomy_spool(),
        Duration::from_secs(20),
    ))
    .unwrap();
    assert_eq!(publisher.recovery().records, sent.len() as u64);
    let (tx, run) = start(&runtime, publisher, false);
    drop(tx);
    let second = runtime.block_on(run).unwrap();
    eprintln!("second run: {second:?}");
    assert_eq!(second.recovered_records, sent.len() as u64);
    assert_eq!(second.delivered_records, sent.len() as u64);
    assert_eq!(
        second.replayed_records,
        sent.len() as u64,
        "left by the first run: {second:?}"
    );
    assert_eq!(second.pending_records, 0);

    assert_eq!(delivered_frames(&runtime, &broker), per_camera(&sent));
    assert_eq!(left_in_spool(dir.path()), 0);
}

#[test]
fn a_full_spool_drops_its_oldest_records_and_counts_them() {
    let runtime = Runtime::new().unwrap();
    let broker = EmbeddedBroker::start(1, None).unwrap();
    broker.broker_down().unwrap();
    let dir = tempfile::tempdir().unwrap();
    // About 100 bytes a record: 40 records a segment, 4 segments at most.
    let tiny = SpoolConfig {
        max_bytes: 16 << 10,
        segment_bytes: 4 << 10,
        fsync: FsyncPolicy::Never,
        ..SpoolConfig::default()
    };

    let publisher = Publisher::open(settings(
        &broker,
        dir.path(),
        tiny.clone(),
        Duration::from_secs(1),
    ))
    .unwrap();
    let (tx, run) = start(&runtime, publisher, false);
    let sent = runtime.block_on(produce(tx, Duration::ZERO, 200, Arc::default()));
    let first = runtime.block_on(run).unwrap();
    eprintln!("{} frames sent: {first:?}", sent.len());
    let dropped = first.dropped_records;
    assert!(dropped > 0 && dropped < sent.len() as u64, "{first:?}");
    assert_eq!(
        first.pending_records + dropped,
        sent.len() as u64,
        "{first:?}"
    );
    assert_eq!(first.delivered_records, 0);

    broker.broker_up().unwrap();
    let publisher =
        Publisher::open(settings(&broker, dir.path(), tiny, Duration::from_secs(20))).unwrap();
    assert_eq!(publisher.recovery().records + dropped, sent.len() as u64);
    let (tx, run) = start(&runtime, publisher, false);
    drop(tx);
    let second = runtime.block_on(run).unwrap();
    assert_eq!(
        second.delivered_records + dropped,
        sent.len() as u64,
        "{second:?}"
    );

    // The survivors are the newest, in order.
    let newest = &sent[dropped as usize..];
    let delivered = delivered_frames(&runtime, &broker);
    assert_eq!(delivered, per_camera(newest));
    let oldest: HashSet<_> = sent[..dropped as usize].iter().collect();
    assert!(
        oldest
            .iter()
            .all(|(camera, seq)| !delivered[camera].contains(seq))
    );
}

#[test]
fn a_message_kafka_refuses_for_good_is_dropped_and_the_rest_flows_in_order() {
    let runtime = Runtime::new().unwrap();
    let broker = EmbeddedBroker::start(1, None).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let limits = [("message.max.bytes", "4000"), ("batch.size", "4000")];
    let publisher = Publisher::open(settings_with(
        &broker,
        dir.path(),
        roomy_spool(),
        Duration::from_secs(20),
        &limits,
    ))
    .unwrap();
    let (tx, run) = start(&runtime, publisher, false);
    let mut sent = Vec::new();
    runtime.block_on(async {
        for seq in 0..30 {
            for camera in CAMERAS {
                let mut frame = frame(camera, seq);
                if camera == "hall" && seq == 10 {
                    // Over message.max.bytes: librdkafka refuses it.
                    let person = schemas::v1::Detection {
                        x: 1.0,
                        y: 2.0,
                        width: 3.0,
                        height: 4.0,
                        score: 0.5,
                        ..Default::default()
                    };
                    frame.detections = vec![person; 1000];
                } else {
                    sent.push((camera.to_string(), seq));
                }
                tx.send(Outgoing::Frame(frame)).await.unwrap();
            }
        }
    });
    drop(tx);
    let summary = runtime.block_on(run).unwrap();
    eprintln!("{summary:?}");
    assert_eq!(summary.rejected_records, 1, "{summary:?}");
    assert_eq!(summary.delivered_records, sent.len() as u64);
    assert_eq!(summary.pending_records, 0);
    assert_eq!(delivered_frames(&runtime, &broker), per_camera(&sent));
}
