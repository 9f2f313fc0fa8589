"""The bb-run harness (:mod:`cicd.adapters.bbrun`) without bb-run: pipeline selection, levels, the emulated keyed
caches, and a whole pull-request pipeline driven through a stand-in interpreter that behaves like ``bb-run --step``
(the real bb-run runs the project's own pipeline in ``test_local_runs.py``)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from cicd.adapters import bbrun
from cicd.sandbox import git

CONFIG: dict[str, Any] = {
    "definitions": {"caches": {"steps-a": {"key": {"files": ["src/**"]}, "path": ".cicd/cache"}, "plain": "out"}},
    "pipelines": {
        "pull-requests": {
            "**": [
                {"parallel": [{"step": {"name": "a", "caches": ["steps-a", "plain"], "script": ["a"]}}, {
                    "step": {"name": "b", "script": ["b"], "artifacts": {"upload": [{"name": "art-b"}]}}}]},
                {"step": {"name": "c", "script": ["c"], "artifacts": {"download": ["art-b"]}}},
            ],
            "feature/*": [{"step": {"name": "only-feature", "script": ["x"]}}],
        },
        "custom": {"nightly": [{"step": {"name": "n", "script": ["n"]}}]},
    },
}  # fmt: skip

# Stands in for "python -c DRIVER FILE --repo CLONE ... --step NAME": like bb-run, it reads the (preprocessed) file,
# writes into the local folder of every cache the step names and captures an artifact, prints its result line, and
# fails the step named "bad".
FAKE = """#!{python}
import sys
from pathlib import Path
import yaml
pipeline = yaml.safe_load(Path(sys.argv[3]).read_text())
args = sys.argv[sys.argv.index("--repo"):]
repo, name = Path(args[1]), args[args.index("--step") + 1]
def steps(node):
    if isinstance(node, dict):
        if "script" in node:
            yield node
        for value in node.values():
            yield from steps(value)
    elif isinstance(node, list):
        for value in node:
            yield from steps(value)
step = next(s for s in steps(pipeline["pipelines"]) if s.get("name") == name)
print(f"Running step {{name}}")
print("seen: " + ",".join(sorted(p.name for p in repo.iterdir() if p.name.startswith("from-"))))
for cache in step.get("caches", []):
    (repo / ".bb-run" / "caches" / cache).mkdir(parents=True, exist_ok=True)
    (repo / ".bb-run" / "caches" / cache / f"by-{{name}}").write_text(name)
run = repo / ".bb-run" / "artifacts" / "run_1" / "L1"
run.mkdir(parents=True, exist_ok=True)
(run / f"from-{{name}}").write_text(name)
print(f"Artifacts: saved [art-{{name}}]")
print(("fail" if name == "bad" else "ok") + "  parallel group  (0.1s)")
sys.exit(1 if name == "bad" else 0)
"""


def project(tmp_path: Path, config: dict[str, Any]) -> Path:
    root = tmp_path / "project"
    (root / "src").mkdir(parents=True)
    (root / "src" / "x.py").write_text("x = 1\n")
    (root / "README.md").write_text("# readme\n")
    (root / "bitbucket-pipelines.yml").write_text(yaml.safe_dump(config))
    git(root, "init", "-q")
    git(root, "add", "-A")
    git(root, "-c", "user.name=t", "-c", "user.email=t@example.invalid", "commit", "-qm", "init")
    return root


def fake_python(tmp_path: Path) -> Path:
    script = tmp_path / "fake-bb-run-python"
    script.write_text(FAKE.format(python=sys.executable))
    script.chmod(0o755)
    return script


def test_the_target_picks_the_exact_key_then_the_most_specific_glob() -> None:
    def names(target: str) -> list[str]:
        return [s["step"]["name"] for s in bbrun.target_items(CONFIG, target) if "step" in s]

    assert names("pull-requests.feature/login") == ["only-feature"]
    assert names("pull-requests.fix") == ["c"]  # the first item of "**" is a parallel group
    assert names("custom.nightly") == ["n"] and bbrun.target_items(CONFIG, "custom.other") == []


def test_levels_keep_parallel_groups_and_their_fail_fast() -> None:
    items = [*bbrun.target_items(CONFIG, bbrun.PR_TARGET), {"parallel": {"fail-fast": True, "steps": [{"step": {}}]}}]
    shape = [([s.get("name") for s in steps], ff) for steps, ff in bbrun.levels(items)]
    assert shape == [(["a", "b"], False), (["c"], False), ([None], True)]


@pytest.mark.component  # runs bb-run and git
def test_keyed_caches_follow_their_files_only(tmp_path: Path) -> None:
    root = project(tmp_path, CONFIG)
    layers = bbrun.cache_layers(CONFIG, root)
    assert layers["plain"] == "plain" and layers["steps-a"].startswith("steps-a-")
    (root / "README.md").write_text("# changed\n")
    assert bbrun.cache_layers(CONFIG, root) == layers
    (root / "src" / "x.py").write_text("x = 2\n")
    assert bbrun.cache_layers(CONFIG, root)["steps-a"] != layers["steps-a"]
    doc = bbrun.preprocess(CONFIG, layers)
    assert doc["definitions"]["caches"] == {layers["steps-a"]: ".cicd/cache", "plain": "out"}
    first = doc["pipelines"]["pull-requests"]["**"][0]["parallel"][0]["step"]
    assert first["caches"] == [layers["steps-a"], "plain"]
    assert CONFIG["pipelines"]["pull-requests"]["**"][0]["parallel"][0]["step"]["caches"] == ["steps-a", "plain"]


@pytest.mark.component  # runs bb-run and git
def test_a_pipeline_runs_step_by_step_with_artifacts_and_caches(tmp_path: Path) -> None:
    root = project(tmp_path, CONFIG)
    store = tmp_path / "store"
    layers = bbrun.cache_layers(CONFIG, root)
    (store / "caches" / "plain").mkdir(parents=True)
    (store / "caches" / "plain" / "seed").write_text("seeded")
    result = bbrun.run_bb_run(root, store=store, python=fake_python(tmp_path), jobs=2)
    assert result.returncode == 0 and set(result.steps) == {"a", "b", "c"} and not result.not_run
    assert all(bbrun.step_result(r) == "ok" for r in result.steps.values())
    a, c = result.steps["a"], result.steps["c"]
    assert (a.restored, a.saved) == (("plain",), ("steps-a",))  # the keyed cache was absent: saved after success
    assert (store / "caches" / layers["steps-a"] / "by-a").read_text() == "a"
    assert (store / "caches" / "plain" / "seed").read_text() == "seeded"  # a layer that existed is never overwritten
    assert not (store / "caches" / "plain" / "by-a").exists()
    assert "seen: from-b\n" in c.output  # c downloads art-b only (not art-a), into its own clone
    assert set(result.steps["b"].artifacts) == {"art-b"} and a.folder != c.folder


@pytest.mark.component  # runs bb-run and git
def test_a_failed_step_stops_the_pipeline_after_its_level(tmp_path: Path) -> None:
    config = yaml.safe_load(yaml.safe_dump(CONFIG))
    config["pipelines"]["pull-requests"]["**"][0]["parallel"][1]["step"]["name"] = "bad"
    root = project(tmp_path, config)
    result = bbrun.run_bb_run(root, store=tmp_path / "store", python=fake_python(tmp_path))
    assert result.returncode == 1 and result.not_run == ("c",)
    assert result.steps["bad"].returncode == 1 and bbrun.step_result(result.steps["bad"]) == "fail"
    assert result.steps["a"].returncode == 0


@pytest.mark.component  # runs bb-run and git
def test_a_manual_step_holds_the_pipeline_until_released(tmp_path: Path) -> None:
    config = yaml.safe_load(yaml.safe_dump(CONFIG))
    config["pipelines"]["pull-requests"]["**"][1]["step"]["trigger"] = "manual"
    root = project(tmp_path, config)
    paused = bbrun.run_bb_run(root, store=tmp_path / "store", python=fake_python(tmp_path))
    assert paused.returncode == 0 and paused.held == ("c",) and set(paused.steps) == {"a", "b"}
    released = bbrun.run_bb_run(root, store=tmp_path / "store", python=fake_python(tmp_path), release=True)
    assert released.returncode == 0 and not released.held and "c" in released.steps
