"""What the Bitbucket reader takes from a file: artifacts as Bitbucket hands them on (every earlier step's shared
artifacts by default, none with ``download: false``, the named ones with a list; scoped ones never; a parallel
sibling's never), and the variables a step's unconditional ``export`` lines set."""

from __future__ import annotations

import yaml

from cicd.adapters import bitbucket
from cicd.adapters.facts import Handoff, JobFacts


def _step(name: str, **extra: object) -> dict[str, object]:
    return {"step": {"name": name, "script": [f"uv run inv {name}"], **extra}}


def _facts(main: list[object]) -> dict[str, JobFacts]:
    doc = {"pipelines": {"branches": {"main": main}}}
    return {j.id: j for j in bitbucket.facts({bitbucket.PATH: yaml.safe_dump(doc)}).jobs}


def test_every_later_step_downloads_the_earlier_shared_artifacts_unless_told_otherwise() -> None:
    up = {
        "upload": [
            {"name": "art-a", "paths": [".cicd/artifact/**"]},
            {"name": "log-a", "type": "scoped", "paths": ["x/**"]},
        ]
    }
    jobs = _facts(
        [
            {"parallel": [_step("a", artifacts=up), _step("sibling")]},
            _step("b", artifacts={"upload": [{"name": "art-b", "paths": ["b/**"]}]}),
            _step("everything"),
            _step("nothing", artifacts={"download": False}),
            _step("named", artifacts={"download": ["art-b", "never-uploaded"]}),
        ]
    )
    assert jobs["a"].hands_on == [Handoff("art-a", (".cicd/artifact/**",))]
    assert jobs["sibling"].receives == []  # a parallel sibling's artifacts may not exist yet
    assert [h.name for h in jobs["everything"].receives] == ["art-a", "art-b"] and jobs["everything"].downloads
    assert jobs["nothing"].receives == [] and not jobs["nothing"].downloads
    assert [h.name for h in jobs["named"].receives] == ["art-b"] and not jobs["named"].downloads


def test_variables_are_the_unconditional_exports_with_their_defaults() -> None:
    script = [
        bitbucket.TARGET_LINE,
        'export A=1 B="two words"',
        'if [ "$CICD_TARGET" = aws ]; then\n  export AWS_REGION=eu-west-1\nfi',
        "uv run inv x",
    ]
    jobs = _facts([{"step": {"name": "x", "script": script}}])
    assert jobs["x"].variables == {"CICD_TARGET": "aws", "A": "1", "B": "two words"}
