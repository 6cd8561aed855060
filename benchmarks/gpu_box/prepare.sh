#!/usr/bin/env bash
# Prepares the GPU first contact, here (network allowed), into the ignored folder .gpu_box/:
#   .gpu_box/wheels/         the wheels, for Python 3.12 on manylinux x86-64, of what the code
#                            imports and the GPU machine lacks: ml_collections (its needs,
#                            absl-py and PyYAML, are there; tensorflow-datasets and tensorboardX
#                            are optional imports, not carried)
#   .gpu_box/fashion_mnist/  Fashion-MNIST's four IDX .gz files (Debian's dataset-fashion-mnist,
#                            installed with apt-get if absent; PREACT_FASHION_MNIST_DIR=DIR takes
#                            them from DIR instead, .gz or not)
#   .gpu_box/source.json     the commit and the uncommitted files the device's copy is made of
# Then checks that what travels (tracked and untracked-not-ignored files plus .gpu_box) is under
# the device's 64 MiB, prints the device call, and ends with one line `carry: PATH ...`.
#
#   bash benchmarks/gpu_box/prepare.sh
set -euo pipefail
cd "$(dirname "$0")/../.."
box=.gpu_box
python=${PYTHON:-python3}
wheels=(ml_collections==1.1.0)
idx_files=(train-images-idx3-ubyte train-labels-idx1-ubyte t10k-images-idx3-ubyte
  t10k-labels-idx1-ubyte)

rm -rf "$box/wheels" "$box/fashion_mnist" "$box/source.json"
mkdir -p "$box/wheels" "$box/fashion_mnist"
"$python" -m pip download -q --disable-pip-version-check --no-deps --only-binary=:all: \
  --python-version 3.12 --implementation cp --platform manylinux_2_28_x86_64 \
  --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 --platform any \
  -d "$box/wheels" "${wheels[@]}"

src=${PREACT_FASHION_MNIST_DIR:-/usr/share/datasets/fashion-mnist}
if [ -z "${PREACT_FASHION_MNIST_DIR:-}" ] && [ ! -e "$src/${idx_files[0]}.gz" ]; then
  echo "Fashion-MNIST is not in $src: apt-get install -y dataset-fashion-mnist"
  apt-get install -y -q dataset-fashion-mnist >/dev/null ||
    { apt-get update -q >/dev/null && apt-get install -y -q dataset-fashion-mnist >/dev/null; }
fi
for f in "${idx_files[@]}"; do
  if [ -e "$src/$f.gz" ]; then
    cp "$src/$f.gz" "$box/fashion_mnist/"
  elif [ -e "$src/$f" ]; then
    cp "$src/$f" "$box/fashion_mnist/"
  else
    echo "error: $src has no $f(.gz)" >&2
    exit 1
  fi
done

# What the device call sends: the working tree (tracked, and untracked files git does not
# ignore) and the carried folder, 64 MiB at most.
"$python" - "$box" <<'PY'
import json, os, subprocess, sys
box = sys.argv[1]
# The device gets files, not the git history: record which commit (and which edits) they are.
def git(*args):
    return subprocess.run(["git", *args], capture_output=True, text=True, check=True).stdout
source = {"git_commit": git("rev-parse", "HEAD").strip(),
          "modified_files": git("status", "--porcelain", "--untracked-files=no").splitlines(),
          "untracked_files": git("ls-files", "--others", "--exclude-standard").splitlines()}
with open(os.path.join(box, "source.json"), "w") as f:
    json.dump(source, f, indent=1)
listed = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
                        capture_output=True, check=True).stdout.decode().split("\0")
tree = sum(os.path.getsize(p) for p in listed if p and os.path.isfile(p))
carried = sum(os.path.getsize(os.path.join(d, f)) for d, _, fs in os.walk(box) for f in fs)
limit = 64 * 2**20
mib = lambda n: f"{n / 2**20:.1f} MiB"
print(f"working tree {mib(tree)} + {box} {mib(carried)} = {mib(tree + carried)} (limit 64 MiB)")
for d, _, fs in sorted(os.walk(box)):
    for f in sorted(fs):
        print(f"  {os.path.join(d, f)}  {mib(os.path.getsize(os.path.join(d, f)))}")
if tree + carried >= limit:
    sys.exit("error: over the device's 64 MiB: the call would be refused")
PY
cat <<EOF_CALL
device call (nothing else to prepare; the command writes to \$OUT on the GPU machine):
  run(command="bash benchmarks/gpu_box/first_contact.sh", carry=["$box"], timeout_s=600)
rehearse it on this machine first: bash benchmarks/gpu_box/rehearse.sh
EOF_CALL
echo "carry: $box"
