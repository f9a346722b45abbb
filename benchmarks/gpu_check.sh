#!/usr/bin/env bash
# The GPU check, ready for the day a CUDA GPU is at hand (≈ 8 min on one GPU, most of it the epochs):
#   bash benchmarks/gpu_check.sh [--authors DIR] [--python PY]
# 1. a CUDA build of torch in .venv-gpu (skipped when the interpreter already sees a GPU),
# 2. benchmarks/gpu_checks.py: CPU == CUDA on shared weights, training steps, bf16 fidelity, host syncs,
# 3. the model steps at the paper config (bench_vs_authors.py --device cuda when --authors DIR is given,
#    else bench_models.py --device cuda),
# 4. two paper-config Breakout epochs with per-component times (first training shortened to 400 steps
#    per component so the check fits in minutes; later epochs are the paper's 400/400/400).
# Figures go to gpu_check_<date>/ (one log per part) and to the terminal.
set -euo pipefail
cd "$(dirname "$0")/.."
AUTHORS="" ; PY=""
while [ $# -gt 0 ]; do
  case "$1" in
    --authors) AUTHORS="$2"; shift 2 ;;
    --python) PY="$2"; shift 2 ;;
    *) echo "usage: bash benchmarks/gpu_check.sh [--authors DIR] [--python PY]" >&2; exit 2 ;;
  esac
done
if [ -z "$PY" ]; then
  if [ -x .venv/bin/python ] && .venv/bin/python -c 'import torch,sys; sys.exit(0 if torch.cuda.is_available() else 1)' 2>/dev/null; then
    PY=.venv/bin/python
  else
    command -v nvidia-smi >/dev/null || { echo "no nvidia-smi: this script needs an NVIDIA GPU and driver" >&2; exit 1; }
    test -x .venv-gpu/bin/python || python3 -m venv .venv-gpu
    .venv-gpu/bin/pip install -q 'torch>=2.4,<2.14'     # PyPI's default Linux wheel is the CUDA build
    .venv-gpu/bin/pip install -q -e '.[dev]'
    [ -z "$AUTHORS" ] || .venv-gpu/bin/pip install -q hydra-core torcheval
    PY=.venv-gpu/bin/python
  fi
fi
OUT="gpu_check_$(date +%Y%m%d_%H%M%S)"; mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 KEDRO_DISABLE_TELEMETRY=1 DO_NOT_TRACK=1
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$OUT/gpu.txt"
status=0
"$PY" benchmarks/gpu_checks.py 2>&1 | tee "$OUT/checks.log" || status=1
if [ -n "$AUTHORS" ]; then
  "$PY" benchmarks/bench_vs_authors.py --authors "$AUTHORS" --device cuda --rounds 2 --steps 5 --json "$OUT/vs_authors.json" 2>&1 | tee "$OUT/vs_authors.log" || status=1
else
  "$PY" benchmarks/bench_models.py --device cuda --steps 5 2>&1 | tee "$OUT/models.log" || status=1
fi
"$PY" benchmarks/bench_epoch.py --env base --epochs 2 --params \
  run.device=cuda,denoiser.training.steps_first_epoch=400,rew_end_model.training.steps_first_epoch=400,actor_critic.training.steps_first_epoch=400,collect.first_epoch.min_steps=2000 \
  2>&1 | tee "$OUT/epochs.log" || status=1
echo "figures in $OUT/ (exit $status)"
exit $status
