"""Lazy faces: a package's public names, imported from their home modules on first use.

Every ``__init__.py`` of tlscopes hands on its public names this way, so that importing a
package (``tlscopes.cli`` for ``tlscopes --help``, say) does not import torch until a name that
needs it is used.
"""

from __future__ import annotations

import importlib
import importlib.util
from collections.abc import Callable, Mapping
from typing import Any


def lazy_face(
    package: str, homes: Mapping[str, str], namespace: dict[str, Any]
) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """The ``__getattr__`` and ``__dir__`` of a package whose public names live in submodules.

    Args:
        package: the package's ``__name__``.
        homes: each public name and the module that defines it.
        namespace: the package's ``globals()``; a name is cached there once imported.
    """

    def __getattr__(name: str) -> Any:
        home = homes.get(name)
        if home is None:
            # Subpackages and modules stay reachable as attributes (``tlscopes.core``).
            if not name.startswith("_") and importlib.util.find_spec(f"{package}.{name}"):
                return importlib.import_module(f"{package}.{name}")
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(home), name)
        namespace[name] = value
        return value

    def __dir__() -> list[str]:
        return sorted(set(namespace) | set(homes))

    return __getattr__, __dir__
