//! The SQL service for analysts: read-only SQL over HTTP.
//!
//! # Endpoints
//! - `POST /sql`: the body is one SQL statement (UTF-8 text). The answer is
//!   encoded as `?format=json|csv|arrow|parquet|table` asks, or else as the
//!   `Accept` header asks (`application/json`, the default; `text/csv`;
//!   `application/vnd.apache.arrow.stream`; `application/vnd.apache.parquet`;
//!   `text/plain` for a text table). See [`crate::format`].
//! - `GET /healthz`: `200 ok`, never behind the token.
//!
//! # Read-only
//! Statements are planned, then checked with DataFusion's [`SQLOptions`]
//! with DDL, DML and statements all disallowed, before anything runs:
//! - DDL: `CREATE [EXTERNAL] TABLE`, `CREATE TABLE AS`, `CREATE VIEW`,
//!   `CREATE SCHEMA`/`DATABASE`, `CREATE INDEX`, `CREATE`/`DROP FUNCTION`,
//!   `DROP TABLE`/`VIEW`/`SCHEMA`;
//! - DML: `INSERT`, `DELETE`, `UPDATE`, `TRUNCATE`, `MERGE` and `COPY ... TO`;
//! - statements: `SET`, `RESET`, `PREPARE`, `EXECUTE`, `DEALLOCATE` and
//!   transaction control.
//!
//! These are answered 403. The check covers every node of the plan
//! including subqueries and the plan under `EXPLAIN [ANALYZE]`, so
//! `EXPLAIN ANALYZE INSERT ...` is refused too. Statements DataFusion cannot
//! plan at all (`BEGIN`, several statements in one body) are answered 400,
//! and do not run either. `SELECT`, `WITH`, `VALUES`, `EXPLAIN`,
//! `SHOW TABLES` and `DESCRIBE` run.
//!
//! # Status codes
//! Every error body is JSON, `{"error": "..."}`.
//!
//! | status | when |
//! | --- | --- |
//! | 200 | the result, in the negotiated format |
//! | 400 | the SQL does not parse or plan, or fails on its data (a bad cast, division by zero); the body is not UTF-8 or is empty; `?format=` names no format |
//! | 401 | a token is configured and the request lacks `Authorization: Bearer <token>` or has another token (with `WWW-Authenticate: Bearer`) |
//! | 403 | the statement would change something (see *Read-only*) |
//! | 406 | `Accept` names no format this service writes |
//! | 413 | the body is larger than `max_request_bytes` |
//! | 422 | the result has more than `max_result_rows` rows, or cannot be written in the chosen format (nested columns in CSV, for example) |
//! | 429 | `max_concurrent_queries` queries are already running (with `Retry-After: 1`); requests are not queued |
//! | 500 | anything else: I/O, a DataFusion bug |
//! | 504 | the query ran longer than `query_timeout_s` (planning, running and encoding); it was cancelled |
//! | 507 | the query needed more memory than the session's memory pool allows (DataFusion's `ResourcesExhausted`, see [`session_config_with_limits`]); the server has no room for it, and only a smaller query helps |

use std::fmt;
use std::future::Future;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, RawQuery, Request, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::arrow::error::ArrowError;
use datafusion::error::DataFusionError;
use datafusion::execution::runtime_env::RuntimeEnv;
use datafusion::prelude::{SQLOptions, SessionConfig, SessionContext};
use futures::StreamExt;
use serde::Deserialize;
use tokio::net::TcpListener;
use tokio::runtime::{Handle, Runtime};
use tokio::sync::Semaphore;
use tokio::task::JoinHandle;

use crate::format::{self, OutputFormat};

/// Settings of the SQL service.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpSettings {
    /// Address to listen on. Default `127.0.0.1:8089`: loopback only, so
    /// exposing the service is a deliberate choice.
    #[serde(default = "default_listen")]
    pub listen: SocketAddr,
    /// When set, every request except `GET /healthz` must carry
    /// `Authorization: Bearer <token>`. Default: none (no authentication).
    #[serde(default)]
    pub token: Option<String>,
    /// Seconds a query may take (planning, running and collecting) before it
    /// is cancelled with 504. Default 30.
    #[serde(default = "default_query_timeout_s")]
    pub query_timeout_s: f64,
    /// Queries running at once; one more is answered 429 at once. Default 4.
    #[serde(default = "default_max_concurrent_queries")]
    pub max_concurrent_queries: usize,
    /// Largest accepted request body (the SQL text), in bytes. Default 1 MiB.
    #[serde(default = "default_max_request_bytes")]
    pub max_request_bytes: usize,
    /// Most rows one answer may hold; results are buffered before they are
    /// encoded, and this bounds that buffer. Default 1,000,000.
    #[serde(default = "default_max_result_rows")]
    pub max_result_rows: u64,
    /// Worker threads of the runtime that runs queries, apart from the one
    /// that serves HTTP (and, in the aggregator, consumes Kafka). Default:
    /// one per CPU core.
    #[serde(default)]
    pub query_threads: Option<usize>,
}

/// Next to the aggregator's other ports, on loopback.
const fn default_listen() -> SocketAddr {
    SocketAddr::new(std::net::IpAddr::V4(Ipv4Addr::LOCALHOST), 8089)
}
/// Long enough for scans over months of Parquet, short enough that a
/// runaway query frees its slot.
const fn default_query_timeout_s() -> f64 {
    30.0
}
/// Twice the cores of a small aggregator host: queries are CPU-bound.
const fn default_max_concurrent_queries() -> usize {
    4
}
/// SQL text is small; a megabyte is generous.
const fn default_max_request_bytes() -> usize {
    1024 * 1024
}
/// Enough for any table a person reads; larger extracts belong in Parquet
/// files, not in one HTTP answer.
const fn default_max_result_rows() -> u64 {
    1_000_000
}

impl Default for HttpSettings {
    fn default() -> Self {
        HttpSettings {
            listen: default_listen(),
            token: None,
            query_timeout_s: default_query_timeout_s(),
            max_concurrent_queries: default_max_concurrent_queries(),
            max_request_bytes: default_max_request_bytes(),
            max_result_rows: default_max_result_rows(),
            query_threads: None,
        }
    }
}

impl fmt::Debug for HttpSettings {
    /// Like a derived `Debug`, but never prints the token.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HttpSettings")
            .field("listen", &self.listen)
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .field("query_timeout_s", &self.query_timeout_s)
            .field("max_concurrent_queries", &self.max_concurrent_queries)
            .field("max_request_bytes", &self.max_request_bytes)
            .field("max_result_rows", &self.max_result_rows)
            .field("query_threads", &self.query_threads)
            .finish()
    }
}

impl HttpSettings {
    /// Every problem with these settings, each naming its field; empty when
    /// they are usable.
    pub fn validate(&self) -> Vec<String> {
        let mut problems = Vec::new();
        if let Some(token) = &self.token {
            if token.is_empty() {
                problems.push("token is empty; remove it to disable authentication".into());
            } else if !token.bytes().all(|b| b.is_ascii_graphic()) {
                problems.push(
                    "token must be printable ASCII without spaces (it travels in an HTTP header)"
                        .into(),
                );
            }
        }
        if query_timeout(self.query_timeout_s).is_none() {
            problems.push(format!(
                "query_timeout_s must be a number of seconds > 0, not {}",
                self.query_timeout_s
            ));
        }
        if self.max_concurrent_queries == 0 || self.max_concurrent_queries > Semaphore::MAX_PERMITS
        {
            problems.push(format!(
                "max_concurrent_queries must be between 1 and {}, not {}",
                Semaphore::MAX_PERMITS,
                self.max_concurrent_queries
            ));
        }
        if self.max_request_bytes == 0 {
            problems.push("max_request_bytes must be > 0".into());
        }
        if self.max_result_rows == 0 {
            problems.push("max_result_rows must be > 0".into());
        }
        if self.query_threads == Some(0) {
            problems.push("query_threads must be > 0; leave it out for one per core".into());
        }
        problems
    }
}

/// `seconds` as a positive, representable duration.
fn query_timeout(seconds: f64) -> Option<Duration> {
    Duration::try_from_secs_f64(seconds)
        .ok()
        .filter(|d| !d.is_zero())
}

/// The SQL service could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    /// The settings are unusable; every problem is listed.
    #[error("invalid SQL service settings:\n  - {}", .0.join("\n  - "))]
    InvalidSettings(Vec<String>),
    /// DataFusion could not build its runtime environment.
    #[error("cannot build the query runtime environment: {0}")]
    Runtime(#[source] DataFusionError),
    /// The threads that run queries could not be started.
    #[error("cannot start the query threads: {0}")]
    Threads(#[source] std::io::Error),
    /// The listening socket could not be bound.
    #[error("cannot listen for SQL on {address}: {source}")]
    Bind {
        /// The configured address.
        address: SocketAddr,
        /// Why binding failed.
        source: std::io::Error,
    },
}

/// A session configuration and runtime for a long-lived, shared query
/// service: build the context with
/// `SessionContext::new_with_config_rt(config, runtime)`.
///
/// - Memory: operators draw from one pool of `memory_limit_bytes` shared by
///   all running queries. A query that needs more than the pool can give
///   (and cannot spill to disk, as sorts and grouped aggregations do) fails
///   with DataFusion's `ResourcesExhausted`, which `POST /sql` answers 507.
///   Results buffered for the answer are not counted: `max_result_rows`
///   bounds those.
/// - Fresh files: DataFusion 55 caches the file listing of each table with no
///   expiry by default, so a long-lived context would never see the Parquet
///   files written after its first query. The listing cache is disabled
///   (`list_files_cache_limit = 0`), so every query lists the table
///   directories again. Parquet footers stay cached, keyed on each file's
///   size and modification time.
/// - `information_schema` is enabled, so `SHOW TABLES` and
///   `SHOW COLUMNS FROM t` work.
pub fn session_config_with_limits(
    memory_limit_bytes: usize,
) -> Result<(SessionConfig, Arc<RuntimeEnv>), HttpError> {
    if memory_limit_bytes == 0 {
        return Err(HttpError::InvalidSettings(vec![
            "the query memory limit must be > 0 bytes".into(),
        ]));
    }
    crate::query::session_setup(Some(memory_limit_bytes)).map_err(HttpError::Runtime)
}

/// Binds the listening socket of `settings`.
pub async fn bind(settings: &HttpSettings) -> Result<TcpListener, HttpError> {
    TcpListener::bind(settings.listen)
        .await
        .map_err(|source| HttpError::Bind {
            address: settings.listen,
            source,
        })
}

/// What every SQL request needs: the session, the limits and the threads
/// that run queries. Cheap to clone.
///
/// Queries run on a runtime of their own (`query_threads` workers), not on
/// the one serving HTTP: DataFusion operators can compute for seconds
/// without yielding, and on a shared runtime they would stall the timers
/// that enforce `query_timeout_s`, `/healthz` and anything else running
/// there.
#[derive(Clone)]
pub struct SqlState {
    inner: Arc<Shared>,
}

struct Shared {
    ctx: Arc<SessionContext>,
    queries: QueryRuntime,
    token: Option<String>,
    timeout: Duration,
    permits: Arc<Semaphore>,
    max_concurrent_queries: usize,
    max_request_bytes: usize,
    max_result_rows: u64,
}

/// The runtime queries run on. It is shut down without waiting when the
/// last [`SqlState`] goes, since dropping a runtime from async code panics.
struct QueryRuntime {
    runtime: Option<Runtime>,
    handle: Handle,
}

impl QueryRuntime {
    fn start(threads: usize) -> std::io::Result<QueryRuntime> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(threads)
            .thread_name("argus-sql")
            .enable_all()
            .build()?;
        Ok(QueryRuntime {
            handle: runtime.handle().clone(),
            runtime: Some(runtime),
        })
    }
}

impl Drop for QueryRuntime {
    fn drop(&mut self) {
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

/// A task that is aborted when its handle is dropped, so that a cancelled
/// request (timeout, client gone) cancels its query.
struct AbortOnDrop<T>(JoinHandle<T>);

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}

impl SqlState {
    /// Queries go to `ctx` under the limits of `settings`, which must pass
    /// [`HttpSettings::validate`]. Starts the query threads.
    pub fn new(ctx: Arc<SessionContext>, settings: &HttpSettings) -> Result<Self, HttpError> {
        let problems = settings.validate();
        let timeout = match query_timeout(settings.query_timeout_s) {
            Some(timeout) if problems.is_empty() => timeout,
            _ => return Err(HttpError::InvalidSettings(problems)),
        };
        let threads = settings.query_threads.unwrap_or_else(|| {
            std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get)
        });
        let queries = QueryRuntime::start(threads).map_err(HttpError::Threads)?;
        Ok(SqlState {
            inner: Arc::new(Shared {
                ctx,
                queries,
                token: settings.token.clone(),
                timeout,
                permits: Arc::new(Semaphore::new(settings.max_concurrent_queries)),
                max_concurrent_queries: settings.max_concurrent_queries,
                max_request_bytes: settings.max_request_bytes,
                max_result_rows: settings.max_result_rows,
            }),
        })
    }

    /// The session queries run in.
    pub fn context(&self) -> &Arc<SessionContext> {
        &self.inner.ctx
    }

    /// Runs `sql` read-only under the service's limits and answers as
    /// `POST /sql` does. Routes added next to [`router`]'s (canned reports,
    /// say) can answer through this to share the limits and the logging.
    pub async fn respond(&self, sql: &str, format: OutputFormat) -> Response {
        let started = Instant::now();
        let outcome = self.answer(sql, format).await;
        let elapsed_ms = started.elapsed().as_secs_f64() * 1000.0;
        let logged_sql = excerpt(sql);
        match outcome {
            Ok(answer) => {
                tracing::info!(
                    status = 200,
                    rows = answer.rows,
                    bytes = answer.body.len(),
                    %format,
                    elapsed_ms,
                    sql = %logged_sql,
                    "Query answered"
                );
                (
                    [(
                        header::CONTENT_TYPE,
                        HeaderValue::from_static(format.content_type()),
                    )],
                    answer.body,
                )
                    .into_response()
            }
            Err(failure) => {
                let status = failure.status();
                let message = failure.to_string();
                if status.is_server_error() {
                    tracing::warn!(
                        status = status.as_u16(),
                        error = %message,
                        elapsed_ms,
                        sql = %logged_sql,
                        "Query failed"
                    );
                } else {
                    tracing::info!(
                        status = status.as_u16(),
                        error = %message,
                        elapsed_ms,
                        sql = %logged_sql,
                        "Query refused"
                    );
                }
                failure_response(&failure)
            }
        }
    }

    /// Plans, checks, runs and encodes `sql` on the query runtime, within
    /// the timeout.
    async fn answer(&self, sql: &str, format: OutputFormat) -> Result<Answer, Failure> {
        if sql.trim().is_empty() {
            return Err(Failure::EmptySql);
        }
        let ctx = Arc::clone(&self.inner.ctx);
        let sql = sql.to_owned();
        let max_rows = self.inner.max_result_rows;
        self.spawn_limited(async move {
            let (schema, batches, rows) = collect(&ctx, &sql, max_rows).await?;
            let body = format::encode(&schema, &batches, format).map_err(Failure::Format)?;
            Ok(Answer { body, rows })
        })
        .await
    }

    /// Runs `work` under the limits every query shares: it takes one of the
    /// `max_concurrent_queries` slots or is refused 429 at once, runs on the
    /// query threads, and is aborted at the timeout (504). Routes merged next
    /// to [`router`]'s (canned reports) run their queries through this.
    pub async fn limited<T: Send + 'static>(
        &self,
        work: impl Future<Output = T> + Send + 'static,
    ) -> Result<T, Response> {
        self.spawn_limited(async move { Ok(work.await) })
            .await
            .map_err(|failure| failure_response(&failure))
    }

    async fn spawn_limited<T: Send + 'static>(
        &self,
        work: impl Future<Output = Result<T, Failure>> + Send + 'static,
    ) -> Result<T, Failure> {
        let shared = &self.inner;
        // The slot goes with the task, so a query counts against
        // `max_concurrent_queries` until its work has really stopped, even
        // after its request timed out.
        let permit = Arc::clone(&shared.permits)
            .try_acquire_owned()
            .map_err(|_| Failure::Busy(shared.max_concurrent_queries))?;
        let mut task = AbortOnDrop(shared.queries.handle.spawn(async move {
            let _permit = permit;
            work.await
        }));
        // On timeout `task` is dropped and aborted: the query future, with
        // its record batch stream, is dropped at its next yield, and that
        // aborts the tasks DataFusion spawned for it.
        match tokio::time::timeout(shared.timeout, &mut task.0).await {
            Ok(Ok(answer)) => answer,
            Ok(Err(error)) => Err(Failure::Internal(format!("query task failed: {error}"))),
            Err(_) => Err(Failure::Timeout(shared.timeout)),
        }
    }
}

/// The error answer of a failure (429 with `Retry-After`).
fn failure_response(failure: &Failure) -> Response {
    let status = failure.status();
    let mut response = error_response(status, &failure.to_string());
    if status == StatusCode::TOO_MANY_REQUESTS {
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    }
    response
}

/// An encoded result.
struct Answer {
    body: Vec<u8>,
    rows: u64,
}

/// Plans `sql`, refuses anything but reads, and collects the result.
async fn collect(
    ctx: &SessionContext,
    sql: &str,
    max_rows: u64,
) -> Result<(SchemaRef, Vec<RecordBatch>, u64), Failure> {
    // `SessionContext::sql_with_options` in two steps, so that a refusal is
    // told apart from a statement that does not plan.
    let plan = ctx
        .state()
        .create_logical_plan(sql)
        .await
        .map_err(Failure::from_datafusion)?;
    read_only()
        .verify_plan(&plan)
        .map_err(|error| Failure::Refused(error.find_root().message().into_owned()))?;
    let frame = ctx
        .execute_logical_plan(plan)
        .await
        .map_err(Failure::from_datafusion)?;
    let mut stream = frame
        .execute_stream()
        .await
        .map_err(Failure::from_datafusion)?;
    let schema = stream.schema();
    let mut batches = Vec::new();
    let mut rows = 0u64;
    while let Some(batch) = stream.next().await {
        let batch = batch.map_err(Failure::from_datafusion)?;
        rows = rows.saturating_add(batch.num_rows() as u64);
        if rows > max_rows {
            return Err(Failure::TooManyRows(max_rows));
        }
        batches.push(batch);
    }
    Ok((schema, batches, rows))
}

/// Nothing but queries: no DDL, no DML (`COPY` included), no statements.
fn read_only() -> SQLOptions {
    SQLOptions::new()
        .with_allow_ddl(false)
        .with_allow_dml(false)
        .with_allow_statements(false)
}

/// Why a query got no result.
#[derive(Debug, thiserror::Error)]
enum Failure {
    #[error("empty request body; send the SQL statement as the body")]
    EmptySql,
    #[error("request body is not UTF-8 text: {0}")]
    NotUtf8(std::str::Utf8Error),
    #[error("{0}")]
    Body(String, StatusCode),
    #[error("{0}")]
    UnknownFormat(format::UnknownFormat),
    #[error(
        "none of the media types in Accept is available; ask for application/json, text/csv, \
         application/vnd.apache.arrow.stream, application/vnd.apache.parquet or text/plain, \
         or use ?format="
    )]
    NotAcceptable,
    #[error(
        "{max} queries are already running (max_concurrent_queries); retry shortly",
        max = .0
    )]
    Busy(usize),
    #[error(
        "read-only service: DDL (CREATE, DROP), DML (INSERT, COPY, ...) and statements (SET, \
         BEGIN, PREPARE, ...) are refused ({0})"
    )]
    Refused(String),
    #[error("{0}")]
    BadQuery(String),
    #[error(
        "the query needs more memory than this service allows; filter, aggregate or LIMIT it \
         further ({0})"
    )]
    MemoryLimit(String),
    #[error("the query ran longer than {}s and was cancelled", .0.as_secs_f64())]
    Timeout(Duration),
    #[error(
        "the result has more than {0} rows (max_result_rows); add a LIMIT or aggregate further"
    )]
    TooManyRows(u64),
    #[error("{0}; try ?format=arrow or ?format=parquet")]
    Format(format::FormatError),
    #[error("{0}")]
    Internal(String),
}

impl Failure {
    /// Sorts a DataFusion error into the user's fault, the memory limit, or
    /// the server's fault, by its innermost DataFusion error.
    fn from_datafusion(error: DataFusionError) -> Failure {
        let message = error.strip_backtrace();
        match error.find_root() {
            DataFusionError::ResourcesExhausted(detail) => Failure::MemoryLimit(detail.clone()),
            DataFusionError::SQL(..)
            | DataFusionError::Plan(_)
            | DataFusionError::SchemaError(..)
            | DataFusionError::NotImplemented(_)
            | DataFusionError::Configuration(_)
            | DataFusionError::Execution(_) => Failure::BadQuery(message),
            DataFusionError::ArrowError(arrow, _) if is_data_error(arrow) => {
                Failure::BadQuery(message)
            }
            _ => Failure::Internal(message),
        }
    }

    fn status(&self) -> StatusCode {
        match self {
            Failure::EmptySql
            | Failure::NotUtf8(_)
            | Failure::UnknownFormat(_)
            | Failure::BadQuery(_) => StatusCode::BAD_REQUEST,
            Failure::Body(_, status) => *status,
            Failure::NotAcceptable => StatusCode::NOT_ACCEPTABLE,
            Failure::Busy(_) => StatusCode::TOO_MANY_REQUESTS,
            Failure::Refused(_) => StatusCode::FORBIDDEN,
            Failure::MemoryLimit(_) => StatusCode::INSUFFICIENT_STORAGE,
            Failure::Timeout(_) => StatusCode::GATEWAY_TIMEOUT,
            Failure::TooManyRows(_) | Failure::Format(_) => StatusCode::UNPROCESSABLE_ENTITY,
            Failure::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

/// Arrow errors caused by the query's data or expressions, not the server.
fn is_data_error(error: &ArrowError) -> bool {
    matches!(
        error,
        ArrowError::CastError(_)
            | ArrowError::DivideByZero
            | ArrowError::ArithmeticOverflow(_)
            | ArrowError::ComputeError(_)
            | ArrowError::InvalidArgumentError(_)
            | ArrowError::ParseError(_)
            | ArrowError::SchemaError(_)
    )
}

/// At most the first 1000 characters of `sql`, for logs.
fn excerpt(sql: &str) -> String {
    const MAX_CHARS: usize = 1000;
    let sql = sql.trim();
    match sql.char_indices().nth(MAX_CHARS) {
        Some((end, _)) => format!("{}…", &sql[..end]),
        None => sql.to_string(),
    }
}

/// `{"error": message}` with `status`.
fn error_response(status: StatusCode, message: &str) -> Response {
    let body = serde_json::json!({ "error": message }).to_string();
    (
        status,
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        )],
        body,
    )
        .into_response()
}

/// The routes of the SQL service (`POST /sql`, `GET /healthz`) with the
/// body limit and, when configured, the token check. Routes merged into the
/// returned router afterwards are not behind the token: wrap them with
/// [`require_token`] too.
pub fn router(state: SqlState) -> Router {
    let token = state.inner.token.clone();
    let body_limit = DefaultBodyLimit::max(state.inner.max_request_bytes);
    let routes = Router::new()
        .route("/sql", post(sql).layer(body_limit))
        .route("/healthz", get(healthz))
        .with_state(state);
    require_token(routes, token.as_deref())
}

/// Puts every route of `router` except `GET /healthz` behind
/// `Authorization: Bearer <token>`; without a token, returns `router` as it
/// is. The token is compared in constant time.
pub fn require_token(router: Router, token: Option<&str>) -> Router {
    match token {
        Some(token) => router.layer(middleware::from_fn_with_state(
            Arc::<str>::from(token),
            check_token,
        )),
        None => router,
    }
}

/// Serves `router` on `listener` until `shutdown` completes, then stops
/// accepting connections and waits for the requests in flight (a running
/// query finishes or times out).
pub async fn serve(
    listener: TcpListener,
    router: Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let address = listener.local_addr()?;
    tracing::info!(address = %address, "Serving SQL over HTTP");
    axum::serve(listener, router)
        .with_graceful_shutdown(shutdown)
        .await?;
    tracing::info!(address = %address, "SQL service stopped");
    Ok(())
}

async fn healthz() -> &'static str {
    "ok"
}

/// `POST /sql`.
async fn sql(
    State(state): State<SqlState>,
    RawQuery(query): RawQuery,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let request = body
        .map_err(|rejection| Failure::Body(rejection.body_text(), rejection.status()))
        .and_then(|body| {
            let format = negotiate(query.as_deref(), &headers)?;
            Ok((body, format))
        });
    let (body, format) = match request {
        Ok(request) => request,
        Err(failure) => return error_response(failure.status(), &failure.to_string()),
    };
    match std::str::from_utf8(&body) {
        Ok(sql) => state.respond(sql, format).await,
        Err(error) => {
            let failure = Failure::NotUtf8(error);
            error_response(failure.status(), &failure.to_string())
        }
    }
}

/// The format `?format=` names, else the best one `Accept` allows, else JSON.
fn negotiate(query: Option<&str>, headers: &HeaderMap) -> Result<OutputFormat, Failure> {
    let asked = query
        .into_iter()
        .flat_map(|query| query.split('&'))
        .filter_map(|pair| pair.split_once('='))
        .find(|(key, _)| *key == "format");
    if let Some((_, name)) = asked {
        return name.parse().map_err(Failure::UnknownFormat);
    }
    let accept: Vec<&str> = headers
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .collect();
    if accept.is_empty() {
        return Ok(OutputFormat::Json);
    }
    best_accepted(&accept).ok_or(Failure::NotAcceptable)
}

/// The format of the media range with the highest `q` in `Accept` values
/// (the first on ties); `*/*` and `application/*` mean JSON, `text/*` CSV.
fn best_accepted(values: &[&str]) -> Option<OutputFormat> {
    let mut best: Option<(f32, OutputFormat)> = None;
    for range in values.iter().flat_map(|value| value.split(',')) {
        let mut parts = range.split(';');
        let media_type = parts.next().unwrap_or("").trim();
        let quality = parts
            .filter_map(|param| param.split_once('='))
            .find(|(name, _)| name.trim().eq_ignore_ascii_case("q"))
            .map_or(Some(1.0), |(_, q)| q.trim().parse::<f32>().ok());
        let Some(quality) = quality.filter(|q| *q > 0.0) else {
            continue;
        };
        let format = if media_type == "*/*" || media_type.eq_ignore_ascii_case("application/*") {
            Some(OutputFormat::Json)
        } else if media_type.eq_ignore_ascii_case("text/*") {
            Some(OutputFormat::Csv)
        } else {
            OutputFormat::from_media_type(media_type)
        };
        if let Some(format) = format
            && best.is_none_or(|(q, _)| quality > q)
        {
            best = Some((quality, format));
        }
    }
    best.map(|(_, format)| format)
}

/// The token check of [`require_token`].
async fn check_token(State(token): State<Arc<str>>, request: Request, next: Next) -> Response {
    let health = request.uri().path() == "/healthz"
        && (request.method() == Method::GET || request.method() == Method::HEAD);
    let given = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(bearer_token);
    let authorised =
        given.is_some_and(|given| constant_time_eq(given.as_bytes(), token.as_bytes()));
    if health || authorised {
        return next.run(request).await;
    }
    let message = if given.is_some() {
        "wrong bearer token"
    } else {
        "this service needs Authorization: Bearer <token>"
    };
    let mut response = error_response(StatusCode::UNAUTHORIZED, message);
    response
        .headers_mut()
        .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
    response
}

/// The token of an `Authorization: Bearer <token>` value.
fn bearer_token(value: &str) -> Option<&str> {
    let (scheme, token) = value.trim().split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim())
        .filter(|token| !token.is_empty())
}

/// Compares `given` with `expected` in time that depends only on their
/// lengths, never on where they first differ.
fn constant_time_eq(given: &[u8], expected: &[u8]) -> bool {
    let mut difference = u8::from(given.len() != expected.len());
    for (i, byte) in expected.iter().enumerate() {
        let other = given.get(i).copied().unwrap_or(!byte);
        difference |= std::hint::black_box(other ^ byte);
    }
    difference == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_problems_are_all_listed() {
        assert!(HttpSettings::default().validate().is_empty());
        let settings = HttpSettings {
            token: Some(String::new()),
            query_timeout_s: -1.0,
            max_concurrent_queries: 0,
            max_request_bytes: 0,
            max_result_rows: 0,
            query_threads: Some(0),
            ..HttpSettings::default()
        };
        let problems = settings.validate();
        assert_eq!(problems.len(), 6, "{problems:?}");
        for field in [
            "token",
            "query_timeout_s",
            "max_concurrent_queries",
            "max_request_bytes",
            "max_result_rows",
            "query_threads",
        ] {
            assert!(problems.iter().any(|p| p.starts_with(field)), "{field}");
        }
        for bad in [0.0, f64::NAN, f64::INFINITY, 1e300] {
            let settings = HttpSettings {
                query_timeout_s: bad,
                ..HttpSettings::default()
            };
            assert_eq!(settings.validate().len(), 1, "{bad}");
        }
    }

    #[test]
    fn settings_parse_from_toml_with_defaults_and_hide_the_token() {
        let settings: HttpSettings =
            toml::from_str("listen = \"0.0.0.0:9000\"\ntoken = \"s3cret\"\n").unwrap();
        assert_eq!(settings.listen, "0.0.0.0:9000".parse().unwrap());
        assert_eq!(settings.query_timeout_s, 30.0);
        assert_eq!(settings.max_concurrent_queries, 4);
        assert_eq!(settings.max_request_bytes, 1 << 20);
        assert_eq!(settings.max_result_rows, 1_000_000);
        assert!(!format!("{settings:?}").contains("s3cret"));
        let unknown = toml::from_str::<HttpSettings>("timeout = 3\n").unwrap_err();
        assert!(unknown.to_string().contains("timeout"), "{unknown}");
        let defaults: HttpSettings = toml::from_str("").unwrap();
        assert_eq!(defaults.listen, "127.0.0.1:8089".parse().unwrap());
        assert_eq!(defaults.token, None);
    }

    #[test]
    fn negotiation_prefers_the_query_then_accept_then_json() {
        let mut headers = HeaderMap::new();
        assert_eq!(negotiate(None, &headers).unwrap(), OutputFormat::Json);
        assert_eq!(
            negotiate(Some("x=1&format=csv"), &headers).unwrap(),
            OutputFormat::Csv
        );
        assert!(matches!(
            negotiate(Some("format=xml"), &headers),
            Err(Failure::UnknownFormat(_))
        ));
        headers.insert(
            header::ACCEPT,
            HeaderValue::from_static("text/csv;q=0.5, application/vnd.apache.arrow.stream"),
        );
        assert_eq!(negotiate(None, &headers).unwrap(), OutputFormat::Arrow);
        assert_eq!(
            negotiate(Some("format=table"), &headers).unwrap(),
            OutputFormat::Table
        );
        for (accept, expected) in [
            ("*/*", Some(OutputFormat::Json)),
            ("text/*", Some(OutputFormat::Csv)),
            ("TEXT/CSV; charset=utf-8", Some(OutputFormat::Csv)),
            ("text/plain", Some(OutputFormat::Table)),
            (
                "application/vnd.apache.parquet",
                Some(OutputFormat::Parquet),
            ),
            ("image/png, application/json;q=0", None),
            ("image/png", None),
        ] {
            assert_eq!(best_accepted(&[accept]), expected, "{accept}");
        }
    }

    #[test]
    fn bearer_tokens_are_parsed_and_compared_exactly() {
        assert_eq!(bearer_token("Bearer abc"), Some("abc"));
        assert_eq!(bearer_token("bearer  abc "), Some("abc"));
        assert_eq!(bearer_token("Basic abc"), None);
        assert_eq!(bearer_token("Bearer "), None);
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abd", b"abc"));
        assert!(!constant_time_eq(b"ab", b"abc"));
        assert!(!constant_time_eq(b"abcd", b"abc"));
        assert!(!constant_time_eq(b"", b"abc"));
    }

    #[test]
    fn errors_are_sorted_by_their_innermost_cause() {
        let memory = DataFusionError::Context(
            "while sorting".into(),
            Box::new(DataFusionError::ResourcesExhausted("pool is full".into())),
        );
        assert!(matches!(
            Failure::from_datafusion(memory),
            Failure::MemoryLimit(detail) if detail == "pool is full"
        ));
        let plan = Failure::from_datafusion(DataFusionError::Plan("no such table".into()));
        assert_eq!(plan.status(), StatusCode::BAD_REQUEST);
        let cast = DataFusionError::ArrowError(
            Box::new(ArrowError::CastError("'x' is not a number".into())),
            None,
        );
        assert_eq!(
            Failure::from_datafusion(cast).status(),
            StatusCode::BAD_REQUEST
        );
        let io = DataFusionError::IoError(std::io::Error::other("disk gone"));
        assert_eq!(
            Failure::from_datafusion(io).status(),
            StatusCode::INTERNAL_SERVER_ERROR
        );
    }

    #[test]
    fn memory_limits_are_validated_and_the_listing_cache_is_off() {
        assert!(matches!(
            session_config_with_limits(0),
            Err(HttpError::InvalidSettings(_))
        ));
        let (config, runtime) = session_config_with_limits(8 << 20).unwrap();
        assert!(config.information_schema());
        assert!(runtime.cache_manager.get_list_files_cache().is_none());
        assert!(matches!(
            runtime.memory_pool.memory_limit(),
            datafusion::execution::memory_pool::MemoryLimit::Finite(limit) if limit == 8 << 20
        ));
    }

    #[test]
    fn long_sql_is_cut_for_logs() {
        assert_eq!(excerpt("  SELECT 1 "), "SELECT 1");
        let long = "é".repeat(1500);
        assert_eq!(excerpt(&long).chars().count(), 1001);
    }
}
