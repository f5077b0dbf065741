//! The tracker service against the embedded Kafka-protocol broker: a
//! restart from the checkpoint keeps person ids and open tracks.

use std::time::Duration;

use broker::EmbeddedBroker;
use rdkafka::consumer::StreamConsumer;
use rdkafka::message::Message;
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::util::Timeout;
use schemas::v1::presence_event::Kind;
use schemas::v1::{Detection, FrameDetections, PresenceEvent};
use schemas::{topics, wire};
use service_kit::kafka::KafkaSettings;
use tracker::TrackerStats;
use tracker::config::TrackerConfig;

const T0: i64 = 1_700_000_000_000_000;
const TICK: i64 = 200_000;

fn person(x: f32, y: f32, appearance: [f32; 4]) -> Detection {
    Detection {
        x,
        y,
        width: 40.0,
        height: 100.0,
        score: 0.9,
        class_id: 0,
        embedding: Some(schemas::embedding::quantise(&appearance)),
        crop_jpeg: Vec::new(),
    }
}

/// Camera "a" at tick `t`: P1 walks ticks 0–9, P2 ticks 0–39, P3 ticks 25–39.
fn frame(t: i64) -> FrameDetections {
    let x = 20.0 + 8.0 * t as f32;
    let mut detections = Vec::new();
    if t < 10 {
        detections.push(person(x, 50.0, [1.0, 0.0, 0.0, 0.0]));
    }
    detections.push(person(x, 300.0, [0.0, 1.0, 0.0, 0.0]));
    if t >= 25 {
        detections.push(person(x - 200.0, 550.0, [0.0, 0.0, 1.0, 0.0]));
    }
    FrameDetections {
        schema_version: schemas::SCHEMA_VERSION,
        camera_id: "a".into(),
        frame_seq: t as u64,
        capture_ts_us: T0 + t * TICK,
        frame_width: 768,
        frame_height: 576,
        detections,
        ..Default::default()
    }
}

async fn produce(producer: &FutureProducer, frames: impl IntoIterator<Item = FrameDetections>) {
    for f in frames {
        let payload = wire::encode(&f);
        producer
            .send(
                FutureRecord::to(topics::DETECTIONS)
                    .key(topics::key(&f.camera_id))
                    .payload(&payload),
                Timeout::After(Duration::from_secs(10)),
            )
            .await
            .unwrap();
    }
}

/// Every presence event on the topic, in order, once `expected` have arrived
/// (read by a new consumer group named `reader`).
async fn presence(kafka: &KafkaSettings, reader: &str, expected: usize) -> Vec<PresenceEvent> {
    let consumer: StreamConsumer = kafka
        .consumer("reader", reader, &[topics::PRESENCE])
        .unwrap();
    let mut events = Vec::new();
    while events.len() < expected {
        match tokio::time::timeout(Duration::from_secs(30), consumer.recv()).await {
            Ok(message) => {
                let message = message.unwrap();
                events.push(wire::decode::<PresenceEvent>(message.payload().unwrap()).unwrap());
            }
            Err(_) => panic!("only {} of {expected} events: {events:?}", events.len()),
        }
    }
    events
}

fn settings(broker: &EmbeddedBroker) -> KafkaSettings {
    let mut kafka = KafkaSettings::new(broker.bootstrap_servers());
    // A member that vanished is given up after 6 s, not the default 45 s.
    kafka
        .properties
        .insert("session.timeout.ms".into(), "6000".into());
    kafka
        .properties
        .insert("heartbeat.interval.ms".into(), "500".into());
    kafka
}

fn end_of_stream() -> FrameDetections {
    let mut end = frame(40);
    end.detections.clear();
    end.end_of_stream = true;
    end
}

/// The body of an HTTP GET on loopback (the response, headers included).
fn http_get(port: u16, path: &str) -> String {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    write!(stream, "GET {path} HTTP/1.1\r\nHost: localhost\r\n\r\n").unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    response
}

/// The embedded broker, a runtime, a checkpoint directory and a producer.
struct Harness {
    runtime: tokio::runtime::Runtime,
    kafka: KafkaSettings,
    producer: FutureProducer,
    state: tempfile::TempDir,
    // Last: the broker outlives every client.
    _broker: EmbeddedBroker,
}

impl Harness {
    fn new() -> Self {
        let broker = EmbeddedBroker::start(1, None).unwrap();
        let kafka = settings(&broker);
        Harness {
            runtime: tokio::runtime::Runtime::new().unwrap(),
            producer: kafka.producer("restart-test").unwrap(),
            kafka,
            state: tempfile::tempdir().unwrap(),
            _broker: broker,
        }
    }

    /// A tracker checkpointing into the harness' directory.
    fn config(&self, checkpoint_interval_s: f64) -> TrackerConfig {
        let mut config = TrackerConfig::new(self.kafka.clone());
        config.state_dir = Some(self.state.path().to_path_buf());
        config.checkpoint_interval_s = checkpoint_interval_s;
        config
    }

    fn produce(&self, frames: impl IntoIterator<Item = FrameDetections>) {
        self.runtime.block_on(produce(&self.producer, frames));
    }

    /// Runs the tracker to a clean stop (it drains what was written first).
    fn run(&self, config: &TrackerConfig) -> TrackerStats {
        self.runtime
            .block_on(tracker::run(config.clone(), async {}))
            .unwrap()
    }

    fn presence(&self, reader: &str, expected: usize) -> Vec<PresenceEvent> {
        self.runtime
            .block_on(presence(&self.kafka, reader, expected))
    }
}

#[test]
fn a_restarted_tracker_keeps_person_ids_and_open_tracks() {
    let h = Harness::new();
    let config = h.config(0.5);

    // Run 1: ticks 0–19, then a clean stop.
    h.produce((0..20).map(frame));
    let first = h.run(&config);
    assert_eq!((first.frames, first.replayed), (20, 0));
    assert!(
        h.state
            .path()
            .join(tracker::service::CHECKPOINT_FILE)
            .is_file()
    );

    // Run 2: ticks 20–39 and the end of the stream.
    h.produce((20..40).map(frame).chain([end_of_stream()]));
    let second = h.run(&config);
    assert_eq!(second.frames, 21, "resumed after the checkpointed offsets");
    assert_eq!(second.replayed, 0);

    let events = h.presence("reader-clean", 6);
    let summary: Vec<(i32, u64)> = events.iter().map(|e| (e.kind, e.person_id)).collect();
    let (enter, exit) = (Kind::Enter as i32, Kind::Exit as i32);
    // P1 and P2 enter in run 1; P3 enters in run 2 as person 3 (not 1 or 2
    // again); P2's track and P1's coasting track survive the restart.
    assert_eq!(
        summary,
        vec![
            (enter, 1),
            (enter, 2),
            (enter, 3),
            (exit, 1),
            (exit, 2),
            (exit, 3)
        ],
        "{events:#?}"
    );
    let p2_exit = &events[4];
    assert_eq!(p2_exit.enter_ts_us, T0, "one interval across the restart");
    assert_eq!(p2_exit.exit_ts_us, T0 + 39 * TICK);
    assert_eq!(p2_exit.detections, 40);
    let mut ids: Vec<&str> = events.iter().map(|e| e.event_id.as_str()).collect();
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), 6, "event ids are unique");
}

#[test]
fn a_crash_between_checkpoints_replays_the_same_events_under_the_same_ids() {
    let h = Harness::new();
    // No periodic checkpoint: only the clean stop of run 1 writes one.
    let mut config = h.config(3600.0);

    // Run 1: ticks 0–19, clean stop, checkpoint.
    h.produce((0..20).map(frame));
    h.run(&config);

    // Run 2: ticks 20–29; killed once P3 has entered, before any checkpoint.
    // Its metrics endpoint is read first.
    h.produce((20..30).map(frame));
    let port = {
        let probe = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        probe.local_addr().unwrap().port()
    };
    let mut live = config.clone();
    live.metrics_address = Some(format!("127.0.0.1:{port}"));
    let crashed = h.runtime.spawn(tracker::run(live, std::future::pending()));
    let before = h.presence("reader-crash", 3);
    assert_eq!(before[2].person_id, 3, "{before:#?}");
    let expected = [
        "argus_tracker_frames_total{camera=\"a\"} 10",
        "argus_tracker_tracks_alive 3",
        "argus_tracker_reid_ids_minted_total 3",
        "argus_tracker_events_total{kind=\"enter\"} 1",
    ];
    // The tracker may still be handling the last frames: poll, bounded.
    let mut metrics = String::new();
    for _ in 0..100 {
        metrics = http_get(port, "/metrics");
        if expected.iter().all(|line| metrics.contains(line)) {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    for line in expected {
        assert!(metrics.contains(line), "{line} missing from:\n{metrics}");
    }
    assert!(http_get(port, "/healthz").ends_with("ok\n"));
    crashed.abort();
    let _ = h.runtime.block_on(crashed);

    // Run 3, under a new consumer group (no committed offsets): it restores
    // run 1's checkpoint, skips the 20 messages it covers, replays 20–29.
    h.produce((30..40).map(frame).chain([end_of_stream()]));
    config.group_id = "argus-tracker-after-crash".into();
    let third = h.run(&config);
    assert_eq!((third.replayed, third.frames), (20, 21));

    let events = h.presence("reader-all", 7);
    let ids: Vec<&str> = events.iter().map(|e| e.event_id.as_str()).collect();
    // P3's ENTER twice (run 2, then the replay), identical down to the id.
    let p3_enters: Vec<&PresenceEvent> = events
        .iter()
        .filter(|e| e.kind == Kind::Enter as i32 && e.person_id == 3)
        .collect();
    assert_eq!(p3_enters.len(), 2, "{ids:?}");
    assert_eq!(p3_enters[0], p3_enters[1]);
    let mut unique = ids.clone();
    unique.sort_unstable();
    unique.dedup();
    assert_eq!(
        unique.len(),
        6,
        "after deduplication: 3 ENTERs, 3 EXITs: {ids:?}"
    );
    let persons: Vec<u64> = events.iter().map(|e| e.person_id).collect();
    assert!(persons.iter().all(|p| (1..=3).contains(p)), "{persons:?}");
}

#[test]
fn a_camera_that_stops_sending_has_its_tracks_ended_after_camera_gap_s() {
    let h = Harness::new();
    let mut config = h.config(3600.0);
    config.camera_gap_s = 2.0;
    // Without checkpoints too, the tracker must notice silence while idle.
    config.state_dir = None;
    // Ticks 0–9, then nothing: no end-of-stream marker, no more frames.
    h.produce((0..10).map(frame));
    let running = h
        .runtime
        .spawn(tracker::run(config, std::future::pending()));
    let events = h.presence("reader-silence", 4);
    running.abort();
    let _ = h.runtime.block_on(running);
    let summary: Vec<(i32, u64)> = events.iter().map(|e| (e.kind, e.person_id)).collect();
    let (enter, exit) = (Kind::Enter as i32, Kind::Exit as i32);
    assert_eq!(summary, vec![(enter, 1), (enter, 2), (exit, 1), (exit, 2)]);
    for e in &events[2..] {
        assert_eq!((e.enter_ts_us, e.exit_ts_us), (T0, T0 + 9 * TICK), "{e:?}");
    }
}
