#!/usr/bin/env bash
# Sets up on first use (scripts/setup.sh), then runs every check CI runs:
# clippy with warnings denied and the whole test suite, including the
# end-to-end test over RTSP, the broker, the three services and SQL, and the
# aggregator's crash test on a local S3-compatible server (moto, from PyPI,
# installed into $ARGUS_CACHE/s3-venv) and the security console driven in
# headless Chromium (Debian) by playwright-core (npm).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

# CI builds once from scratch: incremental caches would only cost disk.
if [ "${CI:-}" = true ]; then export CARGO_INCREMENTAL=0; fi

# The security console's browser test needs Debian's Chromium and Node.js
# (playwright-core comes from npm below).
EXTRA="chromium"
command -v node >/dev/null 2>&1 || EXTRA="$EXTRA nodejs"
command -v npm >/dev/null 2>&1 || EXTRA="$EXTRA npm"
ARGUS_EXTRA_APT_PACKAGES="$EXTRA ${ARGUS_EXTRA_APT_PACKAGES:-}" bash scripts/setup.sh
# shellcheck disable=SC1091
source "${ARGUS_CACHE:-$HOME/.cache/argus}/env.sh"
# shellcheck source=python-venv.sh
source scripts/python-venv.sh "$ARGUS_CACHE/s3-venv" "$ROOT/tools/s3-requirements.txt"
export ARGUS_S3_PYTHON="$ARGUS_CACHE/s3-venv/bin/python"
echo "[test] npm ci (playwright-core for the console test)" >&2
npm ci --prefix tests/browser --no-audit --no-fund --loglevel=error >/dev/null

echo "[test] cargo clippy --workspace --all-targets -D warnings" >&2
cargo clippy --workspace --all-targets --quiet -- -D warnings
echo "[test] cargo test --workspace" >&2
cargo test --workspace
