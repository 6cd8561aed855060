r"""Markdown summary of benchmark results, and the targets as PASS / FAIL / NOT MEASURED.

    python -m benchmarks.summarize benchmarks/results/*.json

Reads the files run_all.py writes (other JSON files are listed as skipped). For each file: its
environment and one row per configuration, repetitions side by side. Then the targets, from every
file given (the targets: docs/performance.md#on-a-gpu). A target counts only GPU runs that followed
the measurement protocol of docs/performance.md (at least 20 warm-up and 100 timed steps); CPU smoke
runs never count. Throughput is the median per-step time's img/s; the speed-up over PyTorch compares
runs of the same file (the same command on the same machine).
"""

from __future__ import annotations

import os
import statistics
import sys
from collections.abc import Iterable, Sequence

from benchmarks import common

GIB = 2**30
TARGET_BATCH = 128
TARGET_DTYPE = "bfloat16"
# The performance targets, on one H100, bf16, batch 128, steady-state train step.
TARGET_IMG_PER_S = {110: 30_000, 164: 15_000, 1001: 3_000}
TARGET_SPEEDUP = 1.3  # over the best PyTorch configuration of the same run
TARGET_COMPILE_S = 30.0  # PreAct-1001, cold
TARGET_PEAK_GIB = 16.0  # PreAct-1001
TARGET_EPOCH_RATIO = 1.05  # end-to-end epoch over step-only
MIN_WARMUP, MIN_STEPS = 20, 100

PASS, FAIL, NOT_MEASURED = "PASS", "FAIL", "NOT MEASURED"


def load(paths: Iterable[str]) -> tuple[list[tuple[str, dict]], list[str]]:
    """(path, results) of each run_all results file, and the paths that are not one."""
    files, skipped = [], []
    for path in paths:
        try:
            data = common.read_json(path)
        except (OSError, ValueError):
            skipped.append(path)
            continue
        if isinstance(data, dict) and data.get("schema_version") and "runs" in data:
            files.append((path, data))
        else:
            skipped.append(path)
    return files, skipped


def _ok(runs: Iterable[dict]) -> list[dict]:
    return [r for r in runs if r.get("status") == "ok"]


def _on_gpu(run: dict) -> bool:
    env = run.get("worker_env") or {}
    if run["framework"] == "jax":
        return env.get("backend") in ("gpu", "cuda", "rocm")
    return env.get("device", "cpu") != "cpu"


def _device(run: dict) -> str:
    env = run.get("worker_env") or {}
    return str(env.get("device_kind") or env.get("device") or "?")


def _protocol_ok(run: dict) -> bool:
    return run.get("warmup_steps", 0) >= MIN_WARMUP and run["step"]["steps"] >= MIN_STEPS


def _fmt(value: float | None, digits: int = 0) -> str:
    return "–" if value is None else f"{value:,.{digits}f}"


def _peak(run: dict) -> int | None:
    return ((run.get("memory") or {}).get("after_steps") or {}).get("peak_bytes_in_use")


def _configs(runs: Sequence[dict]) -> dict[tuple, list[dict]]:
    """Runs grouped by configuration, in the order they first ran."""
    groups: dict[tuple, list[dict]] = {}
    for r in runs:
        key = (r["framework"], r["depth"], r["batch"], r["dtype"], r["variant"])
        groups.setdefault(key, []).append(r)
    return groups


def _compile_cell(run: dict) -> str:
    c = run.get("compile") or {}
    if run["framework"] == "jax":
        return f"{c.get('total_s', 0):.1f} ({c.get('cache', '?')})"
    return f"{c.get('first_step_s') or 0:.1f} (1st step)"


def runs_table(results: dict) -> str:
    header = (
        "| framework | net | batch | dtype | variant | rep | compile s | img/s (median) "
        "| ms/step p50 [p10, p90] | back-to-back img/s | peak GiB | epoch e2e / step-only "
        "| loss finite |"
    )
    lines = [header, "|" + "---|" * 13]
    for runs in _configs(results["runs"]).values():
        for r in runs:
            head = (
                f"| {r['framework']} | {r['net']} | {r['batch']} | {r['dtype']} | "
                f"{r['variant']} | {r['rep']} |"
            )
            if r.get("status") != "ok":
                error_lines = (r.get("error") or "").strip().splitlines()
                why = r.get("reason") or (error_lines[-1] if error_lines else "")
                why = why.replace("|", "/")[:100]
                lines.append(f"{head} {r.get('status', '?').upper()}: {why} |" + " |" * 6)
                continue
            s, p = r["step"], r["pipelined"]
            peak = _peak(r)
            epoch = r.get("epoch")
            lines.append(
                f"{head} {_compile_cell(r)} | {_fmt(s['img_per_s'])} | "
                f"{s['median_ms']:.2f} [{s['p10_ms']:.2f}, {s['p90_ms']:.2f}] | "
                f"{_fmt(p['img_per_s'])} | {_fmt(None if peak is None else peak / GIB, 2)} | "
                f"{_fmt(epoch['ratio'], 3) if epoch else '–'} | {r.get('loss_finite')} |"
            )
    return "\n".join(lines)


def environment_lines(path: str, results: dict) -> list[str]:
    env = results.get("environment", {})
    versions = env.get("versions", {})
    devices = sorted({_device(r) for r in _ok(results["runs"])}) or ["?"]
    shown = ("jax", "jaxlib", "flax", "optax", "torch", "triton", "numpy")
    return [
        f"### {os.path.basename(path)}",
        "",
        f"**{results.get('label', '')}**" + ("" if results.get("complete") else " (incomplete)"),
        "",
        f"- date: {env.get('date_utc')}; devices: {', '.join(devices)}; GPU: {env.get('gpu')}, "
        f"driver {env.get('gpu_driver')}, CUDA (driver API) {env.get('gpu_cuda_driver_api')}",
        "- versions: " + ", ".join(f"{k} {versions.get(k)}" for k in shown if versions.get(k)),
        f"- XLA_FLAGS: {env.get('xla_flags')!r}; python {env.get('python')}; "
        f"{env.get('cpu_count')} CPUs; git {str(env.get('git_commit'))[:10]}",
        f"- command: `{env.get('command')}`",
        "- protocol: " + "; ".join(f"{k} {v}" for k, v in results.get("protocol", {}).items()),
    ]


def _target_runs(
    files: Sequence[tuple[str, dict]], framework: str, depth: int, dtype: str | None = TARGET_DTYPE
) -> list[tuple[str, list[dict]]]:
    """Per file, the qualifying GPU runs of one framework and net at the target batch."""
    out = []
    for path, results in files:
        if results.get("kind") != "gpu":
            continue
        runs = [
            r
            for r in _ok(results["runs"])
            if r["framework"] == framework
            and r["depth"] == depth
            and r["batch"] == TARGET_BATCH
            and (dtype is None or r["dtype"] == dtype)
            and _on_gpu(r)
        ]
        if runs:
            out.append((os.path.basename(path), runs))
    return out


def _best_throughput(runs: Sequence[dict]) -> tuple[float, dict] | None:
    """The best configuration's median (over repetitions) img/s, among protocol runs."""
    best = None
    for group in _configs([r for r in runs if _protocol_ok(r)]).values():
        value = statistics.median(r["step"]["img_per_s"] for r in group)
        if best is None or value > best[0]:
            best = (value, group[0])
    return best


def _on(run: dict) -> str:
    device = _device(run)
    return device if "H100" in device else f"{device}; the target is for an H100"


def targets(files: Sequence[tuple[str, dict]]) -> list[dict[str, str]]:
    """Every performance target, with its verdict and the figure and file it rests on."""
    rows: list[dict[str, str]] = []

    def add(target: str, verdict: str, value: str, source: str = "") -> None:
        rows.append(dict(target=target, verdict=verdict, value=value, source=source))

    for depth, floor in TARGET_IMG_PER_S.items():
        name = f"{common.net_name(depth)} JAX bf16 b{TARGET_BATCH} >= {floor:,} img/s"
        found = False
        for source, runs in _target_runs(files, "jax", depth):
            best = _best_throughput(runs)
            if best:
                found = True
                value, run = best
                add(
                    name,
                    PASS if value >= floor else FAIL,
                    f"{value:,.0f} img/s ({run['variant']}; {_on(run)})",
                    source,
                )
        if not found:
            add(name, NOT_MEASURED, "no GPU run with >= 20 warm-up and >= 100 timed steps")

        name = f"{common.net_name(depth)} JAX >= {TARGET_SPEEDUP}x best PyTorch (b{TARGET_BATCH})"
        found = False
        torch_by_file = dict(_target_runs(files, "torch", depth, dtype=None))
        for source, runs in _target_runs(files, "jax", depth):
            jax_best = _best_throughput(runs)
            torch_best = _best_throughput(torch_by_file.get(source, []))
            if jax_best and torch_best:
                found = True
                ratio = jax_best[0] / torch_best[0]
                add(
                    name,
                    PASS if ratio >= TARGET_SPEEDUP else FAIL,
                    f"{ratio:.2f}x ({jax_best[0]:,.0f} vs PyTorch {torch_best[1]['variant']} "
                    f"{torch_best[1]['dtype']} {torch_best[0]:,.0f} img/s)",
                    source,
                )
        if not found:
            add(name, NOT_MEASURED, "no GPU run with both frameworks in one file")

    name = f"PreAct-1001 cold compile <= {TARGET_COMPILE_S:.0f} s (bf16 b{TARGET_BATCH}, scanned)"
    found = False
    for source, runs in _target_runs(files, "jax", 1001):
        cold = [r for r in runs if r["variant"] == "scanned" and r["compile"]["cache"] == "cold"]
        warm = [r for r in runs if r["variant"] == "scanned" and r["compile"]["cache"] == "warm"]
        if cold:
            found = True
            value = max(r["compile"]["total_s"] for r in cold)
            extra = (
                f"; warm from the cache {min(r['compile']['total_s'] for r in warm):.1f} s"
                if warm
                else ""
            )
            add(
                name,
                PASS if value <= TARGET_COMPILE_S else FAIL,
                f"{value:.1f} s trace+lower+compile{extra}; {_on(cold[0])}",
                source,
            )
    if not found:
        add(name, NOT_MEASURED, "no cold-cache GPU compile of PreAct-1001")

    name = f"PreAct-1001 peak memory <= {TARGET_PEAK_GIB:.0f} GiB (bf16 b{TARGET_BATCH}, scanned)"
    found = False
    for source, runs in _target_runs(files, "jax", 1001):
        peaks = [_peak(r) for r in runs if r["variant"] == "scanned" and _peak(r) is not None]
        if peaks:
            found = True
            value = max(peaks) / GIB
            add(
                name,
                PASS if value <= TARGET_PEAK_GIB else FAIL,
                f"{value:.2f} GiB peak_bytes_in_use; {_on(runs[0])}",
                source,
            )
    if not found:
        add(name, NOT_MEASURED, "no GPU memory statistics for PreAct-1001")

    for depth in TARGET_IMG_PER_S:
        name = (
            f"{common.net_name(depth)} epoch end-to-end within "
            f"{TARGET_EPOCH_RATIO - 1:.0%} of step-only (bf16 b{TARGET_BATCH})"
        )
        found = False
        for source, runs in _target_runs(files, "jax", depth):
            epochs = [r for r in runs if r["variant"] == "scanned" and r.get("epoch")]
            if epochs:
                found = True
                e = epochs[0]["epoch"]
                add(
                    name,
                    PASS if e["ratio"] <= TARGET_EPOCH_RATIO else FAIL,
                    f"{e['ratio']:.3f} ({e['end_to_end_s']:.2f} s vs {e['step_only_s']:.2f} s, "
                    f"{e['steps']} steps)",
                    source,
                )
        if not found:
            add(name, NOT_MEASURED, "no GPU epoch run")
    return rows


def targets_table(files: Sequence[tuple[str, dict]]) -> str:
    lines = ["| target | verdict | measured | file |", "|---|---|---|---|"]
    for row in targets(files):
        lines.append(f"| {row['target']} | {row['verdict']} | {row['value']} | {row['source']} |")
    return "\n".join(lines)


def render(paths: Sequence[str]) -> str:
    files, skipped = load(paths)
    out = ["## Benchmark results", ""]
    for path, results in files:
        out += environment_lines(path, results)
        out += ["", runs_table(results), ""]
    out += [
        "compile s: JAX trace+lower+compile of the train step, cold (empty persistent cache) or "
        "warm (from it); PyTorch: the first step, compilation included. img/s is the batch over "
        "the median step time, each step synchronized; back-to-back: steps issued without "
        "synchronizing, one sync at the end.",
        "",
        "## Targets (one H100, bf16, batch 128)",
        "",
        targets_table(files),
        "",
    ]
    if skipped:
        out += ["Not run_all results files, skipped: " + ", ".join(skipped), ""]
    return "\n".join(out)


def main() -> None:
    if len(sys.argv) < 2:
        sys.exit("usage: python -m benchmarks.summarize RESULTS.json [...]")
    print(render(sys.argv[1:]))


if __name__ == "__main__":
    main()
