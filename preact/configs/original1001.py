r"""Original ResNet-1001 on CIFAR-10 (Fig. 1: slow start of training).

    python train.py --config=configs/original1001.py --workdir=/tmp/original1001
    python train.py --config=configs/original1001.py --config.dataset=cifar100 --workdir=/tmp/original1001_c100
    python train.py --config=configs/original1001.py:torch --workdir=/tmp/original1001_torch   # Torch recipe

Should reproduce: 7.61% CIFAR-10, 27.82% CIFAR-100 (Table 3).
"""

from preact.configs import default


def get_config(recipe: str | None = None):
    return default.cifar_config(
        "original1001", unit="original", block="bottleneck", depth=1001, recipe=recipe
    )
