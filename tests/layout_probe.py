"""What one process of a run sees before it trains: its share of the first batches and the
initial parameters, saved to ``OUT/process<i>.npz``. tests/test_multihost.py starts it as one
process or as several (``--num_processes``) and checks that the pieces add up to the same
global batches and the same parameters on every layout.

    python -m tests.layout_probe OUT [--coordinator_address=H:P --num_processes=N --process_id=I]
"""

import sys

import jax
import numpy as np
from absl import app

from preact import cli, data, training
from tests.helpers import tiny_config


def main(argv: list[str]) -> None:
    out = argv[1]
    cli.initialize_distributed()
    config = tiny_config(batch_size=16)
    model = training.check_config(
        config, num_devices=jax.local_device_count(), num_processes=jax.process_count()
    )
    pipeline = data.make_pipeline(config)
    arrays: dict[str, np.ndarray] = {}
    # The first two steps and the first step of the second epoch (a new permutation).
    for step in (0, 1, pipeline.steps_per_epoch):
        batch = pipeline.train_batch(step)
        for key, value in batch.items():
            # This process's devices in device order: its rows of the global batch, in order.
            shards = sorted(value.addressable_shards, key=lambda s: s.device.id)
            arrays[f"step{step}/{key}"] = np.concatenate([np.asarray(s.data) for s in shards])
    state = training.create_train_state(config, model, pipeline.image_shape)
    for path, leaf in jax.tree_util.tree_leaves_with_path(state.params):
        arrays["params" + jax.tree_util.keystr(path)] = np.asarray(leaf)
    np.savez(f"{out}/process{jax.process_index()}.npz", **arrays)


if __name__ == "__main__":
    cli.define_distributed_flags()
    sys.exit(app.run(main))
