"""mypy follows only the aws_cdk modules this code imports (pyproject [[tool.mypy.overrides]]: the rest are
skipped for speed). A module imported but missing from that list would be checked as Any, silently: this test
makes such an import fail instead, and a listed module nothing imports any more shows as stale."""

from __future__ import annotations

import ast
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
CODE = ["app.py", "cnai", "functions", "infra", "models", "tests", "bench"]


def followed() -> set[str]:
    overrides = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["mypy"]["overrides"]
    lists = [set(o["module"]) for o in overrides if o.get("follow_imports") == "normal"]
    assert len(lists) == 1, "one override lists the aws_cdk modules mypy follows"
    return lists[0]


def imported(path: Path) -> set[str]:
    """aws_cdk modules a file imports: `import aws_cdk[.x]` and `from aws_cdk[.x] import y` (y a module of
    aws_cdk when it is lower case, as the CDK names its service modules)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.split(".")[0] == "aws_cdk"}
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "aws_cdk":
            found.add(node.module)
            if node.module == "aws_cdk":
                found |= {f"aws_cdk.{a.name}" for a in node.names if a.name.islower()}
    return found


def test_every_aws_cdk_module_we_import_is_one_mypy_follows() -> None:
    files = [p for entry in CODE for p in ([ROOT / entry] if entry.endswith(".py") else (ROOT / entry).rglob("*.py"))]
    used = {module: str(path.relative_to(ROOT)) for path in files for module in imported(path)}
    listed = followed()
    missing = {module: where for module, where in used.items() if module not in listed}
    assert not missing, f"add to pyproject's followed aws_cdk modules: {missing}"
    assert not listed - set(used), f"listed but imported nowhere: {sorted(listed - set(used))}"


def test_the_scan_sees_both_import_forms(tmp_path: Path) -> None:
    source = tmp_path / "stack.py"
    source.write_text("import aws_cdk as cdk\nfrom aws_cdk import aws_ec2 as ec2, Duration\nimport aws_cdk.aws_rds\n")
    assert imported(source) == {"aws_cdk", "aws_cdk.aws_ec2", "aws_cdk.aws_rds"}
