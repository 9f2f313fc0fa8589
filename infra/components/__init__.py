"""The stack's building blocks: storage (buckets), service (Lambda + REST API), monitoring, delivery, web."""

from __future__ import annotations
