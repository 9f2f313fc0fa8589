"""A pytest plugin the fault-injection suite loads into the pipeline's own post-deploy test runs.

The suite runs ``inv pipeline`` with ``PYTHONPATH`` pointing here and ``PYTEST_ADDOPTS="-p injected_faults"``; the
pipeline's integration and smoke tests (``tests/integration``, run by the integration-test and smoke-test steps with
``CICD_IT_ENV`` set to the environment) then see:

* ``CICD_FAULT_FAIL_IN=<env>``: every test fails in that environment, as a real regression would;
* ``CICD_FAULT_ECHO=<NAME,...>``: before failing, the tests print those variables' values, raw and URL-encoded
  (the way a careless test prints a presigned URL carrying a session token), and quote them in the failure.

Outside those runs (no ``CICD_IT_ENV``, or another environment) the plugin does nothing.
"""

from __future__ import annotations

import os
from urllib.parse import quote, quote_plus

import pytest


def _echo() -> str:
    shown = []
    for name in filter(None, os.environ.get("CICD_FAULT_ECHO", "").split(",")):
        value = os.environ.get(name, "")
        shown.append(f"{name}={value} url={quote(value, safe='')} form={quote_plus(value)}")
    return "; ".join(shown)


def pytest_runtest_call(item: pytest.Item) -> None:
    env = os.environ.get("CICD_IT_ENV")
    if not env or env != os.environ.get("CICD_FAULT_FAIL_IN"):
        return
    planted = _echo()
    if planted:
        print(f"planted values: {planted}")
    pytest.fail(f"injected fault: {item.name} fails in {env}" + (f" ({planted})" if planted else ""))
