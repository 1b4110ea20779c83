"""Tests for the regf hive writer, using regipy as the reading oracle plus a strict layout walk."""

from __future__ import annotations

import logging
import struct
from datetime import UTC, datetime
from pathlib import Path

import pytest
from construct import Container
from regipy.registry import RegistryHive
from regipy.structs import VALUE_KEY
from regipy.utils import convert_wintime

from triage.testing.regf import (
    DEFAULT_TIMESTAMP,
    REG_DWORD,
    REG_EXPAND_SZ,
    REG_QWORD,
    HiveBuilder,
    base_block_checksum,
    filetime,
    name_hash,
)

SETUP = r"Microsoft\ExchangeServer\v15\Setup"
KEY_TS = datetime(2023, 4, 5, 6, 7, 8, 123456, tzinfo=UTC)
BIG_BLOB = bytes((i * 7) & 0xFF for i in range(40_000))
CJK = "漢字テスト"


# -- helpers --------------------------------------------------------------------------------------


def _u32(buf: bytes, offset: int) -> int:
    return struct.unpack_from("<I", buf, offset)[0]


def walk_layout(data: bytes) -> dict[str, int]:
    """Independently parse ``data`` and check every structural rule the writer promises.

    Returns counts of keys, values and bins.  Offsets in the hive are relative to file offset 4096.
    """
    assert data[:4] == b"regf" and len(data) % 4096 == 0
    bins_size = _u32(data, 40)
    assert len(data) == 4096 + bins_size
    cells: dict[int, bytes] = {}  # allocated cell offset -> payload
    pos = 0
    n_bins = 0
    while pos < bins_size:
        assert data[4096 + pos : 4100 + pos] == b"hbin"
        assert _u32(data, 4096 + pos + 4) == pos
        size = _u32(data, 4096 + pos + 8)
        assert size and size % 4096 == 0
        cell = pos + 32
        while cell < pos + size:  # cells tile the bin exactly, never crossing its end
            (cell_size,) = struct.unpack_from("<i", data, 4096 + cell)
            assert cell_size != 0 and abs(cell_size) % 8 == 0
            assert cell + abs(cell_size) <= pos + size
            if cell_size < 0:
                cells[cell] = data[4096 + cell + 4 : 4096 + cell - cell_size]
            cell += abs(cell_size)
        assert cell == pos + size
        pos += size
        n_bins += 1

    def cell_at(offset: int, signature: bytes | None = None) -> bytes:
        assert offset in cells, f"dangling reference to {offset:#x}"
        if signature is not None:
            assert cells[offset][:2] == signature
        return cells[offset]

    root = _u32(data, 36)
    assert root == 32  # the root key is the very first cell (regipy relies on it)
    seen = {"keys": 0, "values": 0, "bins": n_bins}
    sk_offsets = set()

    def walk_key(offset: int, parent: int | None) -> tuple[str, int]:
        nk = cell_at(offset, b"nk")
        flags, _ts, _access, parent_at, n_sub, _, subkeys_at, _, n_values, values_at = struct.unpack_from(
            "<HQ8I", nk, 2
        )
        sk_at, class_at, max_sub_name, max_sub_class, max_value_name, max_value_data = struct.unpack_from("<6I", nk, 44)
        name_len, class_len = struct.unpack_from("<HH", nk, 72)
        name = nk[76 : 76 + name_len].decode("latin-1" if flags & 0x20 else "utf-16-le")
        if parent is None:
            assert flags & 0x0C == 0x0C  # KEY_HIVE_ENTRY | KEY_NO_DELETE
        else:
            assert parent_at == parent and not flags & 0x0C
        sk_offsets.add(sk_at)
        if class_len:
            assert len(cell_at(class_at)) >= class_len
        else:
            assert class_at == 0xFFFFFFFF
        seen["keys"] += 1

        longest_name = longest_data = 0
        if n_values:
            vlist = cell_at(values_at)
            for i in range(n_values):
                vk = cell_at(_u32(vlist, 4 * i), b"vk")
                vname_len, size, data_at, _vtype, vflags = struct.unpack_from("<HIIIH", vk, 2)
                longest_name = max(longest_name, vname_len * (2 if vflags & 1 else 1))
                real = size & 0x7FFFFFFF
                longest_data = max(longest_data, real)
                if size & 0x80000000:
                    assert real <= 4
                elif real > 16344:
                    n_seg, seg_list = struct.unpack_from("<HI", cell_at(data_at, b"db"), 2)
                    segs = cell_at(seg_list)
                    assert n_seg == -(-real // 16344)
                    for j in range(n_seg):
                        assert len(cell_at(_u32(segs, 4 * j))) >= min(16344, real - 16344 * j)
                else:
                    assert len(cell_at(data_at)) >= real
                seen["values"] += 1
        else:
            assert values_at == 0xFFFFFFFF
        assert (max_value_name, max_value_data) == (longest_name, longest_data)

        # subkeys: lh leaves (under an ri root when there are many), sorted, with correct hashes
        children: list[tuple[str, int]] = []
        if n_sub:
            top = cell_at(subkeys_at)
            leaves = [subkeys_at]
            if top[:2] == b"ri":
                count = struct.unpack_from("<H", top, 2)[0]
                leaves = [_u32(top, 4 + 4 * i) for i in range(count)]
                assert count > 1
            for leaf_at in leaves:
                leaf = cell_at(leaf_at, b"lh")
                count = struct.unpack_from("<H", leaf, 2)[0]
                assert 0 < count <= 512
                for i in range(count):
                    child_at, child_hash = struct.unpack_from("<II", leaf, 4 + 8 * i)
                    children.append(walk_key(child_at, offset))
                    assert child_hash == name_hash(children[-1][0])
        else:
            assert subkeys_at == 0xFFFFFFFF
        names = [child for child, _ in children]
        assert len(names) == n_sub
        assert names == sorted(names, key=lambda n: [ord(c.upper()) for c in n])
        assert max_sub_name == max((len(c.encode("utf-16-le")) for c in names), default=0)
        assert max_sub_class == max((length for _, length in children), default=0)
        return name, class_len

    walk_key(root, None)
    assert len(sk_offsets) == 1
    sk = cell_at(next(iter(sk_offsets)), b"sk")
    flink, blink, refs, sd_len = struct.unpack_from("<IIII", sk, 4)
    assert flink == blink and cells[flink] is sk and refs == seen["keys"]
    assert sk[20] == 1 and struct.unpack_from("<H", sk, 22)[0] & 0x8004 == 0x8004 and len(sk) >= 20 + sd_len
    return seen


def open_hive(path: Path, caplog: pytest.LogCaptureFixture) -> RegistryHive:
    """Open with regipy, walk everything, and fail on any warning or error it logs."""
    caplog.set_level(logging.DEBUG, logger="regipy")
    hive = RegistryHive(str(path))
    list(hive.recurse_subkeys())
    problems = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert not problems, problems
    return hive


def raw_vk(hive: RegistryHive, key_path: str, name: str) -> Container:
    """The parsed ``vk`` record of a value, read through regipy's own structures."""
    key = hive.get_key(key_path)
    raw = hive._stream.getvalue()
    for i in range(key.values_count):
        vk_at = _u32(raw, 4096 + 4 + key.header.values_list_offset + 4 * i)
        vk = VALUE_KEY.parse(raw[4096 + 4 + vk_at :])
        if vk.name == name.encode("latin-1"):
            return vk
    raise KeyError(name)


def values_of(hive: RegistryHive, path: str) -> dict[str, object]:
    return {v.name: v.value for v in hive.get_key(path).iter_values(trim_values=False)}


# -- fixtures -------------------------------------------------------------------------------------


def build_sample() -> HiveBuilder:
    b = HiveBuilder(root_name="CMI-CreateHive{TEST}", file_name="sample.hiv")
    b.set_value("Strings", "ascii", "hello")
    b.set_value("Strings", "latin", "Exchange Sérveur")
    b.set_value("Strings", "cjk", CJK)
    b.set_value("Strings", "empty", "")
    b.set_value("Strings", "path", r"%SystemRoot%\system32", REG_EXPAND_SZ)
    b.set_value("Strings", "名前", "unicode value name")
    b.set_value("Strings", "", "the default")
    b.set_value("Numbers", "zero", 0)
    b.set_value("Numbers", "max32", 0xFFFFFFFF)
    b.set_value("Numbers", "big", 1 << 40)
    b.set_value("Numbers", "small_qword", 7, "REG_QWORD")
    b.set_value("Numbers", "negative", -1, REG_DWORD)
    b.set_value("Numbers", "be", 0x01020304, "REG_DWORD_BIG_ENDIAN")
    b.set_value("Binary", "inline", b"\x01\x02\x03")
    b.set_value("Binary", "cell", bytes(range(100)))
    b.set_value("Binary", "nothing", b"")
    b.set_value("Binary", "huge", BIG_BLOB)
    b.set_value("Multi", "list", ["alpha", "béta", CJK])
    b.set_value("Multi", "none", [])
    b.add_key(r"Empty\Really")
    b.add_key("Exchange Sérveur", timestamp=KEY_TS, class_name="SrvClass")
    b.add_key(CJK)
    for i in range(600):
        b.add_key(rf"Wide\Sub{i:04d}")
    return b


@pytest.fixture(scope="module")
def sample_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_sample().write(tmp_path_factory.mktemp("regf") / "sample.hiv")


@pytest.fixture
def hive(sample_path: Path, caplog: pytest.LogCaptureFixture) -> RegistryHive:
    return open_hive(sample_path, caplog)


# -- tests ----------------------------------------------------------------------------------------


def test_layout_is_structurally_valid(sample_path: Path) -> None:
    stats = walk_layout(sample_path.read_bytes())
    # root + Strings, Numbers, Binary, Multi, Empty, Empty\Really, Sérveur, CJK, Wide + 600
    assert stats["keys"] == 1 + 9 + 600
    assert stats["values"] == 19
    assert stats["bins"] > 1


def test_regipy_walks_every_key_without_errors(hive: RegistryHive) -> None:
    subkeys = list(hive.recurse_subkeys())
    assert len(subkeys) == 610
    assert sum(s.values_count for s in subkeys) == 19
    paths = {s.path for s in subkeys}
    assert {"\\", r"\Empty\Really", r"\Wide\Sub0599", rf"\{CJK}"} <= paths
    assert hive.root.name == "CMI-CreateHive{TEST}"


def test_strings(hive: RegistryHive) -> None:
    values = values_of(hive, r"\Strings")
    assert values["ascii"] == "hello"
    assert values["latin"] == "Exchange Sérveur"
    assert values["cjk"] == CJK
    assert values["empty"] == ""
    assert values["path"] == r"%SystemRoot%\system32"
    assert values["名前"] == "unicode value name"
    types = {v.name: v.value_type for v in hive.get_key(r"\Strings").iter_values()}
    assert types["path"] == "REG_EXPAND_SZ" and types["ascii"] == "REG_SZ"


def test_default_value(hive: RegistryHive) -> None:
    key = hive.get_key(r"\Strings")
    assert key.get_value("(default)") == "the default"
    assert key.get_value() == "the default"  # regipy's default argument is the "(default)" name


def test_numbers(hive: RegistryHive) -> None:
    values = values_of(hive, r"\Numbers")
    assert values["zero"] == 0
    assert values["max32"] == 0xFFFFFFFF
    assert values["big"] == 1 << 40
    assert values["small_qword"] == 7
    assert values["negative"] == 0xFFFFFFFF
    types = {v.name: v.value_type for v in hive.get_key(r"\Numbers").iter_values()}
    assert types == {
        "zero": "REG_DWORD",
        "max32": "REG_DWORD",
        "big": "REG_QWORD",
        "small_qword": "REG_QWORD",
        "negative": "REG_DWORD",
        "be": "REG_DWORD_BIG_ENDIAN",
    }
    # regipy does not decode big-endian dwords: check the inline data in the vk offset field
    be = raw_vk(hive, r"\Numbers", "be")
    assert be.data_size == 0x80000004
    assert be.data_offset.to_bytes(4, "little") == b"\x01\x02\x03\x04"


def test_binary_and_big_data(hive: RegistryHive, sample_path: Path) -> None:
    key = hive.get_key(r"\Binary")
    assert key.get_value("inline") == b"\x01\x02\x03"
    assert key.get_value("cell") == bytes(range(100))
    assert key.get_value("nothing") == b""
    assert key.get_value("huge") == BIG_BLOB
    huge = raw_vk(hive, r"\Binary", "huge")
    assert huge.data_size == 40_000  # not inline; points at a big-data record
    raw = sample_path.read_bytes()
    db_at = 4096 + 4 + huge.data_offset
    assert raw[db_at : db_at + 4] == b"db\x03\x00"  # 3 segments of at most 16,344 bytes
    inline = raw_vk(hive, r"\Binary", "inline")
    assert inline.data_size == 0x80000003 and inline.data_offset == 0x030201


def test_multi_sz(hive: RegistryHive) -> None:
    key = hive.get_key(r"\Multi")
    assert key.get_value("list") == ["alpha", "béta", CJK]
    assert key.get_value("none") == []


def test_empty_key(hive: RegistryHive) -> None:
    key = hive.get_key(r"\Empty\Really")
    assert key.subkey_count == 0 and key.values_count == 0
    assert list(key.iter_values()) == []
    assert key.header.subkeys_list_offset == 0xFFFFFFFF
    assert key.header.values_list_offset == 0xFFFFFFFF
    assert hive.get_key(r"\Empty").subkey_count == 1


def test_600_subkeys_use_an_index_root(hive: RegistryHive, sample_path: Path) -> None:
    wide = hive.get_key(r"\Wide")
    names = [k.name for k in wide.iter_subkeys()]
    assert names == [f"Sub{i:04d}" for i in range(600)]
    raw = sample_path.read_bytes()
    list_at = 4096 + wide.header.subkeys_list_offset
    assert raw[list_at + 4 : list_at + 6] == b"ri"
    assert hive.get_key(r"\Wide\Sub0321").name == "Sub0321"


def test_non_ascii_key_names(hive: RegistryHive) -> None:
    cjk = hive.get_key(rf"\{CJK}")
    assert cjk.name == CJK and not cjk.header.flags.KEY_COMP_NAME
    # Latin-1 names are stored compressed (one byte per character) as Windows does; regipy decodes
    # compressed names as ASCII, so read the raw name bytes to check them.
    latin = next(k for k in hive.root.iter_subkeys() if k.header.key_name_string.startswith(b"Exchange"))
    assert latin.header.flags.KEY_COMP_NAME
    assert latin.header.key_name_string.decode("latin-1") == "Exchange Sérveur"
    assert latin.get_class_name() == "SrvClass"
    assert hive.root.header.largest_sk_class_name == len("SrvClass") * 2
    assert hive.root.header.largest_sk_name == len("Exchange Sérveur") * 2


def test_timestamps(hive: RegistryHive) -> None:
    assert hive.header.last_modification_time == filetime(DEFAULT_TIMESTAMP)
    assert convert_wintime(hive.root.header.last_modified) == DEFAULT_TIMESTAMP
    latin = next(k for k in hive.root.iter_subkeys() if k.header.key_name_string.startswith(b"Exchange"))
    assert convert_wintime(latin.header.last_modified) == KEY_TS
    stamps = {s.path: s.timestamp for s in hive.recurse_subkeys(fetch_values=False)}
    assert stamps[r"\Wide\Sub0000"] == datetime(2021, 3, 3, tzinfo=UTC)


def test_filetime() -> None:
    assert filetime(datetime(1601, 1, 1, tzinfo=UTC)) == 0
    assert filetime(datetime(1970, 1, 1, tzinfo=UTC)) == 116_444_736_000_000_000
    assert filetime(datetime(1970, 1, 1)) == 116_444_736_000_000_000  # naive means UTC
    assert filetime(datetime(1970, 1, 1, 0, 0, 0, 1, tzinfo=UTC)) == 116_444_736_000_000_010


def test_name_hash() -> None:
    # hash = hash * 37 + upper-cased UTF-16 code unit, truncated to 32 bits
    assert name_hash("a") == 65
    assert name_hash("ab") == name_hash("AB") == 65 * 37 + 66
    assert name_hash("Setup") == 159_168_641
    assert name_hash("Microsoft") == 2_130_758_950  # wraps around 2**32
    assert name_hash("é") == 0xC9
    assert name_hash("漢字") == 0x6F22 * 37 + 0x5B57
    assert name_hash("\U0001d11e") == 0xD834 * 37 + 0xDD1E  # surrogates are hashed unit by unit


def test_checksum(hive: RegistryHive, sample_path: Path) -> None:
    block = sample_path.read_bytes()[:4096]
    xor = 0
    for (dword,) in struct.iter_unpack("<I", block[:508]):
        xor ^= dword
    assert hive.header.checksum == xor == _u32(block, 508)
    assert base_block_checksum(bytes(4096)) == 1  # special case: 0 is stored as 1
    assert base_block_checksum(b"\xff\xff\xff\xff" + bytes(4092)) == 0xFFFFFFFE


def test_dirty_flag(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    builder = build_sample()
    clean = builder.to_bytes()
    dirty_path = builder.write(tmp_path / "dirty.hiv", dirty=True)
    dirty = dirty_path.read_bytes()
    hive = open_hive(dirty_path, caplog)
    assert hive.header.primary_sequence_num != hive.header.secondary_sequence_num
    assert _u32(clean, 4) == _u32(clean, 8)
    assert dirty[4096:] == clean[4096:]  # only the base block differs
    assert _u32(dirty, 508) == base_block_checksum(dirty[:4096])


def test_deterministic_output() -> None:
    assert build_sample().to_bytes() == build_sample().to_bytes()
    other = HiveBuilder(timestamp=datetime(2022, 1, 1, tzinfo=UTC))
    assert other.to_bytes() != HiveBuilder().to_bytes()


def test_keys_and_values_are_case_insensitive(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    b = HiveBuilder()
    b.set_value(r"Software\Vendor", "Name", "first")
    b.set_value(r"SOFTWARE\vendor", "NAME", "second")
    hive = open_hive(b.write(tmp_path / "case.hiv"), caplog)
    assert [k.name for k in hive.root.iter_subkeys()] == ["Software"]
    assert values_of(hive, r"\Software\Vendor") == {"NAME": "second"}


def test_invalid_input_is_rejected(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    b = HiveBuilder()
    with pytest.raises(ValueError):
        b.add_key(r"A\\B")
    with pytest.raises(ValueError):
        b.add_key("x" * 256)  # key names are limited to 255 characters
    with pytest.raises(TypeError):
        b.set_value("A", "x", 5, "REG_SZ")
    with pytest.raises(ValueError):
        b.set_value("A", "x", 1, "REG_NOPE")
    with pytest.raises(ValueError):
        b.set_value("A", "x", 1 << 32, REG_DWORD)
    with pytest.raises(TypeError):
        b.set_value("A", "x", 1.5)
    b.set_value("A", "q", 5, "qword")  # type names work with or without the REG_ prefix
    hive = open_hive(b.write(tmp_path / "types.hiv"), caplog)
    assert [(v.name, v.value, v.value_type) for v in hive.get_key(r"\A").iter_values()] == [("q", 5, "REG_QWORD")]


def test_realistic_software_hive(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    b = HiveBuilder(file_name=r"\SystemRoot\System32\Config\SOFTWARE")
    b.set_value(SETUP, "MsiInstallPath", "D:\\Apps\\Exchange\\V15\\")
    b.set_value(SETUP, "MsiProductMajor", 15)
    b.set_value(SETUP, "MsiProductMinor", 1)
    b.set_value(SETUP, "MsiBuildMajor", 2176)
    b.set_value(SETUP, "MsiBuildMinor", 2)
    b.set_value(r"Microsoft\Windows NT\CurrentVersion", "ProductName", "Windows Server 2019 Standard")
    b.set_value(r"Microsoft\Windows NT\CurrentVersion", "InstallDate", 1614729600, REG_DWORD)
    path = b.write(tmp_path / "SOFTWARE")
    walk_layout(path.read_bytes())
    hive = open_hive(path, caplog)
    assert hive.hive_type == "software"  # identified from the file name kept in the base block
    setup = hive.get_key(r"\Microsoft\ExchangeServer\v15\Setup")
    assert setup.get_value("MsiInstallPath") == "D:\\Apps\\Exchange\\V15\\"
    assert setup.get_value("MsiProductMajor") == 15
    assert setup.get_value("MsiProductMinor") == 1
    assert setup.get_value("MsiBuildMajor") == 2176
    assert setup.get_value("MsiBuildMinor") == 2
    version = ".".join(str(setup.get_value(n)) for n in ("MsiProductMajor", "MsiProductMinor"))
    assert version == "15.1"
    current = hive.get_key(r"\Microsoft\Windows NT\CurrentVersion")
    assert current.get_value("ProductName") == "Windows Server 2019 Standard"
    assert len(list(hive.recurse_subkeys())) == 7


def test_realistic_system_hive(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    from regipy.plugins.system.computer_name import ComputerNamePlugin

    b = HiveBuilder(file_name="SYSTEM")
    b.set_value("Select", "Current", 1)
    b.set_value("Select", "Default", 1)
    b.set_value("Select", "LastKnownGood", 1)
    b.set_value(r"ControlSet001\Control\ComputerName\ComputerName", "ComputerName", "EXCH01")
    b.set_value(r"ControlSet001\Services\MSExchangeIS", "Start", 2)
    b.set_value(r"ControlSet001\Services\MSExchangeIS", "ImagePath", r"D:\Apps\Exchange\V15\Bin\x.exe", 2)
    path = b.write(tmp_path / "SYSTEM")
    walk_layout(path.read_bytes())
    hive = open_hive(path, caplog)
    assert hive.hive_type == "system"
    assert hive.get_key(r"\Select").get_value("Current") == 1
    name_key = hive.get_key(r"\ControlSet001\Control\ComputerName\ComputerName")
    assert name_key.get_value("ComputerName") == "EXCH01"
    plugin = ComputerNamePlugin(hive, as_json=False)
    plugin.run()
    assert [entry["name"] for entry in plugin.entries] == ["EXCH01"]
    image = hive.get_key(r"\ControlSet001\Services\MSExchangeIS").get_values()
    assert {v.name: v.value_type for v in image}["ImagePath"] == "REG_EXPAND_SZ"


def test_qword_constant_roundtrip(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    b = HiveBuilder()
    b.set_value("K", "q", 0xFFFFFFFFFFFFFFFF, REG_QWORD)
    hive = open_hive(b.write(tmp_path / "q.hiv"), caplog)
    assert hive.get_key(r"\K").get_value("q") == 0xFFFFFFFFFFFFFFFF
