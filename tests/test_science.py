"""Tests that fail when the science is wrong: what an evaluation counts, what BN keeps, the gate
of Fig. 2(c), the augmentation and schedule the config asks for, the order of Fig. 4(e), and the
paper's recipe in every config file. Expected values are the paper's numbers or are computed here
from first principles, never by the code under test."""

import glob
import importlib
import inspect
import os

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from jax import lax

from preact import configuration, optim, training, units
from preact.configs import default
from preact.data import digits, make_pipeline
from preact.data.pipeline import read_settings
from tests import reference
from tests.helpers import ROOT, data_config, key, tiny_config

# --- evaluation counts only the real examples of a padded last batch ----------------------------


def test_evaluation_counts_only_real_examples():
    """The 360 digits test images in eval batches of 128: the last batch carries 24 padding rows
    (label 0). A model whose logits are a fixed vector predicts class 3 for every image, so the
    test error is the share of real labels that are not 3, whatever the padding holds."""
    logits = np.array([0.1, 0.2, 0.3, 2.0, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0], np.float32)
    state = training.TrainState.create(
        apply_fn=lambda v, x, train: jnp.broadcast_to(v["params"]["b"], (x.shape[0], 10)),
        params={"b": jnp.asarray(logits)},
        tx=optax.sgd(0.1),
        batch_stats={},
    )
    pipeline = make_pipeline(data_config(eval_batch_size=128))
    result = training.evaluate(training.parallel(training.eval_step), state,
                               pipeline.eval_batches())  # fmt: skip

    labels = digits.load().test.labels
    assert len(labels) == 360 and 360 % 128 != 0  # a padded last batch
    log_softmax = logits - np.log(np.sum(np.exp(logits.astype(np.float64))))
    top5 = {3, 9, 8, 7, 6}
    assert result["num_examples"] == 360
    assert result["error"] == pytest.approx(100.0 * np.mean(labels != 3), abs=1e-6)
    assert result["loss"] == pytest.approx(-np.mean(log_softmax[labels]), rel=1e-5)
    in_top5 = np.isin(labels, list(top5))
    assert result["top5_error"] == pytest.approx(100.0 * np.mean(~in_top5), abs=1e-6)


# --- per-device BN: the state keeps the device mean of the running averages ---------------------


@pytest.mark.slow
def test_per_device_bn_running_averages_are_averaged_over_devices():
    """With per-device statistics each device normalizes its own 2 images and moves its own
    running averages; the state keeps their mean over devices. The devices' images are shifted
    apart, so every device's statistics differ and so do those of the whole batch."""
    devices = jax.devices()[:2]
    config = tiny_config(bn_statistics="per_device")
    model = configuration.build_model(config)
    state = training.create_train_state(config, model, (8, 8, 1))
    rng = np.random.default_rng(0)
    images = rng.normal(size=(2, 2, 8, 8, 1)).astype(np.float32)
    images[1] = 2.0 * images[1] + 3.0
    labels = rng.integers(0, 10, size=(2, 2)).astype(np.int32)
    new_state, _ = training.make_train_step(config, devices)(
        state, {"image": images, "label": labels}
    )

    net = reference.Net.cifar(8, "basic", "full_preact", 4)
    variables = {"params": state.params, "batch_stats": state.batch_stats}
    per_device = [reference.forward(net, variables, x, train=True)[1] for x in images]
    whole = reference.forward(net, variables, images.reshape(4, 8, 8, 1), train=True)[1]
    got = reference.flatten(jax.device_get(new_state.batch_stats))
    device0, device1 = (reference.flatten(stats) for stats in per_device)
    expected = {path: (device0[path] + device1[path]) / 2 for path in device0}
    assert set(got) == set(expected)
    for path, value in expected.items():
        np.testing.assert_allclose(got[path], value, rtol=1e-4, atol=1e-5, err_msg=str(path))
    # The check has teeth: device 0 alone, or the whole batch's statistics, are other values.
    synced = reference.flatten(whole)
    var = ("stage1", "unit01", "norm1", "var")
    assert not np.allclose(got[var], device0[var], rtol=1e-3)
    assert not np.allclose(got[var], synced[var], rtol=1e-3)


# --- exclusive gating, Fig. 2(c): (1 - g) h(x) + g F(x) ----------------------------------------


def test_exclusive_gating_multiplies_f_by_g():
    """Zero gate weights and bias b: g = sigmoid(b) everywhere. F's last BN with scale 0 and
    shift c makes F(x) = c. For x > 0 the unit gives ReLU((1 - g) x + g c)."""
    unit = units.OriginalUnit(
        layers=units.residual_layers("basic", 8, 1),
        shortcut="identity",
        conv=units.conv_partial(jnp.float32),
        norm=units.norm_partial(jnp.float32, 0.9, 1e-5, None),
        shortcut_variant="exclusive_gating",
    )
    x = jnp.abs(jax.random.normal(key(0), (2, 4, 4, 8))) + 0.1
    variables = jax.tree.map(jnp.asarray, unit.init(key(1), x, train=False))
    params = variables["params"]
    b, c = 1.0, 0.75
    params["conv_gate"] = {"kernel": jnp.zeros((1, 1, 8, 8)), "bias": jnp.full((8,), b)}
    params["norm2"] = {"scale": jnp.zeros(8), "bias": jnp.full((8,), c)}
    g = 1.0 / (1.0 + np.exp(-b))
    y = unit.apply(variables, x, train=False)
    np.testing.assert_allclose(y, (1 - g) * x + g * c, rtol=1e-6)


# --- the config's augmentation reaches the training batches --------------------------------------


def views(images, labels, padding):
    """{label: all crops of the zero-padded images and of their mirror images}, as
    [N, 2 (mirrored), 2p+1 (row offset), 2p+1 (column offset), H, W, C]."""
    n, height, width, _ = images.shape
    padded = np.pad(images, ((0, 0), (padding, padding), (padding, padding), (0, 0)))
    size = 2 * padding + 1
    out = np.empty((n, 2, size, size, *images.shape[1:]), images.dtype)
    for m, source in enumerate((padded, padded[:, :, ::-1])):
        for dy in range(size):
            for dx in range(size):
                out[:, m, dy, dx] = source[:, dy : dy + height, dx : dx + width]
    return {c: out[labels == c] for c in np.unique(labels)}


@pytest.mark.parametrize("padding,flip", [(1, False), (2, True)])
def test_the_configs_augmentation_reaches_the_batches(padding, flip):
    """Every training image served is a crop of a zero-padded (after normalization) training
    image of its class, or of its mirror image, within ``crop_padding`` pixels; offsets reach the
    edge of the padding and mirror images appear exactly when ``random_flip`` is set."""
    config = data_config(crop_padding=padding, random_flip=flip, batch_size=64)
    pipeline = make_pipeline(config, devices=jax.local_devices()[:1])
    train = digits.load().train
    pixels = train.images.astype(np.float64)
    mean, std = pixels.mean(axis=(0, 1, 2)), pixels.std(axis=(0, 1, 2))  # per channel, on 0..255
    candidates = views((pixels - mean) / std, train.labels, padding)

    offsets, only_mirrored = set(), 0
    for step in range(4):
        batch = jax.device_get(pipeline.train_batch(step))
        for image, label in zip(batch["image"].reshape(-1, 8, 8, 1),
                                batch["label"].reshape(-1), strict=True):  # fmt: skip
            hits = np.argwhere(np.all(np.abs(candidates[label] - image) < 1e-3, axis=(-3, -2, -1)))
            assert len(hits), "a served image that is no crop of a training image"
            offsets.update(int(o) for o in hits[:, 2:].ravel())
            only_mirrored += set(hits[:, 1]) == {1}  # (a symmetric digit matches both ways)
    assert offsets == set(range(2 * padding + 1))  # shifts up to crop_padding, both ways
    assert (only_mirrored > 0) == flip


def test_random_flip_reaches_the_streamed_batches():
    """The streaming (ImageNet) pipeline: with scale range (8, 8) on 8x8 images the only change
    is the flip. Same seed with and without ``random_flip``: mirror images, or the same image."""
    common = dict(augment="scale_jitter", image_size=8, train_scale_range=(8, 8),
                  eval_crops=((8, 8),), num_data_workers=2, batch_size=32)  # fmt: skip
    served = {}
    for flip in (False, True):
        config = data_config(**common, random_flip=flip)
        with make_pipeline(config, devices=jax.local_devices()[:1]) as pipeline:
            served[flip] = np.asarray(pipeline.train_batch(0)["image"]).reshape(-1, 8, 8, 1)
    a, b = served[False], served[True]
    same = np.all(np.isclose(a, b), axis=(1, 2, 3))
    mirror = np.all(np.isclose(a[:, :, ::-1], b), axis=(1, 2, 3))
    assert np.all(same | mirror)
    assert 0.2 < np.mean(mirror & ~same) < 0.8


# --- the learning-rate schedule drives the update -----------------------------------------------


def update_at(tx, params, step):
    """The optimizer's update for a gradient of ones at iteration ``step`` (its count set so)."""
    state = tx.init(params)
    state = jax.tree_util.tree_map_with_path(
        lambda path, v: jnp.full_like(v, step) if getattr(path[-1], "name", "") == "count" else v,
        state,
    )
    grads = jax.tree.map(jnp.ones_like, params)
    return float(tx.update(grads, state, params)[0]["w"][0])


def test_the_paper_schedule_drives_the_optimizer():
    """Appendix: 0.01 for the first 400 iterations, then 0.1, /10 at 32k and 48k. Without
    momentum and weight decay the update of a unit gradient is minus the learning rate."""
    config = default.get_config()
    config.momentum, config.weight_decay = 0.0, 0.0
    params = {"w": jnp.ones(1)}
    tx = optim.create_optimizer(config, params)
    expected = {0: 0.01, 399: 0.01, 400: 0.1, 31_999: 0.1, 32_000: 0.01, 47_999: 0.01,
                48_000: 0.001, 63_999: 0.001}  # fmt: skip
    for step, lr in expected.items():
        assert update_at(tx, params, step) == pytest.approx(-lr, rel=1e-6), step


# --- Fig. 4(e): BN-ReLU-conv, BN-ReLU-conv, added to the untouched input -----------------------


@pytest.mark.parametrize("train", [False, True])
def test_full_preact_unit_is_bn_relu_conv_repeated(train):
    """Eq. 9 with F = W2 ReLU(BN2(W1 ReLU(BN1(x)))), written out here, on random BN scale,
    shift and running statistics: ReLU before BN, or BN after the conv (Fig. 4d), differ."""
    unit = units.FullPreActUnit(
        layers=units.residual_layers("basic", 8, 1),
        shortcut="identity",
        conv=units.conv_partial(jnp.float32),
        norm=units.norm_partial(jnp.float32, 0.9, 1e-5, None),
    )
    x = jax.random.normal(key(0), (4, 6, 6, 8))
    variables = reference.random_variables(
        jax.eval_shape(lambda: unit.init(key(1), x, train=False)), seed=3
    )
    p, s = variables["params"], variables["batch_stats"]

    def bn(v, name):
        mean, var = (v.mean((0, 1, 2)), v.var((0, 1, 2))) if train else (
            s[name]["mean"], s[name]["var"])  # fmt: skip
        return (v - mean) / jnp.sqrt(var + 1e-5) * p[name]["scale"] + p[name]["bias"]

    def conv(v, name):
        return lax.conv_general_dilated(v, p[name]["kernel"], (1, 1), ((1, 1), (1, 1)),
                                        dimension_numbers=("NHWC", "HWIO", "NHWC"),
                                        precision=lax.Precision.HIGHEST)  # fmt: skip

    relu = jax.nn.relu
    expected = x + conv(relu(bn(conv(relu(bn(x, "norm1")), "conv1"), "norm2")), "conv2")
    y = unit.apply(variables, x, train=train, mutable=["batch_stats"] if train else False)
    y = y[0] if train else y
    np.testing.assert_allclose(y, expected, rtol=1e-4, atol=1e-4)


# --- every config file: valid, without reading data; the paper's recipe pinned ------------------

CONFIG_FILES = sorted(
    os.path.splitext(os.path.basename(p))[0]
    for p in glob.glob(os.path.join(ROOT, "configs", "*.py"))
    if not p.endswith("__init__.py")
)


def config_specs():
    """(module, recipe) for every file in configs/ and every recipe its get_config takes."""
    specs = []
    for name in CONFIG_FILES:
        module = importlib.import_module(f"preact.configs.{name}")
        takes_recipe = "recipe" in inspect.signature(module.get_config).parameters
        for recipe in (None, *default.RECIPES) if takes_recipe else (None,):
            specs.append((name, recipe))
    return specs


@pytest.mark.parametrize("name,recipe", config_specs())
def test_every_config_is_valid(name, recipe):
    module = importlib.import_module(f"preact.configs.{name}")
    config = module.get_config(recipe) if recipe else module.get_config()
    model = configuration.validate(config, num_devices=8)  # builds the model; traces nothing
    read_settings(config)  # the data fields, checked without reading any data
    assert model.paper_depth() == config.model.depth
    if name in EXPERIMENTS:
        assert config.experiment == name + ("_torch" if recipe == "torch" else "")


# (unit, block, depth, option of the dimension-increasing shortcuts) of each experiment.
EXPERIMENTS = {
    "preact110": ("full_preact", "basic", 110, "zero_pad"),  # Appendix: option A for basic
    "original110": ("original", "basic", 110, "zero_pad"),
    "preact110_1layer": ("full_preact", "one_layer", 110, "zero_pad"),
    "original110_1layer": ("original", "one_layer", 110, "zero_pad"),
    "preact164": ("full_preact", "bottleneck", 164, "projection"),  # option B for bottleneck
    "original164": ("original", "bottleneck", 164, "projection"),
    "preact1001": ("full_preact", "bottleneck", 1001, "projection"),
    "original1001": ("original", "bottleneck", 1001, "projection"),
    "imagenet_preact152": ("full_preact", "bottleneck", 152, "projection"),
    "imagenet_original152": ("original", "bottleneck", 152, "projection"),
    "imagenet_preact200": ("full_preact", "bottleneck", 200, "projection"),
    "imagenet_original200": ("original", "bottleneck", 200, "projection"),
}


def test_every_paper_experiment_has_a_config_file():
    assert set(EXPERIMENTS) | {"default", "smoke"} <= set(CONFIG_FILES)


@pytest.mark.parametrize("name", sorted(EXPERIMENTS))
def test_experiment_networks(name):
    config = importlib.import_module(f"preact.configs.{name}").get_config()
    model = configuration.build_model(config)
    assert (model.unit, model.block, model.paper_depth(), model.downsample_shortcut) == (
        EXPERIMENTS[name])  # fmt: skip


def assert_cifar_paper_recipe(c):
    """Appendix: batch 128, SGD momentum 0.9, weight decay 0.0001, lr 0.1 with 0.01 for the first
    400 iterations, /10 at 32k and 48k, 64k iterations; 4-pixel padding, random crop and flip,
    per-pixel mean subtracted."""
    assert c.batch_size == 128
    assert c.momentum == 0.9 and c.nesterov is False
    assert c.weight_decay == 0.0001
    assert c.learning_rate == 0.1
    assert (c.warmup_learning_rate, c.warmup_steps) == (0.01, 400)
    assert tuple(c.lr_boundaries_steps) == (32_000, 48_000) and c.lr_decay_factor == 0.1
    assert c.num_train_steps == 64_000
    assert (c.augment, c.crop_padding, c.random_flip) == ("pad_crop_flip", 4, True)
    assert c.normalization == "per_pixel_mean"
    assert c.dataset == "cifar10"
    # Torch's BN momentum 0.1 (Flax's weight of the old average 0.9), epsilon 1e-5.
    assert (c.model.bn_momentum, c.model.bn_epsilon) == (0.9, 1e-5)
    # 64 images per GPU on 2 GPUs: BN statistics per device.
    assert c.bn_statistics == "per_device"


def test_default_is_the_papers_cifar_recipe_on_resnet110():
    c = default.get_config()
    assert_cifar_paper_recipe(c)
    assert (c.model.unit, c.model.block, c.model.depth) == ("full_preact", "basic", 110)
    assert default.get_config("paper").to_dict() == c.to_dict()


@pytest.mark.parametrize("name", sorted(n for n in EXPERIMENTS if not n.startswith("imagenet")))
def test_cifar_experiments_use_the_paper_recipe(name):
    assert_cifar_paper_recipe(importlib.import_module(f"preact.configs.{name}").get_config())


def test_torch_recipe():
    """resnet-1k-layers' Torch recipe: batch 64, Nesterov, no warm-up, 200 epochs of 781
    iterations, lr 0.1 /10 after epochs 80 and 121, per-channel mean and std."""
    c = default.get_config("torch")
    assert (c.batch_size, c.nesterov, c.warmup_steps, c.learning_rate) == (64, True, 0, 0.1)
    assert tuple(c.lr_boundaries_steps) == (80 * 781, 121 * 781)
    assert c.num_train_steps == 200 * 781
    assert c.normalization == "per_channel"
    assert (c.momentum, c.weight_decay) == (0.9, 0.0001)


@pytest.mark.parametrize("name", sorted(n for n in EXPERIMENTS if n.startswith("imagenet")))
def test_imagenet_recipe(name):
    """Appendix: batch 256, lr 0.1 without warm-up, /10 at 30 and 60 epochs (5,004 iterations
    of 256 of the 1,281,167 training images each), momentum 0.9, weight decay 0.0001."""
    c = importlib.import_module(f"preact.configs.{name}").get_config()
    assert (c.dataset, c.batch_size, c.learning_rate, c.warmup_steps) == (
        "imagenet2012", 256, 0.1, 0)  # fmt: skip
    assert tuple(c.lr_boundaries_steps) == (30 * 5004, 60 * 5004)
    assert (c.momentum, c.weight_decay, c.nesterov) == (0.9, 0.0001, False)
    assert (c.image_size, tuple(c.train_scale_range)) == (224, (256, 480))  # scale augmentation
    assert tuple(map(tuple, c.eval_crops)) == ((256, 224), (320, 320))  # Table 5's two tests
