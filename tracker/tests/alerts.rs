//! Alert rules in the running tracker, against the embedded Kafka-protocol
//! broker: frames and health reports are produced in real time, as edge
//! agents would, and the alerts are read back from `argus.alerts.v1`.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use broker::EmbeddedBroker;
use rdkafka::consumer::StreamConsumer;
use rdkafka::message::Message;
use rdkafka::producer::FutureProducer;
use rdkafka::util::Timeout;
use schemas::v1::camera_health::State;
use schemas::v1::{Alert, CameraHealth, Detection, FrameDetections, alert};
use schemas::{topics, wire};
use service_kit::clock::now_us;
use service_kit::kafka::{self, KafkaSettings};
use tracker::config::TrackerConfig;

async fn send(producer: &FutureProducer, topic: &str, key: &str, payload: Vec<u8>) {
    let timeout = Timeout::After(Duration::from_secs(10));
    kafka::send(producer, topic, key.as_bytes(), &payload, timeout)
        .await
        .unwrap();
}

/// Camera "a" at wall-clock time `ts_us`, with a person standing at
/// (100, 200)-(140, 300) while `present` (feet at (120, 300), in the
/// "linger" zone, far from the "vault" zone).
fn frame(seq: u64, ts_us: i64, present: bool) -> FrameDetections {
    let detections = if present {
        vec![Detection {
            x: 100.0,
            y: 200.0,
            width: 40.0,
            height: 100.0,
            score: 0.9,
            class_id: 0,
            embedding: Some(schemas::embedding::quantise(&[1.0, 0.0, 0.0, 0.0])),
            crop_jpeg: Vec::new(),
        }]
    } else {
        Vec::new()
    };
    FrameDetections {
        schema_version: schemas::SCHEMA_VERSION,
        camera_id: "a".into(),
        frame_seq: seq,
        capture_ts_us: ts_us,
        frame_width: 768,
        frame_height: 576,
        detections,
        ..Default::default()
    }
}

fn health(camera: &str, state: State, since_us: i64) -> CameraHealth {
    let mut report = CameraHealth {
        schema_version: schemas::SCHEMA_VERSION,
        camera_id: camera.into(),
        since_ts_us: since_us,
        ts_us: now_us(),
        ..Default::default()
    };
    report.set_state(state);
    report
}

const RULES: &str = r#"
[[rules]]
name = "linger"
kind = "loitering"
severity = "critical"
cameras = ["a"]
zone = [[0, 0], [384, 0], [384, 576], [0, 576]]
max_dwell_s = 1.5
absence_s = 1.0

[[rules]]
name = "vault"
kind = "restricted"
cameras = ["a"]
zone = [[600, 0], [768, 0], [768, 576], [600, 576]]

[[rules]]
name = "blind"
kind = "camera_down"
cameras = ["b"]
max_down_s = 1.0
"#;

#[test]
fn loitering_and_a_down_camera_raise_and_close_one_alert_each() {
    let broker = EmbeddedBroker::start(1, None).unwrap();
    let kafka = KafkaSettings::new(broker.bootstrap_servers());
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let mut config = TrackerConfig::new(kafka.clone());
    config.alerts = Some(toml::from_str(RULES).unwrap());
    config.validate().unwrap();

    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let tracker = runtime.spawn(tracker::run(config, async move {
        let _ = stopped.await;
    }));

    let alerts: Vec<Alert> = runtime.block_on(async {
        let producer = kafka.producer("alerts-test").unwrap();
        // Camera "b" reports UP until its tracker's health consumer has
        // surely joined (it starts at the latest report), then DOWN.
        let start = now_us();
        let mut seq = 0;
        let mut b_down_since = None;
        let mut b_up_since = None;
        // 10 fps for 6 s: the person stands in the zone for 3 s, then leaves.
        while seq < 60 {
            let elapsed_s = seq as f64 / 10.0;
            let f = frame(seq, now_us(), elapsed_s < 3.0);
            send(&producer, topics::DETECTIONS, "a", wire::encode(&f)).await;
            if seq % 2 == 0 {
                let report = match elapsed_s {
                    t if t < 1.0 => health("b", State::Up, start),
                    t if t < 3.5 => {
                        let since = *b_down_since.get_or_insert_with(now_us);
                        health("b", State::Down, since)
                    }
                    _ => {
                        let since = *b_up_since.get_or_insert_with(now_us);
                        health("b", State::Up, since)
                    }
                };
                send(&producer, topics::CAMERA_HEALTH, "b", wire::encode(&report)).await;
            }
            seq += 1;
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let reader: StreamConsumer = kafka
            .consumer("reader", "alerts-reader", &[topics::ALERTS])
            .unwrap();
        let mut alerts = Vec::new();
        while alerts.len() < 4 {
            match tokio::time::timeout(Duration::from_secs(20), reader.recv()).await {
                Ok(message) => {
                    let payload = message.unwrap().payload().unwrap().to_vec();
                    alerts.push(wire::decode::<Alert>(&payload).unwrap());
                }
                Err(_) => panic!("only {} alerts: {alerts:#?}", alerts.len()),
            }
        }
        // Nothing more arrives: one raise and one close per alert.
        let extra = tokio::time::timeout(Duration::from_secs(2), reader.recv()).await;
        assert!(extra.is_err(), "an extra alert: {extra:?}");
        alerts
    });
    let _ = stop.send(());
    let stats = runtime.block_on(tracker).unwrap().unwrap();
    assert_eq!(stats.alerts, 4, "{stats:?}");

    let mut by_id: BTreeMap<&str, Vec<&Alert>> = BTreeMap::new();
    for alert in &alerts {
        by_id
            .entry(alert.alert_id.as_str())
            .or_default()
            .push(alert);
    }
    assert_eq!(by_id.len(), 2, "{alerts:#?}");
    for (id, events) in &by_id {
        let closed: Vec<bool> = events.iter().map(|a| a.closed).collect();
        assert_eq!(closed, vec![false, true], "{id}: raise, then close");
        assert!(events[1].ts_us >= events[0].ts_us, "{events:#?}");
    }

    let linger: Vec<&Alert> = alerts.iter().filter(|a| a.rule == "linger").collect();
    let raise = linger[0];
    assert_eq!(raise.camera_id, "a");
    assert_eq!(raise.person_ids, vec![1]);
    assert_eq!(raise.severity(), alert::Severity::Critical);
    assert!(raise.alert_id.starts_with("linger:a:1:"), "{raise:?}");
    let evidence = raise.evidence.as_ref().unwrap();
    // Raised by the first frame at least 1.5 s after the person was first
    // seen in the zone (frames come every ~100 ms; slack for a loaded machine).
    let waited = raise.ts_us - evidence.first_seen_ts_us;
    assert!((1_500_000..2_500_000).contains(&waited), "{raise:?}");
    assert!(evidence.dwell_s >= 1.5, "{evidence:?}");
    assert_eq!((evidence.last_x, evidence.last_y), (120.0, 300.0));
    // The triggering frame is the one that raised it.
    assert_eq!(raise.trigger_ts_us, raise.ts_us, "{raise:?}");
    // Closed once the person had been gone for absence_s.
    let close = linger[1];
    assert!(close.ts_us > raise.ts_us + 1_000_000, "{close:?}");

    let blind: Vec<&Alert> = alerts.iter().filter(|a| a.rule == "blind").collect();
    assert_eq!(blind[0].camera_id, "b");
    assert!(blind[0].person_ids.is_empty());
    assert!(
        blind[0].alert_id.starts_with("blind:b:camera:"),
        "{:?}",
        blind[0]
    );
    assert!(
        alerts.iter().all(|a| a.rule != "vault"),
        "nobody entered the vault"
    );
}

/// Frames of the person standing in the zone at 10 fps while `standing`.
async fn stand(kafka: KafkaSettings, standing: Arc<AtomicBool>, mut seq: u64) {
    let producer = kafka.producer("alerts-test").unwrap();
    while standing.load(Ordering::Relaxed) {
        let f = frame(seq, now_us(), true);
        send(&producer, topics::DETECTIONS, "a", wire::encode(&f)).await;
        seq += 1;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A crash leaves an alert open; the restarted tracker closes it (from its
/// checkpoint), and a clean stop closes what is open then.
#[test]
fn alerts_left_open_by_a_crash_or_a_stop_are_closed() {
    let broker = EmbeddedBroker::start(1, None).unwrap();
    let mut kafka = KafkaSettings::new(broker.bootstrap_servers());
    // The dead first life leaves the group after 6 s, not the default 45 s.
    for (key, value) in [
        ("session.timeout.ms", "6000"),
        ("heartbeat.interval.ms", "500"),
    ] {
        kafka.properties.insert(key.into(), value.into());
    }
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let state = tempfile::tempdir().unwrap();
    let mut config = TrackerConfig::new(kafka.clone());
    // Only the loitering rule, and a long absence_s: while the tracker
    // runs, the alert stays open.
    config.alerts = Some(
        toml::from_str(
            r#"
            [[rules]]
            name = "linger"
            kind = "loitering"
            cameras = ["a"]
            zone = [[0, 0], [384, 0], [384, 576], [0, 576]]
            max_dwell_s = 1.5
            absence_s = 60.0
            "#,
        )
        .unwrap(),
    );
    config.state_dir = Some(state.path().to_path_buf());
    config.checkpoint_interval_s = 0.2;
    let _in_runtime = runtime.enter(); // the consumer spawns a task
    let reader: StreamConsumer = kafka
        .consumer("reader", "alerts-reader-crash", &[topics::ALERTS])
        .unwrap();
    let next_alert = |what: &str| {
        let message = runtime
            .block_on(tokio::time::timeout(Duration::from_secs(30), reader.recv()))
            .unwrap_or_else(|_| panic!("no alert: {what}"))
            .unwrap();
        wire::decode::<Alert>(message.payload().unwrap()).unwrap()
    };

    // First life: the person stands in the zone, still there when the
    // tracker dies (its task is dropped: no clean stop).
    let first = runtime.spawn(tracker::run(config.clone(), std::future::pending()));
    let standing = Arc::new(AtomicBool::new(true));
    let frames = runtime.spawn(stand(kafka.clone(), Arc::clone(&standing), 0));
    let raised = next_alert("the raise");
    assert_eq!((raised.rule.as_str(), raised.closed), ("linger", false));
    std::thread::sleep(Duration::from_millis(600)); // a checkpoint with the open alert
    first.abort();
    let _ = runtime.block_on(first);
    standing.store(false, Ordering::Relaxed);
    runtime.block_on(frames).unwrap();

    // Second life: the alert left open is closed at start.
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let second = runtime.spawn(tracker::run(config.clone(), async move {
        let _ = stopped.await;
    }));
    let closed = next_alert("the close after the restart");
    assert_eq!(closed.alert_id, raised.alert_id);
    assert!(closed.closed);
    assert!(closed.message.contains("restarted"), "{closed:?}");
    assert!(closed.ts_us >= raised.ts_us);

    // The person is still there: the rule raises again, and a clean stop
    // (while they still stand there) closes that alert too.
    standing.store(true, Ordering::Relaxed);
    let frames = runtime.spawn(stand(kafka.clone(), Arc::clone(&standing), 1000));
    let again = next_alert("the second raise");
    assert_eq!((again.rule.as_str(), again.closed), ("linger", false));
    assert_ne!(again.alert_id, raised.alert_id);
    let _ = stop.send(());
    let stats = runtime.block_on(second).unwrap().unwrap();
    standing.store(false, Ordering::Relaxed);
    runtime.block_on(frames).unwrap();
    let last = next_alert("the close on stop");
    assert_eq!(last.alert_id, again.alert_id);
    assert!(last.closed && last.message.contains("stopped"), "{last:?}");
    assert_eq!(stats.alerts, 3, "close, raise, close: {stats:?}");
}
