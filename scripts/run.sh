#!/usr/bin/env bash
# `make run`: install, migrate, first-run setup, then a real Celery worker (+ beat) in the
# background and the web server in the foreground on 127.0.0.1:$PORT. Ctrl-C stops both.
#
# Honours PORT (default 8000) and NEOPAIN_DATA_DIR (default ./var): database, media, broker and
# models all live there, so `manage.py` run with the same NEOPAIN_DATA_DIR reaches the same data.
set -euo pipefail
cd "$(dirname "$0")/.."

export PORT="${PORT:-8000}"
export NEOPAIN_DATA_DIR="${NEOPAIN_DATA_DIR:-$PWD/var}"
mkdir -p "$NEOPAIN_DATA_DIR"
export NEOPAIN_DATA_DIR="$(cd "$NEOPAIN_DATA_DIR" && pwd)"

scripts/ensure_venv.sh run
py=.venv/bin/python

$py manage.py migrate --noinput -v 0
$py manage.py neopain_setup --url "http://127.0.0.1:$PORT/"
if [ "${NEOPAIN_ENV:-development}" = "production" ]; then
    $py manage.py collectstatic --noinput -v 0
fi

log_dir="$NEOPAIN_DATA_DIR/logs"
mkdir -p "$log_dir"
# prefork (not solo) so the soft/hard time limits are enforced; beat (-B) runs the sweeper.
.venv/bin/celery -A neopain_site worker -B -Q inference,clips,default \
    --pool=prefork --concurrency="${NEOPAIN_WORKER_CONCURRENCY:-1}" \
    --schedule="$NEOPAIN_DATA_DIR/celerybeat-schedule" \
    --without-gossip --without-mingle --loglevel=INFO >>"$log_dir/worker.log" 2>&1 &
worker_pid=$!

.venv/bin/gunicorn neopain_site.wsgi:application --bind "127.0.0.1:$PORT" \
    --workers "${WEB_CONCURRENCY:-2}" --timeout 120 --access-logfile - \
    --limit-request-line 4094 --limit-request-fields 100 --limit-request-field_size 8190 &
web_pid=$!

stop() {
    trap - INT TERM EXIT
    echo
    echo "stopping web server and worker ..."
    kill -TERM "$web_pid" "$worker_pid" 2>/dev/null || true
    wait "$web_pid" 2>/dev/null || true
    wait "$worker_pid" 2>/dev/null || true
}
trap stop INT TERM EXIT

echo
echo "NeoPain is running: http://127.0.0.1:$PORT/   (API docs: http://127.0.0.1:$PORT/api/docs/)"
echo "worker log: $log_dir/worker.log   data: $NEOPAIN_DATA_DIR   Ctrl-C stops both."
if [ "${NEOPAIN_DEBUG:-0}" = "1" ]; then
    echo "DEBUG is ON (NEOPAIN_DEBUG=1): tracebacks and the URL list are shown to anyone who can reach this port."
else
    echo "DEBUG is off. For tracebacks in the browser while developing: NEOPAIN_DEBUG=1 make run"
fi
# `wait` (not a foreground child) so a TERM to this script is handled at once.
wait -n "$web_pid" "$worker_pid" || true
