"""Tiny configs shared by the training tests."""

import os
import subprocess
import sys

from configs import smoke

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def tiny_config(**overrides):
    """The smoke config (digits) shrunk to a few seconds: depth 8, width 4, 10 steps."""
    c = smoke.get_config()
    c.model.depth = 8
    c.model.width = 4
    c.batch_size = 16
    c.eval_batch_size = 64
    c.num_train_steps = 10
    c.lr_boundaries_steps = (6,)
    c.log_every_steps = 5
    c.eval_every_steps = 10
    c.checkpoint_every_steps = 5
    c.progress_bar = False
    c.rng_impl = "rbg"  # threefry's init compiles ~10x slower on XLA:CPU
    for key, value in overrides.items():
        target = c
        *parents, leaf = key.split(".")
        for p in parents:
            target = target[p]
        target[leaf] = value
    return c


TINY_FLAGS = [
    "--config.model.depth=8",
    "--config.model.width=4",
    "--config.batch_size=16",
    "--config.eval_batch_size=64",
    "--config.lr_boundaries_steps=(6,)",
    "--config.log_every_steps=5",
    "--config.eval_every_steps=10",
    "--config.checkpoint_every_steps=5",
    "--config.progress_bar=False",
    "--config.rng_impl=rbg",
]


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
