"""The one FILETIME converter: known instants, full 100 ns precision, and the values that mean "no time"."""

from __future__ import annotations

import struct
from datetime import UTC, datetime

import pytest

from triage.formats.times import (
    EPOCH_DELTA_TICKS,
    FILETIME_MAX,
    dt_to_filetime,
    filetime_bytes_to_dt,
    filetime_to_dt,
    filetime_to_epoch,
    filetime_to_iso,
)

# 2021-03-03 02:14:07.1234567 UTC written out by hand: 134,774 days from 1601 to 1970, then 18,689 to 2021-03-03
PROXYLOGON = ((134_774 + 18_689) * 86_400 + 2 * 3600 + 14 * 60 + 7) * 10_000_000 + 1_234_567


def test_unix_epoch_is_the_documented_offset() -> None:
    assert EPOCH_DELTA_TICKS == 116_444_736_000_000_000
    assert filetime_to_dt(EPOCH_DELTA_TICKS) == datetime(1970, 1, 1, tzinfo=UTC)
    assert filetime_to_epoch(EPOCH_DELTA_TICKS) == 0.0


def test_a_known_instant_in_every_form() -> None:
    assert filetime_to_dt(PROXYLOGON) == datetime(2021, 3, 3, 2, 14, 7, 123456, tzinfo=UTC)
    assert filetime_to_iso(PROXYLOGON) == "2021-03-03T02:14:07.1234567Z"  # the last digit kept
    assert filetime_to_epoch(PROXYLOGON) == pytest.approx(1614737647.1234567, abs=1e-6)
    raw = b"\xff" * 3 + struct.pack("<Q", PROXYLOGON)
    assert filetime_bytes_to_dt(raw, 3) == datetime(2021, 3, 3, 2, 14, 7, 123456, tzinfo=UTC)


def test_round_trip_from_a_datetime() -> None:
    when = datetime(2021, 3, 3, 2, 14, 7, 123456, tzinfo=UTC)
    assert dt_to_filetime(when) == PROXYLOGON - 7
    assert dt_to_filetime(when.replace(tzinfo=None)) == PROXYLOGON - 7  # naive means UTC
    assert filetime_to_dt(dt_to_filetime(when)) == when


@pytest.mark.parametrize("value", [0, None, FILETIME_MAX, 0xFFFFFFFFFFFFFFFF])
def test_unset_and_never_are_no_time(value: int | None) -> None:
    assert filetime_to_dt(value) is None


def test_out_of_calendar_values_are_shown_not_raised() -> None:
    assert filetime_to_iso(0) is None
    assert filetime_to_iso(FILETIME_MAX) == f"FILETIME:{FILETIME_MAX}"
    assert filetime_bytes_to_dt(b"\x01\x02", 0) is None  # too short
    assert filetime_bytes_to_dt(bytes(8), 0) is None
