//! Canned reports: the questions the system was built to answer, as SQL
//! over the merged views and the configured `departments` mapping.
//!
//! Every report is plain SQL (printed with `--show-sql`), written so the
//! same text runs on DataFusion and, for the side-by-side benchmark, on
//! DuckDB; [`Dialect`] covers the differences (timestamp literals, µs
//! conversions).
//! Times are UTC; a "day" is a UTC calendar day and a visit belongs to the
//! day its `enter` falls on (which is also its `date` partition).
//!
//! - [`Report::Transitions`]: people who went from department X to Y: two
//!   consecutive visits of one (merged) person, ordered by (enter, exit),
//!   at cameras of different departments, counted where the arrival's
//!   enter lies in the window. Without X and Y: the whole matrix.
//! - [`Report::Coverage`]: people seen in every department on a day, and
//!   per department whether its cameras could see all day (up to now, for
//!   today): cameras that sent no health report, cameras not UP for part of
//!   it and for how long, seconds without any report (the `camera_health`
//!   intervals of the reports from the day before to the day after, see
//!   [`crate::query::camera_health_between`]; more than [`COVERAGE_SLACK_S`]
//!   per camera means not covered). A blind department is reported, not
//!   skipped.
//! - [`Report::Occupancy`]: per department and hour: distinct people present
//!   and mean occupancy (person-seconds / 3600).
//! - [`Report::Dwell`]: per department, stays (consecutive visits of a
//!   person in one department joined) bucketed by duration, with median and mean.

use datafusion::arrow::array::RecordBatch;
use datafusion::prelude::SessionContext;

use crate::query::{self, QueryError};

/// SQL dialect of the generated text.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Dialect {
    /// Apache DataFusion (the aggregator itself).
    DataFusion,
    /// DuckDB (for the side-by-side benchmark).
    Duckdb,
}

/// A report and its parameters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Report {
    /// Department transitions in `[since, until)` (Unix µs, on the arrival's enter).
    Transitions {
        /// Department left (all when `None`).
        from: Option<String>,
        /// Department arrived at (all when `None`).
        to: Option<String>,
        /// Window start, Unix µs.
        since_us: i64,
        /// Window end (exclusive), Unix µs.
        until_us: i64,
    },
    /// People seen in every department on a day, with camera coverage.
    Coverage {
        /// UTC day as `YYYY-MM-DD`.
        day: String,
    },
    /// People and mean occupancy per department and hour of a day.
    Occupancy {
        /// UTC day as `YYYY-MM-DD`.
        day: String,
    },
    /// Distribution of stay durations per department on a day.
    Dwell {
        /// UTC day as `YYYY-MM-DD`.
        day: String,
    },
}

/// One query of a report, with a title for printing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReportQuery {
    /// What the result answers.
    pub title: &'static str,
    /// The SQL.
    pub sql: String,
}

/// A day could not be understood.
#[derive(Debug, thiserror::Error)]
#[error("{0:?} is not a day (expected YYYY-MM-DD)")]
pub struct BadDay(pub String);

/// Unix µs of `YYYY-MM-DD` 00:00 UTC.
pub fn day_start_us(day: &str) -> Result<i64, BadDay> {
    let bad = || BadDay(day.to_string());
    let mut parts = day.splitn(3, '-');
    let mut next = |len: usize| {
        parts
            .next()
            .filter(|p| p.len() == len && p.bytes().all(|b| b.is_ascii_digit()))
            .and_then(|p| p.parse::<i64>().ok())
    };
    let (y, m, d) = match (next(4), next(2), next(2)) {
        (Some(y), Some(m), Some(d)) if (1..=12).contains(&m) && (1..=31).contains(&d) => (y, m, d),
        _ => return Err(bad()),
    };
    // Days from civil (Howard Hinnant).
    let y_adj = if m <= 2 { y - 1 } else { y };
    let era = y_adj.div_euclid(400);
    let yoe = y_adj - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    let start = days * 86_400_000_000;
    // Reject 2026-02-31 and the like: it must name itself.
    if crate::rows::utc_date(start) != day {
        return Err(bad());
    }
    Ok(start)
}

const DAY_US: i64 = 86_400_000_000;
const HOUR_US: i64 = 3_600_000_000;

/// Seconds of a day a camera may go without health reports and still count
/// as covered (reports come every minute or so; the last one ends its interval).
pub const COVERAGE_SLACK_S: i64 = 300;

impl Dialect {
    /// A UTC timestamp literal.
    fn ts(self, us: i64) -> String {
        let secs = us.div_euclid(1_000_000);
        let micros = us.rem_euclid(1_000_000);
        let date = crate::rows::utc_date(us);
        let sod = secs.rem_euclid(86_400);
        let hms = format!(
            "{:02}:{:02}:{:02}.{micros:06}",
            sod / 3600,
            sod / 60 % 60,
            sod % 60
        );
        match self {
            Dialect::DataFusion => format!("TIMESTAMP '{date}T{hms}Z'"),
            Dialect::Duckdb => format!("TIMESTAMPTZ '{date} {hms}+00'"),
        }
    }

    /// A timestamp column as Unix µs (BIGINT).
    fn epoch_us(self, column: &str) -> String {
        match self {
            Dialect::DataFusion => format!("CAST({column} AS BIGINT)"),
            Dialect::Duckdb => format!("epoch_us({column})"),
        }
    }

    /// Unix µs (an integer expression) as a UTC timestamp.
    fn ts_of_epoch_us(self, expr: &str) -> String {
        match self {
            Dialect::DataFusion => {
                format!("arrow_cast({expr}, 'Timestamp(Microsecond, Some(\"UTC\"))')")
            }
            Dialect::Duckdb => format!("make_timestamptz({expr})"),
        }
    }
}

/// A SQL string literal.
fn quote(text: &str) -> String {
    format!("'{}'", text.replace('\'', "''"))
}

/// Visits at department cameras with enter in `[t0, t1)` (and the
/// partitions that can hold them, so other days are never read).
fn visits(dialect: Dialect, t0: i64, t1: i64, prune_from: i64) -> String {
    format!(
        "SELECT p.person_id, d.department, p.enter, p.exit \
         FROM people_present p JOIN departments d ON p.camera_id = d.camera_id \
         WHERE p.date >= {} AND p.date <= {} AND p.enter >= {} AND p.enter < {}",
        quote(&crate::rows::utc_date(prune_from)),
        quote(&crate::rows::utc_date(t1 - 1)),
        dialect.ts(t0),
        dialect.ts(t1),
    )
}

impl Report {
    /// The report's queries in `dialect`.
    pub fn queries(&self, dialect: Dialect) -> Result<Vec<ReportQuery>, BadDay> {
        Ok(match self {
            Report::Transitions {
                from,
                to,
                since_us,
                until_us,
            } => {
                // The visit before an arrival may precede the window by up to a day.
                // Windows here partition by `person_id & 63` and order by person
                // (see the `transitions` view in `query.rs` for why); the
                // previous row's person says whether a visit had a predecessor.
                let visits = visits(dialect, since_us - DAY_US, *until_us, since_us - DAY_US);
                let mut filter = format!(
                    "previous_person = person_id AND previous <> department AND enter >= {}",
                    dialect.ts(*since_us)
                );
                if let Some(from) = from {
                    filter.push_str(&format!(" AND previous = {}", quote(from)));
                }
                if let Some(to) = to {
                    filter.push_str(&format!(" AND department = {}", quote(to)));
                }
                vec![ReportQuery {
                    title: "department transitions",
                    sql: format!(
                        "WITH visits AS ({visits}), \
                         ordered AS (SELECT person_id, department, enter, \
                           LAG(person_id) OVER w AS previous_person, LAG(department) OVER w AS previous \
                           FROM visits WINDOW w AS (PARTITION BY person_id & 63 ORDER BY person_id, enter, exit, department)) \
                         SELECT previous AS from_department, department AS to_department, \
                                COUNT(*) AS transitions, COUNT(DISTINCT person_id) AS people \
                         FROM ordered WHERE {filter} \
                         GROUP BY previous, department ORDER BY previous, department"
                    ),
                }]
            }
            Report::Coverage { day } => {
                let t0 = day_start_us(day)?;
                let t1 = t0 + DAY_US;
                // Only the part of the day that has happened can be covered.
                let seen_until = t1.min(service_kit::clock::now_us()).max(t0);
                let visits = visits(dialect, t0, t1, t0);
                vec![
                    ReportQuery {
                        title: "people seen in every department",
                        // One pass over the visits: a group per person seen.
                        sql: format!(
                            "WITH visits AS ({visits}), \
                             total AS (SELECT COUNT(DISTINCT department) AS n FROM departments), \
                             per_person AS (SELECT person_id, COUNT(DISTINCT department) AS n \
                               FROM visits GROUP BY person_id) \
                             SELECT COALESCE(SUM(CASE WHEN n = (SELECT n FROM total) THEN 1 ELSE 0 END), 0) \
                                      AS people_in_every_department, \
                                    COUNT(*) AS people_seen, \
                                    (SELECT n FROM total) AS departments \
                             FROM per_person"
                        ),
                    },
                    ReportQuery {
                        title: "camera coverage per department (cameras not UP, or not reporting, could not see)",
                        sql: format!(
                            "WITH h AS (SELECT camera_id, state, \
                                 date_part('epoch', LEAST(\"to\", {te})) - date_part('epoch', GREATEST(\"from\", {t0})) AS secs \
                               FROM ({health}) AS intervals WHERE \"to\" > {t0} AND \"from\" < {te}), \
                             per_camera AS (SELECT d.department, d.camera_id, COUNT(h.camera_id) AS intervals, \
                                 COALESCE(SUM(CASE WHEN h.state <> 'UP' THEN h.secs END), 0) AS blind_s, \
                                 GREATEST({window_s} - COALESCE(SUM(h.secs), 0), 0) AS unreported_s \
                               FROM departments d LEFT JOIN h ON d.camera_id = h.camera_id \
                               GROUP BY d.department, d.camera_id) \
                             SELECT department, COUNT(*) AS cameras, \
                                    SUM(CASE WHEN intervals = 0 THEN 1 ELSE 0 END) AS cameras_unreported, \
                                    SUM(CASE WHEN blind_s > 0 THEN 1 ELSE 0 END) AS cameras_blind, \
                                    ROUND(SUM(blind_s)) AS blind_camera_seconds, \
                                    ROUND(SUM(unreported_s)) AS unreported_camera_seconds, \
                                    SUM(CASE WHEN blind_s > 0 OR unreported_s > {slack} THEN 1 ELSE 0 END) = 0 AS fully_covered \
                             FROM per_camera GROUP BY department ORDER BY department",
                            health = crate::query::camera_health_between(
                                &crate::rows::utc_date(t0 - DAY_US),
                                &crate::rows::utc_date(t1),
                            ),
                            t0 = dialect.ts(t0),
                            te = dialect.ts(seen_until),
                            window_s = (seen_until - t0) / 1_000_000,
                            slack = COVERAGE_SLACK_S,
                        ),
                    },
                ]
            }
            Report::Occupancy { day } => {
                let t0 = day_start_us(day)?;
                let t1 = t0 + DAY_US;
                // Hours as integers (Unix µs / 3600 s): expanding each visit
                // into its hours with integer ranges and clipping it with
                // integer arithmetic is several times cheaper than
                // generate_series over timestamps and intervals.
                vec![ReportQuery {
                    title: "people and mean occupancy per department and hour",
                    sql: format!(
                        "WITH v AS (SELECT p.person_id, d.department, \
                             GREATEST({enter}, {t0}) AS s, LEAST({exit}, {t1}) AS e \
                           FROM people_present p JOIN departments d ON p.camera_id = d.camera_id \
                           WHERE p.date >= {d0} AND p.date <= {d1} AND p.enter < {t1_ts} AND p.exit > {t0_ts}), \
                         hours AS (SELECT person_id, department, s, e, \
                             UNNEST(range(CAST(FLOOR(s / {hour}.0) AS BIGINT), \
                               CAST(FLOOR(GREATEST(s, e - 1) / {hour}.0) AS BIGINT) + 1)) AS h FROM v) \
                         SELECT department, {hour_ts} AS hour, COUNT(DISTINCT person_id) AS people, \
                                ROUND(SUM(LEAST(e, (h + 1) * {hour}) - GREATEST(s, h * {hour})) / {hour}.0, 3) \
                                  AS mean_occupancy \
                         FROM hours GROUP BY department, h ORDER BY department, hour",
                        enter = dialect.epoch_us("p.enter"),
                        exit = dialect.epoch_us("p.exit"),
                        t0_ts = dialect.ts(t0),
                        t1_ts = dialect.ts(t1),
                        hour = HOUR_US,
                        hour_ts = dialect.ts_of_epoch_us(&format!("h * {HOUR_US}")),
                        d0 = quote(&crate::rows::utc_date(t0 - DAY_US)),
                        d1 = quote(day),
                    ),
                }]
            }
            Report::Dwell { day } => {
                let t0 = day_start_us(day)?;
                let visits = visits(dialect, t0, t0 + DAY_US, t0);
                vec![ReportQuery {
                    title: "stay durations per department (seconds)",
                    sql: format!(
                        "WITH visits AS ({visits}), \
                         marked AS (SELECT person_id, department, enter, exit, \
                           CASE WHEN LAG(person_id) OVER w = person_id AND LAG(department) OVER w = department \
                             THEN 0 ELSE 1 END AS starts \
                           FROM visits WINDOW w AS (PARTITION BY person_id & 63 ORDER BY person_id, enter, exit, department)), \
                         runs AS (SELECT person_id, department, enter, exit, \
                           SUM(starts) OVER (PARTITION BY person_id & 63 ORDER BY person_id, enter, exit, department \
                             ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW) AS run FROM marked), \
                         stays AS (SELECT department, \
                           date_part('epoch', MAX(exit)) - date_part('epoch', MIN(enter)) AS d \
                           FROM runs GROUP BY person_id, department, run) \
                         SELECT department, COUNT(*) AS stays, \
                                SUM(CASE WHEN d < 60 THEN 1 ELSE 0 END) AS under_1m, \
                                SUM(CASE WHEN d >= 60 AND d < 300 THEN 1 ELSE 0 END) AS m1_5, \
                                SUM(CASE WHEN d >= 300 AND d < 900 THEN 1 ELSE 0 END) AS m5_15, \
                                SUM(CASE WHEN d >= 900 AND d < 3600 THEN 1 ELSE 0 END) AS m15_60, \
                                SUM(CASE WHEN d >= 3600 THEN 1 ELSE 0 END) AS over_1h, \
                                ROUND(median(d), 1) AS median_s, ROUND(AVG(d), 1) AS mean_s \
                         FROM stays GROUP BY department ORDER BY department"
                    ),
                }]
            }
        })
    }
}

/// Runs a report; one result per query, with its title and SQL.
pub async fn run(
    ctx: &SessionContext,
    report: &Report,
) -> Result<Vec<(ReportQuery, Vec<RecordBatch>)>, ReportError> {
    let mut out = Vec::new();
    for query in report.queries(Dialect::DataFusion)? {
        let batches = query::sql(ctx, &query.sql).await?;
        out.push((query, batches));
    }
    Ok(out)
}

/// A report could not be produced.
#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    /// A parameter is invalid.
    #[error(transparent)]
    BadDay(#[from] BadDay),
    /// The query failed.
    #[error(transparent)]
    Query(#[from] QueryError),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn days_parse_and_bad_days_are_refused() {
        assert_eq!(day_start_us("1970-01-01").unwrap(), 0);
        assert_eq!(day_start_us("2023-11-14").unwrap(), 1_699_920_000_000_000);
        assert_eq!(day_start_us("2000-02-29").unwrap(), 951_782_400_000_000);
        for bad in [
            "2023-02-29",
            "2023-13-01",
            "2023-1-01",
            "yesterday",
            "2023-01-01x",
        ] {
            assert!(day_start_us(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn literals_in_both_dialects() {
        let us = 1_699_920_000_000_000 + 3_723_000_042;
        assert_eq!(
            Dialect::DataFusion.ts(us),
            "TIMESTAMP '2023-11-14T01:02:03.000042Z'"
        );
        assert_eq!(
            Dialect::Duckdb.ts(us),
            "TIMESTAMPTZ '2023-11-14 01:02:03.000042+00'"
        );
        assert_eq!(quote("o'neil"), "'o''neil'");
    }
}
