#!/usr/bin/env bash
# The GPU check: one short, OFFLINE run on a lent GPU machine (≤ 8 minutes in all, so a rerun fits a window).
#   bash benchmarks/gpu_check.sh [--device cuda|cpu] [--out DIR] [--authors DIR] [--wheels DIR] [--budget S]
#
# Runs from the working tree: the project is imported from src/ (PYTHONPATH, no editable install); packages
# the machine lacks come from wheels built beforehand by benchmarks/gpu_wheels.sh (.gpu_wheels/, carried on
# the call) and are installed with --no-index into a temporary folder; nothing is fetched from a network.
# The authors' export (.gpu_authors/diamond, or --authors DIR) is optional: without it the side-by-side part
# is skipped, and the script says so.
#
# Parts, each under its own `timeout` and within the overall --budget (default 450 s; with the kill grace and summary the run stays under 8 min):
#   setup    GPU, torch and the imports                                        (setup.log)
#   checks   CPU == CUDA on shared weights, training lowers the loss in fp32 and bf16, fused AdamW equal,
#            dtypes of the recurrent states carried under autocast, syncs per step (checks.log)
#   resume   two ci epochs through the library, the second reopening the run   (checks.log)
#   models   the five model steps vs the authors' code (bench_vs_authors.py), then again with their
#            world-model compile (mode="reduce-overhead"); ours only (bench_models.py) without the export
#            (models.log, vs_authors.json, vs_authors_compiled.json)
#   epoch    a paper-config epoch scaled down, extrapolated per component      (epoch.log)
# All files go to a NEW folder gpu_check[_N] inside --out, else $OUT (the device tool's), else ./; nothing
# there is overwritten or deleted. gpu_check.json holds every part's figures and status.
#
# --device cpu: a dry run of the same script on the CPU with tiny models (the test suite runs it offline);
# it proves the script, nothing of CUDA. Its models part is skipped (paper-size steps take minutes on a CPU).
set -uo pipefail
cd "$(dirname "$0")/.."
DEVICE=cuda; OUTDIR="${OUT:-.}"; AUTHORS=""; WHEELS=.gpu_wheels; BUDGET=450; PY="${PYTHON:-python3}"
while [ $# -gt 0 ]; do
  case "$1" in
    --device) DEVICE="$2"; shift 2 ;;
    --out) OUTDIR="$2"; shift 2 ;;
    --authors) AUTHORS="$2"; shift 2 ;;
    --wheels) WHEELS="$2"; shift 2 ;;
    --budget) BUDGET="$2"; shift 2 ;;
    --python) PY="$2"; shift 2 ;;
    *) echo "usage: bash benchmarks/gpu_check.sh [--device cuda|cpu] [--out DIR] [--authors DIR] [--wheels DIR] [--budget S] [--python PY]" >&2; exit 2 ;;
  esac
done
case "$DEVICE" in cuda|cpu) ;; *) echo "--device must be cuda or cpu, got $DEVICE" >&2; exit 2 ;; esac
if [ -z "$AUTHORS" ] && [ -f .gpu_authors/diamond/src/agent.py ]; then AUTHORS=.gpu_authors/diamond; fi

mkdir -p "$OUTDIR"
D="$OUTDIR/gpu_check"; n=1
while [ -e "$D" ]; do n=$((n + 1)); D="$OUTDIR/gpu_check_$n"; done
mkdir -p "$D"
JSON="$D/gpu_check.json"; LOG="$D/gpu_check.log"
START=$SECONDS
say() { echo "$*" | tee -a "$LOG"; }

SITE=$(mktemp -d "${TMPDIR:-/tmp}/gpu_check_site.XXXXXX")
trap 'rm -rf "$SITE"' EXIT
export PYTHONPATH="$PWD/src:$PWD:$SITE${PYTHONPATH:+:$PYTHONPATH}"
export PYTHONUNBUFFERED=1 KEDRO_DISABLE_TELEMETRY=1 DO_NOT_TRACK=1 TQDM_DISABLE=1 MPLBACKEND=Agg
export PIP_NO_INDEX=1 PIP_DISABLE_PIP_VERSION_CHECK=1   # offline: pip never reaches for an index
TINY=()
if [ "$DEVICE" = cpu ]; then
  TINY=(--tiny)
  export DIAMOND_CONV_LAYOUT=contiguous OMP_NUM_THREADS=1   # no layout probe of the paper-size network
fi

declare -A RC SEC
ORDER=()
status=0
# part NAME LIMIT LOGFILE CMD...: CMD under `timeout`, never past the overall budget
part() {
  local name=$1 limit=$2 logfile=$3; shift 3
  local left=$((BUDGET - (SECONDS - START) - 5))
  ORDER+=("$name")
  if [ "$left" -lt 15 ]; then
    say "=== $name: SKIPPED (only ${left}s of the ${BUDGET}s budget left)"; RC[$name]=skipped; SEC[$name]=0; status=1; return
  fi
  [ "$limit" -gt "$left" ] && limit=$left
  say "=== $name (limit ${limit}s, $((SECONDS - START))s elapsed)"
  local t0=$SECONDS
  timeout -k 10 "$limit" "$@" 2>&1 | tee -a "$D/$logfile"
  local rc=${PIPESTATUS[0]}
  SEC[$name]=$((SECONDS - t0))
  if [ "$rc" -eq 124 ] || [ "$rc" -eq 137 ]; then RC[$name]=timeout; status=1
  elif [ "$rc" -ne 0 ]; then RC[$name]=$rc; status=1
  else RC[$name]=0; fi
  say "=== $name: ${RC[$name]} after ${SEC[$name]}s"
}

setup() {
  if [ "$DEVICE" = cuda ]; then
    nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv || { echo "no nvidia-smi: no NVIDIA GPU and driver here"; return 1; }
  fi
  if compgen -G "$WHEELS/*.whl" > /dev/null; then
    echo "installing $(ls "$WHEELS"/*.whl | wc -l) wheels from $WHEELS into $SITE (--no-index)"
    "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target "$SITE" "$WHEELS"/*.whl || return 1
  else
    echo "no wheels in $WHEELS: using what $PY has (bash benchmarks/gpu_wheels.sh builds them)"
  fi
  "$PY" - "$DEVICE" <<'EOF'
import importlib, sys
missing = []
for name in ("torch", "numpy", "yaml", "pydantic", "gymnasium", "ale_py", "pyarrow", "cv2"):
    try:
        importlib.import_module(name)
    except ImportError:
        missing.append(name)
if missing:
    sys.exit(f"missing: {', '.join(missing)} (build wheels with benchmarks/gpu_wheels.sh and carry .gpu_wheels)")
import torch, diamond_kedro
print(f"python {sys.version.split()[0]}, torch {torch.__version__}, CUDA {torch.version.cuda}, "
      f"cuda available {torch.cuda.is_available()}, diamond_kedro from {diamond_kedro.__file__}")
if sys.argv[1] == "cuda" and not torch.cuda.is_available():
    sys.exit("torch sees no CUDA device")
EOF
}

say "gpu_check: device $DEVICE, budget ${BUDGET}s, files in $D, authors' export: ${AUTHORS:-absent (side-by-side part skipped)}"
export DEVICE WHEELS SITE PY
part setup 60 setup.log bash -c "$(declare -f setup); setup"
if [ "${RC[setup]}" != 0 ]; then
  say "setup failed: nothing else can run"
else
  CHECKS=("$PY" benchmarks/gpu_checks.py --device "$DEVICE" "${TINY[@]}" --json "$JSON")
  part checks $([ "$DEVICE" = cpu ] && echo 200 || echo 100) checks.log "${CHECKS[@]}" --part checks
  part resume 60 checks.log "${CHECKS[@]}" --part resume
  if [ "$DEVICE" = cpu ]; then
    ORDER+=(models); RC[models]=skipped; SEC[models]=0
    say "=== models: skipped in the CPU dry run (paper-size model steps take minutes on a CPU)"
  elif [ -n "$AUTHORS" ]; then
    VS=("$PY" benchmarks/bench_vs_authors.py --authors "$AUTHORS" --device cuda --rounds 1 --steps 3 --warmup 2 --no-flops)
    part models 130 models.log "${VS[@]}" --json "$D/vs_authors.json"
    # their trainer compiles the world-model env's two step functions (training.compile_wm, reduce-overhead)
    part models_compiled 80 models.log "${VS[@]}" --authors-compile --step imagination_step --step ac_update \
      --json "$D/vs_authors_compiled.json"
  else
    say "=== models: the authors' export is absent (.gpu_authors/diamond): ours only, no side-by-side"
    part models 120 models.log "$PY" benchmarks/bench_models.py --device cuda --steps 3
  fi
  part epoch $([ "$DEVICE" = cpu ] && echo 120 || echo 80) epoch.log "${CHECKS[@]}" --part epoch
fi

summary=""
for name in "${ORDER[@]}"; do summary+="$name=${RC[$name]}:${SEC[$name]} "; done
"$PY" - "$JSON" "$DEVICE" "$BUDGET" "$((SECONDS - START))" "${AUTHORS:-}" $summary <<'EOF' | tee -a "$LOG"
import json, sys
from pathlib import Path
path, device, budget, total, authors, *parts = sys.argv[1:]
data = json.loads(Path(path).read_text()) if Path(path).exists() else {}
data["run"] = {
    "device": device, "budget_s": int(budget), "total_s": int(total), "authors_export": authors or None,
    "parts": {p.split("=")[0]: {"status": p.split("=")[1].split(":")[0], "seconds": int(p.split(":")[-1])} for p in parts},
}
Path(path).write_text(json.dumps(data, indent=1, default=str))
print(f"\n{'part':16s} {'status':>8s} {'s':>5s}")
for name, r in data["run"]["parts"].items():
    print(f"{name:16s} {r['status']:>8s} {r['seconds']:5d}")
syncs = data.get("checks", {}).get("syncs_per_step")
if syncs:
    print("syncs per step: " + ", ".join(f"{k} {v}" for k, v in syncs.items()))
ep = data.get("epoch", {}).get("epoch")
if ep:
    print(f"paper-config epoch (extrapolated): {ep['paper_epoch_s']:.1f} s ({ep['precision']})")
EOF
say "gpu_check: $((SECONDS - START))s in all, exit $status; files in $D"
exit $status
