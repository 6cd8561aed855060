"""Shared test set-up: 8 fake CPU devices, so multi-device code runs on any machine."""

import os

# Must happen before the first JAX operation of the test session.
os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=8")

import jax  # noqa: E402

jax.config.update("jax_num_cpu_devices", 8)
jax.config.update("jax_platforms", "cpu")
