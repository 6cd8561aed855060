r"""Throughput of the CIFAR input pipeline: host-side numpy baseline against the on-device pipeline.

    python -m benchmarks.input_pipeline        # CIFAR-10 size, batch 128; a few seconds on CPU
    python -m benchmarks.input_pipeline --batch-size 64 --steps 500

Both make the same thing from synthetic uint8 data of CIFAR's size (50,000 x 32x32x3): a batch
gathered in a shuffled order, normalized, zero-padded by 4, randomly cropped to 32x32 and flipped
(the paper's CIFAR augmentation). The host baseline does it with vectorized numpy and then copies
the batch to the device, as a host input pipeline would; the on-device pipeline
(preact.data.device_pipeline) does it in one jitted function on data already on the device. Method
as in docs/performance.md ("How we measure"): warm-up steps, then the median (p10, p90) over timed
steps, each ended by block_until_ready.
"""

import argparse
import platform
import time

import jax
import numpy as np

from preact.data import normalize
from preact.data.arrays import InMemoryDataset, LabeledImages
from preact.data.device_pipeline import DevicePipeline

PADDING = 4


class HostBaseline:
    """The same batches made on the host with numpy, one gather for crop and flip together."""

    def __init__(self, images, labels, norm, batch_size, seed):
        self.images, self.labels, self.norm = images, labels, norm
        self.batch_size = batch_size
        self.order = np.random.default_rng(seed).permutation(len(images))
        self.rng = np.random.default_rng(seed + 1)

    def batch(self, step):
        start = (step % (len(self.images) // self.batch_size)) * self.batch_size
        indices = self.order[start : start + self.batch_size]
        x = self.norm(self.images[indices])
        x = np.pad(x, ((0, 0), (PADDING, PADDING), (PADDING, PADDING), (0, 0)))
        n, size = len(indices), self.images.shape[1]
        dy, dx = self.rng.integers(0, 2 * PADDING + 1, (2, n))
        flip = self.rng.random(n) < 0.5
        offsets = np.arange(size)
        rows = (dy[:, None] + offsets)[:, :, None]
        cols = np.where(flip[:, None], dx[:, None] + size - 1 - offsets, dx[:, None] + offsets)
        x = x[np.arange(n)[:, None, None], rows, cols[:, None, :]]
        return {"image": jax.device_put(x), "label": jax.device_put(self.labels[indices])}


def measure(make_batch, steps, warmup):
    for step in range(warmup):
        jax.block_until_ready(make_batch(step))
    times = []
    for step in range(warmup, warmup + steps):
        start = time.perf_counter()
        jax.block_until_ready(make_batch(step))
        times.append(time.perf_counter() - start)
    return np.percentile(np.array(times) * 1e3, [10, 50, 90])


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--num-examples", type=int, default=50_000)
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--warmup", type=int, default=20)
    args = parser.parse_args()

    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (args.num_examples, 32, 32, 3), dtype=np.uint8)
    labels = rng.integers(0, 10, args.num_examples).astype(np.int32)
    split = LabeledImages(images, labels)
    data = InMemoryDataset("synthetic", split, split, 10, "synthetic CIFAR-size data")
    norm = normalize.for_arrays("per_pixel_mean", "synthetic", images)
    devices = jax.local_devices()

    print(
        f"device: {devices[0].device_kind} x{len(devices)} ({jax.default_backend()}), "
        f"jax {jax.__version__}, numpy {np.__version__}, python {platform.python_version()}"
    )
    print(
        f"data: {args.num_examples} x 32x32x3 uint8, batch {args.batch_size}, "
        f"pad {PADDING} + crop + flip, {args.warmup} warm-up + {args.steps} timed steps"
    )
    host = HostBaseline(images, labels, norm, args.batch_size, seed=0)
    start = time.perf_counter()
    on_device = DevicePipeline(
        data,
        norm,
        train=split,
        evaluation=split,
        batch_size=args.batch_size,
        eval_batch_size=args.batch_size,
        seed=0,
        padding=PADDING,
        flip=True,
        devices=devices,
        process_index=0,
        process_count=1,
    )
    jax.block_until_ready(on_device.train_batch(0))
    print(f"on-device set-up (transfer + compile): {time.perf_counter() - start:.2f} s")
    for name, make_batch in (("host numpy", host.batch), ("on-device", on_device.train_batch)):
        p10, p50, p90 = measure(make_batch, args.steps, args.warmup)
        print(
            f"{name:>11}: {args.batch_size / p50 * 1e3:>10,.0f} img/s   "
            f"{p50:.3f} ms/step (p10 {p10:.3f}, p90 {p90:.3f})"
        )


if __name__ == "__main__":
    main()
