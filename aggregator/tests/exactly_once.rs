//! Exactly once across crashes: the real `aggregator` binary is SIGKILLed
//! repeatedly while it writes, flushes and compacts, against the embedded
//! Kafka broker with events arriving all the while (including re-sent
//! presence events, as a tracker replaying after its own crash would). After
//! a final clean run every produced frame is a row exactly once (frames
//! have no event id: only the manifest's offsets keep them exactly once),
//! and every presence interval and person exactly once.

use std::collections::HashSet;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use aggregator::manifest::Manifest;
use aggregator::store::Storage;
use broker::EmbeddedBroker;
use datafusion::arrow::array::{AsArray, RecordBatch};
use datafusion::arrow::datatypes::Int64Type;
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::util::Timeout;
use schemas::v1::presence_event::Kind;
use schemas::v1::{FrameDetections, PresenceEvent};
use schemas::{topics, wire};
use service_kit::kafka::KafkaSettings;

/// What the producer thread sent: distinct frames, people and intervals.
#[derive(Debug, Default)]
struct Sent {
    frames: u64,
    people: u64,
    intervals: u64,
    resent: u64,
}

fn now_us() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_micros() as i64
}

async fn send(producer: &FutureProducer, topic: &str, key: &str, payload: Vec<u8>) {
    producer
        .send(
            FutureRecord::to(topic).key(key).payload(&payload),
            Timeout::After(Duration::from_secs(10)),
        )
        .await
        .unwrap();
}

/// Sends frames and presence intervals until `stop`, re-sending every 7th
/// interval's EXIT a little later (same event id, new offset).
fn produce_until(kafka: KafkaSettings, stop: Arc<AtomicBool>, sent: Arc<Mutex<Sent>>) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let producer = kafka.producer("exactly-once-test").unwrap();
        let mut resend: Vec<PresenceEvent> = Vec::new();
        let mut seq = 0u64;
        while !stop.load(Ordering::Relaxed) {
            for _ in 0..20 {
                seq += 1;
                let camera = if seq.is_multiple_of(2) {
                    "cam-a"
                } else {
                    "cam-b"
                };
                let frame = FrameDetections {
                    camera_id: camera.into(),
                    frame_seq: seq,
                    capture_ts_us: now_us(),
                    frame_width: 640,
                    frame_height: 480,
                    ..Default::default()
                };
                send(&producer, topics::DETECTIONS, camera, wire::encode(&frame)).await;
                sent.lock().unwrap().frames += 1;
                if seq.is_multiple_of(4) {
                    let person = seq / 4;
                    let enter = now_us() - 5_000_000;
                    let mut event = PresenceEvent {
                        kind: Kind::Enter as i32,
                        person_id: person,
                        camera_id: camera.into(),
                        track_id: person,
                        enter_ts_us: enter,
                        event_id: format!("{camera}:e:{person}:ENTER"),
                        ..Default::default()
                    };
                    send(&producer, topics::PRESENCE, camera, wire::encode(&event)).await;
                    event.kind = Kind::Exit as i32;
                    event.exit_ts_us = now_us();
                    event.event_id = format!("{camera}:e:{person}:EXIT");
                    send(&producer, topics::PRESENCE, camera, wire::encode(&event)).await;
                    {
                        let mut sent = sent.lock().unwrap();
                        sent.people += 1;
                        sent.intervals += 1;
                    }
                    if person.is_multiple_of(7) {
                        resend.push(event);
                    }
                }
            }
            if resend.len() > 3 {
                let event = resend.remove(0);
                send(
                    &producer,
                    topics::PRESENCE,
                    &event.camera_id,
                    wire::encode(&event),
                )
                .await;
                sent.lock().unwrap().resent += 1;
            }
            tokio::time::sleep(Duration::from_millis(15)).await;
        }
    });
}

fn write_config(dir: &Path, bootstrap: &str) -> std::path::PathBuf {
    let path = dir.join("aggregator.toml");
    std::fs::write(
        &path,
        format!(
            r#"
data_dir = "tables"
flush_interval_s = 0.05
drain_timeout_s = 30.0

[compaction]
interval_s = 0.25
min_files = 3
delete_grace_s = 0.2

[kafka]
bootstrap_servers = "{bootstrap}"
[kafka.properties]
"session.timeout.ms" = "6000"
"heartbeat.interval.ms" = "500"
"#
        ),
    )
    .unwrap();
    path
}

/// Starts the aggregator binary; its log lines are collected in `log`.
fn start(config: &Path, log: &Arc<Mutex<Vec<String>>>) -> Child {
    let mut child = Command::new(env!("CARGO_BIN_EXE_aggregator"))
        .args(["run", "--config"])
        .arg(config)
        .env("RUST_LOG", "info")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let log = Arc::clone(log);
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            log.lock().unwrap().push(line);
        }
    });
    child
}

fn committed_seq(runtime: &tokio::runtime::Runtime, tables: &Path) -> u64 {
    let storage = Storage::local(tables).unwrap();
    runtime
        .block_on(Manifest::load(&storage.manifest()))
        .map(|s| s.seq)
        .unwrap_or(0)
}

fn count(runtime: &tokio::runtime::Runtime, tables: &Path, sql: &str) -> Vec<i64> {
    runtime.block_on(async {
        let ctx = aggregator::query::context(tables).await.unwrap();
        let batches: Vec<RecordBatch> = aggregator::query::sql(&ctx, sql).await.unwrap();
        let batch = &batches[0];
        (0..batch.num_columns())
            .map(|c| batch.column(c).as_primitive::<Int64Type>().value(0))
            .collect()
    })
}

#[test]
fn sigkill_at_any_moment_loses_nothing_and_duplicates_nothing() {
    let broker = EmbeddedBroker::start(1, Some(2)).unwrap();
    let kafka = KafkaSettings::new(broker.bootstrap_servers());
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), &broker.bootstrap_servers());
    let tables = dir.path().join("tables");
    let runtime = tokio::runtime::Runtime::new().unwrap();

    let stop = Arc::new(AtomicBool::new(false));
    let sent = Arc::new(Mutex::new(Sent::default()));
    let producer = {
        let (kafka, stop, sent) = (kafka.clone(), Arc::clone(&stop), Arc::clone(&sent));
        std::thread::spawn(move || produce_until(kafka, stop, sent))
    };

    // Kill it mid-work several times: each time once it has committed
    // something in this life, after a varying delay (flushes every 50 ms,
    // compactions every 250 ms, so the kills land in all phases).
    let log = Arc::new(Mutex::new(Vec::new()));
    let mut kills = 0;
    let mut progressed = 0;
    for round in 0..5u64 {
        let before = committed_seq(&runtime, &tables);
        let mut child = start(&config, &log);
        let deadline = Instant::now() + Duration::from_secs(60);
        while committed_seq(&runtime, &tables) <= before + 2 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        if committed_seq(&runtime, &tables) > before {
            progressed += 1;
        }
        std::thread::sleep(Duration::from_millis(37 * round + 10));
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        kills += 1;
    }
    stop.store(true, Ordering::Relaxed);
    producer.join().unwrap();
    let sent = std::mem::take(&mut *sent.lock().unwrap());
    assert!(sent.frames > 500 && sent.resent > 5, "{sent:?}");

    // A last life that catches up and stops cleanly on SIGTERM.
    let mut child = start(&config, &log);
    let expected_frames = sent.frames as i64;
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let frames = count(&runtime, &tables, "SELECT COUNT(*) FROM frames")[0];
        if frames >= expected_frames || Instant::now() > deadline {
            break;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    std::thread::sleep(Duration::from_millis(500));
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    assert!(child.wait().unwrap().success(), "clean stop");

    let log = log.lock().unwrap().join("\n");
    assert_eq!(kills, 5);
    assert_eq!(
        progressed, 5,
        "every life committed something before its kill"
    );
    let frames = count(
        &runtime,
        &tables,
        "SELECT COUNT(*), COUNT(DISTINCT frame_seq) FROM frames",
    );
    assert_eq!(
        frames,
        vec![expected_frames, expected_frames],
        "frames once each"
    );
    let intervals = count(
        &runtime,
        &tables,
        "SELECT COUNT(*), COUNT(DISTINCT event_id) FROM people_present_raw",
    );
    let expected = sent.intervals as i64;
    assert_eq!(intervals, vec![expected, expected], "intervals once each");
    let people = count(
        &runtime,
        &tables,
        "SELECT COUNT(*), COUNT(DISTINCT id) FROM unique_people_raw",
    );
    assert_eq!(people, vec![sent.people as i64, sent.people as i64]);

    // Nothing but committed files (and no compaction inputs) is left behind.
    let storage = Storage::local(&tables).unwrap();
    let state = runtime.block_on(storage.manifest().load()).unwrap();
    let leftovers = runtime.block_on(storage.sweep_uncommitted(&state)).unwrap();
    let compactions = log.matches("Compacted").count();
    let swept = log.matches("Deleted files no commit lists").count();
    eprintln!(
        "{sent:?}; commits {}; live files {}; compactions {compactions}; lives that swept files {swept}; left over {}",
        state.seq,
        state.files.len(),
        leftovers.len()
    );
    assert!(compactions > 0, "compaction ran during the test");
    let live: HashSet<&String> = state.files.keys().collect();
    assert!(live.len() < state.seq as usize, "compaction replaced files");
}
