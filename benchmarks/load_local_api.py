"""Load on the local API: 1,000 requests against an environment deployed to the local target; zero 5xx, p50/p99.

The requests cycle through a fixed mix of what clients send, good and bad: ``/health``, ``/apk/latest`` (with and
without ``expires``), a version lookup, malformed versions, out-of-range and repeated ``expires``, an unknown path,
a long query string. They go one after another over one keep-alive connection to ``127.0.0.1`` (a bounded loop, at
most 10,000 requests; nothing but localhost is ever contacted). The script prints the answers by status, p50, p99
and max latency overall and per kind of request, and exits 1 if any answer is a 5xx or missing.

Deploy first, then run it::

    uv run inv pipeline
    uv run python benchmarks/load_local_api.py [--env dev] [--requests 1000]

``--sandbox`` deploys a throw-away copy of the project instead (its own local AWS on a free port; a few minutes),
which is what CI can run. Exit codes: 0 no 5xx, 1 a 5xx or a dropped request, 2 nothing deployed / bad arguments.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter, defaultdict
from pathlib import Path
from urllib.parse import urlsplit

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

MAX_REQUESTS = 10_000
LOCAL_HOSTS = ("127.0.0.1", "localhost")
MIX: tuple[tuple[str, str], ...] = (
    ("health", "/health"),
    ("latest", "/apk/latest"),
    ("latest-expires", "/apk/latest?expires=60"),
    ("version", "/apk/0.0.1"),
    ("latest", "/apk/latest"),
    ("bad-version", "/apk/not-a-version"),
    ("bad-expires", "/apk/latest?expires=3601"),
    ("bad-expires", "/apk/latest?expires=abc"),
    ("bad-expires", "/apk/latest?expires=60&expires=120"),
    ("unknown-path", "/nothing-here"),
    ("long-query", "/apk/latest?filler=" + "x" * 2000),
)


class Failure(Exception):
    """A one-line reason to stop, with the exit code."""

    def __init__(self, message: str, code: int) -> None:
        super().__init__(message)
        self.code = code


def api_url(project: Path, env: str) -> str:
    """The local API URL the deploy recorded for ``env`` in ``project``."""
    outputs = project / ".cicd" / "outputs" / f"local-{env}.json"
    try:
        url = str(json.loads(outputs.read_text(encoding="utf-8"))["api_url"])
    except (OSError, ValueError, KeyError):
        raise Failure(
            f"nothing is deployed to {env} on the local target ({outputs} is missing): "
            "run `uv run inv pipeline` first, or pass --sandbox",
            2,
        ) from None
    if urlsplit(url).hostname not in LOCAL_HOSTS:
        raise Failure(f"{url} is not a localhost URL: this benchmark only loads the local target", 2)
    return url


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))]


def load(url: str, requests: int) -> int:
    """Send ``requests`` requests from the mix; print the figures; return the number of 5xx or dropped answers."""
    parts = urlsplit(url)
    host, port, base = parts.hostname or "127.0.0.1", parts.port or 80, parts.path.rstrip("/")
    connection = http.client.HTTPConnection(host, port, timeout=60)
    statuses: Counter[int] = Counter()
    latency: dict[str, list[float]] = defaultdict(list)
    failures: list[str] = []
    started = time.perf_counter()
    for number in range(requests):  # bounded: at most MAX_REQUESTS, checked by the caller
        kind, path = MIX[number % len(MIX)]
        began = time.perf_counter()
        try:
            connection.request("GET", base + path)
            answer = connection.getresponse()
            answer.read()
            status = answer.status
        except (OSError, http.client.HTTPException) as err:
            connection.close()
            connection = http.client.HTTPConnection(host, port, timeout=60)
            status = 0
            failures.append(f"{kind}: no answer ({err.__class__.__name__})")
        elapsed = (time.perf_counter() - began) * 1000
        statuses[status] += 1
        latency[kind].append(elapsed)
        latency["all"].append(elapsed)
        if status >= 500:
            failures.append(f"{kind}: {status}")
    wall = time.perf_counter() - started
    connection.close()

    print(f"{requests} requests to {url} in {wall:.1f} s ({requests / wall:.0f} requests/s)")
    print("answers: " + ", ".join(f"{status or 'none'} x{count}" for status, count in sorted(statuses.items())))
    print(f"{'kind':<14} {'n':>5} {'p50 ms':>8} {'p99 ms':>8} {'max ms':>8}")
    for kind in ["all", *sorted(k for k in latency if k != "all")]:
        values = latency[kind]
        print(
            f"{kind:<14} {len(values):>5} {statistics.median(values):>8.1f} "
            f"{percentile(values, 0.99):>8.1f} {max(values):>8.1f}"
        )
    bad = sum(count for status, count in statuses.items() if status >= 500 or status == 0)
    print(f"5xx or dropped: {bad}" + (f" (first: {failures[0]})" if failures else ""))
    return bad


def deploy_sandbox(project: Path) -> None:
    """Run the pipeline's delivery half in a throw-away copy, on its own local AWS (a free port)."""
    environ = {**os.environ, "CICD_LOCAL_PORT": "0", "CICD_TOOLS_DIR": str(ROOT / ".cicd" / "tools")}
    print("deploying a throw-away copy of the project (inv pipeline --from synth)...", flush=True)
    proc = subprocess.run(
        [str(ROOT / ".venv" / "bin" / "inv"), "pipeline", "--from", "synth"],
        cwd=project,
        env=environ,
        capture_output=True,
        text=True,
        check=False,
    )
    if proc.returncode != 0:
        raise Failure(f"the sandbox pipeline failed (exit {proc.returncode}): {proc.stdout[-500:]}", 2)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--env", default="dev", choices=("dev", "preprod", "prod"))
    parser.add_argument("--requests", type=int, default=1000)
    parser.add_argument("--project", type=Path, default=ROOT, help="the checkout whose local target to load")
    parser.add_argument("--sandbox", action="store_true", help="deploy a throw-away copy first (minutes)")
    args = parser.parse_args(argv)
    if not 1 <= args.requests <= MAX_REQUESTS:
        print(f"error: --requests must be between 1 and {MAX_REQUESTS}", file=sys.stderr)
        return 2
    try:
        if not args.sandbox:
            return 1 if load(api_url(args.project.resolve(), args.env), args.requests) else 0
        from cicd.sandbox import copy_project

        with tempfile.TemporaryDirectory(prefix="load-local-api-") as workdir:
            project = copy_project(Path(workdir) / "project", share_node_modules=True)
            try:
                deploy_sandbox(project)
                return 1 if load(api_url(project, args.env), args.requests) else 0
            finally:
                subprocess.run(
                    [str(ROOT / ".venv" / "bin" / "inv"), "local.down"],
                    cwd=project,
                    capture_output=True,
                    check=False,
                )
    except Failure as err:
        print(f"error: {err}", file=sys.stderr)
        return err.code


if __name__ == "__main__":
    sys.exit(main())
