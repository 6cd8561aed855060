r"""Pre-activation ResNet-164 (bottleneck units, projection shortcuts) on CIFAR-10.

    python train.py --config=configs/preact164.py --workdir=/tmp/preact164
    python train.py --config=configs/preact164.py --config.dataset=cifar100 --workdir=/tmp/preact164_c100
    python train.py --config=configs/preact164.py:torch --workdir=/tmp/preact164_torch   # Torch recipe

Should reproduce: 5.46% CIFAR-10, 24.33% CIFAR-100 (Table 3; median of 5 runs).
"""

from preact.configs import default


def get_config(recipe: str | None = None):
    return default.cifar_config(
        "preact164", unit="full_preact", block="bottleneck", depth=164, recipe=recipe
    )
