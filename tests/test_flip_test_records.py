"""The flip-averaged records under results/: each row's single view is the test error its run's
own record holds, so the flip-averaged figure beside it is of the same checkpoint."""

import json
import os
import re

from tests.helpers import ROOT

# The workdir roots the recorded runs trained in, and the record each belongs to.
RECORDS = {
    "/tmp/fml20/": "fashion_mnist_laptop.json",
    "/tmp/fml22/": "fashion_mnist_laptop_22epochs.json",
    "/tmp/fmle/": "fashion_mnist_laptop_erasing.json",
    "/tmp/ls/": "fashion_mnist_laptop_smoothing.json",
}


def _load(name):
    with open(os.path.join(ROOT, "results", name)) as f:
        return json.load(f)


def test_each_single_view_is_its_runs_recorded_test_error():
    seen = 0
    for name in (
        "fashion_mnist_laptop_flip_test.json",
        "fashion_mnist_laptop_22epochs_flip_test.json",
    ):
        for row in _load(name)["runs"]:
            (root,) = [r for r in RECORDS if row["workdir"].startswith(r)]
            seed = int(re.search(r"seed(\d+)$", row["workdir"]).group(1))
            (run,) = [r for r in _load(RECORDS[root])["runs"] if r["seed"] == seed]
            assert run["command"].split("--workdir=")[1].startswith(row["workdir"])
            assert row["step"] == run["step"] and row["num_examples"] == 10_000
            assert abs(row["single_view_error"] - run["test_error"]) < 0.005
            assert 0 <= row["flip_averaged_error"] <= 100
            seen += 1
    assert seen == 8


def test_the_readme_quotes_the_flip_averaged_figures():
    with open(os.path.join(ROOT, "README.md")) as f:
        readme = " ".join(f.read().split())
    for name in (
        "fashion_mnist_laptop_flip_test.json",
        "fashion_mnist_laptop_22epochs_flip_test.json",
    ):
        for row in _load(name)["runs"]:
            assert f"{row['flip_averaged_error']:.2f}%" in readme
