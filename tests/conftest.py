"""Shared test set-up: 8 fake CPU devices, so multi-device code runs on any machine.

``PREACT_TEST_PLATFORM=native`` leaves the platform to JAX instead (one GPU, say: what
benchmarks/gpu_box/first_contact.sh runs the numerical tests on), with float32 matmuls and
convolutions at full precision, so that the float32 tolerances of the tests mean on a GPU what
they mean on the CPU (JAX's default there lets them round through TF32, about 1e-3 relative).
Tests that need several devices skip there.
"""

import os

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
