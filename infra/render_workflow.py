"""Draw the "train" state machine from its synthesized definition, so the picture in docs/ never drifts from
the code.

    python -m infra.render_workflow                       # synthesize the training stack, write the SVG
    python -m infra.render_workflow --template cdk.out/cnai-dev-training.template.json --out docs/x.svg

It reads the DefinitionString CloudFormation will deploy (tokens written as `<LogicalId>`), lays the states
out in layers along the normal transitions (Next, Choice branches), puts the states reached only through a
Catch in a column of their own, and writes an SVG with matplotlib (no Graphviz binary needed). Retry and
Catch rules are written under the state they belong to. The output is byte-stable for the same definition.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_OUT = ROOT / "docs" / "training-workflow.svg"
COLORS = {"Task": "#dbeafe", "Choice": "#fef3c7", "Fail": "#fee2e2", "Succeed": "#dcfce7", "Pass": "#f3f4f6"}
EDGE = "#374151"
CATCH = "#b91c1c"


@dataclass
class Node:
    name: str
    kind: str
    layer: int = 0
    column: float = 0.0
    notes: list[str] = field(default_factory=list)


def definition_from_template(template: Mapping[str, Any]) -> dict[str, Any]:
    """The one state machine's definition, CloudFormation tokens flattened to `<...>` text."""
    from infra.constructs.nag_findings import flatten

    machines = [r for r in template["Resources"].values() if r["Type"] == "AWS::StepFunctions::StateMachine"]
    if len(machines) != 1:
        raise ValueError(f"expected one AWS::StepFunctions::StateMachine in the template, found {len(machines)}")
    raw = machines[0]["Properties"]["DefinitionString"]
    if isinstance(raw, dict) and "Fn::Join" in raw:
        raw = "".join(p if isinstance(p, str) else flatten(p) for p in raw["Fn::Join"][1])
    definition: dict[str, Any] = json.loads(raw)
    return definition


def synthesize_definition() -> dict[str, Any]:
    """Synthesize the training stack alone (default settings, a stand-in lake stack) and return its definition."""
    import aws_cdk as cdk
    from aws_cdk import assertions

    from infra.config import Settings
    from infra.constructs.secure_bucket import SecureBucket
    from infra.stacks.training import TrainingStack

    app = cdk.App(context={"aws:cdk:bundling-stacks": []})
    env = cdk.Environment(account="123456789012", region="us-east-1")
    lake = SecureBucket(cdk.Stack(app, "Lake", env=env), "Lake")
    stack = TrainingStack(app, "Training", settings=Settings(), lake=lake.bucket, lake_key=lake.key, env=env)
    return definition_from_template(assertions.Template.from_stack(stack).to_json())


def _edges(state: dict[str, Any]) -> list[tuple[str, str]]:
    """(target, label) of the normal transitions of a state."""
    out: list[tuple[str, str]] = []
    if "Next" in state:
        out.append((state["Next"], ""))
    for choice in state.get("Choices", []):
        variable = choice.get("Variable", "")
        test = next(((k, v) for k, v in choice.items() if k not in ("Next", "Variable")), ("", ""))
        operator = {"BooleanEquals": "==", "StringEquals": "==", "NumericEquals": "=="}.get(test[0], test[0])
        out.append((choice["Next"], f"{variable} {operator} {json.dumps(test[1])}"))
    if "Default" in state:
        out.append((state["Default"], "otherwise"))
    return out


def _notes(state: dict[str, Any]) -> list[str]:
    notes = []
    for retry in state.get("Retry", []):
        names = retry["ErrorEquals"]
        services = {e.split(".", 1)[0] for e in names}
        # Four Lambda error names do not fit under a box: say which service and how many.
        errors = (
            f"{services.pop()}.* ({len(names)} errors)"
            if len(names) > 2 and len(services) == 1
            else ", ".join(e.split(".", 1)[-1] for e in names)
        )
        wait = f"{retry.get('IntervalSeconds', 1)}s, backoff x{retry.get('BackoffRate', 2.0):g}"
        notes.append(f"retry {errors}: {retry.get('MaxAttempts', 3)}x, {wait}")
    if str(state.get("Resource", "")).endswith(".sync"):
        notes.insert(0, str(state["Resource"]).rsplit(":::", 1)[-1])
    elif "lambda:invoke" in str(state.get("Resource", "")):
        notes.insert(0, "lambda:invoke")
    if state.get("Type") == "Fail":
        notes.append(f"Error: {state.get('Error') or state.get('ErrorPath', '')}")
        notes.append(f"Cause: {state.get('Cause') or state.get('CausePath', '')}")
    return notes


def layout(definition: dict[str, Any]) -> tuple[dict[str, Node], list[tuple[str, str, str, bool]]]:
    """Nodes with (layer, column) and edges (source, target, label, is_catch)."""
    states: dict[str, Any] = definition["States"]
    nodes = {name: Node(name, s["Type"], notes=_notes(s)) for name, s in states.items()}
    edges: list[tuple[str, str, str, bool]] = []
    for name, state in states.items():
        edges += [(name, target, label, False) for target, label in _edges(state)]
        for catch in state.get("Catch", []):
            edges.append((name, catch["Next"], "catch " + ", ".join(catch["ErrorEquals"]), True))
    # Layers: longest path along normal transitions from StartAt (the flow reads top to bottom).
    reached = {definition["StartAt"]: 0}
    order = [definition["StartAt"]]
    queue = deque([definition["StartAt"]])
    while queue:
        current = queue.popleft()
        for target, _ in _edges(states[current]):
            if target not in order:
                order.append(target)
            if reached.get(target, -1) < reached[current] + 1 and reached[current] + 1 <= len(states):
                reached[target] = reached[current] + 1
                queue.append(target)
    # States reached only through a Catch: their own column, beside the first state that catches into them.
    side = [n for n in states if n not in reached]
    for name in side:
        catchers = [reached[s] for s, t, _, c in edges if c and t == name and s in reached]
        start = min(catchers) if catchers else 0
        chain, layer = name, start
        while chain in states and chain not in reached:
            reached[chain] = layer
            nodes[chain].column = 2.0
            nxt = states[chain].get("Next")
            chain, layer = (nxt, layer + 1) if nxt else ("", layer)
    by_layer: dict[int, list[str]] = {}
    for name in [*order, *(n for n in states if n not in order)]:
        nodes[name].layer = reached[name]
        if nodes[name].column == 0.0:
            by_layer.setdefault(reached[name], []).append(name)
    for names in by_layer.values():
        for index, name in enumerate(names):
            nodes[name].column = index - (len(names) - 1) / 2
    return nodes, edges


def render(definition: dict[str, Any], out: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    matplotlib.rcParams["svg.hashsalt"] = "cnai-training-workflow"
    matplotlib.rcParams["svg.fonttype"] = "none"  # text stays text: small, diffable, searchable
    import matplotlib.pyplot as plt
    from matplotlib.patches import FancyBboxPatch

    nodes, edges = layout(definition)
    layers = max(n.layer for n in nodes.values()) + 1
    dx, dy, w = 4.6, 1.7, 4.2
    fig, ax = plt.subplots(figsize=(14, 1.5 * layers + 1))
    ax.set_xlim(-1.2 * dx, 2.6 * dx)
    ax.set_ylim(-layers * dy + 0.4, 1.0)

    def height(node: Node) -> float:
        return 0.5 + 0.16 * len(node.notes)

    ax.axis("off")

    def xy(node: Node) -> tuple[float, float]:
        return node.column * dx, -node.layer * dy

    for source, target, label, is_catch in edges:
        (x0, y0), (x1, y1) = xy(nodes[source]), xy(nodes[target])
        h0, h1 = height(nodes[source]), height(nodes[target])
        start = (x0 + (w / 2 if is_catch else 0), y0 if is_catch else y0 - h0 / 2)
        end = (x1 - (w / 2 if is_catch and x1 > x0 else 0), y1 + (0 if is_catch and x1 > x0 else h1 / 2))
        ax.annotate(
            "",
            xy=end,
            xytext=start,
            arrowprops={
                "arrowstyle": "-|>",
                "color": CATCH if is_catch else EDGE,
                "linestyle": "--" if is_catch else "-",
                "linewidth": 0.9,
                "connectionstyle": "arc3,rad=0.08" if is_catch else "arc3,rad=0",
                "shrinkA": 2,
                "shrinkB": 2,
            },
        )
        if label and not is_catch:
            at = (start[0] + 0.6 * (end[0] - start[0]), start[1] + 0.6 * (end[1] - start[1]))
            side = "left" if end[0] >= start[0] else "right"
            ax.text(at[0] + (0.1 if side == "left" else -0.1), at[1], label, fontsize=8, color=EDGE, ha=side)
    catch_label = sorted({label for _, _, label, c in edges if c})
    for node in nodes.values():
        x, y = xy(node)
        h = height(node)
        box = FancyBboxPatch(
            (x - w / 2, y - h / 2),
            w,
            h,
            boxstyle="round,pad=0.02,rounding_size=0.12" if node.kind != "Choice" else "sawtooth,pad=0.02",
            facecolor=COLORS.get(node.kind, "#ffffff"),
            edgecolor=EDGE,
            linewidth=0.9,
        )
        ax.add_patch(box)
        top = y + h / 2
        ax.text(x, top - 0.17, f"{node.name}  ", ha="right", va="center", fontsize=10, weight="bold")
        ax.text(x, top - 0.17, f"  {node.kind}", ha="left", va="center", fontsize=8, color="#6b7280")
        for index, note in enumerate(node.notes):
            ax.text(x, top - 0.42 - 0.16 * index, note, fontsize=7, color="#374151", ha="center", va="center")
    ax.text(
        -1.2 * dx + 0.1,
        0.75,
        f"cnai 'train' state machine (from the synthesized definition). Dashed red: {'; '.join(catch_label)}.",
        fontsize=8,
        color=EDGE,
    )
    out.parent.mkdir(parents=True, exist_ok=True)
    metadata = {"Date": None} if out.suffix == ".svg" else None
    fig.savefig(out, format=out.suffix.lstrip(".") or "svg", metadata=metadata, bbox_inches="tight")
    plt.close(fig)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m infra.render_workflow", description=__doc__.split("\n\n")[0])
    parser.add_argument("--template", type=Path, help="a synthesized template (default: synthesize the stack)")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help=f"SVG or PNG (default {DEFAULT_OUT})")
    args = parser.parse_args(argv)
    if args.template is not None:
        try:
            template = json.loads(args.template.read_text())
        except (OSError, json.JSONDecodeError) as exc:
            print(f"{args.template}: {exc}", file=sys.stderr)
            return 2
        definition = definition_from_template(template)
    else:
        definition = synthesize_definition()
    print(render(definition, args.out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
