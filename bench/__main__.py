"""`python -m bench [section ...]`: run benchmark sections, print their tables, save JSON.

A section is a module `bench/<name>.py` with `run() -> list[dict]`: one dict per row, the
same keys in every row of a section (a key missing in a row prints as blank). Results go to
`bench/results/latest-<section>.json`. `limits` runs first, so that sections comparing
against it reuse the same measurement (`bench.limits.measure()` caches it per process).
"""

from __future__ import annotations

import importlib
import json
import os
import pkgutil
import platform
import re
import sys
import time
from pathlib import Path

import bench

RESULTS = Path(__file__).resolve().parent / "results"
_NOT_SECTIONS = {"__main__"}


def available_sections() -> list[str]:
    """Modules of bench/ that define a top-level run() (found without importing them all)."""
    names = []
    for info in pkgutil.iter_modules(bench.__path__):
        if info.name in _NOT_SECTIONS or info.name.startswith("_"):
            continue
        source = Path(bench.__path__[0], f"{info.name}.py")
        if source.is_file() and re.search(r"^def run\(", source.read_text(), re.MULTILINE):
            names.append(info.name)
    names.sort(key=lambda n: (n != "limits", n))
    return names


def _cell(value: object) -> str:
    if isinstance(value, float):
        return f"{value:,.2f}" if abs(value) < 10 else f"{value:,.0f}"
    return "" if value is None else str(value)


def format_table(rows: list[dict]) -> str:
    columns: list[str] = []
    for row in rows:
        columns += [k for k in row if k not in columns]
    cells = [[_cell(row.get(c)) for c in columns] for row in rows]
    widths = [max(len(c), *(len(r[i]) for r in cells)) for i, c in enumerate(columns)]
    numeric = [all(isinstance(row.get(c), int | float | None) for row in rows) for c in columns]

    def line(values: list[str]) -> str:
        return "  ".join(v.rjust(w) if num else v.ljust(w)
                         for v, w, num in zip(values, widths, numeric, strict=True)).rstrip()

    out = [line(columns), line(["-" * w for w in widths])]
    out += [line(r) for r in cells]
    return "\n".join(out)


def save(section: str, rows: list[dict], seconds: float) -> Path:
    RESULTS.mkdir(exist_ok=True)
    doc = {
        "section": section,
        "finished": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "seconds": round(seconds, 1),
        "host": {"machine": platform.machine(), "cpus": os.cpu_count(),
                 "python": platform.python_version()},
        "rows": rows,
    }
    path = RESULTS / f"latest-{section}.json"
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(doc, indent=2) + "\n")
    tmp.replace(path)
    return path


def main(argv: list[str]) -> int:
    known = available_sections()
    wanted = argv or known
    unknown = [s for s in wanted if s not in known]
    if unknown:
        print(f"bench: unknown section(s) {', '.join(unknown)}; have: {', '.join(known)}",
              file=sys.stderr)
        return 2
    for section in wanted:
        module = importlib.import_module(f"bench.{section}")
        started = time.monotonic()
        rows = module.run()
        seconds = time.monotonic() - started
        path = save(section, rows, seconds)
        print(f"\n== {section} ({seconds:.1f} s) -> {path.relative_to(Path.cwd())}"
              if path.is_relative_to(Path.cwd()) else f"\n== {section} ({seconds:.1f} s)")
        print(format_table(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
