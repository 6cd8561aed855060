#!/usr/bin/env bash
# GPU first contact, one command on the GPU machine (<= 9 minutes; what it does, phase by phase:
# benchmarks/gpu_box/first_contact.py). Prepared here by benchmarks/gpu_box/prepare.sh, which
# prints the exact device call; rehearsed on a CPU by benchmarks/gpu_box/rehearse.sh.
#
#   bash benchmarks/gpu_box/first_contact.sh [OUT_DIR]      # default $OUT
#   PREACT_REHEARSAL=1 bash benchmarks/gpu_box/first_contact.sh OUT_DIR   # on a CPU, tiny sizes
#
# Writes at most 8 files, flat, into OUT_DIR: summary.json ("phases": {name: {"status": "ok" |
# "failed" | "skipped", ...}} and "figures"), first_contact.log, environment.txt, tests.xml,
# torch_peer.xml. Exit status 0 when no phase failed, 1 otherwise (summary.json says which).
set -euo pipefail
export PREACT_FIRST_CONTACT_START=${PREACT_FIRST_CONTACT_START:-$(date +%s)}
cd "$(dirname "$0")/../.."
out=${1:-${OUT:?usage: bash benchmarks/gpu_box/first_contact.sh OUT_DIR (or set \$OUT)}}
# shellcheck source=benchmarks/gpu_box/setup.sh
source benchmarks/gpu_box/setup.sh
exec "$python" -m benchmarks.gpu_box.first_contact "$out"
