"""preact.analysis.record_runs: each seed trained once, recorded as it ends, never re-timed."""

import json
import os

import pytest

from preact import provenance
from preact.analysis import record_runs
from tests.helpers import TINY_FLAGS

CONFIG = "configs/smoke.py"


def test_seeds_are_the_seeds_themselves():
    assert record_runs.parse_seeds("0,1") == [0, 1]
    assert record_runs.parse_seeds("3") == [3]  # seed 3, not three seeds
    for bad in ("", "a", "-1", "1,1", "0,,1"):
        with pytest.raises(ValueError, match="--seeds"):
            record_runs.parse_seeds(bad)


def test_curves_keep_training_rows_and_test_points(tmp_path):
    rows = [
        {"step": 5, "train_loss": 2.0, "train_error": 80.0, "learning_rate": 0.1},
        {"step": 10, "train_loss": 1.5, "train_error": 60.0, "learning_rate": 0.01,
         "images_per_sec": 401.26, "test_loss": 1.4, "test_error": 55.5},
        {"step": 12, "test_loss": 1.3, "test_error": 50.25},  # an evaluation on its own
    ]  # fmt: skip
    (tmp_path / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    c = record_runs.curves(str(tmp_path))
    assert c["step"] == [5, 10] and c["train_loss"] == [2.0, 1.5]
    assert c["learning_rate"] == [0.1, 0.01] and c["train_error"] == [80.0, 60.0]
    assert c["test_step"] == [10, 12] and c["test_error"] == [55.5, 50.25]
    assert c["images_per_sec"] == [None, 401.3]  # one entry per training row, as logged


def _main(tmp_path, *extra):
    out = tmp_path / "results.json"
    args = [f"--config={CONFIG}", f"--out={out}", f"--workdir_root={tmp_path / 'work'}", *extra]
    return record_runs.main(args), out


def test_recorded_seeds_are_skipped_without_training(tmp_path, capsys):
    out = tmp_path / "results.json"
    before = {"runs": [{"config": CONFIG, "seed": 0, "test_error": 12.5}]}
    out.write_text(json.dumps(before))
    rc, _ = _main(tmp_path, "--seeds=0")
    assert rc == 0
    assert json.loads(out.read_text()) == before  # no second run of seed 0 appended
    assert not (tmp_path / "work").exists()  # and nothing trained
    assert "seed 0: recorded already" in capsys.readouterr().out


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--seeds=0,0"], "--seeds"),
        (["--seeds=0", "--config=configs/nope.py"], "no config file"),
        (["--seeds=0", "--override=--model.depth=8"], "is not --config.FIELD=VALUE"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(tmp_path, capsys, extra, message):
    rc, out = _main(tmp_path, *extra)
    err = capsys.readouterr().err
    assert rc == 2 and message in err and len(err.strip().splitlines()) == 1
    assert not out.exists() and not (tmp_path / "work").exists()


def test_an_existing_workdir_is_refused_before_any_training(tmp_path, capsys):
    # A half-finished run there would resume, and its record would time only its second half.
    workdir = tmp_path / "work" / "smoke" / "seed1"
    workdir.mkdir(parents=True)
    (workdir / "metrics.jsonl").write_text("{}\n")
    rc, out = _main(tmp_path, "--seeds=0,1")
    assert rc == 2 and "exists" in capsys.readouterr().err
    assert not out.exists()  # seed 0 was not trained either: the check comes first
    assert not (tmp_path / "work" / "smoke" / "seed0").exists()
    assert (workdir / "metrics.jsonl").read_text() == "{}\n"  # left as it was


@pytest.mark.slow
def test_a_recorded_run_matches_its_evaluation_and_is_not_run_again(tmp_path, capsys, monkeypatch):
    # As from a shell with no XLA_FLAGS: the record must name the settings train.py ran with,
    # not this process's (whose provenance is cached from its first call: made here first, with
    # the test session's XLA_FLAGS, as an earlier test in the session would have).
    provenance.environment()
    monkeypatch.delenv("XLA_FLAGS", raising=False)
    overrides = [f"--override={f}" for f in [*TINY_FLAGS, "--config.num_train_steps=10"]]
    rc, out = _main(tmp_path, "--seeds=3", *overrides)
    assert rc == 0
    (run,) = json.loads(out.read_text())["runs"]
    workdir = tmp_path / "work" / "smoke" / "seed3"
    evaluated = json.loads((workdir / "eval_results.json").read_text())
    assert run["seed"] == 3 and run["config"] == CONFIG and run["step"] == 10
    assert run["test_error"] == pytest.approx(evaluated["test_error"], abs=1e-3)
    assert "--config.seed=3" in run["command"] and "--config.num_train_steps=10" in run["command"]
    assert run["train_wall_clock_s"] > 0 and run["eval_wall_clock_s"] > 0
    assert len(run["load_average_at_end"]) == 3
    assert run["environment"]["cpu_count"] == os.cpu_count()
    assert run["curves"]["step"][-1] == 10 and run["curves"]["test_step"] == [10]
    trained_with = json.loads((workdir / "config.json").read_text())
    assert trained_with["seed"] == 3
    assert run["environment"]["xla_flags"] == trained_with["environment"]["xla_flags"]
    capsys.readouterr()
    rc, _ = _main(tmp_path, "--seeds=3", *overrides)  # a second sitting: nothing left to do
    assert rc == 0 and len(json.loads(out.read_text())["runs"]) == 1
    assert "recorded already" in capsys.readouterr().out
