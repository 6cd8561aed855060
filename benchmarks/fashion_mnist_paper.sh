#!/usr/bin/env bash
# The paper's full CIFAR recipe on Fashion-MNIST, PreAct-110 and the original ResNet-110, in one
# GPU command of at most 9 minutes, for a GPU window after the first contact
# (benchmarks/gpu_box/first_contact.sh). Each net is configs/preact110.py or
# configs/original110.py unchanged (64k iterations of batch 128, lr 0.1 after 400 warm-up
# iterations at 0.01, /10 at 32k and 48k, weight decay 1e-4, 4-pixel pad-crop and flips) on
# --config.dataset=fashion_mnist, in bfloat16. Both train at once on the one GPU (a ResNet-110 at
# batch 128 leaves most of it idle), each with under half its memory; a net still training at
# the deadline is stopped with SIGINT, which checkpoints it (train.py resumes it later), and is
# reported at the step it reached. Then eval.py reports each test error, and OUT_DIR/summary.json
# holds both with their configs and the environment.
#
#   bash benchmarks/fashion_mnist_paper.sh [OUT_DIR] [--config.* overrides for both nets...]
#
# The device call is first_contact's (prepare with benchmarks/gpu_box/prepare.sh, carry .gpu_box)
# with this command: the data are then the IDX files in .gpu_box/fashion_mnist (else Debian's
# copy, or --config.data_dir=DIR). OUT_DIR (default $OUT) gets five files: summary.json and each
# net's train and eval logs; the workdirs (checkpoints) go to WORKDIR_ROOT (default a new folder
# under /tmp), which the device does not send back. Overrides come after the script's own
# (dataset, dtype, progress_bar, data_dir), so they can replace them (the test runs it on CPU at
# tiny size on digits this way). DEADLINE_S (default 420) bounds the training wall time.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ $# -gt 0 ] && [[ $1 != -* ]]; then
  out=$1
  shift
else
  out=${OUT:?usage: bash benchmarks/fashion_mnist_paper.sh [OUT_DIR] [--config.* overrides...]}
fi
# shellcheck source=benchmarks/gpu_box/setup.sh
source benchmarks/gpu_box/setup.sh
export XLA_PYTHON_CLIENT_MEM_FRACTION=${XLA_PYTHON_CLIENT_MEM_FRACTION:-0.45}
nets=(preact110 original110)
flags=(--config.dataset=fashion_mnist --config.dtype=bfloat16 --config.progress_bar=False)
if [ -d .gpu_box/fashion_mnist ]; then
  flags+=("--config.data_dir=$PWD/.gpu_box/fashion_mnist")
fi
flags+=("$@")
mkdir -p "$out"
workdirs=${WORKDIR_ROOT:-$(mktemp -d "${TMPDIR:-/tmp}/fashion_mnist_paper.XXXXXX")}
pids=()
for net in "${nets[@]}"; do
  timeout --signal=INT --kill-after=60 "${DEADLINE_S:-420}" "$python" train.py \
    --config="configs/$net.py" "${flags[@]}" --workdir="$workdirs/$net" \
    >"$out/$net.train.log" 2>&1 &
  pids+=($!)
done
status=0
for i in "${!nets[@]}"; do
  # 124: stopped at the deadline (checkpointed); anything else non-zero is a failure.
  wait "${pids[$i]}" || { rc=$?; [ "$rc" = 124 ] || { echo "error: ${nets[$i]} training exited $rc (see $out/${nets[$i]}.train.log)" >&2; status=1; }; }
done
for net in "${nets[@]}"; do
  "$python" eval.py --config="configs/$net.py" "${flags[@]}" --workdir="$workdirs/$net" \
    >"$out/$net.eval.log" 2>&1 || { echo "error: $net evaluation failed (see $out/$net.eval.log)" >&2; status=1; }
done
"$python" - "$out" "$workdirs" "${nets[@]}" <<'PY'
import json, os, sys
from preact import provenance
out, workdirs, nets = sys.argv[1], sys.argv[2], sys.argv[3:]
summary = {"command": "bash benchmarks/fashion_mnist_paper.sh", "workdirs": workdirs,
           "environment": provenance.environment(), "nets": {}, "configs": {}}
for net in nets:
    for key, name in (("nets", "eval_results.json"), ("configs", "config.json")):
        path = os.path.join(workdirs, net, name)
        summary[key][net] = json.load(open(path)) if os.path.exists(path) else None
    result = summary["nets"][net] or {}
    print(f"{net}: step {result.get('step')}, test error {result.get('test_error')}%")
json.dump(summary, open(os.path.join(out, "summary.json"), "w"), indent=1, default=str)
PY
exit $status
