#!/usr/bin/env bash
# The full GPU benchmark suite, for a GPU window after the first contact
# (benchmarks/gpu_box/first_contact.sh, which times the headline configurations first and should
# run before this): PreAct-1001, then 164, then 110, at batch 128 in bfloat16, JAX scanned and
# the PyTorch peer (eager, torch.compile, CUDA graphs), after the peer's parity checks
# (benchmarks/test_torch_peer.py). At most 9 minutes.
#
#   bash benchmarks/gpu.sh [OUT_DIR] [run_all flags...]       # default $OUT
#
# The device call is first_contact's (prepare with benchmarks/gpu_box/prepare.sh, carry .gpu_box)
# with this command. Writes three files into OUT_DIR: <name>.json (after every run), .log and .md
# (the summary against the targets). Extra flags go to `python -m benchmarks.run_all` and
# override the ones below (e.g. --layouts scanned,unrolled; the tests run it on CPU at tiny size
# with `--suite cpu-smoke --nets 8 --no-torch ...`).
set -euo pipefail
cd "$(dirname "$0")/.."
if [ $# -gt 0 ] && [[ $1 != -* ]]; then
  out=$1
  shift
else
  out=${OUT:?usage: bash benchmarks/gpu.sh [OUT_DIR] [run_all flags...] (or set \$OUT)}
fi
# shellcheck source=benchmarks/gpu_box/setup.sh
source benchmarks/gpu_box/setup.sh
# The peer must compute the project's network before it is timed against it (needs pytest).
if "$python" -c "import pytest, torch" 2>/dev/null; then
  timeout 180 "$python" -m pytest -q -p no:cacheprovider benchmarks/test_torch_peer.py || {
    echo "error: the PyTorch peer failed its parity checks; nothing measured" >&2
    exit 1
  }
else
  echo "note: pytest or torch missing, the PyTorch peer's parity checks did not run" >&2
fi
# The headline net first, so that a slow compile further down cannot cost it.
exec "$python" -m benchmarks.run_all --suite gpu --nets 1001,164,110 --layouts scanned \
  --reps 1 --warmup 20 --steps 100 --no-epoch --deadline-s 420 --run-timeout-s 150 \
  --out "$out" "$@"
