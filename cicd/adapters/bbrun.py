"""Run a pipeline of ``bitbucket-pipelines.yml`` (by default the pull-request one) for real with ``bb-run``.

The Bitbucket counterpart of :func:`cicd.adapters.runners.run_act` and ``run_gitlab_ci_local``. ``bb-run`` (PyPI,
pinned in ``cicd/toolenvs/bb-run.txt``) needs Python >= 3.12, so it lives in its own environment
(:data:`cicd.tools.BB_RUN`) and is called through that environment's interpreter, never imported here.

Why not just ``bb-run --mode host`` on the project folder (what 1.3.0 does, read from its source):

* every step of a ``parallel`` group starts at once (a thread per step) with ``cwd`` the project folder itself, and
  the steps' output is not prefixed, so their lines interleave; every named artifact of the group is captured
  after the whole group from the one shared folder, so ``runs-lint`` holds every step's run folders;
* ``definitions.caches`` entries in the keyed form (``{key: {files: [...]}, path: ...}``, the only form the
  adapter uses) are dropped ("unknown cache"); a ``name: path`` cache is stored by name only under
  ``<repo>/.bb-run/caches/NAME`` and saved back after every step (overlay, never only-when-absent); paths under
  ``$HOME`` (``~/.cache/uv``) are neither restored nor saved;
* ``artifacts: download`` cannot hide anything: all steps share the folder.

So this runner uses bb-run as the step runner and does the pipeline's bookkeeping itself, as Bitbucket does:

* each step runs in its own ``git clone`` of ``project`` (Bitbucket clones the repository for each step), with
  ``bb-run --mode host --target TARGET --step NAME``: bb-run still reads the file, picks the target, sets the
  ``BITBUCKET_*`` variables, runs ``script`` and ``after-script`` (``BITBUCKET_EXIT_CODE``), restores and saves the
  step's caches and captures its artifacts (``capture-on``) - for that one step;
* bb-run reads a preprocessed copy of the file (kept outside the clone, so the work tree is the commit): each keyed
  cache ``NAME`` becomes the ``name: path`` cache ``NAME-<hash of its key files>``. That emulates Bitbucket's keys
  (same key files, same entry, whichever branch saved it). The hash is this runner's (sha256 over the tracked files
  the globs match, path and content), not Bitbucket's, so entries are only comparable within this runner;
* the cache store is ``store/caches/LAYER`` (the folder a test seeds). A step gets a private hard-linked copy of the
  layers it names (``.bb-run/caches`` of its clone); after a successful step a layer that was absent from the store
  is moved into it, a layer that existed is left as it was: saved only when absent and only after a successful step,
  as on Bitbucket (bb-run itself overlays the step's files onto the layer after every step, failed or not);
* named artifacts are copied to ``store/artifacts/NAME`` (a name uploaded twice is an error) and, before a later
  step, restored into its clone by its ``artifacts: download`` rule (``false``, a list of names, or everything
  shared before) - bb-run's own download handling never sees another step's layers;
* every step gets ``-v CICD_TARGET=local`` (unless ``variables`` names another target): the file's scripts default
  to ``aws`` (``export CICD_TARGET="${CICD_TARGET:-aws}"``) and honour the variable, as they honour a repository
  variable on Bitbucket, so the steps run against the embedded AWS, like every other local run;
* a ``trigger: manual`` step pauses the pipeline, as on Bitbucket: it and every later step are ``held`` (not
  started, not a failure) unless ``release`` says a person ran it;
* steps of a ``parallel`` group run ``jobs`` at a time (each in its own clone, so running them together is safe;
  ``jobs=1`` on a 2-core machine keeps timings close to one runner's); a failed step ends the pipeline after its
  group, ``fail-fast`` groups start no further step after a failure.

What this does not test: bb-run's own orchestration of a whole ``parallel`` group (its ``--step`` run still goes
through its parallel code path, with one child), ``image:``/``services:`` (host mode: images are ignored; a step with
a non-``docker`` service fails without Docker - none here), and ``oidc``, ``deployment``, ``environment``,
``concurrency-group``, ``max-time``, ``clone`` (bb-run ignores them all, and ``trigger: manual``: the harness holds
those steps).
Job images' ``apt-get`` is the stand-in of ``runners`` (it only says so); ``python3 -m pip install uv==X`` reaches
this machine's Python, as with gitlab-ci-local.
"""

from __future__ import annotations

import contextlib
import copy
import fnmatch
import hashlib
import os
import re
import shutil
import signal
import subprocess
import threading
import time
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, Final

import yaml

from cicd import tools
from cicd.adapters.runners import ANSI, host_env, link_tree
from cicd.cache import glob_regex
from cicd.errors import MissingToolError

PR_TARGET: Final = "pull-requests.**"
MAIN_TARGET: Final = "branches.main"
PIPELINE_FILE: Final = "bitbucket-pipelines.yml"
LOCAL_VARIABLES: Final = {"CICD_TARGET": "local"}
"""What every step gets unless ``variables`` says otherwise: a local run targets the embedded AWS."""

# bb-run reads ``<repo>/bitbucket-pipelines.yml``; this points it at the preprocessed copy instead (argv[1]).
_DRIVER: Final = """
import sys
from pathlib import Path
from bbrun import validator
_init = validator.PipelineValidator.__init__
def _init_with_file(self, repo_path, _file=Path(sys.argv[1])):
    _init(self, repo_path)
    self.pipeline_file = _file
validator.PipelineValidator.__init__ = _init_with_file
sys.argv = ["bb-run", *sys.argv[2:]]
from bbrun.cli import main
sys.exit(main())
"""
_SAVED: Final = re.compile(r"^Artifacts: saved (shared |scoped |test-reports )?\[([^\]]+)\]", re.M)
_RESULT: Final = re.compile(r"^(ok|fail)\s+(parallel group|Pipeline passed|Pipeline failed)", re.M)


@dataclass(frozen=True)
class StepRun:
    """One step, run by its own ``bb-run`` process in its own clone."""

    name: str
    returncode: int  # bb-run's: 0 the step (script and after-script) passed, 1 it failed; -9 killed at the timeout
    output: str  # this step's lines only (bb-run's banners and the step's output), ANSI removed
    folder: Path  # the clone it ran in (its .cicd/runs, .bb-run/artifacts)
    artifacts: dict[str, Path]  # uploaded name -> store/artifacts/NAME
    restored: tuple[str, ...]  # caches (by definition name) whose entry existed in the store
    saved: tuple[str, ...]  # caches saved into the store (their entry was absent)
    seconds: float


@dataclass(frozen=True)
class PipelineRun:
    returncode: int  # 0 when every step that ran passed and none was left out
    steps: dict[str, StepRun] = field(default_factory=dict)
    not_run: tuple[str, ...] = ()  # steps after a failed level (or a fail-fast sibling), not started
    held: tuple[str, ...] = ()  # a `trigger: manual` step and the steps after it, not started (without `release`)
    seconds: float = 0.0


def bb_run_python(root: Path) -> Path:
    """The interpreter of bb-run's environment, installed on first use (MissingToolError: no Python >= 3.12 here)."""
    return tools.ensure(tools.BB_RUN, root).with_name("python")


def target_items(config: Mapping[str, Any], target: str) -> list[Any]:
    """The top-level items of ``target`` (``default``, ``pull-requests.X``, ``branches.X``, ``tags.X``,
    ``custom.X``): exact key first, then the most specific glob, as bb-run (pipeline.py) picks them."""
    pipelines = config.get("pipelines") or {}
    if target == "default":
        return list(pipelines.get("default") or [])
    group, _, name = target.partition(".")
    entries = pipelines.get(group) or {}
    if name in entries:
        return list(entries[name])
    if group == "custom":
        return []
    matches = [p for p in entries if fnmatch.fnmatchcase(name, str(p))]
    matches.sort(key=lambda p: (sum(str(p).count(c) for c in "*?["), -len(str(p))))
    return list(entries[matches[0]]) if matches else []


def levels(items: Sequence[Any]) -> list[tuple[list[dict[str, Any]], bool]]:
    """``[(steps, fail_fast)]``: one entry per ``parallel`` group or single step."""
    out: list[tuple[list[dict[str, Any]], bool]] = []
    for item in items:
        if "parallel" in item:
            block = item["parallel"]
            raw = block.get("steps", []) if isinstance(block, dict) else block
            ff = bool(block.get("fail-fast", False)) if isinstance(block, dict) else False
            out.append(([c.get("step", c) for c in raw], ff))
        else:
            out.append(([item.get("step", item)], False))
    return out


def _git() -> str:
    found = shutil.which("git")
    if found is None:
        raise MissingToolError("git is not installed", hint="install git")
    return found


def _file_digest(tree: Path, rel: str) -> bytes | None:
    """The sha256 of a tracked file's content (a symlink's target), None when it is gone from the work tree."""
    path = tree / rel
    if path.is_symlink():
        return hashlib.sha256(str(path.readlink()).encode()).digest()
    if path.is_file():
        return hashlib.sha256(path.read_bytes()).digest()
    return None


def cache_layers(config: Mapping[str, Any], tree: Path) -> dict[str, str]:
    """``{cache name: store layer}``: ``NAME-<key>`` for a keyed cache, the key a hash of the tracked files of ``tree``
    its ``key: files:`` globs match (path and content); the name itself for a ``name: path`` one. Seed
    ``store/caches/LAYER`` with the layers of the tree the cache came from. The files are listed and read once."""
    listed = subprocess.run([_git(), "ls-files", "-z"], cwd=tree, capture_output=True, check=True).stdout
    tracked = sorted(p for p in listed.decode().split("\0") if p)
    digests: dict[str, bytes | None] = {}
    defs = (config.get("definitions") or {}).get("caches") or {}
    layers: dict[str, str] = {}
    for name, value in defs.items():
        if not isinstance(value, dict):
            layers[str(name)] = str(name)
            continue
        patterns = [glob_regex(str(f)) for f in ((value.get("key") or {}).get("files")) or []]
        key = hashlib.sha256()
        for rel in tracked:
            if not any(rx.match(rel) for rx in patterns):
                continue
            if rel not in digests:
                digests[rel] = _file_digest(tree, rel)
            digest = digests[rel]
            if digest is not None:
                key.update(rel.encode() + b"\0" + digest)
        layers[str(name)] = f"{name}-{key.hexdigest()[:16]}"
    return layers


def preprocess(config: Mapping[str, Any], layers: Mapping[str, str]) -> dict[str, Any]:
    """The file bb-run reads: keyed caches as ``LAYER: path`` caches, the steps' ``caches:`` renamed to match."""
    doc: dict[str, Any] = copy.deepcopy(dict(config))
    defs = (doc.get("definitions") or {}).get("caches") or {}
    if defs:
        doc["definitions"]["caches"] = {
            layers[str(n)]: (v.get("path") if isinstance(v, dict) else v) for n, v in defs.items()
        }

    def rename(node: object) -> None:
        if isinstance(node, dict):
            if isinstance(node.get("caches"), list) and "script" in node:
                node["caches"] = [layers.get(str(c), str(c)) for c in node["caches"]]
            for value in node.values():
                rename(value)
        elif isinstance(node, list):
            for value in node:
                rename(value)

    rename(doc.get("pipelines"))
    return doc


def _descendants(pid: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    found, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def _kill_tree(proc: subprocess.Popen[str]) -> None:
    """bb-run starts each script in a new session: kill its descendants by pid, then bb-run."""
    for pid in [*_descendants(proc.pid), proc.pid]:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signal.SIGKILL)


def _run(cmd: list[str], cwd: Path, env: Mapping[str, str], timeout: float, log: IO[str] | None) -> tuple[int, str]:
    proc = subprocess.Popen(
        cmd, cwd=cwd, env=dict(env), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
        text=True, errors="replace", start_new_session=True,
    )  # fmt: skip
    timer = threading.Timer(timeout, _kill_tree, (proc,))
    chunks: list[str] = []
    timer.start()
    try:
        for line in proc.stdout or ():
            chunks.append(ANSI.sub("", line))
            if log is not None:
                log.write(line)
                log.flush()
        return proc.wait(), "".join(chunks)
    finally:
        timer.cancel()


def _download(step: Mapping[str, Any], clone: Path, store: Path, shared: Sequence[str]) -> None:
    """Restore earlier steps' artifacts into ``clone`` by the step's ``artifacts: download`` rule."""
    artifacts = step.get("artifacts")
    rule: object = artifacts.get("download", True) if isinstance(artifacts, dict) else True
    names = [] if rule is False else [str(n) for n in rule] if isinstance(rule, list) else list(shared)
    for name in names:
        if (store / "artifacts" / name).is_dir():
            shutil.copytree(store / "artifacts" / name, clone, symlinks=True, dirs_exist_ok=True)


@dataclass
class _Session:
    """One pipeline run: what every step's bb-run needs, and the store's bookkeeping (under ``lock``)."""

    project: Path
    store: Path
    target: str
    branch: str
    command: list[str]  # interpreter, driver, preprocessed file: bb-run's argv[0]
    layers: dict[str, str]
    env: dict[str, str]
    variables: dict[str, str]
    log: IO[str] | None
    step_timeout: float
    lock: threading.Lock = field(default_factory=threading.Lock)
    shared: list[str] = field(default_factory=list)  # shared artifact names uploaded so far, in order

    def clone(self, index: int, name: str) -> Path:
        clone = self.store / "work" / f"{index:02d}-{re.sub(r'[^A-Za-z0-9_.-]', '_', name)}"
        shutil.rmtree(clone, ignore_errors=True)
        clone.parent.mkdir(parents=True, exist_ok=True)
        subprocess.run([_git(), "clone", "-q", str(self.project), str(clone)], cwd=clone.parent, check=True)
        with (clone / ".git" / "info" / "exclude").open("a") as exclude:
            exclude.write("/.bb-run/\n")  # bb-run's state stays out of `git status`
        return clone

    def restore(self, step: Mapping[str, Any], clone: Path, caches: Sequence[str]) -> list[str]:
        restored = []
        with self.lock:
            _download(step, clone, self.store, list(self.shared))
            for c in caches:
                layer = self.layers.get(c, c)
                if (self.store / "caches" / layer).is_dir():
                    link_tree(self.store / "caches" / layer, clone / ".bb-run" / "caches" / layer)
                    restored.append(c)
        return restored

    def keep(
        self, name: str, clone: Path, ok: bool, caches: Sequence[str], output: str
    ) -> tuple[list[str], dict[str, Path]]:
        saved: list[str] = []
        uploaded: dict[str, Path] = {}
        runs = sorted((clone / ".bb-run" / "artifacts").glob("run_*"))
        with self.lock:
            for c in caches:
                layer = clone / ".bb-run" / "caches" / self.layers.get(c, c)
                kept = self.store / "caches" / self.layers.get(c, c)
                if ok and not kept.exists() and layer.is_dir() and any(layer.iterdir()):
                    shutil.move(layer, kept)  # saved after a successful step, only when absent
                    saved.append(c)
            for seq, match in enumerate(_SAVED.finditer(output), start=1):
                kind, label = (match.group(1) or "shared ").strip(), match.group(2)
                dest = self.store / "artifacts" / label
                if dest.exists():
                    raise RuntimeError(f"artifact {label} uploaded twice (step {name})")
                shutil.copytree(runs[-1] / f"L{seq}", dest, symlinks=True)
                uploaded[label] = dest
                if kind == "shared":
                    self.shared.append(label)
        return saved, uploaded

    def run_step(self, index: int, step: Mapping[str, Any]) -> StepRun:
        name = str(step.get("name", f"step-{index}"))
        clone = self.clone(index, name)
        caches = [str(c) for c in (step.get("caches") or [])]  # predefined names (node, pip...) are their own layer
        restored = self.restore(step, clone, caches)
        # --verbose: bb-run echoes the whole script line (it cuts it at 200 characters otherwise)
        cmd = [*self.command, "--repo", str(clone), "--mode", "host", "--target", self.target,
               "--branch", self.branch, "--step", name, "--color", "never", "--verbose"]  # fmt: skip
        for key, value in self.variables.items():
            cmd += ["-v", f"{key}={value}"]
        t0 = time.monotonic()
        rc, output = _run(cmd, clone, self.env, self.step_timeout, self.log)
        seconds = time.monotonic() - t0
        saved, uploaded = self.keep(name, clone, rc == 0, caches, output)
        return StepRun(name, rc, output, clone, uploaded, tuple(restored), tuple(saved), seconds)


def run_bb_run(
    project: Path,
    *,
    store: Path,
    target: str = PR_TARGET,
    branch: str = "feature",
    variables: Mapping[str, str] | None = None,
    env: Mapping[str, str] | None = None,
    jobs: int = 1,
    python: Path,
    log: IO[str] | None = None,
    step_timeout: float = 900,
    release: bool = False,
) -> PipelineRun:
    """Run the ``target`` pipeline of ``project/bitbucket-pipelines.yml`` (committed) step by step with bb-run in host
    mode, each step in its own clone under ``store/work``; caches in ``store/caches``, artifacts in
    ``store/artifacts`` (see the module docstring). ``variables`` go to bb-run's ``-v`` (``BITBUCKET_PR_ID``...,
    :data:`LOCAL_VARIABLES` first),
    ``env`` to its environment (and so every step's); ``python`` is bb-run's interpreter (:func:`bb_run_python`).
    The pipeline pauses at a ``trigger: manual`` step (``held``, returncode 0 when the rest passed) unless
    ``release``."""
    interpreter = python
    project, store = project.resolve(), store.resolve()
    started = time.monotonic()
    config: dict[str, Any] = yaml.safe_load((project / PIPELINE_FILE).read_text(encoding="utf-8"))
    layers = cache_layers(config, project)
    for sub in ("artifacts", "work"):  # per pipeline run; caches stay
        shutil.rmtree(store / sub, ignore_errors=True)
    for sub in ("caches", "artifacts", "work", "bin"):
        (store / sub).mkdir(parents=True, exist_ok=True)
    pipeline_file = store / "bitbucket-pipelines.bb-run.yml"
    pipeline_file.write_text(yaml.safe_dump(preprocess(config, layers), sort_keys=False), encoding="utf-8")
    apt = store / "bin" / "apt-get"
    apt.write_text("#!/bin/sh\necho \"local stand-in: apt-get $* (the job image's, not this machine's)\"\n")
    apt.chmod(0o755)
    pr = {"BITBUCKET_PR_ID": "1", "BITBUCKET_PR_DESTINATION_BRANCH": "main"} if target.startswith("pull-") else {}
    session = _Session(
        project, store, target, branch, [str(interpreter), "-c", _DRIVER, str(pipeline_file)], layers,
        {**os.environ, **(env or {}), **host_env(store / "bin")}, {**LOCAL_VARIABLES, **pr, **(variables or {})}, log,
        step_timeout,
    )  # fmt: skip
    results: dict[str, StepRun] = {}
    not_run: list[str] = []
    held: list[str] = []
    index = 0
    for steps, fail_fast in levels(target_items(config, target)):
        names = [str(s.get("name")) for s in steps]
        if not_run or any(r.returncode != 0 for r in results.values()):
            not_run.extend(names)
            continue
        if held or (not release and any(s.get("trigger") == "manual" for s in steps)):
            held.extend(names)  # Bitbucket pauses here until someone runs the manual step
            continue
        stop = threading.Event()

        def guarded(pair: tuple[int, dict[str, Any]], stop: threading.Event = stop, ff: bool = fail_fast) -> None:
            i, step = pair
            if stop.is_set():
                with session.lock:
                    not_run.append(str(step.get("name")))
                return
            run = session.run_step(i, step)
            with session.lock:
                results[run.name] = run
            if run.returncode != 0 and ff and step.get("fail-fast") is not False:
                stop.set()

        with ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
            list(pool.map(guarded, enumerate(steps, start=index + 1)))
        index += len(steps)
    ok = not not_run and all(r.returncode == 0 for r in results.values())
    return PipelineRun(0 if ok else 1, results, tuple(not_run), tuple(held), time.monotonic() - started)


def step_result(run: StepRun) -> str | None:
    """bb-run's verdict line for the step's (one-child) group: ``ok`` or ``fail``, None if it never got there."""
    found = [m.group(1) for m in _RESULT.finditer(run.output) if m.group(2) == "parallel group"]
    if not found:  # a single (non-parallel) step: "ok  NAME  (1.2s)"
        found = [m.group(1) for m in re.finditer(rf"^(ok|fail)\s+{re.escape(run.name)}\s+\(", run.output, re.M)]
    return found[-1] if found else None
