"""Benchmark: start-up, `inv pr-checks` cold / with nothing changed / after changing one handler file (and which
tests the affected-only `unit-test` reran) / after changing only Markdown, `inv pipeline` cold / warm, a redeploy of
an unchanged environment and the local API's request latency. Each figure is printed beside the issue's goal.

Runs everything in a throw-away copy of the project with its own local AWS (so the user's tree and servers are
untouched) and prints figures; asserts nothing (speed targets belong here, never in timed tests).

    uv run python benchmarks/pipeline.py [--jobs N] [--skip-pipeline]

Parallel efficiency = wall / max(longest step, sum of steps / cores): 1.0 is a perfect schedule; target <= 1.15.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from cicd.sandbox import copy_project  # noqa: E402 - after the path set-up above

INV = str(Path(sys.executable).parent / "inv")


def run(project: Path, *args: str) -> tuple[float, subprocess.CompletedProcess[str]]:
    env = {**os.environ, "CICD_LOCAL_PORT": "0", "CICD_TOOLS_DIR": str(ROOT / ".cicd" / "tools")}
    start = time.perf_counter()
    proc = subprocess.run([INV, *args], cwd=project, env=env, capture_output=True, text=True, check=False)
    return time.perf_counter() - start, proc


def last_report(project: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((project / ".cicd" / "runs" / "latest" / "report.json").read_text())
    return data


def node_id(step: dict[str, Any]) -> str:
    return str(step["name"]) + (f":{step['env']}" if step["env"] else "")


def step_sum(report: dict[str, Any]) -> float:
    return sum(float(s["duration_s"]) for s in report["steps"] if not s["name"].startswith("approve"))


def describe(
    label: str, wall: float, proc: subprocess.CompletedProcess[str], report: dict[str, Any], cores: int
) -> None:
    durations = {node_id(s): float(s["duration_s"]) for s in report["steps"]}
    ran = {k: v for k, v in durations.items() if not k.startswith("approve")}
    total = sum(ran.values())
    longest_name, longest = max(ran.items(), key=lambda item: item[1])
    bound = max(longest, total / cores)
    cached = sorted(node_id(s) for s in report["steps"] if s["status"] == "cached")
    reran = sorted(node_id(s) for s in report["steps"] if s["status"] in ("passed", "failed"))
    print(f"{label:<32} wall {wall:6.1f} s · exit {proc.returncode} · {report['status']}")
    print(f"{'':<32} sum of steps {total:.1f} s · longest {longest_name} {longest:.1f} s · cores {cores}")
    print(f"{'':<32} wall / max(longest, sum/cores) = {wall:.1f} / {bound:.1f} = {wall / bound:.2f}")
    print(f"{'':<32} cached {len(cached)}: {', '.join(cached) or '-'}")
    print(f"{'':<32} ran {len(reran)}: {', '.join(f'{n} {durations[n]:.1f} s' for n in reran) or '-'}")


def reran_tests(report: dict[str, Any]) -> list[str]:
    """The tests the run's test steps ran (their ``selected`` detail), empty when they were served from the cache."""
    tests: list[str] = []
    for step in report["steps"]:
        if step["status"] in ("passed", "failed"):
            tests.extend(step.get("details", {}).get("selected", []))
    return sorted(tests)


def goal(label: str, figure: float, target: float) -> None:
    verdict = "met" if figure <= target else "NOT met"
    print(f"{'':<32} goal {label} <= {target:g} s: {figure:.2f} s, {verdict}")


def load_average() -> str:
    try:
        return " ".join(f"{x:.2f}" for x in os.getloadavg())
    except OSError:  # pragma: no cover - platforms without getloadavg
        return "unknown"


def settle(limit: float = 1.0, longest: float = 120.0) -> None:
    """Wait (at most ``longest`` seconds) for the one-minute load average to fall below ``limit``: a sub-second
    figure taken while the cold run's processes still hold the cores measures them, not the step cache."""
    start = time.monotonic()
    while time.monotonic() - start < longest:
        try:
            if os.getloadavg()[0] < limit:
                break
        except OSError:  # pragma: no cover - platforms without getloadavg
            break
        time.sleep(2)
    print(f"{'waited for the load to settle':<32} {time.monotonic() - start:.0f} s · load average {load_average()}")


def latency(url: str, count: int = 200) -> tuple[float, float]:
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    samples = []
    for _ in range(count):
        start = time.perf_counter()
        with opener.open(url, timeout=10) as resp:
            resp.read()
        samples.append((time.perf_counter() - start) * 1000)
    samples.sort()
    return statistics.median(samples), samples[int(len(samples) * 0.99) - 1]


def pr_checks(project: Path, cores: int) -> None:
    """The `inv pr-checks` figures: cold, nothing changed, one handler file changed, only Markdown changed."""
    print(f"{'load average':<32} {load_average()} (1, 5, 15 min) · cores {cores}")
    wall, proc = run(project, "pr-checks", "--jobs", str(cores))
    report = last_report(project)
    describe("inv pr-checks (cold)", wall, proc, report, cores)
    goal("cold pr-checks wall", wall, 90)
    goal("cold pr-checks sum of steps", step_sum(report), 180)
    settle()
    repeats = [run(project, "pr-checks", "--jobs", str(cores)) for _ in range(5)]  # a sub-second figure: median
    wall, proc = sorted(repeats, key=lambda sample: sample[0])[len(repeats) // 2]
    describe("inv pr-checks (nothing changed)", wall, proc, last_report(project), cores)
    print(f"{'':<32} median of {len(repeats)}: {', '.join(f'{w:.2f}' for w, _ in repeats)} s")
    goal("nothing changed", wall, 0.5)
    # A comment as the first line: a change every check accepts (one appended after the last function
    # would fail `ruff format`, and the run would measure a failure).
    handler = project / "functions" / "latest_apk" / "handler.py"
    original = handler.read_text()
    handler.write_text("# changed by the benchmark\n" + original)
    wall, proc = run(project, "pr-checks", "--jobs", str(cores))
    report = last_report(project)
    describe("inv pr-checks (handler changed)", wall, proc, report, cores)
    goal("one handler file changed", wall, 20)
    tests = reran_tests(report)
    print(f"{'':<32} tests rerun ({len(tests)}):")
    for test in tests:
        name = test.split("@", 1)[0]  # the id without its xdist group
        print(f"{'':<34}{name if len(name) <= 150 else name[:147] + '...'}")
    handler.write_text(original)
    run(project, "pr-checks", "--jobs", str(cores))  # back to the recorded state
    readme = project / "README.md"
    readme.write_text(readme.read_text() + "\nA sentence added by the benchmark.\n")
    wall, proc = run(project, "pr-checks", "--jobs", str(cores))
    describe("inv pr-checks (Markdown changed)", wall, proc, last_report(project), cores)
    goal("only Markdown changed", wall, 5)


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--skip-pipeline", action="store_true", help="only the pr-checks figures")
    args = parser.parse_args()
    cores = args.jobs
    with tempfile.TemporaryDirectory(prefix="cicd-bench-") as tmp:
        project = copy_project(Path(tmp) / "project", share_node_modules=True)
        try:
            lists = [run(project, "--list")[0] for _ in range(5)]
            print(f"{'inv --list':<32} median {statistics.median(lists):.3f} s (target < 0.5 s)")

            pr_checks(project, cores)
            if args.skip_pipeline:
                return 0

            wall, proc = run(project, "pipeline", "--jobs", str(cores), "--no-cache")
            describe("inv pipeline (cold, no cache)", wall, proc, last_report(project), cores)
            goal("cold pipeline wall", wall, 120)
            wall, proc = run(project, "pipeline", "--jobs", str(cores))
            describe("inv pipeline (warm)", wall, proc, last_report(project), cores)
            wall, proc = run(project, "deploy", "--env", "dev")
            step = last_report(project)["steps"][0]
            print(
                f"{'redeploy of unchanged dev':<32} wall {wall:.2f} s · step {step['duration_s']:.2f} s · "
                f"{step['reason']}"
            )
            recorded = sorted((project / ".cicd" / "runs").glob("[0-9]*/outputs/dev.json"))  # the newest deploy's
            outputs = json.loads(recorded[-1].read_text())
            p50, p99 = latency(outputs["api_url"] + "health")
            print(f"{'local API GET /health (200)':<32} p50 {p50:.1f} ms · p99 {p99:.1f} ms (target p50 < 50 ms)")
            p50, p99 = latency(outputs["api_url"] + "apk/latest")
            print(f"{'local API GET /apk/latest (200)':<32} p50 {p50:.1f} ms · p99 {p99:.1f} ms")
        finally:
            run(project, "local.down")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
