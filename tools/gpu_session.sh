#!/usr/bin/env bash
# One device call: install the carried wheels, check the background warm-up on CUDA, run `ishow bench --e2e`
# (cold compile cache, then a warm restart) and `ishow bench` (upstream in the same run). Logs and JSON → $OUT.
# Usage (on the GPU machine, in the repo root): bash tools/gpu_session.sh [phases: checks e2e e2e16 bench]
# First, here: bash tools/device_wheels.sh (fills .whl: the oracle wheels and the daemon's dependencies the image
# lacks), then run(command="bash tools/gpu_session.sh e2e bench", carry=[".whl"]).
set -u
OUT=${OUT:-/tmp/out}; mkdir -p "$OUT"
PHASES=${*:-e2e bench checks}
export PYTHONUNBUFFERED=1 NCCL_NVLS_ENABLE=0 TORCH_SYMM_MEM_DISABLE_MULTICAST=1 NVSHMEM_DISABLE_NVLS=1
T0=$(date +%s)
log() { echo "[$(( $(date +%s) - T0 ))s] $*" | tee -a "$OUT/session.log"; }
{ nvidia-smi -L; nvidia-smi --query-gpu=name,memory.total,memory.used,clocks.sm,driver_version --format=csv;
  python3 -c 'import torch, triton; print("torch", torch.__version__, "triton", triton.__version__, torch.cuda.get_device_name())'; } > "$OUT/env.txt" 2>&1
cat "$OUT/env.txt"
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target .site .whl/*.whl >>"$OUT/session.log" 2>&1 || { log "wheel install failed"; exit 1; }
export PYTHONPATH=$PWD:$PWD/.site
# the GPU image sets PYTHONDONTWRITEBYTECODE=1 and ships torch without .pyc: every start would compile torch's
# sources again (13.8-14.9 s of imports, session 10). A real install has the bytecode; so do the start-up numbers here.
unset PYTHONDONTWRITEBYTECODE
log "wheels installed"
for phase in $PHASES; do
  case $phase in
    checks)
      log "gpu_checks"; timeout ${CHECKS_S:-80} python3 tools/gpu_checks.py "$OUT/checks.json" > "$OUT/checks.log" 2>&1; log "gpu_checks rc=$?"
      tail -40 "$OUT/checks.log";;
    e2e)
      rm -rf models/compile-cache
      log "e2e (cold cache, then a warm restart)"
      timeout ${E2E_S:-260} python3 -m ishow bench --e2e --restarts 1 --json "$OUT/e2e.json" --daemon-log "$OUT/daemon.log" > "$OUT/e2e.txt" 2>&1
      log "e2e rc=$?"; cat "$OUT/e2e.txt" | tail -30;;
    e2e16)
      log "e2e with max_items 16 (warm cache)"
      timeout ${E2E16_S:-150} python3 -m ishow bench --e2e --max-items 16 --restarts 0 --during-warmup 0 --json "$OUT/e2e16.json" > "$OUT/e2e16.txt" 2>&1
      log "e2e16 rc=$?"; tail -12 "$OUT/e2e16.txt";;
    bench)
      log "bench"; timeout ${BENCH_S:-240} python3 -m ishow bench --iters 10 --warmup 3 --json "$OUT/bench.json" > "$OUT/bench.txt" 2>&1
      log "bench rc=$?"; tail -40 "$OUT/bench.txt";;
  esac
done
log "done"
