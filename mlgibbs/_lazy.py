"""Modules imported on first use, so that ``import mlgibbs`` costs little more than ``import jax``.

pandas (0.3 s), xarray and ArviZ (1 s and more) are needed only when a model is built from a data
frame or a run is converted to ArviZ; ``pd = LazyModule("pandas")`` stands in for the module until an
attribute is first looked up.
"""

from __future__ import annotations

import importlib
from types import ModuleType


class LazyModule:
    """A stand-in for a module that imports it at the first attribute lookup."""

    def __init__(self, name: str):
        self._name = name
        self._module: ModuleType | None = None

    def __getattr__(self, attr: str):
        if self._module is None:
            self._module = importlib.import_module(self._name)
        return getattr(self._module, attr)

    def __repr__(self) -> str:
        return f"<lazy module {self._name!r}>"


pandas = LazyModule("pandas")
