"""Code run at the top of a test's child interpreter so that a package behaves as if it were not installed.

Why not ``sys.modules``: pyarrow imports pandas by itself on its first conversion of Python values whenever
pandas is installed, so "pandas was not imported" cannot be checked in a normal process. A finder placed first
on ``sys.meta_path`` makes every import of the package fail instead: code that needs it fails loudly.
"""

from __future__ import annotations


def hide_package(name: str) -> str:
    """Python source that makes ``import name`` (and its submodules) raise ``ModuleNotFoundError``."""
    return f"""
import sys as _sys

class _Hidden:
    def find_spec(self, name, path=None, target=None):
        if name == {name!r} or name.startswith({name + "."!r}):
            raise ModuleNotFoundError(f"No module named {{name!r}}")

_sys.meta_path.insert(0, _Hidden())
"""


__all__ = ["hide_package"]
