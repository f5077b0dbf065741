//! The SQL service over real HTTP: a server on a free port over a real
//! Parquet table, spoken to with a minimal HTTP/1.1 client.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use aggregator::http::{self, HttpSettings, SqlState};
use bytes::Bytes;
use datafusion::arrow::array::{
    Float64Array, Int64Array, RecordBatch, StringArray, StringViewArray, TimestampMicrosecondArray,
};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use datafusion::arrow::ipc::reader::StreamReader;
use datafusion::parquet::arrow::ArrowWriter;
use datafusion::parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use datafusion::prelude::{ParquetReadOptions, SessionContext};
use serde_json::{Value, json};
use tempfile::TempDir;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// 2024-05-01T10:00:00Z in microseconds since the epoch.
const T0: i64 = 1_714_557_600_000_000;

/// Takes minutes (10^11 rows), only ever run under a short timeout. Its
/// work is in the scan, which yields to the runtime every few batches, so
/// cancelling it takes effect at once.
const SLOW_SQL: &str = "SELECT sum(value % 7) FROM generate_series(1, 100000000000)";

fn schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("camera", DataType::Utf8, false),
        Field::new("person", DataType::Int64, false),
        Field::new(
            "seen_at",
            DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
            false,
        ),
        Field::new("score", DataType::Float64, true),
    ]))
}

/// `cameras[i]`, person `first + i`, seen at T0 + i s, scores as given.
fn batch(first: i64, cameras: &[&str], scores: &[Option<f64>]) -> RecordBatch {
    let n = cameras.len() as i64;
    RecordBatch::try_new(
        schema(),
        vec![
            Arc::new(StringArray::from(cameras.to_vec())),
            Arc::new(Int64Array::from_iter_values(first..first + n)),
            Arc::new(
                TimestampMicrosecondArray::from_iter_values((0..n).map(|i| T0 + i * 1_000_000))
                    .with_timezone("UTC"),
            ),
            Arc::new(Float64Array::from(scores.to_vec())),
        ],
    )
    .unwrap()
}

fn three_rows() -> RecordBatch {
    batch(
        1,
        &["cam-a", "cam-b", "cam-a"],
        &[Some(0.5), None, Some(0.25)],
    )
}

/// [`three_rows`] as DataFusion reads it back from Parquet: strings as
/// `Utf8View`.
fn three_rows_as_read() -> RecordBatch {
    let rows = three_rows();
    let mut fields: Vec<Field> = rows
        .schema()
        .fields()
        .iter()
        .map(|f| f.as_ref().clone())
        .collect();
    fields[0] = Field::new("camera", DataType::Utf8View, false);
    let mut columns = rows.columns().to_vec();
    columns[0] = Arc::new(StringViewArray::from(vec!["cam-a", "cam-b", "cam-a"]));
    RecordBatch::try_new(Arc::new(Schema::new(fields)), columns).unwrap()
}

fn write_parquet(path: &Path, batch: &RecordBatch) {
    let file = std::fs::File::create(path).unwrap();
    let mut writer = ArrowWriter::try_new(file, batch.schema(), None).unwrap();
    writer.write(batch).unwrap();
    writer.close().unwrap();
}

/// A context with the limits helper and a `sightings` table over a directory
/// holding one Parquet file of [`three_rows`].
async fn context(memory_limit_bytes: usize) -> (Arc<SessionContext>, TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let table = dir.path().join("sightings");
    std::fs::create_dir(&table).unwrap();
    write_parquet(&table.join("part-0.parquet"), &three_rows());
    let (config, runtime) = http::session_config_with_limits(memory_limit_bytes).unwrap();
    let ctx = SessionContext::new_with_config_rt(config, runtime);
    ctx.register_parquet(
        "sightings",
        format!("{}/", table.display()),
        ParquetReadOptions::default(),
    )
    .await
    .unwrap();
    (Arc::new(ctx), dir)
}

/// A running server; stops when dropped or [`Server::stop`]ped.
struct Server {
    address: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<std::io::Result<()>>,
    data: TempDir,
}

impl Server {
    async fn start(settings: HttpSettings, memory_limit_bytes: usize) -> Server {
        let (ctx, dir) = context(memory_limit_bytes).await;
        let state = SqlState::new(ctx, &settings).unwrap();
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(http::serve(listener, http::router(state), async move {
            let _ = stopped.await;
        }));
        Server {
            address,
            stop: Some(stop),
            task,
            data: dir,
        }
    }

    async fn with_defaults() -> Server {
        Server::start(HttpSettings::default(), 256 << 20).await
    }

    fn dir(&self) -> &Path {
        self.data.path()
    }

    async fn sql(&self, sql: &str) -> Reply {
        self.post("/sql", &[], sql.as_bytes()).await
    }

    async fn post(&self, target: &str, headers: &[(&str, &str)], body: &[u8]) -> Reply {
        request(self.address, "POST", target, headers, body).await
    }

    async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        let task = &mut self.task;
        tokio::time::timeout(Duration::from_secs(10), task)
            .await
            .expect("the server stops on shutdown")
            .unwrap()
            .unwrap();
    }
}

/// An HTTP response.
#[derive(Debug)]
struct Reply {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Reply {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    fn text(&self) -> &str {
        std::str::from_utf8(&self.body).unwrap()
    }

    fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&self.body)))
    }

    /// The `error` of a JSON error body.
    fn error(&self) -> String {
        assert_eq!(self.header("content-type"), Some("application/json"));
        self.json()["error"]
            .as_str()
            .unwrap_or_else(|| panic!("no error in {}", self.text()))
            .to_string()
    }
}

/// One request on a fresh connection (`Connection: close`), read to EOF.
async fn request(
    address: SocketAddr,
    method: &str,
    target: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Reply {
    let mut stream = TcpStream::connect(address).await.unwrap();
    let mut head = format!(
        "{method} {target} HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\n\
         Content-Length: {}\r\n",
        body.len()
    );
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str("\r\n");
    let mut message = head.into_bytes();
    message.extend_from_slice(body);
    stream.write_all(&message).await.unwrap();
    let mut raw = Vec::new();
    tokio::time::timeout(Duration::from_secs(60), stream.read_to_end(&mut raw))
        .await
        .expect("a response within 60 s")
        .unwrap();
    parse_response(&raw)
}

fn parse_response(raw: &[u8]) -> Reply {
    let end = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or_else(|| panic!("no header end in {:?}", String::from_utf8_lossy(raw)));
    let head = std::str::from_utf8(&raw[..end]).unwrap();
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .unwrap()
        .split(' ')
        .nth(1)
        .unwrap()
        .parse()
        .unwrap();
    let headers: Vec<(String, String)> = lines
        .map(|line| {
            let (name, value) = line.split_once(':').unwrap();
            (name.trim().to_string(), value.trim().to_string())
        })
        .collect();
    let mut body = raw[end + 4..].to_vec();
    let chunked = headers.iter().any(|(n, v)| {
        n.eq_ignore_ascii_case("transfer-encoding") && v.eq_ignore_ascii_case("chunked")
    });
    if chunked {
        body = dechunk(&body);
    }
    Reply {
        status,
        headers,
        body,
    }
}

fn dechunk(mut raw: &[u8]) -> Vec<u8> {
    let mut body = Vec::new();
    loop {
        let line_end = raw.windows(2).position(|w| w == b"\r\n").unwrap();
        let size_text = std::str::from_utf8(&raw[..line_end]).unwrap();
        let size = usize::from_str_radix(size_text.split(';').next().unwrap().trim(), 16).unwrap();
        raw = &raw[line_end + 2..];
        if size == 0 {
            return body;
        }
        body.extend_from_slice(&raw[..size]);
        raw = &raw[size + 2..];
    }
}

fn decode_arrow(body: &[u8]) -> (SchemaRef, Vec<RecordBatch>) {
    let reader = StreamReader::try_new(body, None).unwrap();
    let schema = reader.schema();
    (schema, reader.collect::<Result<_, _>>().unwrap())
}

async fn count(server: &Server) -> i64 {
    let reply = server.sql("SELECT count(*) AS n FROM sightings").await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    reply.json()[0]["n"].as_i64().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_is_the_default_with_exact_rows_and_rfc3339_timestamps() {
    let server = Server::with_defaults().await;
    let reply = server.sql("SELECT * FROM sightings ORDER BY person").await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(reply.header("content-type"), Some("application/json"));
    assert_eq!(
        reply.json(),
        json!([
            {"camera": "cam-a", "person": 1, "seen_at": "2024-05-01T10:00:00Z", "score": 0.5},
            {"camera": "cam-b", "person": 2, "seen_at": "2024-05-01T10:00:01Z", "score": null},
            {"camera": "cam-a", "person": 3, "seen_at": "2024-05-01T10:00:02Z", "score": 0.25},
        ])
    );

    let reply = server
        .sql(
            "WITH per_camera AS (SELECT camera, count(*) AS n FROM sightings GROUP BY camera) \
             SELECT camera, n FROM per_camera ORDER BY camera",
        )
        .await;
    assert_eq!(
        reply.json(),
        json!([{"camera": "cam-a", "n": 2}, {"camera": "cam-b", "n": 1}])
    );

    let empty = server.sql("SELECT * FROM sightings WHERE person < 0").await;
    assert_eq!((empty.status, empty.text()), (200, "[]"));

    let explain = server.sql("EXPLAIN SELECT count(*) FROM sightings").await;
    assert_eq!(explain.status, 200, "{}", explain.text());
    let plans = explain.json();
    assert_eq!(plans[0]["plan_type"], "logical_plan");

    let tables = server
        .sql("SELECT table_name FROM information_schema.tables WHERE table_schema = 'public'")
        .await;
    assert_eq!(tables.json(), json!([{"table_name": "sightings"}]));
    let show = server.sql("SHOW TABLES").await;
    assert_eq!(show.status, 200, "{}", show.text());
    let describe = server.sql("DESCRIBE sightings").await;
    assert_eq!(describe.status, 200, "{}", describe.text());
    let columns: Vec<Value> = describe
        .json()
        .as_array()
        .unwrap()
        .iter()
        .map(|column| column["column_name"].clone())
        .collect();
    assert_eq!(
        columns,
        [
            json!("camera"),
            json!("person"),
            json!("seen_at"),
            json!("score")
        ]
    );

    let health = request(server.address, "GET", "/healthz", &[], b"").await;
    assert_eq!((health.status, health.text()), (200, "ok"));
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn csv_arrow_parquet_and_table_by_query_or_accept() {
    let server = Server::with_defaults().await;
    let sql = b"SELECT * FROM sightings ORDER BY person";
    let expected_csv = "camera,person,seen_at,score\n\
                        cam-a,1,2024-05-01T10:00:00Z,0.5\n\
                        cam-b,2,2024-05-01T10:00:01Z,\n\
                        cam-a,3,2024-05-01T10:00:02Z,0.25\n";
    for (target, headers) in [
        ("/sql?format=csv", &[][..]),
        ("/sql", &[("Accept", "text/csv")][..]),
        ("/sql?format=csv", &[("Accept", "application/json")][..]),
    ] {
        let reply = server.post(target, headers, sql).await;
        assert_eq!(reply.status, 200, "{}", reply.text());
        assert_eq!(
            reply.header("content-type"),
            Some("text/csv; charset=utf-8")
        );
        assert_eq!(reply.text(), expected_csv, "{target} {headers:?}");
    }
    let empty = server
        .post(
            "/sql?format=csv",
            &[],
            b"SELECT camera, person FROM sightings WHERE false",
        )
        .await;
    assert_eq!((empty.status, empty.text()), (200, "camera,person\n"));

    for (target, headers) in [
        ("/sql?format=arrow", &[][..]),
        (
            "/sql",
            &[(
                "Accept",
                "text/csv;q=0.5, application/vnd.apache.arrow.stream",
            )][..],
        ),
    ] {
        let reply = server.post(target, headers, sql).await;
        assert_eq!(reply.status, 200, "{}", reply.text());
        assert_eq!(
            reply.header("content-type"),
            Some("application/vnd.apache.arrow.stream")
        );
        let (schema, batches) = decode_arrow(&reply.body);
        assert_eq!(schema, three_rows_as_read().schema());
        let all = datafusion::arrow::compute::concat_batches(&schema, &batches).unwrap();
        assert_eq!(all, three_rows_as_read());
    }

    let reply = server.post("/sql?format=parquet", &[], sql).await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(
        reply.header("content-type"),
        Some("application/vnd.apache.parquet")
    );
    let batches: Vec<RecordBatch> =
        ParquetRecordBatchReaderBuilder::try_new(Bytes::from(reply.body))
            .unwrap()
            .build()
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
    assert_eq!(batches, [three_rows_as_read()]);

    let reply = server
        .post(
            "/sql",
            &[("Accept", "text/plain")],
            b"SELECT camera, person FROM sightings ORDER BY person LIMIT 1",
        )
        .await;
    assert_eq!(
        reply.header("content-type"),
        Some("text/plain; charset=utf-8")
    );
    assert_eq!(
        reply.text(),
        "+--------+--------+\n\
         | camera | person |\n\
         +--------+--------+\n\
         | cam-a  | 1      |\n\
         +--------+--------+\n"
    );

    let unknown = server.post("/sql?format=xml", &[], sql).await;
    assert_eq!(unknown.status, 400);
    assert!(unknown.error().contains("unknown output format \"xml\""));
    let unacceptable = server.post("/sql", &[("Accept", "image/png")], sql).await;
    assert_eq!(unacceptable.status, 406);
    assert!(unacceptable.error().contains("Accept"));
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn new_parquet_files_are_seen_by_the_next_query() {
    let server = Server::with_defaults().await;
    assert_eq!(count(&server).await, 3);
    write_parquet(
        &server.dir().join("sightings/part-1.parquet"),
        &batch(4, &["cam-c", "cam-c"], &[None, Some(1.0)]),
    );
    assert_eq!(count(&server).await, 5);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_guards_everything_but_healthz() {
    let settings = HttpSettings {
        token: Some("s3cret".into()),
        ..HttpSettings::default()
    };
    let server = Server::start(settings, 256 << 20).await;
    let sql = b"SELECT count(*) AS n FROM sightings";

    let missing = server.post("/sql", &[], sql).await;
    assert_eq!(missing.status, 401);
    assert_eq!(missing.header("www-authenticate"), Some("Bearer"));
    assert!(missing.error().contains("Authorization: Bearer"));

    for wrong in ["Bearer s3crex", "Bearer s3cret2", "Basic s3cret", "s3cret"] {
        let reply = server.post("/sql", &[("Authorization", wrong)], sql).await;
        assert_eq!(reply.status, 401, "{wrong}");
        assert_eq!(reply.header("www-authenticate"), Some("Bearer"));
    }

    let right = server
        .post("/sql", &[("Authorization", "Bearer s3cret")], sql)
        .await;
    assert_eq!(right.status, 200, "{}", right.text());
    assert_eq!(right.json(), json!([{"n": 3}]));

    let health = request(server.address, "GET", "/healthz", &[], b"").await;
    assert_eq!((health.status, health.text()), (200, "ok"));
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn anything_that_writes_is_refused_and_changes_nothing() {
    let server = Server::with_defaults().await;
    let dir = server.dir().to_path_buf();
    let copy_target = dir.join("x.csv");
    let part = dir.join("sightings/part-0.parquet");
    let statements = [
        "CREATE TABLE t (a INT)".to_string(),
        "CREATE TABLE t AS SELECT * FROM sightings".to_string(),
        "CREATE VIEW v AS SELECT * FROM sightings".to_string(),
        format!(
            "CREATE EXTERNAL TABLE ext STORED AS PARQUET LOCATION '{}'",
            part.display()
        ),
        "CREATE SCHEMA s".to_string(),
        "DROP TABLE sightings".to_string(),
        "DROP VIEW IF EXISTS v".to_string(),
        format!("INSERT INTO sightings VALUES ('cam-x', 9, to_timestamp_micros({T0}), 1.0)"),
        format!(
            "EXPLAIN ANALYZE INSERT INTO sightings VALUES \
             ('cam-x', 9, to_timestamp_micros({T0}), 1.0)"
        ),
        "DELETE FROM sightings WHERE person = 1".to_string(),
        "UPDATE sightings SET score = 0".to_string(),
        format!("COPY (SELECT 1) TO '{}'", copy_target.display()),
        format!(
            "COPY sightings TO '{}' STORED AS CSV",
            copy_target.display()
        ),
        "SET datafusion.execution.batch_size = 1".to_string(),
        "RESET datafusion.execution.batch_size".to_string(),
        "PREPARE q(INT) AS SELECT $1".to_string(),
    ];
    for statement in &statements {
        let reply = server.sql(statement).await;
        assert_eq!(reply.status, 403, "{statement}: {}", reply.text());
        let error = reply.error();
        assert!(
            error.starts_with("read-only service: ") && error.contains("are refused"),
            "{statement}: {error}"
        );
    }
    for (statement, detail) in [
        ("DROP TABLE sightings", "DDL not supported: DropTable"),
        ("DELETE FROM sightings", "DML not supported: Delete"),
        ("COPY (SELECT 1) TO 'y.csv'", "DML not supported: COPY"),
        (
            "SET datafusion.execution.batch_size = 1",
            "Statement not supported: SetVariable",
        ),
    ] {
        let error = server.sql(statement).await.error();
        assert!(error.contains(detail), "{statement}: {error}");
    }

    // Two statements at once, or ones DataFusion cannot plan, never run.
    for statement in ["SELECT 1; DROP TABLE sightings", "BEGIN TRANSACTION"] {
        let reply = server.sql(statement).await;
        assert_eq!(reply.status, 400, "{statement}: {}", reply.text());
    }

    assert_eq!(count(&server).await, 3);
    for name in ["t", "v", "ext"] {
        let reply = server.sql(&format!("SELECT * FROM {name}")).await;
        assert_eq!(reply.status, 400, "{name}: {}", reply.text());
    }
    let batch_size = server
        .sql(
            "SELECT value FROM information_schema.df_settings \
             WHERE name = 'datafusion.execution.batch_size'",
        )
        .await;
    assert_eq!(
        batch_size.json(),
        json!([{"value": aggregator::query::BATCH_ROWS.to_string()}]),
        "the refused SET changed nothing"
    );
    assert!(
        !copy_target.exists(),
        "COPY wrote {}",
        copy_target.display()
    );
    let mut files: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    files.sort();
    assert_eq!(files, ["sightings"]);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_requests_get_400_413_with_the_reason() {
    let settings = HttpSettings {
        max_request_bytes: 100,
        ..HttpSettings::default()
    };
    let server = Server::start(settings, 256 << 20).await;

    let typo = server.sql("SELEC * FROM sightings").await;
    assert_eq!(typo.status, 400);
    assert!(typo.error().contains("SELEC"), "{}", typo.text());

    let missing = server.sql("SELECT * FROM nowhere").await;
    assert_eq!(missing.status, 400);
    assert!(missing.error().contains("nowhere"), "{}", missing.text());

    let column = server.sql("SELECT colour FROM sightings").await;
    assert_eq!(column.status, 400);
    assert!(column.error().contains("colour"), "{}", column.text());

    let division = server.sql("SELECT person / 0 FROM sightings").await;
    assert_eq!(division.status, 400, "{}", division.text());
    assert!(
        division.error().contains("Divide by zero"),
        "{}",
        division.text()
    );

    let empty = server.sql("  ").await;
    assert_eq!(empty.status, 400);
    assert!(empty.error().contains("empty request body"));

    let binary = server.post("/sql", &[], &[0xff, 0xfe, 0x00]).await;
    assert_eq!(binary.status, 400);
    assert!(binary.error().contains("UTF-8"));

    let long = format!("SELECT 1 -- {}", "x".repeat(200));
    let too_long = server.sql(&long).await;
    assert_eq!(too_long.status, 413, "{}", too_long.text());
    assert!(!too_long.error().is_empty());

    // The service is fine afterwards.
    assert_eq!(count(&server).await, 3);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn results_over_max_result_rows_are_refused() {
    let settings = HttpSettings {
        max_result_rows: 2,
        ..HttpSettings::default()
    };
    let server = Server::start(settings, 256 << 20).await;
    let reply = server.sql("SELECT * FROM sightings").await;
    assert_eq!(reply.status, 422, "{}", reply.text());
    assert!(
        reply.error().contains("more than 2 rows"),
        "{}",
        reply.text()
    );
    let reply = server.sql("SELECT * FROM sightings LIMIT 2").await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_queries_time_out_with_504_and_the_service_goes_on() {
    let settings = HttpSettings {
        query_timeout_s: 0.2,
        ..HttpSettings::default()
    };
    let server = Server::start(settings, 256 << 20).await;
    let started = std::time::Instant::now();
    let reply = server.sql(SLOW_SQL).await;
    assert_eq!(reply.status, 504, "{}", reply.text());
    assert!(reply.error().contains("0.2s"), "{}", reply.text());
    // Answered on time even though the query's threads are busy.
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(count(&server).await, 3);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queries_beyond_the_memory_pool_get_507_and_the_service_goes_on() {
    let server = Server::start(HttpSettings::default(), 2 << 20).await;
    let reply = server
        .sql("SELECT array_length(array_agg(value)) FROM generate_series(1, 3000000)")
        .await;
    assert_eq!(reply.status, 507, "{}", reply.text());
    let error = reply.error();
    assert!(
        error.starts_with("the query needs more memory than this service allows"),
        "{error}"
    );
    assert_eq!(count(&server).await, 3);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queries_beyond_max_concurrent_queries_get_429_at_once() {
    let settings = HttpSettings {
        max_concurrent_queries: 1,
        query_timeout_s: 3.0,
        ..HttpSettings::default()
    };
    let server = Server::start(settings, 256 << 20).await;
    let address = server.address;
    let slow =
        tokio::spawn(
            async move { request(address, "POST", "/sql", &[], SLOW_SQL.as_bytes()).await },
        );
    // The slow query holds the only slot for 3 s; within that time another
    // query must be turned away (retrying covers the slow one starting late).
    let mut busy = None;
    for _ in 0..20 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let reply = server.sql("SELECT 1").await;
        if reply.status == 429 {
            busy = Some(reply);
            break;
        }
    }
    let busy = busy.expect("a 429 while the slow query runs");
    assert_eq!(busy.header("retry-after"), Some("1"));
    assert!(
        busy.error().contains("max_concurrent_queries"),
        "{}",
        busy.text()
    );
    assert_eq!(slow.await.unwrap().status, 504);
    // The timed-out query keeps its slot until its task has been dropped,
    // which happens at its next yield: moments later.
    let mut answered = None;
    for _ in 0..50 {
        let reply = server.sql("SELECT count(*) AS n FROM sightings").await;
        if reply.status != 429 {
            answered = Some(reply);
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let answered = answered.expect("the slot is free again within 5 s");
    assert_eq!(answered.status, 200, "{}", answered.text());
    assert_eq!(answered.json(), json!([{"n": 3}]));
    server.stop().await;
}

/// The API as `aggregator run`/`serve` builds it from the configuration:
/// SQL over the committed tables (views with merges) and the canned
/// reports, both behind the token, on a synthetic store with known truth.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_configured_api_answers_sql_and_reports_behind_the_token() {
    use aggregator::config::{AggregatorConfig, Department};
    use aggregator::synth::{SynthConfig, Truth};

    let dir = tempfile::tempdir().unwrap();
    let synth = SynthConfig {
        people_per_day: 120,
        full_tour_fraction: 0.3,
        ..SynthConfig::default()
    };
    let storage = aggregator::store::Storage::local(dir.path()).unwrap();
    aggregator::bench::generate(storage, &synth, 5_000)
        .await
        .unwrap();
    let truth = Truth::generate(&synth);
    let departments = Department::group(synth.camera_departments());
    let settings = HttpSettings {
        token: Some("s3cret".into()),
        max_concurrent_queries: 1,
        query_timeout_s: 3.0,
        ..HttpSettings::default()
    };
    let mut config = AggregatorConfig::new(
        service_kit::kafka::KafkaSettings::new("127.0.0.1:9"),
        dir.path().to_path_buf(),
    );
    config.departments = departments;
    config.http = Some(settings.clone());
    let router = aggregator::api::router(
        &config,
        &settings,
        service_kit::shutdown::Shutdown::from_future(std::future::pending()),
    )
    .await
    .unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(http::serve(listener, router, async move {
        let _ = stopped.await;
    }));
    let auth = [("Authorization", "Bearer s3cret")];
    let day = aggregator::rows::utc_date(synth.start_day_us);

    let denied = request(
        address,
        "GET",
        &format!("/reports/coverage?day={day}"),
        &[],
        b"",
    )
    .await;
    assert_eq!(denied.status, 401);
    let reply = request(
        address,
        "GET",
        &format!("/reports/coverage?day={day}"),
        &auth,
        b"",
    )
    .await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    let json = reply.json();
    assert_eq!(json["report"], "coverage");
    let everywhere = &json["results"][0]["rows"][0]["people_in_every_department"];
    assert_eq!(
        everywhere.as_i64(),
        Some(truth.people_in_every_department(synth.start_day_us).len() as i64),
        "{json}"
    );
    assert!(
        json["results"][0]["sql"]
            .as_str()
            .unwrap()
            .contains("departments")
    );
    let covered: Vec<bool> = json["results"][1]["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|row| row["fully_covered"].as_bool().unwrap())
        .collect();
    assert_eq!(covered, vec![true; truth.departments.len()]);

    let bad = request(
        address,
        "GET",
        "/reports/coverage?day=2025-02-30",
        &auth,
        b"",
    )
    .await;
    assert_eq!(bad.status, 400);
    assert!(bad.error().contains("2025-02-30"), "{}", bad.text());
    let missing = request(address, "GET", "/reports/nope", &auth, b"").await;
    assert_eq!(missing.status, 404);

    // Reports take the SQL service's slots: while a slow query holds the
    // only one, a report is turned away at once.
    let slow =
        tokio::spawn(
            async move { request(address, "POST", "/sql", &auth, SLOW_SQL.as_bytes()).await },
        );
    let occupancy = format!("/reports/occupancy?day={day}");
    let mut busy = None;
    for _ in 0..20 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let reply = request(address, "GET", &occupancy, &auth, b"").await;
        if reply.status == 429 {
            busy = Some(reply);
            break;
        }
    }
    let busy = busy.expect("a report refused while the slow query runs");
    assert_eq!(busy.header("retry-after"), Some("1"));
    assert_eq!(slow.await.unwrap().status, 504);

    let mut reply = None;
    for _ in 0..50 {
        let answer = request(
            address,
            "POST",
            "/sql?format=csv",
            &auth,
            b"SELECT COUNT(*) AS people FROM unique_people",
        )
        .await;
        if answer.status != 429 {
            reply = Some(answer);
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let reply = reply.expect("the slot is free again within 5 s");
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(
        reply.text(),
        format!("people\n{}\n", truth.unique_people_after_merges())
    );
    let _ = stop.send(());
    task.await.unwrap().unwrap();
}
