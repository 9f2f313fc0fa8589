"""Where the pipeline's Python processes keep their bytecode: the checkout's ``.cicd/pycache``.

Python compiles each module it imports and keeps the result beside the source (``__pycache__``), unless
``PYTHONDONTWRITEBYTECODE`` is set (CI images often set it) or the program turns writing off (invoke does, for the
process that loads ``tasks.py``). Then every process compiles every module it imports again: a pytest worker, the
moto server, semgrep and checkov each spend seconds on it, at every start. Where writing is off, the processes the
pipeline starts keep their bytecode in :data:`DIR` instead (``PYTHONPYCACHEPREFIX``): never beside the sources, and
never in ``.cicd/cache``, the step cache the CI adapters save and restore (bytecode from a cache another branch can
write would be code a main run executes unverified).
"""

from __future__ import annotations

import sys
from collections.abc import Mapping, MutableMapping
from pathlib import Path
from typing import Final

DIR: Final = Path(__file__).resolve().parent.parent / ".cicd" / "pycache"
"""The bytecode of every module the pipeline's processes import, mirrored by the sources' absolute paths."""
OFF: Final = "PYTHONDONTWRITEBYTECODE"
PREFIX: Final = "PYTHONPYCACHEPREFIX"


def keep(environ: MutableMapping[str, str]) -> None:
    """Make ``environ`` (for Python children) keep bytecode in :data:`DIR` where it turns writing off; a prefix
    the environment already names is kept."""
    if environ.get(OFF):
        del environ[OFF]
        environ.setdefault(PREFIX, str(DIR))


def python_env(base: Mapping[str, str]) -> dict[str, str]:
    """A copy of ``base`` for Python children, with :func:`keep` applied."""
    env = dict(base)
    keep(env)
    return env


def keep_in_process() -> None:
    """Let this process write the bytecode of what it imports from now on, into :data:`DIR` (invoke turns writing
    off so that no ``.pyc`` appears beside ``tasks.py``; the prefix keeps that promise)."""
    if sys.pycache_prefix is None:
        sys.pycache_prefix = str(DIR)
    sys.dont_write_bytecode = False
