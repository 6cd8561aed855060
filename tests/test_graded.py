"""The exact Mann-Whitney test and the graded verdicts of preact.analysis.graded, by hand."""

import json
import math

import pytest

from preact.analysis import claims, graded


def _runs(errors, diverged=()):
    return [
        {"seed": s, "test_error": e, "diverged_step": 10 if s in diverged else None}
        for s, e in enumerate(errors)
    ]


def test_u_counts_pairs_and_half_ties():
    assert graded.u_statistic([1, 2], [3]) == 2
    assert graded.u_statistic([1, 3], [2]) == 1
    assert graded.u_statistic([2, 2], [2, 1]) == 1.0  # two ties (0.5 each), one loss each


def test_exact_p_by_hand():
    # Three splits of {1, 2, 3} into two and one: U = 2, 1, 0; only the observed split reaches 2.
    assert graded.mann_whitney_one_sided([1, 2], [3]) == pytest.approx(1 / 3)
    assert graded.mann_whitney_one_sided([3], [1, 2]) == 1.0  # U = 0: every split reaches it
    assert graded.mann_whitney_one_sided([1, 3], [2]) == pytest.approx(2 / 3)
    # Five seeds a side, every one of the better arm lower: 1 of C(10, 5) = 252 splits.
    low, high = [24.0, 26.5, 27.2, 28.2, 30.6], [35.4, 37.5, 46.0, 57.9, 69.5]
    assert graded.mann_whitney_one_sided(low, high) == pytest.approx(1 / math.comb(10, 5))
    assert graded.mann_whitney_one_sided(high, low) == 1.0
    # One crossing pair: U = 24 of 25, reached by 2 of the 252 splits.
    crossed = [28.1, 26.9, 27.2, 27.2, 25.9]
    assert graded.mann_whitney_one_sided(crossed, [27.6, 53.2, 42.0, 51.8, 33.0]) == (
        pytest.approx(2 / 252)
    )
    # All tied: no evidence either way.
    assert graded.mann_whitney_one_sided([5.0] * 3, [5.0] * 3) == 1.0


def _claim():
    return graded.GradedClaim(3, "good", "bad", (5.0, 6.0), "good beats bad")


@pytest.mark.parametrize(
    "good, bad, verdict",
    [
        ([1, 2, 3, 4, 5], [6, 7, 8, 9, 10], "supports"),  # p = 1/252
        ([1, 2, 3, 4], [6, 7, 8, 9], "cannot tell"),  # p = 1/70 = 0.014: four seeds cannot
        ([6, 7, 8, 9, 10], [1, 2, 3, 4, 5], "contradicts"),
        ([1, 7, 3, 9, 5], [6, 2, 8, 4, 10], "cannot tell"),
    ],
)
def test_verdicts(good, bad, verdict):
    record = graded.judge(_claim(), _runs(good), _runs(bad))
    assert record["verdict"] == verdict
    assert record["arms"]["good"] == {"seeds": len(good), "test_errors": good}
    assert record["paper"] == {"good": 5.0, "bad": 6.0}


def test_a_diverged_run_counts_as_worst():
    # The better arm's run that diverged would rank first by its (meaningless) final error.
    good = _runs([1, 2, 3, 4, 5])
    bad = _runs([0.5, 7, 8, 9, 10], diverged={0})
    assert graded.judge(_claim(), good, bad)["verdict"] == "supports"
    assert graded.judge(_claim(), bad, good)["verdict"] == "contradicts"


def test_every_graded_claim_names_variants_of_the_ablation_catalogue():
    from preact.analysis import ablations

    names = set(ablations.VARIANTS)
    for claim in graded.GRADED_CLAIMS:
        assert {claim.better, claim.worse} <= names, claim
        # The paper's own numbers order the arms as the claim does.
        assert claim.paper[0] < claim.paper[1], claim


def test_command_writes_the_graded_claims_beside_the_fail_learn_ones(tmp_path, write_run_records):
    errors = {"original_bottleneck": [35.4, 37.5, 46.0, 57.9, 69.5],
              "full_preact_bottleneck": [24.3, 26.5, 27.2, 28.2, 30.6]}  # fmt: skip
    runs = write_run_records(errors)
    out = tmp_path / "claims.json"
    claims.main([f"--runs={runs}", f"--out={out}"])
    record = json.loads(out.read_text())
    (claim,) = record["graded_claims"]
    assert claim["claim"] == "pre-activation beats the original unit on ResNet-164"
    assert claim["u"] == 25 and claim["p_value"] == pytest.approx(1 / 252, abs=1e-6)
    assert claim["verdict"] == "supports" and claim["runs"] == str(runs)
    page = (tmp_path / "claims.md").read_text()
    (row,) = [line for line in page.splitlines() if "beats the original unit" in line]
    assert "full_preact_bottleneck (5.46): 24.3, 26.5" in row and "**supports**" in row
