"""configs/fashion_mnist_laptop.py: the schedule its docstring and the README promise."""

import pytest

from preact import optim
from preact.configs import fashion_mnist, fashion_mnist_laptop


def test_twenty_epochs_of_cosine_with_a_test_point_at_the_end():
    c = fashion_mnist_laptop.get_config()
    steps_per_epoch = 60_000 // c.batch_size
    assert c.num_train_steps == 20 * steps_per_epoch == 9_360
    assert c.num_train_steps // c.eval_every_steps == 6  # six test points: evaluation costs time
    # The last evaluation and checkpoint fall on the last step, so the run's own curve ends at
    # the number eval.py reports and nothing of the last stretch is lost.
    assert c.num_train_steps % c.eval_every_steps == 0
    assert c.num_train_steps % c.checkpoint_every_steps == 0
    lr = optim.learning_rate_schedule(c)
    assert float(lr(0)) == pytest.approx(0.1)  # no warm-up at 0.01
    assert float(lr(c.num_train_steps // 2)) == pytest.approx(0.05)
    assert float(lr(c.num_train_steps)) < 1e-6


def test_only_the_schedule_and_augmentation_differ_from_the_first_run():
    laptop, first = fashion_mnist_laptop.get_config(), fashion_mnist.get_config()
    assert laptop.model.to_dict() == first.model.to_dict()  # the same PreAct-20, width 16
    assert (laptop.dataset, laptop.batch_size, laptop.random_flip) == ("fashion_mnist", 128, True)
    assert laptop.crop_padding == 2 and first.crop_padding == 4
    assert (laptop.schedule, laptop.nesterov, laptop.weight_decay) == ("cosine", True, 5e-4)
