"""Every finding a scanner reports that the design accepts is waived here, in code, with its written reason.

One :func:`waive` call records a waiver for either scanner, so nothing is skipped silently:

* ``AwsSolutions-*`` rules (cdk-nag 3) become ``Validations.of(scope).acknowledge(...)`` entries; cdk-nag lists
  them as *suppressed violations*, reason included, in the assembly's ``validation-report.json``.
* ``CKV_*`` / ``CKV2_*`` checks (checkov) become ``Metadata.checkov.skip`` entries ``{id, comment}`` on the
  CloudFormation resource, which checkov reports as skipped with that comment.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING

import aws_cdk as cdk

if TYPE_CHECKING:
    from constructs import IConstruct

NAG_PACK = "AwsSolutions"
_NAG_RULE = re.compile(r"^AwsSolutions-[A-Z]+\d+(\[.+\])?$")
_CHECKOV_RULE = re.compile(r"^CKV2?_AWS_\d+$")
CHECKOV_METADATA = "checkov"


@dataclass(frozen=True)
class Waiver:
    """An accepted finding: ``rule`` is ``AwsSolutions-S1``, ``AwsSolutions-IAM5[Resource::*]`` or ``CKV_AWS_18``."""

    rule: str
    reason: str

    def __post_init__(self) -> None:
        if not (_NAG_RULE.match(self.rule) or _CHECKOV_RULE.match(self.rule)):
            raise ValueError(f"waiver for unknown rule id {self.rule!r}")
        if len(self.reason.strip()) < 20:
            raise ValueError(f"waiver {self.rule} needs a written reason (got {self.reason!r})")

    @property
    def is_nag(self) -> bool:
        return self.rule.startswith(f"{NAG_PACK}-")


def waive(scope: IConstruct, *waivers: Waiver) -> None:
    """Record ``waivers`` on ``scope`` (a construct, or the CloudFormation resource itself)."""
    for waiver in waivers:
        if waiver.is_nag:
            cdk.Validations.of(scope).acknowledge(
                cdk.Acknowledgment(id=f"{NAG_PACK}::{waiver.rule}", reason=waiver.reason)
            )
        else:
            _checkov_skip(_cfn_resource(scope), waiver)


def _cfn_resource(scope: IConstruct) -> cdk.CfnResource:
    if isinstance(scope, cdk.CfnResource):
        return scope
    child = scope.node.default_child
    if not isinstance(child, cdk.CfnResource):
        raise TypeError(f"{scope.node.path} has no CloudFormation resource to carry a checkov skip")
    return child


def _checkov_skip(resource: cdk.CfnResource, waiver: Waiver) -> None:
    current = resource.get_metadata(CHECKOV_METADATA) or {}
    skips = [*current.get("skip", []), {"id": waiver.rule, "comment": waiver.reason}]
    resource.add_metadata(CHECKOV_METADATA, {"skip": skips})


def arn_token(scope: IConstruct, resource: IConstruct, attribute: str = "Arn") -> str:
    """How cdk-nag spells a ``Fn::GetAtt`` in a finding id: ``<LogicalId.Arn>``."""
    cfn = _cfn_resource(resource)
    logical_id = cdk.Stack.of(scope).resolve(cfn.logical_id)
    return f"<{logical_id}.{attribute}>"
