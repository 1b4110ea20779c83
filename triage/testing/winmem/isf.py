"""A small description language for the structures of the synthetic kernel, and the two things made from it:
the ISF symbol table Volatility 3 loads (JSON in its intermediate symbol format) and the bytes written into
the image. One definition drives both, so a field can never sit at one offset in the table and at another in
memory.

Types are ISF type descriptors (plain dicts); :func:`base`, :func:`ptr`, :func:`struct`, :func:`array`,
:func:`bits` and :func:`enum` build them. A :class:`SymbolTable` holds the structures (fields laid out in
order with natural alignment unless an offset is given), enumerations and symbols, and packs values into
bytes with :meth:`SymbolTable.pack`.
"""

from __future__ import annotations

import json
import lzma
import struct as _struct
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

TypeRef = dict[str, Any]

# name: (size, signed, ISF kind); "pointer" is the base type Volatility sizes pointers (and 64-bit) by
BASE_TYPES: dict[str, tuple[int, bool, str]] = {
    "char": (1, True, "char"),
    "unsigned char": (1, False, "char"),
    "short": (2, True, "int"),
    "unsigned short": (2, False, "int"),
    "wchar": (2, False, "char"),
    "int": (4, True, "int"),
    "unsigned int": (4, False, "int"),
    "long": (4, True, "int"),
    "unsigned long": (4, False, "int"),
    "long long": (8, True, "int"),
    "unsigned long long": (8, False, "int"),
    "pointer": (8, False, "int"),
    "bool": (1, False, "bool"),
    "void": (0, False, "void"),
}


def base(name: str) -> TypeRef:
    """A base type (``unsigned long`` ...)."""
    if name not in BASE_TYPES:
        raise KeyError(name)
    return {"kind": "base", "name": name}


def ptr(subtype: TypeRef | None = None) -> TypeRef:
    """A 64-bit pointer to ``subtype`` (void when omitted)."""
    return {"kind": "pointer", "subtype": subtype or base("void")}


def struct(name: str) -> TypeRef:
    """A reference to a structure by name."""
    return {"kind": "struct", "name": name}


def array(count: int, subtype: TypeRef) -> TypeRef:
    """``count`` consecutive elements of ``subtype``."""
    return {"kind": "array", "count": count, "subtype": subtype}


def bits(position: int, length: int, of: str = "unsigned long") -> TypeRef:
    """A bit field of ``length`` bits at ``position`` within an integer of base type ``of``."""
    return {"kind": "bitfield", "bit_position": position, "bit_length": length, "type": base(of)}


def bitfields(of: str, offset: int, *members: tuple[str, int, int]) -> list[tuple[str, TypeRef, int]]:
    """Fields sharing one integer of base type ``of`` at ``offset``: (name, first bit, bit count) each."""
    return [(name, bits(position, length, of), offset) for name, position, length in members]


def enum(name: str) -> TypeRef:
    """A reference to an enumeration by name."""
    return {"kind": "enum", "name": name}


@dataclass
class Struct:
    """One structure: its size and fields (name -> offset, type)."""

    name: str
    size: int
    fields: dict[str, tuple[int, TypeRef]]


FieldSpec = tuple[str, TypeRef] | tuple[str, TypeRef, int]


@dataclass
class SymbolTable:
    """Structures, enumerations and symbols (addresses relative to the kernel base) of one ISF."""

    structs: dict[str, Struct] = field(default_factory=dict)
    enums: dict[str, tuple[str, dict[str, int]]] = field(default_factory=dict)
    symbols: dict[str, int] = field(default_factory=dict)

    # -- definition -------------------------------------------------------------------------------------------
    def define(self, name: str, fields: Sequence[FieldSpec], size: int | None = None) -> Struct:
        """Define a structure. Fields without an explicit offset follow the previous one, naturally aligned;
        the size defaults to the end of the last field rounded to the largest alignment."""
        laid: dict[str, tuple[int, TypeRef]] = {}
        cursor, widest = 0, 1
        for spec in fields:
            fname, ftype = spec[0], spec[1]
            align = self.alignment(ftype)
            widest = max(widest, align)
            offset = spec[2] if len(spec) == 3 else -(-cursor // align) * align
            laid[fname] = (offset, ftype)
            cursor = max(cursor, offset + self.sizeof(ftype))
        total = size if size is not None else -(-cursor // widest) * widest
        if total < cursor:
            raise ValueError(f"{name}: size {total:#x} smaller than its fields ({cursor:#x})")
        self.structs[name] = Struct(name, total, laid)
        return self.structs[name]

    def define_enum(self, name: str, base_name: str, constants: Mapping[str, int]) -> None:
        """Define an enumeration over an integer base type."""
        self.enums[name] = (base_name, dict(constants))

    # -- sizes ----------------------------------------------------------------------------------------------
    def sizeof(self, t: TypeRef) -> int:
        """Size in bytes of a type descriptor."""
        kind = t["kind"]
        if kind == "base":
            return BASE_TYPES[t["name"]][0]
        if kind == "pointer":
            return 8
        if kind == "struct":
            return self.structs[t["name"]].size
        if kind == "array":
            return int(t["count"]) * self.sizeof(t["subtype"])
        if kind == "bitfield":
            return self.sizeof(t["type"])
        if kind == "enum":
            return BASE_TYPES[self.enums[t["name"]][0]][0]
        raise ValueError(f"unknown type kind {kind!r}")

    def alignment(self, t: TypeRef) -> int:
        kind = t["kind"]
        if kind == "struct":
            fields = self.structs[t["name"]].fields.values()
            return max((self.alignment(ft) for _, ft in fields), default=1)
        if kind == "array":
            return self.alignment(t["subtype"])
        return max(1, min(8, self.sizeof(t)))

    def offset(self, struct_name: str, member: str) -> int:
        """Offset of ``member`` (dotted for nested structures) within ``struct_name``."""
        total, current = 0, struct_name
        for part in member.split("."):
            off, t = self.structs[current].fields[part]
            total += off
            if t["kind"] == "struct":
                current = t["name"]
        return total

    # -- bytes ----------------------------------------------------------------------------------------------
    def pack(self, struct_name: str, values: Mapping[str, Any]) -> bytearray:
        """The bytes of one ``struct_name`` with ``values`` (ints, bytes for arrays, dicts for nested
        structures, lists for arrays of structures or integers); unnamed fields are zero."""
        s = self.structs[struct_name]
        out = bytearray(s.size)
        for name, value in values.items():
            if name not in s.fields:
                raise KeyError(f"{struct_name} has no field {name}")
            off, t = s.fields[name]
            self._put(out, off, t, value)
        return out

    def _put(self, out: bytearray, off: int, t: TypeRef, value: Any) -> None:
        kind = t["kind"]
        if kind in ("base", "pointer", "enum"):
            size = self.sizeof(t)
            signed = kind == "base" and BASE_TYPES[t["name"]][1]
            out[off : off + size] = int(value).to_bytes(size, "little", signed=signed)
        elif kind == "bitfield":
            size = self.sizeof(t)
            old = int.from_bytes(out[off : off + size], "little")
            mask = ((1 << t["bit_length"]) - 1) << t["bit_position"]
            new = (old & ~mask) | ((int(value) << t["bit_position"]) & mask)
            out[off : off + size] = new.to_bytes(size, "little")
        elif kind == "struct":
            data = value if isinstance(value, bytes | bytearray) else self.pack(t["name"], value)
            out[off : off + len(data)] = data
        elif kind == "array":
            if isinstance(value, bytes | bytearray):
                limit = self.sizeof(t)
                out[off : off + min(len(value), limit)] = value[:limit]
            else:
                step = self.sizeof(t["subtype"])
                for i, item in enumerate(value):
                    self._put(out, off + i * step, t["subtype"], item)
        else:
            raise ValueError(f"cannot pack {kind}")

    # -- the ISF --------------------------------------------------------------------------------------------
    def isf(self, metadata: Mapping[str, Any]) -> dict[str, Any]:
        """The table as an ISF document (schema 6.2) with ``metadata``."""
        used = set(BASE_TYPES)  # all of them: plugins ask for base types by name (``unsigned int`` ...)
        return {
            "metadata": dict(metadata),
            "base_types": {
                n: {"kind": BASE_TYPES[n][2], "size": BASE_TYPES[n][0], "signed": BASE_TYPES[n][1], "endian": "little"}
                for n in sorted(used)
            },
            "user_types": {
                s.name: {
                    "kind": "struct",
                    "size": s.size,
                    "fields": {n: {"offset": off, "type": t} for n, (off, t) in s.fields.items()},
                }
                for s in self.structs.values()
            },
            "enums": {
                n: {"size": BASE_TYPES[bn][0], "base": bn, "constants": consts}
                for n, (bn, consts) in self.enums.items()
            },
            "symbols": {n: {"address": a} for n, a in self.symbols.items()},
        }

    def write_isf(self, path: Path, metadata: Mapping[str, Any]) -> Path:
        """Write the ISF xz-compressed (as Volatility's symbol packs hold them) and return its path."""
        path.parent.mkdir(parents=True, exist_ok=True)
        data = json.dumps(self.isf(metadata), sort_keys=True).encode()
        path.write_bytes(lzma.compress(data, preset=6))
        return path


def utf16(text: str) -> bytes:
    """UTF-16LE without terminator (what a ``_UNICODE_STRING`` buffer holds)."""
    return text.encode("utf-16-le")


def u64(value: int) -> bytes:
    """A little-endian 64-bit unsigned integer."""
    return _struct.pack("<Q", value & 0xFFFFFFFFFFFFFFFF)
