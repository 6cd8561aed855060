r"""Pre-activation ResNet-110 (basic units, option-A shortcuts) on CIFAR-10.

    python train.py --config=configs/preact110.py --workdir=/tmp/preact110
    python train.py --config=configs/preact110.py --config.dataset=cifar100 --workdir=/tmp/preact110_c100
    python train.py --config=configs/preact110.py:torch --workdir=/tmp/preact110_torch   # Torch recipe

Should reproduce: 6.37% CIFAR-10 test error (Table 2, Table 3; median of 5 runs).
"""

from preact.configs import default


def get_config(recipe: str | None = None):
    return default.cifar_config(
        "preact110", unit="full_preact", block="basic", depth=110, recipe=recipe
    )
