//! Exactly once across crashes: the real `aggregator` binary is SIGKILLed
//! repeatedly while it writes, flushes and compacts, against the embedded
//! Kafka broker with events arriving all the while (including re-sent
//! presence events, as a tracker replaying after its own crash would). After
//! a final clean run every produced frame is a row exactly once (frames
//! have no event id: only the manifest's offsets keep them exactly once),
//! and every presence interval and person exactly once.
//!
//! The same test runs on a local directory and on an S3 bucket (moto's S3
//! server from PyPI on 127.0.0.1, started by the test; `scripts/test.sh`
//! installs it and names its Python in `ARGUS_S3_PYTHON`).

use std::collections::HashSet;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use aggregator::manifest::Manifest;
use aggregator::query::QueryOptions;
use aggregator::store::{S3Settings, Storage};
use broker::EmbeddedBroker;
use datafusion::arrow::array::{AsArray, RecordBatch};
use datafusion::arrow::datatypes::Int64Type;
use rdkafka::producer::FutureProducer;
use rdkafka::util::Timeout;
use schemas::v1::presence_event::Kind;
use schemas::v1::{FrameDetections, PresenceEvent};
use schemas::{topics, wire};
use service_kit::clock::now_us;
use service_kit::kafka::{self, KafkaSettings};

/// What the producer thread sent: distinct frames, people and intervals.
#[derive(Debug, Default)]
struct Sent {
    frames: u64,
    people: u64,
    intervals: u64,
    resent: u64,
}

async fn send(producer: &FutureProducer, topic: &str, key: &str, payload: Vec<u8>) {
    let timeout = Timeout::After(Duration::from_secs(10));
    kafka::send(producer, topic, key.as_bytes(), &payload, timeout)
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

/// Where the tables go: the TOML line that configures it (first in the
/// file) and the same storage opened by the test.
struct Target {
    toml: String,
    storage: Storage,
}

fn write_config(dir: &Path, bootstrap: &str, target: &Target, flush_s: f64) -> std::path::PathBuf {
    let path = dir.join("aggregator.toml");
    std::fs::write(
        &path,
        format!(
            r#"
{storage}
flush_interval_s = {flush_s}
drain_timeout_s = 30.0

[compaction]
interval_s = {compact_s}
min_files = 3
delete_grace_s = 0.2

[kafka]
bootstrap_servers = "{bootstrap}"
[kafka.properties]
"session.timeout.ms" = "6000"
"heartbeat.interval.ms" = "500"
"#,
            storage = target.toml,
            compact_s = flush_s * 5.0,
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

fn committed_seq(runtime: &tokio::runtime::Runtime, storage: &Storage) -> u64 {
    runtime
        .block_on(Manifest::load(&storage.manifest()))
        .map(|s| s.seq)
        .unwrap_or(0)
}

fn count(runtime: &tokio::runtime::Runtime, storage: &Storage, sql: &str) -> Vec<i64> {
    runtime.block_on(async {
        let ctx = aggregator::query::open(storage, &QueryOptions::default())
            .await
            .unwrap();
        let batches: Vec<RecordBatch> = aggregator::query::sql(&ctx, sql).await.unwrap();
        let batch = &batches[0];
        (0..batch.num_columns())
            .map(|c| batch.column(c).as_primitive::<Int64Type>().value(0))
            .collect()
    })
}

/// Kills the aggregator `lives` times mid-work, then lets a last life catch
/// up and stop cleanly, and checks every row is there exactly once.
fn kill_and_recover(target: Target, lives: u64, flush_s: f64) {
    let broker = EmbeddedBroker::start(1, Some(2)).unwrap();
    let kafka = KafkaSettings::new(broker.bootstrap_servers());
    let dir = tempfile::tempdir().unwrap();
    let config = write_config(dir.path(), &broker.bootstrap_servers(), &target, flush_s);
    let storage = &target.storage;
    let runtime = tokio::runtime::Runtime::new().unwrap();

    let stop = Arc::new(AtomicBool::new(false));
    let sent = Arc::new(Mutex::new(Sent::default()));
    let producer = {
        let (kafka, stop, sent) = (kafka.clone(), Arc::clone(&stop), Arc::clone(&sent));
        std::thread::spawn(move || produce_until(kafka, stop, sent))
    };

    // Kill it mid-work several times: each time once it has committed
    // something in this life, after a varying delay (flushes every
    // `flush_s`, compactions every 5 flushes, so the kills land in all phases).
    let log = Arc::new(Mutex::new(Vec::new()));
    let mut kills = 0;
    let mut progressed = 0;
    for round in 0..lives {
        let before = committed_seq(&runtime, storage);
        let mut child = start(&config, &log);
        let deadline = Instant::now() + Duration::from_secs(60);
        while committed_seq(&runtime, storage) <= before + 2 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        if committed_seq(&runtime, storage) > before {
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
        let frames = count(&runtime, storage, "SELECT COUNT(*) FROM frames")[0];
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
    assert_eq!(kills, lives);
    assert_eq!(
        progressed, lives,
        "every life committed something before its kill"
    );
    let frames = count(
        &runtime,
        storage,
        "SELECT COUNT(*), COUNT(DISTINCT frame_seq) FROM frames",
    );
    assert_eq!(
        frames,
        vec![expected_frames, expected_frames],
        "frames once each"
    );
    let intervals = count(
        &runtime,
        storage,
        "SELECT COUNT(*), COUNT(DISTINCT event_id) FROM people_present_raw",
    );
    let expected = sent.intervals as i64;
    assert_eq!(intervals, vec![expected, expected], "intervals once each");
    let people = count(
        &runtime,
        storage,
        "SELECT COUNT(*), COUNT(DISTINCT id) FROM unique_people_raw",
    );
    assert_eq!(people, vec![sent.people as i64, sent.people as i64]);

    // Nothing but committed files (and no compaction inputs) is left behind.
    let state = runtime.block_on(storage.manifest().load()).unwrap();
    let leftovers = runtime.block_on(storage.sweep_uncommitted(&state)).unwrap();
    let compactions = log.matches("Compacted").count();
    let swept = log.matches("Deleted files no commit lists").count();
    eprintln!(
        "{}: {sent:?}; commits {}; live files {}; compactions {compactions}; lives that swept files {swept}; left over {}",
        storage.describe(),
        state.seq,
        state.files.len(),
        leftovers.len()
    );
    assert!(compactions > 0, "compaction ran during the test");
    let live: HashSet<&String> = state.files.keys().collect();
    assert!(live.len() < state.seq as usize, "compaction replaced files");
}

#[test]
fn sigkill_at_any_moment_loses_nothing_and_duplicates_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let tables = dir.path().join("tables");
    let target = Target {
        toml: format!("data_dir = {:?}", tables.display().to_string()),
        storage: Storage::local(&tables).unwrap(),
    };
    kill_and_recover(target, 5, 0.05);
}

/// moto's S3 server on an ephemeral 127.0.0.1 port, stopped on drop.
struct S3Server {
    child: Child,
    endpoint: String,
}

impl S3Server {
    fn start(bucket: &str) -> S3Server {
        let python = std::env::var("ARGUS_S3_PYTHON")
            .expect("ARGUS_S3_PYTHON names the Python that has moto (scripts/test.sh installs it)");
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tools/s3_server.py");
        let mut child = Command::new(python)
            .arg(script)
            .arg(bucket)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("start the S3 server");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let port: u16 = line
            .trim()
            .strip_prefix("PORT ")
            .and_then(|p| p.parse().ok())
            .unwrap_or_else(|| panic!("S3 server printed {line:?}, not its port"));
        S3Server {
            child,
            endpoint: format!("http://127.0.0.1:{port}"),
        }
    }
}

impl Drop for S3Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn sigkill_on_s3_loses_nothing_and_duplicates_nothing() {
    let server = S3Server::start("argus-tables");
    let settings = S3Settings {
        bucket: "argus-tables".into(),
        prefix: "site-1/tables".into(),
        region: Some("us-east-1".into()),
        endpoint: Some(server.endpoint.clone()),
        allow_http: true,
        virtual_hosted_style: false,
        access_key_id: Some("test".into()),
        secret_access_key: Some("test".into()),
        session_token: None,
    };
    // An inline table: the storage line goes first in the config file.
    let toml = format!(
        "s3 = {{ bucket = \"argus-tables\", prefix = \"site-1/tables\", region = \"us-east-1\", \
         endpoint = \"{}\", allow_http = true, access_key_id = \"test\", secret_access_key = \"test\" }}",
        server.endpoint
    );
    let target = Target {
        toml,
        storage: Storage::s3(&settings).unwrap(),
    };
    kill_and_recover(target, 3, 0.1);
    drop(server);
}
