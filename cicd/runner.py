"""Runs a selection of the model: dependency order, independent steps in parallel, one log per step, reports.

Each node runs in a worker thread (steps spend their time in subprocesses, so threads give real parallelism); at
most ``jobs`` run at once. A node starts only when everything it needs has finished; if one of those failed (or did
not run) the node is marked ``not-run`` with the reason, while independent nodes carry on. Ctrl-C stops every child
process and the report is still written.
"""

from __future__ import annotations

import importlib
import os
import secrets
import signal
import threading
import time
import traceback
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from cicd import ci as ci_mod
from cicd import command, reports, versioning
from cicd.cache import StepCache, load_durations, save_durations
from cicd.context import StepContext
from cicd.errors import EXIT_USAGE, CicdError, UsageError
from cicd.pipeline import Model, Node, Step
from cicd.results import Outcome, Status, StepResult

if TYPE_CHECKING:
    from rich.console import Console, RenderableType

StepFunction = Callable[[StepContext], Outcome | None]
RERUN_PREFIX = "uv run inv"
LOG_TAIL_LINES = 12
# What report.json says, while the run goes, about the steps that have not finished yet: if the runner is killed
# (out of memory, the CI job cancelled with SIGKILL), the report keeps saying so and `inv rerun` resumes from it.
UNFINISHED = "the run stopped before this step finished"
NOT_STARTED = "the run stopped before this step started"


CACHE_OFF = "no-cache"  # a step option: the run keeps nothing from earlier runs (`--no-cache`)


@dataclass
class RunOptions:
    trigger: str = "manual"
    target: str = "local"
    jobs: int | None = None
    use_cache: bool = True
    step_options: dict[str, str] = field(default_factory=dict)

    def resolved_jobs(self) -> int:
        if self.jobs is None:
            return os.cpu_count() or 1
        if self.jobs < 1:
            raise UsageError(f"--jobs must be at least 1, got {self.jobs}", hint="omit it to use one job per core")
        return self.jobs


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def new_run_id() -> str:
    return datetime.now(UTC).strftime("%Y%m%dT%H%M%S") + "-" + secrets.token_hex(3)


def load_function(ref: str) -> StepFunction:
    module_name, _, attr = ref.partition(":")
    module = importlib.import_module(module_name)
    fn: StepFunction = getattr(module, attr)
    return fn


def rerun_command(step: Step, node: Node, target: str) -> str:
    cmd = f"{RERUN_PREFIX} {step.task_command(node.env)}"
    if target != "local" and step.stage in ("deploy", "verify"):
        cmd += f" --target {target}"
    return cmd


def prepare_run_dir(root: Path, run_id: str) -> Path:
    runs = root / reports.RUNS_DIR
    run_dir = runs / run_id
    try:
        (run_dir / "logs").mkdir(parents=True)
        probe = run_dir / ".write-test"
        probe.write_text("ok")
        probe.unlink()
    except OSError as err:
        raise UsageError(
            f"cannot write the run folder {run_dir.relative_to(root)}: {err.strerror or err}",
            hint=f"make {reports.RUNS_DIR.parent}/ writable (or remove it) and run again",
        ) from None
    return run_dir


CHECKPOINT_EVERY_S = 0.25
"""How far the report on disk may lag behind a run's steps that may be served from the cache: a run of cached steps,
each done in milliseconds, rewrites it a few times rather than after every step. A step that will run (no cache
for it) is in the report as soon as it starts, so a run killed during it reports it unfinished."""


class Runner:
    def __init__(
        self,
        root: Path,
        model: Model,
        nodes: Sequence[Node],
        options: RunOptions,
        *,
        environ: Mapping[str, str] | None = None,
        console: Console | None = None,
        functions: Mapping[str, StepFunction] | None = None,
    ) -> None:
        if not nodes:
            raise UsageError("nothing to run", hint="the selection is empty")
        self.root = root
        self.model = model
        self.nodes = list(nodes)
        self.options = options
        self.jobs = options.resolved_jobs()
        self.environ = dict(os.environ if environ is None else environ)
        self.ci = ci_mod.detect(self.environ)
        self._console = console
        self._functions = dict(functions or {})
        self._lock = threading.Lock()
        self._running: dict[Node, float] = {}
        self.run_id = new_run_id()
        self.run_dir = prepare_run_dir(root, self.run_id)
        self.cache = StepCache(root, environ=self.environ, enabled=options.use_cache)
        self._history = load_durations(root)
        self._priority = self._critical_paths()
        self._commit = versioning.commit(root)
        self._t0 = time.monotonic()
        self._written_at = -CHECKPOINT_EVERY_S
        self._dirty = False

    def _critical_paths(self) -> dict[Node, float]:
        """Each node's longest remaining chain (its own last duration plus the longest chain that needs it).

        Ready nodes start longest-chain first, so the slowest path is never left waiting for a free job.
        """
        in_run = set(self.nodes)
        dependents: dict[Node, list[Node]] = {n: [] for n in self.nodes}
        for node in self.nodes:
            for dep in self.model.needs_of(node):
                if dep in in_run:
                    dependents[dep].append(node)
        memo: dict[Node, float] = {}
        for node in reversed(self.model.ordered(self.nodes)):
            own = self._history.get(node.id, 1.0)
            memo[node] = own + max((memo[d] for d in dependents[node]), default=0.0)
        return memo

    def _extras(self, step: Step) -> dict[str, str]:
        values: dict[str, Callable[[], str]] = {
            "git-head": lambda: self._commit or "none",
            "utc-date": lambda: datetime.now(UTC).strftime("%Y-%m-%d"),
            "assembly": self._assembly_extra,
        }
        return {name: values[name]() for name in step.key_extras}

    def _assembly_extra(self) -> str:
        """What the scanners read in the cloud assembly (:func:`cicd.steps.iac.scanned_digest`) the step will scan:
        the run's (the synth step ran, or was served from the cache, in this run), else the one the synth step made
        from the files as they are now, in the step cache (``inv iac-scan`` after ``inv synth``: the step takes it
        from there). So the key is the same whichever way the assembly came. With neither (the step synthesizes one
        itself), the synth step's own key, which covers everything the synth reads."""
        from cicd.steps.iac import ASSEMBLY, cached_assembly, scanned_digest

        digest = scanned_digest(self.run_dir / ASSEMBLY)
        if digest is not None:
            return f"assembly {digest}"
        synth = self.model.step("synth")
        synth_key = self.cache.key(synth, Node(synth.name), self.options.target, self._extras(synth))
        cached = cached_assembly(self.cache, synth_key)
        digest = scanned_digest(cached) if cached is not None else None
        return f"assembly {digest}" if digest is not None else f"synth {synth_key}"

    # ---------------------------------------------------------------------------------------------------- output
    @property
    def console(self) -> Console:
        if self._console is None:
            from rich.console import Console

            self._console = Console(highlight=False)
        return self._console

    def _live_ok(self) -> bool:
        return self.console.is_terminal and not self.ci.is_ci

    def _live_view(self) -> RenderableType:
        from rich.table import Table

        table = Table.grid(padding=(0, 2))
        now = time.monotonic()
        with self._lock:
            running = sorted(self._running.items(), key=lambda item: item[1])
        for node, started in running:
            table.add_row("[yellow]⏵[/]", node.id, f"{now - started:5.1f} s")
        table.add_row("", f"[dim]{len(self._done)} of {len(self.nodes)} done[/]", "")
        return table

    def _print_result(self, result: StepResult) -> None:
        style = {
            Status.PASSED: "green",
            Status.CACHED: "cyan",
            Status.SKIPPED: "yellow",
            Status.FAILED: "red",
            Status.NOT_RUN: "dim",
        }[result.status]
        from rich.markup import escape

        reason = f" — {escape(result.reason)}" if result.reason else ""
        line = f"[{style}]{result.status.value:>8}[/] {result.node_id} [dim]({result.duration_s:.1f} s){reason}[/]"
        if self.ci.is_ci and result.log and result.status is not Status.NOT_RUN:
            title = f"{result.node_id}: {result.status.value} ({result.duration_s:.1f} s)"
            print(self.ci.group_start(title), flush=True)
            log_file = self.root / result.log
            if log_file.exists():
                print(log_file.read_text(encoding="utf-8", errors="replace"), end="", flush=True)
            print(self.ci.group_end(title), flush=True)
            annotation = (
                self.ci.error_annotation(result.node_id, result.reason or "failed")
                if result.status is Status.FAILED
                else None
            )
            if annotation:
                print(annotation, flush=True)
        self.console.print(line, markup=True, highlight=False)

    # ---------------------------------------------------------------------------------------------------- steps
    def _execute(self, node: Node) -> StepResult:
        step = self.model.step(node.step)
        log_path = self.run_dir / "logs" / f"{node.id.replace(':', '-')}.log"
        started = time.monotonic()
        started_at = now_iso()
        with self._lock:
            self._running[node] = started
        status: Status = Status.FAILED
        reason: str | None = "internal error"
        details: dict[str, Any] = {}
        scrub = command.scrubber()
        with log_path.open("w", encoding="utf-8") as log:
            ctx = StepContext(
                root=self.root,
                run_dir=self.run_dir,
                step=node.step,
                env=node.env,
                target=self.options.target,
                log=log,
                log_path=log_path,
                environ=self.environ,
                options={**self.options.step_options, **({} if self.options.use_cache else {CACHE_OFF: "1"})},
            )
            log.write(f"# {node.id}: {step.doc}\n")
            key: str | None = None
            try:
                key = self._cache_key(step, node)
                cached = self._from_cache(key, log) if key else None
                if cached is not None:
                    status, reason, details = cached
                else:
                    fn = self._functions.get(node.step) or load_function(step.run)
                    outcome = fn(ctx) or Outcome.passed()
                    status, reason, details = outcome.status, outcome.reason, outcome.details
            except CicdError as err:
                status, reason = Status.FAILED, str(err)
                details = {"exit_code": err.return_code}
                log.write(scrub(f"\nFAILED: {err}\n"))
            except OSError as err:
                status, (reason, details) = Status.FAILED, self._os_error(err)
                log.write(scrub(traceback.format_exc()))
            except Exception as err:
                status, reason = Status.FAILED, f"internal error: {err.__class__.__name__}: {err}"
                log.write(scrub(traceback.format_exc()))
            if status is Status.SKIPPED and not step.may_skip:
                status, reason = Status.FAILED, f"reported skipped ({reason}) but this step may not skip"
            status, reason, details = self._hand_on(step, status, reason, details)
            reason = scrub(reason) if reason else reason
            reports.categorize_sarif(self.run_dir, node.id, step.outputs)
            log.write(f"\n# {node.id}: {status.value}{f' — {reason}' if reason else ''}\n")
        with self._lock:
            self._running.pop(node, None)
        result = StepResult(
            name=node.step,
            env=node.env,
            status=status,
            duration_s=time.monotonic() - started,
            reason=reason,
            log=str(log_path.relative_to(self.root)),
            rerun=rerun_command(step, node, self.options.target),
            started_at=started_at,
            ended_at=now_iso(),
            start_offset_s=started - self._t0,
            details=dict(details),
        )
        if key is not None and status in (Status.PASSED, Status.SKIPPED) and "cache_key" not in details:
            try:
                self.cache.store(key, result, log_path, self.run_dir, step.outputs)
            except OSError as err:
                result.details["cache_warning"] = f"not cached: {err}"
        return result

    def _hand_on(
        self, step: Step, status: Status, reason: str | None, details: dict[str, Any]
    ) -> tuple[Status, str | None, dict[str, Any]]:
        """After a pass (served from the cache or not), keep the step's hand-off for the CI jobs that need it."""
        if step.handoff and status in (Status.PASSED, Status.CACHED):
            try:
                reports.keep_handoff(self.root, self.run_dir, step.name, step.handoff)
            except OSError as err:
                return Status.FAILED, *self._os_error(err)
        return status, reason, details

    def _os_error(self, err: OSError) -> tuple[str, dict[str, Any]]:
        """One line for an OS error; a path under ``.cicd/`` that cannot be written is a usage problem (exit 2)."""
        state = self.root / reports.RUNS_DIR.parent
        path = Path(os.fsdecode(err.filename)) if err.filename else None
        if path is not None and (path == state or state in path.parents):
            where = path.relative_to(self.root)
            fix = f"make {reports.RUNS_DIR.parent}/ writable, or remove the file in the way, and run again"
            return f"cannot write {where}: {err.strerror or err} ({fix})", {"exit_code": EXIT_USAGE}
        return f"internal error: {err.__class__.__name__}: {err}", {}

    def _may_be_cached(self, step: Step) -> bool:
        """Whether ``step`` may be served from the step cache (then it is often done in milliseconds)."""
        return step.cacheable and self.options.use_cache

    def _cache_key(self, step: Step, node: Node) -> str | None:
        if not self._may_be_cached(step):
            return None
        return self.cache.key(step, node, self.options.target, self._extras(step))

    def _from_cache(self, key: str, log: IO[str]) -> tuple[Status, str, dict[str, Any]] | None:
        """Serve a step from the cache: restore its outputs and log; None on a miss (or a corrupt entry)."""
        hit, warning = self.cache.lookup(key)
        if warning:
            log.write(f"warning: {warning}\n")
            self.console.print(f"[yellow]warning:[/] {warning}", highlight=False)
        if hit is None:
            return None
        self.cache.restore_outputs(hit, self.run_dir)
        first = hit.result.get("run_id")
        log.write(f"# restored from the step cache (key {key[:16]}, first run {first})\n")
        log.write(hit.log)
        if hit.result.get("status") == Status.SKIPPED.value:
            reason = f"{hit.result.get('reason')} (cached from run {first})"
            return Status.SKIPPED, reason, {"cache_key": key, "cached_skip": True}
        return (
            Status.CACHED,
            f"inputs unchanged since run {first}",
            {
                "cache_key": key,
                "original_duration_s": hit.result.get("duration_s"),
            },
        )

    def _not_run(self, node: Node, reason: str) -> StepResult:
        return StepResult(
            name=node.step,
            env=node.env,
            status=Status.NOT_RUN,
            duration_s=0.0,
            reason=reason,
            log=None,
            rerun=rerun_command(self.model.step(node.step), node, self.options.target),
        )

    def _blocker(self, node: Node) -> str | None:
        for dep in self.model.needs_of(node):
            if dep not in self._in_run:
                continue
            result = self._done.get(dep)
            if result is None:
                return None
            if result.status is Status.FAILED:
                return f"needs {dep.id}, which failed"
            if result.status is Status.NOT_RUN:
                return f"needs {dep.id}, which did not run"
            if result.status is Status.SKIPPED and result.details.get("blocks"):
                return f"needs {dep.id}, which is waiting ({result.reason})"
        return ""

    # ---------------------------------------------------------------------------------------------------- run
    def run(self) -> reports.RunReport:
        report = reports.RunReport(
            run_id=self.run_id,
            trigger=self.options.trigger,
            commit=self._commit,
            target=self.options.target,
            started_at=now_iso(),
        )
        self._done: dict[Node, StepResult] = {}
        self._in_run = set(self.nodes)
        self._report = report
        self._interrupted_by = "Ctrl-C"
        restore_sigterm = self._sigterm_interrupts()
        try:
            self._checkpoint()
            if self._live_ok():
                from rich.live import Live

                with Live(self._live_view(), console=self.console, refresh_per_second=8, transient=True) as live:
                    self._schedule(lambda: live.update(self._live_view()))
            else:
                self._schedule(lambda: None)
        except KeyboardInterrupt:
            report.interrupted = True
            with self._lock:
                running = set(self._running)  # before stopping them: a stopped step leaves this set
            command.PROCESSES.terminate_all()
            command.PROCESSES.stopping = False  # the children are gone; later runs in this process may start new ones
            by = self._interrupted_by
            for node in self.nodes:
                if node not in self._done:
                    result = self._not_run(
                        node, f"interrupted by {by}" if node in running else f"run interrupted by {by}"
                    )
                    if node in running:
                        result.status = Status.FAILED
                    self._done[node] = result
        finally:
            restore_sigterm()
        report.steps = [self._done[n] for n in self.nodes]
        report.duration_s = time.monotonic() - self._t0
        self._finish(report)
        return report

    def _sigterm_interrupts(self) -> Callable[[], None]:
        """Treat SIGTERM (a CI job cancelled) like Ctrl-C while the run goes; returns what restores the handler."""
        if threading.current_thread() is not threading.main_thread():
            return lambda: None

        def interrupt(_signum: int, _frame: object) -> None:
            self._interrupted_by = "SIGTERM"
            raise KeyboardInterrupt

        previous = signal.signal(signal.SIGTERM, interrupt)

        def restore() -> None:
            signal.signal(signal.SIGTERM, previous)

        return restore

    def _checkpoint(self, *, now: bool = True) -> None:
        """Write the report as it stands (unfinished steps as not-run) and point ``latest`` at this run. Unless
        ``now``, a write that comes within :data:`CHECKPOINT_EVERY_S` of the last one is left to the scheduling
        loop, which makes it once that much time has passed."""
        if not now and time.monotonic() - self._written_at < CHECKPOINT_EVERY_S:
            self._dirty = True
            return
        self._dirty = False
        self._written_at = time.monotonic()
        with self._lock:
            running = set(self._running)
        self._report.steps = [
            self._done.get(n) or self._not_run(n, UNFINISHED if n in running else NOT_STARTED) for n in self.nodes
        ]
        self._report.duration_s = time.monotonic() - self._t0
        try:
            reports.write_all(self.run_dir, self._report)
            reports.point_latest(self.run_dir.parent, self.run_dir)
        except OSError:
            pass  # the final write at the end of the run reports a real problem

    def _schedule(self, refresh: Callable[[], None]) -> None:
        pending = list(self.nodes)
        futures: dict[Future[StepResult], Node] = {}
        pool = ThreadPoolExecutor(max_workers=self.jobs, thread_name_prefix="step")
        try:
            while pending or futures:
                progressed = True
                changed = urgent = False
                while progressed:
                    progressed = False
                    for node in sorted(pending, key=lambda n: -self._priority.get(n, 0.0)):
                        blocker = self._blocker(node)
                        if blocker is None:
                            continue
                        if blocker:
                            pending.remove(node)
                            self._done[node] = self._not_run(node, blocker)
                            self._print_result(self._done[node])
                            progressed = changed = True
                        elif len(futures) < self.jobs:
                            pending.remove(node)
                            with self._lock:
                                self._running[node] = time.monotonic()
                            futures[pool.submit(self._execute, node)] = node
                            progressed = changed = True
                            urgent = urgent or not self._may_be_cached(self.model.step(node.step))
                if changed:  # a step that will run started: the report says so at once (the others within 0.25 s)
                    self._checkpoint(now=urgent)
                if not futures:
                    if pending:  # cannot happen with a validated model; guard against a silent hang
                        raise UsageError(f"cannot schedule {', '.join(n.id for n in pending)}")
                    break
                finished, _ = wait(futures, timeout=0.125, return_when=FIRST_COMPLETED)
                for future in finished:
                    node = futures.pop(future)
                    self._done[node] = future.result()
                    self._print_result(self._done[node])
                if finished or self._dirty:
                    self._checkpoint(now=False)
                refresh()
        finally:
            pool.shutdown(wait=False, cancel_futures=True)

    def _finish(self, report: reports.RunReport) -> None:
        save_durations(self.root, report.steps)
        reports.write_all(self.run_dir, report)
        reports.point_latest(self.run_dir.parent, self.run_dir)
        summary = self.ci.summary_file()
        if summary is not None:
            with summary.open("a", encoding="utf-8") as handle:
                handle.write(reports.summary_markdown(report) + "\n")
        self._print_summary(report)

    def _print_summary(self, report: reports.RunReport) -> None:
        from rich.markup import escape
        from rich.table import Table

        table = Table(title=f"{report.trigger} run {report.run_id}", title_justify="left")
        table.add_column("step")
        table.add_column("status")
        table.add_column("duration", justify="right")
        table.add_column("reason", overflow="fold")
        colours = {
            "passed": "green",
            "cached": "cyan",
            "skipped": "yellow",
            "failed": "red",
            "not-run": "dim",
        }
        for s in report.steps:
            table.add_row(
                s.node_id,
                f"[{colours[s.status.value]}]{s.status.value}[/]",
                f"{s.duration_s:.1f} s",
                escape(s.reason or ""),
            )
        self.console.print(table)
        for s in report.steps:
            if s.status is not Status.FAILED:
                continue
            self.console.print(f"[red]✗ {s.node_id}[/] failed: {escape(s.reason or '')}", highlight=False)
            if s.log:
                tail = _tail(self.root / s.log, LOG_TAIL_LINES)
                if tail:
                    self.console.print(tail, markup=False, highlight=False, style="dim")
                self.console.print(f"  log:   {s.log}", highlight=False)
            self.console.print(f"  rerun: {s.rerun}", highlight=False)
        verdict = "[green]passed[/]" if report.status == "passed" else "[red]failed[/]"
        self.console.print(
            f"Run {verdict} in {report.duration_s:.1f} s · report {self.run_dir.relative_to(self.root)}/report.json",
            highlight=False,
        )


def _tail(path: Path, lines: int) -> str:
    try:
        text = path.read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError:
        return ""
    return "\n".join(f"  | {line}" for line in text[-lines:])


def run_nodes(
    root: Path,
    model: Model,
    nodes: Sequence[Node],
    options: RunOptions,
    **kwargs: Any,
) -> reports.RunReport:
    return Runner(root, model, nodes, options, **kwargs).run()
