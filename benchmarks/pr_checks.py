"""Benchmark: `inv pr-checks` cold, its parallel efficiency, and `inv --list` start-up time.

Prints figures; asserts nothing (speed targets belong here, never in timed tests).

    uv run python benchmarks/pr_checks.py [--jobs N]

Parallel efficiency = wall / max(longest step, sum of steps / cores): 1.0 is a perfect schedule; target <= 1.15.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
INV = str(Path(sys.executable).parent / "inv")


def timed(cmd: list[str]) -> tuple[float, int]:
    start = time.perf_counter()
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, check=False)
    return time.perf_counter() - start, proc.returncode


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 1)
    args = parser.parse_args()

    list_times = [timed([INV, "--list"])[0] for _ in range(5)]
    wall, code = timed([INV, "pr-checks", "--jobs", str(args.jobs)])
    report = json.loads((ROOT / ".cicd" / "runs" / "latest" / "report.json").read_text())
    durations = {s["name"] + (f":{s['env']}" if s["env"] else ""): float(s["duration_s"]) for s in report["steps"]}
    total = sum(durations.values())
    longest_name, longest = max(durations.items(), key=lambda item: item[1])
    cores = args.jobs
    bound = max(longest, total / cores)
    print(f"inv --list            median {statistics.median(list_times):.3f} s (target < 0.5 s)")
    print(f"inv pr-checks         wall {wall:.1f} s, exit {code}, status {report['status']}")
    print(f"  steps               {len(durations)}: " + ", ".join(f"{k} {v:.1f}s" for k, v in durations.items()))
    print(f"  sum of steps        {total:.1f} s")
    print(f"  longest step        {longest_name} {longest:.1f} s")
    print(f"  cores (jobs)        {cores}")
    print(f"  wall / max(longest, sum/cores) = {wall:.1f} / {bound:.1f} = {wall / bound:.2f} (target <= 1.15)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
