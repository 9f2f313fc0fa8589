"""The comparison guide, ``docs/ci-comparison.md``, rendered from the model and the adapters (never edited by hand).

It holds: the pipeline graph (mermaid, from :func:`cicd.graph.mermaid`), a concepts x tools table, the measured size
of every adapter next to the anchors', the support table (what is validated or executed here, with footnotes for
what cannot be), a paragraph per tool, and every adapter verbatim.
"""

from __future__ import annotations

from typing import Final

from cicd.adapters.common import GENERATOR
from cicd.adapters.facts import line_count
from cicd.adapters.plan import Plan
from cicd.adapters.registry import ADAPTERS, Adapter
from cicd.graph import mermaid

PATH: Final = "docs/ci-comparison.md"

CONCEPTS: Final[tuple[tuple[str, dict[str, str]], ...]] = (
    (
        "PR vs main trigger",
        {
            "github": "`on: pull_request` / `push: branches: [main]`; jobs gated with `if:`",
            "gitlab": "`workflow: rules:` (`merge_request_event`, default branch); job `rules:`",
            "circleci": "two workflows with `when:` on `pipeline.git.branch`",
            "bitbucket": "`pipelines: pull-requests:` and `branches: main:` sections",
            "azure": "`pr:` and `trigger:`; stage `condition:` on `Build.Reason`",
            "codecatalyst": "two workflow files: `PULLREQUEST` and `PUSH` triggers",
            "jenkins": "multibranch: `PR-*` branches; `when { branch 'main' }`",
            "codebuild": "two CodePipeline V2 pipelines: pull-request and push triggers",
        },
    ),
    (
        "Job dependencies",
        {
            "github": "`needs:` (a graph)",
            "gitlab": "`needs:` (a graph) plus `stages:`",
            "circleci": "`requires:` in the workflow (a graph)",
            "bitbucket": "none: a list of steps and `parallel` groups (levels)",
            "azure": "`dependsOn:` between stages and jobs (a graph)",
            "codecatalyst": "`DependsOn:` (a graph)",
            "jenkins": "sequential stages, `parallel` blocks (levels)",
            "codebuild": "stages in order, `runOrder` inside a stage (levels)",
        },
    ),
    (
        "Parallel checks",
        {
            "github": "one `matrix` job: one runner per check",
            "gitlab": "one job per check in one stage",
            "circleci": "one job per check, no `requires`",
            "bitbucket": "a `parallel` group",
            "azure": "one job per check in the `checks` stage",
            "codecatalyst": "actions without `DependsOn`",
            "jenkins": "a `parallel` block",
            "codebuild": "actions of one stage with the same run order",
        },
    ),
    (
        "Environments and approval",
        {
            "github": "`environment:` (protection rules, variables); with the approval switch on, a job in the "
            "environment `prod-change-set` runs `inv change-set` and the required reviewers of `prod` are the gate "
            "(private repositories need a plan that offers them)",
            "gitlab": "`environment:` with tier; with the approval switch on, a job with `environment: {name: "
            "prod-change-set, action: prepare}` (its own read-only role) runs `inv change-set` and the prod job is "
            "`when: manual` (`allow_failure: false`)",
            "circleci": "a context per environment (`aws-<env>`); with the approval switch on, a job with the "
            "context `aws-prod-change-set` (a read-only role) runs `inv change-set` and a `type: approval` job "
            "(`hold-prod`) holds prod; a security group on "
            "`aws-prod` limits who can release it",
            "bitbucket": "`deployment:` (variables, restrictions); with the approval switch on, a deployment step "
            "`prod-change-set` (a read-only role) runs `inv change-set` and `trigger: manual` holds the prod step",
            "azure": "`deployment` jobs on environments; with the approval switch on, a job runs `inv change-set` "
            "through the service connection `aws-prod-change-set` (a read-only role) and an agentless job's "
            "`ManualValidation@1` (`approvers`) holds prod",
            "codecatalyst": "`Environment:` with an account connection; with the approval switch on, an action in "
            "the environment `prod-change-set` (a read-only role) runs `inv change-set` and an `aws/approval@v1` gate "
            "(`ApprovalsRequired: 1`) holds "
            "prod",
            "jenkins": "a stage per environment (agent label `aws-<env>`, `lock`); with the approval switch on, a "
            "stage runs `inv change-set` with the credentials `aws-oidc-prod-change-set` (a read-only role) and an "
            "`input` stage with `submitter` (`prod-approvers`) holds prod",
            "codebuild": "a stage per environment, its project under that environment's role; with the approval "
            "switch on, a project under a read-only role runs `inv change-set` and a `ManualApproval` action (run "
            "order 1) "
            "holds the prod action",
        },
    ),
    (
        "AWS credentials",
        {
            "github": "OIDC: `id-token: write` + `aws-actions/configure-aws-credentials`, a step with "
            "`if: env.CICD_TARGET == 'aws'`",
            "gitlab": "OIDC: `id_tokens:` + web-identity variables, set only when `CICD_TARGET=aws` (a shell `if`)",
            "circleci": "OIDC: `$CIRCLE_OIDC_TOKEN_V2` (needs a context), handed to the SDKs only when "
            "`CICD_TARGET=aws` (a shell `if`)",
            "bitbucket": "OIDC: `oidc: true` + `$BITBUCKET_STEP_OIDC_TOKEN`, handed to the SDKs only when "
            "`CICD_TARGET=aws` (a shell `if`)",
            "azure": "workload identity federation: `AzureCLI@2` `idToken` as web identity, a step with "
            "`condition: eq(variables['CICD_TARGET'], 'aws')`",
            "codecatalyst": "the environment's account connection role, supplied to the action: no login step to "
            "skip (with `CICD_TARGET=local` the tasks use the embedded AWS's dummy credentials instead)",
            "jenkins": "OIDC: the OpenID Connect Provider plugin's id token file bound with `withCredentials` as "
            "`AWS_WEB_IDENTITY_TOKEN_FILE` + `AWS_ROLE_ARN`, only when `CICD_TARGET=aws` (a helper's `if`); "
            "fallback: the agent's instance role (`CICD_AWS_AUTH=instance-role`)",
            "codebuild": "the project's service role per environment, supplied to every build: no login step to "
            "skip (with `CICD_TARGET=local` the tasks use the embedded AWS's dummy credentials instead)",
        },
    ),
    (
        "Secrets and variables",
        {
            "github": "environment variables (`vars.AWS_ROLE_ARN`); fork PRs get none",
            "gitlab": "CI/CD variables scoped to environments, protected branches",
            "circleci": "contexts restricted to main (`AWS_ROLE_ARN`); no secrets for fork PRs (setting); no "
            "config-wide variables, so `CICD_TARGET` is in both executors' `environment:`",
            "bitbucket": "deployment variables (`AWS_ROLE_ARN`); no pipeline-level variables: every script starts "
            'with `export CICD_TARGET="${CICD_TARGET:-aws}"` (one YAML anchor), which a repository variable overrides',
            "azure": "a service connection and a variable group (`AWS_ROLE_ARN`) per environment stage; fork PR "
            "secrets off (setting)",
            "codecatalyst": "environments and secrets of the space; no workflow-level variables, so every action "
            "sets `CICD_TARGET` in `Inputs.Variables`",
            "jenkins": "credentials store: `aws-oidc-<env>` (id token file) and `aws-role-<env>` (role ARN) per "
            "environment; `CICD_TARGET` in the pipeline's `environment {}`",
            "codebuild": "none needed (roles); `CICD_TARGET` is a V2 pipeline-level variable passed to every action; "
            "Parameter Store/Secrets Manager in `env:`",
        },
    ),
    (
        "Artifacts",
        {
            "github": "`upload-artifact` as `artifact-<job>` / `download-artifact` by `name` (each job takes the "
            "artifact of the job before it: flutter-build → package → dev → preprod → prod)",
            "gitlab": "`artifacts: paths:` / `needs:` (a job gets the artifacts of its needs): each job that takes "
            "`.cicd/artifact/` needs the one job that handed it on with `artifacts: true`, the others with `false`",
            "circleci": "`persist_to_workspace` (a layer per job: the builds and every environment job persist "
            "`.cicd/artifact/`) / `attach_workspace` (the layers of every upstream job, in workflow order, a later "
            "one overwriting an earlier)",
            "bitbucket": "named `artifacts: upload` / `download` (a step gets every earlier step's shared artifacts "
            "unless `download:` lists names or is `false`): each step names the one it takes; run folders are "
            "`scoped`",
            "azure": "`PublishPipelineArtifact@1` / `DownloadPipelineArtifact@2` by name (each environment job "
            "publishes its own); deployment jobs set `download: none`",
            "codecatalyst": "`Outputs.Artifacts` / `Inputs.Artifacts`: an input artifact lands in "
            "`$CATALYST_SOURCE_DIR_<name>` (paths kept), not in the working folder, so a step copies its "
            "`.cicd/artifact/` in; every build and environment action outputs `.cicd/artifact/` again",
            "jenkins": "`stash` / `unstash` by name (each environment stage stashes `.cicd/artifact/` again under "
            "its own name); a stage first clears what a reused workspace kept",
            "codebuild": "output artifacts (buildspec `secondary-artifacts` of the same name) / input artifacts: a "
            "secondary input lands in `$CODEBUILD_SRC_DIR_<name>`, so the buildspec copies it into `.cicd/artifact/`; "
            "every build and environment action hands it on again",
        },
    ),
    (
        "Hand-offs between checks",
        {
            "github": "the `unit-test` and `component-test` legs of the checks matrix upload `.cicd/handoff/` "
            "(`if: matrix.handoff`); the `coverage` job `needs: [checks]` (a job cannot wait for single legs of a "
            "matrix) and downloads both by name",
            "gitlab": "the tiers add `.cicd/handoff/<step>/` to their `artifacts:`; `coverage` `needs:` both with "
            "`artifacts: true`, in the same `checks` stage",
            "circleci": "the tiers persist `.cicd/handoff/<step>` (a folder each: two jobs may not persist the "
            "same file); `coverage` `requires:` both and attaches the workspace",
            "bitbucket": "the tiers upload a named shared artifact; the `coverage` step, in the next level "
            "(after the `parallel` group), downloads both by name",
            "azure": "the tiers publish `.cicd/handoff` as pipeline artifacts; `coverage` `dependsOn:` both jobs "
            "of the `checks` stage and downloads them",
            "codecatalyst": "the tiers output an artifact each; `coverage` takes both as input artifacts and copies "
            "them from `$CATALYST_SOURCE_DIR_<name>`",
            "jenkins": "the tiers `stash` `.cicd/handoff/<step>/**`; the `coverage` stage, in the next level, "
            "unstashes both",
            "codebuild": "the tiers' actions output `handoff_<job>`; the `coverage` action, in the next stage, takes "
            "both as secondary inputs and copies them from `$CODEBUILD_SRC_DIR_<name>`",
        },
    ),
    (
        "Caching (checks only)",
        {
            "github": "`actions/cache` keyed on `hashFiles(locks)` (uv's cache included)",
            "gitlab": "`cache: key: files: [requirements.lock, ...]`; builds and environment jobs `cache: []`",
            "circleci": "`restore_cache`/`save_cache` with `{{ checksum }}`; not restored on main (a `when` step)",
            "bitbucket": "`definitions: caches:` with `key: files:`; main's checks still restore them (see "
            "docs/security.md)",
            "azure": "`Cache@2` with `key: ... | requirements.lock`",
            "codecatalyst": "`FileCaching` (named, not keyed by file)[^cc-cache]",
            "jenkins": "Job Cacher `cacheValidityDecidingFile`",
            "codebuild": "`cache: key:` with `codebuild-hash-files`; build, approval and environment projects have "
            "no cache",
        },
    ),
    (
        "Step cache (`.cicd/cache`)",
        {
            "github": "`actions/cache` per job, key ends in the commit, `restore-keys` prefix: a PR restores main's "
            "newest; a PR's own entries stay in its scope",
            "gitlab": "`cache: key: cicd-$CI_JOB_NAME_SLUG`, `unprotect: true`: an MR restores main's entries; main "
            "serves only entries signed with its protected `CICD_CACHE_SECRET`[^gl-cache]",
            "circleci": "`restore_cache` keys `JOB-BRANCH~REVISION`, `JOB-BRANCH~`, `JOB-main~`: the branch's newest, "
            "else main's; main's checks serve only entries signed with `cicd-main`'s `CICD_CACHE_SECRET`",
            "bitbucket": "a cache per step keyed by the step's input files: the same inputs restore the same entries, "
            "whichever branch saved them[^bb-cache]; main's checks restore none",
            "azure": "`Cache@2` per job, key ends in `Build.SourceVersion`, `restoreKeys` prefix: a PR restores its "
            "target branch's newest",
            "codecatalyst": "`FileCaching` per action; caches are scoped to workflow and branch, so the pull-request "
            "workflow keeps its own[^cc-cache]",
            "jenkins": "Job Cacher `arbitraryFileCache` per stage; `defaultBranch: 'main'` seeds a branch or PR job "
            "that has none",
            "codebuild": "one `cache:` per buildspec, key per job and commit, `fallback-keys` prefix: the newest entry "
            "of any run sharing the cache location; the pull-request and main projects have separate cache buckets",
        },
    ),
    (
        "Test reports",
        {
            "github": "job summary (written by the runner), SARIF to code scanning; JUnit as an artifact[^gh-junit]",
            "gitlab": "`artifacts: reports: junit:`",
            "circleci": "`store_test_results` (Tests tab)",
            "bitbucket": "automatic from `test-results/`",
            "azure": "`PublishTestResults@2` + `##vso[task.uploadsummary]`",
            "codecatalyst": "`Outputs.Reports` (`JUNITXML`)",
            "jenkins": "`junit` step",
            "codebuild": "`reports:` (report groups)",
        },
    ),
    (
        "One deploy at a time",
        {
            "github": "`concurrency: group: deploy-<env>` on the environment job only (a newer run's pending job "
            "replaces an older pending one; the workflow-level group only cancels a pull request's older runs)",
            "gitlab": "`resource_group: <env>`",
            "circleci": "`serial-group:`",
            "bitbucket": "`concurrency-group:` (and deployment locking)",
            "azure": "`lockBehavior: sequential` + the environment's Exclusive Lock",
            "codecatalyst": "`RunMode: QUEUED`",
            "jenkins": "`disableConcurrentBuilds()` + `lock(resource:)`",
            "codebuild": "pipeline execution mode `QUEUED`",
        },
    ),
    (
        "Deploy-path security",
        {
            "github": "the OIDC `sub` names the environment (`repo:O/R:environment:<env>`); caches are scoped per "
            "branch (main never restores a pull request's); prod's gate is the environment's required reviewers, "
            "with self-review prevented (a setting; private repositories need a plan that offers them)",
            "gitlab": "one ID-token audience per environment (`aud: apk-pipeline-<env>`) plus main's `sub`; a job "
            "of main's reviewed file could still ask for another environment's audience (protected branch and "
            "environments, CODEOWNERS on the file); protected caches, signed step cache; gate: the protected "
            "environment's approval rules (a setting)",
            "circleci": "IAM cannot tell contexts apart: every role trusts main's `sub`, and the restricted context "
            "`aws-<env>` (branch expression, security group) is the only holder of its role ARN; any branch can "
            "write any cache, so main's checks restore no lock-file cache (a `when` step) and serve only signed "
            "step-cache entries (`cicd-main` context); gate: the approver must be allowed to use `aws-prod`",
            "bitbucket": "the OIDC `sub` names the deployment environment's UUID; caches are shared by every branch, "
            "so main's checks trust no step-cache entry (they still restore the dependency caches: a limit); "
            "gate: deployment permissions (Premium)",
            "azure": "a workload-identity service connection per environment (the Entra issuer, one subject per "
            "connection); `Cache@2` is scoped per branch; gate: `ManualValidation@1` `approvers` from the variable "
            "`APPROVERS`, failing closed when it is empty",
            "codecatalyst": "IAM cannot tell environments apart (service principals, the space's `aws:SourceArn`): "
            "one account connection, ideally one account, per environment; caches per workflow and branch; gate: "
            "approval by project role (cannot name people)",
            "jenkins": "an OpenID Connect Provider id token per environment (`aud: apk-pipeline-<env>`, `sub`: the "
            "main branch job's URL), credentials scoped to the pipeline's folder, no instance role; gate: `input` "
            "`submitter`",
            "codebuild": "each environment's role trusts only its own project (`aws:SourceArn`); pull-request "
            "projects have their own cache and artifact buckets; gate: the IAM group `apk-pipeline-prod-approvers` "
            "(`codepipeline:PutApprovalResult` on that gate only)",
        },
    ),
    (
        "Local execution",
        {
            "github": "`act` (self-hosted mode, local action stand-ins): the pull-request jobs and the main "
            "pipeline to prod (`inv adapters.run --tool github`); the main jobs also run job by job "
            "(`tests/adapters/test_job_by_job.py`)",
            "gitlab": "`gitlab-ci-local --force-shell-executor`: the merge-request jobs, and a push to main to prod "
            "(`inv adapters.run --tool gitlab`), stopping at the `when: manual` gate until it is released; the main "
            "jobs also run job by job (`tests/adapters/test_job_by_job.py`)",
            "circleci": "no local runner without Docker; the main jobs run job by job "
            "(`tests/adapters/test_job_by_job.py`)",
            "bitbucket": "`bb-run` (Python >= 3.12): the pull-request steps and the `main` branch pipeline to prod "
            "(`inv adapters.run --tool bitbucket`), holding a `trigger: manual` step[^bb-run]; the main steps also "
            "run job by job (`tests/adapters/test_job_by_job.py`)",
            "azure": "no local runner; the main jobs run job by job (`tests/adapters/test_job_by_job.py`)",
            "codecatalyst": "no local runner; the main actions run job by job (`tests/adapters/test_job_by_job.py`)",
            "jenkins": "no local runner without a controller; the main stages run job by job "
            "(`tests/adapters/test_job_by_job.py`)",
            "codebuild": "the CodeBuild local agent needs Docker; the main actions run job by job "
            "(`tests/adapters/test_job_by_job.py`)",
        },
    ),
    (
        "Validation here",
        {
            "github": "schema + actionlint",
            "gitlab": "schema",
            "circleci": "schema + CircleCI config parser",
            "bitbucket": "schema",
            "azure": "schema (azure-pipelines transform)",
            "codecatalyst": "CodeCatalyst workflows SDK",
            "jenkins": "Groovy syntax (npm-groovy-lint)[^jenkins-lint]",
            "codebuild": "buildspec schema kept in the repository + CDK template tests[^codebuild]",
        },
    ),
)

PARAGRAPHS: Final[dict[str, str]] = {
    "github": (
        "The richest model of the eight: a real job graph, matrices for the fan-out, environments that carry their "
        "own variables, protection rules and reviewers, and first-class OIDC. Pinning actions by SHA is on the "
        "user (this file does it for every action, with the tag in a comment). Awkward: approval lives in the "
        "repository settings, not in the YAML, and there is no JUnit view without a third-party action - the job "
        "summary the runner writes is the native report. YAML anchors keep the repeated steps short."
    ),
    "gitlab": (
        "The closest to the model: `needs:` graphs, `environment:`, `resource_group:` and `id_tokens:` are all "
        "keywords, and `rules:` decide per job what a merge request runs. `default:` and hidden `extends:` jobs keep "
        "the file small. Awkward: a job downloads the artifacts of every job it `needs` unless told `artifacts: "
        "false`, and one `artifacts:` per job holds both the hand-off and the run folder; `id_tokens:` has no "
        "condition, so the role is taken in a shell `if` on `CICD_TARGET`; there is no job summary (the run folder "
        "is an artifact)."
    ),
    "circleci": (
        "Reusable `commands:` make every job three steps long; workflows with `when:` split PR and main. OIDC tokens "
        "exist only in jobs that use a context, which doubles as the environment (restrict it to main). Awkward: no "
        "config-wide `environment:` (`CICD_TARGET` is set in both executors, which every job uses), no job-level "
        "timeout (each step has `no_output_timeout`), no path filters without dynamic config, and the official "
        "config parser rejects a bare custom command name, so commands are called as `setup: {}`."
    ),
    "bitbucket": (
        "Simple and readable: steps, `parallel` groups and `deployment:` environments with their own variables; "
        "`oidc: true` issues a token whose subject includes the deployment environment, so the trust policy can be "
        "per environment. Awkward: no dependency graph (jobs run by level), no variables in the file (the target is "
        "an anchored first line of every script), artifacts flow to every later step unless named and filtered, "
        "the approval step needs `environment:` for prod's variables (unlike `deployment:` it records no deployment "
        "and takes no lock), and the checks are repeated for main with YAML anchors."
    ),
    "azure": (
        "Stages, jobs and deployment jobs map cleanly onto the model, and environments carry approvals and an "
        "Exclusive Lock. AWS access goes through workload identity federation with only built-in tasks, each stage "
        "taking its role from its own variable group. Awkward: locks and branch control are configured on the "
        "environment in the UI (the YAML shows `lockBehavior`; with the approval switch on, a `ManualValidation@1` "
        "gate), a multi-line script does not stop at a failing line without `set -e`, there are no YAML anchors, and "
        "the schema needs numbers written as strings."
    ),
    "codecatalyst": (
        "**Closed to new customers since 7 November 2025** (AWS: existing customers keep using the service, but no "
        "new spaces can be created): this adapter is kept for existing spaces; for a new project, pick another tool. "
        "Compact and AWS-native: environments hold the account connection and role, so no credential appears in "
        "the file, and `RunMode: QUEUED` serializes runs. Awkward: one trigger list per workflow (hence two files), "
        "no workflow-level variables (every action sets `CICD_TARGET`), input artifacts unpacked outside the working "
        "folder (a step copies `.cicd/artifact/` in), no branch variables in conditions, file caches keyed by name "
        "only, a curated image without the Android SDK (the Flutter actions run on the pinned Flutter image), and "
        "the validator is a preview SDK."
    ),
    "jenkins": (
        "Everything is possible and little is built in: Docker agents, the JUnit plugin, Lockable Resources and Job "
        "Cacher carry what other tools have as keywords. AWS access is OIDC through the OpenID Connect Provider "
        "plugin (an id token file, bound only when `CICD_TARGET=aws`), with the agents' instance roles as the "
        "fallback, so no AWS key is stored either way. Awkward: stashes travel through the controller, an agent "
        "reuses a job's workspace (so every stage clears the hand-off first), and the Jenkinsfile can only be "
        "syntax-checked offline; the declarative validator needs a running controller."
    ),
    "codebuild": (
        "The pipeline itself is infrastructure: a CDK stack (`infra/ci`) builds two CodePipeline V2 pipelines from "
        "the same plan (`pipeline.json`), one CodeBuild project per job, a service role per environment and "
        "`CICD_TARGET` as a pipeline variable. The buildspecs only run `inv`. Awkward: no graph (stages and run "
        "orders); the source action must output a clone reference (`CODEBUILD_CLONE_REF`, with `UseConnection` on "
        "the projects' roles), or a build gets a zip without `.git` (no versions from git, no history for the "
        "secrets scan); secondary inputs land outside the working folder (`$CODEBUILD_SRC_DIR_<name>`); the standard "
        "image has no Android SDK, so the Flutter jobs run on the pinned Flutter image; the branch reaches the "
        "build as a variable; and nothing runs locally without Docker."
    ),
}

FOOTNOTES: Final = (
    "[^gh-junit]: GitHub Actions has no built-in JUnit view; the runner writes `summary.md` to the job summary, "
    "SARIF goes to code scanning and `junit.xml` is kept with the run folder artifact.",
    "[^cc-cache]: CodeCatalyst file caches are keyed by name; uv's cache is content-addressed (wheels by hash), so "
    "a stale cache costs a download, never a wrong dependency. The step cache is content-addressed too (an entry "
    "is found only by the hash of its step's inputs). Caches are isolated per workflow and branch, so the "
    "pull-request workflow never restores the main workflow's step cache: a pull request's first run does every "
    "step, its later runs only what changed.",
    "[^gl-cache]: By default GitLab keeps the caches of protected and unprotected branches apart (a `-protected` / "
    "`-non_protected` key suffix), so a merge request could never start from main's step cache. `unprotect: true` "
    "shares it; but then a merge-request pipeline (which runs the merge request's own `.gitlab-ci.yml`) can write "
    "entries main restores, and a step-cache entry stands for a passed step. So the protected branches run with "
    "`CICD_CACHE_VERIFY=$CI_COMMIT_REF_PROTECTED` and serve only entries carrying an HMAC made with the protected, "
    "masked variable `CICD_CACHE_SECRET`, which merge-request pipelines never receive; without it main runs every "
    "step, with a warning, rather than trust an unsigned entry (`cicd/cache.py`, `tests/unit/test_cache.py`).",
    "[^bb-cache]: Bitbucket caches are repository-wide and saved only when absent (they expire after a week). "
    "Keying each step's cache by its input files gives a new cache whenever those change, so entries stay fresh; "
    "any branch's pipeline can save a cache, so main's checks "
    "serve no step-cache entry (`CICD_CACHE_VERIFY=true` without a secret: no variable reaches main's checks and "
    "not a pull request's).",
    "[^bb-run]: Executed here (`tests/adapters/test_local_runs.py`) with `bb-run` 1.3.0 in host mode, from its own "
    "environment on a Python >= 3.12 (`cicd/toolenvs/bb-run.txt`; the test is skipped, saying so, where no such "
    "Python exists). Left to itself bb-run runs every step of a parallel group at once in the one project folder "
    "(interleaved output, each step's artifacts holding every step's files) and drops keyed caches, so "
    "`cicd/adapters/bbrun.py` runs each step with `bb-run --step` in its own clone, as Bitbucket does: bb-run picks "
    "the pull-request or `main` branch pipeline, sets the `BITBUCKET_*` variables, runs `script` and "
    "`after-script` and saves the step's caches and artifacts, while the harness passes artifacts between steps "
    "and emulates the keyed caches "
    "(`NAME-<hash of the key files>`, saved only when absent and after a success, as Bitbucket does; the hash is "
    "the harness's, not Bitbucket's). Every step gets `-v CICD_TARGET=local`, as a repository variable would set "
    "it, so the checks run against the embedded AWS. bb-run ignores `trigger: manual`; the harness does not start "
    "such a step, nor any after it, unless told to release it. Not exercised: images, services, OIDC, deployments "
    "and `max-time`, which bb-run ignores in host mode.",
    "[^jenkins-lint]: No offline validator for declarative pipelines exists; `npm-groovy-lint` (16.x, on Java) "
    "checks Groovy syntax only. It is skipped, with the reason, where Java is not installed.",
    "[^codebuild]: No registry package ships a buildspec schema; `cicd/adapters/schemas/buildspec.schema.json` is "
    "written from the buildspec reference. The CodePipeline stack is checked with CDK template assertions "
    "(`tests/adapters/test_ci_infra.py`), not deployed.",
    "[^executed]: Executed here (`tests/adapters/test_local_runs.py`), on a commit of the project where `inv pipeline` "
    "already ran: `act` runs the whole pull-request workflow (every entry of the checks matrix; local stand-ins for "
    "the pinned actions, with `actions/cache` and the artifact actions backed by a folder on the machine, SARIF "
    "upload a no-op) and `gitlab-ci-local` (shell executor, shell isolation) every job of a merge-request pipeline. "
    "Each job runs `uv run inv` for its steps; the step cache reaches it through the adapter's own cache mechanism, "
    "so steps whose inputs the commit did not change are served from the cache (`cached`), as on CI. Run for real: "
    "`secrets-scan` (its key holds the commit), `flutter-check` and `sca` on another day (its key holds the date). "
    "The Flutter jobs require the SDK (`CICD_REQUIRE_FLUTTER=1`, so a broken install fails them); this machine "
    "has none, so the runs set `CICD_REQUIRE_FLUTTER=0` the way a repository without it on its runners would (a "
    "GitHub repository variable, `act --var`; a GitLab pipeline variable, `gitlab-ci-local --variable`): the "
    "offline half of `flutter-check` runs and passes, and its result names the SDK half that did not run. "
    "`gitlab-ci-local --list` also checks which jobs a merge request and a push to main get. The main pipeline "
    "runs the same way (`inv adapters.run --tool github|gitlab|bitbucket --event main`): `act push`, "
    "`gitlab-ci-local` on a push to main and `bb-run` on the `main` branch pipeline run every job from the checks "
    "to the prod smoke test, with the tool's own variable `CICD_TARGET=local`, all jobs sharing one embedded AWS "
    "and a stand-in `flutter` that writes a placeholder APK and web build (this machine has no SDK). With the "
    "approval switch on, gitlab-ci-local holds the `when: manual` prod job until it is released, and bb-run holds "
    "the `trigger: manual` step and everything after it.",
)


def _support(adapter: Adapter) -> tuple[str, str]:
    validators = ", ".join(dict.fromkeys(v for v, _ in adapter.checks)) or "-"
    runner = {
        "github": "`act`: every PR job and the main pipeline to prod executed[^executed]; the main jobs executed "
        "job by job from the file (`tests/adapters/test_job_by_job.py`)",
        "gitlab": "`gitlab-ci-local`: every MR job executed, and the main pipeline to prod with the approval switch "
        "on (held at its manual gate, then released)[^executed]; the main jobs executed job by job from the file "
        "(`tests/adapters/test_job_by_job.py`)",
        "circleci": "no runner without Docker; the main jobs executed job by job from the file "
        "(`tests/adapters/test_job_by_job.py`)",
        "bitbucket": "`bb-run`: every PR step and the `main` pipeline to prod executed, one clone per step[^bb-run]; "
        "the main steps executed job by job from the file (`tests/adapters/test_job_by_job.py`)",
        "azure": "no runner; the main jobs executed job by job from the file (`tests/adapters/test_job_by_job.py`)",
        "codecatalyst": "no runner; the main actions executed job by job from the files "
        "(`tests/adapters/test_job_by_job.py`)",
        "codebuild": "no runner; the main actions executed job by job from the files "
        "(`tests/adapters/test_job_by_job.py`)",
        "jenkins": "no runner without a controller; the main stages executed job by job from the Jenkinsfile "
        "(`tests/adapters/test_job_by_job.py`)",
    }.get(adapter.name, "none available offline")
    return validators, runner


def render(plan: Plan) -> dict[str, str]:
    rendered = {a.name: {r.path: r.text for r in a.render(plan)} for a in ADAPTERS}
    out: list[str] = [
        f"<!-- GENERATED by `{GENERATOR}` from cicd/pipeline.py - do not edit; change the model and regenerate. -->",
        "# One pipeline, eight CI tools",
        "",
        "Every file below is rendered from the one pipeline model (`cicd/pipeline.py`) by `inv adapters.generate` "
        "and checked by `inv adapters.check`: no drift from the model, each tool's own validator, the same `inv` "
        "calls in the same order in every tool (parity), and the properties in "
        "[What every adapter guarantees](#what-every-adapter-guarantees). Copy an adapter's files from "
        "`ci-adapters/<tool>/` to the root of your repository; every job only sets up the runtime and calls `inv`.",
        "",
        "## The pipeline",
        "",
        "```mermaid",
        mermaid(plan.model),
        "```",
        "",
        "How the model becomes jobs (the same for every tool): each pull-request check is its own parallel job (a "
        "check that needs exactly one other check shares its job); `main` then builds once (`package`, and the "
        "Flutter build) and hands `.cicd/artifact/` to one job per environment, which deploys, tests and publishes "
        "in model order with short-lived credentials and hands the artifact on, now with the evidence that it "
        "passed there, to the next environment's job (whose `promote` verifies it). The target is one variable, "
        "`CICD_TARGET`, set once per adapter (`aws`); the credential step runs only for `aws`. With the approval "
        "switch off (the default) there is no approval job; with `[tool.cicd] approval = true` an approval job "
        "shows what prod would get (`inv change-set`: `cdk diff` of the packaged assembly against prod) and the "
        "tool's own manual gate holds the prod job.",
        "",
        "| job | runs | on |",
        "|---|---|---|",
    ]
    for job in plan.order(plan.jobs):
        runs = "<br>".join(f"`inv {c}`" for c in job.commands)
        out.append(f"| `{job.id}` | {runs} | {', '.join(sorted(job.triggers))} |")
    out += ["", "## Concepts by tool", ""]
    out.append("| | " + " | ".join(a.title for a in ADAPTERS) + " |")
    out.append("|---" * (len(ADAPTERS) + 1) + "|")
    for concept, cells in CONCEPTS:
        # A pipe inside a cell (Azure's cache keys) must be escaped, or it splits the cell.
        out.append(f"| **{concept}** | " + " | ".join(cells[a.name].replace("|", "\\|") for a in ADAPTERS) + " |")
    out += [
        "",
        "## What every adapter guarantees",
        "",
        "Checked on every adapter by `inv adapters.check` (and the tests, which also break each adapter on purpose):",
        "",
        "1. **Pinning**: no `@vN`, `@main`, `@master`, `@latest` or `:latest`; GitHub actions by full commit SHA "
        "with the tag in a comment; images by digest where a public record of it exists (the others listed "
        "with the reason), uv installed with `pip --require-hashes`, Flutter and CodeCatalyst actions at exact "
        "versions, all from one table (`cicd/adapters/pins.py`, bumped with `inv adapters.bump`). Each action's "
        "SHA is the commit its release tag pointed to, cross-checked against public workflows and runner logs "
        "that record it "
        "(`Download action repository 'actions/upload-artifact@v5' (SHA:330a01c...)`); this project's machines "
        "cannot reach GitHub, so before adopting a bump resolve the tag yourself "
        "(`git ls-remote https://github.com/OWNER/REPO 'refs/tags/vX.Y.Z*'`; for an annotated tag the commit is "
        "the `^{}` line) and compare.",
        "2. **Credentials**: federation wherever the tool has it, one role per environment (`infra/ci`), STS-valid "
        "session names, credential steps that fail at once on a missing value; no stored keys anywhere.",
        "3. **Branch guard** inside every deploy job; pull-request pipelines never reach a deploy job.",
        "4. **Build once**: no deploy job synthesizes or packages; every one takes the packaged artifact.",
        "5. **One deploy at a time** per environment through the tool's own lock.",
        "6. **A native environment** per stage, and the tool's own **manual gate** when the approval switch is on.",
        "7. **Reports, timeouts, caches**: JUnit into the tool's report view (the run's `junit.xml`: one case per "
        "step, plus every integration test and every operation schemathesis tested in `dast`), a timeout on every "
        "job, lock-file-keyed "
        "caches for checks only (builds, approvals and environment jobs restore none and install `requirements.lock` "
        "with every hash checked), the run folder (reports, logs, stack outputs) kept as an artifact.",
        "8. **Generated header**, a size below the anchors' where one exists, and path filters that include the "
        "adapter itself.",
        "",
        "## Size",
        "",
        "| tool | files | lines | anchor |",
        "|---|---|---:|---|",
    ]
    for adapter in ADAPTERS:
        facts = adapter.facts(rendered[adapter.name])
        anchor = f"{adapter.budget.lines} ({adapter.budget.anchor})" if adapter.budget.lines else adapter.budget.anchor
        out.append(f"| {adapter.title} | {len(rendered[adapter.name])} | {line_count(facts)} | {anchor} |")
    out += ["", "## Support", "", "| tool | validated by | run locally |", "|---|---|---|"]
    for adapter in ADAPTERS:
        validators, runner = _support(adapter)
        out.append(f"| {adapter.title} | {validators} | {runner} |")
    out += ["", "## The tools", ""]
    for adapter in ADAPTERS:
        out += [f"### {adapter.title}", "", PARAGRAPHS[adapter.name], ""]
        for path, text in rendered[adapter.name].items():
            fence = "json" if path.endswith(".json") else "groovy" if path == "Jenkinsfile" else "yaml"
            out += [
                f"<details><summary><code>{path}</code> ({len(text.splitlines())} lines)</summary>",
                "",
                f"```{fence}",
                text.rstrip("\n"),
                "```",
                "",
                "</details>",
                "",
            ]
    out += ["## Notes", "", *(f"{note}\n" for note in FOOTNOTES)]
    return {PATH: "\n".join(out).rstrip("\n") + "\n"}
