r"""Offline smoke run: a small pre-activation ResNet on scikit-learn's handwritten digits.

    python train.py --config=configs/smoke.py --workdir=/tmp/smoke
    python eval.py --config=configs/smoke.py --workdir=/tmp/smoke

Real data shipped inside the scikit-learn wheel (1,797 8x8 digits), no network needed. Should
reach a test error under 10% in under 3 minutes on 2 CPU cores. Not a number from the paper: it
checks that the whole path (data, model, train step, checkpoints, evaluation) learns.
"""

from preact.configs import default


def get_config():
    c = default.get_config()
    c.experiment = "smoke"
    c.dataset = "digits"
    c.normalization = "per_channel"
    c.crop_padding = 1  # 8x8 images: a 1-pixel translation
    c.random_flip = False  # a mirrored digit is another symbol
    c.model.depth = 20
    c.model.width = 16
    c.batch_size = 64
    c.eval_batch_size = 128
    c.warmup_steps = 0
    c.num_train_steps = 400
    c.lr_boundaries_steps = (250, 350)
    c.log_every_steps = 50
    c.eval_every_steps = 200
    c.checkpoint_every_steps = 200
    return c
