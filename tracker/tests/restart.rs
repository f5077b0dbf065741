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

/// Every presence event on the topic, in order, once `expected` have arrived.
async fn presence(kafka: &KafkaSettings, expected: usize) -> Vec<PresenceEvent> {
    let consumer: StreamConsumer = kafka
        .consumer("reader", "restart-test-reader", &[topics::PRESENCE])
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

#[test]
fn a_restarted_tracker_keeps_person_ids_and_open_tracks() {
    let broker = EmbeddedBroker::start(1, None).unwrap();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let mut kafka = KafkaSettings::new(broker.bootstrap_servers());
    // A member that vanished is given up after 6 s, not the default 45 s.
    kafka.properties.insert("session.timeout.ms".into(), "6000".into());
    kafka.properties.insert("heartbeat.interval.ms".into(), "500".into());
    let state = tempfile::tempdir().unwrap();
    let mut config = TrackerConfig::new(kafka.clone());
    config.state_dir = Some(state.path().to_path_buf());
    config.checkpoint_interval_s = 0.5;
    let producer = kafka.producer("restart-test").unwrap();

    // Run 1: ticks 0–19, then a clean stop (it drains what was written first).
    runtime.block_on(produce(&producer, (0..20).map(frame)));
    let first = runtime
        .block_on(tracker::run(config.clone(), async {}))
        .unwrap();
    assert_eq!((first.frames, first.replayed), (20, 0));
    assert!(
        state
            .path()
            .join(tracker::service::CHECKPOINT_FILE)
            .is_file()
    );

    // Run 2: ticks 20–39 and the end of the stream.
    let mut end = frame(40);
    end.detections.clear();
    end.end_of_stream = true;
    runtime.block_on(produce(&producer, (20..40).map(frame).chain([end])));
    let second = runtime.block_on(tracker::run(config, async {})).unwrap();
    assert_eq!(second.frames, 21, "resumed after the checkpointed offsets");
    assert_eq!(second.replayed, 0);

    let events = runtime.block_on(presence(&kafka, 6));
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
    drop(broker);
}
