"""Draws docs/contributing/layers.svg from the real imports between tlscopes' subpackages.

Run it from the repository root after imports between subpackages change:
``python docs/contributing/layers_svg.py``. Every import counts: module level, inside
``if TYPE_CHECKING:`` and inside functions. An import that points up the intended layering
(a loop) is drawn as a red dashed arrow.
"""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "tlscopes"
# The intended layers, top to bottom: a package imports only from rows below its own.
ROWS = [
    {"tlscopes": 0.5},
    {"cli": 0.5},
    {
        "app": 0.08,
        "evaluation": 0.24,
        "analysis": 0.4,
        "generation": 0.56,
        "sae": 0.72,
        "testing": 0.9,
    },
    {"methods": 0.3},
    {"core": 0.6},
    {"fisher": 0.2, "models": 0.42, "results": 0.8},
    {"views": 0.8},
]
SHARED = ["protocols", "tokens", "series", "_types", "_lazy"]
LABELS = {"tlscopes": "tlscopes (the public face)"}
BOX_W, BOX_H, ROW_GAP, WIDTH = 150, 34, 80, 920


def import_edges() -> dict[str, set[str]]:
    """Subpackage -> the subpackages and shared modules it imports (any import, anywhere)."""
    known = {name for row in ROWS for name in row} | set(SHARED)
    edges: dict[str, set[str]] = defaultdict(set)
    for path in PACKAGE.rglob("*.py"):
        parts = path.relative_to(PACKAGE).parts
        source = parts[0] if len(parts) > 1 else parts[0].removesuffix(".py")
        if source == "__init__":
            source = "tlscopes"
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names: list[str] = []
            if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module] + [f"{node.module}.{alias.name}" for alias in node.names]
            elif isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            for name in names:
                parts_ = name.split(".")
                if parts_[0] == "tlscopes" and len(parts_) > 1 and parts_[1] in known:
                    if parts_[1] != source:
                        edges[source].add(parts_[1])
    return edges


def positions() -> dict[str, tuple[float, float]]:
    """The centre of each package's box."""
    where = {}
    for row, names in enumerate(ROWS):
        for name, fraction in names.items():
            where[name] = (WIDTH * fraction, 30 + row * ROW_GAP + BOX_H / 2)
    return where


def svg(edges: dict[str, set[str]]) -> str:
    where = positions()
    rank = {name: row for row, names in enumerate(ROWS) for name in names}
    height = 30 + len(ROWS) * ROW_GAP + 70
    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {WIDTH} {height}" '
        f'width="{WIDTH}" height="{height}" font-family="sans-serif" font-size="13" '
        'role="img" aria-label="The subpackages of tlscopes and which imports which">',
        "<defs>",
        '<marker id="down" viewBox="0 0 10 10" refX="10" refY="5" markerWidth="7" '
        'markerHeight="7" orient="auto"><path d="M0,0 L10,5 L0,10 z" fill="#555"/></marker>',
        '<marker id="up" viewBox="0 0 10 10" refX="10" refY="5" markerWidth="7" '
        'markerHeight="7" orient="auto"><path d="M0,0 L10,5 L0,10 z" fill="#c62828"/></marker>',
        "</defs>",
    ]
    for source in sorted(edges):
        for target in sorted(edges[source]):
            if target not in where or source not in where:
                continue
            (x1, y1), (x2, y2) = where[source], where[target]
            if rank[target] > rank[source]:
                out.append(
                    f'<line x1="{x1:.0f}" y1="{y1 + BOX_H / 2:.0f}" x2="{x2:.0f}" '
                    f'y2="{y2 - BOX_H / 2:.0f}" stroke="#555" stroke-width="1.2" '
                    f'stroke-opacity="0.8" marker-end="url(#down)" data-edge="{source}->{target}"/>'
                )
            else:
                # Up or sideways: against the layering.
                bend = x1 + (120 if x2 >= x1 else -120)
                out.append(
                    f'<path d="M{x1 + BOX_W / 2:.0f},{y1:.0f} Q{bend + BOX_W / 2:.0f},'
                    f'{(y1 + y2) / 2:.0f} {x2 + BOX_W / 2:.0f},{y2 + BOX_H / 2:.0f}" '
                    'fill="none" stroke="#c62828" stroke-width="1.4" stroke-dasharray="5,3" '
                    f'marker-end="url(#up)" data-edge="{source}->{target}"/>'
                )
    for name, (x, y) in where.items():
        label = LABELS.get(name, f"{name}/")
        fill = "#e3f2fd" if name == "tlscopes" else "#f5f5f5"
        out.append(
            f'<rect x="{x - BOX_W / 2:.0f}" y="{y - BOX_H / 2:.0f}" width="{BOX_W}" '
            f'height="{BOX_H}" rx="6" fill="{fill}" fill-opacity="0.92" stroke="#37474f"/>'
            f'<text x="{x:.0f}" y="{y + 4:.0f}" text-anchor="middle">{label}</text>'
        )
    shared_y = 30 + len(ROWS) * ROW_GAP
    out.append(
        f'<rect x="20" y="{shared_y}" width="{WIDTH - 40}" height="{BOX_H + 10}" rx="6" '
        'fill="#fff8e1" stroke="#37474f"/>'
        f'<text x="{WIDTH / 2:.0f}" y="{shared_y + 27}" text-anchor="middle">shared modules, '
        "imported from anywhere: protocols.py, tokens.py, _types.py, _lazy.py</text>"
    )
    out.append("</svg>")
    return "\n".join(out) + "\n"


if __name__ == "__main__":
    (Path(__file__).parent / "layers.svg").write_text(svg(import_edges()), encoding="utf-8")
