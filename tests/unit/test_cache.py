"""The step cache: keys follow content, tools and configuration; only passes are served; safe and bounded."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from cicd import cache as cache_mod
from cicd.cache import StepCache, glob_regex
from cicd.context import StepContext
from cicd.pipeline import MODEL, Model, Node, Step
from cicd.results import Status
from cicd.runner import Runner, RunOptions


def keys(root: Path) -> dict[str, str]:
    store = StepCache(root)
    return {s.name: store.key(s, Node(s.name), "local") for s in MODEL.steps if s.cacheable and not s.per_env}


def changed(before: dict[str, str], after: dict[str, str]) -> set[str]:
    return {name for name in before if before[name] != after[name]}


def test_glob_semantics() -> None:
    assert glob_regex("functions/**/*.py").match("functions/latest_apk/handler.py")
    assert glob_regex("**/*.py").match("tasks.py")
    assert not glob_regex("cicd/*.py").match("cicd/steps/x.py")
    assert glob_regex("**").match("README.md")


PROJECT_FILES = {
    "pyproject.toml": '[project]\nname = "x"\nversion = "0.1.0"\n\n[tool.cicd]\n',
    "requirements.lock": "boto3==1.35.0 --hash=sha256:00\n",
    "functions/latest_apk/handler.py": "def handler(event, context):\n    return {}\n",
    "cicd/__init__.py": "",
    "infra/app.py": "",
    "tests/test_x.py": "def test_x() -> None:\n    pass\n",
    "tasks.py": "",
    "README.md": "# x\n",
    "docs/security.md": "# security\n",
    "openapi.yaml": "openapi: 3.1.0\n",
    "flutter/pubspec.yaml": "name: x\n",
    "flutter/lib/main.dart": "void main() {}\n",
}


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fixture project with a file of each kind the model's steps read (no git: the cache lists the files itself),
    on a machine without the Flutter SDK."""
    monkeypatch.setattr(cache_mod, "_flutter_version", lambda: "absent")
    root = tmp_path / "project"
    for name, text in PROJECT_FILES.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)
    return root


def test_handler_change_invalidates_exactly_the_steps_that_read_it(project: Path) -> None:
    before = keys(project)
    handler = project / "functions" / "latest_apk" / "handler.py"
    handler.write_text(handler.read_text() + "\n# changed\n")
    after = keys(project)
    expected = {
        s.name
        for s in MODEL.steps
        if s.cacheable
        and not s.per_env
        and StepCache(project).matched_inputs(s).count(str(handler.relative_to(project)))
    }
    assert changed(before, after) == expected
    assert {"lint", "typecheck", "unit-test", "sast", "secrets-scan"} <= expected
    assert "sbom" not in expected and "sca" not in expected
    assert "flutter-check" not in expected


def test_markdown_change_reruns_only_what_reads_markdown(project: Path) -> None:
    before = keys(project)
    (project / "README.md").write_text("# changed\n")
    assert changed(before, keys(project)) == {"secrets-scan", "api-contract"}  # the README holds the API table
    before = keys(project)
    (project / "docs" / "security.md").write_text("# changed\n")
    assert changed(before, keys(project)) == {"secrets-scan"}


def test_tool_version_change_invalidates_its_steps(project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    before = keys(project)
    real = cache_mod.tool_version
    monkeypatch.setattr(cache_mod, "tool_version", lambda name, root: "99.0" if name == "ruff" else real(name, root))
    assert changed(before, keys(project)) == {"lint"}


def test_config_change_invalidates_every_step(project: Path) -> None:
    before = keys(project)
    pyproject = project / "pyproject.toml"
    pyproject.write_text(pyproject.read_text().replace("[tool.cicd]\n", "[tool.cicd]\napproval = false\n", 1))
    assert changed(before, keys(project)) == set(before)


class Counter:
    def __init__(self, fail: bool = False) -> None:
        self.calls = 0
        self.fail = fail

    def __call__(self, ctx: StepContext) -> None:
        self.calls += 1
        (ctx.run_dir / "reports").mkdir(exist_ok=True)
        (ctx.run_dir / "reports" / "out.txt").write_text(f"call {self.calls}")
        ctx.note("did the work")
        if self.fail:
            from cicd.errors import StepFailed

            raise StepFailed("broken")


def toy_run(root: Path, fn: Any, use_cache: bool = True, environ: dict[str, str] | None = None) -> Any:
    if not (root / "src.txt").exists():
        (root / "src.txt").write_text("v1")
    model = Model(
        (Step("work", "tests.unit.test_cache:x", "doc", stage="s", inputs=("src.txt",), outputs=("reports/out.txt",)),)
    )
    runner = Runner(
        root, model, [Node("work")], RunOptions(use_cache=use_cache), environ=environ or {}, functions={"work": fn}
    )
    return runner, runner.run().steps[0]


def test_pass_is_served_from_cache_with_log_and_outputs(tmp_path: Path) -> None:
    fn = Counter()
    toy_run(tmp_path, fn)
    runner, result = toy_run(tmp_path, fn)
    assert fn.calls == 1
    assert result.status is Status.CACHED and "inputs unchanged" in (result.reason or "")
    assert (runner.run_dir / "reports" / "out.txt").read_text() == "call 1"
    assert "did the work" in (tmp_path / result.log).read_text()
    (tmp_path / "src.txt").write_text("v2")
    _, again = toy_run(tmp_path, fn)
    assert fn.calls == 2 and again.status is Status.PASSED
    _, forced = toy_run(tmp_path, fn, use_cache=False)
    assert fn.calls == 3 and forced.status is Status.PASSED


def test_a_skip_is_served_as_a_skip_never_as_a_pass(tmp_path: Path) -> None:
    from cicd.results import Outcome

    calls: list[int] = []

    def offline(ctx: StepContext) -> Outcome:
        calls.append(1)
        return Outcome.skipped("the advisory service cannot be reached")

    model = Model((Step("sca", "m:sca", "doc", stage="s", inputs=("src.txt",), may_skip="offline"),))
    (tmp_path / "src.txt").write_text("v1")
    results = [
        Runner(tmp_path, model, [Node("sca")], RunOptions(), environ={}, functions={"sca": offline}).run().steps[0]
        for _ in range(2)
    ]
    assert len(calls) == 1
    assert results[1].status is Status.SKIPPED
    assert results[1].reason and results[1].reason.startswith("the advisory service cannot be reached (cached")


def test_failure_is_never_cached(tmp_path: Path) -> None:
    fn = Counter(fail=True)
    toy_run(tmp_path, fn)
    _, result = toy_run(tmp_path, fn)
    assert fn.calls == 2 and result.status is Status.FAILED


def test_corrupt_entry_is_ignored_with_a_warning_and_rebuilt(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    fn = Counter()
    toy_run(tmp_path, fn)
    (entry,) = [p for p in (tmp_path / ".cicd/cache/steps").glob("*/*") if p.is_dir()]
    (entry / "result.json").write_text("{garbage")
    _, result = toy_run(tmp_path, fn)
    assert fn.calls == 2 and result.status is Status.PASSED
    assert "is corrupt" in capsys.readouterr().out
    assert "is corrupt" in (tmp_path / result.log).read_text()
    _, third = toy_run(tmp_path, fn)
    assert third.status is Status.CACHED and fn.calls == 2


MAIN = {cache_mod.SIGNING_VARIABLE: "main-only-signing-key"}


def only_entry(root: Path) -> Path:
    (entry,) = [p for p in (root / ".cicd/cache/steps").glob("*/*") if p.is_dir()]
    return entry


def test_with_a_signing_key_only_entries_it_signed_are_served(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    fn = Counter()
    toy_run(tmp_path, fn)  # a pull request's run (no key) stores an unsigned entry
    assert not (only_entry(tmp_path) / cache_mod.SIGNATURE).exists()
    _, result = toy_run(tmp_path, fn, environ=MAIN)  # main does not trust it: it runs the step and signs the result
    assert fn.calls == 2 and result.status is Status.PASSED
    assert "is not signed with" in capsys.readouterr().out
    assert "is not signed with CICD_CACHE_SECRET; ignored and rebuilt" in (tmp_path / result.log).read_text()
    assert (only_entry(tmp_path) / cache_mod.SIGNATURE).is_file()
    _, signed = toy_run(tmp_path, fn, environ=MAIN)
    assert fn.calls == 2 and signed.status is Status.CACHED
    _, on_a_branch = toy_run(tmp_path, fn)  # a run without the key is served main's signed entry
    assert fn.calls == 2 and on_a_branch.status is Status.CACHED


@pytest.mark.parametrize("tamper", ["result", "output", "other key"])
def test_a_tampered_or_foreign_signed_entry_is_not_served(tmp_path: Path, tamper: str) -> None:
    fn = Counter()
    toy_run(tmp_path, fn, environ=MAIN)
    entry = only_entry(tmp_path)
    environ = MAIN
    if tamper == "result":  # a planted result keeps its old signature
        data = json.loads((entry / "result.json").read_text())
        (entry / "result.json").write_text(json.dumps({**data, "reason": "planted"}))
    elif tamper == "output":
        (entry / "outputs" / "reports" / "out.txt").write_text("planted")
    else:  # signed, but with another key
        environ = {cache_mod.SIGNING_VARIABLE: "someone-elses-key"}
    _, result = toy_run(tmp_path, fn, environ=environ)
    assert fn.calls == 2 and result.status is Status.PASSED


def test_verification_without_the_secret_runs_every_step_with_a_warning(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    fn = Counter()
    toy_run(tmp_path, fn, environ=MAIN)
    _, result = toy_run(tmp_path, fn, environ={cache_mod.VERIFY_VARIABLE: "true"})  # the secret was forgotten
    assert fn.calls == 2 and result.status is Status.PASSED
    assert "CICD_CACHE_VERIFY is set" in capsys.readouterr().out
    assert "cached results cannot be verified, so the step runs" in (tmp_path / result.log).read_text()
    _, unchecked = toy_run(tmp_path, fn, environ={cache_mod.VERIFY_VARIABLE: "false"})
    assert fn.calls == 2 and unchecked.status is Status.CACHED


CONCURRENT = """
import sys
from pathlib import Path
from cicd.pipeline import Model, Node, Step
from cicd.runner import RunOptions, Runner

def work(ctx):
    (ctx.run_dir / "reports").mkdir(exist_ok=True)
    (ctx.run_dir / "reports" / "out.txt").write_text("x" * 100000)

root = Path(sys.argv[1])
model = Model((Step("work", "m:work", "doc", stage="s", inputs=("src.txt",), outputs=("reports/out.txt",)),))
report = Runner(root, model, [Node("work")], RunOptions(), environ={}, functions={"work": work}).run()
print(report.steps[0].status.value)
"""


@pytest.mark.component  # runs two processes at once
def test_two_concurrent_runs_do_not_corrupt_the_cache(tmp_path: Path) -> None:
    (tmp_path / "src.txt").write_text("v1")
    paths = (str(Path(__file__).resolve().parents[2]), os.environ.get("PYTHONPATH", ""))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in paths if p)}  # kept: the selection follows it
    procs = [
        subprocess.Popen([sys.executable, "-c", CONCURRENT, str(tmp_path)], stdout=subprocess.PIPE, text=True, env=env)
        for _ in range(4)
    ]
    outs = [p.communicate(timeout=120)[0] for p in procs]
    assert all(p.returncode == 0 for p in procs)
    assert all(o.strip().splitlines()[-1] in ("passed", "cached") for o in outs), outs
    entries = [p for p in (tmp_path / ".cicd/cache/steps").glob("*/*") if p.is_dir()]
    assert len(entries) == 1
    data = json.loads((entries[0] / "result.json").read_text())
    assert data["status"] == "passed" and len((entries[0] / "outputs/reports/out.txt").read_text()) == 100000
    assert not list((tmp_path / ".cicd/cache/steps").glob(".tmp-*"))


def test_cache_is_bounded_oldest_evicted(tmp_path: Path) -> None:
    store = StepCache(tmp_path, environ={"CICD_CACHE_MAX_MB": "0"})
    store.max_bytes = 250
    for i in range(4):
        entry = store.dir / f"{i:02d}" / f"{i:02d}key"
        entry.mkdir(parents=True)
        (entry / "log.txt").write_text("x" * 100)
        os.utime(entry, (1000 + i, 1000 + i))
    store.evict()
    left = sorted(p.name for p in store.dir.glob("*/*"))
    assert left == ["02key", "03key"]
    assert StepCache(tmp_path).clear() == 2


def test_iac_scan_is_keyed_on_what_it_scans_in_the_assembly(project: Path) -> None:
    """The scan reruns when the templates change, not when only the function's code (its asset hash) does; the
    synth, which packages that code, reruns."""
    import hashlib

    calls = {"synth": 0, "iac-scan": 0}

    def synth(ctx: StepContext) -> None:
        calls["synth"] += 1
        code = (ctx.root / "functions" / "latest_apk" / "handler.py").read_bytes()
        asset = hashlib.sha256(code).hexdigest()
        assembly = ctx.run_dir / "cdk.out"
        (assembly / f"asset.{asset}").mkdir(parents=True)
        (assembly / f"asset.{asset}" / "handler.py").write_bytes(code)
        (assembly / "manifest.json").write_text(json.dumps({"artifacts": {}}))
        memory = (ctx.root / "infra" / "app.py").read_text()
        template = {"Resources": {"Fn": {"Properties": {"Code": {"S3Key": f"{asset}.zip"}, "Memory": memory}}}}
        (assembly / "stack.template.json").write_text(json.dumps(template))

    def scan(ctx: StepContext) -> None:
        calls["iac-scan"] += 1
        assert (ctx.run_dir / "cdk.out" / "manifest.json").is_file()

    def run() -> dict[str, Status]:
        nodes = [Node("synth"), Node("iac-scan")]
        runner = Runner(project, MODEL, nodes, RunOptions(), environ={}, functions={"synth": synth, "iac-scan": scan})
        return {r.name: r.status for r in runner.run().steps}

    assert run() == {"synth": Status.PASSED, "iac-scan": Status.PASSED}
    handler = project / "functions" / "latest_apk" / "handler.py"
    handler.write_text(handler.read_text() + "# only the code changed\n")
    assert run() == {"synth": Status.PASSED, "iac-scan": Status.CACHED}
    (project / "infra" / "app.py").write_text("256\n")  # the template changes
    assert run() == {"synth": Status.PASSED, "iac-scan": Status.PASSED}
    assert run() == {"synth": Status.CACHED, "iac-scan": Status.CACHED}
    assert calls == {"synth": 3, "iac-scan": 2}
    # A CI job's `inv synth && inv iac-scan`: two runs, the scan's without an assembly of its own. Its key is that of
    # the assembly in the synth step's cache entry, the same as in one run, so the entry made there serves it.
    handler.write_text(handler.read_text() + "# the code again\n")
    alone = Runner(project, MODEL, [Node("synth")], RunOptions(), environ={}, functions={"synth": synth})
    assert alone.run().steps[0].status is Status.PASSED
    scan_alone = Runner(project, MODEL, [Node("iac-scan")], RunOptions(), environ={}, functions={"iac-scan": scan})
    assert scan_alone.run().steps[0].status is Status.CACHED
    assert calls == {"synth": 4, "iac-scan": 2}
