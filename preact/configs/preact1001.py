r"""Pre-activation ResNet-1001 (Fig. 1, Table 3, Table 4) on CIFAR-10.

    python train.py --config=configs/preact1001.py --workdir=/tmp/preact1001
    python train.py --config=configs/preact1001.py --config.dataset=cifar100 --workdir=/tmp/preact1001_c100
    python train.py --config=configs/preact1001.py:torch --workdir=/tmp/preact1001_torch   # Torch recipe

Should reproduce: 4.92% CIFAR-10 (mean 4.89 +- 0.14), 22.71% CIFAR-100 (Tables 3, 4); 4.62% (4.69 +- 0.20) with
the Torch recipe (:torch), the paper's headline number.
"""

from preact.configs import default


def get_config(recipe: str | None = None):
    return default.cifar_config(
        "preact1001", unit="full_preact", block="bottleneck", depth=1001, recipe=recipe
    )
