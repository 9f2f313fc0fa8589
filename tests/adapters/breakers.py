"""Ways to break each rendered adapter, and the problem each must produce: the checks must catch every one.

Each breaker edits the text of the adapter rendered from the toy model (with the approval switch on) the way a
careless hand edit or a renderer bug would.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class Breaker:
    name: str
    edit: Callable[[str], str]
    expect: str
    """A substring of the problem the parity/property checks must report."""
    file: str | None = None
    """The file to edit (default: the adapter's main file)."""


def sub(pattern: str, replacement: str, count: int = 0) -> Callable[[str], str]:
    def edit(text: str) -> str:
        new, n = re.subn(pattern, replacement, text, count=count, flags=re.MULTILINE)
        assert n, f"breaker pattern {pattern!r} matched nothing"
        return new

    return edit


def drop(pattern: str) -> Callable[[str], str]:
    return sub(rf"^.*{pattern}.*\n", "")


COMMON_TEXT = [
    Breaker("no header", sub(r"\A.*\n", ""), "header"),
    Breaker("secret key", sub(r"\A", "# AWS_SECRET_ACCESS_KEY: x\n", 1), "long-lived AWS secret key"),
]

BREAKERS: dict[str, list[Breaker]] = {
    "github": [
        Breaker("unpinned action", sub(r"actions/checkout@[0-9a-f]{40}", "actions/checkout@v5"), "floating"),
        Breaker("moving ref", sub(r"actions/cache@[0-9a-f]{40}", "actions/cache@main"), "moving ref"),
        Breaker("pull_request_target", sub(r"^  pull_request:", "  pull_request_target:"), "pull_request_target"),
        Breaker("no guard", drop(r"name: Branch guard"), "no branch guard"),
        Breaker("no lock", drop(r"concurrency: \{group: deploy-"), "no native lock"),
        Breaker("no environment", drop(r"^    environment: dev$"), "no native environment"),
        Breaker("no timeout", drop(r"timeout-minutes"), "no timeout"),
        Breaker("no oidc", drop(r"id-token: write"), "no federated credentials"),
        Breaker("bad session name", sub(r"role-session-name: gh-", "role-session-name: gh run "), "not valid for STS"),
        Breaker(
            "deploy synthesizes",
            sub(r"uv run inv deploy --env dev", "uv run inv synth && uv run inv deploy --env dev"),
            "build once",
        ),
        Breaker(
            "path filter without itself",
            sub(r", \.github/workflows/pipeline\.yml\]", "]"),
            "leaves out the adapter file",
        ),
        Breaker("dropped check", drop(r"\{job: typecheck"), "never runs `typecheck`"),
        Breaker(
            "deploy before package",
            sub(r"needs: \[package, flutter-build\]", "needs: [flutter-build]"),
            "can start before `package`",
        ),
        Breaker(
            "deploy on pull requests",
            sub(
                r"if: github.event_name != 'pull_request' && github.ref == 'refs/heads/main'\n    environment: dev",
                "environment: dev",
            ),
            "runs on pull requests",
        ),
        Breaker("no uv cache", drop(r"^ +~/\.cache/uv$"), "no lock-file-keyed cache"),
        Breaker("no gate", sub(r"required reviewers", "reviewers"), "no manual gate"),
        Breaker("no step cache", drop(r"^ +\.cicd/cache$"), "step cache"),
    ],
    "gitlab": [
        Breaker("latest image", sub(r"image: python:[\w.-]+", "image: python:latest"), ":latest"),
        Breaker("no guard", drop(r'test "\$\{CI_COMMIT_BRANCH'), "no branch guard"),
        Breaker("no lock", drop(r"resource_group:"), "no native lock"),
        Breaker("no environment", drop(r"environment: \{name: dev"), "no native environment"),
        Breaker("no timeout", drop(r"^  timeout: 20m"), "no timeout"),
        Breaker("no oidc", drop(r"AWS_ID_TOKEN: \{aud"), "no federated credentials"),
        Breaker("fail-open credentials", sub(r'printf "%s" "\$AWS_ID_TOKEN"', "export $(echo x)"), "export $("),
        Breaker("no gate", sub(r", when: manual, allow_failure: false\}", "}"), "no manual gate"),
        Breaker("gate that does not block", sub(r"allow_failure: false", "allow_failure: true"), "no manual gate"),
        Breaker("no junit", drop(r"reports: \{junit"), "report UI"),
        Breaker("dropped check", drop(r"^sast: "), "never runs `sast`"),
        Breaker(
            "deploy before package",
            sub(r"\{job: package, artifacts: true\}", "{job: flutter-build, artifacts: true}"),
            "can start before `package`",
        ),
        Breaker(
            "no artifact download",
            sub(r"\{job: package, artifacts: true\}", "{job: package, artifacts: false}"),
            "does not take the packaged artifact",
        ),
        Breaker("path filter without itself", sub(r", \.gitlab-ci\.yml\]", "]"), "leaves out the adapter file"),
        Breaker("no step cache", drop(r"key: cicd-\$CI_JOB_NAME_SLUG"), "step cache"),
        Breaker("step cache per commit", sub(r"key: cicd-\$CI_JOB_NAME_SLUG", "key: $CI_COMMIT_SHA"), "step cache"),
        Breaker(
            "shared step cache trusted unsigned",
            sub(r", CICD_CACHE_VERIFY: \$CI_COMMIT_REF_PROTECTED", ""),
            "step cache",
        ),
    ],
    "circleci": [
        Breaker("no guard", drop(r'test "\$\{CIRCLE_BRANCH'), "no branch guard"),
        Breaker("no serial group", sub(r", serial-group: [^}]+\}", "}"), "no native lock"),
        Breaker("no context", sub(r", context: \[aws-dev\]", ""), "no native environment"),
        Breaker("no approval job", drop(r"hold-prod: \{type: approval"), "no manual gate"),
        Breaker("no timeout", sub(r", no_output_timeout: \d+m", ""), "no timeout"),
        Breaker("no oidc", sub(r"CIRCLE_OIDC_TOKEN_V2", "AWS_TOKEN"), "no federated credentials"),
        Breaker("no test results", drop(r"store_test_results"), "report UI"),
        Breaker("dropped check", drop(r"^      - sast: \{cache-verify"), "never runs `sast`"),
        Breaker("latest image", sub(r"python:[\w.-]+@sha256:[0-9a-f]+", "python:latest", 1), ":latest"),
        Breaker("no step cache saved", drop(r"Save the step cache"), "step cache"),
        Breaker("no fallback to main", drop(r"-main~$"), "step cache"),
    ],
    "bitbucket": [
        Breaker("no guard", drop(r'test "\$\{BITBUCKET_BRANCH'), "no branch guard"),
        Breaker("no concurrency group", drop(r"concurrency-group: deploy-dev"), "no native lock"),
        Breaker("no deployment", drop(r"deployment: dev"), "no native environment"),
        Breaker("no oidc", drop(r"oidc: true"), "no federated credentials"),
        Breaker("no manual trigger", drop(r"trigger: manual"), "no manual gate"),
        Breaker(
            "no artifact download", sub(r"download: \[artifact-package\]", "download: false", 1), "packaged artifact"
        ),
        Breaker("download by a wrong name", sub(r"\[artifact-dev\]", "[artifact-develop]", 1), "packaged artifact"),
        Breaker("dropped check on main", drop(r"- step: \*sast$"), "main: never runs `sast`"),
        Breaker("no step cache", sub(r", steps-lint\]", "]"), "lint: its step cache"),
    ],
    "azure": [
        Breaker("no guard", sub(r'test "\$\{BUILD_SOURCEBRANCH:-\}" = refs/heads/main', "true"), "no branch guard"),
        Breaker("no lock", drop(r"lockBehavior: sequential"), "no native lock"),
        Breaker("no gate", sub(r"task: ManualValidation@1", "task: Delay@1"), "no manual gate"),
        Breaker("no junit", drop(r"PublishTestResults@2"), "report UI"),
        Breaker(
            "deploy on pull requests",
            sub(r"ne\(variables\['Build.Reason'\], 'PullRequest'\)\)", "true)"),
            "runs on pull requests",
        ),
        Breaker("no workload identity", drop(r"addSpnToEnvironment: true"), "no federated credentials"),
        Breaker("no step cache restore keys", drop(r"restoreKeys: cicd"), "step cache"),
    ],
    "codecatalyst": [
        Breaker(
            "no guard",
            drop(r"WorkflowSource\.BranchName"),
            "no branch guard",
            ".codecatalyst/workflows/main.yaml",
        ),
        Breaker(
            "parallel runs",
            sub(r"RunMode: QUEUED", "RunMode: PARALLEL"),
            "no native lock",
            ".codecatalyst/workflows/main.yaml",
        ),
        Breaker(
            "no approval action",
            sub(r"Identifier: aws/approval@v1.0.0", "Identifier: aws/build@v1.0.0"),
            "no manual gate",
            ".codecatalyst/workflows/main.yaml",
        ),
        Breaker(
            "floating action", sub(r"aws/build@v1.0.0", "aws/build@v1"), "floating", ".codecatalyst/workflows/main.yaml"
        ),
        Breaker(
            "path filter without itself",
            sub(r", \.codecatalyst/workflows/pull-request\.yaml\]", "]"),
            "leaves out the adapter file",
        ),
        Breaker(
            "no step cache", drop(r"steps_lint: \{Path"), "lint: its step cache", ".codecatalyst/workflows/main.yaml"
        ),
    ],
    "jenkins": [
        Breaker("no guard", drop(r"sh 'test \"\$\{BRANCH_NAME"), "no branch guard"),
        Breaker("no lock", sub(r"; lock\(resource: 'deploy-dev'\)", ""), "no native lock"),
        Breaker("no input gate", sub(r"input message:", "echo message:"), "no manual gate"),
        Breaker("gate anyone may answer", sub(r", submitter: '[^']+'", ""), "no manual gate"),
        Breaker(
            "no oidc binding",
            sub(r"withCredentials\(\[file\(credentialsId:", "withCredentials([string(credentialsId:"),
            "no federated credentials",
        ),
        Breaker("no credentials in dev", sub(r"withAws\('dev'\) \{", "{"), "no federated credentials"),
        Breaker(
            "bad session name",
            sub(r"AWS_ROLE_SESSION_NAME=jenkins-", "AWS_ROLE_SESSION_NAME=jenkins build "),
            "not valid for STS",
        ),
        Breaker("no unstash", drop(r"unstash 'artifact-package'"), "does not take the packaged artifact"),
        Breaker(
            "no timeout", sub(r"options \{ timeout\(time: 20, unit: 'MINUTES'\) \}", "options { }", 1), "no timeout"
        ),
        Breaker("no junit", sub(r"junit allowEmptyResults", "echo allowEmptyResults"), "report UI"),
        Breaker("no step cache", sub(r", arbitraryFileCache\(path: '\.cicd/cache'[^)]*\)", ""), "step cache"),
        Breaker("step cache not seeded from main", sub(r"defaultBranch: 'main', ", ""), "step cache"),
    ],
    "codebuild": [
        Breaker("no guard", drop(r'test "\$\{CICD_BRANCH'), "no branch guard", "buildspecs/dev.yml"),
        Breaker(
            "parallel executions",
            sub(r'"execution_mode": "QUEUED"', '"execution_mode": "PARALLEL"'),
            "no native lock",
            "pipeline.json",
        ),
        Breaker("no approval action", sub(r'"type": "approval"', '"type": "note"'), "no manual gate", "pipeline.json"),
        Breaker(
            "no junit", sub(r"file-format: JUNITXML", "file-format: CUCUMBERJSON"), "report UI", "buildspecs/lint.yml"
        ),
        Breaker(
            "unkeyed cache",
            sub(r"key: cicd-lint-\$\(codebuild-hash-files [^)]*\)", "key: cicd-lint"),
            "cache",
            "buildspecs/lint.yml",
        ),
        Breaker(
            "deploy synthesizes",
            sub(r"commands: \[uv run inv deploy", "commands: [uv run inv synth, uv run inv deploy"),
            "build once",
            "buildspecs/dev.yml",
        ),
        Breaker("no step cache", sub(r', "\.cicd/cache/\*\*/\*"', ""), "lint: its step cache", "buildspecs/lint.yml"),
    ],
}
