# Sourced by the GPU commands (first_contact.sh, ../gpu.sh, ../fashion_mnist_paper.sh) from the
# repository root: sets $python and installs the wheels that prepare.sh put in .gpu_box/wheels
# (the packages the GPU machine lacks: ml_collections) with pip --no-index into a fresh target
# folder on PYTHONPATH. Nothing is fetched: the GPU machine has no network.
python=${PYTHON:-python3}
if compgen -G ".gpu_box/wheels/*.whl" >/dev/null; then
  gpu_box_site=$(mktemp -d "${TMPDIR:-/tmp}/preact_site.XXXXXX")
  "$python" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir \
    --disable-pip-version-check --target "$gpu_box_site" .gpu_box/wheels/*.whl
  export PYTHONPATH="$gpu_box_site${PYTHONPATH:+:$PYTHONPATH}"
fi
# Allocate device memory as needed: peak-memory figures are then the programs' own, and JAX and
# PyTorch can share one GPU within a process.
export XLA_PYTHON_CLIENT_PREALLOCATE=${XLA_PYTHON_CLIENT_PREALLOCATE:-false}
