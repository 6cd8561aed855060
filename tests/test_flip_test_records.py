"""The flip-averaged records under results/: each row's single view is the test error its run's
own record holds, so the flip-averaged figure beside it is of the same checkpoint."""

import json
import os

from tests.helpers import ROOT

FLIP_RECORDS = (
    "fashion_mnist_laptop_flip_test.json",
    "fashion_mnist_laptop_22epochs_flip_test.json",
)


def _load(name):
    with open(os.path.join(ROOT, "results", name)) as f:
        return json.load(f)


def test_each_single_view_is_its_runs_recorded_test_error():
    """Each row's run is found by its workdir in the commands of the laptop records."""
    runs = [
        run
        for name in sorted(os.listdir(os.path.join(ROOT, "results")))
        if name.startswith("fashion_mnist_laptop") and name.endswith(".json")
        and name not in FLIP_RECORDS
        for run in _load(name)["runs"]
    ]  # fmt: skip
    seen = 0
    for name in FLIP_RECORDS:
        for row in _load(name)["runs"]:
            (run,) = [r for r in runs if f"--workdir={row['workdir']} " in r["command"]]
            assert row["step"] == run["step"] and row["num_examples"] == 10_000
            assert abs(row["single_view_error"] - run["test_error"]) < 0.005
            assert 0 <= row["flip_averaged_error"] <= 100
            seen += 1
    assert seen == 8


def test_the_readme_quotes_the_flip_averaged_figures():
    with open(os.path.join(ROOT, "README.md")) as f:
        readme = " ".join(f.read().split())
    for name in FLIP_RECORDS:
        for row in _load(name)["runs"]:
            assert f"{row['flip_averaged_error']:.2f}%" in readme
