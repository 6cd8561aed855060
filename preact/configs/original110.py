r"""Original (post-activation) ResNet-110 on CIFAR-10: the baseline of Tables 1-3.

    python train.py --config=configs/original110.py --workdir=/tmp/original110
    python train.py --config=configs/original110.py --config.dataset=cifar100 --workdir=/tmp/original110_c100
    python train.py --config=configs/original110.py:torch --workdir=/tmp/original110_torch   # Torch recipe

Should reproduce: 6.61% CIFAR-10 (Tables 1-3). The Table 1 rows are the original unit's options,
set as one dict (preact.units.OriginalUnit), e.g.
--config.model.unit_options="{'shortcut_variant': 'constant_scaling', 'shortcut_scale': 0.5,
'residual_scale': 0.5}" (12.35%); 'exclusive_gating' with 'gate_bias': -6 (8.70%);
'shortcut_only_gating' with 'gate_bias' 0 (12.86%) or -6 (6.91%); 'conv_shortcut' (12.22%);
'dropout_shortcut' (fail). Table 2: --config.model.unit=bn_after_add (8.17%), relu_before_add
(7.84%), relu_preact (6.71%).
"""

from preact.configs import default


def get_config(recipe: str | None = None):
    return default.cifar_config(
        "original110", unit="original", block="basic", depth=110, recipe=recipe
    )
