"""Fisher's exact test and the verdicts of preact.analysis.claims, against hand computations."""

import itertools
import math

import pytest

from preact.analysis import claims


def _brute_force(k_a, n_a, k_b, n_b):
    """P(arm A has >= k_a failures) by enumerating every equally likely labelling of the pooled
    runs as A or B (the permutation distribution Fisher's test is exact for)."""
    outcomes = [1] * (k_a + k_b) + [0] * (n_a + n_b - k_a - k_b)
    count = hits = 0
    for chosen in itertools.combinations(range(len(outcomes)), n_a):
        count += 1
        hits += sum(outcomes[i] for i in chosen) >= k_a
    return hits / count


@pytest.mark.parametrize(
    "counts", [(5, 5, 0, 5), (4, 5, 0, 5), (3, 5, 1, 5), (1, 1, 0, 1), (3, 3, 0, 3), (0, 5, 0, 5),
               (2, 6, 3, 4), (0, 5, 5, 5)]
)  # fmt: skip
def test_fisher_matches_the_permutation_distribution(counts):
    assert claims.fisher_one_sided(*counts) == pytest.approx(_brute_force(*counts), abs=1e-12)


def test_fisher_five_of_five_against_none():
    assert claims.fisher_one_sided(5, 5, 0, 5) == pytest.approx(1 / math.comb(10, 5))  # 0.004
    assert claims.fisher_one_sided(0, 5, 5, 5) == 1.0


def _claim(kind):
    return claims.Claim(1, "v", "b", kind, "text")


@pytest.mark.parametrize(
    "kind, variant, baseline, verdict",
    [
        ("fails", (5, 5), (0, 5), "supports"),  # p = 0.004
        ("fails", (4, 5), (0, 5), "cannot tell"),  # p = 0.024
        ("fails", (3, 3), (0, 3), "cannot tell"),  # p = 0.05: too few seeds to reach 0.01
        ("fails", (0, 5), (5, 5), "contradicts"),  # the baseline fails, the variant trains
        ("learns", (0, 5), (0, 5), "cannot tell"),  # equal is never shown by this test
        ("learns", (5, 5), (0, 5), "contradicts"),  # the paper trained it; ours always fails
        ("learns", (1, 1), (0, 1), "cannot tell"),  # one seed a side: p = 0.5
        ("learns", (0, 6), (6, 6), "supports"),  # trains where the baseline fails: p = 0.001
        ("learns", (0, 4), (4, 4), "cannot tell"),  # p = 0.014 and fewer than 5 seeds
    ],
)
def test_verdicts(kind, variant, baseline, verdict):
    arms = [{"failed": k, "seeds": n} for k, n in (variant, baseline)]
    record = claims.judge(_claim(kind), *arms)
    assert record["verdict"] == verdict
    assert set(record["arms"]) == {"v", "b"}


def test_arms_count_each_seed_once_and_apply_the_fail_rule():
    run = lambda seed, error, diverged=None: {  # noqa: E731
        "seed": seed, "test_error": error, "diverged_step": diverged}  # fmt: skip
    table1 = {"fail_error": 65.0, "variants": {
        "original_basic": {"runs": [run(0, 30.0)]},
        "scaling_0_1": {"runs": [run(0, 80.0), run(1, 50.0, diverged=7), run(2, 65.0)]},
    }}  # fmt: skip
    table2 = {"fail_error": 65.0, "variants": {
        "original_basic": {"runs": [run(0, 30.0), run(1, 70.0)]},  # seed 0 again: counted once
    }}  # fmt: skip
    arms = claims.arms_from_records([table1, table2], 65.0)
    assert arms["original_basic"] == {"seeds": 2, "failed": 1, "test_errors": [30.0, 70.0]}
    assert arms["scaling_0_1"]["failed"] == 2  # 80% and a divergence; 65% is not above 65
    record = claims.claims_record([table1, table2])
    assert [c["claim"] for c in record["claims"]] == ["no shortcut (plain net, lambda = 0) fails"]
    with pytest.raises(ValueError, match="different fail rules"):
        claims.claims_record([table1, {**table2, "fail_error": 20.0}])


def test_every_claim_names_variants_of_the_ablation_catalogue():
    from preact.analysis import ablations

    names = set(ablations.VARIANTS)
    for claim in claims.CLAIMS:
        assert {claim.variant, claim.baseline} <= names, claim


def test_command_judges_the_claims_of_a_directory_of_run_records(tmp_path, write_run_records):
    import json

    errors = {"original_basic": [30, 40, 35, 28, 33], "dropout_shortcut": [89, 88, 90, 87, 86]}
    runs = write_run_records(errors)
    out = tmp_path / "claims.json"
    claims.main([f"--runs={runs}", f"--out={out}"])
    record = json.loads(out.read_text())
    (claim,) = record["claims"]  # the one claim whose two arms have runs
    assert claim["claim"] == "dropout 0.5 on the shortcut fails"
    arm = {"seeds": 5, "failed": 5, "test_errors": errors["dropout_shortcut"]}
    assert claim["arms"]["dropout_shortcut"] == arm
    assert claim["p_value"] == pytest.approx(1 / 252, abs=1e-6)
    assert claim["verdict"] == "supports" and claim["runs"] == str(runs)
    assert record["environment"]["versions"]["jax"]
    # The page beside it renders the same verdict, arms and p-value, not a verdict of its own.
    page = (tmp_path / "claims.md").read_text()
    (row,) = [line for line in page.splitlines() if line.startswith("| 1 |")]
    assert "dropout_shortcut: 5/5 (89.0, 88.0, 90.0, 87.0, 86.0)" in row
    assert "original_basic: 0/5" in row and "| 0.00397 |" in row and "**supports**" in row


def test_first_step_below_reads_the_curve():
    curve = [{"step": 10, "train_error": 90.0}, {"step": 20, "train_error": 80.0},
             {"step": 30, "train_error": 79.9}, {"step": 40, "train_error": 50.0}]  # fmt: skip
    assert claims.first_step_below(curve, 80.0) == 30  # 80.0 is not below 80
    assert claims.first_step_below(curve[:2], 80.0) == "never"
    assert claims.first_step_below(None, 80.0) is None  # no curve kept: unknown, not "never"


def test_table3_claims_carry_the_warmup_check(tmp_path):
    import json

    runs = tmp_path / "runs" / "s400_wu100"
    # The original unit learns late (below 80% only at step 150, after a 100-step warm-up) and
    # its twin early; the check must report each seed's own step and warm-up, in seed order.
    below = {"original_deep": [150, "never"], "full_preact_deep": [20, 30]}
    for variant, steps in below.items():
        (runs / variant).mkdir(parents=True)
        for seed, step in enumerate(steps):
            curve = [{"step": s, "train_error": 85.0} for s in range(10, 400, 10)]
            if step != "never":
                curve[step // 10 - 1]["train_error"] = 70.0
            record = {
                "result": {"seed": seed, "test_error": 30.0, "diverged_step": None},
                "config": {"warmup_steps": 100},
                "metrics": curve,
            }
            (runs / variant / f"seed{seed}.json").write_text(json.dumps(record))
    out = tmp_path / "claims.json"
    claims.main([f"--runs={runs}", f"--out={out}"])
    (claim,) = json.loads(out.read_text())["claims"]
    assert claim["table"] == 3
    check = claim["warmup_check"]
    assert check["original_deep"] == {
        "seeds": [0, 1], "warmup_steps": [100, 100], "train_error_below_80_at": [150, "never"]
    }  # fmt: skip
    assert check["full_preact_deep"]["train_error_below_80_at"] == [20, 30]
    page = (tmp_path / "claims.md").read_text()
    assert "| s400_wu100 | original_deep | 100 | 150, never |" in page


def _write_runs(directory, variant, errors, warmup):
    import json

    (directory / variant).mkdir(parents=True)
    for seed, error in enumerate(errors):
        record = {
            "result": {"seed": seed, "test_error": error, "diverged_step": None},
            "config": {"warmup_steps": warmup if isinstance(warmup, int) else warmup[seed]},
        }
        (directory / variant / f"seed{seed}.json").write_text(json.dumps(record))


def test_warmup_effect_compares_the_shorter_warmup_with_the_longer(tmp_path):
    import json

    short, long, mixed = (tmp_path / name for name in ("wu26", "wu100", "mixed"))
    # Listed longer first: the arms must be ordered by warm-up length, not by argument order.
    _write_runs(long, "original_deep", [40, 48, 30, 35, 50], 100)  # none failed
    _write_runs(short, "original_deep", [83, 88, 84, 90, 86], 26)  # all failed
    _write_runs(long, "full_preact_deep", [80, 30, 31, 29, 33], 100)  # one failed
    _write_runs(short, "full_preact_deep", [30, 28, 29, 31, 30], 26)  # none: longer fails more
    _write_runs(mixed, "original_deep", [30, 30], [26, 100])  # not one warm-up: left out
    out = tmp_path / "claims.json"
    claims.main([f"--runs={long},{short},{mixed}", f"--out={out}"])
    effect = {e["variant"]: e for e in json.loads(out.read_text())["warmup_effect"]}
    deep = effect["original_deep"]
    assert list(deep["arms"]) == ["warm-up 26", "warm-up 100"]
    assert deep["arms"]["warm-up 26"]["failed"] == 5 and deep["arms"]["warm-up 26"]["seeds"] == 5
    assert deep["arms"]["warm-up 100"]["runs"] == str(long)
    assert deep["p_value"] == pytest.approx(1 / 252, abs=1e-6)
    assert deep["verdict"] == "shorter warm-up fails more often"
    twin = effect["full_preact_deep"]  # the hypothesis is one-sided: the other way is no effect
    assert twin["p_value"] == 1.0 and twin["verdict"] == "cannot tell"
    page = (tmp_path / "claims.md").read_text()
    (row,) = [line for line in page.splitlines() if line.startswith("| original_deep |")]
    assert "warm-up 26: 5/5 (83.0," in row and "warm-up 100: 0/5" in row
    assert "| 0.00397 | **shorter warm-up fails more often** |" in row


def test_warmup_effect_needs_five_seeds_a_side(tmp_path):
    short, long = tmp_path / "wu26", tmp_path / "wu100"
    _write_runs(short, "original_deep", [83, 88, 84, 90, 86], 26)
    _write_runs(long, "original_deep", [40, 48, 30, 35], 100)  # four seeds: p = 1/126 < 0.01
    (effect,) = claims.warmup_effect([str(short), str(long)], fail_error=65.0)
    assert effect["p_value"] == pytest.approx(1 / 126, abs=1e-6)
    assert effect["verdict"] == "cannot tell"
