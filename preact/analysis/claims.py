r"""The paper's fail/learn claims (Tables 1-3) tested on the ablation runs: Fisher's exact test.

    python -m preact.analysis.claims --runs=docs/runs/s400_b64_basic110w8_bott164-299w4_one110 \
        --out=docs/claims.json

``--runs`` takes one or more directories of run records (``preact.analysis.ablations`` writes one
per finished run, ``<records>/<scale>/<variant>/seed<k>.json``), each a scale of its own (a
longer warm-up is another directory): every claim whose two arms have runs there is judged.

Each claim compares two arms, a variant and its baseline, by how many of their seeds *failed*
(the ablation runner's rule, fixed before the runs: diverged, or test error above the tables'
``fail_error``; ``preact.analysis.ablations``). The paper states two kinds of claim:

* **fails**: the variant's row of Table 1 reads "fail" (test error above 20% on CIFAR-10) where
  the baseline trains. Tested one-sided: does the variant fail more often than the baseline?
  5 of 5 against 0 of 5 gives p = 0.004.
* **learns**: the paper trained the variant (a number in its row). A test cannot show that two
  arms fail equally often; it can show the opposite, so these are tested one-sided the other way
  round, in the direction of the paper's claim (the variant fails *less* often than the baseline),
  and are "contradicts" when the variant fails significantly *more* often, else "cannot tell".

``verdict``: "supports" only at p <= 0.01 with at least :data:`MIN_SEEDS` seeds in each arm;
"contradicts" when the one-sided test in the opposite direction gives p <= 0.01; otherwise
"cannot tell". Graded claims (which of two variants ends lower) are tested by
:mod:`preact.analysis.graded` on the same records and written beside these (``graded_claims``).
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import sys
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

ALPHA = 0.01
MIN_SEEDS = 5
# The original ResNet paper's rule for its 110-layer net (He et al. 2015, Sec. 4.2): train at lr
# 0.01 "until the training error is below 80%", then at 0.1. The warm-up check below asks of each
# run whether its warm-up lasted that long, so the warm-up confound is measured, not argued.
WARMUP_RULE_ERROR = 80.0


@dataclasses.dataclass(frozen=True)
class Claim:
    table: int
    variant: str  # the ablation runner's variant key
    baseline: str
    kind: str  # "fails" | "learns"
    text: str


_T1 = "original_basic"
CLAIMS: tuple[Claim, ...] = (
    # Table 1: ResNet-110 (54 two-layer units), the original unit's shortcut variants.
    Claim(1, "scaling_0_1", _T1, "fails", "no shortcut (plain net, lambda = 0) fails"),
    Claim(1, "scaling_0.5_1", _T1, "fails", "constant scaling 0.5 on the shortcut fails"),
    Claim(1, "exclusive_gating_0", _T1, "fails", "exclusive gating with b_g = 0 fails"),
    Claim(1, "dropout_shortcut", _T1, "fails", "dropout 0.5 on the shortcut fails"),
    Claim(1, "scaling_0.5_0.5", _T1, "learns", "constant scaling 0.5/0.5 trains (12.35%)"),
    Claim(1, "exclusive_gating_-6", _T1, "learns", "exclusive gating b_g = -6 trains (8.70%)"),
    Claim(1, "shortcut_gating_0", _T1, "learns", "shortcut-only gating b_g = 0 trains (12.86%)"),
    Claim(1, "shortcut_gating_-6", _T1, "learns", "shortcut-only gating b_g = -6 trains (6.91%)"),
    Claim(1, "conv_shortcut", _T1, "learns", "1x1 conv shortcuts train (12.22%)"),
    # Table 2: every activation order trains on ResNet-110 and ResNet-164.
    *(
        Claim(2, f"{unit}_{block}", f"original_{block}", "learns", f"{text} trains on {net}")
        for block, net in (("basic", "ResNet-110"), ("bottleneck", "ResNet-164"))
        for unit, text in (
            ("bn_after_add", "BN after addition"),
            ("relu_before_add", "ReLU before addition"),
            ("relu_preact", "ReLU-only pre-activation"),
            ("full_preact", "full pre-activation"),
        )
    ),
    # Table 3 / Fig. 1: the original unit trains at every depth, ResNet-1001 included (7.61%);
    # here the deepest net is bottleneck-299 ("deep"), compared with its pre-activation twin.
    Claim(
        3,
        "original_deep",
        "full_preact_deep",
        "learns",
        "the original unit trains on the deepest net (ResNet-1001: 7.61%)",
    ),  # fmt: skip
    Claim(
        3,
        "original_one_layer",
        "full_preact_one_layer",
        "learns",
        "the original one-layer unit trains (ResNet-110, one layer: 9.90%)",
    ),  # fmt: skip
)


def fisher_one_sided(k_a: int, n_a: int, k_b: int, n_b: int) -> float:
    """P(arm A has >= k_a of the k_a + k_b failures) under the null of equal failure rates,
    with all margins fixed: the upper tail of the hypergeometric distribution."""
    if not (0 <= k_a <= n_a and 0 <= k_b <= n_b):
        raise ValueError(f"impossible counts {k_a}/{n_a}, {k_b}/{n_b}")
    total, failures = n_a + n_b, k_a + k_b
    denominator = math.comb(total, failures)
    upper = min(n_a, failures)
    tail = sum(math.comb(n_a, x) * math.comb(n_b, failures - x) for x in range(k_a, upper + 1))
    return min(1.0, tail / denominator)


def verdict_of(p_claim: float, p_against: float, seeds: int) -> str:
    """The verdict rule of every test here: "contradicts" at p_against <= ALPHA, "supports" at
    p_claim <= ALPHA with at least MIN_SEEDS seeds in the smaller arm, else "cannot tell"."""
    if p_against <= ALPHA:
        return "contradicts"
    if p_claim <= ALPHA and seeds >= MIN_SEEDS:
        return "supports"
    return "cannot tell"


def judge(claim: Claim, variant: Mapping[str, int], baseline: Mapping[str, int]) -> dict:
    """One claim's record: the arms, the p-value in the paper's direction and the verdict."""
    kv, nv = variant["failed"], variant["seeds"]
    kb, nb = baseline["failed"], baseline["seeds"]
    if claim.kind == "fails":  # the paper: the variant fails more often than the baseline
        p_claim, p_against = fisher_one_sided(kv, nv, kb, nb), fisher_one_sided(kb, nb, kv, nv)
    elif claim.kind == "learns":  # the paper: the variant fails no more often than the baseline
        p_claim, p_against = fisher_one_sided(kb, nb, kv, nv), fisher_one_sided(kv, nv, kb, nb)
    else:
        raise ValueError(f"unknown claim kind {claim.kind!r}")
    verdict = verdict_of(p_claim, p_against, min(nv, nb))
    return {
        "table": claim.table,
        "claim": claim.text,
        "kind": claim.kind,
        "arms": {claim.variant: dict(variant), claim.baseline: dict(baseline)},
        "p_value": round(p_claim, 6),
        "p_value_against": round(p_against, 6),
        "verdict": verdict,
    }


def arms_from_records(records: Iterable[Mapping[str, Any]], fail_error: float) -> dict:
    """{variant: {"seeds", "failed", "test_errors"}} over every run of the ablation JSON records,
    one per (variant, seed) (a run found in two tables, the shared baseline, counts once)."""
    runs: dict[str, dict[int, dict[str, Any]]] = {}
    for record in records:
        for name, summary in record["variants"].items():
            for run in summary["runs"]:
                runs.setdefault(name, {})[int(run["seed"])] = run
    return {name: _arm([by_seed[s] for s in sorted(by_seed)], fail_error)
            for name, by_seed in runs.items()}  # fmt: skip


def _run_records(directory: str) -> dict[str, list[dict]]:
    """{variant: [record, ...] sorted by seed} of a directory of run records."""
    out = {}
    for variant in sorted(os.listdir(directory)):
        folder = os.path.join(directory, variant)
        if not os.path.isdir(folder):
            continue
        records = []
        for name in sorted(os.listdir(folder)):
            if name.startswith("seed") and name.endswith(".json"):
                with open(os.path.join(folder, name)) as f:
                    records.append(json.load(f))
        out[variant] = sorted(records, key=lambda r: r["result"]["seed"])
    return out


def arms_from_run_records(directory: str, fail_error: float) -> dict:
    """{variant: {"seeds", "failed", "test_errors"}} from a directory of run records."""
    return {
        variant: _arm([r["result"] for r in records], fail_error)
        for variant, records in _run_records(directory).items()
    }


def first_step_below(metrics: Sequence[Mapping[str, Any]] | None, error: float) -> int | str | None:
    """The first logged step whose training error is below ``error`` (%); "never" when no logged
    step is; None when the record has no curve (records made before curves were kept)."""
    if not metrics:
        return None
    for m in metrics:
        if "train_error" in m and m["train_error"] < error:
            return int(m["step"])
    return "never"


def warmup_check(directory: str, variants: Iterable[str]) -> dict:
    """For each named arm of a run directory, per seed: the warm-up length (iterations at the
    warm-up learning rate) and the first logged step with training error below
    :data:`WARMUP_RULE_ERROR`. A run whose error falls below it only after its warm-up ended
    went to the full learning rate earlier than the original ResNet paper's rule would have."""
    records = _run_records(directory)
    out = {}
    for variant in variants:
        if variant not in records:
            continue
        out[variant] = {
            "seeds": [r["result"]["seed"] for r in records[variant]],
            "warmup_steps": [(r.get("config") or {}).get("warmup_steps") for r in records[variant]],
            "train_error_below_80_at": [
                first_step_below(r.get("metrics"), WARMUP_RULE_ERROR) for r in records[variant]
            ],
        }
    return out


def warmup_effect(directories: Sequence[str], fail_error: float) -> list[dict]:
    """The warm-up confound, measured: each Table 3 variant run in two directories whose runs
    differ in warm-up length, its failures at the shortest warm-up against the longest.

    The paper warms up (lr 0.01 for 400 iterations, one CIFAR epoch) for the original unit's early
    instability on its deepest nets (Sec. 4.1), so the hypothesis is fixed before the runs: the
    shorter warm-up fails more often. ``p_value`` is the one-sided Fisher exact test in that
    direction; "shorter warm-up fails more often" at p <= :data:`ALPHA` with at least
    :data:`MIN_SEEDS` seeds a side, else "cannot tell". A directory whose runs mix warm-up lengths
    is left out (its arms would not be one warm-up)."""
    variants = {name for c in CLAIMS if c.table == 3 for name in (c.variant, c.baseline)}
    by_warmup: dict[str, dict[int, tuple[str, list[dict]]]] = {}
    for directory in directories:
        for variant, records in _run_records(directory).items():
            warm = {(r.get("config") or {}).get("warmup_steps") for r in records}
            if variant in variants and records and len(warm) == 1 and None not in warm:
                by_warmup.setdefault(variant, {})[warm.pop()] = (directory, records)
    out = []
    for variant in sorted(by_warmup):
        lengths = sorted(by_warmup[variant])
        if len(lengths) < 2:
            continue
        (short_dir, short), (long_dir, long) = (
            by_warmup[variant][w] for w in (lengths[0], lengths[-1])
        )
        a = _arm([r["result"] for r in short], fail_error)
        b = _arm([r["result"] for r in long], fail_error)
        p = fisher_one_sided(a["failed"], a["seeds"], b["failed"], b["seeds"])
        enough = min(a["seeds"], b["seeds"]) >= MIN_SEEDS
        verdict = "shorter warm-up fails more often" if p <= ALPHA and enough else "cannot tell"
        out.append({
            "variant": variant,
            "arms": {
                f"warm-up {lengths[0]}": {**a, "runs": os.path.normpath(short_dir)},
                f"warm-up {lengths[-1]}": {**b, "runs": os.path.normpath(long_dir)},
            },
            "p_value": round(p, 6),
            "verdict": verdict,
        })  # fmt: skip
    return out


def _arm(runs: Sequence[Mapping[str, Any]], fail_error: float) -> dict:
    failed = [r.get("diverged_step") is not None or not r["test_error"] <= fail_error for r in runs]
    return {
        "seeds": len(runs),
        "failed": int(sum(failed)),
        "test_errors": [r["test_error"] for r in runs],
    }


def judge_all(arms: Mapping[str, Mapping[str, Any]]) -> list[dict]:
    """Every claim of :data:`CLAIMS` whose two arms have runs."""
    return [
        judge(c, arms[c.variant], arms[c.baseline])
        for c in CLAIMS
        if c.variant in arms and c.baseline in arms
    ]


def claims_record(records: Sequence[Mapping[str, Any]]) -> dict:
    fail_errors = {r["fail_error"] for r in records}
    if len(fail_errors) != 1:
        raise ValueError(f"the records use different fail rules: fail_error {fail_errors}")
    (fail_error,) = fail_errors
    claims = judge_all(arms_from_records(records, fail_error))
    return {
        "fail_rule": f"diverged, or test error > {fail_error}%",
        "alpha": ALPHA,
        "min_seeds": MIN_SEEDS,
        "claims": claims,
    }


def render_markdown(result: Mapping[str, Any]) -> str:
    """The verdicts of a claims record as a markdown page: one row per claim, each arm with its
    failed/seeds and every seed's test error, the p-value and the verdict, nothing else."""
    env = result.get("environment", {})
    lines = [
        "# The paper's claims, tested: fail/learn, then graded",
        "",
        "Written by `preact.analysis.claims` from the run records; do not edit by hand. "
        f"Command: `{result.get('command', '')}`.",
        "",
        f"Fail rule (fixed before the runs): {result['fail_rule']}. Test: {result['test']} "
        f'(p in the paper\'s direction). Verdict: "supports" only at p <= {result["alpha"]} '
        f'with at least {result["min_seeds"]} seeds in each arm; "contradicts" when the test in '
        f'the opposite direction gives p <= {result["alpha"]}; otherwise "cannot tell".',
        "",
        "| table | the paper's claim | variant: failed/seeds (test errors %) "
        "| baseline: failed/seeds (test errors %) | p | verdict | runs |",
        "|---|---|---|---|---|---|---|",
    ]
    for c in result["claims"]:
        arms = []
        for name, a in c["arms"].items():
            errors = ", ".join(f"{e:.1f}" for e in a["test_errors"])
            arms.append(f"{name}: {a['failed']}/{a['seeds']} ({errors})")
        runs = os.path.basename(c.get("runs", ""))
        lines.append(
            f"| {c['table']} | {c['claim']} | {arms[0]} | {arms[1]} | {c['p_value']:.3g} "
            f"| **{c['verdict']}** | {runs} |"
        )
    checked = [c for c in result["claims"] if c.get("warmup_check")]
    if checked:
        lines += [
            "",
            "## Warm-up check (Table 3)",
            "",
            "The original ResNet paper warms its 110-layer net up at lr 0.01 until the training "
            f"error is below {WARMUP_RULE_ERROR:.0f}%. Per seed: the warm-up's length, and the "
            f'first logged step with training error below {WARMUP_RULE_ERROR:.0f}% ("never": '
            'not in the run; "-": the record has no curve).',
            "",
            "| claim | runs | arm | warm-up (iterations) | training error < "
            f"{WARMUP_RULE_ERROR:.0f}% first at step |",
            "|---|---|---|---|---|",
        ]
        for c in checked:
            for name, arm in c["warmup_check"].items():
                warm = sorted({w for w in arm["warmup_steps"] if w is not None})
                steps = ", ".join(
                    "-" if s is None else str(s) for s in arm["train_error_below_80_at"]
                )
                lines.append(
                    f"| {c['claim']} | {os.path.basename(c.get('runs', ''))} | {name} "
                    f"| {', '.join(map(str, warm)) or '-'} | {steps} |"
                )
    if result.get("graded_claims"):
        lines += [
            "",
            "## Graded claims (which of two arms ends lower)",
            "",
            f"Test: {result['graded_test']}; the same verdict rule. Each arm's test errors (%), "
            "the paper's CIFAR-10 figure beside its name.",
            "",
            "| table | the paper's claim | better arm (paper %): test errors "
            "| worse arm (paper %): test errors | U | p | verdict | runs |",
            "|---|---|---|---|---|---|---|---|",
        ]
        for c in result["graded_claims"]:
            cells = [
                f"{name} ({c['paper'][name]}): " + ", ".join(f"{e:.1f}" for e in a["test_errors"])
                for name, a in c["arms"].items()
            ]
            lines.append(
                f"| {c['table']} | {c['claim']} | {cells[0]} | {cells[1]} | {c['u']:g} "
                f"| {c['p_value']:.3g} | **{c['verdict']}** | {os.path.basename(c['runs'])} |"
            )
    if result.get("warmup_effect"):
        lines += [
            "",
            "## The warm-up confound, measured (Table 3)",
            "",
            "The same variant at two warm-up lengths (the runs of two directories), its failures "
            "at the shorter against the longer: one-sided Fisher exact test of the hypothesis "
            "fixed before the runs, that the shorter warm-up fails more often.",
            "",
            "| variant | shorter warm-up: failed/seeds (test errors %) "
            "| longer warm-up: failed/seeds (test errors %) | p | verdict |",
            "|---|---|---|---|---|",
        ]
        for e in result["warmup_effect"]:
            cells = []
            for name, a in e["arms"].items():
                errors = ", ".join(f"{x:.1f}" for x in a["test_errors"])
                cells.append(f"{name}: {a['failed']}/{a['seeds']} ({errors})")
            lines.append(
                f"| {e['variant']} | {cells[0]} | {cells[1]} | {e['p_value']:.3g} "
                f"| **{e['verdict']}** |"
            )
    if env:
        lines += [
            "",
            f"Judged with preact {env.get('preact')} at commit {env.get('git_commit')}; each "
            "run's own environment, command and date are in its record.",
        ]
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> dict:
    import argparse

    from preact import provenance
    from preact.analysis.ablation_catalog import FAIL_ERROR

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", required=True, help="comma-separated run-record directories")
    parser.add_argument("--fail_error", type=float, default=FAIL_ERROR,
                        help="the fail rule's test error (%%), fixed before the runs")  # fmt: skip
    parser.add_argument("--out", default="", help="where to write claims.json ('' = print)")
    parser.add_argument("--md", default=None, help="the markdown page (default: OUT with .md)")
    args = parser.parse_args(argv)
    from preact.analysis import graded

    claims, graded_claims = [], []
    for directory in [d for d in args.runs.split(",") if d]:
        runs = {v: [r["result"] for r in rs] for v, rs in _run_records(directory).items()}
        for claim in graded.judge_all(runs):
            graded_claims.append({**claim, "runs": os.path.normpath(directory)})
        for claim in judge_all(arms_from_run_records(directory, args.fail_error)):
            claim = {**claim, "runs": os.path.normpath(directory)}
            if claim["table"] == 3:  # the original unit's early instability: was it warmed up?
                claim["warmup_check"] = warmup_check(directory, claim["arms"])
            claims.append(claim)
    result = {
        "fail_rule": f"diverged, or test error > {args.fail_error}%",
        "alpha": ALPHA,
        "min_seeds": MIN_SEEDS,
        "test": "one-sided Fisher exact test in the direction of the paper's claim",
        "claims": claims,
        "graded_test": "exact one-sided Mann-Whitney test on the final test errors (a diverged "
        "run worst), in the direction of the paper's ordering",
        "graded_claims": graded_claims,
        "warmup_effect": warmup_effect([d for d in args.runs.split(",") if d], args.fail_error),
        "command": "python -m preact.analysis.claims " + " ".join(argv or sys.argv[1:]),
        "environment": provenance.environment(),
    }
    for c in claims:
        arms = ", ".join(f"{k} {v['failed']}/{v['seeds']}" for k, v in c["arms"].items())
        print(f"Table {c['table']}: {c['claim']}: {arms} failed; p = {c['p_value']:.3g}: "
              f"{c['verdict']}")  # fmt: skip
    for c in graded_claims:
        print(f"Table {c['table']} (graded): {c['claim']}: p = {c['p_value']:.3g}: {c['verdict']}")
    if args.out:
        from preact.workdir import write_atomic  # whole files, never torn ones

        write_atomic(args.out, json.dumps(result, indent=2) + "\n")
        write_atomic(args.md or os.path.splitext(args.out)[0] + ".md", render_markdown(result))
    return result


if __name__ == "__main__":
    main()
