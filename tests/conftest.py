"""Shared test set-up: 8 fake CPU devices, so multi-device code runs on any machine.

``PREACT_TEST_PLATFORM=native`` leaves the platform to JAX instead (one GPU, say: what
benchmarks/gpu_box/first_contact.sh runs the numerical tests on), with float32 matmuls and
convolutions at full precision, so that the float32 tolerances of the tests mean on a GPU what
they mean on the CPU (JAX's default there lets them round through TF32, about 1e-3 relative).
Tests that need several devices skip there.
"""

import json
import os

import pytest

NATIVE = os.environ.get("PREACT_TEST_PLATFORM", "cpu") == "native"

if not NATIVE:
    # Must happen before the first JAX operation of the test session.
    os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=8")
# The XLA:CPU settings train.py starts with, so the tests run the numerics users run.
from preact import xla_flags  # noqa: E402

xla_flags.apply_defaults()

import jax  # noqa: E402

if NATIVE:
    jax.config.update("jax_default_matmul_precision", "highest")
else:
    jax.config.update("jax_num_cpu_devices", 8)
    jax.config.update("jax_platforms", "cpu")


@pytest.fixture
def write_run_records(tmp_path):
    """``write(errors)``: one ablation run record per seed (``<tmp>/runs/s400/VARIANT/seedK.json``,
    the layout and fields ``preact.analysis.ablations`` writes) for each ``{variant: [test
    errors]}``, none diverged; returns the directory the claims command reads."""

    def write(errors: dict[str, list[float]]):
        runs = tmp_path / "runs" / "s400"
        for variant, values in errors.items():
            (runs / variant).mkdir(parents=True)
            for seed, error in enumerate(values):
                result = {"seed": seed, "test_error": error, "diverged_step": None}
                (runs / variant / f"seed{seed}.json").write_text(json.dumps({"result": result}))
        return runs

    return write
