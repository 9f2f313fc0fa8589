"""The pipeline graph as a mermaid flowchart, rendered from the model (``inv graph``, README, comparison guide)."""

from __future__ import annotations

from cicd.pipeline import Model, Node


def _id(node: Node) -> str:
    return node.id.replace(":", "_").replace("-", "_")


def mermaid(model: Model) -> str:
    lines = ["flowchart LR"]
    stages: dict[str, list[Node]] = {}
    for node in model.nodes():
        stages.setdefault(model.step(node.step).stage, []).append(node)
    for stage, nodes in stages.items():
        lines.append(f"  subgraph {stage}")
        for node in nodes:
            step = model.step(node.step)
            triggers = "+".join(sorted(step.triggers))
            lines.append(f'    {_id(node)}["{node.id}<br/><small>{triggers}</small>"]')
        lines.append("  end")
    for node, needs in model.graph().items():
        lines.extend(f"  {_id(dep)} --> {_id(node)}" for dep in needs)
    return "\n".join(lines)
