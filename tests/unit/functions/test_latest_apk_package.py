"""The deployment package: small, stdlib + boto3 only, importable as the handler string says."""

from __future__ import annotations

import ast
import io
import subprocess
import sys
import zipfile

import pytest

from tests.unit.functions.apk_helpers import FUNCTIONS, package_zip

RUNTIME_PROVIDED = {"boto3", "botocore"}  # the Lambda Python runtime ships these
TYPE_CHECKING_ONLY = {"mypy_boto3_s3"}  # stubs: imported for annotations only, never at run time


def imports(tree: ast.Module) -> tuple[set[str], set[str]]:
    """Top-level module names imported at run time, and those imported under ``if TYPE_CHECKING:``."""
    runtime: set[str] = set()
    typing_only: set[str] = set()

    def visit(nodes: list[ast.stmt], into: set[str]) -> None:
        for node in nodes:
            if isinstance(node, ast.If) and isinstance(node.test, ast.Name) and node.test.id == "TYPE_CHECKING":
                visit(node.body, typing_only)
                visit(node.orelse, into)
            elif isinstance(node, ast.Import):
                into.update(alias.name.split(".")[0] for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                into.add(node.module.split(".")[0])
            else:
                for child in ast.iter_child_nodes(node):
                    if isinstance(child, ast.stmt):
                        visit([child], into)

    visit(tree.body, runtime)
    return runtime, typing_only


def test_the_package_zips_to_under_10_kb() -> None:
    data = package_zip()
    assert len(data) < 10_240, f"{len(data)} bytes"
    names = zipfile.ZipFile(io.BytesIO(data)).namelist()
    assert "latest_apk/handler.py" in names
    assert all(name.startswith("latest_apk/") and name.endswith(".py") for name in names)


def test_the_package_needs_only_the_standard_library_and_boto3() -> None:
    for path in sorted((FUNCTIONS / "latest_apk").glob("*.py")):
        runtime, typing_only = imports(ast.parse(path.read_text(), str(path)))
        third_party = runtime - set(sys.stdlib_module_names) - {"latest_apk"}
        assert third_party <= RUNTIME_PROVIDED, f"{path.name} imports {third_party - RUNTIME_PROVIDED}"
        assert typing_only - set(sys.stdlib_module_names) - {"latest_apk"} <= TYPE_CHECKING_ONLY, path.name


@pytest.mark.component  # imports the package in a fresh interpreter
def test_the_handler_string_resolves_from_the_package_root() -> None:
    """Import ``latest_apk.handler.handler`` with only the functions folder (and site-packages) on the path, as
    the Lambda runtime would, and check it pulls in no stub package."""
    code = (
        "import sys; import latest_apk.handler as h; assert callable(h.handler); "
        "assert not [m for m in sys.modules if m.startswith('mypy_boto3')], 'stubs imported at run time'"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], cwd=FUNCTIONS, capture_output=True, text=True, check=False, timeout=60
    )
    assert proc.returncode == 0, proc.stderr
