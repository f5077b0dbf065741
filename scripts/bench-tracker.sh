#!/usr/bin/env bash
# Tracker evaluation: our Deep SORT (`tracker eval run`) against the Python
# peer deep-sort-realtime 1.3.2 (tools/deepsort_peer.py) on the same synthetic
# detections, scored on MOTChallenge ground truth (TUD-Campus, TUD-Stadtmitte
# from py-motmetrics' test data).
#
# For each sequence and noise level (low, medium, high), with a fixed seed:
#   tracker eval synth   ground truth -> detections with embeddings
#   tracker eval run     our tracks       (one JSON line: frames, boxes, seconds)
#   deepsort_peer.py     the peer's tracks (the same JSON line)
#   tracker eval score   MOTA, IDF1, ... of each
# then prints a Markdown table. Both trackers get the same parameters.
#
# Work files stay in target/bench-tracker/<sequence>/<noise>/ (the table too:
# target/bench-tracker/results.md).
#
# Environment:
#   ARGUS_CACHE  as for scripts/setup.sh (default ~/.cache/argus); the peer's
#                virtualenv lives in $ARGUS_CACHE/peer-venv
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

log() { printf '\033[1;34m[bench-tracker]\033[0m %s\n' "$*" >&2; }
die() { printf '\033[1;31m[bench-tracker] error:\033[0m %s\n' "$*" >&2; exit 1; }

SEQUENCES=(TUD-Campus TUD-Stadtmitte)
NOISE_LEVELS=(low medium high)
SEED=7
# Deep SORT's published parameters (nn_budget 100 as in deep_sort_app.py),
# passed identically to both trackers.
TRACKER_PARAMS=(--max-age 30 --n-init 3 --max-iou-distance 0.7 --max-cosine-distance 0.2 --nn-budget 100)
# Each file is tracked this many times (fresh tracker each time) so that the
# timed work is long enough to measure; tracks come from the first run.
REPEAT="${ARGUS_BENCH_REPEAT:-20}"

# opencv-python (a dependency of deep-sort-realtime) loads libGL and glib.
ARGUS_EXTRA_APT_PACKAGES="libgl1 libglib2.0-0" bash scripts/setup.sh
# shellcheck disable=SC1091
source "${ARGUS_CACHE:-$HOME/.cache/argus}/env.sh"
: "${ARGUS_CACHE:?env.sh did not set ARGUS_CACHE}" "${ARGUS_ASSETS:?env.sh did not set ARGUS_ASSETS}"

for seq in "${SEQUENCES[@]}"; do
  [ -f "$ARGUS_ASSETS/motmetrics/$seq/gt.txt" ] \
    || die "$ARGUS_ASSETS/motmetrics/$seq/gt.txt is missing (scripts/setup.sh fetches it from motmetrics 1.4.0)"
done

# ---------------------------------------------------------------- python peer

# Reinstalled from scratch only when tools/peer-requirements.txt changes.
PEER_VENV="$ARGUS_CACHE/peer-venv"
# shellcheck source=python-venv.sh
source scripts/python-venv.sh "$PEER_VENV" "$ROOT/tools/peer-requirements.txt"
PY="$PEER_VENV/bin/python"

# ---------------------------------------------------------------- build
log "building the tracker (release)"
cargo build --release --quiet -p tracker
TARGET="${CARGO_TARGET_DIR:-$ROOT/target}"
TRACKER="$TARGET/release/tracker"
[ -x "$TRACKER" ] || die "$TRACKER was not built"

# ---------------------------------------------------------------- runs
WORK="$TARGET/bench-tracker"
mkdir -p "$WORK"
RUNS="$WORK/runs.tsv"
: > "$RUNS"
for seq in "${SEQUENCES[@]}"; do
  gt="$ARGUS_ASSETS/motmetrics/$seq/gt.txt"
  for noise in "${NOISE_LEVELS[@]}"; do
    dir="$WORK/$seq/$noise"
    mkdir -p "$dir"
    log "$seq, $noise noise"
    "$TRACKER" eval synth --gt "$gt" --noise "$noise" --seed "$SEED" --out "$dir/detections.txt"
    "$TRACKER" eval run --detections "$dir/detections.txt" --out "$dir/argus.txt" \
      "${TRACKER_PARAMS[@]}" --repeat "$REPEAT" > "$dir/argus-run.json"
    "$PY" "$ROOT/tools/deepsort_peer.py" --detections "$dir/detections.txt" --out "$dir/peer.txt" \
      "${TRACKER_PARAMS[@]}" --repeat "$REPEAT" > "$dir/peer-run.json"
    "$TRACKER" eval score --gt "$gt" --tracks "$dir/argus.txt" > "$dir/argus-score.json"
    "$TRACKER" eval score --gt "$gt" --tracks "$dir/peer.txt" > "$dir/peer-score.json"
    printf '%s\t%s\t%s\n' "$seq" "$noise" "$dir" >> "$RUNS"
  done
done

# ---------------------------------------------------------------- table
"$PY" - "$RUNS" > "$WORK/results.md" <<'EOF'
import json
import sys


def load(path):
    """The JSON object a command printed: all of stdout, else its last JSON line."""
    with open(path, encoding="utf-8") as f:
        text = f.read()
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        lines = [l for l in text.splitlines() if l.strip().startswith("{")]
        if not lines:
            sys.exit(f"{path}: no JSON object in the output")
        return json.loads(lines[-1])


def field(obj, key, path):
    if key not in obj:
        sys.exit(f"{path}: no {key!r} in {obj}")
    return float(obj[key])


rows, sums = [], {"argus": [0.0, 0.0], "peer": [0.0, 0.0]}
scores = {k: [] for k in ("mota_argus", "mota_peer", "idf1_argus", "idf1_peer")}
with open(sys.argv[1], encoding="utf-8") as f:
    runs = [line.rstrip("\n").split("\t") for line in f if line.strip()]
for seq, noise, d in runs:
    rate, boxes_of = {}, {}
    for who in ("argus", "peer"):
        run_path, score_path = f"{d}/{who}-run.json", f"{d}/{who}-score.json"
        run, score = load(run_path), load(score_path)
        boxes, seconds = field(run, "boxes", run_path), field(run, "seconds", run_path)
        sums[who][0] += boxes
        sums[who][1] += seconds
        rate[who] = boxes / seconds if seconds > 0 else float("inf")
        boxes_of[who] = boxes
        scores[f"mota_{who}"].append(field(score, "mota", score_path))
        scores[f"idf1_{who}"].append(field(score, "idf1", score_path))
    if boxes_of["argus"] != boxes_of["peer"]:
        print(f"warning: {seq} {noise}: argus and the peer count different boxes", file=sys.stderr)
    rows.append((seq, noise, *(scores[k][-1] for k in scores), rate["argus"], rate["peer"]))


def pct(v):
    return f"{100 * v:.1f}"


def rate_cell(v):
    return f"{v:,.0f}"


def ratio(a, b):
    return f"{a / b:.1f}×" if 0 < b < float("inf") else "n/a"


print("| sequence | noise | MOTA argus | MOTA peer | IDF1 argus | IDF1 peer | argus boxes/s | peer boxes/s | speed ratio |")
print("|---|---|---:|---:|---:|---:|---:|---:|---:|")
for seq, noise, ma, mp, ia, ip, ra, rp in rows:
    print(f"| {seq} | {noise} | {pct(ma)} | {pct(mp)} | {pct(ia)} | {pct(ip)} | {rate_cell(ra)} | {rate_cell(rp)} | {ratio(ra, rp)} |")
if rows:
    mean = {k: sum(v) / len(v) for k, v in scores.items()}
    total = {who: b / s if s > 0 else float("inf") for who, (b, s) in sums.items()}
    print(
        f"| **all** | mean / total | {pct(mean['mota_argus'])} | {pct(mean['mota_peer'])} "
        f"| {pct(mean['idf1_argus'])} | {pct(mean['idf1_peer'])} | {rate_cell(total['argus'])} "
        f"| {rate_cell(total['peer'])} | {ratio(total['argus'], total['peer'])} |"
    )
print()
print("MOTA and IDF1 in %; boxes/s = detections fed / seconds in the update loop")
print("(file I/O excluded); speed ratio = argus boxes/s ÷ peer boxes/s; the last row")
print("averages MOTA and IDF1 over the runs and divides all boxes by all seconds.")
EOF
cat "$WORK/results.md"
