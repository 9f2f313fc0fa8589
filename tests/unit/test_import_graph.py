"""The static import closure that affected-only tests add to every test's dependencies (cicd.testselect)."""

from __future__ import annotations

from pathlib import Path

import pytest

from cicd import testselect

FILES = {
    "app/__init__.py": "",
    "app/core.py": "from . import util\nfrom .sub.deep import VALUE\n",
    "app/util.py": "def helper():\n    import app.lazy  # only when called\n    return app.lazy\n",
    "app/lazy.py": "from app import core  # a cycle back\n",
    "app/sub/__init__.py": "",
    "app/sub/deep.py": "from ..util import helper\nVALUE = 1\n",
    "app/unused.py": "import json\n",
    "functions/handler/__init__.py": "",
    "functions/handler/main.py": "import boto3\nfrom handler import shared\n",
    "functions/handler/shared.py": "",
    "tests/test_core.py": "import pytest\nfrom app.core import VALUE\n",
    "tests/test_handler.py": "from handler.main import *\n",
    "broken.py": "def (:\n",
}


@pytest.fixture
def project(tmp_path: Path) -> Path:
    for rel, text in FILES.items():
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text(text, encoding="utf-8")
    return tmp_path


def test_the_closure_follows_absolute_relative_nested_and_cyclic_imports(project: Path) -> None:
    graph = testselect.ImportGraph(project)
    assert graph.closure(project / "tests/test_core.py") == {
        "tests/test_core.py",
        "app/__init__.py",
        "app/core.py",
        "app/util.py",
        "app/lazy.py",  # imported inside a function: it may run, so it counts
        "app/sub/__init__.py",
        "app/sub/deep.py",
    }
    # functions/ is an import root; third-party modules are not project files
    assert graph.closure(project / "tests/test_handler.py") == {
        "tests/test_handler.py",
        "functions/handler/__init__.py",
        "functions/handler/main.py",
        "functions/handler/shared.py",
    }
    assert graph.closure(project / "broken.py") == {"broken.py"}  # unparsable: itself only
    assert testselect.import_closure(project, project / "app/unused.py") == {"app/unused.py"}


def test_each_file_is_parsed_once_per_graph(project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    parsed: list[Path] = []
    original = testselect._imported_names

    def counting(path: Path, package: str) -> set[str]:
        parsed.append(path)
        return original(path, package)

    monkeypatch.setattr(testselect, "_imported_names", counting)
    graph = testselect.ImportGraph(project)
    first = graph.closure(project / "tests/test_core.py")
    assert graph.closure(project / "app/lazy.py") == first - {"tests/test_core.py"}
    assert len(parsed) == len(set(parsed)) == len(first)
