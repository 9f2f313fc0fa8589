"""Started by Python in every process that has this folder on ``PYTHONPATH`` (the test steps put it first): if a
test being recorded started the process, record what it reads too (:mod:`cicd_select_audit`). Then the
``sitecustomize`` this one shadows, if the interpreter has one, runs as it would have."""

from __future__ import annotations

import importlib.machinery
import importlib.util
import os
import sys

if __package__:  # imported as part of the project (mypy)
    from cicd.pytest_plugins import cicd_select_audit
else:  # Python's start-up, from this folder on PYTHONPATH
    import cicd_select_audit  # type: ignore[import-not-found, no-redef]

cicd_select_audit.start_in_child()


def _run_shadowed() -> None:
    here = os.path.dirname(os.path.abspath(__file__))  # noqa: PTH100, PTH120 - no pathlib at every start-up
    rest = [p for p in sys.path if os.path.abspath(p or ".") != here]  # noqa: PTH100
    spec = importlib.machinery.PathFinder.find_spec("sitecustomize", rest)
    if spec is None or spec.loader is None:
        return
    module = importlib.util.module_from_spec(spec)
    sys.modules["sitecustomize"] = module
    spec.loader.exec_module(module)


_run_shadowed()
