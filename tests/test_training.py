"""The train step, the schedule, the optimizer, the loop and its entry points."""

import json
import os
import pathlib
import subprocess

import chex
import flax
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from preact import configuration, optim, training
from preact.configs import default
from preact.metrics import read_metrics
from tests.helpers import TINY_FLAGS, run_script, tiny_config


def test_paper_schedule_in_iterations():
    lr = optim.learning_rate_schedule(default.get_config())
    got = {s: float(lr(s)) for s in (0, 399, 400, 31999, 32000, 47999, 48000, 63999)}
    expected = {0: 0.01, 399: 0.01, 400: 0.1, 31999: 0.1, 32000: 0.01, 47999: 0.01,
                48000: 0.001, 63999: 0.001}  # fmt: skip
    for step, value in expected.items():
        assert got[step] == pytest.approx(value, rel=1e-6), step


def test_torch_recipe_schedule():
    c = default.get_config("torch")
    assert (c.batch_size, c.nesterov, c.warmup_steps) == (64, True, 0)
    assert c.num_train_steps == 200 * 781
    lr = optim.learning_rate_schedule(c)
    assert float(lr(0)) == pytest.approx(0.1)
    assert float(lr(80 * 781 - 1)) == pytest.approx(0.1)
    assert float(lr(80 * 781)) == pytest.approx(0.01)
    assert float(lr(121 * 781)) == pytest.approx(0.001)


@pytest.mark.parametrize("nesterov", [False, True])
@pytest.mark.parametrize("all_params", [True, False])
def test_sgd_matches_hand_computed_update(nesterov, all_params):
    """Coupled L2: v = m v + (g + wd w); w -= lr v (Nesterov: w -= lr (g + wd w + m v))."""
    c = tiny_config(weight_decay=0.1, momentum=0.9, nesterov=nesterov, warmup_steps=0,
                    learning_rate=0.5, weight_decay_all_params=all_params)  # fmt: skip
    params = {"conv": {"kernel": jnp.array([1.0, -2.0])}, "norm": {"scale": jnp.array([3.0])}}
    tx = optim.create_optimizer(c, params)
    opt_state = tx.init(params)
    grads = [
        {"conv": {"kernel": jnp.array([0.5, 0.25])}, "norm": {"scale": jnp.array([1.0])}},
        {"conv": {"kernel": jnp.array([-1.0, 2.0])}, "norm": {"scale": jnp.array([0.5])}},
    ]
    start = {"kernel": params["conv"]["kernel"], "scale": params["norm"]["scale"]}
    w = {k: np.asarray(v, np.float64) for k, v in start.items()}
    v = {k: np.zeros_like(x) for k, x in w.items()}
    for g in grads:
        updates, opt_state = tx.update(g, opt_state, params)
        params = optax.apply_updates(params, updates)
        flat_g = {
            "kernel": np.asarray(g["conv"]["kernel"]),
            "scale": np.asarray(g["norm"]["scale"]),
        }
        for k in w:
            decay = 0.1 if (all_params or k == "kernel") else 0.0
            d = flat_g[k] + decay * w[k]
            v[k] = 0.9 * v[k] + d
            step = d + 0.9 * v[k] if nesterov else v[k]
            w[k] = w[k] - 0.5 * step
    np.testing.assert_allclose(params["conv"]["kernel"], w["kernel"], rtol=1e-6)
    np.testing.assert_allclose(params["norm"]["scale"], w["scale"], rtol=1e-6)


def _state_and_batch(config, global_batch=16):
    model = configuration.build_model(config)
    state = training.create_train_state(config, model, (8, 8, 1))
    rng = np.random.default_rng(0)
    images = rng.normal(size=(global_batch, 8, 8, 1)).astype(np.float32)
    labels = rng.integers(0, 10, size=(global_batch,)).astype(np.int32)
    return state, images, labels


def _split(images, labels, devices):
    n = len(devices)
    return {"image": images.reshape(n, -1, *images.shape[1:]), "label": labels.reshape(n, -1)}


@pytest.mark.slow
def test_eight_devices_equal_one_with_synchronized_bn():
    config = tiny_config(bn_statistics="synchronized")
    state, images, labels = _state_and_batch(config)
    outs = {}
    for n in (1, 8):
        devices = jax.devices()[:n]
        step = training.make_train_step(config, devices)
        s, m = state, None
        for _ in range(2):
            s, m = step(s, _split(images, labels, devices))
        outs[n] = jax.device_get((s.params, s.batch_stats, s.opt_state, m))
    chex.assert_trees_all_close(outs[1], outs[8], atol=2e-5, rtol=2e-5)


@pytest.mark.slow
def test_per_device_bn_statistics_differ_from_synchronized():
    """The policy is real: per-device statistics normalize each device's 2 images alone."""
    results = {}
    for policy in ("per_device", "synchronized"):
        config = tiny_config(bn_statistics=policy)
        state, images, labels = _state_and_batch(config)
        step = training.make_train_step(config, jax.devices()[:8])
        results[policy] = jax.device_get(step(state, _split(images, labels, jax.devices()))[0])
    diff = jax.tree.map(lambda a, b: float(np.abs(a - b).max()),
                        results["per_device"].params, results["synchronized"].params)  # fmt: skip
    assert max(jax.tree.leaves(diff)) > 1e-4


@pytest.mark.slow
def test_train_step_compiles_once():
    config = tiny_config()
    state, images, labels = _state_and_batch(config)
    devices = jax.devices()[:8]
    lr_fn = optim.learning_rate_schedule(config)

    @chex.assert_max_traces(n=1)
    def step_fn(state, batch):
        return training.train_step(state, batch, learning_rate_fn=lr_fn, seed=0)

    p_step = training.parallel(step_fn, devices)
    state = training.replicate(state, devices)
    for _ in range(3):
        state, metrics = p_step(state, _split(images, labels, devices))
    assert int(state.step) == 3
    chex.clear_trace_counter()


@pytest.mark.slow
def test_non_finite_step_is_not_applied():
    config = tiny_config()
    state, images, labels = _state_and_batch(config)
    images[0, 0, 0, 0] = np.nan
    devices = jax.devices()[:8]
    new_state, metrics = training.make_train_step(config, devices)(
        state, _split(images, labels, devices)
    )
    assert not bool(metrics["finite"])
    chex.assert_trees_all_equal(jax.device_get(new_state.params), jax.device_get(state.params))
    assert int(new_state.step) == 0


@pytest.mark.slow
def test_train_and_evaluate_writes_metrics_and_checkpoints(tmp_path):
    config = tiny_config(rng_impl="threefry2x32")  # the default generator, end to end
    result = training.train_and_evaluate(config, str(tmp_path))
    assert result["step"] == 10
    records = read_metrics(str(tmp_path))
    assert [r["step"] for r in records] == [5, 10]
    assert {"train_loss", "train_error", "learning_rate", "images_per_sec"} <= set(records[0])
    assert "test_error" not in records[0]
    assert _whole_images(records[1]["test_error"], 360)  # percent of the 360 digits test images
    assert records[1]["learning_rate"] == pytest.approx(0.01)
    assert sorted(os.listdir(tmp_path / "checkpoints")) == ["10", "5"]


# --- bad input: clear errors before anything compiles, nothing in the workdir overwritten ----


@pytest.fixture
def no_compile(monkeypatch):
    def fail(*args, **kwargs):
        raise AssertionError("the train state was built: the error came too late")

    monkeypatch.setattr(training, "create_train_state", fail)


@pytest.mark.parametrize(
    "overrides,match",
    [
        (dict(batch_size=12), "batch_size=12 must be a positive multiple of the device count 8"),
        (dict(eval_batch_size=20), "eval_batch_size=20"),
        (dict(warmup_steps=10), "warmup_steps=10 must be shorter than training"),
        (dict(lr_boundaries_steps=(8, 4)), "lr_boundaries_steps=\\(8, 4\\) must be increasing"),
        (dict(bn_statistics="global"), "unknown bn_statistics 'global'"),
        (dict(rng_impl="philox"), "unknown rng_impl 'philox'"),
        ({"model.depth": 9}, "depth 9 is impossible"),
        ({"model.unit": "preact"}, "unknown unit 'preact'"),
        (dict(dataset="nosuchdataset"), "nosuchdataset"),
        (dict(learning_rate=0.0), "learning_rate must be positive, got 0.0"),
        (dict(lr_boundaries_steps=(2.5,)), "must be iteration numbers"),
        (dict(label_smoothing=1.0), r"label_smoothing must be in \[0, 1\), got 1.0"),
        (dict(label_smoothing=-0.1), r"label_smoothing must be in \[0, 1\), got -0.1"),
    ],
)
def test_bad_config_raises_before_compile(tmp_path, no_compile, overrides, match):
    with pytest.raises(ValueError, match=match):
        training.train_and_evaluate(tiny_config(**overrides), str(tmp_path / "w"))


@pytest.mark.slow
def test_workdir_of_another_model_is_refused(tmp_path):
    workdir = str(tmp_path)
    training.train_and_evaluate(tiny_config(num_train_steps=5), workdir)
    before = {p: os.path.getmtime(os.path.join(r, p)) for r, _, fs in os.walk(workdir) for p in fs}
    with pytest.raises(ValueError, match=r"model.depth: checkpoint 8, config 14"):
        training.train_and_evaluate(tiny_config(**{"model.depth": 14}), workdir)
    after = {p: os.path.getmtime(os.path.join(r, p)) for r, _, fs in os.walk(workdir) for p in fs}
    assert before == after


@pytest.mark.slow
def test_train_py_and_eval_py_end_to_end(tmp_path):
    workdir = str(tmp_path / "run")
    train = run_script("train.py", "--config=configs/smoke.py", f"--workdir={workdir}",
                       "--config.num_train_steps=10", *TINY_FLAGS)  # fmt: skip
    assert train.returncode == 0, train.stderr[-3000:]
    assert "step=10" in train.stdout
    ev = run_script("eval.py", "--config=configs/smoke.py", f"--workdir={workdir}", *TINY_FLAGS)
    assert ev.returncode == 0, ev.stderr[-3000:]
    with open(os.path.join(workdir, "eval_results.json")) as f:
        results = json.load(f)
    assert results["step"] == 10 and results["num_examples"] == 360  # every digits test image
    assert _whole_images(results["test_error"], 360)
    last = read_metrics(workdir)[-1]
    assert results["test_error"] == pytest.approx(last["test_error"], abs=1e-6)


# --- the command-line contract: bad input exits 2 with one line, nothing written ---------------


def _one_line_error(out):
    """The error line of a run that must have refused its input."""
    assert out.returncode == 2, out.stderr[-3000:]
    assert "Traceback" not in out.stderr
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), out.stderr[-3000:]
    return lines[0]


@pytest.mark.slow
@pytest.mark.parametrize("script", ["train.py", "eval.py"])
@pytest.mark.parametrize(
    "flag,message",
    [
        ("--config.learning_rat=0.1", 'no such config field; Did you mean "learning_rate"'),
        ("--config.model.dept=20", 'model.dept=20: no such config field; Did you mean "depth"'),
        ("--config.batch_size=abc", "--config.batch_size=abc: invalid literal for int()"),
        ("--config.lr_boundaries_steps=abc", "elements must be int"),
        ("--config.learning_rate=-1", "learning_rate must be positive, got -1.0"),
        ("--config.batch_size=0", "batch_size=0 must be a positive multiple"),
        ("--config.keep_checkpoints=0", "keep_checkpoints=0 must be an integer of at least 1"),
        ("--config.label_smoothing=1", "label_smoothing must be in [0, 1), got 1.0"),
        ("--no_such_flag=1", "Unknown command line flag 'no_such_flag'"),
        # the open dicts are set whole; a dotted key gets the form that works
        (
            "--config.model.unit_options.alpha=0.5",
            "the keys of config.model.unit_options are set as one dict, e.g. "
            "--config.model.unit_options=\"{'alpha': ...}\"",
        ),
        ("--config.optimizer_kwargs.b1=0.9", "--config.optimizer_kwargs=\"{'b1': ...}\""),
        (
            "--config.model.unit_options={'shortcut_variant': 'constant_scaling'}",
            "unit_options ['shortcut_variant'] are not fields of unit 'full_preact'",
        ),
        ("--config.optimizer_kwargs={'b3': 1.0}", "optimizer 'sgd' with"),
    ],
)
def test_a_bad_override_exits_2_with_one_line(tmp_path, script, flag, message):
    workdir = tmp_path / "w"
    out = run_script(script, "--config=configs/smoke.py", f"--workdir={workdir}", *TINY_FLAGS,
                     flag)  # fmt: skip
    assert message in _one_line_error(out)
    assert not workdir.exists()


@pytest.fixture
def read_only_dir(tmp_path):
    """A directory nobody can create files in: mode 555, or immutable for root (who ignores
    the mode)."""
    path = tmp_path / "read-only"
    path.mkdir()
    if os.geteuid() != 0:
        path.chmod(0o555)
        yield path
        path.chmod(0o755)
        return
    if subprocess.run(["chattr", "+i", str(path)], capture_output=True).returncode != 0:
        pytest.skip("running as root, and this filesystem has no immutable directories")
    try:
        yield path
    finally:
        subprocess.run(["chattr", "-i", str(path)], check=True)


@pytest.mark.slow
@pytest.mark.parametrize("script", ["train.py", "eval.py"])
@pytest.mark.parametrize(
    "kind,message",
    [
        ("regular file", "is not a directory"),
        ("under a regular file", "is not a directory"),
        ("read-only", "is not writable"),
    ],
)
def test_an_unusable_workdir_exits_2_with_one_line(tmp_path, request, script, kind, message):
    (tmp_path / "file").write_text("not a directory")
    workdir = {
        "regular file": tmp_path / "file",
        "under a regular file": tmp_path / "file" / "w",
        "read-only": request.getfixturevalue("read_only_dir") if kind == "read-only" else None,
    }[kind]
    before = sorted(os.walk(tmp_path))
    out = run_script(script, "--config=configs/smoke.py", f"--workdir={workdir}", *TINY_FLAGS)
    if script == "eval.py" and kind == "under a regular file":
        message = "does not exist"
    assert message in _one_line_error(out)
    assert sorted(os.walk(tmp_path)) == before
    assert (tmp_path / "file").read_text() == "not a directory"


@pytest.mark.slow
@pytest.mark.parametrize("script", ["train.py", "eval.py"])
@pytest.mark.parametrize("url", ["gs://preact-test/run", "s3://b/run", "file:///tmp/run"])
def test_a_url_workdir_exits_2_with_one_line_and_writes_nothing(tmp_path, script, url):
    """A bucket URL would otherwise become a local ./gs:/... directory (os.makedirs) with
    config.json in it before the first checkpoint fails: the command runs from a fresh
    directory, which must stay empty."""
    from tests.helpers import ROOT

    scheme = url.split(":")[0]
    before = set(os.listdir(ROOT))
    out = run_script(script, "--config=configs/smoke.py", f"--workdir={url}", *TINY_FLAGS)
    assert f"is a URL; {scheme}:// is not supported: mount the bucket" in _one_line_error(out)
    assert set(os.listdir(ROOT)) == before and not os.path.exists("/tmp/run")


def _tree_bytes(root):
    """Every file under ``root``, by its relative path, with its bytes."""
    return {
        str(p.relative_to(root)): p.read_bytes()
        for p in pathlib.Path(root).rglob("*")
        if p.is_file()
    }


@pytest.mark.slow
def test_a_workdir_of_another_network_is_refused_by_the_commands(tmp_path):
    """What a user meets when a config's default network changes under a workdir it trained
    (the laptop recipe went from width 16 to 24): train.py and eval.py, as real processes,
    refuse it with one line and exit 2, and leave every file of the trained run as it was."""
    workdir = str(tmp_path / "run")
    first = run_script("train.py", "--config=configs/smoke.py", f"--workdir={workdir}",
                       "--config.num_train_steps=5", *TINY_FLAGS)  # fmt: skip
    assert first.returncode == 0, first.stderr[-3000:]
    before = _tree_bytes(workdir)
    wider = [*TINY_FLAGS, "--config.model.width=8", "--config.num_train_steps=10"]
    for script in ("train.py", "eval.py"):
        out = run_script(script, "--config=configs/smoke.py", f"--workdir={workdir}", *wider)
        assert "model.width: checkpoint 4, config 8" in _one_line_error(out)
        assert _tree_bytes(workdir) == before, script


@pytest.mark.slow
def test_a_second_train_py_is_refused_naming_the_first(tmp_path):
    from preact.workdir import WorkdirLock

    with WorkdirLock(str(tmp_path)):
        out = run_script("train.py", "--config=configs/smoke.py", f"--workdir={tmp_path}",
                         *TINY_FLAGS)  # fmt: skip
        assert f"in use by another trainer: pid {os.getpid()} on host" in _one_line_error(out)
        assert os.listdir(tmp_path) == ["train.lock"]


@pytest.mark.slow
def test_eval_py_without_checkpoint(tmp_path):
    out = run_script("eval.py", "--config=configs/smoke.py", f"--workdir={tmp_path}", *TINY_FLAGS)
    assert out.returncode == 2
    assert "no checkpoint" in out.stderr


@pytest.mark.slow
def test_flax_state_keeps_float32_with_bfloat16(tmp_path):
    config = tiny_config(dtype="bfloat16")
    state, images, labels = _state_and_batch(config)
    devices = jax.devices()[:8]
    state, _ = training.make_train_step(config, devices)(state, _split(images, labels, devices))
    for leaf in jax.tree.leaves((state.params, state.batch_stats)):
        assert leaf.dtype == jnp.float32
    assert flax.traverse_util.flatten_dict(state.params)


def _whole_images(error_percent, num_images):
    """An error rate in percent that counts whole misclassified images."""
    errors = error_percent * num_images / 100
    return abs(errors - round(errors)) < 1e-6


@pytest.mark.slow
@pytest.mark.parametrize("variant", ["dropout_shortcut", "identity"])
def test_each_device_draws_its_own_dropout_mask(variant):
    """Two devices given the same images must still drop different shortcuts: the mask's key
    folds in the device index. With one key for all devices both would compute the same
    gradient, and the 2-device step would equal the 1-device step on one copy of the images.
    The identity shortcut (no dropout) is the control: there the two are equal, bit for bit."""
    options = {"shortcut_variant": variant}
    if variant == "dropout_shortcut":
        options["dropout_rate"] = 0.5
    config = tiny_config()
    config.model.unit = "original"
    config.model.unit_options = options
    model = configuration.build_model(config)
    state = training.create_train_state(config, model, (8, 8, 1))
    rng = np.random.default_rng(0)
    images = rng.normal(size=(4, 8, 8, 1)).astype(np.float32)
    labels = rng.integers(0, 10, 4).astype(np.int32)
    results = []
    for copies in (1, 2):  # one device with the images, two devices with a copy each
        devices = jax.local_devices()[:copies]
        batch = {"image": np.stack([images] * copies), "label": np.stack([labels] * copies)}
        new_state, _ = training.make_train_step(config, devices)(
            training.replicate(state, devices), batch
        )
        results.append(jax.device_get(new_state.params))
    same = all(
        np.array_equal(a, b)
        for a, b in zip(jax.tree.leaves(results[0]), jax.tree.leaves(results[1]), strict=True)
    )
    assert same == (variant == "identity")
