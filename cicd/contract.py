"""The API contract, ``openapi.yaml``: the one description of the service's API, and what is rendered from it.

Read by the handler's contract tests (every answer the handler gives is checked against it), by ``dast`` (schemathesis
generates its requests from it and checks the deployed API's answers against it) and by the ``api-contract`` step,
which validates it with openapi-spec-validator and fails when what is rendered from it is stale:

- the README's API table, between ``<!-- api-table:start -->`` and ``<!-- api-table:end -->``;
- the Flutter client's test fixture ``flutter/test/fixtures/api_examples.json`` (every example answer, by operation
  and status), which ``flutter test`` parses with the app's own code.

``inv api.render`` rewrites both.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from cicd.errors import StepFailed

CONTRACT = "openapi.yaml"
README = "README.md"
FIXTURE = "flutter/test/fixtures/api_examples.json"
TABLE_START = "<!-- api-table:start (rendered from openapi.yaml by `inv api.render`; do not edit) -->"
TABLE_END = "<!-- api-table:end -->"
SCHEMA_URI = "urn:apk-pipeline:openapi"
METHODS = ("get", "put", "post", "delete", "options", "head", "patch", "trace")


@dataclass(frozen=True)
class Operation:
    method: str
    path: str
    operation_id: str
    summary: str
    parameters: tuple[dict[str, Any], ...]
    responses: dict[str, dict[str, Any]]


def load(root: Path) -> dict[str, Any]:
    """The contract as data; :class:`StepFailed` (one line) when it is missing or not a YAML mapping."""
    path = root / CONTRACT
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as err:
        raise StepFailed(f"cannot read the API contract {CONTRACT}: {err.strerror}") from err
    except yaml.YAMLError as err:
        raise StepFailed(f"{CONTRACT} is not valid YAML: {str(err).splitlines()[0]}") from err
    if not isinstance(data, dict):
        raise StepFailed(f"{CONTRACT} must be a mapping with openapi, info and paths")
    return data


def validate(spec: Mapping[str, Any]) -> None:
    """openapi-spec-validator (OpenAPI 3.1): :class:`StepFailed` with the first problem."""
    from openapi_spec_validator import validate as validate_spec
    from openapi_spec_validator.validation.exceptions import OpenAPIValidationError
    from referencing.exceptions import Unresolvable

    try:
        validate_spec(dict(spec))
    except Unresolvable as err:
        raise StepFailed(
            f"{CONTRACT} is not valid OpenAPI: a $ref points nowhere ({str(err).split(' does not')[0]})"
        ) from err
    except OpenAPIValidationError as err:
        where = "/".join(str(p) for p in getattr(err, "path", ()) or ())
        first = str(err.message).strip().splitlines()[0] if str(err.message).strip() else type(err).__name__
        raise StepFailed(f"{CONTRACT} is not valid OpenAPI: {first}" + (f" (at {where})" if where else "")) from err
    if not str(spec.get("openapi", "")).startswith("3.1"):
        raise StepFailed(f"{CONTRACT} must be OpenAPI 3.1, not {spec.get('openapi')!r}")


def ttl_maximum(spec: Mapping[str, Any]) -> int:
    """The longest lifetime, in seconds, a download URL may have (the ``expires`` parameter's maximum)."""
    try:
        return int(spec["components"]["parameters"]["Expires"]["schema"]["maximum"])
    except (KeyError, TypeError, ValueError) as err:
        raise StepFailed(f"{CONTRACT} must define components.parameters.Expires with a schema maximum") from err


def resolve(spec: Mapping[str, Any], node: Any) -> Any:
    """``node`` with a local ``$ref`` (``#/...``) followed, repeatedly."""
    seen = 0
    while isinstance(node, Mapping) and isinstance(node.get("$ref"), str):
        ref = node["$ref"]
        if not ref.startswith("#/") or seen > 16:
            raise StepFailed(f"{CONTRACT}: only local references are supported, got {ref!r}")
        node = spec
        for part in ref[2:].split("/"):
            node = node[part.replace("~1", "/").replace("~0", "~")]
        seen += 1
    return node


def operations(spec: Mapping[str, Any]) -> Iterator[Operation]:
    for path, item in (spec.get("paths") or {}).items():
        for method in METHODS:
            if method in item:
                op = item[method]
                params = tuple(resolve(spec, p) for p in (*item.get("parameters", ()), *op.get("parameters", ())))
                responses = {str(k): resolve(spec, v) for k, v in op.get("responses", {}).items()}
                yield Operation(method.upper(), path, op["operationId"], op.get("summary", ""), params, responses)


def find(spec: Mapping[str, Any], method: str, path: str) -> Operation | None:
    return next((o for o in operations(spec) if o.method == method.upper() and o.path == path), None)


def response_examples(spec: Mapping[str, Any], response: Mapping[str, Any]) -> list[Any]:
    """Every example body of one response (``example`` and each of ``examples``)."""
    found: list[Any] = []
    for media in (response.get("content") or {}).values():
        if "example" in media:
            found.append(media["example"])
        found.extend(resolve(spec, e)["value"] for e in (media.get("examples") or {}).values())
    return found


def body_schema(response: Mapping[str, Any]) -> dict[str, Any] | None:
    media = (response.get("content") or {}).get("application/json")
    return dict(media["schema"]) if media and "schema" in media else None


def schema_problems(spec: Mapping[str, Any], schema: Mapping[str, Any], instance: Any) -> list[str]:
    """Where ``instance`` breaks ``schema`` (JSON Schema 2020-12, ``$ref`` into the contract), one line each."""
    from jsonschema import Draft202012Validator, FormatChecker
    from referencing import Registry
    from referencing.jsonschema import DRAFT202012

    registry: Registry[Any] = Registry().with_resource(SCHEMA_URI, DRAFT202012.create_resource(dict(spec)))
    rebased = json.loads(json.dumps(schema).replace('"#/', f'"{SCHEMA_URI}#/'))
    validator = Draft202012Validator(rebased, registry=registry, format_checker=FormatChecker())
    return [
        f"{'/'.join(map(str, e.absolute_path)) or '(body)'}: {e.message}"
        for e in sorted(validator.iter_errors(instance), key=lambda e: list(map(str, e.absolute_path)))
    ]


def answer_problems(  # noqa: PLR0917 - one answer's parts, in the order an HTTP exchange has them
    spec: Mapping[str, Any], method: str, path: str, status: int, headers: Mapping[str, str], body: Any
) -> list[str]:
    """Where one answer of the operation ``method path`` breaks the contract: status, headers, body."""
    op = find(spec, method, path)
    if op is None:
        return [f"{method} {path} is not in {CONTRACT}"]
    response = op.responses.get(str(status)) or op.responses.get(f"{str(status)[0]}XX") or op.responses.get("default")
    if response is None:
        return [f"{method} {path}: status {status} is not documented (documented: {', '.join(op.responses)})"]
    lower = {k.lower(): v for k, v in headers.items()}
    problems = []
    for name, declared in (response.get("headers") or {}).items():
        header = resolve(spec, declared)
        value = lower.get(name.lower())
        if value is None:
            if header.get("required"):
                problems.append(f"header {name} is missing")
            continue
        problems += [f"header {name}: {p}" for p in schema_problems(spec, header.get("schema", {}), value)]
    schema = body_schema(response)
    if schema is not None:
        content_type = lower.get("content-type", "")
        if content_type.split(";")[0].strip() != "application/json":
            problems.append(f"Content-Type is {content_type!r}, not application/json")
        problems += schema_problems(spec, schema, body)
    return problems


def _cell(text: str) -> str:
    return " ".join(text.split()).replace("|", "\\|")


def render_table(spec: Mapping[str, Any]) -> str:
    """The README's API table: one row per operation, its query parameters and every documented answer."""
    rows = ["| request | answers |", "|---|---|"]
    for op in sorted(operations(spec), key=lambda o: o.path):
        query = [p for p in op.parameters if p.get("in") == "query"]
        request = f"`{op.method} {op.path}" + "".join(f"[?{p['name']}=…]" for p in query) + "`"
        answers = []
        for status, response in op.responses.items():
            schema = body_schema(response) or {}
            target = resolve(spec, schema)
            if status.startswith("2") and "properties" in target:
                shape = "{" + ", ".join(target["properties"]) + "}"
            else:
                codes = sorted({e["error"] for e in response_examples(spec, response) if isinstance(e, dict)})
                shape = "{error: " + " \\| ".join(f"`{c}`" for c in codes) + ", message}" if codes else ""
            answers.append(f"`{status}` {shape} — {_cell(response.get('description', ''))}".rstrip(" —"))
        for p in query:
            bounds = p.get("schema", {})
            low, high = bounds.get("minimum", ""), bounds.get("maximum", "")
            answers.append(f"`{p['name']}`: {bounds.get('type', 'string')} {low}..{high}")
        rows.append(f"| {request}<br>{_cell(op.summary)} | " + "<br>".join(answers) + " |")
    return "\n".join(rows)


def render_fixture(spec: Mapping[str, Any]) -> str:
    """Every example answer by operation id and status, for the Flutter client's tests."""
    data = {
        op.operation_id: {status: response_examples(spec, response) for status, response in op.responses.items()}
        for op in operations(spec)
    }
    header = {"_comment": f"rendered from {CONTRACT} by `inv api.render`; do not edit"}
    return json.dumps({**header, **data}, indent=2, sort_keys=False) + "\n"


def _readme_with_table(readme: str, table: str) -> str:
    if TABLE_START not in readme or TABLE_END not in readme:
        raise StepFailed(f"{README} has no API table markers ({TABLE_START!r} ... {TABLE_END!r})")
    head, rest = readme.split(TABLE_START, 1)
    return f"{head}{TABLE_START}\n{table}\n{TABLE_END}{rest.split(TABLE_END, 1)[1]}"


def rendered(root: Path, spec: Mapping[str, Any]) -> dict[Path, str]:
    """What the README and the fixture must hold, by path."""
    readme = (root / README).read_text(encoding="utf-8")
    return {root / README: _readme_with_table(readme, render_table(spec)), root / FIXTURE: render_fixture(spec)}


def stale(root: Path, spec: Mapping[str, Any]) -> list[str]:
    """The rendered files that differ from what the contract renders (relative paths)."""
    return [
        str(path.relative_to(root))
        for path, text in rendered(root, spec).items()
        if not path.is_file() or path.read_text(encoding="utf-8") != text
    ]


def render(root: Path) -> list[str]:
    """Rewrite the rendered files; returns those that changed."""
    spec = load(root)
    changed = stale(root, spec)
    for path, text in rendered(root, spec).items():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    return changed
