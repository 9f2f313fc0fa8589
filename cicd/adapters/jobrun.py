"""Run an adapter's jobs one fresh workspace per job, passing between them only what the tool would.

A CI job starts on a fresh machine with what its tool hands it, nothing more; ``inv pipeline`` in one workspace
cannot show what a job forgets to hand on. This runner takes the jobs *as read back from the rendered file*
(:class:`~cicd.adapters.facts.AdapterFacts`: commands, needs, what each job receives and hands on, the variables
the file sets) and runs each job's ``inv`` commands in a fresh ``git clone`` of the project, after putting into it
only the hand-offs the file says it receives. Caches are not carried (a cache may be empty on a real runner); the
installed tools are (the virtual environment, ``node_modules``, the scanners' environments), as a tool's cache of
them would be.

Jobs share one embedded AWS (``CICD_LOCAL_HOME``), the way CI jobs share an account, and run with
``CICD_TARGET=local`` (overriding the file's ``aws``), a stand-in ``flutter`` on the ``PATH`` when one is given, and
``CICD_REQUIRE_FLUTTER`` as the file sets it. A job whose commands all belong to the pull-request checks is not run
here (they are the same commands the pull-request runs execute); a failed job stops the run, as the tools do.
"""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

from cicd import pipeline
from cicd.adapters.facts import AdapterFacts, Handoff, JobFacts, upstream
from cicd.sandbox import git

RUN_TIMEOUT_S: Final = 900
GLOB_SUFFIXES: Final = ("/**/*", "/**", "/*", "/")


@dataclass
class JobRun:
    id: str
    status: str
    """``passed``, ``failed``, ``not-run`` (a job it needs failed) or ``checks`` (pull-request checks, not run here)."""
    commands: list[str] = field(default_factory=list)
    workspace: Path | None = None
    log: Path | None = None
    seconds: float = 0.0
    received: list[str] = field(default_factory=list)


@dataclass
class Runner:
    """Runs the main jobs of one adapter; see the module docstring."""

    facts: AdapterFacts
    source: Path
    """A git repository holding the commit the jobs build (each job clones it)."""
    work: Path
    environ: Mapping[str, str]
    """The base environment of every command (the caller sets PATH, CICD_LOCAL_HOME, CICD_TOOLS_DIR...)."""
    venv: Path
    shared: Sequence[str] = (".venv", "node_modules")
    """Installed-tool folders of the source checkout linked into each workspace (what a tool's cache restores)."""
    on_job: Callable[[JobRun], None] | None = None
    runs: list[JobRun] = field(default_factory=list)

    def store(self, name: str) -> Path:
        return self.work / "_handoffs" / name

    def order(self, trigger: str = "main") -> list[JobFacts]:
        jobs = self.facts.for_trigger(trigger)
        done: list[JobFacts] = []
        remaining = list(jobs)
        while remaining:
            ready = [j for j in remaining if all(n in {d.id for d in done} for n in upstream(self.facts, j, trigger))]
            if not ready:
                raise ValueError(f"{self.facts.tool}: the jobs' needs form a cycle or name unknown jobs")
            done.append(ready[0])
            remaining.remove(ready[0])
        return done

    def run(self, trigger: str = "main") -> list[JobRun]:
        failed: set[str] = set()
        for job in self.order(trigger):
            before = upstream(self.facts, job, trigger)
            if before & failed:
                failed.add(job.id)
                self._done(JobRun(job.id, "not-run", list(job.commands)))
                continue
            if is_checks_only(job):
                self._done(JobRun(job.id, "checks", list(job.commands)))
                continue
            result = self.run_job(job)
            if result.status != "passed":
                failed.add(job.id)
        return self.runs

    def _done(self, result: JobRun) -> None:
        self.runs.append(result)
        if self.on_job is not None:
            self.on_job(result)

    def run_job(self, job: JobFacts) -> JobRun:
        started = time.monotonic()
        workspace = self.work / "jobs" / job.id
        shutil.rmtree(workspace, ignore_errors=True)
        workspace.parent.mkdir(parents=True, exist_ok=True)
        git(self.work, "clone", "-q", str(self.source), str(workspace))
        for rel in self.shared:
            src = self.venv if rel == ".venv" else self.source / rel
            if src.exists() and not (workspace / rel).is_symlink() and not (workspace / rel).exists():
                (workspace / rel).symlink_to(src.resolve())
        received = [h.name for h in job.receives if self.receive(h, workspace)]
        env = {**self.environ, **{k: v for k, v in job.variables.items() if plain(v) and k != "CICD_TARGET"}}
        env["CICD_TARGET"] = "local"
        log = self.work / "logs" / f"{job.id}.log"
        log.parent.mkdir(parents=True, exist_ok=True)
        status = "passed"
        with log.open("w", encoding="utf-8") as out:
            for command in job.commands:
                out.write(f"$ uv run inv {command}\n")
                out.flush()
                proc = subprocess.run(
                    [str(self.venv / "bin" / "inv"), *shlex.split(command)],
                    cwd=workspace,
                    env=env,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    stdin=subprocess.DEVNULL,
                    timeout=RUN_TIMEOUT_S,
                    check=False,
                )
                if proc.returncode != 0:
                    out.write(f"exit {proc.returncode}\n")
                    status = "failed"
                    break
        if status == "passed":
            for handoff in job.hands_on:
                self.hand_on(handoff, workspace)
        result = JobRun(job.id, status, list(job.commands), workspace, log, time.monotonic() - started, received)
        self._done(result)
        return result

    def hand_on(self, handoff: Handoff, workspace: Path) -> None:
        """Keep ``handoff.paths`` of ``workspace`` under its name (a later hand-off of the same name replaces it)."""
        dest = self.store(handoff.name)
        shutil.rmtree(dest, ignore_errors=True)
        dest.mkdir(parents=True)
        for pattern in handoff.paths:
            base = strip_glob(pattern)
            for src in sorted(workspace.glob(base)) if any(c in base for c in "*?[") else [workspace / base]:
                if not src.exists():
                    continue
                rel = src.relative_to(workspace / handoff.root)
                target = dest / rel
                target.parent.mkdir(parents=True, exist_ok=True)
                if src.is_dir():
                    shutil.copytree(src, target, dirs_exist_ok=True, symlinks=True)
                else:
                    shutil.copy2(src, target)

    def receive(self, handoff: Handoff, workspace: Path) -> bool:
        """Copy a kept hand-off into ``workspace`` (under ``dest``); False when no job handed it on."""
        src = self.store(handoff.name)
        if not src.is_dir():
            return False
        dest = (workspace / handoff.dest).resolve()
        shutil.copytree(src, dest, dirs_exist_ok=True, symlinks=True)
        return True


def plain(value: str) -> bool:
    """True for a literal value; False for one the tool expands (``${{ }}``, ``$VAR``, ``<< >>``, ``#{}``)."""
    return not any(mark in value for mark in ("$", "<<", "#{"))


def strip_glob(pattern: str) -> str:
    for suffix in GLOB_SUFFIXES:
        if pattern.endswith(suffix) and len(pattern) > len(suffix):
            return pattern[: -len(suffix)]
    return pattern


def is_checks_only(job: JobFacts) -> bool:
    """True when every command of the job is a pull-request check (a step of the ``pr`` selection)."""
    checks = {pipeline.MODEL.step(n.step).task_command(None) for n in pipeline.select(pipeline.MODEL, "pr")}
    return bool(job.commands) and all(c in checks for c in job.commands)


def stand_in_path(bin_dir: Path, base: str | None = None) -> str:
    """``PATH`` with ``bin_dir`` (stand-ins such as ``flutter``) first."""
    return os.pathsep.join(p for p in (str(bin_dir), base if base is not None else os.environ.get("PATH", "")) if p)
