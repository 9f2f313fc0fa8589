"""The CI side of the AWS accounts: OIDC providers and deploy roles, and the CodePipeline + CodeBuild pipelines.

``add_ci_stacks(app, config)`` adds them to a CDK app (``infra/app.py`` calls it when the ``ci`` context is set)::

    from infra.ci import add_ci_stacks
    add_ci_stacks(app, config)       # reads the CDK context "ci" (see infra/ci/settings.py)

Both stacks are deployed once, by an administrator, with the default synthesizer; the pipelines they describe then
deploy the service stacks.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from cicd.config import PipelineConfig

if TYPE_CHECKING:
    import aws_cdk as cdk

    from infra.ci.settings import CiSettings

ROLES_STACK = "ApkPipelineCiRoles"
PIPELINE_STACK = "ApkPipelineCodePipeline"


def add_ci_stacks(
    app: cdk.App, config: PipelineConfig, settings: CiSettings | None = None, *, env: cdk.Environment | None = None
) -> list[cdk.Stack]:
    """Add the roles stack (every configured tool) and, when ``codepipeline`` is configured, the pipeline stack."""
    from cicd import pipeline
    from cicd.adapters.plan import build_plan
    from infra.ci.pipeline import CodePipelineStack
    from infra.ci.roles import CiRolesStack
    from infra.ci.settings import CiSettings

    settings = settings or CiSettings.parse(app.node.try_get_context("ci"))
    stacks: list[cdk.Stack] = [CiRolesStack(app, ROLES_STACK, settings=settings, config=config, env=env)]
    if settings.codepipeline is not None:
        plan = build_plan(pipeline.MODEL, config)
        stacks.append(
            CodePipelineStack(
                app,
                PIPELINE_STACK,
                plan=plan,
                source=settings.codepipeline,
                config=config,
                qualifier=settings.bootstrap_qualifier,
                env=env,
            )
        )
    return stacks
