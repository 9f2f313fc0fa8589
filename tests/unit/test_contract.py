"""The API contract: the committed one is valid and what is rendered from it is current; the api-contract step
fails, saying why, when the contract is invalid, a rendered file is stale or an environment signs longer than it."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest

from cicd import contract
from cicd.context import StepContext
from cicd.errors import StepFailed
from cicd.results import Status
from cicd.steps import checks

ROOT = Path(__file__).resolve().parents[2]
FIXTURE = Path(__file__).parent / "fixtures" / "contract"


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """A fixture project: a small contract of three operations, the files rendered from it, and a pyproject with
    no [tool.cicd] table (the defaults)."""
    root = tmp_path / "project"
    shutil.copytree(FIXTURE, root)
    (root / "pyproject.toml").write_text('[project]\nname = "x"\nversion = "0"\n')
    return root


@pytest.mark.component  # the project's own contract and what is rendered from it
def test_the_committed_contract_is_valid_and_its_renderings_current() -> None:
    spec = contract.load(ROOT)
    contract.validate(spec)
    assert contract.stale(ROOT, spec) == []


@pytest.mark.component  # the project's own contract
def test_the_table_has_every_operation_and_status_and_the_fixture_every_example() -> None:
    spec = contract.load(ROOT)
    table = contract.render_table(spec)
    fixture = json.loads(contract.render_fixture(spec))
    for op in contract.operations(spec):
        row = next(line for line in table.splitlines() if line.startswith(f"| `GET {op.path}"))
        assert all(f"`{status}`" in row for status in op.responses), row
        assert set(fixture[op.operation_id]) == set(op.responses)
    assert fixture["getLatestApk"]["404"] == [{"error": "no_build_published", "message": "No build published yet."}]


def test_the_step_passes_on_a_current_project(project: Path, make_ctx: Callable[..., StepContext]) -> None:
    outcome = checks.api_contract(make_ctx(root=project, step="api-contract"))
    assert outcome.status is Status.PASSED and "3 operations" in (outcome.reason or "")


def test_a_stale_readme_table_fails_and_render_fixes_it(project: Path, make_ctx: Callable[..., StepContext]) -> None:
    readme = project / contract.README
    readme.write_text(readme.read_text().replace("`404`", "`410`", 1))
    with pytest.raises(StepFailed, match=r"out of date with openapi.yaml: README.md"):
        checks.api_contract(make_ctx(root=project, step="api-contract"))
    assert contract.render(project) == ["README.md"]
    assert checks.api_contract(make_ctx(root=project, step="api-contract")).status is Status.PASSED


def test_a_changed_example_makes_the_fixture_stale(project: Path, make_ctx: Callable[..., StepContext]) -> None:
    path = project / contract.CONTRACT
    path.write_text(path.read_text().replace("size: 48213377", "size: 48213378"))
    with pytest.raises(StepFailed, match=r"api_examples.json"):
        checks.api_contract(make_ctx(root=project, step="api-contract"))


def test_an_invalid_contract_fails_with_one_line(project: Path, make_ctx: Callable[..., StepContext]) -> None:
    path = project / contract.CONTRACT
    original = path.read_text()
    path.write_text(original.replace("operationId: getHealth\n", "operationId: getHealth\n      bogus: 1\n"))
    with pytest.raises(StepFailed, match=r"openapi.yaml is not valid OpenAPI") as err:
        checks.api_contract(make_ctx(root=project, step="api-contract"))
    assert "\n" not in str(err.value)
    path.write_text(original.replace("#/components/schemas/Health", "#/components/schemas/Nope"))
    with pytest.raises(StepFailed, match=r"a \$ref points nowhere \('/components/schemas/Nope'\)"):
        checks.api_contract(make_ctx(root=project, step="api-contract"))
    path.write_text("openapi: [unclosed\n")
    with pytest.raises(StepFailed, match=r"openapi.yaml is not valid YAML"):
        checks.api_contract(make_ctx(root=project, step="api-contract"))


def test_an_environment_signing_longer_than_the_contract_fails(
    project: Path, make_ctx: Callable[..., StepContext]
) -> None:
    (project / "pyproject.toml").write_text(
        '[project]\nname = "x"\nversion = "0"\n\n[tool.cicd.environments.preprod]\nurl_ttl_max = 7200\n'
    )
    with pytest.raises(StepFailed, match=r"url_ttl_max of preprod is above the contract's maximum for expires"):
        checks.api_contract(make_ctx(root=project, step="api-contract"))


def test_a_missing_contract_is_a_one_line_failure(tmp_path: Path) -> None:
    with pytest.raises(StepFailed, match=r"cannot read the API contract openapi.yaml"):
        contract.load(tmp_path)
    with pytest.raises(StepFailed, match=r"must define components.parameters.Expires"):
        contract.ttl_maximum({"openapi": "3.1.0", "components": {}})
