//! SQL over the committed Parquet tables with DataFusion.
//!
//! Stored tables are registered under [`Table::sql_name`] (with their `date`
//! partition column) and read through the manifest's committed view, so new
//! commits are visible to the next query without a restart and uncommitted
//! or replaced files never are. Analysts query the views:
//!
//! - `person_alias(person_id, canonical_id)`: every merged-away id and the id
//!   it finally became (merge chains followed).
//! - `people_present`, `unique_people`, `tracks`: the stored rows with merges
//!   applied (`people_present.tracked_person_id` keeps the id as tracked).
//! - `transitions(person_id, from_camera, to_camera, left_at, arrived_at)`:
//!   consecutive visits of a person at different cameras.
//! - `camera_health(camera_id, state, from, to)`: health reports as intervals.
//! - `departments(camera_id, department)`: the configured mapping.

use std::path::Path;
use std::sync::Arc;

use datafusion::arrow::array::{RecordBatch, StringArray};
use datafusion::arrow::datatypes::{DataType, Field, Schema};
use datafusion::arrow::util::pretty::pretty_format_batches;
use datafusion::datasource::MemTable;
use datafusion::datasource::file_format::parquet::ParquetFormat;
use datafusion::datasource::listing::ListingOptions;
use datafusion::error::DataFusionError;
use datafusion::execution::cache::cache_manager::CacheManagerConfig;
use datafusion::execution::runtime_env::{RuntimeEnv, RuntimeEnvBuilder};
use datafusion::prelude::{SessionConfig, SessionContext};
use schemas::tables::Table;

use crate::config::Department;
use crate::store::{Storage, StoreError};

/// A query could not be answered.
#[derive(Debug, thiserror::Error)]
pub enum QueryError {
    /// The SQL is invalid or failed (message from DataFusion).
    #[error("{0}")]
    DataFusion(#[from] DataFusionError),
    /// The storage could not be opened.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Results could not be rendered.
    #[error("formatting results: {0}")]
    Format(#[from] datafusion::arrow::error::ArrowError),
}

/// How a query session is set up.
#[derive(Debug, Clone, Default)]
pub struct QueryOptions {
    /// Memory a session's queries may hold at once (bytes); `None`: unlimited.
    pub memory_limit_bytes: Option<usize>,
    /// Camera → department mapping, registered as `departments`.
    pub departments: Vec<Department>,
}

/// Views over the stored tables, in creation order (DataFusion dialect).
pub const VIEWS: [(&str, &str); 6] = [
    (
        "person_alias",
        // The deepest link of each chain wins (ties: the smallest id). Most
        // merged ids are merged once, so the recursion starts only from
        // links that continue (depth 2) and every other id takes its
        // single (or smallest) link; walking every link recursively, as a
        // plain chain would, costs DataFusion twice as much again. An
        // ordered aggregate picks the deepest: a window over millions of
        // one- or two-row partitions costs DataFusion far more.
        "WITH RECURSIVE longer(person_id, canonical_id, depth) AS ( \
           SELECT m.from_person_id, n.into_person_id, 2 \
           FROM id_merges m JOIN id_merges n ON m.into_person_id = n.from_person_id \
           UNION ALL \
           SELECT c.person_id, m.into_person_id, c.depth + 1 \
           FROM longer c JOIN id_merges m ON c.canonical_id = m.from_person_id \
           WHERE c.depth < 64), \
         deepest AS (SELECT person_id, \
             FIRST_VALUE(canonical_id ORDER BY depth DESC, canonical_id) AS canonical_id \
           FROM longer GROUP BY person_id) \
         SELECT m.from_person_id AS person_id, \
                COALESCE(MIN(d.canonical_id), MIN(m.into_person_id)) AS canonical_id \
         FROM id_merges m LEFT JOIN deepest d ON m.from_person_id = d.person_id \
         GROUP BY m.from_person_id",
    ),
    // The merged views join `person_alias a RIGHT JOIN <table>` rather than
    // `<table> LEFT JOIN person_alias`: DataFusion builds its hash table on
    // the join's left side, and the alias map is the small one.
    (
        "people_present",
        "SELECT COALESCE(a.canonical_id, p.person_id) AS person_id, p.camera_id, p.enter, p.exit, \
                p.track_id, p.detections, p.mean_score, p.event_id, \
                p.person_id AS tracked_person_id, p.date \
         FROM person_alias a RIGHT JOIN people_present_raw p ON p.person_id = a.person_id",
    ),
    (
        "unique_people",
        "SELECT COALESCE(a.canonical_id, u.id) AS id, MIN(u.first_seen) AS first_seen, \
                FIRST_VALUE(u.first_camera ORDER BY u.first_seen, u.id) AS first_camera, \
                COUNT(DISTINCT u.id) AS tracked_ids \
         FROM person_alias a RIGHT JOIN unique_people_raw u ON u.id = a.person_id \
         GROUP BY COALESCE(a.canonical_id, u.id)",
    ),
    (
        "tracks",
        "SELECT t.camera_id, t.track_id, COALESCE(a.canonical_id, t.person_id) AS person_id, \
                t.first_seen, t.last_seen, t.detections, t.mean_score, t.first_x, t.first_y, \
                t.last_x, t.last_y, t.path_px, t.max_speed_px_s, t.mean_height_px, t.event_id, \
                t.person_id AS tracked_person_id, t.date \
         FROM person_alias a RIGHT JOIN tracks_raw t ON t.person_id = a.person_id",
    ),
    (
        "transitions",
        // PARTITION BY person_id & 63, not person_id: DataFusion's cost per
        // window partition dominates with millions of people, while 64
        // buckets still spread the window over every core. Ordered by person
        // within a bucket, the previous row's person says whether a visit
        // had a predecessor.
        "SELECT person_id, from_camera, to_camera, left_at, arrived_at FROM ( \
           SELECT person_id, LAG(person_id) OVER w AS previous_person, \
                  LAG(camera_id) OVER w AS from_camera, camera_id AS to_camera, \
                  LAG(exit) OVER w AS left_at, enter AS arrived_at \
           FROM people_present WINDOW w AS (PARTITION BY person_id & 63 ORDER BY person_id, enter, exit, camera_id)) AS visits \
         WHERE previous_person = person_id AND from_camera <> to_camera",
    ),
    ("camera_health", CAMERA_HEALTH),
];

/// The `camera_health` view: each camera's reports grouped by (state,
/// since) into intervals that end where the next begins (or at the last
/// report). The edge agent keeps one `since` across the states of one
/// outage (DOWN, STALLED, RECONNECTING), so a later state of the same
/// outage starts at its first report rather than at the shared `since`.
const CAMERA_HEALTH: &str = "SELECT camera_id, state, \"from\", \
         COALESCE(LEAD(\"from\") OVER (PARTITION BY camera_id ORDER BY \"from\", first_report), last_report) AS \"to\" \
  FROM (SELECT camera_id, state, first_report, last_report, \
          CASE WHEN LAG(since) OVER (PARTITION BY camera_id ORDER BY since, first_report) = since \
            THEN first_report ELSE since END AS \"from\" \
        FROM (SELECT camera_id, state, since, MIN(ts) AS first_report, MAX(ts) AS last_report \
              FROM camera_health_reports GROUP BY camera_id, state, since) AS states) AS starts";

/// The `camera_health` intervals built from the reports of the `date`
/// partitions `first..=last` only (`YYYY-MM-DD`), so a question about a
/// day reads that day's reports, not the whole history. Reports come every
/// few seconds, so every state a camera was in during a day has reports
/// that day; reports of the day before and after fill the day's edges (a
/// state begun before it, the start of the next). A camera silent for more
/// than a day before `first` shows as unreported, not in its old state.
pub fn camera_health_between(first: &str, last: &str) -> String {
    let quote = |day: &str| format!("'{}'", day.replace('\'', "''"));
    CAMERA_HEALTH.replace(
        "FROM camera_health_reports GROUP BY",
        &format!(
            "FROM camera_health_reports WHERE date >= {} AND date <= {} GROUP BY",
            quote(first),
            quote(last)
        ),
    )
}

/// A session over a local data directory, with default options.
pub async fn context(data_dir: &Path) -> Result<SessionContext, QueryError> {
    open(&Storage::local(data_dir)?, &QueryOptions::default()).await
}

/// Rows per record batch. DataFusion's default (8192) makes a sort of tens
/// of millions of visits (the transitions window) a merge of thousands of
/// sorted batches; with 65536 the week of transitions on the 100M-row
/// benchmark set took 6.8 s instead of 8.8 s, and no report got slower.
pub const BATCH_ROWS: usize = 65_536;

/// The configuration and runtime of every aggregator session: the listing
/// cache is off (DataFusion 55 caches directory listings forever by
/// default, and the committed view must be asked on every query, so new
/// commits show), `information_schema` is on (`SHOW TABLES`), batches are
/// [`BATCH_ROWS`] rows, and with `memory_limit_bytes` all running queries
/// share one pool of that size.
pub fn session_setup(
    memory_limit_bytes: Option<usize>,
) -> Result<(SessionConfig, Arc<RuntimeEnv>), DataFusionError> {
    let mut runtime = RuntimeEnvBuilder::new()
        .with_cache_manager(CacheManagerConfig::default().with_list_files_cache_limit(0));
    if let Some(bytes) = memory_limit_bytes {
        runtime = runtime.with_memory_limit(bytes, 1.0);
    }
    Ok((
        SessionConfig::new()
            .with_information_schema(true)
            .with_batch_size(BATCH_ROWS),
        runtime.build_arc()?,
    ))
}

/// A session over `storage` with every table and view registered.
pub async fn open(storage: &Storage, options: &QueryOptions) -> Result<SessionContext, QueryError> {
    let (config, runtime) = session_setup(options.memory_limit_bytes)?;
    let ctx = SessionContext::new_with_config_rt(config, runtime);
    ctx.register_object_store(storage.base_url(), storage.committed_view());
    for table in Table::ALL {
        let listing = ListingOptions::new(Arc::new(ParquetFormat::default()))
            .with_file_extension(".parquet")
            .with_table_partition_cols(vec![("date".to_string(), DataType::Utf8)]);
        ctx.register_listing_table(
            table.sql_name(),
            storage.table_url(table),
            listing,
            Some(table.schema()),
            None,
        )
        .await?;
    }
    ctx.register_table(
        "departments",
        Arc::new(departments_table(&options.departments)?),
    )?;
    for (name, body) in VIEWS {
        ctx.sql(&format!("CREATE VIEW {name} AS {body}"))
            .await?
            .collect()
            .await?;
    }
    Ok(ctx)
}

/// `departments(camera_id, department)` from the configuration.
fn departments_table(departments: &[Department]) -> Result<MemTable, QueryError> {
    let schema = Arc::new(Schema::new(vec![
        Field::new("camera_id", DataType::Utf8, false),
        Field::new("department", DataType::Utf8, false),
    ]));
    let pairs: Vec<(&str, &str)> = departments
        .iter()
        .flat_map(|d| d.cameras.iter().map(|c| (c.as_str(), d.name.as_str())))
        .collect();
    let batch = RecordBatch::try_new(
        Arc::clone(&schema),
        vec![
            Arc::new(StringArray::from_iter_values(pairs.iter().map(|p| p.0))),
            Arc::new(StringArray::from_iter_values(pairs.iter().map(|p| p.1))),
        ],
    )?;
    Ok(MemTable::try_new(schema, vec![vec![batch]])?)
}

/// DuckDB statements that set up the same tables and views over the same
/// Parquet files under the local directory `root` (for the side-by-side
/// benchmark). Only the stored tables in `tables` are declared (DuckDB
/// refuses a glob without files), with the views that need only those.
pub fn duckdb_setup(root: &Path, tables: &[Table], departments: &[Department]) -> String {
    let mut sql = String::from("SET TimeZone = 'UTC';\n");
    for table in tables {
        sql.push_str(&format!(
            "CREATE VIEW {} AS SELECT * FROM read_parquet('{}/{}/*/*.parquet', \
             hive_partitioning = true, hive_types = {{'date': VARCHAR}});\n",
            table.sql_name(),
            root.display().to_string().replace('\'', "''"),
            table.name()
        ));
    }
    sql.push_str("CREATE TABLE departments (camera_id VARCHAR, department VARCHAR);\n");
    for d in departments {
        for camera in &d.cameras {
            sql.push_str(&format!(
                "INSERT INTO departments VALUES ('{}', '{}');\n",
                camera.replace('\'', "''"),
                d.name.replace('\'', "''")
            ));
        }
    }
    let needs = |view: &str| -> &[Table] {
        match view {
            "person_alias" => &[Table::IdMerges],
            "people_present" | "transitions" => &[Table::IdMerges, Table::PeoplePresent],
            "unique_people" => &[Table::IdMerges, Table::UniquePeople],
            "tracks" => &[Table::IdMerges, Table::Tracks],
            "camera_health" => &[Table::CameraHealth],
            _ => &[],
        }
    };
    for (name, body) in VIEWS {
        if !needs(name).iter().all(|t| tables.contains(t)) {
            continue;
        }
        // DataFusion's ordered aggregate FIRST_VALUE(x ORDER BY ...) is
        // DuckDB's first(x ORDER BY ...) (FIRST_VALUE is a window there).
        let body = body.replace("FIRST_VALUE(", "first(");
        sql.push_str(&format!("CREATE VIEW {name} AS {body};\n"));
    }
    sql
}

/// Runs one statement and returns its batches.
pub async fn sql(ctx: &SessionContext, statement: &str) -> Result<Vec<RecordBatch>, QueryError> {
    Ok(ctx.sql(statement).await?.collect().await?)
}

/// Runs one statement and renders the result as a text table.
pub async fn sql_text(ctx: &SessionContext, statement: &str) -> Result<String, QueryError> {
    let batches = sql(ctx, statement).await?;
    Ok(pretty_format_batches(&batches)?.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::array::{
        Array, ArrayRef, AsArray, TimestampMicrosecondArray, UInt64Array,
    };
    use datafusion::arrow::datatypes::{TimeUnit, TimestampMicrosecondType, UInt64Type};

    /// A session holding one in-memory table `name` with these columns.
    fn one_table(name: &str, schema: Arc<Schema>, columns: Vec<ArrayRef>) -> SessionContext {
        let batch = RecordBatch::try_new(Arc::clone(&schema), columns).unwrap();
        let ctx = SessionContext::new();
        ctx.register_table(
            name,
            Arc::new(MemTable::try_new(schema, vec![vec![batch]]).unwrap()),
        )
        .unwrap();
        ctx
    }

    /// One outage that moves DOWN → STALLED → DOWN under one `since`, between
    /// two UP periods: the intervals tile the time, and the outage's states
    /// together cover exactly the outage.
    #[tokio::test]
    async fn one_outage_across_states_is_one_blind_stretch() {
        let ts = || DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into()));
        let schema = Arc::new(Schema::new(vec![
            Field::new("camera_id", DataType::Utf8, false),
            Field::new("state", DataType::Utf8, false),
            Field::new("since", ts(), false),
            Field::new("ts", ts(), false),
            Field::new("date", DataType::Utf8, false),
        ]));
        let rows = [
            ("UP", 0, 0),
            ("UP", 0, 10),
            ("DOWN", 20, 20),
            ("DOWN", 20, 30),
            ("STALLED", 20, 40),
            ("STALLED", 20, 50),
            ("DOWN", 20, 60),
            ("UP", 70, 70),
            ("UP", 70, 80),
        ];
        let micros = |pick: fn(&(&str, i64, i64)) -> i64| {
            TimestampMicrosecondArray::from(rows.iter().map(pick).collect::<Vec<_>>())
                .with_timezone("UTC")
        };
        let ctx = one_table(
            "camera_health_reports",
            schema,
            vec![
                Arc::new(StringArray::from(vec!["c"; rows.len()])),
                Arc::new(StringArray::from_iter_values(rows.iter().map(|r| r.0))),
                Arc::new(micros(|r| r.1)),
                Arc::new(micros(|r| r.2)),
                Arc::new(StringArray::from(vec!["1970-01-01"; rows.len()])),
            ],
        );
        for query in [
            CAMERA_HEALTH.to_string(),
            camera_health_between("1969-12-31", "1970-01-02"),
        ] {
            assert!(query.contains("camera_health_reports"));
            let batches = sql(&ctx, &format!("{query} ORDER BY \"from\""))
                .await
                .unwrap();
            let mut intervals = Vec::new();
            for b in &batches {
                let state = b.column(1).as_string::<i32>();
                let from = b.column(2).as_primitive::<TimestampMicrosecondType>();
                let to = b.column(3).as_primitive::<TimestampMicrosecondType>();
                for i in 0..b.num_rows() {
                    assert!(!to.is_null(i));
                    intervals.push((state.value(i).to_string(), from.value(i), to.value(i)));
                }
            }
            let expected: Vec<(String, i64, i64)> = [
                ("UP", 0, 20),
                ("DOWN", 20, 40),
                ("STALLED", 40, 70),
                ("UP", 70, 80),
            ]
            .iter()
            .map(|(s, f, t)| (s.to_string(), *f, *t))
            .collect();
            assert_eq!(intervals, expected, "{query}");
        }
        assert!(
            camera_health_between("2025-01-05", "2025-01-07")
                .contains("WHERE date >= '2025-01-05' AND date <= '2025-01-07' GROUP BY")
        );
    }

    /// Merge chains resolve to their deepest link: single links, a chain of
    /// three, a branch whose longer arm wins, ties at depth 1 and 2
    /// (smallest id) and a cycle, cut at depth 64.
    #[tokio::test]
    async fn person_alias_follows_chains_to_the_deepest_link() {
        let links: [(u64, u64); 16] = [
            (1, 2),
            (3, 4),
            (4, 5),
            (5, 6),
            (7, 8),
            (7, 9),
            (9, 10),
            (11, 13),
            (11, 12),
            (20, 21),
            (21, 20),
            (30, 1),
            (40, 41),
            (40, 42),
            (41, 44),
            (42, 43),
        ];
        let schema = Arc::new(Schema::new(vec![
            Field::new("from_person_id", DataType::UInt64, false),
            Field::new("into_person_id", DataType::UInt64, false),
        ]));
        let ctx = one_table(
            "id_merges",
            schema,
            vec![
                Arc::new(UInt64Array::from_iter_values(links.iter().map(|l| l.0))),
                Arc::new(UInt64Array::from_iter_values(links.iter().map(|l| l.1))),
            ],
        );
        let (_, body) = VIEWS[0];
        let batches = sql(&ctx, &format!("{body} ORDER BY person_id"))
            .await
            .unwrap();
        let mut alias = Vec::new();
        for b in &batches {
            let from = b.column(0).as_primitive::<UInt64Type>();
            let into = b.column(1).as_primitive::<UInt64Type>();
            alias.extend((0..b.num_rows()).map(|i| (from.value(i), into.value(i))));
        }
        assert_eq!(
            alias,
            [
                (1, 2),
                (3, 6),
                (4, 6),
                (5, 6),
                (7, 10),
                (9, 10),
                (11, 12),
                // 20 → 21 → 20 → …: the 64th link leads back to 20.
                (20, 20),
                (21, 21),
                (30, 2),
                // Two arms of depth 2: the smaller end wins.
                (40, 43),
                (41, 44),
                (42, 43),
            ]
        );
    }
}
