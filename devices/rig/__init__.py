"""The stack-pressure rig: its line protocol and the ophyd device; the public names are in ``__init__.pyi``, imported on first use."""

from devices.exports import lazy_exports

__getattr__, __dir__, __all__ = lazy_exports(__name__, __file__)
