"""Step functions, one module per family. Each has the signature ``(ctx: StepContext) -> Outcome | None``."""

from __future__ import annotations
