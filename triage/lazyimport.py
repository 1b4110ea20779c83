"""A module bound at import time and loaded on first use, for heavy libraries an analyzer may not need.

A host-scoped analyzer is imported whenever a host has any evidence it consumes, e.g. the Exchange analyzers
for a host with only a Security.evtx: they then skip the unit, and importing pandas, numpy and pyarrow for
that cost a small run more than the rest of its analysis. ``pd = lazy_module("pandas")`` binds a stand-in
that imports the library on the first attribute asked of it, then holds the library's names itself (later
uses cost what a module attribute costs). It is not put in ``sys.modules``: code that asks whether pandas
is loaded still gets the truth. Type checkers see the real import::

    if TYPE_CHECKING:
        import pandas as pd
    else:
        pd = lazy_module("pandas")
"""

from __future__ import annotations

import gc
import importlib
import types
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any


class LazyModule(types.ModuleType):
    """A stand-in for the module ``name``, imported on first attribute access."""

    def __getattr__(self, attr: str) -> Any:
        # only names the stand-in does not hold yet come here: the first use, or a submodule loaded since
        module = importlib.import_module(self.__name__)
        self.__dict__.update(vars(module))
        return getattr(module, attr)

    def __repr__(self) -> str:
        return f"<lazy module {self.__name__!r}>"


def lazy_module(name: str) -> Any:
    """A stand-in for module ``name`` that imports it when one of its attributes is first used."""
    return LazyModule(name)


@contextmanager
def settled_imports() -> Iterator[None]:
    """Imports with the cyclic garbage collector paused, what they built then frozen out of later collections.

    Importing a command's modules (pandas, pyarrow, the analyzers) builds hundreds of thousands of objects
    that live as long as the process, and few cycles that die. Run by allocation counts, the collector would
    walk them again and again while they are built (about 0.1 s of a small run's command process) and at
    every full collection after; frozen (``gc.freeze``), they are never walked, and forked processes inherit
    them frozen. Nested uses freeze once more and leave the collector as the outermost found it.
    """
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        gc.freeze()
        if enabled:
            gc.enable()


__all__ = ["LazyModule", "lazy_module", "settled_imports"]
