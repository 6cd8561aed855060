r"""Pre-activation ResNet-110 with one-layer units ("1layer skip", 3n+2, n=36) on CIFAR-10.

    python train.py --config=configs/preact110_1layer.py --workdir=/tmp/preact110_1layer
    python train.py --config=configs/preact110_1layer.py --config.dataset=cifar100 --workdir=/tmp/preact110_1layer_c100
    python train.py --config=configs/preact110_1layer.py:torch --workdir=/tmp/preact110_1layer_torch   # Torch recipe

Should reproduce: 8.91% CIFAR-10 (Table 3).
"""

from preact.configs import default


def get_config(recipe: str | None = None):
    return default.cifar_config(
        "preact110_1layer",
        unit="full_preact",
        block="one_layer",
        depth=110,
        recipe=recipe,
    )
