#!/usr/bin/env bash
# Sets up on first use (scripts/setup.sh), then runs every check CI runs:
# clippy with warnings denied and the whole test suite, including the
# end-to-end test over RTSP, the broker, the three services and SQL.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

bash scripts/setup.sh
# shellcheck disable=SC1091
source "${ARGUS_CACHE:-$HOME/.cache/argus}/env.sh"

echo "[test] cargo clippy --workspace --all-targets -D warnings" >&2
cargo clippy --workspace --all-targets --quiet -- -D warnings
echo "[test] cargo test --workspace" >&2
cargo test --workspace
