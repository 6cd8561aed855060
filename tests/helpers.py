"""What the tests share: the one PRNG key helper, the tiny-run settings and data configs built
from configs/, and the subprocess runner for train.py / eval.py."""

import os
import subprocess
import sys

import jax

from preact.configs import default, smoke

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def key(seed=0):
    """A PRNG key for test-only initializations and random inputs. "rbg": threefry's init
    compiles ~10x slower on XLA:CPU, and no test depends on the stream itself."""
    return jax.random.key(seed, impl="rbg")


# The one source of the tiny training run (the smoke config on digits, shrunk to seconds):
# tiny_config, TINY_FLAGS (train.py / eval.py), the notebook and the command-line tests use it.
TINY = {
    "model.depth": 8,  # n = 1: one unit per stage
    "model.width": 4,
    "batch_size": 16,
    "eval_batch_size": 64,
    "lr_boundaries_steps": (6,),
    "log_every_steps": 5,
    "eval_every_steps": 10,
    "checkpoint_every_steps": 5,
    "progress_bar": False,
    "rng_impl": "rbg",  # threefry's init compiles ~10x slower on XLA:CPU
}
TINY_STEPS = 10  # not in TINY_FLAGS: the command-line tests choose their own number of steps
TINY_FLAGS = [f"--config.{name}={value}" for name, value in TINY.items()]


def override(config, overrides):
    """Set dotted fields (``"model.depth"``) of a ConfigDict in place; returns it."""
    for name, value in overrides.items():
        target = config
        *parents, leaf = name.split(".")
        for parent in parents:
            target = target[parent]
        target[leaf] = value
    return config


def tiny_config(**overrides):
    """The smoke config shrunk to a few seconds: depth 8, width 4, 10 steps (see ``TINY``)."""
    return override(smoke.get_config(), {**TINY, "num_train_steps": TINY_STEPS, **overrides})


def data_config(base="smoke", **overrides):
    """A whole config from configs/ (``smoke``: digits; ``default``: the paper's CIFAR recipe)
    with overrides: the data pipeline reads its fields from the one schema."""
    config = {"smoke": smoke, "default": default}[base].get_config()
    config.update(overrides)
    return config


def run_script(script, *args, timeout=300, env_extra=None):
    """Run train.py / eval.py in a subprocess with 8 fake CPU devices."""
    env = dict(os.environ)
    env["XLA_FLAGS"] = "--xla_force_host_platform_device_count=8"
    env["JAX_PLATFORMS"] = "cpu"
    env.update(env_extra or {})
    return subprocess.run(
        [sys.executable, os.path.join(ROOT, script), *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def run_command(module, *args):
    """``python -m <module> args`` in this process, for the absl commands of ``preact.analysis``:
    the module's flags are defined on a FlagValues of their own, parsed from ``args``, and passed
    to its ``main``, whose return value comes back. ``sys.argv`` holds the command line while the
    flags are defined, as it does for a command (a config flag reads its ``--config.<field>``
    overrides from it)."""
    from unittest import mock

    from absl import flags

    argv = [module.__name__, *args]
    flag_values = flags.FlagValues()
    with mock.patch.object(sys, "argv", argv):
        module.define_flags(flag_values)
        rest = flag_values(argv)
    return module.main(rest, flag_values)
