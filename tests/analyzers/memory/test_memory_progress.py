"""The memory analyzer reports its progress through the runner (no bar of its own)."""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

import pytest
from memory_support import x64_image
from test_memory_analyzer import FAKE_ROWS, _collect, _fake_job

from analyzers.memory import analyzer as mem
from triage.case import Case
from triage.runner import analyze_case


@pytest.mark.slow
def test_progress_reaches_the_caller_in_increasing_counts(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert FAKE_ROWS["pslist"]  # the fake Volatility tables of the analyzer tests
    monkeypatch.setattr(mem, "_plugin_job", _fake_job)
    monkeypatch.setattr("triage.executors.PROGRESS_INTERVAL", 0.0)  # every report, not a few per second
    src = tmp_path / "EXCH01.raw"
    src.write_bytes(x64_image(16 << 20))
    case = Case.create_or_open(tmp_path / "case", examiner="pytest", case_id="MEM-P")
    _collect(case, src)
    image = next(r for r in case.evidence() if r.kind == "memory_image")
    seen: list[tuple[str, str, float, float, str]] = []
    summary = analyze_case(
        case,
        only=("memory",),
        jobs=1,
        options={"memory": {"plugins": ["info", "pslist", "cmdline"], "chunk_size": 4 << 20, "overlap": 4096}},
        on_unit_progress=lambda *report: seen.append(report),
    )
    assert dict(summary.statuses) == {"success": 1}
    assert {(a, e) for a, e, *_ in seen} == {("memory", image.artifact_id)}
    steps: dict[str, list[tuple[float, float]]] = defaultdict(list)
    for _, _, done, total, text in seen:
        steps[text.split(" (")[0]].append((done, total))
    assert {"YARA over the raw image", "windows.info.Info", "windows.pslist.PsList", "windows.cmdline.CmdLine"} <= set(
        steps
    )
    raw = steps["YARA over the raw image"]
    assert raw[0] == (0.0, float(16 << 20)) and raw[-1] == (float(16 << 20), float(16 << 20))
    assert len({d for d, _ in raw}) >= 4  # 4 MiB chunks of a 16 MiB image: counted as they finish
    for reports in steps.values():
        counts = [d for d, _ in reports]
        assert counts == sorted(counts), reports  # never backwards within a step
        assert reports[-1][0] == reports[-1][1]  # each step ends complete
