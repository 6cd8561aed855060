"""Extension points used from outside the package: a residual unit with an option of its own,
selected by config alone (the network applies the Appendix rules the unit declares, and it
trains), a shortcut variant of the original unit (one registered function), and a dataset of
one's own, one registry entry."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from preact import configuration, data, networks, training, units
from preact.data import datasets
from preact.data.arrays import InMemoryDataset, LabeledImages
from tests.helpers import key, tiny_config


@units.register_unit("scaled_full_preact")
class ScaledFullPreActUnit(units.PreActivationUnit):
    """``x_{l+1} = h(x_l) + alpha * F(x_l)``, F as the full pre-activation unit's."""

    alpha: float = 1.0

    STEM_NORM = False
    FINAL_NORM = True

    @nn.compact
    def __call__(self, x, *, train):
        preact = self._norm_act(x, train=train, name="norm1") if self.preactivate else x
        h = self._h(preact if self.shared_preact else x, train=train)
        residual = preact
        for i, layer in enumerate(self.layers, start=1):
            if i > 1:
                residual = self._norm_act(residual, train=train, name=f"norm{i}")
            residual = self._conv(layer, f"conv{i}")(residual)
        return h + self.alpha * residual


def _net(unit, **options):
    return networks.cifar_resnet(
        8, block="basic", width=4, num_classes=10, unit=unit, unit_options=options
    )


@pytest.mark.slow
def test_new_unit_gets_the_appendix_rules_it_declares():
    """With alpha = 1 it is the full pre-activation network, variable for variable: the shared
    pre-activation of each stage's first unit and the final BN-ReLU came from its declaration."""
    x = jax.random.normal(key(0), (4, 8, 8, 3))
    reference = _net("full_preact")
    variables = reference.init(key(1), x, train=False)
    variables = jax.tree.map(lambda v: v + 0.1 * jax.random.normal(key(2), v.shape), variables)
    ours = _net("scaled_full_preact", alpha=1.0)
    np.testing.assert_array_equal(
        ours.apply(variables, x, train=False), reference.apply(variables, x, train=False)
    )
    halved = _net("scaled_full_preact", alpha=0.5).apply(variables, x, train=False)
    assert not np.allclose(halved, reference.apply(variables, x, train=False))


def test_unknown_unit_option_is_refused_naming_the_unit_options():
    with pytest.raises(ValueError, match=r"unit_options \['beta'\] are not fields.*'alpha'"):
        _net("scaled_full_preact", beta=2.0)


def test_register_unit_refuses_a_non_unit_and_a_taken_name():
    with pytest.raises(TypeError):
        units.register_unit("not_a_unit")(dict)
    with pytest.raises(ValueError, match="taken"):
        units.register_unit("full_preact")(ScaledFullPreActUnit)


@pytest.mark.slow
def test_new_unit_trains_from_a_config(tmp_path):
    config = tiny_config(num_train_steps=2)
    config.model.unit = "scaled_full_preact"
    config.model.unit_options = {"alpha": 0.5}
    model = configuration.build_model(config)
    assert model.unit_options["alpha"] == 0.5
    result = training.train_and_evaluate(config, str(tmp_path / "work"))
    assert result["step"] == 2 and jnp.isfinite(result["train_loss"])


@units.register_shortcut_variant("half_shortcut")
def _half_shortcut(unit, x, residual, *, train):
    """``0.5 h(x) + F(x)``: constant scaling of the shortcut alone, written as a new variant."""
    return 0.5 * unit._h(x, train=train) + residual


def test_new_shortcut_variant_is_one_registered_function():
    """The registered variant is constant scaling with lambda = 0.5, variable for variable."""
    x = jax.random.normal(key(0), (4, 8, 8, 3))
    reference = _net("original", shortcut_variant="constant_scaling", shortcut_scale=0.5)
    variables = reference.init(key(1), x, train=False)
    ours = _net("original", shortcut_variant="half_shortcut")
    assert jax.tree.structure(ours.init(key(1), x, train=False)) == jax.tree.structure(variables)
    np.testing.assert_array_equal(
        ours.apply(variables, x, train=False), reference.apply(variables, x, train=False)
    )
    with pytest.raises(ValueError, match="taken"):
        units.register_shortcut_variant("identity")(_half_shortcut)


@pytest.mark.slow
def test_new_shortcut_variant_trains_from_a_config(tmp_path):
    config = tiny_config(num_train_steps=2)
    config.model.unit = "original"
    config.model.unit_options = {"shortcut_variant": "half_shortcut"}
    result = training.train_and_evaluate(config, str(tmp_path / "work"))
    assert result["step"] == 2 and jnp.isfinite(result["train_loss"])


def _blobs(n: int, seed: int) -> LabeledImages:
    """Class c is a 6x6 grey image of brightness 40 * c, plus noise: learnable in a few steps."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 3, n).astype(np.int32)
    images = 40.0 * labels[:, None, None, None] + rng.normal(60.0, 8.0, (n, 6, 6, 1))
    return LabeledImages(np.clip(images, 0, 255).astype(np.uint8), labels)


def _grey_blobs(**facts) -> datasets.Dataset:
    return datasets.Dataset(
        name="grey_blobs",
        title="grey blobs",
        num_classes=3,
        image_shape=(6, 6, 1),
        splits={"train": 96, "test": 48},
        load=lambda data_dir: InMemoryDataset(
            "grey_blobs", _blobs(96, 0), _blobs(48, 1), 3, "grey blobs, generated"
        ),
        tfds=False,
        **facts,
    )


def test_a_datasets_augmentation_and_normalization_facts_come_from_its_entry(caplog):
    """Whether a flip keeps the label and the per-channel constants are facts of the entry: the
    pipeline warns about a label-changing flip and normalizes with the stated constants, with
    no other module told about the dataset."""
    datasets.register(_grey_blobs(flip_keeps_label=False, per_channel_stats=((50.0,), (20.0,))))
    try:
        config = tiny_config(
            dataset="grey_blobs", normalization="per_channel", crop_padding=1, random_flip=True
        )
        config.batch_size = config.eval_batch_size = 16
        with caplog.at_level("WARNING"):
            pipeline = data.make_pipeline(config)
        try:
            assert "mirrored image is another class" in caplog.text
            normalized = np.asarray(next(pipeline.eval_batches())["image"])
        finally:
            pipeline.close()
        raw = _blobs(48, 1).images[:16].astype(np.float32)
        expected = (raw - 50.0) / 20.0
        np.testing.assert_allclose(normalized.reshape(expected.shape), expected, rtol=1e-5)
    finally:
        del datasets.DATASETS["grey_blobs"]


@pytest.mark.slow
def test_new_dataset_is_one_registry_entry(tmp_path):
    """A dataset of one's own: one ``datasets.register`` call, then a config names it."""
    entry = datasets.register(_grey_blobs(flip_keeps_label=True))
    try:
        with pytest.raises(ValueError, match="already registered"):
            datasets.register(entry)
        config = tiny_config(num_train_steps=3)
        config.dataset = "grey_blobs"
        config.crop_padding = 1
        config.batch_size = config.eval_batch_size = 16
        model = configuration.validate(config, num_devices=len(jax.local_devices()))
        assert model.num_classes == 3
        result = training.train_and_evaluate(config, str(tmp_path / "work"))
        assert result["step"] == 3 and 0.0 <= result["test_error"] <= 100.0
    finally:
        del datasets.DATASETS["grey_blobs"]
