"""A package's public names, imported on first use, listed once in the package's ``__init__.pyi``.

The stub's ``from module import Name as Name`` lines are what type checkers read; at run time
:func:`lazy_exports` reads the same lines, so ``from devices.biologic import EClibBackend`` works
without ``import devices.biologic.ecc`` importing ophyd (the devices take seconds to import; the
command line and the wire drivers need none of them). The approach is scientific-python's
``lazy_loader.attach_stub`` (SPEC 1), in the few lines this repository needs.
"""

from __future__ import annotations

import ast
import importlib
from pathlib import Path
from typing import Any, Callable


def lazy_exports(package: str, init_file: str) -> tuple[Callable[[str], Any], Callable[[], list[str]], list[str]]:
    """Return ``__getattr__``, ``__dir__`` and ``__all__`` for ``package`` from its ``__init__.pyi``.

    Parameters
    ----------
    package : str
        The package's ``__name__``.
    init_file : str
        Its ``__init__.py`` (``__file__``); the stub is beside it.

    A name must not be a submodule's (``devices.retry``): once imported, the submodule is the
    package's attribute and hides it.
    """
    origin: dict[str, str] = {}
    for node in ast.parse(Path(init_file).with_suffix(".pyi").read_text()).body:
        if isinstance(node, ast.ImportFrom) and node.module:
            for alias in node.names:
                origin[alias.asname or alias.name] = node.module

    def __getattr__(name: str) -> Any:
        if name not in origin:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        return getattr(importlib.import_module(origin[name]), name)

    def __dir__() -> list[str]:
        return sorted(origin)

    return __getattr__, __dir__, sorted(origin)
