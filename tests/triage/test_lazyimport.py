"""triage.lazyimport: a module bound at import time, imported on first use."""

from __future__ import annotations

import subprocess
import sys

PROBE = """
import sys
from triage.lazyimport import lazy_module
csv = lazy_module("csv")
before = "csv" in sys.modules
reader = csv.reader  # the first use imports it
import csv as real
print(before, "csv" in sys.modules, reader is real.reader, csv.QUOTE_ALL == real.QUOTE_ALL, "reader" in vars(csv))
"""


def test_a_lazy_module_is_imported_on_first_use_then_holds_its_names() -> None:
    out = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, check=True, timeout=60)
    # not imported (nor put in sys.modules) until used; then the module's own objects, kept on the stand-in
    assert out.stdout.split() == ["False", "True", "True", "True", "True"]


def test_a_missing_name_raises_attribute_error() -> None:
    from triage.lazyimport import lazy_module

    json = lazy_module("json")
    assert json.dumps([1]) == "[1]"
    try:
        json.no_such_name  # noqa: B018
    except AttributeError:
        pass
    else:
        raise AssertionError("a name the module lacks must raise AttributeError")


def test_settled_imports_freeze_what_they_built_and_restore_the_collector() -> None:
    import gc

    from triage.lazyimport import settled_imports

    assert gc.isenabled()
    frozen = gc.get_freeze_count()
    try:
        with settled_imports():
            assert not gc.isenabled()  # no collection while importing
            with settled_imports():  # nested: the outer one turns it back on
                pass
            assert not gc.isenabled()
            made = [[i] for i in range(1000)]  # what an import builds and keeps
        assert gc.isenabled()
        assert gc.get_freeze_count() >= frozen + len(made)  # out of later collections
    finally:
        gc.unfreeze()
