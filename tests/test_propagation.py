"""The cases the paper derives, measured: with every residual branch zeroed, a clean identity path
carries x_l and dE/dx_l unchanged across units (Eqs. 4-5), and a shortcut scaled by lambda
scales both by lambda per unit (Eqs. 6-8)."""

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import traverse_util

from preact import configuration, networks, units
from preact.analysis import propagation
from tests.helpers import TINY, key, run_command, tiny_config

LAMBDA = 0.5
DEPTH = 20  # 3 units per stage: two unit-to-unit steps inside every stage


def tiny_net(unit, **kwargs):
    return networks.cifar_resnet(
        DEPTH, block="basic", unit=unit, num_classes=10, width=4, scan=False, **kwargs
    )


def batch(seed=0, n=8):
    k1, k2 = jax.random.split(key(seed))
    return jax.random.normal(k1, (n, 8, 8, 3)), jax.random.randint(k2, (n,), 0, 10)


def init(model, images):
    """He-normal kernels, BN at gamma=1, beta=0, statistics 0/1 - drawn with numpy: the cases
    below hold for any weights, and JAX's threefry init compiles slowly on a CPU."""
    shapes = jax.eval_shape(lambda: model.init(key(0), images, train=False))
    rng = np.random.default_rng(0)

    def draw(path, leaf):
        name = path[-1].key
        if name == "kernel":
            fan_in = int(np.prod(leaf.shape[:-1]))
            return jnp.asarray(rng.normal(0, np.sqrt(2 / fan_in), leaf.shape), leaf.dtype)
        return jnp.full(leaf.shape, 1.0 if name in ("scale", "var") else 0.0, leaf.dtype)

    return jax.tree_util.tree_map_with_path(draw, shapes)


def set_params(variables, rule):
    """Replace the parameters whose path (a tuple of names) ``rule`` maps to a new value."""
    flat = traverse_util.flatten_dict(variables["params"])
    for path, value in flat.items():
        new = rule(path, value)
        if new is not None:
            flat[path] = new
    return {**variables, "params": traverse_util.unflatten_dict(flat)}


def is_unit(path):
    return path[0].startswith("stage") and path[1].startswith("unit")


def stage_spans(signals):
    """For each stage, the indices l of x_l produced by its units (x_0 is the stem output)."""
    spans = {}
    for index, name in enumerate(signals.units):
        if name != "stem":
            spans.setdefault(name.split("/")[0], []).append(index)
    return list(spans.values())


@pytest.mark.slow
def test_full_preact_with_zeroed_branches_is_an_identity_path():
    model = tiny_net("full_preact")
    images, labels = batch()
    variables = init(model, images)
    # F's last weight layer at zero: F(x) = 0, so x_{l+1} = x_l + F(x_l) = x_l (Eq. 4 with F=0).
    variables = set_params(
        variables,
        lambda p, v: jnp.zeros_like(v) if is_unit(p) and p[2] == "conv2" else None,
    )
    signals = propagation.unit_signals(model, variables, images, labels, bn="batch")
    assert len(signals.xs) == len(signals.grads) == 3 * 3 + 1
    spans = stage_spans(signals)
    assert [len(s) for s in spans] == [3, 3, 3]
    for span in spans:
        first, rest = span[0], span[1:]
        # The first unit of a stage is not the identity (shared pre-activation, and the
        # option-A shortcut on stages 2-3: footnote 1); after it x_l and dE/dx_l pass unchanged.
        assert signals.non_identity[first]
        for index in rest:
            assert not signals.non_identity[index]
            np.testing.assert_array_equal(signals.xs[index], signals.xs[first])
            np.testing.assert_array_equal(signals.grads[index], signals.grads[first])
    # The gradient is really there (a perturbation that went nowhere would give zeros).
    assert all(propagation.rms(g) > 0 for g in signals.grads)


def test_live_branches_do_change_the_signal():
    # The same check on the untouched network fails: the test above pins the zeroing, not a bug.
    model = tiny_net("full_preact")
    images, labels = batch()
    variables = init(model, images)
    signals = propagation.unit_signals(model, variables, images, labels)
    a, b = stage_spans(signals)[0][1:]
    assert not np.allclose(signals.xs[a], signals.xs[b])
    assert not np.allclose(signals.grads[a], signals.grads[b])


@pytest.mark.slow
def test_constant_scaling_scales_signal_and_gradient_by_lambda_per_unit():
    model = tiny_net(
        "original",
        unit_options={"shortcut_variant": "constant_scaling", "shortcut_scale": LAMBDA},
    )
    images, labels = batch(1)
    variables = init(model, images)

    def rule(path, value):
        # F ends with BN: scale and bias 0 make F(x) = 0 exactly (the scale-before-BN problem
        # is why zeroing a conv would not do for the original unit).
        if is_unit(path) and path[2] == "norm2":
            return jnp.zeros_like(value)
        # The stem's BN bias far above its normalized output: x_1 > 0 everywhere, so the ReLU
        # after each addition is the identity and x_{l+1} = ReLU(lambda x_l) = lambda x_l.
        if path == ("norm1", "bias"):
            return jnp.full_like(value, 100.0)
        return None

    variables = set_params(variables, rule)
    signals = propagation.unit_signals(model, variables, images, labels, bn="batch")
    assert float(jnp.min(signals.xs[0])) > 0
    for index in range(1, len(signals.xs)):
        prev, x = signals.xs[index - 1], signals.xs[index]
        g_prev, g = signals.grads[index - 1], signals.grads[index]
        if signals.non_identity[index]:
            # Option A: subsample, pad with zero channels, then scale (footnote 1's units).
            expected = LAMBDA * units.zero_pad_shortcut(prev, x.shape[-1], 2)
            np.testing.assert_allclose(x, expected, rtol=1e-6)
            continue
        np.testing.assert_allclose(x, LAMBDA * prev, rtol=1e-6)  # Eq. 6 with F = 0
        assert propagation.rms(x) == pytest.approx(LAMBDA * propagation.rms(prev), rel=1e-5)
        # Eq. 7: dE/dx_l = lambda dE/dx_{l+1} where the ReLU passes (x_l > 0). The zero-padded
        # channels of stages 2-3 are 0, where ReLU's gradient is 0 and nothing flows back.
        passes = np.asarray(prev) > 0
        np.testing.assert_allclose(
            np.asarray(g_prev)[passes], LAMBDA * np.asarray(g)[passes], rtol=1e-5
        )
        assert np.all(np.asarray(g_prev)[~passes] == 0)
    # Stage 1 has no padded channels: the whole gradient shrinks by lambda per unit there,
    # lambda^3 over its three units (Eq. 8: the product of the lambdas).
    stage1 = stage_spans(signals)[0]
    np.testing.assert_allclose(
        signals.grads[0], LAMBDA ** len(stage1) * signals.grads[stage1[-1]], rtol=1e-5
    )


@pytest.mark.slow
def test_unscan_inverts_scan_and_gives_the_same_network():
    images, labels = batch(2, n=4)
    unrolled = tiny_net("full_preact")
    scanned = unrolled.clone(scan=True)
    variables = init(unrolled, images)
    stacked = networks.scan_variables(variables)
    back = networks.unscan_variables(stacked)
    chex_equal = jax.tree.map(lambda a, b: bool(jnp.array_equal(a, b)), back, variables)
    assert all(jax.tree.leaves(chex_equal))
    assert jax.tree.structure(back) == jax.tree.structure(variables)
    apply = jax.jit(lambda model, v: model.apply(v, images, train=False), static_argnums=0)
    np.testing.assert_allclose(
        apply(unrolled, back),
        apply(scanned, stacked),
        rtol=1e-5,
        atol=1e-6,
    )


def test_scanned_model_is_refused():
    images, labels = batch()
    model = tiny_net("full_preact").clone(scan=True)
    variables = init(model, images)
    with pytest.raises(ValueError, match="scan=False"):
        propagation.unit_signals(model, variables, images, labels)


def test_config_overrides_and_labels():
    """A config entry is train.py's --config and --config.x=v words in one string."""
    config, label = propagation.load_config(
        "original110 --config.model.unit_options=\"{'shortcut_variant': 'constant_scaling', "
        "'shortcut_scale': 0.5}\" --config.model.depth=56"
    )
    assert config.model.unit_options.shortcut_variant == "constant_scaling"
    assert config.model.unit_options.shortcut_scale == 0.5
    assert config.model.depth == 56
    assert label == (
        "original110 (unit_options={'shortcut_variant': 'constant_scaling', "
        "'shortcut_scale': 0.5}, depth=56)"
    )
    assert configuration.build_model(config).unit_options["shortcut_scale"] == 0.5
    with pytest.raises(ValueError, match=r"--config.model.dpeth=8: no such config field"):
        propagation.load_config("configs/smoke.py --config.model.dpeth=8")
    with pytest.raises(ValueError, match="is not a --config.FIELD=VALUE override"):
        propagation.load_config("configs/smoke.py model.depth=8")
    assert propagation._split("a.py --config.x=\"{'a': 1, 'b': 2}\",b.py") == [
        "a.py --config.x=\"{'a': 1, 'b': 2}\"",
        "b.py",
    ]


@pytest.mark.slow
def test_checkpoint_and_command_line(tmp_path):
    from preact import checkpointing, configuration, training

    # A checkpoint as training writes it (scanned layout), with weights unlike the init's.
    config = tiny_config()
    workdir = str(tmp_path / "run")
    state = training.create_train_state(config, configuration.build_model(config), (8, 8, 1))
    state = state.replace(params=jax.tree.map(lambda p: 1.5 * p + 0.01, state.params))
    checkpoints = checkpointing.Checkpointer(workdir, config)
    checkpoints.save(7, state)
    checkpoints.close()
    trained = propagation.measure_config(config, name="trained", workdir=workdir, bn="running")
    assert trained.source.endswith("(step 7)")
    assert len(trained.forward) == 3 + 1  # depth 8: one unit per stage
    assert np.all(np.isfinite(trained.forward)) and np.all(np.isfinite(trained.backward))

    out = tmp_path / "prop.png"
    # the same network as tiny_config's
    tiny = (
        f"configs/smoke.py --config.model.depth={TINY['model.depth']} "
        f"--config.model.width={TINY['model.width']}"
    )
    measurements = run_command(
        propagation,
        f"--configs={tiny},{tiny} --config.model.unit=original",
        "--labels=pre-act,original",
        f"--out={out}",
        "--bn=running",
    )
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    saved = json.loads((tmp_path / "prop.json").read_text())
    assert [m["name"] for m in saved] == ["pre-act", "original"]
    assert saved[0]["forward"] == pytest.approx(list(measurements[0].forward))
    assert all(len(m["backward"]) == 4 and m["depth"] == 8 for m in saved)
    assert saved[0]["environment"]["versions"]["jax"] == jax.__version__
    command = saved[1]["command"]  # the flags given, enough to make the file again
    assert command.startswith("python -m preact.analysis.propagation ")
    assert "--labels=pre-act,original" in command and "--bn=running" in command
    assert "--config.model.unit=original'" in command and "--batch_size" not in command
    assert saved[1]["date_utc"].startswith("20")
    # Same network, images and labels (same seed): only the restored weights differ.
    assert not np.allclose(trained.forward, measurements[0].forward)

    # The saved numbers re-plot without measuring again.
    replotted = run_command(propagation, f"--from_json={tmp_path / 'prop.json'}", f"--out={out}")
    np.testing.assert_array_equal(replotted[1].backward, measurements[1].backward)
    assert replotted[1].non_identity == measurements[1].non_identity
