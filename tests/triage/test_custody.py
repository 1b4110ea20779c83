from __future__ import annotations

import itertools
import json
from pathlib import Path

import pytest

from triage.custody import GENESIS, CustodyLog, event_hash


def _log(tmp_path: Path, n: int = 4) -> CustodyLog:
    log = CustodyLog(tmp_path, actor="examiner1")
    for i in range(n):
        log.append("collect", artifact_id=f"A{i}", sha256="ab" * 32)
    return log


def test_events_are_hash_chained(tmp_path: Path) -> None:
    log = _log(tmp_path)
    events = list(log.events())
    assert [e["seq"] for e in events] == [1, 2, 3, 4]
    assert events[0]["prev"] == GENESIS
    for before, after in itertools.pairwise(events):
        assert after["prev"] == before["hash"]
    assert all(e["hash"] == event_hash(e) for e in events)
    assert events[0]["actor"] == "examiner1"
    assert events[0]["ts"].endswith("Z")
    assert log.verify() == (4, [])
    head = json.loads((tmp_path / "custody.head").read_text())
    assert head == {"seq": 4, "hash": events[-1]["hash"]}


def test_edited_event_is_named_by_line(tmp_path: Path) -> None:
    log = _log(tmp_path)
    lines = log.path.read_text().splitlines()
    lines[1] = lines[1].replace('"A1"', '"A9"')
    log.path.write_text("\n".join(lines) + "\n")
    _, problems = log.verify()
    assert [(p.line, "edited" in p.problem) for p in problems] == [(2, True)]


def test_rehashed_edit_still_breaks_the_chain(tmp_path: Path) -> None:
    # an editor who recomputes the edited event's own hash breaks the link to the next one
    log = _log(tmp_path)
    lines = log.path.read_text().splitlines()
    ev = json.loads(lines[1])
    ev["details"]["artifact_id"] = "A9"
    ev["hash"] = event_hash(ev)
    lines[1] = json.dumps(ev)
    log.path.write_text("\n".join(lines) + "\n")
    _, problems = log.verify()
    assert [p.line for p in problems] == [3]
    assert "chain broken" in problems[0].problem


def test_removed_last_event_is_caught_by_head(tmp_path: Path) -> None:
    log = _log(tmp_path)
    lines = log.path.read_text().splitlines()
    log.path.write_text("\n".join(lines[:-1]) + "\n")
    count, problems = log.verify()
    assert count == 3
    assert len(problems) == 1 and "custody.head names event 4" in problems[0].problem


def test_removed_middle_event_and_garbage_line(tmp_path: Path) -> None:
    log = _log(tmp_path)
    lines = log.path.read_text().splitlines()
    del lines[1]
    lines.append("{not json")
    log.path.write_text("\n".join(lines) + "\n")
    _, problems = log.verify()
    text = " | ".join(f"{p.line}:{p.problem}" for p in problems)
    assert "2:chain broken" in text
    assert "sequence number 3 where 2 was expected" in text
    assert "4:line is not valid JSON" in text


def _head_back_to(log: CustodyLog, event: dict) -> None:
    """What a kill between a batch's write and its head update leaves: the head names the event before it."""
    (log.path.parent / "custody.head").write_text(json.dumps({"seq": event["seq"], "hash": event["hash"]}).ljust(128))


def test_a_batch_is_chained_event_by_event_in_one_write(tmp_path: Path) -> None:
    log = _log(tmp_path, 2)
    batch = log.append_many("collect", [{"artifact_id": f"B{i}"} for i in range(5)])
    events = list(log.events())
    assert [e["seq"] for e in events] == [1, 2, 3, 4, 5, 6, 7]
    assert (
        [e["details"]["artifact_id"] for e in events[2:]]
        == [f"B{i}" for i in range(5)]
        == [e["details"]["artifact_id"] for e in batch]
    )
    assert log.verify() == (7, [])
    assert json.loads((tmp_path / "custody.head").read_text())["seq"] == 7


def test_head_behind_by_one_batch_is_caught_up(tmp_path: Path) -> None:
    log = _log(tmp_path, 2)
    before = list(log.events())[-1]
    log.append_many("collect", [{"artifact_id": f"B{i}"} for i in range(6)])
    log.close()
    _head_back_to(log, before)
    assert "custody.head names event 2" in log.verify()[1][0].problem
    fresh = CustodyLog(tmp_path, actor="examiner2")
    repairs = fresh.prepare()
    assert [(r["what"], r["seq"]) for r in repairs] == [("head caught up with the last whole event", 8)]
    count, problems = fresh.verify()
    assert (count, problems) == (9, [])  # the 8 events and the repair event that records the catch-up
    fresh.close()


def test_head_behind_events_of_several_actions_is_left_for_verify(tmp_path: Path) -> None:
    log = _log(tmp_path, 2)
    before = list(log.events())[-1]
    log.append_many("collect", [{"artifact_id": "B0"}, {"artifact_id": "B1"}])
    log.append("collect_end")
    log.close()
    _head_back_to(log, before)  # three events, two actions: not one batch cut short, so never blessed
    fresh = CustodyLog(tmp_path, actor="examiner2")
    assert fresh.prepare() == []
    assert "custody.head names event 2" in fresh.verify()[1][0].problem
    fresh.close()


def test_event_json_reads_every_line_as_json_does() -> None:
    """The orjson path of event reading gives json's value, or json's error, line for line: numbers orjson would
    read otherwise (beyond 64 bits, NaN, overflow) and texts it refuses go to json."""
    from triage.custody import event_json

    lines = [
        '{"a": 1, "b": [true, null, "x"], "a": 3}',  # repeated key: the last value, at the first key's place
        '{"n": 123456789012345678901234567890}',  # beyond 64 bits: json's int, not orjson's float
        '{"n": -9223372036854775809, "m": 18446744073709551616}',
        '{"f": NaN, "g": Infinity, "h": 1e400}',
        '{"s": "\\ud800 lone", "t": "\\u2028"}',
        '{"f": 0.30000000000000004, "z": -0.0, "e": 5e-324}',
        '{"sha256": "1234567890123456789012345678901234567890123456789012345678901234"}',
        ' {"spaced" : 1 }\n',
    ]
    for line in lines:
        got, want = event_json(line.encode()), json.loads(line)
        assert repr(got) == repr(want)
        assert [type(v) for v in got.values()] == [type(v) for v in want.values()]
    assert event_json(lines[1].encode())["n"] == 123456789012345678901234567890
    assert event_json(b'{"p": "caf\xe9"}') == {"p": "caf\udce9"}  # not UTF-8: as the text reading decoded it
    for bad in ('{"a": 1,}', '{"a": "x\x01"}', "[1, 2", "\ufeff{}", '{"a": 1} {"b": 2}'):
        with pytest.raises(ValueError):
            json.loads(bad)
        with pytest.raises(ValueError):
            event_json(bad.encode())


def test_events_are_what_reading_the_log_as_text_gave(tmp_path: Path) -> None:
    """Damaged, blank and cut lines are skipped (verify reports them); carriage returns end lines as text reading
    ends them; huge numbers stay exact: the same events as ``json.loads`` of each text line."""
    log = CustodyLog(tmp_path, actor="examiner1")
    raw = (
        b'{"action": "create", "details": {"size": 123456789012345678901234567890}}\n'
        b"{not json\n"
        b"\n"
        b'{"action": "collect", "details": {"artifact_id": "a1"}}\r\n'
        b'{"action": "one"}\r{"action": "two"}\n'
        b'{"action": "caf\xe9", "x": NaN}\n'
        b"[1, 2]\n"
        b'{"action": "cut"'
    )
    (tmp_path / "custody.jsonl").write_bytes(raw)
    want = []
    with open(tmp_path / "custody.jsonl", encoding="utf-8", errors="surrogateescape") as fh:
        for line in fh:
            if line.endswith("\n") and line.strip():
                try:
                    ev = json.loads(line)
                except ValueError:
                    continue
                if isinstance(ev, dict):
                    want.append(ev)
    got = list(log.events())
    assert repr(got) == repr(want)
    assert [e["action"] for e in got] == ["create", "collect", "one", "two", "caf\udce9"]
    assert got[0]["details"]["size"] == 123456789012345678901234567890


def test_a_line_nested_too_deeply_is_a_damaged_line_not_a_crash(tmp_path: Path) -> None:
    """json raises RecursionError (not ValueError) for deep nesting: a crafted line must cost only itself."""
    from triage.custody import load_json
    from triage.results import record_run_id

    log = _log(tmp_path)
    deep = "[" * 200_000 + "]" * 200_000
    with log.path.open("a") as fh:
        fh.write(deep + "\n")
    assert [e["seq"] for e in log.events()] == [1, 2, 3, 4]  # the line is skipped, as any damaged line
    count, problems = log.verify()
    assert count == 4 and any(p.line == 5 and "not valid JSON" in p.problem for p in problems)
    with pytest.raises(ValueError, match="nested too deeply"):
        load_json(deep)
    record = tmp_path / "deep.batch.json"
    record.write_text('{"run_id": ' + deep + "}")
    assert record_run_id(record) is None  # an unreadable record, as a damaged one


def test_deeply_nested_ledger_or_fleet_index_is_unreadable_not_a_crash(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from triage.fleet import INDEX, fleet_id_of, host_cases
    from triage.report.summary import main as summary

    deep = "[" * 200_000 + "]" * 200_000
    (tmp_path / "report").mkdir()
    (tmp_path / "report" / "ledger.json").write_text(deep)
    assert summary([str(tmp_path)]) == 1
    assert "nested too deeply" in capsys.readouterr().err
    (tmp_path / INDEX).parent.mkdir(parents=True, exist_ok=True)
    (tmp_path / INDEX).write_text(deep)
    assert fleet_id_of(tmp_path) == ""
    assert isinstance(host_cases(tmp_path), dict)
