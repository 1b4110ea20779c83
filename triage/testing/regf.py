"""A small, deterministic writer of Windows registry hive files (regf format).

Meant for tests and demo samples: :class:`HiveBuilder` collects keys and values in memory and
serialises them as a primary hive file laid out the way Windows writes one (format version 1.5):

* a 4096-byte base block with sequence numbers, last-written time and an XOR checksum;
* hive bins (multiples of 4096 bytes) holding 8-byte aligned cells that never cross a bin
  boundary, the unused tail of every bin being one free cell;
* ``nk`` key nodes sharing one ``sk`` security cell, ``lh`` hash leaves (under an ``ri`` index
  root for keys with many subkeys), ``vk`` values with small data stored inline and data above
  16344 bytes split over a ``db`` big-data record.

Names made only of Latin-1 characters are stored compressed (one byte per character), as Windows
does; note that regipy decodes compressed names as ASCII, so non-ASCII Latin-1 key names show up
with replacement characters there.  The root key is always the first cell of the first bin.

Only the standard library is used.  Layout facts follow the public "Windows registry file
format specification" (M. Suhanov) and the libyal regf notes.
"""

from __future__ import annotations

import os
import struct
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from triage.formats.times import dt_to_filetime

__all__ = [
    "REG_BINARY",
    "REG_DWORD",
    "REG_DWORD_BIG_ENDIAN",
    "REG_EXPAND_SZ",
    "REG_LINK",
    "REG_MULTI_SZ",
    "REG_NONE",
    "REG_QWORD",
    "REG_SZ",
    "VALUE_TYPES",
    "HiveBuilder",
    "base_block_checksum",
    "filetime",
    "name_hash",
]

REG_NONE = 0
REG_SZ = 1
REG_EXPAND_SZ = 2
REG_BINARY = 3
REG_DWORD = 4
REG_DWORD_BIG_ENDIAN = 5
REG_LINK = 6
REG_MULTI_SZ = 7
REG_QWORD = 11

VALUE_TYPES: dict[str, int] = {
    "REG_NONE": REG_NONE,
    "REG_SZ": REG_SZ,
    "REG_EXPAND_SZ": REG_EXPAND_SZ,
    "REG_BINARY": REG_BINARY,
    "REG_DWORD": REG_DWORD,
    "REG_DWORD_LITTLE_ENDIAN": REG_DWORD,
    "REG_DWORD_BIG_ENDIAN": REG_DWORD_BIG_ENDIAN,
    "REG_LINK": REG_LINK,
    "REG_MULTI_SZ": REG_MULTI_SZ,
    "REG_QWORD": REG_QWORD,
    "REG_QWORD_LITTLE_ENDIAN": REG_QWORD,
}

DEFAULT_TIMESTAMP = datetime(2021, 3, 3, tzinfo=UTC)
BASE_BLOCK_SIZE = 4096
HBIN_ALIGNMENT = 4096
HBIN_HEADER_SIZE = 32
NO_OFFSET = 0xFFFFFFFF
INLINE_DATA_FLAG = 0x80000000
BIG_DATA_SEGMENT = 16344  # largest data cell; bigger data goes through a "db" record
LEAF_MAX = 500  # subkeys per "lh" leaf before an "ri" index root is used
MAX_KEY_NAME = 255  # UTF-16 code units
MAX_VALUE_NAME = 16383

KEY_HIVE_ENTRY = 0x0004
KEY_NO_DELETE = 0x0008
KEY_COMP_NAME = 0x0020
VALUE_COMP_NAME = 0x0001

_NK_HEADER = struct.Struct("<2sHQ15IHH")  # 76 bytes, key name follows
_VK_HEADER = struct.Struct("<2sHIIIHH")  # 20 bytes, value name follows
_SK_HEADER = struct.Struct("<2sHIIII")  # 20 bytes, security descriptor follows


def filetime(dt: datetime) -> int:
    """Return ``dt`` as a Windows FILETIME (100 ns ticks since 1601-01-01 UTC); naive means UTC."""
    return dt_to_filetime(dt)


def base_block_checksum(block: bytes) -> int:
    """XOR of the first 127 little-endian dwords of a base block, as stored at offset 508."""
    checksum = 0
    for (dword,) in struct.iter_unpack("<I", block[:508]):
        checksum ^= dword
    if checksum == 0xFFFFFFFF:
        return 0xFFFFFFFE
    return checksum or 1


def _upcase_units(name: str) -> tuple[int, ...]:
    """UTF-16 code units of ``name`` upper-cased one unit at a time, as the kernel compares names."""
    raw = name.encode("utf-16-le")
    units = struct.unpack(f"<{len(raw) // 2}H", raw)
    out = []
    for unit in units:
        upper = chr(unit).upper() if unit < 0xD800 or unit > 0xDFFF else ""
        out.append(ord(upper) if len(upper) == 1 and ord(upper) < 0x10000 else unit)
    return tuple(out)


def name_hash(name: str) -> int:
    """The ``lh`` leaf hash of a key name: ``h = h * 37 + unit`` over upper-cased UTF-16 units."""
    value = 0
    for unit in _upcase_units(name):
        value = (value * 37 + unit) & 0xFFFFFFFF
    return value


def _encode_name(name: str) -> tuple[bytes, bool]:
    """Name bytes and whether they are stored compressed (one byte per Latin-1 character)."""
    if not name:
        return b"", False
    try:
        return name.encode("latin-1"), True
    except UnicodeEncodeError:
        return name.encode("utf-16-le"), False


def _resolve_type(value_type: int | str) -> int:
    if isinstance(value_type, str):
        key = value_type.strip().upper()
        resolved = VALUE_TYPES.get(key, VALUE_TYPES.get("REG_" + key))
        if resolved is None:
            raise ValueError(f"unknown registry value type {value_type!r}")
        return resolved
    if not 0 <= value_type <= 0xFFFFFFFF:
        raise ValueError(f"registry value type out of range: {value_type}")
    return value_type


def _infer_type(data: object) -> int:
    if isinstance(data, str):
        return REG_SZ
    if isinstance(data, int):
        return REG_DWORD if 0 <= data <= 0xFFFFFFFF else REG_QWORD
    if isinstance(data, bytes | bytearray | memoryview):
        return REG_BINARY
    if isinstance(data, list | tuple) and all(isinstance(item, str) for item in data):
        return REG_MULTI_SZ
    if data is None:
        return REG_NONE
    raise TypeError(f"cannot infer a registry type for {type(data).__name__}")


def _pack_int(data: object, bits: int, fmt: str) -> bytes:
    if not isinstance(data, int) or not -(1 << (bits - 1)) <= data < (1 << bits):
        raise ValueError(f"{data!r} does not fit a {bits}-bit registry value")
    return struct.pack(fmt, data & ((1 << bits) - 1))


def _encode_data(data: object, value_type: int) -> bytes:
    """Serialise ``data`` for ``value_type``; bytes-like data is always stored as given."""
    if isinstance(data, bytes | bytearray | memoryview):
        return bytes(data)
    if value_type in (REG_SZ, REG_EXPAND_SZ, REG_LINK) and isinstance(data, str):
        # REG_LINK targets are stored without a terminator, like Windows does.
        return (data if value_type == REG_LINK else data + "\0").encode("utf-16-le")
    if value_type == REG_MULTI_SZ and isinstance(data, list | tuple):
        if not all(isinstance(item, str) and "\0" not in item for item in data):
            raise ValueError("REG_MULTI_SZ items must be strings without NUL characters")
        return "".join(item + "\0" for item in data).encode("utf-16-le") + b"\0\0"
    if value_type == REG_DWORD:
        return _pack_int(data, 32, "<I")
    if value_type == REG_DWORD_BIG_ENDIAN:
        return _pack_int(data, 32, ">I")
    if value_type == REG_QWORD:
        return _pack_int(data, 64, "<Q")
    if data is None:
        return b""
    raise TypeError(f"cannot store {type(data).__name__} as registry type {value_type}")


def _sid(authority: int, *subauthorities: int) -> bytes:
    return (
        struct.pack("<BB", 1, len(subauthorities))
        + authority.to_bytes(6, "big")
        + struct.pack(f"<{len(subauthorities)}I", *subauthorities)
    )


def _security_descriptor() -> bytes:
    """Self-relative descriptor: owner Administrators, group SYSTEM, DACL granting
    SYSTEM and Administrators full control and Users read access (container inherit)."""
    system, admins, users = _sid(5, 18), _sid(5, 32, 544), _sid(5, 32, 545)
    aces = b"".join(
        struct.pack("<BBHI", 0, 0x02, 8 + len(sid), mask) + sid  # ACCESS_ALLOWED, CONTAINER_INHERIT
        for sid, mask in ((system, 0x000F003F), (admins, 0x000F003F), (users, 0x00020019))
    )
    dacl = struct.pack("<BBHHH", 2, 0, 8 + len(aces), 3, 0) + aces
    owner_at = 20 + len(dacl)
    group_at = owner_at + len(admins)
    control = 0x8000 | 0x0004  # SE_SELF_RELATIVE | SE_DACL_PRESENT
    return struct.pack("<BBHIIII", 1, 0, control, owner_at, group_at, 0, 20) + dacl + admins + system


SECURITY_DESCRIPTOR = _security_descriptor()


@dataclass
class _Value:
    name: str
    value_type: int
    data: bytes


@dataclass
class _Key:
    name: str
    timestamp: int
    class_name: str | None = None
    subkeys: dict[tuple[int, ...], _Key] = field(default_factory=dict)
    values: dict[tuple[int, ...], _Value] = field(default_factory=dict)

    def count(self) -> int:
        return 1 + sum(child.count() for child in self.subkeys.values())


def _cell_size(payload_len: int) -> int:
    return (payload_len + 4 + 7) & ~7


class _Bins:
    """Places cells of known size into hive bins, opening a new (large enough) bin when needed."""

    def __init__(self) -> None:
        self.bins: list[list[int]] = []  # [offset, size, used]
        self.cells: dict[int, bytes] = {}
        self.sizes: dict[int, int] = {}

    def reserve(self, payload_len: int) -> int:
        size = _cell_size(payload_len)
        if not self.bins or self.bins[-1][1] - self.bins[-1][2] < size:
            start = self.bins[-1][0] + self.bins[-1][1] if self.bins else 0
            bin_size = -(-(size + HBIN_HEADER_SIZE) // HBIN_ALIGNMENT) * HBIN_ALIGNMENT
            self.bins.append([start, bin_size, HBIN_HEADER_SIZE])
        start, _, used = self.bins[-1]
        self.bins[-1][2] = used + size
        self.sizes[start + used] = size
        return start + used

    def put(self, offset: int, payload: bytes) -> None:
        if _cell_size(len(payload)) != self.sizes[offset]:
            raise AssertionError("cell payload does not match its reservation")
        self.cells[offset] = payload

    def alloc(self, payload: bytes) -> int:
        offset = self.reserve(len(payload))
        self.put(offset, payload)
        return offset

    def image(self, timestamp: int) -> bytes:
        total = self.bins[-1][0] + self.bins[-1][1]
        out = bytearray(total)
        for index, (start, size, used) in enumerate(self.bins):
            stamp = timestamp if index == 0 else 0  # only the first bin carries the last-written time
            struct.pack_into("<4sIIQQI", out, start, b"hbin", start, size, 0, stamp, 0)
            if used < size:
                struct.pack_into("<i", out, start + used, size - used)  # free cell: positive size
        for offset, payload in self.cells.items():
            struct.pack_into("<i", out, offset, -self.sizes[offset])
            out[offset + 4 : offset + 4 + len(payload)] = payload
        return bytes(out)


class HiveBuilder:
    """Builds a regf hive in memory.

    Key paths are backslash separated and relative to the root key (``""`` is the root);
    key and value names are case-insensitive, like in Windows.  The output only depends on
    the calls made, so the same input always yields the same bytes.
    """

    def __init__(self, *, root_name: str = "ROOT", file_name: str = "", timestamp: datetime | None = None) -> None:
        self.timestamp = filetime(timestamp or DEFAULT_TIMESTAMP)
        self.file_name = file_name
        self.root = _Key(self._check_key_name(root_name), self.timestamp)

    @staticmethod
    def _check_key_name(name: str) -> str:
        if not name or "\\" in name or len(name.encode("utf-16-le")) > 2 * MAX_KEY_NAME:
            raise ValueError(f"invalid registry key name {name!r}")
        return name

    def _key(self, path: str) -> _Key:
        key, trimmed = self.root, path.strip("\\")
        for part in trimmed.split("\\") if trimmed else ():
            fold = _upcase_units(self._check_key_name(part))
            if fold not in key.subkeys:
                key.subkeys[fold] = _Key(part, self.timestamp)
            key = key.subkeys[fold]
        return key

    def add_key(self, path: str, *, timestamp: datetime | None = None, class_name: str | None = None) -> None:
        """Create the key at ``path`` (and missing parents); set its last-written time and class."""
        key = self._key(path)
        if timestamp is not None:
            key.timestamp = filetime(timestamp)
        if class_name is not None:
            key.class_name = class_name or None

    def set_value(self, key_path: str, name: str, data: object, value_type: int | str | None = None) -> None:
        """Set value ``name`` (``""`` = the default value) of the key at ``key_path``, creating the key.

        ``value_type`` is a ``REG_*`` number or name; when omitted it is inferred from ``data``:
        ``str`` -> REG_SZ, ``int`` -> REG_DWORD (REG_QWORD beyond 32 bits unsigned),
        bytes -> REG_BINARY, list of ``str`` -> REG_MULTI_SZ.  Bytes-like data is stored raw.
        """
        if len(name) > MAX_VALUE_NAME:
            raise ValueError("registry value name too long")
        vtype = _infer_type(data) if value_type is None else _resolve_type(value_type)
        self._key(key_path).values[_upcase_units(name)] = _Value(name, vtype, _encode_data(data, vtype))

    # -- serialisation -----------------------------------------------------------------------

    def _place(self, key: _Key, parent: int, bins: _Bins, sk: int, nk: int | None = None) -> int:
        """Lay out ``key`` and its subtree; return the offset of its ``nk`` cell."""
        name, compressed = _encode_name(key.name)
        nk = bins.reserve(_NK_HEADER.size + len(name)) if nk is None else nk
        class_raw = (key.class_name or "").encode("utf-16-le")
        class_at = bins.alloc(class_raw) if class_raw else NO_OFFSET

        vk_offsets = [self._place_value(value, bins) for value in key.values.values()]
        values_at = bins.alloc(struct.pack(f"<{len(vk_offsets)}I", *vk_offsets)) if vk_offsets else NO_OFFSET

        children = sorted(key.subkeys.items())
        child_offsets = [self._place(child, nk, bins, sk) for _, child in children]
        entries = [
            struct.pack("<II", at, name_hash(child.name))
            for (_, child), at in zip(children, child_offsets, strict=True)
        ]
        per_leaf = -(-len(entries) // -(-len(entries) // LEAF_MAX)) if entries else 1  # balanced leaves
        leaves = [
            bins.alloc(b"lh" + struct.pack("<H", len(chunk)) + b"".join(chunk))
            for chunk in (entries[i : i + per_leaf] for i in range(0, len(entries), per_leaf))
        ]
        if len(leaves) > 1:
            subkeys_at = bins.alloc(b"ri" + struct.pack(f"<H{len(leaves)}I", len(leaves), *leaves))
        else:
            subkeys_at = leaves[0] if leaves else NO_OFFSET

        flags = KEY_COMP_NAME if compressed else 0
        if key is self.root:
            flags |= KEY_HIVE_ENTRY | KEY_NO_DELETE
        subs = key.subkeys.values()
        header = _NK_HEADER.pack(
            b"nk",
            flags,
            key.timestamp,
            0,  # access bits
            parent,
            len(children),
            0,  # volatile subkey count
            subkeys_at,
            NO_OFFSET,  # volatile subkey list
            len(vk_offsets),
            values_at,
            sk,
            class_at,
            max((len(s.name.encode("utf-16-le")) for s in subs), default=0),
            max((len((s.class_name or "").encode("utf-16-le")) for s in subs), default=0),
            max((len(v.name.encode("utf-16-le")) for v in key.values.values()), default=0),
            max((len(v.data) for v in key.values.values()), default=0),
            0,  # work var
            len(name),
            len(class_raw),
        )
        bins.put(nk, header + name)
        return nk

    @staticmethod
    def _place_value(value: _Value, bins: _Bins) -> int:
        name, compressed = _encode_name(value.name)
        vk = bins.reserve(_VK_HEADER.size + len(name))
        size, data = len(value.data), value.data
        if size <= 4:
            size_field, data_at = size | INLINE_DATA_FLAG, int.from_bytes(data.ljust(4, b"\0"), "little")
        elif size <= BIG_DATA_SEGMENT:
            size_field, data_at = size, bins.alloc(data)
        else:
            segments = [bins.alloc(data[i : i + BIG_DATA_SEGMENT]) for i in range(0, size, BIG_DATA_SEGMENT)]
            segment_list = bins.alloc(struct.pack(f"<{len(segments)}I", *segments))
            size_field, data_at = size, bins.alloc(struct.pack("<2sHI", b"db", len(segments), segment_list))
        flags = VALUE_COMP_NAME if compressed else 0
        header = _VK_HEADER.pack(b"vk", len(name), size_field, data_at, value.value_type, flags, 0)
        bins.put(vk, header + name)
        return vk

    def _file_name_field(self) -> bytes:
        raw = self.file_name.encode("utf-16-le")
        if len(raw) > 62:  # keep the tail of long paths and a terminating NUL, like Windows
            raw = raw[-62:]
        return raw.ljust(64, b"\0")

    def to_bytes(self, *, dirty: bool = False) -> bytes:
        """Serialise the hive; ``dirty`` leaves primary and secondary sequence numbers unequal."""
        bins = _Bins()
        root_nk = bins.reserve(_NK_HEADER.size + len(_encode_name(self.root.name)[0]))  # first cell
        sk = bins.reserve(_SK_HEADER.size + len(SECURITY_DESCRIPTOR))
        sk_header = _SK_HEADER.pack(b"sk", 0, sk, sk, self.root.count(), len(SECURITY_DESCRIPTOR))
        bins.put(sk, sk_header + SECURITY_DESCRIPTOR)  # flink/blink: the only sk cell links to itself
        self._place(self.root, NO_OFFSET, bins, sk, root_nk)
        hbins = bins.image(self.timestamp)

        block = bytearray(BASE_BLOCK_SIZE)
        secondary = 1
        primary = secondary + 1 if dirty else secondary
        struct.pack_into(
            "<4sIIQIIIIIII", block, 0, b"regf", primary, secondary, self.timestamp, 1, 5, 0, 1,
            root_nk, len(hbins), 1,
        )  # fmt: skip
        block[48:112] = self._file_name_field()
        struct.pack_into("<I", block, 508, base_block_checksum(bytes(block)))
        return bytes(block) + hbins

    def write(self, path: str | os.PathLike[str], *, dirty: bool = False) -> Path:
        """Write the hive to ``path`` and return it as a :class:`~pathlib.Path`."""
        target = Path(path)
        target.write_bytes(self.to_bytes(dirty=dirty))
        return target
