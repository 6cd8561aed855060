r"""Pre-activation ResNet-20 on Fashion-MNIST, sized for about 15 minutes on 2 CPU cores.

    python train.py --config=configs/fashion_mnist.py --workdir=/tmp/fashion_mnist
    python eval.py --config=configs/fashion_mnist.py --workdir=/tmp/fashion_mnist

The data: the four IDX files in --config.data_dir, else Debian's copy (apt-get install
dataset-fashion-mnist), else a TFDS-prepared copy, else the official download (see
preact.data.mnist). The network and recipe are CIFAR's (3x3 stem, full pre-activation basic
units, width 16, per-pixel mean subtraction, 4-pixel pad-and-crop and horizontal flips, which keep
the class of clothes) on 28x28x1 inputs, with a short schedule: 1,800 steps of batch 128 (3.8
epochs of the 60,000 training images), lr 0.1 divided by 10 at 50% and 75%, evaluation on the
10,000 test images at the first drop and at the end. Not a number from the paper.

Sizing: 1,800 steps x about 0.45 s per step on 2 idle CPU cores, plus start-up, compilation and
the two evaluations. Measured on 2 CPU cores shared with other jobs (2026-11-29): 18.6 minutes
of training, 10.84% test error (results/fashion_mnist_preact20_cpu.json).

MNIST: --config.dataset=mnist runs the same network on the digits, but then also pass
--config.random_flip=False: a mirrored digit is not the same digit (the pipeline warns otherwise).
"""

from preact.configs import default

NUM_TRAIN_STEPS = 1_800


def get_config():
    c = default.get_config()
    c.experiment = "fashion_mnist_preact20"
    c.dataset = "fashion_mnist"
    c.model.depth = 20
    c.model.width = 16
    c.batch_size = 128
    c.warmup_steps = 0  # the 400-step warm-up is for ResNet-110 and deeper
    c.num_train_steps = NUM_TRAIN_STEPS
    c.lr_boundaries_steps = (NUM_TRAIN_STEPS // 2, NUM_TRAIN_STEPS * 3 // 4)
    c.log_every_steps = 100
    c.eval_every_steps = NUM_TRAIN_STEPS // 2
    c.checkpoint_every_steps = NUM_TRAIN_STEPS // 2
    return c
