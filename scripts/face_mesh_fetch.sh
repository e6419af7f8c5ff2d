#!/usr/bin/env bash
# Take MediaPipe's face-mesh model (face_landmark.tflite, Apache-2.0) out of the mediapipe==0.10.21
# wheel into weights/ (git-ignored). Only that file is kept: mediapipe itself pins numpy<2 and brings
# its own OpenCV; the model runs under ai-edge-litert (requirements.txt). Idempotent; run by
# scripts/ensure_venv.sh. The model's path at run time: NEOPAIN_FACE_MESH_MODEL, else this file.
set -euo pipefail
cd "$(dirname "$0")/.."
target="${NEOPAIN_FACE_MESH_MODEL:-weights/face_landmark.tflite}"
member="mediapipe/modules/face_landmark/face_landmark.tflite"
sha256="1055cb9d4a9ca8b8c688902a3a5194311138ba256bcc94e336d8373a5f30c814"
if [ -f "$target" ] && [ "$(sha256sum "$target" | cut -d' ' -f1)" = "$sha256" ]; then
    exit 0
fi
python="${PYTHON:-.venv/bin/python}"
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
echo "fetching the face-mesh model from the mediapipe==0.10.21 wheel"
"$python" -m pip download --quiet --no-deps --only-binary=:all: --python-version 3.11 \
    --platform manylinux_2_28_x86_64 mediapipe==0.10.21 -d "$tmp"
"$python" - "$tmp" "$member" "$target" <<'PY'
import pathlib, sys, zipfile
tmp, member, target = sys.argv[1:]
wheel = next(pathlib.Path(tmp).glob("mediapipe-*.whl"))
out = pathlib.Path(target)
out.parent.mkdir(parents=True, exist_ok=True)
with zipfile.ZipFile(wheel) as archive:
    out.write_bytes(archive.read(member))
PY
actual="$(sha256sum "$target" | cut -d' ' -f1)"
if [ "$actual" != "$sha256" ]; then
    echo "face_landmark.tflite has sha256 $actual, expected $sha256" >&2
    rm -f "$target"
    exit 1
fi
