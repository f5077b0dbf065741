#!/usr/bin/env bash
# Aggregator benchmarks, figures for the README:
#
# 1. Ingest throughput on one thread (`aggregator bench ingest`): synthetic
#    tracker events, protobuf-encoded as on Kafka, decoded, deduplicated,
#    buffered, sorted, Parquet-encoded, stored and committed.
# 2. Canned-report latency on DataFusion (the aggregator) side by side with
#    DuckDB on the same Parquet files in the same run, for each data-set
#    size (presence rows): `aggregator synth` writes 30 days of a synthetic
#    store; `aggregator bench reports` times the reports and writes the same
#    SQL in DuckDB's dialect; tools/duckdb_bench.py runs it with as many
#    threads as DataFusion uses (all cores).
#
# Prints a Markdown table (also in target/bench-aggregator/results.md).
#
# Environment:
#   ARGUS_BENCH_SIZES   presence-row counts (default "10M 100M"; suffix M or k)
#   ARGUS_BENCH_REPEAT  rounds (one run of each report per engine each); the
#                       best run is reported (default 3)
#   ARGUS_BENCH_EVENTS  events of the ingest run (default 4000000)
#   ARGUS_CACHE         as for scripts/setup.sh; DuckDB's virtualenv lives in
#                       $ARGUS_CACHE/duckdb-venv
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

log() { printf '\033[1;34m[bench-aggregator]\033[0m %s\n' "$*" >&2; }

SIZES="${ARGUS_BENCH_SIZES:-10M 100M}"
REPEAT="${ARGUS_BENCH_REPEAT:-3}"
EVENTS="${ARGUS_BENCH_EVENTS:-4000000}"
DAYS=30
# Presence rows per person in the synthetic store (measured: ~6.0).
ROWS_PER_PERSON=6

bash scripts/setup.sh
# shellcheck disable=SC1091
source "${ARGUS_CACHE:-$HOME/.cache/argus}/env.sh"
: "${ARGUS_CACHE:?env.sh did not set ARGUS_CACHE}"

VENV="$ARGUS_CACHE/duckdb-venv"
# shellcheck source=python-venv.sh
source scripts/python-venv.sh "$VENV" "$ROOT/tools/duckdb-requirements.txt"

cargo build --release --quiet -p aggregator
TARGET="${CARGO_TARGET_DIR:-$ROOT/target}"
AGG="$TARGET/release/aggregator"
OUT="$ROOT/target/bench-aggregator"
mkdir -p "$OUT"
THREADS="$(nproc)"

log "ingest: $EVENTS events on one thread"
rm -rf "$OUT/ingest"
ingest="$("$AGG" bench ingest --events "$EVENTS" --dir "$OUT/ingest")"
echo "$ingest" > "$OUT/ingest.json"
rm -rf "$OUT/ingest"

rows_of() {
  case "$1" in
    *M) echo $(( ${1%M} * 1000000 )) ;;
    *k) echo $(( ${1%k} * 1000 )) ;;
    *) echo "$1" ;;
  esac
}

: > "$OUT/reports.jsonl"
for size in $SIZES; do
  rows="$(rows_of "$size")"
  people=$(( rows / ROWS_PER_PERSON / DAYS ))
  data="$OUT/data-$size"
  if [ ! -f "$data/.complete" ]; then
    rm -rf "$data"
    log "$size: writing $DAYS days x $people people/day"
    "$AGG" synth --data-dir "$data/tables" --days "$DAYS" --people-per-day "$people" \
      --seed 11 --outage grocery-2@12:00-13:30 --write-config "$data/aggregator.toml" >&2
    touch "$data/.complete"
  fi
  # The outage is on the first day; the per-day reports look at day 1
  # (2025-01-06), transitions at its first week. The engines take turns,
  # one run of every report per turn, so a machine that gets busier or
  # quieter during the benchmark affects both alike.
  for round in $(seq "$REPEAT"); do
    log "$size, round $round: DataFusion"
    "$AGG" bench reports --config "$data/aggregator.toml" --day 2025-01-06 --until 2025-01-12 \
      --repeat 1 --sql-out "$data/duckdb-sql" \
      | sed "s/^{/{\"size\":\"$size\",/" | tee -a "$OUT/reports.jsonl" >&2
    log "$size, round $round: DuckDB"
    "$VENV/bin/python" tools/duckdb_bench.py "$data/duckdb-sql" 1 "$THREADS" \
      | sed "s/^{/{\"size\":\"$size\",/" | tee -a "$OUT/reports.jsonl" >&2
  done
done

"$VENV/bin/python" - "$OUT" <<'PY' | tee "$OUT/results.md"
import json, pathlib, sys
out = pathlib.Path(sys.argv[1])
ingest = json.loads((out / "ingest.json").read_text())
print(f"Ingest, one thread: {ingest['events']:,} events -> {ingest['rows']:,} rows in "
      f"{ingest['files']} files: {ingest['events_per_s_one_core']:,.0f} events/s "
      f"(buffering {ingest['buffer_s']} s, Parquet + commits {ingest['write_s']} s)\n")
runs = {}
for line in (out / "reports.jsonl").read_text().splitlines():
    r = json.loads(line)
    key = (r["size"], r["report"], r["engine"])
    runs[key] = min(r["seconds"] + [runs.get(key, float("inf"))])
print("| rows | report | DataFusion s | DuckDB s | ratio |")
print("|---|---|---:|---:|---:|")
for (size, report, engine), best in runs.items():
    if engine != "datafusion":
        continue
    duck = runs.get((size, report, "duckdb"))
    ratio = f"{best / duck:.2f}x" if duck else "n/a"
    duck_s = f"{duck:.3f}" if duck else "n/a"
    print(f"| {size} | {report} | {best:.3f} | {duck_s} | {ratio} |")
print("\nbest of the runs; ratio = DataFusion time / DuckDB time (goal <= 1.5x)")
PY
