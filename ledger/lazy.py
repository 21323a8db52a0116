"""Public names of a package that load their module on first use.

``ledger``, ``policies`` and ``vault`` offer their public names at the top
(``from vault import Vault``) while ``import vault`` stays light: a name's module is
imported the first time the name is asked for, then kept in the package.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable, Collection, Mapping
from typing import Any

__all__ = ["lazy_names"]


def lazy_names(package: str, where: Mapping[str, str], public: Collection[str]
               ) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """``(__getattr__, __dir__)`` for ``package``: ``where`` maps a public name to the
    module that defines it; a name in ``public`` but not in ``where`` is a submodule."""

    def __getattr__(name: str) -> Any:
        module = where.get(name)
        if module is None:
            if name in public:  # a submodule offered by name
                return importlib.import_module(f"{package}.{name}")
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(module), name)
        setattr(sys.modules[package], name, value)
        return value

    def __dir__() -> list[str]:
        return sorted({*vars(sys.modules[package]), *public})

    return __getattr__, __dir__
