"""The pool's parent keeps its workers waiting as little as it can: a batch message is sent without waiting for the
worker to read it, and the findings writer (pyarrow) is imported in the background as soon as a worker says a
batch has findings, not when the batch comes back (a clean run never imports it; a fork waits for the import).
"""

from __future__ import annotations

import json
import multiprocessing
import shutil
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import pytest

from collectors.collect import collect_volume
from collectors.sources import open_source_path
from triage.case import Case
from triage.executors import _Duplex
from triage.testing.volume import VolumeSpec, build_volume
from triage.verify import verify_case

PLUGIN = textwrap.dedent('''
    from __future__ import annotations
    import os, time
    from pathlib import Path
    from triage.registry import Analyzer, register

    @register
    class HandoffProbe(Analyzer):
        """A finding on every page (none with the option 'clean'): each batch comes back to be written."""
        name = "test_handoff_probe"
        version = "1"
        consumes = ("web_file",)

        def analyze(self, unit):
            name = unit.logical_path.rsplit("/", 1)[-1]
            if self.options.get("clean"):
                return
            self.seen = getattr(self, "seen", 0) + 1
            if self.options.get("probe") and self.seen == 2:  # the first page's finding went back as a note
                maps, deadline = "", time.monotonic() + 20
                while "libarrow" not in maps and time.monotonic() < deadline:
                    maps = Path(f"/proc/{os.getppid()}/maps").read_text()
                    time.sleep(0.05)
                Path(self.options["probe"]).write_text(str("libarrow" in maps))
            yield unit.finding(rule_id="T-H", rule_title="probe", severity="low", title="page", message=name,
                               location=unit.logical_path)
''')
WEB = "inetpub/wwwroot/aspnet_client/app"
PAGES = 24
WRITE_DELAY = 1.0  # seconds the parent takes to write each batch (patched): far above a worker's hand-off


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("handoff-template")
    files = {f"{WEB}/p{i:02d}.aspx": b"<%@ Page %>" + bytes([65 + i]) * (i + 1) for i in range(PAGES)}
    vol = build_volume(root / "vol", VolumeSpec(compromised=False, extra_files=files))
    case = Case.create_or_open(root / "case", examiner="tester", case_id="CASE-HANDOFF")
    collect_volume(case, open_source_path(str(vol)), host=None)
    case.close()
    (root / "plugin.py").write_text(PLUGIN)
    return root


def test_a_batch_message_is_sent_without_waiting_for_the_worker() -> None:
    ours, theirs = _Duplex.pair(multiprocessing.get_context("fork"))
    message = ("triage-key", [{"artifact_id": f"A{i:015d}", "relpath": f"{i:05d}/" + "x" * 400} for i in range(256)])
    try:
        sender = threading.Thread(target=ours.send, args=(message,), daemon=True)
        sender.start()
        sender.join(10)  # nobody reads yet: through a 64 KiB pipe the send waits for the reader
        waited = sender.is_alive()
        got = theirs.recv()  # the reader (a worker taking the batch) ends the send either way
        sender.join()
        assert not waited and got == message
    finally:
        for end in (ours.reader, ours.writer, theirs.reader, theirs.writer):
            end.close()


PRELOAD = textwrap.dedent("""
    import os, sys
    from triage.unitrun import preload_writer
    assert "pyarrow" not in sys.modules
    preload_writer()
    pid = os.fork()
    if pid == 0:  # the fork waited for the background import: the child has it whole
        os._exit(0 if "pyarrow.parquet" in sys.modules else 7)
    _, status = os.waitpid(pid, 0)
    print(os.waitstatus_to_exitcode(status), "pyarrow.parquet" in sys.modules)
""")


def test_the_findings_writer_is_imported_in_the_background_and_whole_before_a_fork() -> None:
    out = subprocess.run([sys.executable, "-c", PRELOAD], check=True, capture_output=True, text=True, timeout=60)
    assert out.stdout.split() == ["0", "True"]


RUN = textwrap.dedent("""
    import json, sys
    from pathlib import Path
    from triage.case import Case
    from triage.executors import LocalPoolExecutor
    from triage.runner import BatchLimits, analyze_case
    case_dir, plugin, clean, probe = sys.argv[1], sys.argv[2], sys.argv[3] == "1", sys.argv[4]
    case = Case.open(Path(case_dir))
    ex = LocalPoolExecutor(1 if probe else 2)
    batching = BatchLimits(count=1000, per_worker=1) if probe else BatchLimits(count=8, per_worker=1)
    with case.writer():
        s = analyze_case(case, executor=ex, only=("test_handoff_probe",), plugins=(plugin,),
                         options={"test_handoff_probe": {"clean": clean, "probe": probe}}, batching=batching)
    ex.close()
    case.close()
    print(json.dumps({"findings": s.findings, "statuses": dict(s.statuses), "pyarrow": "pyarrow" in sys.modules}))
""")


@pytest.mark.parametrize("clean", [True, False])
def test_the_parent_imports_the_findings_writer_only_when_a_batch_has_findings(
    template: Path, tmp_path: Path, clean: bool
) -> None:
    # a fresh interpreter: this test process has pyarrow imported, and forked workers would inherit it
    shutil.copytree(template / "case", tmp_path / "case")
    pages = len(Case.open(tmp_path / "case").evidence(kinds={"web_file"}))
    out = subprocess.run(
        [sys.executable, "-c", RUN, str(tmp_path / "case"), str(template / "plugin.py"), "1" if clean else "0", ""],
        check=True, capture_output=True, text=True, timeout=120,
    )
    got = json.loads(out.stdout.strip().splitlines()[-1])
    if clean:  # a clean web root: no findings file, so no parquet writer (0.2 CPU s) in any process
        assert got == {"findings": 0, "statuses": {"no_findings": pages}, "pyarrow": False}
    else:
        assert got == {"findings": pages, "statuses": {"success": pages}, "pyarrow": True}
        assert len(list((tmp_path / "case" / "results" / "test_handoff_probe").glob("*.parquet"))) == -(-pages // 8)
    assert verify_case(Case.open(tmp_path / "case")).ok


def test_the_parent_imports_the_findings_writer_while_the_batch_with_findings_still_runs(
    template: Path, tmp_path: Path
) -> None:
    # one worker, one batch: its second page waits until the parent has pyarrow's library mapped, which happens
    # only if the first page's finding made the parent import the writer before the batch came back
    shutil.copytree(template / "case", tmp_path / "case")
    pages = len(Case.open(tmp_path / "case").evidence(kinds={"web_file"}))
    probe = tmp_path / "probe.txt"
    out = subprocess.run(
        [sys.executable, "-c", RUN, str(tmp_path / "case"), str(template / "plugin.py"), "0", str(probe)],
        check=True, capture_output=True, text=True, timeout=120,
    )
    got = json.loads(out.stdout.strip().splitlines()[-1])
    assert got == {"findings": pages, "statuses": {"success": pages}, "pyarrow": True}
    assert probe.read_text() == "True"
    assert len(list((tmp_path / "case" / "results" / "test_handoff_probe").glob("*.parquet"))) == 1
    assert verify_case(Case.open(tmp_path / "case")).ok
