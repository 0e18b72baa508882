"""Imports go one way: gateway.s3 -> gateway.objects -> placement/erasure/crypto ->
storage_client (node pool, heal queue); `node` never imports `gateway`. The object-layer
contract (gateway/objects/api.py and errors.py) is shared by every layer."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
# a module may import only from packages of its own rank or lower
RANKS = [
    ("gateway.s3", 4),
    ("gateway.ops", 4),
    ("gateway.healing", 3),
    ("gateway.objects", 3),
    ("gateway.crypto", 2),
    ("gateway.placement", 2),
    ("gateway.erasure", 2),
    ("gateway.heal_queue", 1),
    ("gateway.node_pool", 1),
    ("gateway.memory_node", 1),
    ("gateway.storage_client", 1),
]


CONTRACT = ("gateway.objects.api", "gateway.objects.errors")


def rank(module: str) -> int | None:
    if module.startswith(CONTRACT):
        return None
    for prefix, value in RANKS:
        if module == prefix or module.startswith(prefix + "."):
            return value
    return None


def imports(path: Path) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
    return found


def module_name(path: Path) -> str:
    return ".".join(path.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__")


def test_no_upward_imports_in_the_gateway():
    upward = []
    for path in sorted((ROOT / "gateway").rglob("*.py")):
        mine = rank(module_name(path))
        if mine is None:
            continue
        for target in imports(path):
            theirs = rank(target)
            if theirs is not None and theirs > mine:
                upward.append(f"{module_name(path)} imports {target}")
    assert upward == []


def test_node_never_imports_the_gateway():
    offenders = [f"{module_name(p)} imports {t}" for p in sorted((ROOT / "node").rglob("*.py"))
                 for t in imports(p) if t == "gateway" or t.startswith("gateway.")]
    assert offenders == []
