"""Names a package imports on first use (PEP 562), so importing the package stays light."""

from __future__ import annotations

import importlib
import sys
from typing import Any, Callable


def lazy_exports(module: str, exports: dict[str, str]) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """The ``__getattr__`` and ``__dir__`` of package `module` whose names `exports` (``name -> defining module``)
    import on first use; each is then kept in the package's namespace."""
    namespace = sys.modules[module].__dict__

    def __getattr__(name: str) -> Any:
        if name in exports:
            value = getattr(importlib.import_module(exports[name]), name)
            namespace[name] = value
            return value
        raise AttributeError(f"module {module!r} has no attribute {name!r}")

    def __dir__() -> list[str]:
        return sorted([*namespace, *exports])

    return __getattr__, __dir__


__all__ = ["lazy_exports"]
