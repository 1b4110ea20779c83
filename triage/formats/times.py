"""Windows time formats: FILETIME (100 ns ticks since 1601-01-01 UTC) to datetime, epoch seconds and ISO text.

The one place that knows the 1601 epoch. Readers of hives, NTFS entries and event records convert
through these; the test builders write the other direction with the same constants.
"""

from __future__ import annotations

import struct
from datetime import UTC, datetime, timedelta

EPOCH_1601 = datetime(1601, 1, 1, tzinfo=UTC)
EPOCH_DELTA_SECONDS = 11644473600  # 1601-01-01 to 1970-01-01
TICKS_PER_SECOND = 10_000_000
EPOCH_DELTA_TICKS = EPOCH_DELTA_SECONDS * TICKS_PER_SECOND  # 116444736000000000
FILETIME_MAX = 0x7FFFFFFFFFFFFFFF  # "never" in many Windows structures


def filetime_to_dt(value: int | None) -> datetime | None:
    """A FILETIME as an aware UTC datetime (microseconds); None for 0, "never" and out-of-range values."""
    if not value or value >= FILETIME_MAX:
        return None
    try:
        return EPOCH_1601 + timedelta(microseconds=value // 10)
    except OverflowError:
        return None


def filetime_bytes_to_dt(data: bytes, offset: int = 0) -> datetime | None:
    """The little-endian FILETIME at ``offset`` of ``data`` as a datetime; None when too short or unset."""
    if len(data) < offset + 8 or offset < 0:
        return None
    return filetime_to_dt(struct.unpack_from("<Q", data, offset)[0])


def filetime_to_epoch(value: int | None) -> float | None:
    """A FILETIME as POSIX seconds (float); None for 0 or None."""
    if not value:
        return None
    return (int(value) - EPOCH_DELTA_TICKS) / TICKS_PER_SECOND


def filetime_to_iso(value: int | None) -> str | None:
    """A FILETIME as ISO-8601 UTC with its full 100 ns precision (``2021-03-03T02:14:07.1234567Z``).

    None for 0; a value no calendar can hold comes back as ``FILETIME:<n>`` so it is still shown.
    """
    if not value:
        return None
    secs, frac = divmod(int(value), TICKS_PER_SECOND)
    try:
        dt = datetime.fromtimestamp(secs - EPOCH_DELTA_SECONDS, UTC)
    except (OverflowError, OSError, ValueError):
        return f"FILETIME:{value}"
    return dt.strftime("%Y-%m-%dT%H:%M:%S") + f".{frac:07d}Z"


def dt_to_filetime(dt: datetime) -> int:
    """A datetime as a FILETIME; naive means UTC. Exact to the microsecond (integer arithmetic)."""
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    delta = dt - EPOCH_1601
    return (delta.days * 86400 + delta.seconds) * TICKS_PER_SECOND + delta.microseconds * 10
