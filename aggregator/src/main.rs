//! `aggregator`: thin entry point; the service lives in the library.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use aggregator::config::AggregatorConfig;
use aggregator::format::OutputFormat;
use aggregator::query::QueryOptions;
use aggregator::reports::{Dialect, Report};
use clap::{Args as ClapArgs, Parser, Subcommand};
use datafusion::prelude::SessionContext;

/// Argus aggregator: writes presence, frame, health, alert, merge and track
/// events to Parquet tables (exactly once) and answers SQL over them with
/// DataFusion.
#[derive(Debug, Parser)]
#[command(version)]
struct Args {
    #[command(subcommand)]
    command: Command,
}

/// Where the tables are.
#[derive(Debug, ClapArgs)]
struct Source {
    /// Aggregator configuration (data directory or S3 bucket, departments, HTTP settings).
    #[arg(long, short, conflicts_with = "data_dir")]
    config: Option<PathBuf>,
    /// Directory holding the tables (the `data_dir` of the configuration).
    #[arg(long, required_unless_present = "config")]
    data_dir: Option<PathBuf>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Consume events until SIGINT/SIGTERM, then drain, commit the last rows
    /// and exit; serves the HTTP SQL API too when `[http]` is configured.
    Run {
        /// TOML configuration (see deploy/config/aggregator.toml).
        #[arg(long, short)]
        config: PathBuf,
    },
    /// Validate a configuration file and report every problem.
    CheckConfig {
        /// TOML configuration.
        config: PathBuf,
    },
    /// Run SQL over the tables and print the result; without statements,
    /// an interactive shell (history in ~/.argus_sql_history). Tables and
    /// views: people_present, unique_people, transitions, camera_health,
    /// departments, tracks, id_merges, person_alias, alerts, frames, and
    /// the stored people_present_raw, unique_people_raw, tracks_raw,
    /// camera_health_reports.
    Sql {
        #[command(flatten)]
        source: Source,
        /// Output format.
        #[arg(long, short, value_enum, default_value = "table")]
        format: OutputFormat,
        /// Write the result to this file instead of standard output.
        #[arg(long, short)]
        output: Option<PathBuf>,
        /// Print each statement before its result.
        #[arg(long)]
        echo: bool,
        /// SQL statements, run in order.
        statements: Vec<String>,
    },
    /// Canned reports using the configured departments.
    Report {
        /// Configuration with `data_dir` (or `[s3]`) and `[[departments]]`.
        #[arg(long, short)]
        config: PathBuf,
        /// Print the SQL before each result.
        #[arg(long)]
        show_sql: bool,
        /// Only print the SQL, in this dialect, and exit.
        #[arg(long, value_enum)]
        print_sql: Option<Dialect>,
        /// Output format.
        #[arg(long, short, value_enum, default_value = "table")]
        format: OutputFormat,
        #[command(subcommand)]
        report: ReportArgs,
    },
    /// Write a synthetic data set into a data directory: realistic presence
    /// streams of a store (arrival peaks, routes through departments,
    /// log-normal dwell), with identity splits merged later and camera
    /// outages with their health reports. Goes through the service's own
    /// files and commits.
    Synth {
        /// Directory to write the tables into.
        #[arg(long)]
        data_dir: PathBuf,
        /// First day (UTC, YYYY-MM-DD).
        #[arg(long, default_value = "2025-01-06")]
        start_day: String,
        /// Days to generate.
        #[arg(long, default_value_t = 1)]
        days: u32,
        /// People arriving per day.
        #[arg(long, default_value_t = 2000)]
        people_per_day: u32,
        /// Seed of every random draw.
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// Camera outage on the first day, CAMERA@HH:MM-HH:MM (UTC), repeatable.
        #[arg(long)]
        outage: Vec<String>,
        /// Rows buffered per commit.
        #[arg(long, default_value_t = 1_000_000)]
        flush_rows: usize,
        /// Also write an aggregator configuration naming this directory and
        /// the synthetic departments, for `report` and `serve`.
        #[arg(long)]
        write_config: Option<PathBuf>,
    },
    /// Benchmarks that print figures.
    Bench {
        #[command(subcommand)]
        bench: BenchArgs,
    },
    /// Serve the read-only HTTP SQL API, reports and security console without writing tables
    /// (the console still reads live alerts from Kafka and sends actions there).
    Serve {
        /// Configuration with `data_dir` (or `[s3]`), `[http]` and `[[departments]]`.
        #[arg(long, short)]
        config: PathBuf,
    },
}

#[derive(Debug, Subcommand)]
enum BenchArgs {
    /// Ingest throughput of one thread: decode, dedup, buffer, encode,
    /// store and commit synthetic events (Kafka excluded).
    Ingest {
        /// Events to feed.
        #[arg(long, default_value_t = 2_000_000)]
        events: usize,
        /// Scratch directory for the tables (must be new or empty).
        #[arg(long)]
        dir: PathBuf,
        /// Rows buffered per commit.
        #[arg(long, default_value_t = 500_000)]
        flush_rows: usize,
    },
    /// Wall time of the canned reports over a data set written by `synth`;
    /// prints one JSON line per report and writes the same queries in
    /// DuckDB's dialect, with a DuckDB setup script, to --sql-out.
    Reports {
        /// Configuration written by `synth --write-config`.
        #[arg(long, short)]
        config: PathBuf,
        /// Day of the per-day reports; transitions span --day..--until.
        #[arg(long)]
        day: String,
        /// Last day of the transitions window (default: --day).
        #[arg(long)]
        until: Option<String>,
        /// Department pair of the transitions report.
        #[arg(long, default_value = "grocery")]
        from: String,
        /// Department pair of the transitions report.
        #[arg(long, default_value = "checkout")]
        to: String,
        /// Runs per report (the first warms caches).
        #[arg(long, default_value_t = 3)]
        repeat: usize,
        /// Directory for `setup.sql` and `<report>.sql` in DuckDB's dialect.
        #[arg(long)]
        sql_out: Option<PathBuf>,
    },
}

#[derive(Debug, Subcommand)]
enum ReportArgs {
    /// How many people went from department FROM to department TO.
    Transitions {
        /// Department left (all pairs when omitted).
        #[arg(long)]
        from: Option<String>,
        /// Department arrived at.
        #[arg(long)]
        to: Option<String>,
        /// First day of the window (UTC, YYYY-MM-DD).
        #[arg(long)]
        since: String,
        /// Last day of the window, inclusive (default: the first day).
        #[arg(long)]
        until: Option<String>,
    },
    /// How many people were seen in every department on a day, with camera coverage.
    Coverage {
        /// UTC day, YYYY-MM-DD.
        #[arg(long)]
        day: String,
    },
    /// People and mean occupancy per department and hour of a day.
    Occupancy {
        /// UTC day, YYYY-MM-DD.
        #[arg(long)]
        day: String,
    },
    /// Distribution of stay durations per department on a day.
    Dwell {
        /// UTC day, YYYY-MM-DD.
        #[arg(long)]
        day: String,
    },
}

impl ReportArgs {
    fn report(self) -> Result<Report, aggregator::reports::BadDay> {
        use aggregator::reports::day_start_us;
        Ok(match self {
            ReportArgs::Transitions {
                from,
                to,
                since,
                until,
            } => {
                let since_us = day_start_us(&since)?;
                let until_us = day_start_us(until.as_deref().unwrap_or(&since))? + 86_400_000_000;
                Report::Transitions {
                    from,
                    to,
                    since_us,
                    until_us,
                }
            }
            ReportArgs::Coverage { day } => {
                day_start_us(&day)?;
                Report::Coverage { day }
            }
            ReportArgs::Occupancy { day } => {
                day_start_us(&day)?;
                Report::Occupancy { day }
            }
            ReportArgs::Dwell { day } => {
                day_start_us(&day)?;
                Report::Dwell { day }
            }
        })
    }
}

/// Exit code 2 for bad input (configuration, arguments), 1 for failures.
fn fail(code: u8, error: impl std::fmt::Display) -> ExitCode {
    eprintln!("error: {error}");
    ExitCode::from(code)
}

fn main() -> ExitCode {
    service_kit::logging::init();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(error) => return fail(1, format!("cannot start the runtime: {error}")),
    };
    match Args::parse().command {
        Command::Run { config } => {
            let config = match AggregatorConfig::load(&config) {
                Ok(config) => config,
                Err(error) => return fail(2, error),
            };
            match runtime.block_on(aggregator::run(config, service_kit::shutdown::signal())) {
                Ok(_) => ExitCode::SUCCESS,
                Err(error) => {
                    tracing::error!(%error, "Aggregator failed");
                    ExitCode::FAILURE
                }
            }
        }
        Command::CheckConfig { config } => match AggregatorConfig::load(&config) {
            Ok(_) => {
                println!("{}: OK", config.display());
                ExitCode::SUCCESS
            }
            Err(error) => fail(2, error),
        },
        Command::Sql {
            source,
            format,
            output,
            echo,
            statements,
        } => runtime.block_on(async {
            let ctx = match open(&source).await {
                Ok(ctx) => ctx,
                Err(code) => return code,
            };
            if statements.is_empty() {
                return shell(&ctx, format).await;
            }
            let mut out: Box<dyn Write> = match &output {
                Some(path) => match std::fs::File::create(path) {
                    Ok(file) => Box::new(file),
                    Err(error) => return fail(1, format!("{}: {error}", path.display())),
                },
                None => Box::new(std::io::stdout().lock()),
            };
            for statement in statements {
                if echo {
                    let _ = writeln!(out, "> {statement}");
                }
                if let Err(error) = run_statement(&ctx, &statement, format, &mut out).await {
                    return fail(1, error);
                }
            }
            ExitCode::SUCCESS
        }),
        Command::Report {
            config,
            show_sql,
            print_sql,
            format,
            report,
        } => {
            let config = match AggregatorConfig::load(&config) {
                Ok(config) => config,
                Err(error) => return fail(2, error),
            };
            let report = match report.report() {
                Ok(report) => report,
                Err(error) => return fail(2, error),
            };
            if let Some(dialect) = print_sql {
                return match report.queries(dialect) {
                    Ok(queries) => {
                        for query in queries {
                            println!("-- {}\n{};", query.title, query.sql);
                        }
                        ExitCode::SUCCESS
                    }
                    Err(error) => fail(2, error),
                };
            }
            runtime.block_on(async {
                let ctx = match open_config(&config).await {
                    Ok(ctx) => ctx,
                    Err(error) => return fail(1, error),
                };
                let results = match aggregator::reports::run(&ctx, &report).await {
                    Ok(results) => results,
                    Err(error) => return fail(1, error),
                };
                let mut out = std::io::stdout().lock();
                for (query, batches) in results {
                    let _ = writeln!(out, "# {}", query.title);
                    if show_sql {
                        let _ = writeln!(out, "{}", query.sql);
                    }
                    let schema = match batches.first() {
                        Some(batch) => batch.schema(),
                        None => continue,
                    };
                    match aggregator::format::encode(&schema, &batches, format) {
                        Ok(bytes) => {
                            let _ = out.write_all(&bytes);
                            let _ = writeln!(out);
                        }
                        Err(error) => return fail(1, error),
                    }
                }
                ExitCode::SUCCESS
            })
        }
        Command::Synth {
            data_dir,
            start_day,
            days,
            people_per_day,
            seed,
            outage,
            flush_rows,
            write_config,
        } => runtime.block_on(synth(
            data_dir,
            &start_day,
            days,
            people_per_day,
            seed,
            &outage,
            flush_rows,
            write_config,
        )),
        Command::Bench { bench } => runtime.block_on(bench_command(bench)),
        Command::Serve { config } => {
            let config = match AggregatorConfig::load(&config) {
                Ok(config) => config,
                Err(error) => return fail(2, error),
            };
            match runtime.block_on(aggregator::api::serve_config(
                &config,
                service_kit::shutdown::signal(),
            )) {
                Ok(()) => ExitCode::SUCCESS,
                Err(error) => fail(1, error),
            }
        }
    }
}

async fn open_config(
    config: &AggregatorConfig,
) -> Result<SessionContext, aggregator::query::QueryError> {
    let storage = config.storage()?;
    let options = QueryOptions {
        memory_limit_bytes: None,
        departments: config.departments.clone(),
    };
    aggregator::query::open(&storage, &options).await
}

async fn open(source: &Source) -> Result<SessionContext, ExitCode> {
    let result = match (&source.config, &source.data_dir) {
        (Some(path), _) => match AggregatorConfig::load(path) {
            Ok(config) => open_config(&config).await,
            Err(error) => return Err(fail(2, error)),
        },
        (None, Some(dir)) => aggregator::query::context(dir).await,
        (None, None) => return Err(fail(2, "give --config or --data-dir")),
    };
    result.map_err(|error| fail(1, error))
}

async fn run_statement(
    ctx: &SessionContext,
    statement: &str,
    format: OutputFormat,
    out: &mut dyn Write,
) -> Result<(), String> {
    let frame = ctx.sql(statement).await.map_err(|e| e.to_string())?;
    let schema = frame.schema().inner().clone();
    let batches = frame.collect().await.map_err(|e| e.to_string())?;
    let bytes = aggregator::format::encode(&schema, &batches, format).map_err(|e| e.to_string())?;
    out.write_all(&bytes).map_err(|e| e.to_string())?;
    if format == OutputFormat::Table {
        writeln!(out).map_err(|e| e.to_string())?;
    }
    Ok(())
}

/// The interactive shell: statements end with `;`, `\q` quits, history is kept.
async fn shell(ctx: &SessionContext, format: OutputFormat) -> ExitCode {
    let mut editor = match rustyline::DefaultEditor::new() {
        Ok(editor) => editor,
        Err(error) => return fail(1, format!("cannot start the shell: {error}")),
    };
    let history = std::env::var_os("HOME")
        .map(PathBuf::from)
        .unwrap_or_default()
        .join(".argus_sql_history");
    let _ = editor.load_history(&history);
    println!("argus SQL shell: end statements with ';', \\q to quit.");
    let mut buffer = String::new();
    loop {
        let prompt = if buffer.is_empty() {
            "argus> "
        } else {
            "   ...> "
        };
        match editor.readline(prompt) {
            Ok(line) => {
                let trimmed = line.trim();
                if buffer.is_empty() && (trimmed == "\\q" || trimmed == "quit" || trimmed == "exit")
                {
                    break;
                }
                buffer.push_str(&line);
                buffer.push('\n');
                if !trimmed.ends_with(';') {
                    continue;
                }
                let statement = std::mem::take(&mut buffer);
                let _ = editor.add_history_entry(statement.trim());
                let mut out = std::io::stdout().lock();
                if let Err(error) = run_statement(ctx, &statement, format, &mut out).await {
                    eprintln!("error: {error}");
                }
            }
            Err(rustyline::error::ReadlineError::Interrupted) => buffer.clear(),
            Err(rustyline::error::ReadlineError::Eof) => break,
            Err(error) => return fail(1, error),
        }
    }
    let _ = editor.save_history(&history);
    ExitCode::SUCCESS
}

/// `CAMERA@HH:MM-HH:MM` on the day starting at `day_us`.
fn parse_outage(text: &str, day_us: i64) -> Result<aggregator::synth::Outage, String> {
    let bad = || format!("{text:?}: expected CAMERA@HH:MM-HH:MM");
    let (camera, range) = text.split_once('@').ok_or_else(bad)?;
    let (from, to) = range.split_once('-').ok_or_else(bad)?;
    let minutes = |hm: &str| -> Result<i64, String> {
        let (h, m) = hm.split_once(':').ok_or_else(bad)?;
        let (h, m): (i64, i64) = (h.parse().map_err(|_| bad())?, m.parse().map_err(|_| bad())?);
        if (0..=24).contains(&h) && (0..60).contains(&m) && h * 60 + m <= 1440 {
            Ok(h * 60 + m)
        } else {
            Err(bad())
        }
    };
    let (from, to) = (minutes(from)?, minutes(to)?);
    if camera.is_empty() || from >= to {
        return Err(bad());
    }
    Ok(aggregator::synth::Outage {
        camera_id: camera.to_string(),
        from_us: day_us + from * 60_000_000,
        to_us: day_us + to * 60_000_000,
    })
}

#[allow(clippy::too_many_arguments)]
async fn synth(
    data_dir: PathBuf,
    start_day: &str,
    days: u32,
    people_per_day: u32,
    seed: u64,
    outages: &[String],
    flush_rows: usize,
    write_config: Option<PathBuf>,
) -> ExitCode {
    let start_day_us = match aggregator::reports::day_start_us(start_day) {
        Ok(us) => us,
        Err(error) => return fail(2, error),
    };
    let mut config = aggregator::synth::SynthConfig {
        seed,
        start_day_us,
        days,
        people_per_day,
        ..Default::default()
    };
    for text in outages {
        match parse_outage(text, start_day_us) {
            Ok(outage) => config.outages.push(outage),
            Err(error) => return fail(2, error),
        }
    }
    let storage = match aggregator::store::Storage::local(&data_dir) {
        Ok(storage) => storage,
        Err(error) => return fail(1, error),
    };
    let started = std::time::Instant::now();
    let stats = match aggregator::bench::generate(storage, &config, flush_rows).await {
        Ok(stats) => stats,
        Err(error) => return fail(1, error),
    };
    println!(
        "wrote {} rows in {} files ({} commits) in {:.1} s",
        stats.rows,
        stats.files - stats.compacted_files,
        stats.commits,
        started.elapsed().as_secs_f64()
    );
    if let Some(path) = write_config {
        let data_dir = std::fs::canonicalize(&data_dir).unwrap_or(data_dir);
        let mut text = format!(
            "# Written by `aggregator synth`: the synthetic store's departments.\n\
             data_dir = {:?}\n\n[kafka]\nbootstrap_servers = \"127.0.0.1:9092\"\n",
            data_dir.display().to_string()
        );
        for d in aggregator::config::Department::group(config.camera_departments()) {
            text.push_str(&format!(
                "\n[[departments]]\nname = {:?}\ncameras = {:?}\n",
                d.name, d.cameras
            ));
        }
        if let Err(error) = std::fs::write(&path, text) {
            return fail(1, format!("{}: {error}", path.display()));
        }
        println!("configuration: {}", path.display());
    }
    ExitCode::SUCCESS
}

async fn bench_command(bench: BenchArgs) -> ExitCode {
    match bench {
        BenchArgs::Ingest {
            events,
            dir,
            flush_rows,
        } => {
            if std::fs::read_dir(&dir).is_ok_and(|mut entries| entries.next().is_some()) {
                return fail(
                    2,
                    format!(
                        "{}: not empty; give a new or empty scratch directory",
                        dir.display()
                    ),
                );
            }
            let storage = match aggregator::store::Storage::local(&dir) {
                Ok(storage) => storage,
                Err(error) => return fail(1, error),
            };
            let config = aggregator::synth::SynthConfig {
                // ~6 presence rows (12 events) per person, plus health reports.
                people_per_day: u32::try_from(events / 12).unwrap_or(u32::MAX).max(1),
                ..Default::default()
            };
            let messages: Vec<_> = aggregator::synth::Synth::new(&config)
                .take(events)
                .map(|e| aggregator::bench::encode(&e))
                .collect();
            let bytes: usize = messages.iter().map(|(_, p)| p.len()).sum();
            match aggregator::bench::ingest(storage, &messages, flush_rows).await {
                Ok(f) => {
                    println!(
                        "{{\"bench\":\"ingest\",\"events\":{},\"payload_bytes\":{bytes},\"rows\":{},\"files\":{},\"buffer_s\":{:.3},\"write_s\":{:.3},\"events_per_s_one_core\":{:.0}}}",
                        f.events,
                        f.rows,
                        f.files,
                        f.buffering.as_secs_f64(),
                        f.writing.as_secs_f64(),
                        f.events_per_s()
                    );
                    ExitCode::SUCCESS
                }
                Err(error) => fail(1, error),
            }
        }
        BenchArgs::Reports {
            config,
            day,
            until,
            from,
            to,
            repeat,
            sql_out,
        } => {
            let config = match AggregatorConfig::load(&config) {
                Ok(config) => config,
                Err(error) => return fail(2, error),
            };
            let window = ReportArgs::Transitions {
                from: Some(from),
                to: Some(to),
                since: day.clone(),
                until,
            };
            let mut reports = Vec::new();
            for (name, args) in [
                ("transitions", window),
                ("coverage", ReportArgs::Coverage { day: day.clone() }),
                ("occupancy", ReportArgs::Occupancy { day: day.clone() }),
                ("dwell", ReportArgs::Dwell { day: day.clone() }),
            ] {
                match args.report() {
                    Ok(report) => reports.push((name, report)),
                    Err(error) => return fail(2, error),
                }
            }
            if let Some(dir) = &sql_out {
                use schemas::tables::Table;
                let Some(data_dir) = &config.data_dir else {
                    return fail(2, "the DuckDB comparison reads a local data_dir, not [s3]");
                };
                let setup = aggregator::query::duckdb_setup(
                    &std::fs::canonicalize(data_dir).unwrap_or(data_dir.clone()),
                    &[Table::PeoplePresent, Table::IdMerges, Table::CameraHealth],
                    &config.departments,
                );
                let mut files = vec![("setup".to_string(), setup)];
                for (name, report) in &reports {
                    let Ok(queries) = report.queries(Dialect::Duckdb) else {
                        continue;
                    };
                    let text: Vec<String> = queries.iter().map(|q| format!("{};", q.sql)).collect();
                    files.push((name.to_string(), text.join("\n")));
                }
                let _ = std::fs::create_dir_all(dir);
                for (name, text) in files {
                    if let Err(error) = std::fs::write(dir.join(format!("{name}.sql")), text) {
                        return fail(1, error);
                    }
                }
            }
            let ctx = match open_config(&config).await {
                Ok(ctx) => ctx,
                Err(error) => return fail(1, error),
            };
            for (name, report) in &reports {
                match aggregator::bench::time_report(&ctx, report, repeat).await {
                    Ok(times) => {
                        let secs: Vec<String> = times
                            .iter()
                            .map(|t| format!("{:.4}", t.as_secs_f64()))
                            .collect();
                        println!(
                            "{{\"engine\":\"datafusion\",\"report\":\"{name}\",\"seconds\":[{}]}}",
                            secs.join(",")
                        );
                    }
                    Err(error) => return fail(1, error),
                }
            }
            ExitCode::SUCCESS
        }
    }
}
