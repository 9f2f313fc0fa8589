"""``inv adapters.run --tool github|gitlab|bitbucket --event pr|main``: a CI tool's own local runner on this checkout.

What it does, so a reader can watch each tool run this pipeline on a laptop:

1. clones this checkout's commit into ``.cicd/adapter-runs/<tool>-<event>/project``, puts the committed adapter where
   the tool expects it (``.github/workflows/pipeline.yml``, ``.gitlab-ci.yml``, ``bitbucket-pipelines.yml``) and
   commits it there (the tools run what is committed);
2. runs the tool's runner on it without Docker (``act`` in self-hosted mode with local stand-ins for the pinned
   actions, ``gitlab-ci-local`` with the shell executor, ``bb-run`` in host mode one clone per step: see
   :mod:`cicd.adapters.runners` and :mod:`cicd.adapters.bbrun`) for a pull request or a push to ``main``, with
   ``CICD_TARGET=local`` as the tool's own variable (act's ``--var``, gitlab-ci-local's ``--variable``, bb-run's
   ``-v``), so every deploy job deploys to one embedded AWS that all the jobs share (``CICD_LOCAL_HOME``);
3. seeds the tool's cache with this checkout's step cache (``.cicd/cache``), so checks that already passed here are
   served from it, as they would be from the tool's cache on CI;
4. without a Flutter SDK on ``PATH``, puts the stand-in ``flutter`` (:mod:`cicd.adapters.flutter_stand_in`) there
   and says so: it writes a placeholder APK and web build, so the Flutter hand-off runs end to end, and sets the
   tool's variable ``CICD_REQUIRE_FLUTTER=0`` (the stand-in checks nothing: ``flutter-check`` runs its offline half
   and says the SDK half did not run);
5. stops the shared local AWS at the end (``keep`` leaves it running, to look at the environments).

The jobs' approval gate: with ``[tool.cicd] approval = true`` the runners that model a manual gate stop there
(gitlab-ci-local leaves ``when: manual`` jobs alone; bb-run does not start a ``trigger: manual`` step); ``release``
(``--release`` on the task) releases it, as a person would.
"""

from __future__ import annotations

import os
import re
import shutil
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Final

from cicd import command
from cicd.adapters import bbrun, bitbucket, flutter_stand_in, github, gitlab, runners
from cicd.errors import UsageError
from cicd.sandbox import git

TOOLS: Final = {"github": github.PATH, "gitlab": gitlab.PATH, "bitbucket": bitbucket.PATH}
EVENTS: Final = ("pr", "main")
RUNS: Final = Path(".cicd") / "adapter-runs"
REMOTE: Final = "https://gitlab.example.invalid/example/apk-pipeline.git"
ACT_RESULT: Final = re.compile(r"\[[^/\]]+/([^\]]+?)\s*\]\s+\S+\s+Job (succeeded|failed)")
NO_SDK: Final = {"CICD_REQUIRE_FLUTTER": "0"}
"""With the stand-in the Flutter checks cannot run: the jobs say so (the offline half runs) instead of failing."""
GITLAB_RESULT: Final = re.compile(r"^\s*(PASS|FAIL|WARN)\s+(\S+)", re.MULTILINE)


@dataclass
class LocalRun:
    tool: str
    event: str
    returncode: int
    output: str
    project: Path
    jobs: dict[str, str] = field(default_factory=dict)
    """``{job: passed|failed}`` as the runner reported them."""
    stand_in_flutter: bool = False
    store: Path | None = None
    stopped_at: list[str] = field(default_factory=list)
    """The jobs a manual gate held when the pipeline first stopped (released afterwards with ``release``)."""


def check_choice(tool: str, event: str) -> None:
    if tool not in TOOLS:
        raise UsageError(f"unknown tool '{tool}' for a local run", hint=f"choose one of: {', '.join(TOOLS)}")
    if event not in EVENTS:
        raise UsageError(f"unknown event '{event}'", hint=f"choose one of: {', '.join(EVENTS)}")


def prepare(root: Path, tool: str, folder: Path, text: str | None = None) -> Path:
    """A clone of ``root``'s commit with the committed adapter of ``tool`` (or ``text``) where its tool expects it,
    committed."""
    project = folder / "project"
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    git(folder, "clone", "-q", str(root), str(project))
    if not (project / ".venv").exists() and not (project / ".venv").is_symlink():
        (project / ".venv").symlink_to((root / ".venv").resolve())
    path = TOOLS[tool]
    (project / path).parent.mkdir(parents=True, exist_ok=True)
    if text is None:
        shutil.copy2(root / "ci-adapters" / tool / path, project / path)
    else:
        (project / path).write_text(text, encoding="utf-8")
    git(project, "add", "-A")
    git(project, "commit", "-qm", f"the {tool} adapter, where {tool} reads it", "--allow-empty")
    if tool == "gitlab":
        git(project, "remote", "set-url", "origin", REMOTE)
    return project


def stand_in_bin(folder: Path) -> Path | None:
    """A folder with the stand-in ``flutter`` when no SDK is on PATH (None when there is one)."""
    if shutil.which("flutter") is not None:
        return None
    return write_stand_in(folder / "bin")


def write_stand_in(bin_dir: Path) -> Path:
    """Write the stand-in ``flutter`` command into ``bin_dir``; returns the folder (to put first on PATH)."""
    bin_dir.mkdir(parents=True, exist_ok=True)
    script = bin_dir / "flutter"
    script.write_text(  # pip's /bin/sh trampoline: a Python program to whoever reads its first lines (the
        # affected-only test selection then follows it)
        f"#!/bin/sh\n'''exec' \"{sys.executable}\" \"$0\" \"$@\"\n' '''\n"
        f"import runpy\nrunpy.run_path({flutter_stand_in.__file__!r}, run_name='__main__')\n",
        encoding="utf-8",
    )
    script.chmod(0o755)
    return bin_dir


def job_environment(root: Path, folder: Path) -> dict[str, str]:
    """What every job gets from the runner's environment: one shared local AWS, the installed scanners."""
    return {
        "CICD_LOCAL_HOME": str(folder / "local-aws"),
        "CICD_LOCAL_PORT": os.environ.get("CICD_LOCAL_PORT", "0"),
        "CICD_TOOLS_DIR": os.environ.get("CICD_TOOLS_DIR") or str(root / ".cicd" / "tools"),
        "UV_NO_SYNC": "1",
        "COLUMNS": "400",
    }


@dataclass(frozen=True)
class _Setup:
    """What one local run needs: where it runs, what every job gets, what the tool's variables say."""

    root: Path
    project: Path
    folder: Path
    event: str
    env: dict[str, str]
    path: str
    variables: dict[str, str]
    seed: Path
    release: bool
    log: IO[str] | None
    timeout: float


def run(
    root: Path,
    tool: str,
    event: str,
    *,
    folder: Path | None = None,
    seed: Path | None = None,
    variables: Mapping[str, str] | None = None,
    release: bool = False,
    keep: bool = False,
    adapter: str | None = None,
    log: IO[str] | None = None,
    timeout: float = 2400,
) -> LocalRun:
    """Run ``tool``'s local runner for ``event`` on a clone of ``root`` (see the module docstring). ``adapter`` is a
    rendering to run instead of the committed file (the tests render one with the approval switch on)."""
    check_choice(tool, event)
    folder = folder or root / RUNS / f"{tool}-{event}"
    project = prepare(root, tool, folder, adapter)
    flutter_bin = stand_in_bin(folder)
    if flutter_bin is not None and log is not None:
        log.write("no Flutter SDK on PATH: the stand-in flutter writes a placeholder APK and web build\n")
    setup = _Setup(
        root=root,
        project=project,
        folder=folder,
        event=event,
        env=job_environment(root, folder),
        path=os.pathsep.join(p for p in (str(flutter_bin or ""), os.environ.get("PATH", "")) if p),
        # With the stand-in the Flutter checks cannot run: say so (the offline half runs) instead of failing the job
        variables={
            "CICD_TARGET": "local",
            **({"CICD_REQUIRE_FLUTTER": "0"} if flutter_bin else {}),
            **(variables or {}),
        },
        seed=seed if seed is not None else root / ".cicd" / "cache",
        release=release,
        log=log,
        timeout=timeout,
    )
    try:
        # The shared embedded AWS runs from the project's environment, started before any job: a job's own
        # environment (the hash-checked install of build and environment jobs) goes when the runner discards the
        # job's folder (act, bb-run), and a server running from deleted files answers 500.
        start_local_aws(project, setup.env)
        result = {"github": _github, "gitlab": _gitlab, "bitbucket": _bitbucket}[tool](setup)
    finally:
        if not keep:
            stop_local_aws(project, setup.env)
    result.stand_in_flutter = flutter_bin is not None
    return result


def start_local_aws(project: Path, env: Mapping[str, str]) -> None:
    command.run([str(project / ".venv" / "bin" / "inv"), "local.up"], cwd=project, env=dict(env), timeout=300)


def stop_local_aws(project: Path, env: Mapping[str, str]) -> None:
    inv = project / ".venv" / "bin" / "inv"
    if inv.exists() and (Path(env["CICD_LOCAL_HOME"]) / "server.json").is_file():
        command.run([str(inv), "local.down"], cwd=project, env=dict(env), check=False, timeout=120)


def _seed(seed: Path, dest: Path) -> None:
    if seed.is_dir():
        runners.link_tree(seed, dest)


def _github(setup: _Setup) -> LocalRun:
    store = setup.folder / "store"
    _seed(setup.seed, store / "cache" / ".cicd" / "cache")
    if (setup.root / "node_modules").is_dir():  # what the workflow's actions/cache restores: the pinned CDK CLI
        runners.link_tree(setup.root / "node_modules", store / "cache" / "node_modules")
    result = runners.run_act(
        setup.project,
        store=store,
        event="pull_request" if setup.event == "pr" else "push",
        env=setup.env,
        variables=setup.variables,
        path=setup.path,
        log=setup.log,
        timeout=setup.timeout,
    )
    jobs: dict[str, str] = {}
    for match in ACT_RESULT.finditer(runners.ANSI.sub("", result.output)):
        name, verdict = match.group(1), match.group(2)
        if jobs.get(name) != "failed":  # a matrix reports each entry: one failure fails the job
            jobs[name] = "passed" if verdict == "succeeded" else "failed"
    return LocalRun("github", setup.event, result.returncode, result.output, setup.project, jobs, store=store)


def _gitlab(setup: _Setup) -> LocalRun:
    source = "merge_request_event" if setup.event == "pr" else "push"
    variables = {**setup.env, "CI_PIPELINE_SOURCE": source, **setup.variables}
    planned = runners.gitlab_jobs(setup.project, variables=variables)
    for job in planned:
        _seed(setup.seed, runners.gitlab_cache(setup.project, f"cicd-{job}") / ".cicd" / "cache")

    def gitlab_ci_local(*jobs: str) -> command.CommandResult:
        return runners.run_gitlab_ci_local(
            setup.project,
            jobs,
            variables=variables,
            isolate=True,
            path=setup.path,
            log=setup.log,
            timeout=setup.timeout,
        )

    result = gitlab_ci_local()
    output = [result.output]
    manual = [job for job, when in planned.items() if when == "manual"]
    returncode = result.returncode
    if setup.release and manual and returncode == 0:  # a person releases the gate: the manual jobs run
        released = gitlab_ci_local(*manual)
        output.append(released.output)
        returncode = released.returncode
    text = runners.ANSI.sub("", "\n".join(output))
    jobs = {m[2]: "passed" if m[1] in ("PASS", "WARN") else "failed" for m in GITLAB_RESULT.finditer(text)}
    jobs.update({job: "manual" for job in manual if job not in jobs})
    first = runners.ANSI.sub("", output[0])
    stopped = [job for job in manual if not re.search(rf"^\s*(PASS|FAIL|WARN)\s+{re.escape(job)}\b", first, re.M)]
    return LocalRun("gitlab", setup.event, returncode, text, setup.project, jobs, stopped_at=stopped)


def _bitbucket(setup: _Setup) -> LocalRun:
    import yaml

    python = bbrun.bb_run_python(setup.root)
    store = setup.folder / "store"
    config = yaml.safe_load((setup.project / bitbucket.PATH).read_text(encoding="utf-8"))
    for name, layer in bbrun.cache_layers(config, setup.project).items():
        if name.startswith("steps-"):
            _seed(setup.seed, store / "caches" / layer)
    flutter = setup.folder / "bin" / "flutter"
    if flutter.is_file():  # bb-run's steps get PATH from the harness: its stand-ins folder comes first
        (store / "bin").mkdir(parents=True, exist_ok=True)
        shutil.copy2(flutter, store / "bin" / "flutter")
    result = bbrun.run_bb_run(
        setup.project,
        store=store,
        target=bbrun.PR_TARGET if setup.event == "pr" else bbrun.MAIN_TARGET,
        branch="feature" if setup.event == "pr" else "main",
        env=setup.env,
        variables=setup.variables,
        jobs=1 if setup.event == "main" else 2,
        python=python,
        log=setup.log,
        step_timeout=setup.timeout,
        release=setup.release,
    )
    jobs = {
        name: "passed" if run.returncode == 0 and bbrun.step_result(run) == "ok" else "failed"
        for name, run in result.steps.items()
    }
    jobs.update(dict.fromkeys(result.not_run, "not-run"))
    jobs.update(dict.fromkeys(result.held, "manual"))
    output = "\n".join(run.output for run in result.steps.values())
    return LocalRun(
        "bitbucket",
        setup.event,
        result.returncode,
        output,
        setup.project,
        jobs,
        store=store,
        stopped_at=list(result.held),
    )
