r"""Original ResNet-164 (bottleneck units) on CIFAR-10.

    python train.py --config=configs/original164.py --workdir=/tmp/original164
    python train.py --config=configs/original164.py --config.dataset=cifar100 --workdir=/tmp/original164_c100
    python train.py --config=configs/original164.py:torch --workdir=/tmp/original164_torch   # Torch recipe

Should reproduce: 5.93% CIFAR-10, 25.16% CIFAR-100 (Table 3). Table 2 (ResNet-164): --config.model.unit=
bn_after_add (6.50%), relu_before_add (6.14%), relu_preact (5.91%).
"""

from preact.configs import default


def get_config(recipe: str | None = None):
    return default.cifar_config(
        "original164", unit="original", block="bottleneck", depth=164, recipe=recipe
    )
