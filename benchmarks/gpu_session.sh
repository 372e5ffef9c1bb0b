#!/usr/bin/env bash
# Issue #17's GPU measurements in ONE call on an H100/H200 (about 8 minutes, under 10).
#
#   1. MFU: benchmarks/pretrain_throughput.py, compiled fp32 (TF32) and bf16, batch 512,
#      median of 3 timed windows of 30 steps.
#   2. The data path on the GPU: benchmarks/pretrain_data_path.py --device cuda (read and
#      upload of a paper-shaped tokens.h5, loader rate, whether the per-step index upload
#      blocks the host, one checkpoint save of the base model + AdamW from the GPU, one
#      evaluation of the 512 validation clips).
#   3. The whole job: `cortexscale pretrain` of the base point d6000000_h576_l8_a4_bf16_s0 on a
#      paper-shaped tokens.h5/frames.h5 (random codes) with config/studies/ahmadi2024.yaml's
#      pretrain section (64 clips per step, conditioned, eval every 2000 steps on 512 clips,
#      checkpoint every 500) for $STEPS steps (default 2500), compiled; its wall time projected
#      to the study's 116000 steps (1.9e9 training tokens).
#   4. The GPU ridge: benchmarks/ridge.py --gpu, 10k samples x 2k features x 300k voxels,
#      11 alphas, 5 folds, float32 (the engine turns TF32 off) and float64.
#
# Last line: RESULT device=<card> bf16_vs_fp32=<x> mfu_bf16=<fraction>
#            budget_minutes=<projected> ridge_s=<seconds>   (null where a part failed)
#
# Usage, from the repository root:
#   bash benchmarks/gpu_session.sh --prepare   # HERE (CPU machine, pip works): fetches the
#                                             # wheels of jsonschema & co into .whl/ (the device
#                                             # image lacks them; `cortexscale pretrain` needs them)
#   then ONE device call:  command "bash benchmarks/gpu_session.sh", carry [".whl"],
#                          timeout_s 600; logs come back under $OUT.
#   GPU_SESSION_SMOKE=1 bash benchmarks/gpu_session.sh   # the same plumbing on a CPU, tiny sizes
set -uo pipefail
cd "$(dirname "$0")/.."

WHEELS="jsonschema==4.26.0 jsonschema-specifications==2025.9.1 referencing==0.37.0 rpds-py==2026.9.1"
if [ "${1:-}" = "--prepare" ]; then
  grep -qx '/.whl/' .git/info/exclude 2>/dev/null || echo '/.whl/' >> .git/info/exclude
  # shellcheck disable=SC2086
  python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 \
    --platform manylinux2014_x86_64 -d .whl $WHEELS
  exit $?
fi

PY=${PY:-python3}
SMOKE=${GPU_SESSION_SMOKE:-0}
OUT=${OUT:-$(mktemp -d)}
WORK=$(mktemp -d)
export PYTHONUNBUFFERED=1 PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}"
LOG="$OUT/session.log"
say() { echo "== $* ($(date +%T))" | tee -a "$LOG"; }

if ! $PY -c "import jsonschema" 2>/dev/null; then
  if ls .whl/*.whl >/dev/null 2>&1; then
    $PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
      --target /tmp/site .whl/*.whl && export PYTHONPATH="$PYTHONPATH:/tmp/site"
  fi
  $PY -c "import jsonschema" 2>/dev/null \
    || say "jsonschema missing and no .whl/ carried: step 3 (cortexscale pretrain) will fail"
fi

if [ "$SMOKE" = 1 ]; then
  DEV=cpu; STEPS=${STEPS:-24}; GRID=d100000_h32_l1_a2_fp32_s0
  TP_ARGS="--device cpu --batch 1 --steps 1 --warmup 0 --repeats 2 --compile off"
  DP_ARGS="--device cpu --clips 5000 --repeats 2 --loader-clips 1024 --eval-clips 2"
  JOB_ARGS="--clips 5000"; SEC_ARGS="--eval-every 8 --checkpoint-every 4 --no-compile"
else
  DEV=cuda; STEPS=${STEPS:-2500}; GRID=d6000000_h576_l8_a4_bf16_s0
  TP_ARGS="--compile on --repeats 3"
  DP_ARGS="--device cuda --threads 4 --repeats 3"
  JOB_ARGS=""; SEC_ARGS=""
fi

say "device"
{ nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv 2>&1 \
    || echo "no nvidia-smi"
  $PY -c "import torch, h5py; print('torch', torch.__version__, 'cuda', torch.version.cuda, \
'cudnn', torch.backends.cudnn.version(), 'h5py', h5py.__version__)"
  nproc; free -g | head -2; df -h /tmp | tail -1; } 2>&1 | tee -a "$LOG"

say "1. MFU: pretrain_throughput.py"
# shellcheck disable=SC2086
timeout 170 $PY benchmarks/pretrain_throughput.py --precisions fp32,bf16 $TP_ARGS 2>&1 \
  | tee "$OUT/throughput.log"

say "2. data path on $DEV: pretrain_data_path.py"
# shellcheck disable=SC2086
timeout 70 $PY benchmarks/pretrain_data_path.py $DP_ARGS --workdir "$WORK" 2>&1 \
  | tee "$OUT/data_path.log"
# seconds of one evaluation of the 512 validation clips, from step 2 (else the upper bound)
EVAL_S=$(sed -n 's/.*eval_s_per_clip=\([0-9.e+-]*\).*/\1/p' "$OUT/data_path.log" | tail -1)
EVAL_S=$($PY -c "import sys; print(float(sys.argv[1]) * 512 if sys.argv[1] else '')" "$EVAL_S")
[ "$SMOKE" = 1 ] && EVAL_S=""  # the smoke job's model is not the base model step 2 timed

say "3. whole job: cortexscale pretrain $GRID, $STEPS steps"
# shellcheck disable=SC2086
$PY benchmarks/pretrain_data_path.py --write-only "$WORK/corpus" $JOB_ARGS | tee -a "$LOG"
# shellcheck disable=SC2086
SECTIONS=$($PY benchmarks/pretrain_data_path.py --job-sections config/studies/ahmadi2024.yaml \
  --steps "$STEPS" $SEC_ARGS)
echo "sections: $SECTIONS" | tee -a "$LOG"
T0=$($PY -c "import time; print(time.time())")
timeout 220 $PY -m cortexscale.cli pretrain --sections "$SECTIONS" --grid "$GRID" \
  --tokens "$WORK/corpus/tokens.h5" --frames "$WORK/corpus/frames.h5" \
  --out-dir "$WORK/job" --device "$DEV" --threads 4 2>&1 | tee "$OUT/job.log"
JOB_RC=${PIPESTATUS[0]}
WALL=$($PY -c "import sys, time; print(time.time() - float(sys.argv[1]))" "$T0")
echo "job exit $JOB_RC, wall ${WALL} s" | tee -a "$LOG"
if [ -f "$WORK/job/summary.json" ]; then
  cp "$WORK/job/summary.json" "$OUT/job_summary.json"
  cp "$WORK/job/log.tsv" "$OUT/job_log.tsv"
  # shellcheck disable=SC2086
  $PY benchmarks/pretrain_data_path.py --project "$WORK/job" --wall "$WALL" \
    ${EVAL_S:+--eval-s "$EVAL_S"} 2>&1 | tee "$OUT/projection.log"
fi

say "4. GPU ridge: ridge.py --gpu"
if [ "$DEV" = cuda ]; then
  timeout 80 $PY benchmarks/ridge.py --gpu --samples 10000 --features 2000 --targets 300000 \
    --alphas 11 --folds 5 --chunk 50000 2>&1 | tee "$OUT/ridge.log"
else
  echo "skipped: no CUDA" | tee "$OUT/ridge.log"
fi
rm -rf "$WORK"

field() {  # field FILE KEY: the value of KEY=... on FILE's last RESULT line, else null
  local v
  v=$(grep '^RESULT' "$1" 2>/dev/null | tail -1 | tr ' ' '\n' | sed -n "s/^$2=//p")
  echo "${v:-null}"
}
DEVICE=$(field "$OUT/throughput.log" device)
RIDGE=$(field "$OUT/ridge.log" ridge_s)
if [ "$RIDGE" = null ]; then  # today's ridge.py: the second (warm) float32 run's time
  RIDGE=$(sed -n 's/^float32: \([0-9.]*\) s.*/\1/p' "$OUT/ridge.log" 2>/dev/null | tail -1)
  RIDGE=${RIDGE:-null}
fi
echo "RESULT device=$DEVICE bf16_vs_fp32=$(field "$OUT/throughput.log" bf16_vs_fp32)" \
  "mfu_bf16=$(field "$OUT/throughput.log" mfu_bf16)" \
  "budget_minutes=$(field "$OUT/projection.log" budget_minutes) ridge_s=$RIDGE" | tee -a "$LOG"
