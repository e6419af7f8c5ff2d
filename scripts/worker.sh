#!/usr/bin/env bash
# `make worker`: one Celery worker on the inference, clips and default queues (with beat unless NO_BEAT=1).
set -euo pipefail
cd "$(dirname "$0")/.."
export NEOPAIN_DATA_DIR="${NEOPAIN_DATA_DIR:-$PWD/var}"
scripts/ensure_venv.sh run
beat=(-B "--schedule=$NEOPAIN_DATA_DIR/celerybeat-schedule")
if [ "${NO_BEAT:-0}" = "1" ]; then beat=(); fi
exec .venv/bin/celery -A neopain_site worker "${beat[@]}" -Q inference,clips,default \
    --pool=prefork --concurrency="${NEOPAIN_WORKER_CONCURRENCY:-1}" --without-gossip --without-mingle --loglevel=INFO
