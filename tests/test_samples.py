from __future__ import annotations

import importlib.util
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def _files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_bundled_samples_match_their_builder(tmp_path: Path) -> None:
    """The committed demo volumes are exactly what samples/build_samples.py makes (rebuild them if not)."""
    spec = importlib.util.spec_from_file_location("build_samples", REPO / "samples" / "build_samples.py")
    assert spec and spec.loader
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    mod.build(tmp_path)
    for name in ("exchange-compromised", "exchange-clean"):
        got, want = _files(REPO / "samples" / name / "volume"), _files(tmp_path / name / "volume")
        assert got.keys() == want.keys(), name
        assert got == want, name
    image = "exchange-compromised/memory/EXCH01-memory.raw"
    assert (REPO / "samples" / image).read_bytes() == (tmp_path / image).read_bytes()
    symbols = "exchange-compromised/memory/symbols"  # the synthetic kernel's ISF, passed by make demo
    assert _files(REPO / "samples" / symbols) == _files(tmp_path / symbols) != {}
