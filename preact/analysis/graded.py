r"""The paper's graded claims (Tables 1-3: "X is worse than Y") tested on the ablation runs.

:mod:`preact.analysis.claims` judges "fails" against "trains" by counting failed seeds. Most of
the paper's rows say more: a number that orders two variants (full pre-activation 5.46% against
the original unit's 5.93% on ResNet-164, Table 3). Each such ordering is tested here on the final
test errors of the two arms' seeds by an exact one-sided Mann-Whitney (rank-sum) test in the
paper's direction:

* ``U`` counts the pairs (a seed of the arm the paper finds better, a seed of the other) in which
  the first ended with the lower test error, a tie counting one half. A run that diverged counts
  as worse than any that did not (the tables' median rule: a failed run is infinitely bad).
* ``p_value``: the probability, under the null of exchangeable arms, of a ``U`` at least as large,
  computed exactly over every split of the pooled runs (5 seeds against 5: 252 splits; complete
  separation gives 1/252 = 0.004). ``p_value_against``: the same test the other way round.
* ``verdict``: "supports" at ``p_value`` <= ALPHA with at least MIN_SEEDS seeds per arm,
  "contradicts" at ``p_value_against`` <= ALPHA, otherwise "cannot tell" (the rules of
  :mod:`preact.analysis.claims`).

The list below is every directed ordering of Tables 1-3 that the ablation runner covers, taken
from the paper's numbers, none added or dropped for what the runs show; the one row left out is
Table 2's ReLU-only pre-activation against the original, which the paper calls comparable (6.71
against 6.61 on ResNet-110, 5.91 against 5.93 on ResNet-164), not better or worse. 15 claims,
16 tests (the deepest net's in both warm-up directories): at 0.01 each, about 0.16 "supports"
are expected by chance if no claim held.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
from collections.abc import Mapping, Sequence
from typing import Any

from preact.analysis.claims import verdict_of


@dataclasses.dataclass(frozen=True)
class GradedClaim:
    table: int
    better: str  # the ablation runner's key of the arm with the paper's lower error
    worse: str
    paper: tuple[float, float]  # the paper's CIFAR-10 test errors (%), better then worse
    text: str


def _t2(block: str, net: str, paper: Mapping[str, float]) -> tuple[GradedClaim, ...]:
    o, f = f"original_{block}", f"full_preact_{block}"
    return (
        GradedClaim(2, o, f"bn_after_add_{block}", (paper["original"], paper["bn_after_add"]),
                    f"BN after addition is worse than the original unit on {net}"),
        GradedClaim(2, o, f"relu_before_add_{block}", (paper["original"], paper["relu_before_add"]),
                    f"ReLU before addition is worse than the original unit on {net}"),
        GradedClaim(2, f, f"relu_preact_{block}", (paper["full_preact"], paper["relu_preact"]),
                    f"full pre-activation beats ReLU-only pre-activation on {net}"),
    )  # fmt: skip


GRADED_CLAIMS: tuple[GradedClaim, ...] = (
    # Table 1 (ResNet-110): every shortcut that trained is worse than the identity.
    *(
        GradedClaim(1, "original_basic", v, (6.61, e), f"{text} is worse than the identity")
        for v, e, text in (
            ("scaling_0.5_0.5", 12.35, "constant scaling 0.5/0.5"),
            ("exclusive_gating_-6", 8.70, "exclusive gating b_g = -6"),
            ("shortcut_gating_0", 12.86, "shortcut-only gating b_g = 0"),
            ("shortcut_gating_-6", 6.91, "shortcut-only gating b_g = -6"),
            ("conv_shortcut", 12.22, "a 1x1 conv shortcut"),
        )
    ),
    # Table 2: the activation orders.
    *_t2(
        "basic",
        "ResNet-110",
        {
            "original": 6.61,
            "bn_after_add": 8.17,
            "relu_before_add": 7.84,
            "relu_preact": 6.71,
            "full_preact": 6.37,
        },
    ),  # fmt: skip
    *_t2(
        "bottleneck",
        "ResNet-164",
        {
            "original": 5.93,
            "bn_after_add": 6.50,
            "relu_before_add": 6.14,
            "relu_preact": 5.91,
            "full_preact": 5.46,
        },
    ),  # fmt: skip
    # Table 3: pre-activation against the original unit at every depth (bottleneck-299 stands in
    # for ResNet-1001).
    *(
        GradedClaim(
            3,
            f"full_preact_{net}",
            f"original_{net}",
            paper,
            f"pre-activation beats the original unit on {name}",
        )
        for net, name, paper in (
            ("one_layer", "1-layer ResNet-110", (8.91, 9.90)),
            ("basic", "ResNet-110", (6.37, 6.61)),
            ("bottleneck", "ResNet-164", (5.46, 5.93)),
            ("deep", "the deepest net (ResNet-1001)", (4.92, 7.61)),
        )
    ),  # fmt: skip
)


def _score(run: Mapping[str, Any]) -> float:
    """A run's final test error; a diverged run is worse than any that finished."""
    if run.get("diverged_step") is not None or not math.isfinite(run["test_error"]):
        return math.inf
    return float(run["test_error"])


def u_statistic(better: Sequence[float], worse: Sequence[float]) -> float:
    """Pairs (b, w) with b < w, ties counting one half."""
    return sum(1.0 if b < w else 0.5 if b == w else 0.0 for b in better for w in worse)


def mann_whitney_one_sided(better: Sequence[float], worse: Sequence[float]) -> float:
    """P(U >= observed U) over every split of the pooled values into arms of the two sizes, each
    equally likely under the null: the exact permutation distribution, ties included."""
    if not better or not worse:
        raise ValueError("each arm needs at least one run")
    pooled = [*better, *worse]
    observed = u_statistic(better, worse)
    hits = total = 0
    for chosen in itertools.combinations(range(len(pooled)), len(better)):
        picked = set(chosen)
        a = [pooled[i] for i in chosen]
        b = [pooled[i] for i in range(len(pooled)) if i not in picked]
        total += 1
        hits += u_statistic(a, b) >= observed - 1e-9
    return hits / total


def judge(claim: GradedClaim, better: Sequence[Mapping[str, Any]],
          worse: Sequence[Mapping[str, Any]]) -> dict:  # fmt: skip
    """One graded claim's record: each arm's seeds and test errors, both p-values, the verdict."""
    b, w = [_score(r) for r in better], [_score(r) for r in worse]
    p, p_against = mann_whitney_one_sided(b, w), mann_whitney_one_sided(w, b)
    verdict = verdict_of(p, p_against, min(len(b), len(w)))
    return {
        "table": claim.table,
        "claim": claim.text,
        "paper": {claim.better: claim.paper[0], claim.worse: claim.paper[1]},
        "arms": {
            name: {"seeds": len(runs), "test_errors": [r["test_error"] for r in runs]}
            for name, runs in ((claim.better, better), (claim.worse, worse))
        },
        "u": u_statistic(b, w),
        "p_value": round(p, 6),
        "p_value_against": round(p_against, 6),
        "verdict": verdict,
    }


def judge_all(runs: Mapping[str, Sequence[Mapping[str, Any]]]) -> list[dict]:
    """Every graded claim whose two arms have runs ({variant: [run result, ...]})."""
    return [
        judge(c, runs[c.better], runs[c.worse])
        for c in GRADED_CLAIMS
        if runs.get(c.better) and runs.get(c.worse)
    ]
