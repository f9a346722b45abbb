#!/usr/bin/env bash
# Wheels that gpu_check.sh needs on the lent GPU machine, built HERE (that machine has no network):
#   bash benchmarks/gpu_wheels.sh [--authors DIR]
# -> .gpu_wheels/*.whl (git-ignored; never commit them) for CPython 3.12 on x86-64 Linux, the packages the
#    GPU image lacks to import the project (its image has torch, numpy, pyarrow, opencv, yaml, ...: see
#    the device tool's KINDS.md). Versions are those this project is tested with.
# --authors DIR: also the authors' code's needs (hydra-core, omegaconf, antlr4 runtime, torcheval) and a
#    copy of DIR, an export of eloialonso/diamond (`git --git-dir BARE archive main | tar -x -C DIR`),
#    into .gpu_authors/diamond (git-ignored): gpu_check.sh then times their model steps beside ours.
# Then carry both on the call: carry [".gpu_wheels", ".gpu_authors"]; gpu_check.sh installs the wheels
# with --no-index into a temporary folder (no editable install; the project is imported from src/).
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-python3}"
AUTHORS=""
while [ $# -gt 0 ]; do
  case "$1" in
    --authors) AUTHORS="$2"; shift 2 ;;
    *) echo "usage: bash benchmarks/gpu_wheels.sh [--authors DIR]" >&2; exit 2 ;;
  esac
done
DEST=.gpu_wheels
mkdir -p "$DEST"
# what `import diamond_kedro.training.run` needs beyond the GPU image (kedro, mlflow, dvc are not needed:
# gpu_checks.py drives the library directly)
OURS=(pydantic==2.14.4 pydantic-core==2.50.5 annotated-types==0.8.0 typing-inspection==0.4.5
      gymnasium==1.4.0 farama-notifications==0.0.6 ale-py==0.12.1
      typing-extensions==4.16.0)  # pydantic needs a recent one; shadows an older one in the image
PLATFORMS=(--platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64
           --platform manylinux2014_x86_64 --platform manylinux1_x86_64)
download() {
  "$PY" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    "${PLATFORMS[@]}" -d "$DEST" "$@"
}
download "${OURS[@]}"
if [ -n "$AUTHORS" ]; then
  test -f "$AUTHORS/src/agent.py" || { echo "--authors $AUTHORS: not an export of eloialonso/diamond (no src/agent.py)" >&2; exit 2; }
  download 'hydra-core>=1.3,<1.4' 'omegaconf>=2.3,<2.4' 'torcheval>=0.0.7,<0.1'
  # omegaconf pins antlr4-python3-runtime 4.9.*, published as a source archive only: build its (pure-Python) wheel
  "$PY" -m pip wheel -q --no-deps -w "$DEST" 'antlr4-python3-runtime==4.9.3'
  rm -rf .gpu_authors/diamond && mkdir -p .gpu_authors && cp -r "$AUTHORS" .gpu_authors/diamond
  rm -rf .gpu_authors/diamond/.git
fi
du -sh "$DEST" ${AUTHORS:+.gpu_authors}
ls "$DEST"
