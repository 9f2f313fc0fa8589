"""cdk-nag's wildcard findings (AwsSolutions-IAM5) on the CI stacks, acknowledged one by one with a written reason.

cdk-nag 3 names each IAM5 finding after the wildcard it found (``AwsSolutions-IAM5[Resource::<Bucket.Arn>/*]``).
CodeBuild and CodePipeline generate many such grants (their own log groups, report groups and artifact objects),
so this aspect reads every policy document of a CI stack just before validation and acknowledges exactly the
wildcards it contains, spelled the way cdk-nag spells them, with the stack's reason. Nothing else is waived.
"""

from __future__ import annotations

from typing import Any

import aws_cdk as cdk
import jsii
from aws_cdk import aws_iam as iam
from constructs import IConstruct

from infra.waivers import Waiver, waive


def _flatten(value: Any) -> str:
    """A resolved CloudFormation value written the way cdk-nag writes it in finding ids."""
    if isinstance(value, str):
        return value
    if isinstance(value, dict) and len(value) == 1:
        ((key, body),) = value.items()
        if key == "Fn::Join":
            separator, parts = body
            return str(separator).join(_flatten(p) for p in parts)
        if key == "Ref":
            return f"<{body}>"
        if key == "Fn::GetAtt":
            return f"<{body[0]}.{body[1]}>" if isinstance(body, list) else f"<{body}>"
    return str(value)


def wildcard_findings(document: Any) -> list[str]:
    """The IAM5 finding ids of one resolved policy document."""
    found: list[str] = []
    statements = document.get("Statement", []) if isinstance(document, dict) else []
    for statement in statements:
        if statement.get("Effect", "Allow") != "Allow":
            continue
        for key, kind in (("Action", "Action"), ("Resource", "Resource")):
            values = statement.get(key, [])
            for value in values if isinstance(values, list) else [values]:
                text = _flatten(value)
                if "*" in text:
                    found.append(f"AwsSolutions-IAM5[{kind}::{text}]")
    return found


@jsii.implements(cdk.IAspect)
class AcknowledgeWildcards:
    """Acknowledge the IAM5 findings of every policy under the scope it is added to, with ``reason``."""

    def __init__(self, reason: str) -> None:
        self.reason = reason

    def visit(self, node: IConstruct) -> None:
        if isinstance(node, iam.CfnPolicy | iam.CfnManagedPolicy):
            document = cdk.Stack.of(node).resolve(node.policy_document)
        elif isinstance(node, iam.CfnRole) and node.policies:
            docs = [cdk.Stack.of(node).resolve(p) for p in node.policies]
            document = {"Statement": [s for d in docs for s in d.get("policyDocument", {}).get("Statement", [])]}
        else:
            return
        for finding in dict.fromkeys(wildcard_findings(document)):
            waive(node, Waiver(finding, self.reason))
