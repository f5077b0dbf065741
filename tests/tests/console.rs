//! The security console in a real browser: the tracker (with a loitering
//! rule) and the aggregator (writer and HTTP API) run against the embedded
//! Kafka-protocol broker; a scripted scenario (a person standing in a zone,
//! a camera going down) is produced in real time; Debian's headless
//! Chromium, driven by playwright-core (`tests/browser/console.mjs`), signs
//! in, sees the alert appear, acknowledges it and takes a screenshot.
//!
//! Needs `node`, `tests/browser/node_modules` (`npm ci`) and Chromium;
//! `scripts/test.sh` installs them. `ARGUS_CONSOLE_SCREENSHOT=FILE` keeps
//! the screenshot.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use aggregator::config::AggregatorConfig;
use aggregator::http::HttpSettings;
use broker::EmbeddedBroker;
use datafusion::arrow::array::AsArray;
use rdkafka::producer::FutureProducer;
use rdkafka::util::Timeout;
use schemas::v1::camera_health::State;
use schemas::v1::{CameraHealth, Detection, FrameDetections};
use schemas::{topics, wire};
use service_kit::clock::now_us;
use service_kit::kafka::{self, KafkaSettings};
use tokio::net::TcpListener;
use tracker::config::TrackerConfig;

const TOKEN: &str = "console-test-token";

async fn send(producer: &FutureProducer, topic: &str, key: &str, payload: Vec<u8>) {
    let timeout = Timeout::After(Duration::from_secs(10));
    kafka::send(producer, topic, key.as_bytes(), &payload, timeout)
        .await
        .unwrap();
}

/// Camera "lobby" at 10 fps; a person stands in the left half while `present`.
fn frame(seq: u64, present: bool) -> FrameDetections {
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
        camera_id: "lobby".into(),
        frame_seq: seq,
        capture_ts_us: now_us(),
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

/// The scenario: 4 s of a person loitering at "lobby", then 4 s of empty
/// frames; camera "dock" reports UP, then DOWN from the second second on.
async fn scenario(producer: FutureProducer) {
    let start = now_us();
    let mut dock_down_since = None;
    for seq in 0..80u64 {
        let f = frame(seq, seq < 40);
        send(&producer, topics::DETECTIONS, "lobby", wire::encode(&f)).await;
        if seq % 5 == 0 {
            let report = if seq < 20 {
                health("dock", State::Up, start)
            } else {
                health(
                    "dock",
                    State::Down,
                    *dock_down_since.get_or_insert_with(now_us),
                )
            };
            send(
                &producer,
                topics::CAMERA_HEALTH,
                "dock",
                wire::encode(&report),
            )
            .await;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn png_size(bytes: &[u8]) -> (u32, u32) {
    assert_eq!(&bytes[..8], b"\x89PNG\r\n\x1a\n", "a PNG file");
    let be = |at: usize| u32::from_be_bytes(bytes[at..at + 4].try_into().unwrap());
    (be(16), be(20))
}

#[test]
fn security_staff_see_an_alert_appear_and_acknowledge_it_in_chromium() {
    let browser_dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("browser");
    assert!(
        browser_dir.join("node_modules/playwright-core").is_dir(),
        "tests/browser/node_modules is missing: scripts/test.sh runs `npm ci` there"
    );
    let broker = EmbeddedBroker::start(1, None).unwrap();
    let kafka = KafkaSettings::new(broker.bootstrap_servers());
    let dir = tempfile::tempdir().unwrap();
    let runtime = tokio::runtime::Runtime::new().unwrap();

    let mut tracker_config = TrackerConfig::new(kafka.clone());
    tracker_config.alerts = Some(
        toml::from_str(
            r#"
            [[rules]]
            name = "linger"
            kind = "loitering"
            severity = "critical"
            zone = [[0, 0], [384, 0], [384, 576], [0, 576]]
            max_dwell_s = 2.0
            absence_s = 1.0

            [[rules]]
            name = "blind"
            kind = "camera_down"
            cameras = ["dock"]
            max_down_s = 1.0
            "#,
        )
        .unwrap(),
    );
    let mut aggregator_config = AggregatorConfig::new(kafka.clone(), dir.path().join("tables"));
    aggregator_config.flush_interval_s = 0.3;
    let settings = HttpSettings {
        token: Some(TOKEN.into()),
        ..HttpSettings::default()
    };
    aggregator_config.http = Some(settings.clone());

    let (stop, stopped) = tokio::sync::watch::channel(false);
    let shutdown = move || {
        let mut stopped = stopped.clone();
        async move {
            let _ = stopped.wait_for(|stop| *stop).await;
        }
    };
    let tracker = runtime.spawn(tracker::run(tracker_config, shutdown()));
    // The writer without its own HTTP API; the API below on a free port.
    let mut writer_config = aggregator_config.clone();
    writer_config.http = None;
    let writer = runtime.spawn(aggregator::service::run(writer_config, shutdown()));
    let (address, api) = runtime.block_on(async {
        let router = aggregator::api::router(
            &aggregator_config,
            &settings,
            service_kit::shutdown::Shutdown::from_future(shutdown()),
        )
        .await
        .unwrap();
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let api = tokio::spawn(aggregator::http::serve(listener, router, shutdown()));
        (address, api)
    });
    let producer = kafka.producer("console-test").unwrap();
    let scenario = runtime.spawn(scenario(producer));

    // The browser signs in while the scenario is still running: the alert
    // arrives over the live feed.
    let screenshot = dir.path().join("console.png");
    let output = Command::new("node")
        .current_dir(&browser_dir)
        .arg("console.mjs")
        .arg(format!("http://{address}"))
        .arg(TOKEN)
        .arg("linger:lobby:")
        .arg(&screenshot)
        .output()
        .expect("run node (scripts/test.sh installs Node.js)");
    let stdout = String::from_utf8_lossy(&output.stdout).to_string();
    let stderr = String::from_utf8_lossy(&output.stderr).to_string();
    assert!(
        output.status.success(),
        "browser script failed: {stdout}\n{stderr}"
    );
    eprintln!("browser: {stdout}\n{stderr}");
    let result: serde_json::Value = serde_json::from_str(stdout.trim()).unwrap();
    let alert_id = result["alert_id"].as_str().unwrap().to_string();
    assert!(alert_id.starts_with("linger:lobby:1:"), "{result}");
    assert!(
        result["state"].as_str().unwrap().contains("acknowledged"),
        "{result}"
    );
    assert!(
        result["actions"][0]
            .as_str()
            .unwrap()
            .contains("acknowledged by guard-1"),
        "{result}"
    );

    // The screenshot: a phone-sized page at 2x, with real content.
    let png = std::fs::read(&screenshot).unwrap();
    if let Ok(keep) = std::env::var("ARGUS_CONSOLE_SCREENSHOT") {
        std::fs::write(keep, &png).unwrap();
    }
    let (width, height) = png_size(&png);
    assert_eq!(width, 780, "390 CSS pixels at 2x");
    assert!(height >= 1688, "{height}");
    assert!(png.len() > 30_000, "{} bytes", png.len());

    runtime.block_on(scenario).unwrap();
    // The acknowledgement is stored exactly once in `alert_actions`.
    let rows = runtime.block_on(async {
        let ctx = aggregator::query::context(&dir.path().join("tables"))
            .await
            .unwrap();
        let sql = format!("SELECT actor, action FROM alert_actions WHERE alert_id = '{alert_id}'");
        aggregator::query::sql(&ctx, &sql).await.unwrap()
    });
    let stored: Vec<(String, String)> = rows
        .iter()
        .flat_map(|b| {
            let actor = b.column(0).as_string::<i32>();
            let action = b.column(1).as_string::<i32>();
            (0..b.num_rows())
                .map(|i| (actor.value(i).to_string(), action.value(i).to_string()))
                .collect::<Vec<_>>()
        })
        .collect();
    assert_eq!(
        stored,
        vec![("guard-1".to_string(), "acknowledged".to_string())]
    );
    let cameras: Vec<&str> = result["cameras"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|c| c.as_str())
        .collect();
    assert!(cameras.contains(&"dock: DOWN"), "{result}");

    let _ = stop.send(true);
    runtime.block_on(tracker).unwrap().unwrap();
    runtime.block_on(writer).unwrap().unwrap();
    runtime.block_on(api).unwrap().unwrap();
}
