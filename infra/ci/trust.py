"""Who may assume a role: IAM's decision for one request against a role's trust policy (AssumeRolePolicyDocument).

A small, deliberately strict model of the parts of IAM policy evaluation the CI roles use, so tests (and docs) can
show which example token a synthesized role admits:

* web identity: ``sts:AssumeRoleWithWebIdentity`` by the OIDC provider ``<host>``; IAM exposes a token's ``aud`` and
  ``sub`` claims as the condition keys ``<host>:aud`` and ``<host>:sub`` (no other claim of a generic OIDC provider
  reaches the policy, so no other claim is modelled);
* service principals: ``sts:AssumeRole`` by ``codebuild.amazonaws.com`` etc., with ``aws:SourceArn`` and
  ``aws:SourceAccount`` in the request context.

Conditions: every operator of a statement must hold, every key of an operator must hold, and a key holds when the
context value matches any of the policy's values. ``StringEquals``/``ArnEquals`` compare exactly (ARNs component by
component, wildcards allowed as IAM does), ``StringLike``/``ArnLike`` treat ``*`` and ``?`` as wildcards,
``ForAnyValue:``/``ForAllValues:`` test multi-valued keys; a missing key fails every operator except
``ForAllValues:`` (as in IAM) and ``...IfExists``. An explicit ``Deny`` wins. Any other operator raises
:class:`UnsupportedPolicy`, so a policy this model cannot judge is never reported as safe.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

WEB_IDENTITY: Final = "sts:AssumeRoleWithWebIdentity"
ASSUME_ROLE: Final = "sts:AssumeRole"
WEB_IDENTITY_CLAIMS: Final = ("aud", "sub")
"""The claims of a generic OIDC provider's token that IAM turns into condition keys."""

ContextValue = str | Sequence[str]


class UnsupportedPolicy(ValueError):
    """The policy uses a construct this model does not evaluate."""


@dataclass(frozen=True)
class Request:
    """One ``AssumeRole*`` call: the action, who calls (provider host or service principal) and the context keys."""

    action: str
    principal: str
    context: Mapping[str, ContextValue] = field(default_factory=dict)
    federated: bool = False


def web_identity(host: str, claims: Mapping[str, Any]) -> Request:
    """The request a job makes with its OIDC token (``claims``) issued by ``https://<host>``."""
    context: dict[str, ContextValue] = {}
    for claim in WEB_IDENTITY_CLAIMS:
        value = claims.get(claim)
        if isinstance(value, str):
            context[f"{host}:{claim}"] = value
        elif isinstance(value, list):
            context[f"{host}:{claim}"] = [str(v) for v in value]
    return Request(WEB_IDENTITY, host, context, federated=True)


def service(principal: str, *, source_arn: str, source_account: str) -> Request:
    """The request an AWS service (``codebuild.amazonaws.com``) makes on behalf of one of its resources."""
    return Request(ASSUME_ROLE, principal, {"aws:SourceArn": source_arn, "aws:SourceAccount": source_account})


def resolve(value: Any, refs: Mapping[str, str]) -> Any:
    """A template value with ``Ref``/``Fn::GetAtt``/``Fn::Join`` replaced from ``refs`` (``AWS::Partition`` ->
    ``aws``, ``<LogicalId>`` or ``<LogicalId>.Arn`` -> its value); anything unresolved stays as it is."""
    if isinstance(value, list):
        return [resolve(v, refs) for v in value]
    if isinstance(value, dict):
        if len(value) == 1:
            ((key, body),) = value.items()
            if key == "Ref" and isinstance(body, str) and body in refs:
                return refs[body]
            if key == "Fn::GetAtt" and isinstance(body, list) and ".".join(body) in refs:
                return refs[".".join(body)]
            if key == "Fn::Join":
                separator, parts = body
                resolved = [resolve(p, refs) for p in parts]
                if all(isinstance(p, str) for p in resolved):
                    return str(separator).join(resolved)
        return {k: resolve(v, refs) for k, v in value.items()}
    return value


def allows(document: Mapping[str, Any], request: Request) -> bool:
    """IAM's answer: does the trust policy ``document`` (resolved, see :func:`resolve`) let ``request`` assume the
    role? Allowed when some ``Allow`` statement matches and no ``Deny`` statement does."""
    statements = document.get("Statement", [])
    matched = [s for s in _as_list(statements) if _matches(s, request)]
    if any(s.get("Effect") == "Deny" for s in matched):
        return False
    return any(s.get("Effect") == "Allow" for s in matched)


def _matches(statement: Mapping[str, Any], request: Request) -> bool:
    if "NotPrincipal" in statement or "NotAction" in statement:
        raise UnsupportedPolicy("NotPrincipal/NotAction are not modelled")
    if not any(_like(str(a), request.action) for a in _as_list(statement.get("Action"))):
        return False
    if not _principal(statement.get("Principal"), request):
        return False
    return all(_operator(op, keys, request.context) for op, keys in (statement.get("Condition") or {}).items())


def _principal(principal: Any, request: Request) -> bool:
    if not isinstance(principal, dict):
        raise UnsupportedPolicy(f"a trust policy names its principal as an object, got {principal!r}")
    if request.federated:
        return any(_provider_host(p) == request.principal for p in _as_list(principal.get("Federated")))
    return request.principal in [str(p) for p in _as_list(principal.get("Service"))]


def _provider_host(value: Any) -> str:
    """``arn:aws:iam::123456789012:oidc-provider/<host>`` -> ``<host>`` (an unresolved reference matches nothing)."""
    if not isinstance(value, str):
        return ""
    _, _, host = value.partition(":oidc-provider/")
    return host


def _operator(name: str, keys: Mapping[str, Any], context: Mapping[str, ContextValue]) -> bool:
    quantifier, _, base = name.rpartition(":")
    if_exists = base.endswith("IfExists")
    base = base.removesuffix("IfExists")
    compare = _COMPARE.get(base)
    if compare is None or quantifier not in ("", "ForAnyValue", "ForAllValues"):
        raise UnsupportedPolicy(f"condition operator {name} is not modelled")
    for key, wanted in keys.items():
        patterns = [str(w) for w in _as_list(wanted)]
        present = key in context
        if not present:
            if quantifier == "ForAllValues" or if_exists:
                continue
            return False
        got = context[key]
        values = [got] if isinstance(got, str) else list(got)
        if quantifier == "ForAnyValue":
            ok = any(compare(p, v) for v in values for p in patterns)
        elif quantifier == "ForAllValues":
            ok = all(any(compare(p, v) for p in patterns) for v in values)
        else:
            # A single-valued operator on a multi-valued key is judged only when the key has one value.
            ok = len(values) == 1 and any(compare(p, values[0]) for p in patterns)
        if not ok:
            return False
    return True


def _equals(pattern: str, value: str) -> bool:
    return pattern == value


def _like(pattern: str, value: str) -> bool:
    return _regex(pattern).fullmatch(value) is not None


def _arn_like(pattern: str, value: str) -> bool:
    """IAM compares ARNs component by component (six colon-separated parts), each with ``*``/``?`` wildcards."""
    want, got = pattern.split(":", 5), value.split(":", 5)
    return len(want) == len(got) == 6 and all(_like(w, g) for w, g in zip(want, got, strict=True))


def _regex(pattern: str) -> re.Pattern[str]:
    return re.compile("".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in pattern), re.DOTALL)


_COMPARE: Final = {
    "StringEquals": _equals,
    "StringLike": _like,
    "ArnEquals": _arn_like,
    "ArnLike": _arn_like,
}


def _as_list(value: Any) -> list[Any]:
    if value is None:
        return []
    return value if isinstance(value, list) else [value]
