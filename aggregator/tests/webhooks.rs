//! Alert webhooks end to end: alerts produced to the embedded Kafka broker,
//! delivered by the aggregator's webhook tasks to a real HTTP receiver on
//! 127.0.0.1 that records every request and answers as each test scripts.
//!
//! - The whole aggregator (`aggregator::run`) delivers what two webhooks
//!   select, in order, signed, with the documented JSON.
//! - 503s are retried with growing waits, 429's `Retry-After` is honoured.
//! - A receiver that is down loses nothing, across a restart of the delivery
//!   task, and nothing is delivered twice.
//! - A 400 (and an undecodable message) is skipped; later alerts still go.
//! - An alert is given up after `give_up_after_s`; the next one is delivered.
//! - Configuration mistakes are all reported at once.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use aggregator::config::AggregatorConfig;
use aggregator::webhooks::{WebhookCounters, WebhookSettings, WebhookStats, Webhooks};
use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use broker::EmbeddedBroker;
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::util::Timeout;
use ring::hmac;
use schemas::v1::Alert;
use schemas::v1::alert::Severity;
use schemas::{topics, wire};
use serde_json::{Value, json};
use service_kit::kafka::KafkaSettings;
use service_kit::shutdown::{self, Trigger};

const SECRET: &str = "test-secret";

/// One request as the receiver saw it.
#[derive(Debug, Clone)]
struct Received {
    at: Instant,
    path: String,
    headers: HeaderMap,
    body: Bytes,
    json: Value,
    status: StatusCode,
}

impl Received {
    fn alert_id(&self) -> &str {
        self.json["alert_id"].as_str().unwrap_or("")
    }
    fn header(&self, name: &str) -> &str {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
    }
}

/// The receiver's answer to its n-th request (0-based) carrying `alert`.
type Script = Arc<dyn Fn(usize, &Value) -> Response + Send + Sync>;

struct ReceiverState {
    requests: Mutex<Vec<Received>>,
    script: Script,
    /// Time taken before answering (a request in flight at shutdown).
    delay: Duration,
}

/// A local HTTP server that records every request; stops when dropped.
struct Receiver {
    state: Arc<ReceiverState>,
    _stop: tokio::sync::oneshot::Sender<()>,
}

impl Receiver {
    async fn start(port: u16, delay: Duration, script: Script) -> Receiver {
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
            .await
            .unwrap();
        let state = Arc::new(ReceiverState {
            requests: Mutex::new(Vec::new()),
            script,
            delay,
        });
        let router = Router::new()
            .fallback(record)
            .with_state(Arc::clone(&state));
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(async move {
            axum::serve(listener, router)
                .with_graceful_shutdown(async move {
                    let _ = stopped.await;
                })
                .await
                .unwrap();
        });
        Receiver { state, _stop: stop }
    }

    fn requests(&self) -> Vec<Received> {
        self.state.requests.lock().unwrap().clone()
    }

    /// Alert ids of the requests answered 2xx, in arrival order.
    fn delivered(&self) -> Vec<String> {
        self.requests()
            .iter()
            .filter(|r| r.status.is_success())
            .map(|r| r.alert_id().to_string())
            .collect()
    }
}

async fn record(
    State(state): State<Arc<ReceiverState>>,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let at = Instant::now();
    let json: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let response = {
        let mut requests = state.requests.lock().unwrap();
        let response = (state.script)(requests.len(), &json);
        requests.push(Received {
            at,
            path: uri.path().to_string(),
            headers,
            body,
            json,
            status: response.status(),
        });
        response
    };
    tokio::time::sleep(state.delay).await;
    response
}

fn always_ok() -> Script {
    Arc::new(|_, _| StatusCode::OK.into_response())
}

/// A port nothing listens on (until a test starts its receiver there).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn kafka(broker: &EmbeddedBroker) -> KafkaSettings {
    let mut kafka = KafkaSettings::new(broker.bootstrap_servers());
    for (key, value) in [
        ("session.timeout.ms", "6000"),
        ("heartbeat.interval.ms", "500"),
    ] {
        kafka.properties.insert(key.into(), value.into());
    }
    kafka
}

/// A webhook with test-sized timings.
fn webhook(name: &str, url: String) -> WebhookSettings {
    WebhookSettings {
        timeout_s: 2.0,
        retry_initial_s: 0.05,
        retry_max_s: 0.2,
        // Alerts are produced while the consumer group may still be joining.
        from_oldest: true,
        ..WebhookSettings::new(name, url, SECRET)
    }
}

fn alert(id: &str, rule: &str, severity: Severity, closed: bool) -> Alert {
    Alert {
        schema_version: 1,
        alert_id: id.into(),
        rule: rule.into(),
        severity: severity as i32,
        camera_id: "cam-1".into(),
        person_ids: vec![42],
        ts_us: 1_700_000_000_123_456,
        message: format!("{rule} on cam-1"),
        closed,
        ..Alert::default()
    }
}

fn raised(id: &str) -> Alert {
    alert(id, "loitering", Severity::Warning, false)
}

/// Sends payloads to the alerts topic, all keyed by one camera (one
/// partition, so one order).
async fn produce(producer: &FutureProducer, payloads: impl IntoIterator<Item = Vec<u8>>) {
    for payload in payloads {
        producer
            .send(
                FutureRecord::to(topics::ALERTS)
                    .key("cam-1")
                    .payload(&payload),
                Timeout::After(Duration::from_secs(10)),
            )
            .await
            .unwrap();
    }
}

async fn produce_alerts(producer: &FutureProducer, alerts: &[Alert]) {
    produce(producer, alerts.iter().map(wire::encode)).await;
}

/// Rows in the finished Parquet files under `dir`, recursively (0 before
/// any is written; files being written have another name until renamed).
fn parquet_rows(dir: &std::path::Path) -> i64 {
    use datafusion::parquet::file::reader::{FileReader, SerializedFileReader};
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .flatten()
        .map(|entry| {
            let path = entry.path();
            if path.is_dir() {
                parquet_rows(&path)
            } else if path.extension().is_some_and(|ext| ext == "parquet") {
                std::fs::File::open(&path)
                    .ok()
                    .and_then(|file| SerializedFileReader::new(file).ok())
                    .map_or(0, |reader| reader.metadata().file_metadata().num_rows())
            } else {
                0
            }
        })
        .sum()
}

/// Polls `ready` every 20 ms; panics with `what` after `timeout`.
async fn wait_until(what: &str, timeout: Duration, ready: impl Fn() -> bool) {
    let deadline = Instant::now() + timeout;
    while !ready() {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Webhook delivery tasks started on their own, as `aggregator::run` does.
struct Running {
    trigger: Trigger,
    task: tokio::task::JoinHandle<Vec<WebhookStats>>,
    counters: WebhookCounters,
}

impl Running {
    fn start(settings: &[WebhookSettings], kafka: &KafkaSettings) -> Running {
        let webhooks = Webhooks::new(settings, kafka, "argus-aggregator").unwrap();
        let counters = webhooks.counters();
        let (trigger, shutdown) = shutdown::channel();
        let task = tokio::spawn(webhooks.run(shutdown));
        Running {
            trigger,
            task,
            counters,
        }
    }

    /// Clean shutdown; the totals of the (single) webhook.
    async fn stop(self) -> WebhookStats {
        self.trigger.fire();
        let mut stats = tokio::time::timeout(Duration::from_secs(20), self.task)
            .await
            .expect("webhooks stop promptly")
            .unwrap();
        assert_eq!(stats.len(), 1);
        stats.remove(0)
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Checks the headers every request carries and recomputes its signature.
fn assert_signed(request: &Received, secret: &str) {
    assert_eq!(request.header("content-type"), "application/json");
    assert_eq!(request.header("user-agent"), "argus-aggregator");
    let timestamp = request.header("x-argus-timestamp");
    let seconds: u64 = timestamp.parse().expect("a Unix-seconds timestamp");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    assert!(
        now.abs_diff(seconds) <= 60,
        "timestamp {seconds}, now {now}"
    );
    let key = hmac::Key::new(hmac::HMAC_SHA256, secret.as_bytes());
    let mut signed = format!("{timestamp}.").into_bytes();
    signed.extend_from_slice(&request.body);
    let expected = format!("sha256={}", hex(hmac::sign(&key, &signed).as_ref()));
    assert_eq!(request.header("x-argus-signature"), expected);
    let event = if request.json["closed"] == json!(true) {
        "closed"
    } else {
        "raised"
    };
    assert_eq!(
        request.header("x-argus-delivery"),
        format!("{}:{event}", request.alert_id())
    );
}

/// 1. Through the whole aggregator: two webhooks on one receiver, each gets
///    exactly the alerts its filter selects, in order, signed, with the
///    documented JSON.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_aggregator_delivers_selected_alerts_in_order_signed() {
    let started = Instant::now();
    let broker = EmbeddedBroker::start(1, Some(2)).unwrap();
    let kafka = kafka(&broker);
    let port = free_port();
    let receiver = Receiver::start(port, Duration::ZERO, always_ok()).await;
    let dir = tempfile::tempdir().unwrap();
    let mut config = AggregatorConfig::new(kafka.clone(), dir.path().join("tables"));
    config.flush_interval_s = 0.2;
    config.drain_timeout_s = 0.5;
    config.webhooks = vec![
        WebhookSettings {
            min_severity: aggregator::webhooks::Severity::Warning,
            rules: vec!["loitering".into(), "restricted".into()],
            ..webhook("pager", format!("http://127.0.0.1:{port}/pager"))
        },
        WebhookSettings {
            include_closed: false,
            secret: "audit-secret".into(),
            ..webhook("audit", format!("http://127.0.0.1:{port}/audit"))
        },
    ];
    config.validate().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let service = tokio::spawn(aggregator::run(config, async move {
        let _ = stopped.await;
    }));

    let producer = kafka.producer("webhooks-test").unwrap();
    let alerts = [
        alert("a1", "loitering", Severity::Warning, false),
        alert("a2", "loitering", Severity::Info, false), // pager: too low
        alert("a3", "occupancy", Severity::Critical, false), // pager: other rule
        alert("a4", "restricted", Severity::Critical, false),
        alert("a1", "loitering", Severity::Warning, true), // audit: closed
        alert("a5", "running", Severity::Info, false),     // pager: both
        alert("a6", "restricted", Severity::Critical, false),
    ];
    produce_alerts(&producer, &alerts).await;
    let on = |path: &str| -> Vec<String> {
        receiver
            .requests()
            .iter()
            .filter(|r| r.path == path)
            .map(|r| format!("{}:{}", r.alert_id(), r.json["closed"]))
            .collect()
    };
    wait_until("both webhooks got a6", Duration::from_secs(30), || {
        on("/pager").contains(&"a6:false".to_string())
            && on("/audit").contains(&"a6:false".to_string())
    })
    .await;
    let delivered_after_s = started.elapsed().as_secs_f64();
    // The tables have their own consumer group, which may start later than
    // the webhooks' on a loaded machine: stop once it has written them all.
    let alerts_table = dir.path().join("tables").join("alerts");
    wait_until(
        "the alerts table holds all 7 alert events",
        Duration::from_secs(30),
        || parquet_rows(&alerts_table) >= 7,
    )
    .await;
    stop.send(()).unwrap();
    let stats = service.await.unwrap().unwrap();

    assert_eq!(
        on("/pager"),
        ["a1:false", "a4:false", "a1:true", "a6:false"],
        "pager: warning and up, loitering and restricted, closing events too"
    );
    assert_eq!(
        on("/audit"),
        [
            "a1:false", "a2:false", "a3:false", "a4:false", "a5:false", "a6:false"
        ],
        "audit: every raise, no closing event"
    );
    let requests = receiver.requests();
    for request in &requests {
        let secret = if request.path == "/audit" {
            "audit-secret"
        } else {
            SECRET
        };
        assert_signed(request, secret);
    }
    assert_eq!(
        requests[0].json,
        json!({
            "alert_id": "a1",
            "rule": "loitering",
            "severity": "warning",
            "camera_id": "cam-1",
            "person_ids": [42],
            "ts": "2023-11-14T22:13:20.123456Z",
            "ts_us": 1_700_000_000_123_456i64,
            "message": "loitering on cam-1",
            "closed": false,
            "trigger_ts": null,
            "evidence": null,
        })
    );
    let by_name = |name: &str| stats.webhooks.iter().find(|w| w.name == name).unwrap();
    let pager = by_name("pager");
    assert_eq!(
        (pager.delivered, pager.filtered, pager.retried),
        (4, 3, 0),
        "{pager:?}"
    );
    let audit = by_name("audit");
    assert_eq!((audit.delivered, audit.filtered), (6, 1), "{audit:?}");
    assert!(
        stats.messages >= 7,
        "the tables' consumer read the alerts too"
    );
    eprintln!(
        "filtered delivery: all delivered {delivered_after_s:.2} s after start, test {:.2} s",
        started.elapsed().as_secs_f64()
    );
}

/// 2. 503 three times, then 200: four attempts with growing waits, then the
///    next alert; a 429 with `Retry-After: 1` waits a second.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_errors_are_retried_with_growing_waits_and_retry_after() {
    let started = Instant::now();
    let broker = EmbeddedBroker::start(1, Some(2)).unwrap();
    let kafka = kafka(&broker);
    let port = free_port();
    let script: Script = Arc::new(|n, _| match n {
        0..=2 => StatusCode::SERVICE_UNAVAILABLE.into_response(),
        4 => (StatusCode::TOO_MANY_REQUESTS, [("retry-after", "1")]).into_response(),
        _ => StatusCode::OK.into_response(),
    });
    let receiver = Receiver::start(port, Duration::ZERO, script).await;
    let settings = WebhookSettings {
        retry_initial_s: 0.1,
        retry_max_s: 2.0,
        ..webhook("flaky", format!("http://127.0.0.1:{port}/hook"))
    };
    let running = Running::start(&[settings], &kafka);
    let producer = kafka.producer("webhooks-test").unwrap();
    produce_alerts(&producer, &[raised("a1"), raised("a2"), raised("a3")]).await;
    wait_until("a3 delivered", Duration::from_secs(30), || {
        receiver.delivered().contains(&"a3".to_string())
    })
    .await;
    let stats = running.stop().await;

    let requests = receiver.requests();
    let seen: Vec<(&str, u16)> = requests
        .iter()
        .map(|r| (r.alert_id(), r.status.as_u16()))
        .collect();
    assert_eq!(
        seen,
        [
            ("a1", 503),
            ("a1", 503),
            ("a1", 503),
            ("a1", 200),
            ("a2", 429),
            ("a2", 200),
            ("a3", 200)
        ]
    );
    for request in &requests {
        assert_signed(request, SECRET);
    }
    let gaps: Vec<f64> = requests
        .windows(2)
        .map(|w| (w[1].at - w[0].at).as_secs_f64())
        .collect();
    // Retry n waits between half of min(0.1 · 2ⁿ, 2) and all of it, at least 0.1.
    let slack = 0.6;
    assert!((0.095..0.1 + slack).contains(&gaps[0]), "{gaps:?}");
    assert!((0.095..0.2 + slack).contains(&gaps[1]), "{gaps:?}");
    assert!((0.195..0.4 + slack).contains(&gaps[2]), "{gaps:?}");
    assert!(gaps[2] > gaps[0], "waits grow: {gaps:?}");
    assert!(
        (0.995..1.0 + slack).contains(&gaps[4]),
        "Retry-After: 1: {gaps:?}"
    );
    assert_eq!(
        (stats.delivered, stats.retried, stats.failed_permanent),
        (3, 4, 0),
        "{stats:?}"
    );
    eprintln!(
        "retries: a1's waits {:.3} {:.3} {:.3} s, Retry-After wait {:.3} s, test {:.2} s",
        gaps[0],
        gaps[1],
        gaps[2],
        gaps[4],
        started.elapsed().as_secs_f64()
    );
}

/// 3. The receiver is down while five alerts are produced, and comes back
///    on the same port; the delivery task is restarted half-way (a request
///    in flight when it stops). Every alert arrives once, in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_receiver_outage_and_a_restart_lose_nothing_and_repeat_nothing() {
    let started = Instant::now();
    let broker = EmbeddedBroker::start(1, Some(2)).unwrap();
    let kafka = kafka(&broker);
    let port = free_port();
    let settings = [webhook("outage", format!("http://127.0.0.1:{port}/hook"))];
    let first = Running::start(&settings, &kafka);
    let producer = kafka.producer("webhooks-test").unwrap();
    let ids: Vec<String> = (1..=8).map(|i| format!("a{i}")).collect();
    let alerts: Vec<Alert> = ids.iter().map(|id| raised(id)).collect();
    produce_alerts(&producer, &alerts[..5]).await;
    wait_until("a few failed attempts", Duration::from_secs(30), || {
        first.counters.get("outage").retried >= 5
    })
    .await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let down_s = started.elapsed().as_secs_f64();

    // Back on the same port, slow enough that the restart below lands
    // while a request is in flight.
    let receiver = Receiver::start(port, Duration::from_millis(100), always_ok()).await;
    wait_until("two alerts delivered", Duration::from_secs(10), || {
        receiver.requests().len() >= 2
    })
    .await;
    let before = first.stop().await;
    let delivered_before = receiver.delivered();
    assert_eq!(
        before.delivered as usize,
        delivered_before.len(),
        "a clean stop finishes the request in flight and counts it"
    );
    produce_alerts(&producer, &alerts[5..]).await;
    let second = Running::start(&settings, &kafka);
    wait_until("a8 delivered", Duration::from_secs(30), || {
        receiver.delivered().contains(&"a8".to_string())
    })
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let after = second.stop().await;

    assert_eq!(receiver.delivered(), ids, "every alert once, in order");
    assert_eq!(
        receiver.requests().len(),
        ids.len(),
        "no request beyond one per alert"
    );
    assert!(before.retried >= 5, "{before:?}");
    assert_eq!(
        before.delivered + after.delivered,
        8,
        "{before:?} {after:?}"
    );
    assert_eq!(after.retried, 0, "{after:?}");
    eprintln!(
        "outage: receiver down {down_s:.2} s ({} failed attempts), {} delivered before the restart, {} after, test {:.2} s",
        before.retried,
        before.delivered,
        after.delivered,
        started.elapsed().as_secs_f64()
    );
}

/// 4. A 400 is a permanent failure: counted, not retried, and the alerts
///    after it (and after an undecodable message) are delivered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_error_skips_the_alert_and_later_ones_still_go() {
    let started = Instant::now();
    let broker = EmbeddedBroker::start(1, Some(2)).unwrap();
    let kafka = kafka(&broker);
    let port = free_port();
    let script: Script = Arc::new(|_, alert| {
        if alert["alert_id"] == "bad" {
            (StatusCode::BAD_REQUEST, "unknown rule").into_response()
        } else {
            StatusCode::NO_CONTENT.into_response()
        }
    });
    let receiver = Receiver::start(port, Duration::ZERO, script).await;
    let running = Running::start(
        &[webhook("strict", format!("http://127.0.0.1:{port}/hook"))],
        &kafka,
    );
    let producer = kafka.producer("webhooks-test").unwrap();
    produce(
        &producer,
        [
            wire::encode(&raised("good1")),
            wire::encode(&raised("bad")),
            b"\xff\xff not protobuf".to_vec(),
            wire::encode(&raised("good2")),
        ],
    )
    .await;
    wait_until("good2 delivered", Duration::from_secs(30), || {
        receiver.delivered().contains(&"good2".to_string())
    })
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let stats = running.stop().await;

    let seen: Vec<(String, u16)> = receiver
        .requests()
        .iter()
        .map(|r| (r.alert_id().to_string(), r.status.as_u16()))
        .collect();
    assert_eq!(
        seen,
        [
            ("good1".to_string(), 204),
            ("bad".to_string(), 400),
            ("good2".to_string(), 204)
        ]
    );
    assert_eq!(
        (
            stats.delivered,
            stats.failed_permanent,
            stats.retried,
            stats.malformed
        ),
        (2, 1, 0, 1),
        "{stats:?}"
    );
    eprintln!(
        "client error: test {:.2} s",
        started.elapsed().as_secs_f64()
    );
}

/// 5. With a dead receiver an alert is given up after `give_up_after_s`;
///    the next one is delivered once the receiver is back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_alert_is_given_up_and_the_next_one_is_delivered() {
    let started = Instant::now();
    let broker = EmbeddedBroker::start(1, Some(2)).unwrap();
    let kafka = kafka(&broker);
    let port = free_port();
    let settings = WebhookSettings {
        give_up_after_s: 1.0,
        ..webhook("patient", format!("http://127.0.0.1:{port}/hook"))
    };
    let running = Running::start(&[settings], &kafka);
    let producer = kafka.producer("webhooks-test").unwrap();
    produce_alerts(&producer, &[raised("lost")]).await;
    wait_until("the alert is given up", Duration::from_secs(30), || {
        running.counters.get("patient").gave_up == 1
    })
    .await;
    let gave_up_at = started.elapsed().as_secs_f64();
    let retried = running.counters.get("patient").retried;
    let receiver = Receiver::start(port, Duration::ZERO, always_ok()).await;
    produce_alerts(&producer, &[raised("next")]).await;
    wait_until("the next alert delivered", Duration::from_secs(10), || {
        receiver.delivered().contains(&"next".to_string())
    })
    .await;
    let stats = running.stop().await;

    assert_eq!(receiver.delivered(), ["next"]);
    assert_eq!((stats.gave_up, stats.delivered), (1, 1), "{stats:?}");
    // A second of waits of 0.05 to 0.2 s.
    assert!((5..=25).contains(&retried), "{stats:?}");
    eprintln!(
        "give up: gave up {gave_up_at:.2} s after start after {retried} retries, test {:.2} s",
        started.elapsed().as_secs_f64()
    );
}

/// 6. Every webhook mistake is reported at once, naming the webhook.
#[test]
fn webhook_config_mistakes_are_all_reported() {
    let config: AggregatorConfig = toml::from_str(
        r#"
        data_dir = "t"
        [kafka]
        bootstrap_servers = "k:9092"
        [[webhooks]]
        name = "ops"
        url = "https://ops.example.com/hook"
        secret = "s"
        [[webhooks]]
        name = "ops"
        url = "ftp://ops.example.com/hook"
        secret = ""
        [[webhooks]]
        name = "slow-1"
        url = "http://slow.example.com"
        secret = "s"
        min_severity = "critical"
        retry_initial_s = 30.0
        retry_max_s = 10.0
        [[webhooks]]
        name = "slow_1"
        url = "http://other.example.com"
        secret = "s"
        "#,
    )
    .unwrap();
    let err = config.validate().unwrap_err().to_string();
    for needle in [
        "webhook \"ops\" is listed twice",
        "webhooks[1] (\"ops\"): url \"ftp://ops.example.com/hook\" must start with http:// or https://",
        "webhooks[1] (\"ops\"): secret is empty: set it, or ARGUS_WEBHOOK_SECRET_OPS,",
        "webhooks[2] (\"slow-1\"): retry_initial_s (30) must not exceed retry_max_s (10)",
        "webhooks \"slow-1\" and \"slow_1\" share the secret variable ARGUS_WEBHOOK_SECRET_SLOW_1",
    ] {
        assert!(err.contains(needle), "{needle} missing from {err}");
    }
    let unknown = toml::from_str::<AggregatorConfig>(
        "data_dir = \"t\"\n[kafka]\nbootstrap_servers = \"k\"\n[[webhooks]]\nname = \"a\"\nurl = \"http://h\"\nsecret = \"s\"\nmin_severity = \"urgent\"\n",
    )
    .unwrap_err()
    .to_string();
    assert!(unknown.contains("urgent"), "{unknown}");
    // Started without the configuration's validation, a webhook checks itself.
    let bad = WebhookSettings::new("x", "http://h/", "");
    let err = Webhooks::new(&[bad], &KafkaSettings::new("127.0.0.1:9"), "g")
        .unwrap_err()
        .to_string();
    assert!(err.contains("webhook \"x\": secret is empty"), "{err}");
}
