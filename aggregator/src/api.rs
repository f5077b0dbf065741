//! The analysts' HTTP API as configured: the read-only SQL service of
//! [`crate::http`] over the committed tables, the security console
//! ([`crate::console`], `GET /console`), plus the canned reports:
//!
//! - `GET /reports/transitions?since=DAY[&until=DAY][&from=DEPT][&to=DEPT]`
//! - `GET /reports/coverage?day=DAY`
//! - `GET /reports/occupancy?day=DAY`
//! - `GET /reports/dwell?day=DAY`
//!
//! Each answers `{"report": ..., "results": [{"title", "sql", "rows": [...]}]}`
//! and sits behind the same bearer token, query timeout and concurrency
//! limit as `POST /sql` (a report takes one of its slots).

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;

use axum::Router;
use axum::extract::{Path, RawQuery, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use datafusion::prelude::SessionContext;

use service_kit::shutdown::Shutdown;

use crate::config::AggregatorConfig;
use crate::format::{self, OutputFormat};
use crate::http::{self, HttpSettings, SqlState};
use crate::query::{self, QueryOptions};
use crate::reports::{self, Report, day_start_us};

/// The API could not be started.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// `[http]` is missing from the configuration.
    #[error("the configuration has no [http] section")]
    NotConfigured,
    /// The tables could not be opened.
    #[error(transparent)]
    Query(#[from] query::QueryError),
    /// Settings, binding or serving failed.
    #[error(transparent)]
    Http(#[from] http::HttpError),
    /// The server failed.
    #[error("serving: {0}")]
    Io(#[from] std::io::Error),
    /// The security console could not start.
    #[error(transparent)]
    Console(#[from] crate::console::ConsoleError),
}

/// A session over the configured storage with the query memory limit.
pub async fn session(config: &AggregatorConfig) -> Result<SessionContext, query::QueryError> {
    let storage = config.storage()?;
    let options = QueryOptions {
        memory_limit_bytes: Some(config.query_memory_limit_mb as usize * 1024 * 1024),
        departments: config.departments.clone(),
    };
    query::open(&storage, &options).await
}

/// Binds `[http]` and serves the API until `shutdown`.
pub async fn serve_config(
    config: &AggregatorConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ApiError> {
    let settings = config.http.clone().ok_or(ApiError::NotConfigured)?;
    let listener = http::bind(&settings).await?;
    let shutdown = Shutdown::from_future(shutdown);
    let router = router(config, &settings, shutdown.clone()).await?;
    let mut stopping = shutdown;
    http::serve(listener, router, async move { stopping.wait().await }).await?;
    Ok(())
}

/// The full router: SQL, health, reports and the security console. The
/// console's live streams end and its consumer stops on `shutdown`, so a
/// graceful stop does not wait for open pages.
pub async fn router(
    config: &AggregatorConfig,
    settings: &HttpSettings,
    shutdown: Shutdown,
) -> Result<Router, ApiError> {
    let ctx = Arc::new(session(config).await?);
    let state = SqlState::new(ctx, settings)?;
    // Reports share the SQL service's concurrency slots, threads and timeout.
    let reports = Router::new()
        .route("/reports/{name}", get(report))
        .with_state(state.clone());
    let console = crate::console::router(&config.kafka, settings.token.as_deref(), shutdown)?;
    Ok(http::router(state)
        .merge(http::require_token(reports, settings.token.as_deref()))
        .merge(console))
}

fn error(status: StatusCode, message: impl std::fmt::Display) -> Response {
    let body = serde_json::json!({ "error": message.to_string() }).to_string();
    (status, [(header::CONTENT_TYPE, "application/json")], body).into_response()
}

/// `a=b&c=d` with `%XX` and `+` decoded.
fn parse_query(query: &str) -> HashMap<String, String> {
    let decode = |text: &str| {
        let bytes = text.as_bytes();
        let mut out = Vec::with_capacity(bytes.len());
        let mut i = 0;
        while i < bytes.len() {
            match bytes[i] {
                b'+' => out.push(b' '),
                b'%' if i + 2 < bytes.len() => {
                    let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).ok();
                    match hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
                        Some(byte) => {
                            out.push(byte);
                            i += 2;
                        }
                        None => out.push(b'%'),
                    }
                }
                byte => out.push(byte),
            }
            i += 1;
        }
        String::from_utf8_lossy(&out).into_owned()
    };
    query
        .split('&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| match pair.split_once('=') {
            Some((k, v)) => (decode(k), decode(v)),
            None => (decode(pair), String::new()),
        })
        .collect()
}

fn build(name: &str, params: &HashMap<String, String>) -> Result<Report, String> {
    let day = |key: &str| -> Result<String, String> {
        let value = params
            .get(key)
            .ok_or_else(|| format!("missing parameter {key}=YYYY-MM-DD"))?;
        day_start_us(value).map_err(|e| e.to_string())?;
        Ok(value.clone())
    };
    Ok(match name {
        "transitions" => {
            let since = day("since")?;
            let until = match params.get("until") {
                Some(_) => day("until")?,
                None => since.clone(),
            };
            let since_us = day_start_us(&since).map_err(|e| e.to_string())?;
            let until_us = day_start_us(&until).map_err(|e| e.to_string())? + 86_400_000_000;
            if until_us <= since_us {
                return Err("until is before since".into());
            }
            Report::Transitions {
                from: params.get("from").cloned(),
                to: params.get("to").cloned(),
                since_us,
                until_us,
            }
        }
        "coverage" => Report::Coverage { day: day("day")? },
        "occupancy" => Report::Occupancy { day: day("day")? },
        "dwell" => Report::Dwell { day: day("day")? },
        other => {
            return Err(format!(
                "no report {other:?}; reports: transitions, coverage, occupancy, dwell"
            ));
        }
    })
}

async fn report(
    State(state): State<SqlState>,
    Path(name): Path<String>,
    RawQuery(query): RawQuery,
) -> Response {
    let params = parse_query(query.as_deref().unwrap_or_default());
    let report = match build(&name, &params) {
        Ok(report) => report,
        Err(message) => {
            let status = if message.starts_with("no report") {
                StatusCode::NOT_FOUND
            } else {
                StatusCode::BAD_REQUEST
            };
            return error(status, message);
        }
    };
    let ctx = Arc::clone(state.context());
    let results = match state
        .limited(async move { reports::run(&ctx, &report).await })
        .await
    {
        Ok(Ok(results)) => results,
        Ok(Err(e)) => return error(StatusCode::INTERNAL_SERVER_ERROR, e),
        Err(refused) => return refused,
    };
    let mut out = Vec::new();
    for (query, batches) in results {
        let schema = match batches.first() {
            Some(batch) => batch.schema(),
            None => Arc::new(datafusion::arrow::datatypes::Schema::empty()),
        };
        let rows = match format::encode(&schema, &batches, OutputFormat::Json) {
            Ok(bytes) => bytes,
            Err(e) => return error(StatusCode::INTERNAL_SERVER_ERROR, e),
        };
        let rows: serde_json::Value = serde_json::from_slice(&rows).unwrap_or_default();
        out.push(serde_json::json!({ "title": query.title, "sql": query.sql, "rows": rows }));
    }
    let body = serde_json::json!({ "report": name, "results": out }).to_string();
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "application/json")],
        body,
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_strings_decode_and_reports_validate_their_parameters() {
        let params = parse_query("from=fresh+food&to=check%2Fout&since=2025-01-06&x");
        assert_eq!(params["from"], "fresh food");
        assert_eq!(params["to"], "check/out");
        assert_eq!(params["x"], "");
        let report = build("transitions", &params).unwrap();
        assert_eq!(
            report,
            Report::Transitions {
                from: Some("fresh food".into()),
                to: Some("check/out".into()),
                since_us: 1_736_121_600_000_000,
                until_us: 1_736_208_000_000_000,
            }
        );
        assert!(
            build("coverage", &HashMap::new())
                .unwrap_err()
                .contains("day=")
        );
        assert!(build("nope", &params).unwrap_err().starts_with("no report"));
        let bad = parse_query("day=2025-02-30");
        assert!(build("dwell", &bad).is_err());
    }
}
