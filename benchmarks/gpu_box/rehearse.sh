#!/usr/bin/env bash
# Rehearses the GPU first contact on this machine the way the GPU machine would run it:
# 1. a Python 3.12 virtualenv holding only the GPU machine's packages
#    (rehearsal-requirements.txt: jax 0.11.2's CPU build, flax, optax, orbax, chex, numpy 2.5.2,
#    pytest, scikit-learn...; no ml_collections, tensorflow-datasets, tensorboardX or torch),
#    built once with pip (network) and reused while that file is unchanged;
# 2. prepare.sh, whose last line names the carried paths;
# 3. a copy of only what the device call sends (tracked and untracked-not-ignored files, links
#    as links, plus the carried paths), checked against 64 MiB;
# 4. first_contact.sh in that copy with PREACT_REHEARSAL=1 and no network (unshare -n), with
#    the venv's python3 first on PATH, under twice the device's 10-minute limit (a rehearsal's
#    deadlines and budget are twice the GPU's: see first_contact.py);
# 5. $OUT checked against the device's limits (8 files, 2 folders down, 16 MiB a file, plain
#    names) and summary.json's phases printed.
#
#   bash benchmarks/gpu_box/rehearse.sh [KEEP_DIR]    # KEEP_DIR: where to copy $OUT
#
# Environment: PREACT_REHEARSAL_VENV (default ~/.cache/preact/gpu-box-py312), PYTHON312 (the
# interpreter to build it with; default pyenv's 3.12, else python3.12 on PATH); the rest
# (PREACT_FASHION_MNIST_DIR, PREACT_FIRST_CONTACT_BUDGET_S, PREACT_DEADLINE_SCALE) passes on to
# prepare.sh and first_contact.sh. Exit status: that of first_contact.sh, or 1 if $OUT breaks the
# limits.
set -euo pipefail
cd "$(dirname "$0")/../.."
keep=${1:-}
requirements=benchmarks/gpu_box/rehearsal-requirements.txt
venv=${PREACT_REHEARSAL_VENV:-${XDG_CACHE_HOME:-$HOME/.cache}/preact/gpu-box-py312}
py312=${PYTHON312:-}
if [ -z "$py312" ] && command -v pyenv >/dev/null; then
  py312=$(ls -d "$(pyenv root)"/versions/3.12*/bin/python3.12 2>/dev/null | tail -1 || true)
fi
py312=${py312:-$(command -v python3.12 || true)}
if [ -z "$py312" ] || ! [ -x "$py312" ]; then
  echo "error: no Python 3.12 (set PYTHON312, or: pyenv install 3.12)" >&2
  exit 1
fi
if ! cmp -s "$requirements" "$venv/.preact-requirements"; then
  echo "building the rehearsal venv $venv with $py312"
  rm -rf "$venv"
  "$py312" -m venv "$venv"
  "$venv/bin/pip" install -q --disable-pip-version-check -r "$requirements"
  cp "$requirements" "$venv/.preact-requirements"
fi

prepare_output=$(bash benchmarks/gpu_box/prepare.sh)
echo "$prepare_output"
carry_line=$(tail -n 1 <<<"$prepare_output")
[[ $carry_line == "carry: "* ]] || { echo "error: prepare.sh did not end with 'carry: ...'" >&2; exit 1; }
read -r -a carried <<<"${carry_line#carry: }"

scratch=$(mktemp -d "${TMPDIR:-/tmp}/preact_rehearsal.XXXXXX")
trap 'rm -rf "$scratch"' EXIT
tree=$scratch/repo
out=$scratch/out
mkdir -p "$tree" "$out"
git ls-files -z --cached --others --exclude-standard |
  while IFS= read -r -d '' path; do
    if [ -e "$path" ] || [ -L "$path" ]; then printf '%s\0' "$path"; fi
  done | xargs -0 cp -P --parents -t "$tree"
cp -RP --parents "${carried[@]}" "$tree"
size=$(du -sb --apparent-size "$tree" | cut -f1)
echo "sent to the (rehearsed) device: $((size / 1024)) KiB: working tree and ${carried[*]}"
if [ "$size" -ge $((64 * 1024 * 1024)) ]; then
  echo "error: over the device's 64 MiB" >&2
  exit 1
fi

echo "running first_contact.sh with PREACT_REHEARSAL=1, no network"
status=0
# Nothing of this shell's Python or JAX set-up goes along (a test's 8 fake CPU devices, say).
(cd "$tree" && unshare -n -- env -u PYTHONPATH -u VIRTUAL_ENV -u XLA_FLAGS -u JAX_PLATFORMS \
  -u PREACT_TEST_PLATFORM PATH="$venv/bin:$PATH" OUT="$out" \
  PREACT_REHEARSAL=1 timeout 1200 bash benchmarks/gpu_box/first_contact.sh) || status=$?

# What would come back: the same checks the driver records, here made from outside.
PYTHONPATH=$tree "$venv/bin/python" - "$out" <<'PY' || status=1
import json, os, sys
from benchmarks.gpu_box.first_contact import check_out
out = sys.argv[1]
problems = check_out(out)
print("$OUT:", sorted(os.path.relpath(os.path.join(d, f), out)
                      for d, _, fs in os.walk(out) for f in fs))
summary = json.load(open(os.path.join(out, "summary.json")))
for name, phase in summary["phases"].items():
    assert phase["status"] in ("ok", "failed", "skipped"), (name, phase["status"])
    print(f"  {name:36} {phase['status']:8} {phase.get('reason', '')[:90]}")
if problems:
    sys.exit(f"error: $OUT breaks the device's limits: {problems}")
print("$OUT is within the device's limits (8 files, 2 folders down, 16 MiB a file)")
PY
if [ -n "$keep" ]; then
  rm -rf "$keep"
  mkdir -p "$keep"
  cp -R "$out"/. "$keep"/
  echo "kept in $keep"
fi
exit "$status"
