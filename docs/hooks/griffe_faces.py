"""Griffe extension: read a lazy face's public names from its ``_HOMES`` dict.

Each tlscopes face writes ``__all__ = sorted(_HOMES)``, which griffe cannot evaluate statically.
This extension reads the keys of the ``_HOMES`` dict literal and gives them to griffe as the
module's exports, so mkdocstrings documents exactly the names the face hands on (griffe
resolves them through the face's ``TYPE_CHECKING`` imports, without importing torch).
"""

from __future__ import annotations

import ast
from typing import Any

import griffe


def _homes_keys(tree: ast.Module) -> list[str] | None:
    homes = None
    all_from_homes = False
    for statement in tree.body:
        if not isinstance(statement, ast.Assign) or len(statement.targets) != 1:
            continue
        target = statement.targets[0]
        if not isinstance(target, ast.Name):
            continue
        if target.id == "_HOMES" and isinstance(statement.value, ast.Dict):
            homes = [key.value for key in statement.value.keys if isinstance(key, ast.Constant)]
        if target.id == "__all__":
            value = statement.value
            all_from_homes = (
                isinstance(value, ast.Call)
                and isinstance(value.func, ast.Name)
                and value.func.id == "sorted"
                and len(value.args) == 1
                and isinstance(value.args[0], ast.Name)
                and value.args[0].id == "_HOMES"
            )
    return sorted(homes) if homes is not None and all_from_homes else None


class LazyFaces(griffe.Extension):
    """Sets ``__all__ = sorted(_HOMES)`` faces' exports to the dict's keys."""

    def on_module_members(self, *, node: Any, mod: griffe.Module, **kwargs: Any) -> None:
        if isinstance(node, ast.Module):
            names = _homes_keys(node)
            if names is not None:
                mod.exports = list(names)
