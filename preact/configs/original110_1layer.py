r"""Original ResNet-110 with one-layer units ("1layer skip") on CIFAR-10.

    python train.py --config=configs/original110_1layer.py --workdir=/tmp/original110_1layer
    python train.py --config=configs/original110_1layer.py --config.dataset=cifar100 --workdir=/tmp/original110_1layer_c100
    python train.py --config=configs/original110_1layer.py:torch --workdir=/tmp/original110_1layer_torch   # Torch recipe

Should reproduce: 9.90% CIFAR-10 (Table 3).
"""

from preact.configs import default


def get_config(recipe: str | None = None):
    return default.cifar_config(
        "original110_1layer",
        unit="original",
        block="one_layer",
        depth=110,
        recipe=recipe,
    )
