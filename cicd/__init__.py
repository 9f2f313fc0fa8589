"""One CI/CD pipeline, written once in Python: the orchestration library behind ``tasks.py``."""

from __future__ import annotations

__all__ = ["__version__"]

__version__ = "0.1.0"
