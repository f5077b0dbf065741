# Helpers for scripts that run the services as background processes
# (sourced by demo.sh and soak-edge-agent.sh): PIDS collects their process
# ids and is killed on exit; wait_for waits for a file they write.

PIDS=()
cleanup() {
  for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
}
trap cleanup EXIT

# wait_for FILE LINES SECONDS: until FILE has LINES lines.
wait_for() {
  local file="$1" lines="$2" deadline=$((SECONDS + $3))
  until [ -f "$file" ] && [ "$(wc -l < "$file")" -ge "$lines" ]; do
    [ "$SECONDS" -lt "$deadline" ] || { echo "timed out waiting for $file" >&2; exit 1; }
    sleep 0.2
  done
}
