#!/usr/bin/env bash
# The GPU benchmark in one command, sized for one H100/H200 in at most 8 minutes:
# PreAct-110, 164 and 1001 at batch 128 in bfloat16, JAX scanned (the default) and unrolled,
# and the PyTorch peer (eager, torch.compile, CUDA graphs) in the same run, alternating, after
# the peer's parity checks (benchmarks/test_torch_peer.py).
#
#   bash benchmarks/gpu.sh OUT_DIR [run_all flags...]
#
# Writes OUT_DIR/<name>.json (after every run), .log and .md (the summary against the targets).
# Extra flags go to `python -m benchmarks.run_all` and override the ones below (the tests run
# it on CPU at tiny size with `--suite cpu-smoke --nets 8 --no-torch ...`).
# On a machine without ml_collections (the device image), carry its wheel in .whl/ (see
# benchmarks/run_all.py): it is installed into /tmp/site first.
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:?usage: bash benchmarks/gpu.sh OUT_DIR [run_all flags...]}
shift
python=${PYTHON:-python3}
if ! "$python" -c "import ml_collections" 2>/dev/null; then
  "$python" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/site .whl/*.whl
  export PYTHONPATH=/tmp/site${PYTHONPATH:+:$PYTHONPATH}
fi
# The peer must compute the project's network before it is timed against it (needs pytest).
if "$python" -c "import pytest, torch" 2>/dev/null; then
  timeout 180 "$python" -m pytest -q -p no:cacheprovider benchmarks/test_torch_peer.py || {
    echo "error: the PyTorch peer failed its parity checks; nothing measured" >&2
    exit 1
  }
else
  echo "note: pytest or torch missing, the PyTorch peer's parity checks did not run" >&2
fi
# 110 and 164 first: a deep unrolled net may spend its whole run timeout compiling.
exec "$python" -m benchmarks.run_all --suite gpu --nets 110,164,1001 --layouts scanned,unrolled \
  --reps 1 --warmup 20 --steps 100 --no-epoch --deadline-s 420 --run-timeout-s 150 \
  --out "$out" "$@"
