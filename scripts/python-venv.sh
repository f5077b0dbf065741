#!/usr/bin/env bash
# Usage: source scripts/python-venv.sh VENV REQUIREMENTS
# Creates (or re-creates, when REQUIREMENTS changed) a virtualenv at VENV with
# exactly the hash-pinned packages of REQUIREMENTS. Idempotent.
python_venv() {
  local venv="$1" requirements="$2" stamp want
  stamp="$venv/.requirements.sha256"
  want="$(sha256sum "$requirements" | cut -d' ' -f1)"
  if [ ! -x "$venv/bin/python" ] || [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
    printf '\033[1;34m[python-venv]\033[0m installing %s into %s\n' "$(basename "$requirements")" "$venv" >&2
    python3 -m venv --clear "$venv"
    "$venv/bin/pip" install -q --disable-pip-version-check -r "$requirements"
    echo "$want" > "$stamp"
  fi
}
python_venv "$@"
