"""One schema: every field of configs/default.py exists in every experiment config, and the
documented overrides work on each, parsed the way train.py parses them (a locked config)."""

import glob
import os

import pytest
from absl import flags
from ml_collections import config_dict, config_flags

from preact import configuration
from preact.data import pipeline
from tests.helpers import ROOT

CONFIG_FILES = sorted(
    os.path.relpath(p, ROOT)
    for p in glob.glob(os.path.join(ROOT, "configs", "*.py"))
    if not p.endswith("__init__.py")
)
# Overrides the README and configs/default.py document, with a valid value for each.
DOCUMENTED = [
    "--config.train_split=train[:45000]",
    "--config.eval_split=train[45000:]",
    "--config.image_size=32",
    "--config.train_scale_range=(256, 480)",
    "--config.num_data_workers=4",
    "--config.keep_checkpoints=2",
    "--config.rng_impl=rbg",
    "--config.dataset=cifar100",
    "--config.dtype=bfloat16",
    "--config.bn_statistics=synchronized",
    "--config.model.fused_bn_relu=False",
    "--config.model.conv_grad=xla",
    "--config.model.scan=False",
    "--config.model.remat=True",
    "--config.model.conv_init_mode=fan_in",
]


def _leaves(config, prefix=""):
    for name, value in config.items():
        if isinstance(value, config_dict.ConfigDict):
            yield from _leaves(value, f"{prefix}{name}.")
        else:
            yield f"{prefix}{name}"


def _parse(path, *overrides):
    """The config train.py would get from ``--config=path overrides...``."""
    argv = ["train.py", f"--config={os.path.join(ROOT, path)}", *overrides]
    values = flags.FlagValues()
    # The config flag finds its --config.* overrides in argv, as it does in sys.argv for train.py.
    config_flags.DEFINE_config_file(
        "config", None, "", flag_values=values, lock_config=True, sys_argv=argv
    )
    values(argv)
    return values.config


@pytest.mark.parametrize("path", CONFIG_FILES)
def test_every_default_field_is_in_every_config(path):
    from preact.configs import default

    fields = set(_leaves(default.get_config()))
    assert fields - set(_leaves(_parse(path))) == set()


@pytest.mark.parametrize("path", CONFIG_FILES)
def test_documented_overrides_work_on_every_config(path):
    config = _parse(path, *DOCUMENTED)
    assert config.train_split == "train[:45000]" and config.image_size == 32
    assert config.model.fused_bn_relu is False and config.model.conv_grad == "xla"
    # Validated before any data is read or anything compiled.
    configuration.validate(config, num_devices=8)
    settings = pipeline.read_settings(config)
    assert settings.train_split == "train[:45000]" and settings.num_data_workers == 4


@pytest.mark.parametrize("path", CONFIG_FILES)
def test_random_erasing_parses_on_every_config_and_is_refused_where_it_cannot_run(path):
    config = _parse(path, "--config.random_erasing=0.5")
    if config.augment == "pad_crop_flip":
        assert pipeline.read_settings(config).random_erasing == 0.5
    else:  # the streamed ImageNet augmentations: refused before any data is read
        with pytest.raises(pipeline.DataError, match="random_erasing = 0.5 needs"):
            pipeline.read_settings(config)


@pytest.mark.parametrize("path", CONFIG_FILES)
def test_open_dicts_are_overridden_whole_on_every_config(path):
    """``model.unit_options`` and ``optimizer_kwargs`` hold the options of a part chosen by name;
    the command line sets them as one dict (their keys cannot be declared in advance)."""
    config = _parse(
        path,
        "--config.model.unit=original",
        "--config.model.unit_options={'shortcut_variant': 'exclusive_gating', 'gate_bias': -7.0}",
        "--config.optimizer=adamw",
        "--config.optimizer_kwargs={'b1': 0.8, 'weight_decay': 0.0}",
    )
    model = configuration.validate(config, num_devices=8)
    assert dict(model.unit_options) == {"shortcut_variant": "exclusive_gating", "gate_bias": -7.0}
    assert config.optimizer_kwargs.to_dict() == {"b1": 0.8, "weight_decay": 0.0}


def test_num_data_workers_zero_means_the_machine_s_cores():
    settings = pipeline.read_settings(_parse("configs/default.py"))
    assert settings.num_data_workers == min(16, os.cpu_count() or 1)
