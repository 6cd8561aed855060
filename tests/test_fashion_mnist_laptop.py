"""configs/fashion_mnist_laptop.py: the schedule its docstring and the README promise."""

import ast
import json
import os

import pytest

from preact import optim
from preact.configs import fashion_mnist, fashion_mnist_laptop
from tests.helpers import ROOT


def test_twenty_four_epochs_of_cosine_with_a_test_point_at_the_end():
    c = fashion_mnist_laptop.get_config()
    steps_per_epoch = 60_000 // c.batch_size
    assert c.num_train_steps == 24 * steps_per_epoch == 11_232
    assert c.num_train_steps // c.eval_every_steps == 6  # six test points: evaluation costs time
    # The last evaluation and checkpoint fall on the last step, so the run's own curve ends at
    # the number eval.py reports and nothing of the last stretch is lost.
    assert c.num_train_steps % c.eval_every_steps == 0
    assert c.num_train_steps % c.checkpoint_every_steps == 0
    lr = optim.learning_rate_schedule(c)
    assert float(lr(0)) == pytest.approx(0.1)  # no warm-up at 0.01
    assert float(lr(c.num_train_steps // 2)) == pytest.approx(0.05)
    assert float(lr(c.num_train_steps)) < 1e-6


def test_the_width_depth_schedule_and_augmentation_differ_from_the_first_run():
    laptop, first = fashion_mnist_laptop.get_config(), fashion_mnist.get_config()
    # PreAct-14 at width 24 where the first run has PreAct-20 at width 16 (wider and shallower
    # at the same cost per image on an AVX-512 CPU); the unit and everything else of the model
    # are the first run's.
    assert (laptop.model.depth, laptop.model.width) == (14, 24)
    assert (first.model.depth, first.model.width) == (20, 16)
    rest = {k: v for k, v in laptop.model.to_dict().items() if k not in ("depth", "width")}
    assert rest == {k: v for k, v in first.model.to_dict().items() if k not in ("depth", "width")}
    assert (laptop.dataset, laptop.batch_size, laptop.random_flip) == ("fashion_mnist", 128, True)
    assert laptop.crop_padding == 2 and first.crop_padding == 4
    assert laptop.random_erasing == first.random_erasing == 0.0  # erasing did not pay
    assert (laptop.schedule, laptop.nesterov, laptop.weight_decay) == ("cosine", True, 5e-4)


def test_the_record_is_of_this_recipe_and_the_readme_quotes_it():
    """results/fashion_mnist_laptop.json holds runs of today's config (each curve ends at its
    last step: a changed schedule needs new runs), and the README's row quotes every run's test
    error and minutes of training as recorded, not figures of an older run."""
    c = fashion_mnist_laptop.get_config()
    with open(os.path.join(ROOT, "results", "fashion_mnist_laptop.json")) as f:
        runs = json.load(f)["runs"]
    assert runs and len({r["seed"] for r in runs}) == len(runs)
    for run in runs:
        assert run["config"] == "configs/fashion_mnist_laptop.py"
        # An override is allowed only where today's config already says the same.
        for flag in run["overrides"]:
            field, value = flag.removeprefix("--config.").split("=", 1)
            assert c[field] == ast.literal_eval(value), flag
        assert run["step"] == c.num_train_steps == run["curves"]["test_step"][-1]
        assert run["curves"]["test_error"][-1] == pytest.approx(run["test_error"], abs=0.005)
        assert run["environment"]["cpu_count"] and run["command"].startswith("python train.py")
    with open(os.path.join(ROOT, "README.md")) as f:
        (row,) = [
            line
            for line in f
            if line.startswith("| PreAct-14, width 24 (`configs/fashion_mnist_laptop.py`)")
        ]
    epochs = c.num_train_steps // (60_000 // c.batch_size)  # the last partial batch is dropped
    assert f"| {epochs} epochs of {c.batch_size}," in row
    for run in runs:
        assert f"{run['test_error']:.2f}%" in row
        assert f"{run['train_wall_clock_s'] / 60:.1f}" in row
