#!/usr/bin/env bash
# The prepared GPU benchmark of issue 19, for a machine lent for minutes: under 8 minutes in all.
#
#   bash scripts/bench_gpu.sh            # on the GPU machine (CUDA image + carried wheels)
#   bash scripts/bench_gpu.sh --quick    # tiny counts: checks the whole script on a CPU first
#
# 1. engine: scripts/bench_gpu.py: decode / detect / crop / classify frames/s at batch 32, 128, 512
#    for the bootstrap FER proxy and PainNet mobilenet_v2, the engine end to end, fp32 vs bf16.
# 2. worker: scripts/bench_worker.py on the same device, SQLite (the CUDA image has no PostgreSQL):
#    frame_process per queued frame, NEOPAIN_BATCH_MAX frames per claim, saliency maps on and off,
#    in one process, then in BENCH_GPU_PROCESSES (default 8) worker processes sharing the GPU (as
#    `celery worker --concurrency 8` runs them; the bootstrap model only, to fit the time).
# Each stage runs under `timeout` and its own internal budget; a failing stage prints its error and
# the next one still runs. The last line is the one-line summary. With $OUT set, the full log
# (bench_gpu.log) and the figures (bench_gpu.json) are written there.
# Environment: PYTHON (default python3), NEOPAIN_BENCH_BUNDLES (prebuilt bootstrap.pt/painnet.pt,
# so the weight-only packages need not travel), BENCH_GPU_WORKER_FRAMES (default 1024),
# BENCH_GPU_PROCESSES (default 8), BENCH_GPU_BATCH_SIZES (engine batch sizes, default 32,128,512),
# BENCH_GPU_ENGINE_FRAMES (default 2048): a shorter lease can run the engine at batch 512 alone.
set -u
cd "$(dirname "$0")/.."
PY="${PYTHON:-python3}"
OUTDIR="${OUT:-${TMPDIR:-/tmp}/neopain-bench-gpu}"
mkdir -p "$OUTDIR"
LOG="$OUTDIR/bench_gpu.log"
JSON="$OUTDIR/bench_gpu.json"
export NEOPAIN_BENCH_DIR="${NEOPAIN_BENCH_DIR:-${TMPDIR:-/tmp}/neopain-bench}"
export PYTHONUNBUFFERED=1

PROCESSES="${BENCH_GPU_PROCESSES:-8}"
if [ "${1:-}" = "--quick" ]; then
  ENGINE_ARGS=(--batch-sizes 2,4 --frames 8 --budget 150 --processes 2)
  ENGINE_LIMIT=200
  WORKER_ARGS=(--modes worker --frames 8 --repeats 1 --batch-max 8 --models bootstrap-fer-proxy)
  WORKER_LIMIT=150
  MULTI_ARGS=(--modes worker --frames 8 --repeats 1 --batch-max 4 --models bootstrap-fer-proxy --processes 2)
  MULTI_LIMIT=150
else
  ENGINE_ARGS=(--batch-sizes "${BENCH_GPU_BATCH_SIZES:-32,128,512}" --frames "${BENCH_GPU_ENGINE_FRAMES:-2048}"
               --budget 150 --processes 3
               --models painnet-mobilenet_v2,bootstrap-fer-proxy)
  ENGINE_LIMIT=190
  WORKER_FRAMES="${BENCH_GPU_WORKER_FRAMES:-1024}"
  WORKER_ARGS=(--modes worker,worker-nosaliency --frames "$WORKER_FRAMES" --repeats 2 --batch-max 512)
  WORKER_LIMIT=110
  MULTI_ARGS=(--modes worker,worker-nosaliency --frames $((WORKER_FRAMES * 4)) --repeats 1 --batch-max 256
              --models bootstrap-fer-proxy --processes "$PROCESSES")
  MULTI_LIMIT=120
fi

stage() {
  local name="$1" limit="$2"
  shift 2
  local started=$SECONDS
  echo "## stage $name (limit ${limit}s): $*"
  timeout -k 10 "$limit" "$@"
  local rc=$?
  if [ $rc -ne 0 ]; then
    echo "## stage $name FAILED: exit $rc$([ $rc -eq 124 ] && echo ' (time limit)') after $((SECONDS - started)) s"
  else
    echo "## stage $name done in $((SECONDS - started)) s"
  fi
}

{
  echo "# bench_gpu.sh $(date -u '+%Y-%m-%d %H:%M:%S UTC') on $(hostname)"
  nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>/dev/null || echo "# no nvidia-smi"
  "$PY" -c 'import torch, torchvision; print("# torch", torch.__version__, "torchvision", torchvision.__version__, "cuda", torch.cuda.is_available())'
  stage engine "$ENGINE_LIMIT" "$PY" scripts/bench_gpu.py --json "$JSON" "${ENGINE_ARGS[@]}"
  stage worker "$WORKER_LIMIT" "$PY" scripts/bench_worker.py "${WORKER_ARGS[@]}"
  # Each process its share of the CPU threads, as NEOPAIN_TORCH_THREADS asks for with --concurrency.
  CPUS=$(nproc 2>/dev/null || echo 4)
  NEOPAIN_TORCH_THREADS=$(( CPUS / PROCESSES > 0 ? CPUS / PROCESSES : 1 )) \
    stage worker-processes "$MULTI_LIMIT" "$PY" scripts/bench_worker.py "${MULTI_ARGS[@]}"
} 2>&1 | tee "$LOG"
"$PY" scripts/bench_gpu.py --json "$JSON" --summary "$LOG" 2>&1 | tee -a "$LOG"
