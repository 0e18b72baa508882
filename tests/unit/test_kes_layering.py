"""kes/ stands alone: it imports neither gateway/ nor node/ nor cluster/ (only common/)."""

from __future__ import annotations

import ast
from pathlib import Path

KES = Path(__file__).resolve().parents[2] / "kes"


def test_kes_imports_no_other_tessera_package() -> None:
    offenders = []
    for path in sorted(KES.glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            offenders += [f"{path.name}: {n}" for n in names
                          if n.split(".")[0] in ("gateway", "node", "cluster")]
    assert offenders == []
