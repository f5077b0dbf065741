//! Canned reports against generated data with known truth: three days of a
//! synthetic store with identity splits (merged later by the tracker) and a
//! camera outage, written through the service's files and commits, queried
//! through the merged views. Every answer is compared with an oracle
//! computed directly from the generator's truth.

use std::collections::{BTreeMap, BTreeSet};

use aggregator::config::Department;
use aggregator::query::QueryOptions;
use aggregator::reports::{self, Report};
use aggregator::store::Storage;
use aggregator::synth::{Outage, SynthConfig, Truth};
use datafusion::arrow::array::{Array, AsArray, RecordBatch};
use datafusion::arrow::datatypes::{Float64Type, Int64Type, TimestampMicrosecondType};
use datafusion::prelude::SessionContext;

const DAY: i64 = 86_400_000_000;
const HOUR: i64 = 3_600_000_000;

fn config() -> SynthConfig {
    let start = SynthConfig::default().start_day_us;
    SynthConfig {
        seed: 7,
        days: 3,
        people_per_day: 300,
        split_fraction: 0.15,
        full_tour_fraction: 0.3,
        outages: vec![Outage {
            camera_id: "grocery-2".into(),
            from_us: start + DAY + 12 * HOUR,
            to_us: start + DAY + 13 * HOUR + 30 * 60_000_000,
        }],
        ..SynthConfig::default()
    }
}

fn departments(config: &SynthConfig) -> Vec<Department> {
    Department::group(config.camera_departments())
}

struct Fixture {
    runtime: tokio::runtime::Runtime,
    ctx: SessionContext,
    truth: Truth,
    config: SynthConfig,
    _dir: tempfile::TempDir,
}

fn fixture() -> Fixture {
    let config = config();
    let dir = tempfile::tempdir().unwrap();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let storage = Storage::local(dir.path()).unwrap();
    // Small commits, so compaction has work and readers see many files.
    let stats = runtime
        .block_on(aggregator::bench::generate(storage.clone(), &config, 2_000))
        .unwrap();
    assert!(stats.compacted_files > 0, "{stats:?}");
    let options = QueryOptions {
        memory_limit_bytes: None,
        departments: departments(&config),
    };
    let ctx = runtime
        .block_on(aggregator::query::open(&storage, &options))
        .unwrap();
    Fixture {
        truth: Truth::generate(&config),
        runtime,
        ctx,
        config,
        _dir: dir,
    }
}

impl Fixture {
    fn sql(&self, sql: &str) -> Vec<RecordBatch> {
        self.runtime
            .block_on(aggregator::query::sql(&self.ctx, sql))
            .unwrap()
    }

    fn int(&self, sql: &str) -> i64 {
        self.sql(sql)[0]
            .column(0)
            .as_primitive::<Int64Type>()
            .value(0)
    }

    fn report(&self, report: &Report) -> Vec<Vec<RecordBatch>> {
        self.runtime
            .block_on(reports::run(&self.ctx, report))
            .unwrap()
            .into_iter()
            .map(|(_, batches)| batches)
            .collect()
    }

    fn day(&self, n: i64) -> (String, i64) {
        let start = self.config.start_day_us + n * DAY;
        (aggregator::rows::utc_date(start), start)
    }

    /// Visits with merged ids and department names, ordered per person.
    fn visits(&self) -> BTreeMap<u64, Vec<(i64, i64, String)>> {
        let mut by_person: BTreeMap<u64, Vec<(i64, i64, String)>> = BTreeMap::new();
        for v in &self.truth.visits {
            by_person
                .entry(self.truth.merged_id(v.person_id))
                .or_default()
                .push((
                    v.enter_us,
                    v.exit_us,
                    self.truth.departments[v.department as usize].clone(),
                ));
        }
        for visits in by_person.values_mut() {
            visits.sort();
        }
        by_person
    }
}

fn strings(batch: &RecordBatch, column: &str) -> Vec<String> {
    let array = batch.column_by_name(column).unwrap();
    let array =
        datafusion::arrow::compute::cast(array, &datafusion::arrow::datatypes::DataType::Utf8)
            .unwrap();
    let array = array.as_string::<i32>();
    (0..array.len())
        .map(|i| array.value(i).to_string())
        .collect()
}

fn ints(batch: &RecordBatch, column: &str) -> Vec<i64> {
    let array = batch.column_by_name(column).unwrap();
    let array =
        datafusion::arrow::compute::cast(array, &datafusion::arrow::datatypes::DataType::Int64)
            .unwrap();
    let array = array.as_primitive::<Int64Type>();
    (0..array.len()).map(|i| array.value(i)).collect()
}

fn concat(batches: &[RecordBatch]) -> RecordBatch {
    datafusion::arrow::compute::concat_batches(&batches[0].schema(), batches).unwrap()
}

#[test]
fn canned_reports_match_the_truth_with_merges_and_an_outage() {
    let f = fixture();
    let truth = &f.truth;
    assert!(!truth.merges.is_empty(), "the data has identity splits");

    // Merges applied: the raw table has every tracked id, the view one per person.
    assert_eq!(
        f.int("SELECT COUNT(*) FROM unique_people_raw") as usize,
        truth.unique_people_before_merges()
    );
    assert_eq!(
        f.int("SELECT COUNT(*) FROM unique_people") as usize,
        truth.unique_people_after_merges()
    );
    assert_eq!(
        truth.unique_people_after_merges(),
        truth.true_people_seen(),
        "every split was merged back"
    );
    assert_eq!(
        f.int("SELECT COUNT(DISTINCT person_id) FROM people_present") as usize,
        truth.true_people_seen()
    );
    assert_eq!(
        f.int("SELECT COUNT(*) FROM people_present") as usize,
        truth.visits.len()
    );

    // Transitions from grocery to checkout over the three days, and the matrix on day 2.
    let (_, start) = f.day(0);
    let window = start..start + 3 * DAY;
    let expected = truth.transitions(Some(window.clone()));
    let pair = Report::Transitions {
        from: Some("grocery".into()),
        to: Some("checkout".into()),
        since_us: window.start,
        until_us: window.end,
    };
    let result = concat(&f.report(&pair)[0]);
    let want = expected[&("grocery".to_string(), "checkout".to_string())];
    assert!(want.transitions > 20, "{want:?}");
    assert_eq!(ints(&result, "transitions"), vec![want.transitions as i64]);
    assert_eq!(ints(&result, "people"), vec![want.people as i64]);

    let (_, day2) = f.day(1);
    let matrix = Report::Transitions {
        from: None,
        to: None,
        since_us: day2,
        until_us: day2 + DAY,
    };
    let result = concat(&f.report(&matrix)[0]);
    let got: BTreeMap<(String, String), (i64, i64)> = strings(&result, "from_department")
        .into_iter()
        .zip(strings(&result, "to_department"))
        .zip(
            ints(&result, "transitions")
                .into_iter()
                .zip(ints(&result, "people")),
        )
        .collect();
    let want: BTreeMap<(String, String), (i64, i64)> = truth
        .transitions(Some(day2..day2 + DAY))
        .into_iter()
        .filter(|(_, c)| c.transitions > 0)
        .map(|(k, c)| (k, (c.transitions as i64, c.people as i64)))
        .collect();
    assert_eq!(got, want);

    // Coverage on day 2: grocery-2 was down 12:00-13:30; grocery is reported
    // as not fully covered, with exactly the outage's blind time.
    let (day2_name, day2) = f.day(1);
    let results = f.report(&Report::Coverage {
        day: day2_name.clone(),
    });
    let answer = concat(&results[0]);
    assert_eq!(
        ints(&answer, "people_in_every_department"),
        vec![truth.people_in_every_department(day2).len() as i64]
    );
    assert!(truth.people_in_every_department(day2).len() > 10);
    let coverage = concat(&results[1]);
    let departments = strings(&coverage, "department");
    let covered = strings(&coverage, "fully_covered");
    let blind = ints(&coverage, "blind_camera_seconds");
    let blind_cameras = ints(&coverage, "cameras_blind");
    for (i, department) in departments.iter().enumerate() {
        if department == "grocery" {
            assert_eq!(covered[i], "false");
            assert_eq!(blind[i], 90 * 60);
            assert_eq!(blind_cameras[i], 1);
        } else {
            assert_eq!(covered[i], "true", "{department}");
            assert_eq!(blind[i], 0, "{department}");
        }
    }
    assert_eq!(departments.len(), truth.departments.len());
    // Day 1 has no outage: every department is fully covered.
    let (day1_name, _) = f.day(0);
    let coverage = concat(&f.report(&Report::Coverage { day: day1_name })[1]);
    assert!(
        strings(&coverage, "fully_covered")
            .iter()
            .all(|c| c == "true")
    );

    // Occupancy per department and hour on day 2.
    let result = concat(
        &f.report(&Report::Occupancy {
            day: day2_name.clone(),
        })[0],
    );
    let hours = result.column_by_name("hour").unwrap();
    let hours = datafusion::arrow::compute::cast(
        hours,
        &datafusion::arrow::datatypes::DataType::Timestamp(
            datafusion::arrow::datatypes::TimeUnit::Microsecond,
            None,
        ),
    )
    .unwrap();
    let hours = hours.as_primitive::<TimestampMicrosecondType>();
    let people = ints(&result, "people");
    let occupancy = result.column_by_name("mean_occupancy").unwrap();
    let occupancy = datafusion::arrow::compute::cast(
        occupancy,
        &datafusion::arrow::datatypes::DataType::Float64,
    )
    .unwrap();
    let occupancy = occupancy.as_primitive::<Float64Type>();
    let mut want_people: BTreeMap<(String, i64), BTreeSet<u64>> = BTreeMap::new();
    let mut want_seconds: BTreeMap<(String, i64), f64> = BTreeMap::new();
    for (person, visits) in f.visits() {
        for (enter, exit, department) in visits {
            let (s, e) = (enter.max(day2), exit.min(day2 + DAY));
            if s >= e {
                continue;
            }
            let mut hour = s - (s - day2) % HOUR;
            while hour < e {
                let overlap = (e.min(hour + HOUR) - s.max(hour)) as f64 / 1e6;
                want_people
                    .entry((department.clone(), hour))
                    .or_default()
                    .insert(person);
                *want_seconds.entry((department.clone(), hour)).or_default() += overlap;
                hour += HOUR;
            }
        }
    }
    let departments = strings(&result, "department");
    assert_eq!(departments.len(), want_people.len());
    for i in 0..result.num_rows() {
        let key = (departments[i].clone(), hours.value(i));
        assert_eq!(people[i] as usize, want_people[&key].len(), "{key:?}");
        let want = want_seconds[&key] / 3600.0;
        assert!(
            (occupancy.value(i) - want).abs() < 1e-3,
            "{key:?}: {} vs {want}",
            occupancy.value(i)
        );
    }

    // Stays per department on day 2: consecutive visits in one department joined.
    let result = concat(&f.report(&Report::Dwell { day: day2_name })[0]);
    let mut want: BTreeMap<String, (i64, [i64; 5])> = BTreeMap::new();
    for visits in f.visits().values() {
        let day_visits: Vec<_> = visits
            .iter()
            .filter(|(enter, _, _)| (day2..day2 + DAY).contains(enter))
            .collect();
        let mut i = 0;
        while i < day_visits.len() {
            let department = &day_visits[i].2;
            let (start, mut end) = (day_visits[i].0, day_visits[i].1);
            let mut j = i + 1;
            while j < day_visits.len() && &day_visits[j].2 == department {
                end = end.max(day_visits[j].1);
                j += 1;
            }
            let d = (end - start) as f64 / 1e6;
            let bucket = match d {
                d if d < 60.0 => 0,
                d if d < 300.0 => 1,
                d if d < 900.0 => 2,
                d if d < 3600.0 => 3,
                _ => 4,
            };
            let entry = want.entry(department.clone()).or_default();
            entry.0 += 1;
            entry.1[bucket] += 1;
            i = j;
        }
    }
    let departments = strings(&result, "department");
    let stays = ints(&result, "stays");
    let columns = ["under_1m", "m1_5", "m5_15", "m15_60", "over_1h"].map(|c| ints(&result, c));
    assert_eq!(departments.len(), want.len());
    for (i, department) in departments.iter().enumerate() {
        let (count, buckets) = want[department];
        assert_eq!(stays[i], count, "{department}");
        for (b, column) in columns.iter().enumerate() {
            assert_eq!(column[i], buckets[b], "{department} bucket {b}");
        }
    }
    assert!(result.column_by_name("median_s").unwrap().null_count() == 0);
}

#[test]
fn a_long_lived_session_sees_new_commits_and_never_uncommitted_files() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let storage = Storage::local(dir.path()).unwrap();
    let count = |ctx: &SessionContext| -> i64 {
        let batches = runtime
            .block_on(aggregator::query::sql(
                ctx,
                "SELECT COUNT(*) FROM people_present_raw",
            ))
            .unwrap();
        batches[0].column(0).as_primitive::<Int64Type>().value(0)
    };
    let ctx = runtime
        .block_on(aggregator::query::open(&storage, &QueryOptions::default()))
        .unwrap();
    assert_eq!(count(&ctx), 0);

    let day1 = SynthConfig {
        people_per_day: 50,
        ..SynthConfig::default()
    };
    runtime
        .block_on(aggregator::bench::generate(storage.clone(), &day1, 10_000))
        .unwrap();
    let first = Truth::generate(&day1).visits.len() as i64;
    assert_eq!(
        count(&ctx),
        first,
        "a commit is visible to the open session"
    );

    // A file written but never committed (a crash before the commit) is invisible.
    let orphan = runtime
        .block_on(async {
            let ctx = aggregator::query::open(&storage, &QueryOptions::default()).await?;
            let batches = aggregator::query::sql(&ctx, "SELECT * FROM people_present_raw").await?;
            let batch = datafusion::arrow::compute::concat_batches(&batches[0].schema(), &batches)
                .map_err(aggregator::query::QueryError::from)?;
            // Without the partition column: the stored schema.
            let batch = batch.project(&[0, 1, 2, 3, 4, 5, 6, 7]).unwrap();
            Ok::<_, aggregator::query::QueryError>(
                storage
                    .put_parquet(
                        schemas::tables::Table::PeoplePresent,
                        "2025-01-06",
                        "never-committed",
                        &batch,
                    )
                    .await
                    .unwrap(),
            )
        })
        .unwrap();
    assert_eq!(orphan.rows as i64, first);
    assert_eq!(count(&ctx), first, "uncommitted rows are not counted");

    let day2 = SynthConfig {
        people_per_day: 50,
        start_day_us: day1.start_day_us + DAY,
        first_person_id: 1_000_000,
        seed: 2,
        ..SynthConfig::default()
    };
    runtime
        .block_on(aggregator::bench::generate(storage.clone(), &day2, 10_000))
        .unwrap();
    let second = Truth::generate(&day2).visits.len() as i64;
    assert_eq!(count(&ctx), first + second, "the new partition is visible");
    // The next writer sweeps the uncommitted file away.
    assert!(!dir.path().join(&orphan.path).exists());
}

#[test]
fn tables_written_before_the_manifest_are_adopted_not_deleted() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let dir = tempfile::tempdir().unwrap();
    // Files as the aggregator wrote them before it had a manifest.
    let legacy = Storage::local(&dir.path().join("legacy")).unwrap();
    let day = SynthConfig {
        people_per_day: 40,
        ..SynthConfig::default()
    };
    runtime
        .block_on(aggregator::bench::generate(legacy.clone(), &day, 10_000))
        .unwrap();
    let visits = Truth::generate(&day).visits.len() as i64;
    let tables = dir.path().join("tables");
    std::fs::create_dir_all(&tables).unwrap();
    for entry in std::fs::read_dir(dir.path().join("legacy")).unwrap() {
        let entry = entry.unwrap();
        let name = entry.file_name();
        if name != "_manifest" && name != ".writer.lock" {
            std::fs::rename(entry.path(), tables.join(name)).unwrap();
        }
    }
    let storage = Storage::local(&tables).unwrap();
    let mut loader = runtime
        .block_on(aggregator::service::Loader::open(storage.clone()))
        .unwrap();
    assert_eq!(loader.stats().swept_files, 0, "nothing deleted");
    // A second writer on the same directory is refused while this one runs.
    let second = runtime.block_on(aggregator::service::Loader::open(storage.clone()));
    assert!(
        second.is_err_and(|e| e.to_string().contains("another aggregator")),
        "second writer refused"
    );
    runtime.block_on(loader.flush()).unwrap();
    drop(loader);
    let ctx = runtime
        .block_on(aggregator::query::open(&storage, &QueryOptions::default()))
        .unwrap();
    let batches = runtime
        .block_on(aggregator::query::sql(
            &ctx,
            "SELECT COUNT(*) FROM people_present_raw",
        ))
        .unwrap();
    assert_eq!(
        batches[0].column(0).as_primitive::<Int64Type>().value(0),
        visits
    );
}
