//! The security console: one web page for security staff, served by the
//! aggregator's HTTP API with its assets built into the binary.
//!
//! - `GET /console`: the page (and `/console/app.js`, `/console/app.css`);
//!   no data, so no token. The page asks for the API token and sends it
//!   as `Authorization: Bearer` with every call below.
//! - `GET /console/api/live`: server-sent events: `alert` (raised or
//!   closed), `action` (acknowledged, resolved) and `health` (a camera's
//!   state), as JSON. The page reads the history through `POST /sql`.
//! - `POST /console/api/alerts/{alert_id}/{acknowledge|resolve}` with
//!   `{"actor": "...", "note": "..."}` (`Content-Type: application/json`
//!   only, so no other site's page can post one): the action goes to Kafka
//!   (`argus.alert-actions.v1`, answered once acknowledged), so it is
//!   stored in `alert_actions` exactly once and every open console hears
//!   of it.
//!
//! Live events come from a consumer of its own (a group per process,
//! starting at the newest message, committing nothing) into a bounded
//! broadcast channel. Overflow policy: a page that falls 256 events
//! behind gets a `resync` event and reloads its state through SQL.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::{Path, State};
use axum::http::{StatusCode, header};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use futures::Stream;
use rdkafka::consumer::StreamConsumer;
use rdkafka::message::Message;
use rdkafka::producer::FutureProducer;
use rdkafka::util::Timeout;
use schemas::v1::alert_action::Action;
use schemas::v1::{Alert, AlertAction, CameraHealth};
use schemas::{topics, wire};
use serde::Deserialize;
use serde_json::json;
use service_kit::kafka::{self, KafkaSettings};
use service_kit::shutdown::Shutdown;
use tokio::sync::broadcast;

use crate::rows::{evidence_json, rfc3339_utc};

const INDEX_HTML: &str = include_str!("console/index.html");
const APP_JS: &str = include_str!("console/app.js");
const APP_CSS: &str = include_str!("console/app.css");

/// Live events a page may lag behind before it is told to resync.
const LIVE_CAPACITY: usize = 256;

/// The console could not start.
#[derive(Debug, thiserror::Error)]
pub enum ConsoleError {
    /// The Kafka clients could not be created.
    #[error("Kafka: {0}")]
    Kafka(#[from] rdkafka::error::KafkaError),
}

#[derive(Clone)]
struct ConsoleState {
    live: broadcast::Sender<Arc<str>>,
    producer: FutureProducer,
    shutdown: Shutdown,
}

/// How long an action may wait for Kafka before the page is told it failed.
const ACTION_TIMEOUT: Duration = Duration::from_secs(10);

/// The routes of the page (no token) and of its API (behind `token`).
/// Starts the live consumer task; it and every live stream end on
/// `shutdown` (they keep no state worth saving).
pub fn router(
    kafka: &KafkaSettings,
    token: Option<&str>,
    shutdown: Shutdown,
) -> Result<Router, ConsoleError> {
    let (live, _) = broadcast::channel(LIVE_CAPACITY);
    let group = format!(
        "argus-console-{}-{:x}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_micros())
    );
    let mut settings = kafka.clone();
    for (key, value) in [
        ("auto.offset.reset", "latest"),
        ("enable.auto.commit", "false"),
    ] {
        settings.properties.insert(key.into(), value.into());
    }
    let consumer = settings.consumer(
        "argus-console",
        &group,
        &[topics::ALERTS, topics::ALERT_ACTIONS, topics::CAMERA_HEALTH],
    )?;
    tokio::spawn(forward(consumer, live.clone(), shutdown.clone()));
    // An action Kafka has not taken within ACTION_TIMEOUT fails for good
    // (not retried in the background), so a page told "try again" cannot
    // also have it recorded later.
    let mut actions = kafka.clone();
    actions.properties.insert(
        "message.timeout.ms".into(),
        ACTION_TIMEOUT.as_millis().to_string(),
    );
    let state = ConsoleState {
        live,
        producer: actions.producer("argus-console")?,
        shutdown,
    };
    let api = Router::new()
        .route("/console/api/live", get(live_events))
        .route("/console/api/alerts/{alert_id}/{action}", post(act))
        .with_state(state);
    let page = Router::new()
        .route(
            "/console",
            get(|| asset(INDEX_HTML, "text/html; charset=utf-8")),
        )
        .route(
            "/console/app.js",
            get(|| asset(APP_JS, "text/javascript; charset=utf-8")),
        )
        .route(
            "/console/app.css",
            get(|| asset(APP_CSS, "text/css; charset=utf-8")),
        );
    Ok(page.merge(crate::http::require_token(api, token)))
}

async fn asset(body: &'static str, content_type: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        body,
    )
        .into_response()
}

/// Turns every message of the live consumer into a JSON event for the pages.
async fn forward(
    consumer: StreamConsumer,
    live: broadcast::Sender<Arc<str>>,
    mut shutdown: Shutdown,
) {
    loop {
        let received = tokio::select! {
            () = shutdown.wait() => return,
            received = consumer.recv() => received,
        };
        let message = match received {
            Ok(message) => message,
            Err(error) => {
                tracing::warn!(%error, "Console live consumer error");
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
        };
        let payload = message.payload().unwrap_or_default();
        let event = match message.topic() {
            topics::ALERTS => wire::decode::<Alert>(payload).map(|a| alert_json(&a)),
            topics::ALERT_ACTIONS => wire::decode::<AlertAction>(payload).map(|a| action_json(&a)),
            topics::CAMERA_HEALTH => wire::decode::<CameraHealth>(payload).map(|h| health_json(&h)),
            _ => continue,
        };
        match event {
            // No page listening is fine: nothing to keep.
            Ok(event) => {
                let _ = live.send(Arc::from(event.to_string()));
            }
            Err(error) => {
                tracing::warn!(%error, topic = message.topic(), "Console skips an undecodable message")
            }
        }
    }
}

fn alert_json(a: &Alert) -> serde_json::Value {
    json!({
        "type": "alert",
        "alert_id": a.alert_id,
        "rule": a.rule,
        "severity": a.severity().as_str_name(),
        "camera_id": a.camera_id,
        "person_ids": a.person_ids.iter().map(u64::to_string).collect::<Vec<_>>().join(","),
        "ts": rfc3339_utc(a.ts_us),
        "message": a.message,
        "closed": a.closed,
        "evidence": a.evidence.as_ref().map(evidence_json),
    })
}

fn action_json(a: &AlertAction) -> serde_json::Value {
    json!({
        "type": "action",
        "alert_id": a.alert_id,
        "action": crate::rows::action_name(a.action()),
        "actor": a.actor,
        "note": a.note,
        "ts": rfc3339_utc(a.ts_us),
    })
}

fn health_json(h: &CameraHealth) -> serde_json::Value {
    json!({
        "type": "health",
        "camera_id": h.camera_id,
        "state": h.state().as_str_name(),
        "since": rfc3339_utc(h.since_ts_us),
        "ts": rfc3339_utc(h.ts_us),
    })
}

async fn live_events(
    State(state): State<ConsoleState>,
) -> Sse<impl Stream<Item = Result<Event, Infallible>>> {
    let receiver = state.live.subscribe();
    let events = futures::stream::unfold(
        (receiver, state.shutdown),
        |(mut receiver, mut shutdown)| async move {
            let received = tokio::select! {
                // The stream ends, so a graceful stop need not wait for the page.
                () = shutdown.wait() => return None,
                received = receiver.recv() => received,
            };
            let event = match received {
                Ok(json) => Event::default().data(&*json),
                Err(broadcast::error::RecvError::Lagged(missed)) => {
                    Event::default().event("resync").data(missed.to_string())
                }
                Err(broadcast::error::RecvError::Closed) => return None,
            };
            Some((Ok(event), (receiver, shutdown)))
        },
    );
    // A comment every 15 s keeps proxies from closing an idle stream.
    Sse::new(events).keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
}

/// What the page sends with an action.
#[derive(Debug, Deserialize)]
struct ActionRequest {
    #[serde(default)]
    actor: String,
    #[serde(default)]
    note: String,
}

fn error(status: StatusCode, message: impl std::fmt::Display) -> Response {
    let body = json!({ "error": message.to_string() }).to_string();
    (status, [(header::CONTENT_TYPE, "application/json")], body).into_response()
}

async fn act(
    State(state): State<ConsoleState>,
    Path((alert_id, action)): Path<(String, String)>,
    headers: axum::http::HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    // JSON only: a browser sends that cross-site only after a CORS
    // preflight this service never grants, so another site's page cannot act.
    let json = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    if !json {
        return error(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "send the action as Content-Type: application/json",
        );
    }
    let action = match action.as_str() {
        "acknowledge" => Action::Acknowledged,
        "resolve" => Action::Resolved,
        other => {
            return error(
                StatusCode::NOT_FOUND,
                format!("no action {other:?}; actions: acknowledge, resolve"),
            );
        }
    };
    let request: ActionRequest = match serde_json::from_slice(&body) {
        Ok(request) => request,
        Err(e) => return error(StatusCode::BAD_REQUEST, format!("body: {e}")),
    };
    if alert_id.is_empty() || alert_id.len() > 512 {
        return error(StatusCode::BAD_REQUEST, "alert id must be 1 to 512 bytes");
    }
    let ts_us = service_kit::clock::now_us();
    let mut message = AlertAction {
        schema_version: schemas::SCHEMA_VERSION,
        action_id: String::new(),
        alert_id: alert_id.clone(),
        actor: request.actor.chars().take(128).collect(),
        note: request.note.chars().take(2048).collect(),
        ts_us,
        ..Default::default()
    };
    message.set_action(action);
    message.action_id = format!("{alert_id}:{}:{ts_us}", crate::rows::action_name(action));
    let payload = wire::encode(&message);
    // librdkafka fails the message after ACTION_TIMEOUT; the outer bound
    // only guards against a client that never answers.
    let sent = tokio::time::timeout(
        ACTION_TIMEOUT + Duration::from_secs(5),
        kafka::send(
            &state.producer,
            topics::ALERT_ACTIONS,
            alert_id.as_bytes(),
            &payload,
            Timeout::After(ACTION_TIMEOUT),
        ),
    )
    .await;
    match sent {
        Err(_) => error(
            StatusCode::SERVICE_UNAVAILABLE,
            "Kafka did not answer within 15 s; the action may still be recorded",
        ),
        Ok(Ok(_)) => {
            tracing::info!(alert = %alert_id, action = crate::rows::action_name(action), actor = %message.actor, "Alert action recorded");
            (
                StatusCode::ACCEPTED,
                [(header::CONTENT_TYPE, "application/json")],
                json!({ "action_id": message.action_id }).to_string(),
            )
                .into_response()
        }
        Ok(Err(e)) => error(
            StatusCode::SERVICE_UNAVAILABLE,
            format!("Kafka did not take the action: {e}"),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn alerts_become_page_events() {
        let mut alert = Alert {
            alert_id: "linger:a:7:1".into(),
            rule: "linger".into(),
            camera_id: "a".into(),
            person_ids: vec![7, 9],
            ts_us: 0,
            ..Default::default()
        };
        alert.set_severity(schemas::v1::alert::Severity::Critical);
        let json = alert_json(&alert);
        assert_eq!(json["type"], "alert");
        assert_eq!(json["severity"], "CRITICAL");
        assert_eq!(json["person_ids"], "7,9");
        assert_eq!(json["closed"], false);
    }
}
