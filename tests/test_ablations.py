"""The ablation command on a tiny setting, and the bookkeeping behind its tables."""

import importlib.metadata
import json
import math
import os
import shutil

import pytest

from preact import configuration
from preact.analysis import ablations
from tests.helpers import ROOT, TINY, run_command

DIGITS_TEST_IMAGES = 360


@pytest.mark.parametrize("key", sorted(ablations.VARIANTS))
def test_every_variant_is_a_valid_config(key):
    config = ablations.VARIANTS[key].config(ablations.Scale(), seed=0)
    model = configuration.validate(config, num_devices=8)
    assert config.dataset == "fashion_mnist" and config.model.scan
    assert config.on_divergence == "stop"
    assert config.experiment == key
    assert model.paper_depth() == config.model.depth


def test_tables_name_the_paper_variants():
    assert len(ablations.table_variants(1)) == 10
    assert len(ablations.table_variants(2)) == 10  # 5 units x (basic, bottleneck)
    assert ablations.table_variants(3) == [
        "original_one_layer",
        "full_preact_one_layer",
        "original_basic",
        "full_preact_basic",
        "original_bottleneck",
        "full_preact_bottleneck",
        "original_deep",
        "full_preact_deep",
    ]
    assert all(
        k in ablations.VARIANTS for t in ablations.TABLES for k in ablations.table_variants(t)
    )
    gated = ablations.VARIANTS["exclusive_gating_-6"].config(ablations.Scale(), 0)
    assert gated.model.unit_options.to_dict() == {
        "shortcut_variant": "exclusive_gating",
        "gate_bias": -6.0,
    }
    assert gated.model.unit == "original"


def result(error, loss=0.1, diverged=None, seed=0):
    return ablations.Result("v", seed, f"/w{seed}", error, loss, diverged, seconds=None)


def test_fail_is_the_median_of_seeds():
    ok = ablations.over_seeds([result(2.0), result(3.0), result(50.0)], fail_error=10.0)
    assert ok["median_test_error"] == 3.0 and not ok["fail"] and ok["failed_seeds"] == 1
    diverged = [
        result(math.inf, math.inf, diverged=40),
        result(math.inf, math.inf, 90),
        result(4.0),
    ]
    bad = ablations.over_seeds(diverged, fail_error=10.0)
    assert bad["fail"] and bad["diverged_seeds"] == 2
    assert "**fail**" in ablations._cell(bad) and "2 diverged" in ablations._cell(bad)
    assert ablations.median([1.0, 3.0]) == 2.0 and ablations.median([1.0, math.inf]) == math.inf
    assert (
        ablations.median_run([result(5.0, seed=0), result(1.0, seed=1), result(3.0, seed=2)]).seed
        == 2
    )


@pytest.mark.slow
def test_command_on_a_tiny_setting(tmp_path):
    out, root = tmp_path / "docs", tmp_path / "runs"
    args = [
        "--table=1",
        "--base_config=configs/smoke.py",
        "--only=original_basic,scaling_0.5_1",
        "--seeds=1",
        "--steps=10",
        f"--basic_depth={TINY['model.depth']}",
        f"--basic_width={TINY['model.width']}",
        f"--out={out}",
        f"--workdir_root={root}",
    ]
    results = run_command(ablations, *args)
    assert sorted(results) == ["original_basic", "scaling_0.5_1"]
    for runs in results.values():
        (run,) = runs
        assert run.trained and run.seconds > 0
        # a whole number of the 360 digits test images, each counted once
        wrong = run.test_error * DIGITS_TEST_IMAGES / 100
        assert wrong == pytest.approx(round(wrong), abs=1e-6)
        assert math.isfinite(run.train_loss)

    table = (out / "ablation_table1.md").read_text()
    assert "python -m preact.analysis.ablations --table=1" in table
    assert f"basic-{TINY['model.depth']} (width {TINY['model.width']})" in table
    assert "10 iterations" in table
    assert "scikit-learn's digits (1,437 train / 360 test images of 8x8)" in table
    rows = {
        line.split(" | ")[0].lstrip("| "): line
        for line in table.splitlines()
        if line.startswith("| ")
    }
    assert "6.61" in rows["original"]  # the paper's number beside ours
    assert "not run" in rows["1x1 conv shortcut"]
    ours = results["original_basic"][0]
    expected = "**fail**" if ours.test_error > ablations.FAIL_ERROR else f"{ours.test_error:.2f}"
    assert expected in rows["original"]

    saved = json.loads((out / "ablation_table1.json").read_text())
    assert saved["scale"]["steps"] == 10
    assert saved["environment"]["versions"]["flax"] == importlib.metadata.version("flax")
    assert saved["variants"]["original_basic"]["runs"][0]["test_error"] == ours.test_error
    assert (out / "ablation_table1.png").read_bytes()[:4] == b"\x89PNG"

    # A second invocation finds the finished runs and trains nothing.
    again = run_command(ablations, *args)
    assert not any(r.trained for runs in again.values() for r in runs)
    assert again["original_basic"][0].test_error == ours.test_error

    # Each run left a record in <out>/runs as it finished: with the workdirs gone (a new machine,
    # a later sitting) a third invocation still trains nothing and reports the same numbers.
    records = sorted(p.relative_to(out) for p in (out / "runs").rglob("*.json"))
    assert [r.parts[-2:] for r in records] == [
        ("original_basic", "seed0.json"),
        ("scaling_0.5_1", "seed0.json"),
    ]
    record = json.loads((out / records[0]).read_text())
    assert record["config"]["num_train_steps"] == 10 and record["environment"]["versions"]
    shutil.rmtree(root)
    third = run_command(ablations, *args)
    assert not any(r.trained for runs in third.values() for r in runs)
    assert third["original_basic"][0].test_error == ours.test_error
    assert not root.exists()


def test_a_longer_warm_up_is_a_scale_of_its_own():
    default, longer = ablations.Scale(steps=400), ablations.Scale(steps=400, warmup_steps=100)
    assert default.warmup() == 26 and longer.warmup() == 100
    assert default.tag() == ablations.Scale(steps=400, warmup_steps=0).tag()  # old names kept
    assert longer.tag() == default.tag() + "_wu100"  # never mixed with the default's runs
    config = ablations.VARIANTS["original_deep"].config(longer, 0)
    assert config.warmup_steps == 100 and config.lr_boundaries_steps == (200, 300)


def test_runs_start_from_the_base_config_file():
    variant = ablations.VARIANTS["conv_shortcut"]
    config = variant.config(ablations.Scale(), 1, base_config="smoke --config.weight_decay=0.0")
    assert config.weight_decay == 0.0 and config.dataset == "digits"
    assert config.model.unit_options.shortcut_variant == "conv_shortcut" and config.seed == 1
    default = ablations.Scale().tag()
    assert ablations._run_dir(ablations.Scale(), ablations.BASE_CONFIG) == default
    assert ablations._run_dir(ablations.Scale(), "smoke --config.weight_decay=0.0") != default
    assert ablations._run_dir(ablations.Scale(), "configs/smoke.py") != default


def test_records_of_runs_made_before_records(tmp_path):
    """The committed tables' runs become records (end points only: their workdirs are gone),
    which the runner then takes as done; the figures leave out the curves they lack."""
    from preact.analysis import ablation_runs

    source = os.path.join(ROOT, "docs", "ablation_table1.json")
    written = ablation_runs.records_from_table(source, str(tmp_path))
    assert len(written) == len(ablations.TABLE1) == 10
    assert ablation_runs.records_from_table(source, str(tmp_path)) == []
    with open(source) as f:
        table = json.load(f)
    path = ablation_runs.record_path(str(tmp_path), ablations.Scale(), ablations.BASE_CONFIG,
                                     "original_basic", 0)  # fmt: skip
    result = ablation_runs.read_record(path)
    assert result.test_error == table["variants"]["original_basic"]["runs"][0]["test_error"]
    assert not result.trained
    result = ablation_runs.dataclasses.replace(result, record=path)
    assert ablation_runs.load_curves(result, "original") is None
