"""proxylogon on a host whose files no check reads: the checks' own skip, without running them."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest

import analyzers.exchange.proxylogon as proxylogon
from analyzers.exchange.common import LogFile
from analyzers.exchange.logs import log_type
from triage.errors import Skip


def _files(tmp_path: Path, *logical: str) -> list[LogFile]:
    return [LogFile(tmp_path / Path(p).name, p, log_type(p, "evtx"), "evtx") for p in logical]


class _Ran(Exception):
    pass


def _checks_ran(files: list[LogFile], **kw: object) -> None:
    raise _Ran


def _analyze(monkeypatch: pytest.MonkeyPatch, files: list[LogFile]) -> None:
    monkeypatch.setattr(proxylogon, "unit_files", lambda unit: files)
    list(proxylogon.ProxyLogonChecks().analyze(SimpleNamespace(warn=lambda w: None)))  # type: ignore[arg-type]


def test_a_host_with_only_a_security_log_skips_before_the_checks(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(proxylogon, "test_proxylogon", _checks_ran)
    with pytest.raises(Skip, match=r"^no Exchange logs and no CVE-2021-26857 events on this host$"):
        _analyze(monkeypatch, _files(tmp_path, "C:/Windows/System32/winevt/Logs/Security.evtx"))


@pytest.mark.parametrize(
    "logical",
    [
        "C:/Windows/System32/winevt/Logs/Application.evtx",  # CVE-2021-26857 is looked for in it
        "C:/Program Files/Microsoft/Exchange Server/V15/Logging/HttpProxy/Ecp/odd.evtx",  # read as an HttpProxy log
    ],
)
def test_a_file_a_check_reads_runs_the_checks(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, logical: str) -> None:
    monkeypatch.setattr(proxylogon, "test_proxylogon", _checks_ran)
    with pytest.raises(_Ran):
        _analyze(monkeypatch, _files(tmp_path, "C:/Windows/System32/winevt/Logs/Security.evtx", logical))


def test_the_checks_over_a_security_log_alone_find_nothing(tmp_path: Path) -> None:
    # what the shortcut stands for: run in full, the checks read no file (no hit, warning or parse statistic)
    files = _files(tmp_path, "C:/Windows/System32/winevt/Logs/Security.evtx")
    result = proxylogon.test_proxylogon(files)
    assert not len(result.cve26857) and not result.warnings and not result.stats and not result.http.skipped
    assert all(not age.files for age in result.ages.values())
