"""preact.analysis.flip_test: the single view it reports is eval.py's error, the flip-averaged
prediction mirrors the width, and it refuses a dataset trained without flips."""

import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from preact import configuration, training
from preact.analysis import flip_test
from tests.helpers import ROOT, tiny_config


def _manual_predictions(state, images):
    def probs(x):
        logits = state.apply_fn(
            {"params": state.params, "batch_stats": state.batch_stats}, x, train=False
        )
        return np.asarray(jax.nn.softmax(logits, -1))

    single = probs(jnp.asarray(images))
    mirrored = probs(jnp.asarray(images[:, :, ::-1, :]))  # the width of NHWC
    return single.argmax(-1), (single + mirrored).argmax(-1)


def test_the_flip_averaged_prediction_mirrors_the_width_and_masks_padding():
    """Labels set to the hand-made flip-averaged prediction: the step must count no flip-averaged
    error and exactly the single view's disagreements; mirroring the height instead, or a
    single-view prediction for both, or counting the padding, fails."""
    config = tiny_config()
    model = configuration.build_model(config)
    state = training.create_train_state(config, model, (8, 8, 1))
    rng = np.random.default_rng(0)
    images = rng.normal(size=(64, 8, 8, 1)).astype(np.float32) * 2
    single, averaged = _manual_predictions(state, images)
    disagree = int((single != averaged).sum())
    assert disagree >= 2 and len(set(single.tolist())) > 1  # the test can tell the two apart
    mask = np.ones(64, np.float32)
    mask[-4:] = 0.0  # padding: its errors must not count
    labels = averaged.astype(np.int32)
    labels[-4:] = (averaged[-4:] + 1) % 10  # wrong on purpose, masked
    batch = {"image": images[None], "label": labels[None], "mask": mask[None]}
    sums = jax.device_get(training.parallel(flip_test.flip_eval_step, jax.devices()[:1])(
        state, batch))  # fmt: skip
    assert float(sums["flip_averaged_errors"]) == 0.0
    assert float(sums["single_view_errors"]) == float((single[:-4] != averaged[:-4]).sum())
    assert float(sums["count"]) == 60.0


@pytest.mark.slow
def test_the_single_view_is_eval_py_error(tmp_path):
    """On a trained workdir the single view equals evaluate_workdir's test error (same
    checkpoint, same split, every example once)."""
    config = tiny_config()
    workdir = str(tmp_path / "w")
    training.train_and_evaluate(config, workdir)
    ours = flip_test.evaluate(config, workdir)
    theirs = training.evaluate_workdir(config, workdir)
    assert ours["step"] == theirs["step"] == config.num_train_steps
    assert ours["num_examples"] == theirs["num_examples"]
    assert ours["single_view_error"] == pytest.approx(theirs["test_error"], abs=1e-9)
    assert 0.0 <= ours["flip_averaged_error"] <= 100.0


def test_a_dataset_trained_without_flips_is_refused(tmp_path, capsys):
    """The smoke config's digits are not mirror-invariant: one line, exit 2, nothing read."""
    rc = flip_test.main(["--config=smoke", str(tmp_path)])
    assert rc == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "random_flip is off" in err[0]


def test_a_missing_checkpoint_is_one_line_and_exit_2(tmp_path, capsys):
    out = tmp_path / "r.json"
    rc = flip_test.main(["--config=configs/smoke.py", "--override=--config.random_flip=True",
                         str(tmp_path), f"--out={out}"])  # fmt: skip
    assert rc == 2 and not out.exists()
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("flip_test: ")


def test_overrides_reach_the_config():
    config = flip_test.load_config(
        os.path.join(ROOT, "configs", "fashion_mnist_laptop.py"),
        [
            "--config.num_train_steps=10296",
            "--config.label_smoothing=0.1",
            "--config.model.width=8",
        ],
    )
    assert (config.num_train_steps, config.label_smoothing, config.model.width) == (10296, 0.1, 8)


def test_a_bad_override_is_one_line_and_exit_2(tmp_path, capsys):
    rc = flip_test.main(["--config=configs/fashion_mnist_laptop.py",
                         "--override=--config.learning_rat=0.1", str(tmp_path)])  # fmt: skip
    assert rc == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "learning_rat" in err[0], err
