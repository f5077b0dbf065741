//! Alert delivery to webhooks.
//!
//! Every `[[webhooks]]` entry reads `argus.alerts.v1` with a Kafka consumer
//! group of its own, `<group_id>-webhook-<name>`, and POSTs the alerts it
//! selects (by severity, rule, and whether closing events are wanted) to its
//! URL, one at a time, in Kafka's order: per camera, since alerts are keyed
//! by camera id. A webhook stores its offset only once the alert was
//! delivered (2xx), refused for good, or given up, so a receiver that is
//! down holds back its own webhook alone and loses nothing: the alerts wait
//! in Kafka. A clean shutdown lets the request in flight finish and commits,
//! so nothing is posted twice; after a crash the alerts of the last second
//! (the auto-commit interval) may be posted again, and receivers drop those
//! by `X-Argus-Delivery`.
//!
//! # The request
//! `POST <url>` with `Content-Type: application/json` and
//! `User-Agent: argus-aggregator`; the body is one JSON object:
//!
//! ```json
//! {"alert_id": "loitering:cam-1:42:1700000000000000", "rule": "loitering",
//!  "severity": "warning", "camera_id": "cam-1", "person_ids": [42],
//!  "ts": "2023-11-14T22:13:20.000000Z", "ts_us": 1700000000000000,
//!  "message": "...", "closed": false}
//! ```
//!
//! - `X-Argus-Timestamp`: Unix seconds when this attempt was made.
//! - `X-Argus-Signature`: `sha256=` and the lowercase hex HMAC-SHA256, keyed
//!   with the webhook's secret, of `<timestamp>.<body>`. Receivers recompute
//!   it over the raw body, compare in constant time and reject stale timestamps.
//! - `X-Argus-Delivery`: `<alert_id>:raised` or `<alert_id>:closed`, the same
//!   on every attempt: the idempotency key.
//!
//! # Retries
//! Connection errors, timeouts, 408, 429 and 5xx are retried with
//! exponential backoff: the n-th retry waits a random time between half of
//! `min(retry_initial_s · 2ⁿ, retry_max_s)` and all of it, never less than
//! `retry_initial_s`, or what `Retry-After` (seconds) asks, up to
//! `retry_max_s`. Other answers (a 4xx, a redirect) are permanent failures.
//! An alert not delivered `give_up_after_s` after its first attempt is given
//! up. Permanent failures and give-ups are counted, logged at ERROR with the
//! alert id (it is lost to that receiver) and skipped.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use rdkafka::consumer::{CommitMode, Consumer, StreamConsumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::Message;
use reqwest::StatusCode;
use reqwest::header::{CONTENT_TYPE, HeaderMap, RETRY_AFTER};
use ring::hmac;
use ring::rand::SecureRandom;
use schemas::v1::Alert;
use schemas::v1::alert::Severity as AlertSeverity;
use schemas::{topics, wire};
use serde::{Deserialize, Serialize};
use service_kit::kafka::KafkaSettings;
use service_kit::shutdown::Shutdown;

use crate::rows::{evidence_json, rfc3339_utc};

/// Header with the Unix seconds of the attempt.
pub const TIMESTAMP_HEADER: &str = "x-argus-timestamp";
/// Header with `sha256=<hex HMAC-SHA256(secret, "<timestamp>.<body>")>`.
pub const SIGNATURE_HEADER: &str = "x-argus-signature";
/// Header with `<alert_id>:<raised|closed>`, the receiver's idempotency key.
pub const DELIVERY_HEADER: &str = "x-argus-delivery";
/// `User-Agent` of every request.
pub const USER_AGENT: &str = "argus-aggregator";
/// Prefix of the environment variable that overrides a webhook's secret.
pub const SECRET_ENV_PREFIX: &str = "ARGUS_WEBHOOK_SECRET_";

/// Longest `give_up_after_s`: a webhook waits on one alert without reading
/// Kafka, and Kafka's `max.poll.interval.ms` (which must outlast that wait,
/// or the consumer is dropped from its group) is at most 24 hours.
const MAX_GIVE_UP_AFTER_S: f64 = 22.0 * 3600.0;
/// Longest `timeout_s` and `retry_max_s`: an hour.
const MAX_WAIT_S: f64 = 3600.0;
/// Librdkafka's upper bound for `max.poll.interval.ms`.
const MAX_POLL_INTERVAL_MS: f64 = 86_400_000.0;
/// Kafka's default `max.poll.interval.ms`; webhooks never use less.
const MIN_POLL_INTERVAL_MS: f64 = 300_000.0;

/// An alert's importance, lowest first; `min_severity` of a webhook.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// Everything (alerts without a severity count as info).
    #[default]
    Info,
    /// Warnings and critical alerts.
    Warning,
    /// Critical alerts only.
    Critical,
}

impl Severity {
    /// The severity of `alert`; unspecified counts as [`Severity::Info`].
    fn of(alert: &Alert) -> Severity {
        match alert.severity() {
            AlertSeverity::Unspecified | AlertSeverity::Info => Severity::Info,
            AlertSeverity::Warning => Severity::Warning,
            AlertSeverity::Critical => Severity::Critical,
        }
    }
}

/// One `[[webhooks]]` entry: where alerts go, which ones, and how hard to try.
#[derive(Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookSettings {
    /// Unique name, in logs, in the consumer group
    /// (`<group_id>-webhook-<name>`) and in the secret's environment
    /// variable: letters, digits, `-`, `_` and `.`.
    pub name: String,
    /// Where alerts are POSTed: an `http://` or `https://` URL. Redirects are
    /// not followed (they count as a permanent failure).
    pub url: String,
    /// Key of the HMAC-SHA256 in `X-Argus-Signature`; required. Environment
    /// override: `ARGUS_WEBHOOK_SECRET_<NAME>`, the name upper-cased with
    /// every character but letters and digits as `_`.
    #[serde(default)]
    pub secret: String,
    /// Alerts below this severity are not sent: `info` (default, all),
    /// `warning` or `critical`.
    #[serde(default)]
    pub min_severity: Severity,
    /// Names of the rules whose alerts are sent; empty (default) sends every rule's.
    #[serde(default)]
    pub rules: Vec<String>,
    /// Whether closing events (`"closed": true`) are sent too. Default true.
    #[serde(default = "default_include_closed")]
    pub include_closed: bool,
    /// Seconds one request may take, connecting included, before it is
    /// retried. Default 5.
    #[serde(default = "default_timeout_s")]
    pub timeout_s: f64,
    /// Seconds before the first retry, and the least any retry waits. Default 0.5.
    #[serde(default = "default_retry_initial_s")]
    pub retry_initial_s: f64,
    /// Most seconds between two attempts, `Retry-After` included. Default 60.
    #[serde(default = "default_retry_max_s")]
    pub retry_max_s: f64,
    /// Seconds after an alert's first attempt when it is given up (counted,
    /// logged with its id, skipped) so later alerts go out. Default 3600,
    /// at most 79200 (22 hours).
    #[serde(default = "default_give_up_after_s")]
    pub give_up_after_s: f64,
    /// Where a new webhook (its consumer group has no committed offset yet)
    /// starts: false (default) at the next alert, so adding a webhook does
    /// not flood it with history; true at the oldest alert Kafka keeps.
    /// Afterwards it always resumes where it stopped.
    #[serde(default)]
    pub from_oldest: bool,
}

/// Closing events tell a receiver an alert is over (resolve the page).
const fn default_include_closed() -> bool {
    true
}
/// Receivers should accept at once and work later; 5 s spares a slow one.
const fn default_timeout_s() -> f64 {
    5.0
}
/// A receiver that dropped one request is usually back within a second.
const fn default_retry_initial_s() -> f64 {
    0.5
}
/// A receiver back from an outage gets its alerts within a minute.
const fn default_retry_max_s() -> f64 {
    60.0
}
/// An alert an hour old has lost most of its use, and the next ones wait.
const fn default_give_up_after_s() -> f64 {
    3600.0
}

impl fmt::Debug for WebhookSettings {
    /// Like a derived `Debug`, but never prints the secret or the URL's path.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WebhookSettings")
            .field("name", &self.name)
            .field("url", &redacted_url(&self.url))
            .field("secret", &"<redacted>")
            .field("min_severity", &self.min_severity)
            .field("rules", &self.rules)
            .field("include_closed", &self.include_closed)
            .field("timeout_s", &self.timeout_s)
            .field("retry_initial_s", &self.retry_initial_s)
            .field("retry_max_s", &self.retry_max_s)
            .field("give_up_after_s", &self.give_up_after_s)
            .field("from_oldest", &self.from_oldest)
            .finish()
    }
}

impl WebhookSettings {
    /// A webhook for every alert with the default timeout and retries.
    pub fn new(name: impl Into<String>, url: impl Into<String>, secret: impl Into<String>) -> Self {
        WebhookSettings {
            name: name.into(),
            url: url.into(),
            secret: secret.into(),
            min_severity: Severity::default(),
            rules: Vec::new(),
            include_closed: default_include_closed(),
            timeout_s: default_timeout_s(),
            retry_initial_s: default_retry_initial_s(),
            retry_max_s: default_retry_max_s(),
            give_up_after_s: default_give_up_after_s(),
            from_oldest: false,
        }
    }

    /// The environment variable that overrides the secret:
    /// `ARGUS_WEBHOOK_SECRET_` and the name, upper-cased, every character but
    /// ASCII letters and digits as `_`.
    pub fn secret_env(&self) -> String {
        let name: String = self
            .name
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() {
                    c.to_ascii_uppercase()
                } else {
                    '_'
                }
            })
            .collect();
        format!("{SECRET_ENV_PREFIX}{name}")
    }

    /// Takes the secret from [`Self::secret_env`] when `lookup` (the
    /// environment, in `AggregatorConfig::load`) has a non-empty value.
    pub fn apply_env(&mut self, lookup: impl Fn(&str) -> Option<String>) {
        if let Some(secret) = lookup(&self.secret_env()).filter(|s| !s.is_empty()) {
            self.secret = secret;
        }
    }

    /// Every problem with these settings, each naming its field; empty when
    /// they are usable.
    pub fn validate(&self) -> Vec<String> {
        let mut problems = Vec::new();
        if self.name.is_empty()
            || self.name.len() > 64
            || !self
                .name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        {
            problems.push(format!(
                "name {:?} must be 1 to 64 letters, digits, '-', '_' or '.'",
                self.name
            ));
        }
        match url::Url::parse(&self.url) {
            Ok(url) if !matches!(url.scheme(), "http" | "https") => problems.push(format!(
                "url {:?} must start with http:// or https://",
                self.url
            )),
            Ok(url) if url.host_str().is_none_or(str::is_empty) => {
                problems.push(format!("url {:?} has no host", self.url));
            }
            Ok(_) => {}
            Err(error) => problems.push(format!("url {:?} is not a URL: {error}", self.url)),
        }
        if self.secret.is_empty() {
            problems.push(format!(
                "secret is empty: set it, or {}, to the key receivers check signatures with",
                self.secret_env()
            ));
        }
        if self.rules.iter().any(|r| r.trim().is_empty()) {
            problems.push("rules has an empty name".into());
        }
        let seconds = |v: f64, max: f64| v.is_finite() && v > 0.0 && v <= max;
        let fields = [
            ("timeout_s", self.timeout_s, MAX_WAIT_S),
            ("retry_initial_s", self.retry_initial_s, MAX_WAIT_S),
            ("retry_max_s", self.retry_max_s, MAX_WAIT_S),
            ("give_up_after_s", self.give_up_after_s, MAX_GIVE_UP_AFTER_S),
        ];
        for (field, value, max) in fields {
            if !seconds(value, max) {
                problems.push(format!(
                    "{field} must be a number of seconds > 0 and at most {max}, not {value}"
                ));
            }
        }
        if self.retry_initial_s > self.retry_max_s {
            problems.push(format!(
                "retry_initial_s ({}) must not exceed retry_max_s ({})",
                self.retry_initial_s, self.retry_max_s
            ));
        }
        problems
    }

    /// Whether this webhook wants `alert`.
    fn selects(&self, alert: &Alert) -> bool {
        Severity::of(alert) >= self.min_severity
            && (self.include_closed || !alert.closed)
            && (self.rules.is_empty() || self.rules.contains(&alert.rule))
    }

    fn backoff(&self) -> Backoff {
        Backoff {
            initial_s: self.retry_initial_s,
            max_s: self.retry_max_s,
        }
    }

    /// `max.poll.interval.ms` for this webhook's consumer: longer than the
    /// longest wait on one alert (give-up time, a last request, a margin).
    fn max_poll_interval_ms(&self) -> u64 {
        let ms = (self.give_up_after_s + self.timeout_s + 60.0) * 1000.0;
        ms.clamp(MIN_POLL_INTERVAL_MS, MAX_POLL_INTERVAL_MS) as u64
    }
}

/// Totals of one webhook.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct WebhookStats {
    /// The webhook's name.
    pub name: String,
    /// Alerts delivered (answered 2xx).
    pub delivered: u64,
    /// Attempts that failed and were tried again.
    pub retried: u64,
    /// Alerts refused for good (4xx other than 408 and 429, redirects), skipped.
    pub failed_permanent: u64,
    /// Alerts still undelivered after `give_up_after_s`, skipped.
    pub gave_up: u64,
    /// Alerts this webhook does not select (severity, rule, closing events).
    pub filtered: u64,
    /// Messages that could not be decoded, skipped.
    pub malformed: u64,
}

/// Live counters of every webhook; clones share them.
#[derive(Debug, Clone, Default)]
pub struct WebhookCounters(Arc<Mutex<BTreeMap<String, WebhookStats>>>);

impl WebhookCounters {
    /// The counters of webhook `name` now (zeros if it has none yet).
    pub fn get(&self, name: &str) -> WebhookStats {
        let all = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        all.get(name).cloned().unwrap_or_else(|| WebhookStats {
            name: name.into(),
            ..WebhookStats::default()
        })
    }

    /// The counters of every webhook, by name.
    pub fn all(&self) -> Vec<WebhookStats> {
        let all = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        all.values().cloned().collect()
    }

    fn update(&self, name: &str, change: impl FnOnce(&mut WebhookStats)) {
        // Plain integer updates cannot be left half-done by a panic, so a
        // poisoned lock is still usable.
        let mut all = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        let stats = all.entry(name.to_string()).or_insert_with(|| WebhookStats {
            name: name.into(),
            ..WebhookStats::default()
        });
        change(stats);
    }
}

/// A webhook could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum WebhookError {
    /// The settings do not validate (see [`WebhookSettings::validate`]).
    #[error("webhook {webhook:?}: {}", .problems.join("; "))]
    Invalid {
        /// The webhook's name.
        webhook: String,
        /// Every problem found.
        problems: Vec<String>,
    },
    /// Kafka refused the webhook's consumer.
    #[error("webhook {webhook:?}: Kafka: {source}")]
    Kafka {
        /// The webhook's name.
        webhook: String,
        /// What Kafka reported.
        source: KafkaError,
    },
    /// The HTTP client could not be built (for https: no root certificates).
    #[error("webhook {webhook:?}: HTTP client: {source}")]
    Client {
        /// The webhook's name.
        webhook: String,
        /// What reqwest reported.
        source: reqwest::Error,
    },
}

/// The configured webhooks, each with its consumer and HTTP client, ready to run.
pub struct Webhooks {
    deliveries: Vec<Delivery>,
    counters: WebhookCounters,
}

impl fmt::Debug for Webhooks {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names: Vec<&str> = self
            .deliveries
            .iter()
            .map(|d| d.settings.name.as_str())
            .collect();
        f.debug_struct("Webhooks").field("names", &names).finish()
    }
}

impl Webhooks {
    /// Checks each webhook's settings and creates its consumer (group
    /// `<group_id>-webhook-<name>`, subscribed to the alerts topic) and HTTP
    /// client.
    pub fn new(
        settings: &[WebhookSettings],
        kafka: &KafkaSettings,
        group_id: &str,
    ) -> Result<Self, WebhookError> {
        let deliveries = settings
            .iter()
            .map(|s| Delivery::new(s.clone(), kafka, group_id))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Webhooks {
            deliveries,
            counters: WebhookCounters::default(),
        })
    }

    /// True when no webhook is configured.
    pub fn is_empty(&self) -> bool {
        self.deliveries.is_empty()
    }

    /// The live counters, to watch while [`Self::run`] runs.
    pub fn counters(&self) -> WebhookCounters {
        self.counters.clone()
    }

    /// Delivers alerts, every webhook on its own task, until `shutdown`;
    /// requests in flight finish first. Returns every webhook's totals.
    pub async fn run(self, shutdown: Shutdown) -> Vec<WebhookStats> {
        let mut tasks = tokio::task::JoinSet::new();
        for delivery in self.deliveries {
            let (counters, shutdown) = (self.counters.clone(), shutdown.clone());
            tasks.spawn(delivery.run(counters, shutdown));
        }
        while let Some(done) = tasks.join_next().await {
            if let Err(error) = done {
                tracing::error!(%error, "Webhook task failed; its alerts wait in Kafka");
            }
        }
        self.counters.all()
    }
}

/// One webhook: its settings, consumer and client.
struct Delivery {
    settings: WebhookSettings,
    key: hmac::Key,
    client: reqwest::Client,
    consumer: StreamConsumer,
    group: String,
}

/// How one alert ended for a webhook.
enum Outcome {
    /// Delivered, refused or given up: its offset may be stored.
    Done,
    /// Shutdown came while it waited to retry: read again on next start.
    Stopped,
}

/// The answer to one attempt.
enum Answer {
    Delivered(StatusCode),
    Refused(Failure),
    Retry(Failure, Option<Duration>),
}

/// Why an attempt failed.
#[derive(Debug)]
enum Failure {
    Status(StatusCode),
    Request(String),
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Failure::Status(status) => write!(f, "HTTP {status}"),
            Failure::Request(error) => f.write_str(error),
        }
    }
}

/// What happened, logged and counted in one place.
enum Event<'a> {
    Delivered {
        alert_id: &'a str,
        status: StatusCode,
        attempts: u32,
    },
    Retrying {
        alert_id: &'a str,
        failure: &'a Failure,
        attempt: u32,
        delay: Duration,
    },
    Refused {
        alert_id: &'a str,
        failure: &'a Failure,
        attempt: u32,
    },
    GaveUp {
        alert_id: &'a str,
        failure: &'a Failure,
        attempts: u32,
    },
    Filtered,
    Malformed {
        offset: i64,
        error: &'a wire::DecodeError,
    },
}

impl Delivery {
    fn new(
        settings: WebhookSettings,
        kafka: &KafkaSettings,
        group_id: &str,
    ) -> Result<Self, WebhookError> {
        let name = settings.name.clone();
        let problems = settings.validate();
        if !problems.is_empty() {
            return Err(WebhookError::Invalid {
                webhook: name,
                problems,
            });
        }
        let group = format!("{group_id}-webhook-{name}");
        let mut kafka = kafka.clone();
        kafka
            .properties
            .entry("max.poll.interval.ms".into())
            .or_insert_with(|| settings.max_poll_interval_ms().to_string());
        let start = if settings.from_oldest {
            "earliest"
        } else {
            "latest"
        };
        // An explicit kafka.properties setting wins.
        kafka
            .properties
            .entry("auto.offset.reset".into())
            .or_insert_with(|| start.into());
        let consumer = kafka
            .consumer(
                &format!("argus-aggregator-webhook-{name}"),
                &group,
                &[topics::ALERTS],
            )
            .map_err(|source| WebhookError::Kafka {
                webhook: name.clone(),
                source,
            })?;
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs_f64(settings.timeout_s))
            .user_agent(USER_AGENT)
            .redirect(reqwest::redirect::Policy::none())
            // Plain http needs no root certificates (minimal containers lack them).
            .tls_built_in_native_certs(
                url::Url::parse(&settings.url).is_ok_and(|url| url.scheme() == "https"),
            )
            .build()
            .map_err(|source| WebhookError::Client {
                webhook: name,
                source,
            })?;
        Ok(Delivery {
            key: hmac::Key::new(hmac::HMAC_SHA256, settings.secret.as_bytes()),
            settings,
            client,
            consumer,
            group,
        })
    }

    /// Reads alerts and delivers the selected ones until `shutdown`.
    async fn run(self, counters: WebhookCounters, mut shutdown: Shutdown) {
        let name = self.settings.name.as_str();
        counters.update(name, |_| {});
        tracing::info!(webhook = name, group = %self.group, "Delivering alerts to webhook");
        loop {
            let message = tokio::select! {
                biased;
                () = shutdown.wait() => break,
                message = self.consumer.recv() => message,
            };
            let message = match message {
                Ok(message) => message,
                Err(error) => {
                    tracing::warn!(webhook = name, %error, "Reading alerts failed; retrying");
                    tokio::select! {
                        () = shutdown.wait() => break,
                        () = tokio::time::sleep(Duration::from_secs(1)) => continue,
                    }
                }
            };
            let (topic, partition, offset) = (
                message.topic().to_string(),
                message.partition(),
                message.offset(),
            );
            let decoded = wire::decode::<Alert>(message.payload().unwrap_or_default());
            drop(message);
            match decoded {
                Err(error) => self.emit(
                    &counters,
                    Event::Malformed {
                        offset,
                        error: &error,
                    },
                ),
                Ok(alert) if !self.settings.selects(&alert) => {
                    self.emit(&counters, Event::Filtered);
                }
                Ok(alert) => {
                    if let Outcome::Stopped = self.deliver(&alert, &counters, &mut shutdown).await {
                        tracing::info!(
                            webhook = name,
                            alert_id = %alert.alert_id,
                            "Stopping before the alert was delivered; it is sent on next start"
                        );
                        break;
                    }
                }
            }
            if let Err(error) = self.consumer.store_offset(&topic, partition, offset) {
                tracing::warn!(
                    webhook = name,
                    %error,
                    partition,
                    offset,
                    "Could not store the offset; the alert may be sent again after a restart"
                );
            }
        }
        match self.consumer.commit_consumer_state(CommitMode::Sync) {
            Ok(()) | Err(KafkaError::ConsumerCommit(RDKafkaErrorCode::NoOffset)) => {}
            Err(error) => tracing::warn!(
                webhook = name,
                %error,
                "Final offset commit failed; recent alerts may be sent again on next start"
            ),
        }
        let stats = counters.get(name);
        tracing::info!(
            webhook = name,
            delivered = stats.delivered,
            retried = stats.retried,
            failed_permanent = stats.failed_permanent,
            gave_up = stats.gave_up,
            filtered = stats.filtered,
            malformed = stats.malformed,
            "Webhook stopped"
        );
    }

    /// Posts `alert` until it is delivered, refused or given up, waiting
    /// between attempts; only that wait is cut short by `shutdown`.
    async fn deliver(
        &self,
        alert: &Alert,
        counters: &WebhookCounters,
        shutdown: &mut Shutdown,
    ) -> Outcome {
        let body = alert_json(alert);
        let delivery = delivery_id(alert);
        let alert_id = alert.alert_id.as_str();
        let give_up_after = Duration::from_secs_f64(self.settings.give_up_after_s);
        let retry_max = Duration::from_secs_f64(self.settings.retry_max_s);
        let backoff = self.settings.backoff();
        let started = Instant::now();
        let mut attempt = 0u32;
        loop {
            attempt = attempt.saturating_add(1);
            let (failure, retry_after) = match self.post(&body, &delivery).await {
                Answer::Delivered(status) => {
                    let event = Event::Delivered {
                        alert_id,
                        status,
                        attempts: attempt,
                    };
                    self.emit(counters, event);
                    return Outcome::Done;
                }
                Answer::Refused(failure) => {
                    let event = Event::Refused {
                        alert_id,
                        failure: &failure,
                        attempt,
                    };
                    self.emit(counters, event);
                    return Outcome::Done;
                }
                Answer::Retry(failure, retry_after) => (failure, retry_after),
            };
            let elapsed = started.elapsed();
            if elapsed >= give_up_after {
                let event = Event::GaveUp {
                    alert_id,
                    failure: &failure,
                    attempts: attempt,
                };
                self.emit(counters, event);
                return Outcome::Done;
            }
            let delay = match retry_after {
                Some(asked) => asked.min(retry_max),
                None => backoff.delay(attempt - 1, unit_random()),
            }
            .min(give_up_after - elapsed);
            let event = Event::Retrying {
                alert_id,
                failure: &failure,
                attempt,
                delay,
            };
            self.emit(counters, event);
            tokio::select! {
                biased;
                () = shutdown.wait() => return Outcome::Stopped,
                () = tokio::time::sleep(delay) => {}
            }
        }
    }

    /// One signed POST of `body`.
    async fn post(&self, body: &[u8], delivery: &str) -> Answer {
        let timestamp = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        let request = self
            .client
            .post(&self.settings.url)
            .header(CONTENT_TYPE, "application/json")
            .header(TIMESTAMP_HEADER, timestamp.to_string())
            .header(SIGNATURE_HEADER, signature(&self.key, timestamp, body))
            .header(DELIVERY_HEADER, delivery)
            .body(body.to_vec());
        match request.send().await {
            Ok(response) => {
                let status = response.status();
                match classify(status) {
                    Class::Delivered => Answer::Delivered(status),
                    Class::Retry => {
                        Answer::Retry(Failure::Status(status), retry_after(response.headers()))
                    }
                    Class::Refused => Answer::Refused(Failure::Status(status)),
                }
            }
            // A request that cannot be built (a header value that is not
            // valid in HTTP) fails the same way every time.
            Err(error) if error.is_builder() => {
                Answer::Refused(Failure::Request(describe(&error, self.settings.timeout_s)))
            }
            Err(error) => Answer::Retry(
                Failure::Request(describe(&error, self.settings.timeout_s)),
                None,
            ),
        }
    }

    /// Logs and counts `event` together.
    fn emit(&self, counters: &WebhookCounters, event: Event<'_>) {
        let webhook = self.settings.name.as_str();
        match event {
            Event::Delivered {
                alert_id,
                status,
                attempts,
            } => {
                counters.update(webhook, |s| s.delivered += 1);
                tracing::info!(
                    webhook,
                    alert_id,
                    status = status.as_u16(),
                    attempts,
                    "Delivered alert"
                );
            }
            Event::Retrying {
                alert_id,
                failure,
                attempt,
                delay,
            } => {
                counters.update(webhook, |s| s.retried += 1);
                tracing::warn!(
                    webhook,
                    alert_id,
                    error = %failure,
                    attempt,
                    retry_in_s = delay.as_secs_f64(),
                    "Alert delivery failed; retrying"
                );
            }
            Event::Refused {
                alert_id,
                failure,
                attempt,
            } => {
                counters.update(webhook, |s| s.failed_permanent += 1);
                tracing::error!(
                    webhook,
                    alert_id,
                    error = %failure,
                    attempt,
                    "Webhook refused the alert; skipped"
                );
            }
            Event::GaveUp {
                alert_id,
                failure,
                attempts,
            } => {
                counters.update(webhook, |s| s.gave_up += 1);
                tracing::error!(
                    webhook,
                    alert_id,
                    error = %failure,
                    attempts,
                    give_up_after_s = self.settings.give_up_after_s,
                    "Gave up delivering the alert; skipped"
                );
            }
            Event::Filtered => counters.update(webhook, |s| s.filtered += 1),
            Event::Malformed { offset, error } => {
                counters.update(webhook, |s| s.malformed += 1);
                tracing::warn!(webhook, offset, %error, "Skipping undecodable alert");
            }
        }
    }
}

/// What an HTTP status means for a delivery.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Class {
    Delivered,
    Retry,
    Refused,
}

/// 2xx delivered; 408, 429 and 5xx worth retrying; anything else refused.
fn classify(status: StatusCode) -> Class {
    if status.is_success() {
        Class::Delivered
    } else if status.is_server_error()
        || status == StatusCode::REQUEST_TIMEOUT
        || status == StatusCode::TOO_MANY_REQUESTS
    {
        Class::Retry
    } else {
        Class::Refused
    }
}

/// `Retry-After` in seconds (the HTTP-date form is ignored: backoff applies).
fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let seconds: u64 = headers
        .get(RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim()
        .parse()
        .ok()?;
    Some(Duration::from_secs(seconds))
}

/// A request error with its causes, without the URL (it may hold a token).
fn describe(error: &reqwest::Error, timeout_s: f64) -> String {
    if error.is_timeout() {
        return format!("no answer within {timeout_s} s");
    }
    let mut text = error.to_string();
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    // reqwest names the URL ("... for url (https://...)").
    if let Some(url) = error.url() {
        text = text.replace(url.as_str(), &redacted_url(url.as_str()));
    }
    text
}

/// Scheme, host and port of a URL, for logs: paths and queries of webhook
/// URLs often carry tokens.
fn redacted_url(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(parsed) => {
            let port = parsed.port().map(|p| format!(":{p}")).unwrap_or_default();
            format!(
                "{}://{}{port}/<redacted>",
                parsed.scheme(),
                parsed.host_str().unwrap_or_default()
            )
        }
        Err(_) => "<redacted url>".into(),
    }
}

/// Waits between attempts: exponential, with jitter over the upper half.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Backoff {
    initial_s: f64,
    max_s: f64,
}

impl Backoff {
    /// The longest wait before retry `retry` (0 for the first):
    /// `initial · 2^retry`, at most `max`.
    fn ceiling_s(&self, retry: u32) -> f64 {
        let doubled = self.initial_s * 2f64.powi(retry.min(64) as i32);
        doubled.min(self.max_s)
    }

    /// The wait before retry `retry` for a uniform `unit` in [0, 1]: between
    /// half the ceiling and the ceiling, never below `initial`. Half the
    /// ceiling as the floor makes waits grow with every retry until they
    /// reach `max` (then they stay between `max / 2` and `max`), while still
    /// spreading the retries of webhooks that failed together.
    fn delay(&self, retry: u32, unit: f64) -> Duration {
        let ceiling = self.ceiling_s(retry);
        let floor = (ceiling / 2.0).max(self.initial_s).min(ceiling);
        Duration::from_secs_f64(floor + unit.clamp(0.0, 1.0) * (ceiling - floor))
    }
}

/// A uniform number in [0, 1) from the system's random source.
fn unit_random() -> f64 {
    let mut bytes = [0u8; 8];
    // Without a random source, waits lose their jitter but stay bounded.
    if ring::rand::SystemRandom::new().fill(&mut bytes).is_err() {
        return 0.5;
    }
    (u64::from_le_bytes(bytes) >> 11) as f64 / (1u64 << 53) as f64
}

/// The JSON body of an alert.
#[derive(Serialize)]
struct AlertJson<'a> {
    alert_id: &'a str,
    rule: &'a str,
    severity: &'static str,
    camera_id: &'a str,
    person_ids: &'a [u64],
    ts: String,
    ts_us: i64,
    message: &'a str,
    closed: bool,
    /// Capture time of the triggering frame (RFC 3339), when known.
    trigger_ts: Option<String>,
    /// What the alert is based on (see `rows::evidence_json`).
    evidence: Option<serde_json::Value>,
}

/// `alert` as the request body.
fn alert_json(alert: &Alert) -> Vec<u8> {
    let body = AlertJson {
        alert_id: &alert.alert_id,
        rule: &alert.rule,
        severity: match alert.severity() {
            AlertSeverity::Unspecified => "unspecified",
            AlertSeverity::Info => "info",
            AlertSeverity::Warning => "warning",
            AlertSeverity::Critical => "critical",
        },
        camera_id: &alert.camera_id,
        person_ids: &alert.person_ids,
        ts: rfc3339_utc(alert.ts_us),
        ts_us: alert.ts_us,
        message: &alert.message,
        closed: alert.closed,
        trigger_ts: (alert.trigger_ts_us != 0).then(|| rfc3339_utc(alert.trigger_ts_us)),
        evidence: alert.evidence.as_ref().map(evidence_json),
    };
    // Strings, numbers, bools and JSON values: serialising cannot fail.
    serde_json::to_vec(&body).unwrap()
}

/// `X-Argus-Delivery`: the alert id and which event of it this is.
fn delivery_id(alert: &Alert) -> String {
    let event = if alert.closed { "closed" } else { "raised" };
    format!("{}:{event}", alert.alert_id)
}

/// `sha256=` and the lowercase hex HMAC-SHA256 of `<timestamp>.<body>`.
fn signature(key: &hmac::Key, timestamp: u64, body: &[u8]) -> String {
    let mut context = hmac::Context::with_key(key);
    context.update(timestamp.to_string().as_bytes());
    context.update(b".");
    context.update(body);
    format!("sha256={}", hex(context.sign().as_ref()))
}

fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for byte in bytes {
        out.push(char::from(DIGITS[usize::from(byte >> 4)]));
        out.push(char::from(DIGITS[usize::from(byte & 0xf)]));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn alert(rule: &str, severity: AlertSeverity, closed: bool) -> Alert {
        Alert {
            schema_version: 1,
            alert_id: format!("{rule}:cam-1:42:1700000000000000"),
            rule: rule.into(),
            severity: severity as i32,
            camera_id: "cam-1".into(),
            person_ids: vec![42, 7],
            ts_us: 1_700_000_000_123_456,
            message: "Person 42 loitered \"5 min\"".into(),
            closed,
            ..Alert::default()
        }
    }

    #[test]
    fn logged_urls_keep_only_scheme_host_and_port() {
        assert_eq!(
            redacted_url("https://hooks.example.com/services/T0/B0/s3cret?x=1"),
            "https://hooks.example.com/<redacted>"
        );
        assert_eq!(
            redacted_url("http://127.0.0.1:9000/hook"),
            "http://127.0.0.1:9000/<redacted>"
        );
        assert_eq!(redacted_url("not a url"), "<redacted url>");
    }

    #[test]
    fn signatures_match_reference_hmacs() {
        // RFC 4231-style reference value (Wikipedia's HMAC-SHA256 example).
        let key = hmac::Key::new(hmac::HMAC_SHA256, b"key");
        let tag = hmac::sign(&key, b"The quick brown fox jumps over the lazy dog");
        assert_eq!(
            hex(tag.as_ref()),
            "f7bc83f430538424b13298e6aa6fb143ef4d59a14946175997479dbc2d1a3cd8"
        );
        // Python: hmac.new(b"s3cret", b'1700000000.{"alert_id":"a"}', sha256).hexdigest()
        let key = hmac::Key::new(hmac::HMAC_SHA256, b"s3cret");
        assert_eq!(
            signature(&key, 1_700_000_000, br#"{"alert_id":"a"}"#),
            "sha256=a4562b125292a25da786ab2f0f861130208826e56de0bed4a09ff77669a0f447"
        );
        assert_eq!(hex(&[0x00, 0x0f, 0xa0, 0xff]), "000fa0ff");
    }

    #[test]
    fn the_body_has_every_field_with_lowercase_severity_and_rfc3339_time() {
        let body = alert_json(&alert("loitering", AlertSeverity::Warning, false));
        let json: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(
            json,
            serde_json::json!({
                "alert_id": "loitering:cam-1:42:1700000000000000",
                "rule": "loitering",
                "severity": "warning",
                "camera_id": "cam-1",
                "person_ids": [42, 7],
                "ts": "2023-11-14T22:13:20.123456Z",
                "ts_us": 1_700_000_000_123_456i64,
                "message": "Person 42 loitered \"5 min\"",
                "closed": false,
                "trigger_ts": null,
                "evidence": null,
            })
        );
        let mut with_evidence = alert("loitering", AlertSeverity::Warning, false);
        with_evidence.trigger_ts_us = 1_700_000_000_100_000;
        with_evidence.evidence = Some(schemas::v1::AlertEvidence {
            first_seen_ts_us: 1_699_999_970_000_000,
            dwell_s: 30.5,
            ..Default::default()
        });
        let json: serde_json::Value = serde_json::from_slice(&alert_json(&with_evidence)).unwrap();
        assert_eq!(json["trigger_ts"], "2023-11-14T22:13:20.100000Z");
        assert_eq!(
            json["evidence"]["first_seen"],
            "2023-11-14T22:12:50.000000Z"
        );
        assert_eq!(json["evidence"]["dwell_s"], 30.5);
        assert_eq!(json["evidence"]["previous_camera"], serde_json::Value::Null);
        let text = String::from_utf8(body).unwrap();
        assert!(text.starts_with(r#"{"alert_id":"#), "field order: {text}");
        let closed = alert("x", AlertSeverity::Unspecified, true);
        let json: serde_json::Value = serde_json::from_slice(&alert_json(&closed)).unwrap();
        assert_eq!(json["severity"], "unspecified");
        assert_eq!(delivery_id(&closed), "x:cam-1:42:1700000000000000:closed");
        assert_eq!(
            delivery_id(&alert("x", AlertSeverity::Info, false)),
            "x:cam-1:42:1700000000000000:raised"
        );
    }

    #[test]
    fn rfc3339_times_of_known_instants() {
        assert_eq!(rfc3339_utc(0), "1970-01-01T00:00:00.000000Z");
        assert_eq!(rfc3339_utc(-1), "1969-12-31T23:59:59.999999Z");
        assert_eq!(
            rfc3339_utc(951_782_400_000_001),
            "2000-02-29T00:00:00.000001Z"
        );
        assert_eq!(
            rfc3339_utc(1_767_225_599_500_000),
            "2025-12-31T23:59:59.500000Z"
        );
    }

    #[test]
    fn the_filter_applies_severity_rules_and_closing_events() {
        let mut hook = WebhookSettings::new("ops", "http://h/", "s");
        let info = alert("loitering", AlertSeverity::Info, false);
        let warning = alert("loitering", AlertSeverity::Warning, false);
        let critical_closed = alert("restricted", AlertSeverity::Critical, true);
        let unspecified = alert("running", AlertSeverity::Unspecified, false);
        assert!(hook.selects(&info) && hook.selects(&critical_closed));
        assert!(hook.selects(&unspecified), "unspecified counts as info");
        hook.min_severity = Severity::Warning;
        assert!(!hook.selects(&info) && !hook.selects(&unspecified));
        assert!(hook.selects(&warning) && hook.selects(&critical_closed));
        hook.include_closed = false;
        assert!(!hook.selects(&critical_closed));
        hook.include_closed = true;
        hook.rules = vec!["restricted".into()];
        assert!(!hook.selects(&warning) && hook.selects(&critical_closed));
        hook.min_severity = Severity::Critical;
        assert!(hook.selects(&critical_closed));
    }

    #[test]
    fn backoff_doubles_up_to_the_maximum_with_jitter_in_the_upper_half() {
        let backoff = Backoff {
            initial_s: 0.5,
            max_s: 60.0,
        };
        let ceilings: Vec<f64> = (0..10).map(|n| backoff.ceiling_s(n)).collect();
        assert_eq!(
            ceilings,
            [0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 60.0, 60.0, 60.0]
        );
        assert_eq!(backoff.ceiling_s(u32::MAX), 60.0, "no overflow");
        // The first retry waits exactly retry_initial_s.
        assert_eq!(backoff.delay(0, 0.0), Duration::from_millis(500));
        assert_eq!(backoff.delay(0, 1.0), Duration::from_millis(500));
        for retry in 1..12 {
            let ceiling = backoff.ceiling_s(retry);
            let low = backoff.delay(retry, 0.0).as_secs_f64();
            let high = backoff.delay(retry, 1.0).as_secs_f64();
            assert!((low - ceiling / 2.0).abs() < 1e-9, "retry {retry}: {low}");
            assert!((high - ceiling).abs() < 1e-9, "retry {retry}: {high}");
            // Below the cap, any draw of a later retry waits at least as
            // long as any draw of an earlier one.
            if backoff.ceiling_s(retry + 1) < backoff.max_s {
                assert!(backoff.delay(retry + 1, 0.0) >= backoff.delay(retry, 1.0));
            }
        }
        let flat = Backoff {
            initial_s: 2.0,
            max_s: 2.0,
        };
        assert_eq!(flat.delay(5, 0.3), Duration::from_secs(2));
        for _ in 0..100 {
            let unit = unit_random();
            assert!((0.0..1.0).contains(&unit), "{unit}");
        }
    }

    #[test]
    fn statuses_are_delivered_retried_or_refused() {
        let class = |code: u16| classify(StatusCode::from_u16(code).unwrap());
        for code in [200, 201, 202, 204] {
            assert_eq!(class(code), Class::Delivered, "{code}");
        }
        for code in [408, 429, 500, 502, 503, 504] {
            assert_eq!(class(code), Class::Retry, "{code}");
        }
        for code in [301, 302, 400, 401, 403, 404, 410, 413, 422] {
            assert_eq!(class(code), Class::Refused, "{code}");
        }
        let mut headers = HeaderMap::new();
        assert_eq!(retry_after(&headers), None);
        headers.insert(RETRY_AFTER, " 7 ".parse().unwrap());
        assert_eq!(retry_after(&headers), Some(Duration::from_secs(7)));
        headers.insert(
            RETRY_AFTER,
            "Wed, 21 Oct 2015 07:28:00 GMT".parse().unwrap(),
        );
        assert_eq!(retry_after(&headers), None);
    }

    #[test]
    fn secrets_come_from_the_environment_and_stay_out_of_logs() {
        let mut hook = WebhookSettings::new("ops-pager.2", "https://h/", "");
        assert_eq!(hook.secret_env(), "ARGUS_WEBHOOK_SECRET_OPS_PAGER_2");
        assert!(
            hook.validate()
                .iter()
                .any(|p| p.contains("secret is empty"))
        );
        hook.apply_env(|_| Some(String::new()));
        assert_eq!(hook.secret, "", "an empty variable is no override");
        hook.apply_env(|var| (var == "ARGUS_WEBHOOK_SECRET_OPS_PAGER_2").then(|| "hush".into()));
        assert_eq!(hook.secret, "hush");
        assert!(hook.validate().is_empty(), "{:?}", hook.validate());
        assert!(!format!("{hook:?}").contains("hush"));
    }

    #[test]
    fn every_field_problem_is_reported() {
        let mut hook = WebhookSettings::new("bad name", "ftp://h/x", "s");
        hook.rules = vec![" ".into()];
        hook.timeout_s = 0.0;
        hook.retry_initial_s = 10.0;
        hook.retry_max_s = 1.0;
        hook.give_up_after_s = f64::INFINITY;
        let problems = hook.validate().join("\n");
        for needle in [
            "name \"bad name\"",
            "url \"ftp://h/x\" must start with http:// or https://",
            "rules has an empty name",
            "timeout_s must be",
            "retry_initial_s (10) must not exceed retry_max_s (1)",
            "give_up_after_s must be",
        ] {
            assert!(
                problems.contains(needle),
                "{needle} missing from {problems}"
            );
        }
        let relative = WebhookSettings::new("a", "/hook", "s")
            .validate()
            .join("\n");
        assert!(relative.contains("is not a URL"), "{relative}");
    }

    #[test]
    fn the_poll_interval_outlasts_the_longest_wait_on_one_alert() {
        let mut hook = WebhookSettings::new("a", "http://h/", "s");
        assert_eq!(hook.max_poll_interval_ms(), 3_665_000);
        hook.give_up_after_s = 1.0;
        assert_eq!(hook.max_poll_interval_ms(), 300_000);
        hook.give_up_after_s = MAX_GIVE_UP_AFTER_S;
        hook.timeout_s = MAX_WAIT_S;
        assert!(hook.max_poll_interval_ms() <= 86_400_000);
    }
}
