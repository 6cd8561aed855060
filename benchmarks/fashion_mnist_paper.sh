#!/usr/bin/env bash
# The paper's full CIFAR recipe on Fashion-MNIST, PreAct-110 and the original ResNet-110, in one
# command sized for one H100/H200 in at most 8 minutes. Each net is configs/preact110.py or
# configs/original110.py unchanged (64k iterations of batch 128, lr 0.1 after 400 warm-up iterations at 0.01, /10 at 32k and
# 48k, weight decay 1e-4, 4-pixel pad-crop and flips) on --config.dataset=fashion_mnist, in
# bfloat16. Both train at once on the one GPU (a ResNet-110 at batch 128 leaves most of it
# idle), each with under half its memory; a net still training at the deadline is stopped
# with SIGINT, which checkpoints it (train.py resumes it later), and is reported at the step
# it reached. Then eval.py reports each test error, and OUT_DIR/summary.json holds both with
# the environment.
#
#   bash benchmarks/fashion_mnist_paper.sh OUT_DIR [--config.* overrides for both nets...]
#
# The data: Debian's copy, or the four IDX files in a directory named by
# --config.data_dir=DIR (the device machine has no internet: carry them there).
# Overrides come after the script's own (dataset, dtype, progress_bar), so they can replace them
# (the test runs it on CPU at tiny size on digits this way). DEADLINE_S (default 420) bounds the training wall time.
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:?usage: bash benchmarks/fashion_mnist_paper.sh OUT_DIR [--config.* overrides...]}
shift
python=${PYTHON:-python3}
if ! "$python" -c "import ml_collections" 2>/dev/null; then  # the device image lacks it
  "$python" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/site .whl/*.whl
  export PYTHONPATH=/tmp/site${PYTHONPATH:+:$PYTHONPATH}
fi
export XLA_PYTHON_CLIENT_MEM_FRACTION=${XLA_PYTHON_CLIENT_MEM_FRACTION:-0.45}
nets=(preact110 original110)
flags=(--config.dataset=fashion_mnist --config.dtype=bfloat16 --config.progress_bar=False "$@")
mkdir -p "$out"
pids=()
for net in "${nets[@]}"; do
  timeout --signal=INT --kill-after=60 "${DEADLINE_S:-420}" "$python" train.py \
    --config="configs/$net.py" "${flags[@]}" --workdir="$out/$net" \
    >"$out/$net.train.log" 2>&1 &
  pids+=($!)
done
status=0
for i in "${!nets[@]}"; do
  # 124: stopped at the deadline (checkpointed); anything else non-zero is a failure.
  wait "${pids[$i]}" || { rc=$?; [ "$rc" = 124 ] || { echo "error: ${nets[$i]} training exited $rc (see $out/${nets[$i]}.train.log)" >&2; status=1; }; }
done
for net in "${nets[@]}"; do
  "$python" eval.py --config="configs/$net.py" "${flags[@]}" --workdir="$out/$net" \
    >"$out/$net.eval.log" 2>&1 || { echo "error: $net evaluation failed (see $out/$net.eval.log)" >&2; status=1; }
done
"$python" - "$out" "${nets[@]}" <<'PY'
import json, os, sys
from preact import provenance
out, nets = sys.argv[1], sys.argv[2:]
summary = {"command": "bash benchmarks/fashion_mnist_paper.sh " + " ".join(sys.argv[1:2]),
           "environment": provenance.environment(), "nets": {}}
for net in nets:
    path = os.path.join(out, net, "eval_results.json")
    summary["nets"][net] = json.load(open(path)) if os.path.exists(path) else None
    result = summary["nets"][net] or {}
    print(f"{net}: step {result.get('step')}, test error {result.get('test_error')}%")
json.dump(summary, open(os.path.join(out, "summary.json"), "w"), indent=1, default=str)
PY
exit $status
