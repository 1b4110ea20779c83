"""Plan then copy: a collection walks its sources first, so the progress has files and bytes to do before the
first copy; small files are copied by several threads while rows and custody events keep the plan's order."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

import collectors.collect as collect_mod
from triage.app.collect import CollectRequest, collect
from triage.app.progress import NullProgress, TransferCount
from triage.case import Case
from triage.testing.volume import VolumeSpec, build_volume


class OrderedTransfer(TransferCount):
    """Counts, and remembers whether the totals were known before the first byte was copied."""

    def __init__(self) -> None:
        super().__init__()
        self.events: list[tuple[str, int]] = []

    def plan(self, files: int, nbytes: int) -> None:
        super().plan(files, nbytes)
        self.events.append(("plan", files))

    def advance(self, nbytes: int) -> None:
        super().advance(nbytes)
        self.events.append(("advance", nbytes))

    def file_done(self) -> None:
        super().file_done()
        self.events.append(("done", 1))


class Recorder(NullProgress):
    def __init__(self) -> None:
        self.transfers: list[OrderedTransfer] = []

    def transfer(self, description: str):  # type: ignore[override]
        import contextlib

        @contextlib.contextmanager
        def cm():
            t = OrderedTransfer()
            self.transfers.append(t)
            yield t

        return cm()


def _padded_volume(root: Path, n: int = 300) -> tuple[Path, int, int]:
    vol = build_volume(root / "vol", VolumeSpec())
    web = vol / "inetpub/wwwroot/aspnet_client/system_web"
    web.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        (web / f"page{i:04d}.js").write_bytes(os.urandom(100 + i * 7))
    files = [p for p in vol.rglob("*") if p.is_file()]
    return vol, len(files), sum(p.stat().st_size for p in files)


def _rows(case: Path) -> list[dict]:
    return [json.loads(line) for line in (case / "manifest.jsonl").read_text().splitlines()]


def test_totals_come_before_the_first_copy_and_done_counts_reach_them(tmp_path: Path) -> None:
    vol, nfiles, nbytes = _padded_volume(tmp_path)
    progress = Recorder()
    summary = collect(CollectRequest(sources=(str(vol),), case=tmp_path / "case", examiner="t"), progress)
    (meter,) = progress.transfers
    first_copy = next(i for i, (what, _) in enumerate(meter.events) if what == "advance")
    assert meter.events[0][0] == "plan" and first_copy > 0
    # every file of the volume is declared evidence: the plan counted each one, with its listed size
    assert meter.files_total == nfiles == summary.stats.files
    assert meter.bytes_total == nbytes == summary.stats.bytes
    assert meter.files_done == meter.files_total
    assert meter.bytes_done == meter.bytes_total


def test_a_rerun_counts_what_was_already_collected_as_done(tmp_path: Path) -> None:
    vol, nfiles, nbytes = _padded_volume(tmp_path, 40)
    request = CollectRequest(sources=(str(vol),), case=tmp_path / "case", examiner="t")
    collect(request, NullProgress())
    progress = Recorder()
    summary = collect(request, progress)
    (meter,) = progress.transfers
    assert summary.stats.skipped_duplicates == nfiles
    assert (meter.files_done, meter.bytes_done) == (meter.files_total, meter.bytes_total) == (nfiles, nbytes)


@pytest.mark.parametrize("threads", [1, 4])
def test_threaded_copies_write_the_manifest_of_a_sequential_run(
    threads: int, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    vol, nfiles, _ = _padded_volume(tmp_path, 200)
    monkeypatch.setattr(collect_mod, "COPY_THREADS", 1)
    collect(CollectRequest(sources=(str(vol),), case=tmp_path / "seq", examiner="t"), NullProgress())
    monkeypatch.setattr(collect_mod, "COPY_THREADS", threads)
    collect(CollectRequest(sources=(str(vol),), case=tmp_path / "par", examiner="t"), NullProgress())
    keys = ("source_path", "outcome", "relpath", "size", "sha256", "md5", "kind", "source_mtime")
    seq, par = _rows(tmp_path / "seq"), _rows(tmp_path / "par")
    assert [tuple(r[k] for k in keys) for r in par] == [tuple(r[k] for k in keys) for r in seq]
    assert sum(r["outcome"] in ("success", "empty") for r in par) == nfiles
    # one chained custody event per row, in the manifest's order
    events = [json.loads(line) for line in (tmp_path / "par" / "custody.jsonl").read_text().splitlines()]
    collected = [e["details"]["artifact_id"] for e in events if e["action"] == "collect"]
    assert collected == [r["artifact_id"] for r in par]
    case = Case.open(tmp_path / "par")
    count, problems = case.custody.verify()
    assert not problems and count == len(events)
    # read-only, with the source's modification time
    row = next(r for r in par if r["relpath"] and r["relpath"].endswith("page0007.js"))
    st = (tmp_path / "par" / row["relpath"]).stat()
    assert st.st_mode & 0o777 == 0o444
    assert st.st_mtime == Path(row["source_path"]).stat().st_mtime


def test_rows_are_written_in_batches_but_each_has_its_event(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    vol, nfiles, _ = _padded_volume(tmp_path, 120)
    writes: list[int] = []
    real_many = Case.flush_rows

    def counting(self: Case) -> None:
        writes.append(len(self._pending))
        real_many(self)

    monkeypatch.setattr(Case, "flush_rows", counting)
    collect(CollectRequest(sources=(str(vol),), case=tmp_path / "case", examiner="t"), NullProgress())
    rows = _rows(tmp_path / "case")
    assert len(rows) > nfiles  # missing declared paths have rows too
    assert max(writes) > 50  # a batch held many rows, not one write per row
    assert sum(writes) == len(rows)


def test_a_folder_that_holds_itself_is_walked_to_a_bound_with_a_recorded_failure(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    import collectors.vfs
    from collectors.collect import collect_volume
    from collectors.sources import Source
    from collectors.vfs import DIR, FILE, VNode

    monkeypatch.setattr(collectors.vfs, "MAX_FOLDER_DEPTH", 12)  # the bound itself, lowered to keep this quick

    def looped(path: str, name: str = "again") -> VNode:  # a folder listing itself again (a bind mount of itself)
        return VNode(
            name=name,
            kind=DIR,
            source_path=path,
            lister=lambda: [looped(f"{path}/again"), VNode(name="x.aspx", kind=FILE, source_path=f"{path}/x.aspx")],
        )

    web = looped("loop:/inetpub/wwwroot", "wwwroot")
    wwwroot = VNode(name="inetpub", kind=DIR, source_path="loop:/inetpub", lister=lambda: [web])
    root = VNode(name="", kind=DIR, source_path="loop:", lister=lambda: [wwwroot])
    source = Source(location="loop", source_type="volume", drives={"C": root})
    case = Case.create_or_open(tmp_path / "case", examiner="t")
    with case.writer(), caplog.at_level("WARNING"):
        stats = collect_volume(case, source, host="H")
    case.close()
    rows = _rows(tmp_path / "case")
    loops = [r for r in rows if r["outcome"] == "failure" and "a loop?" in r["details"]]
    assert len(loops) >= 1 and stats.failures >= len(loops)
    assert any("a loop?" in m for m in caplog.messages)
    # the walk stopped at the bound: nothing deeper was planned, and the command did not hang or crash
    assert max(r["source_path"].count("/again") for r in rows) <= 12
