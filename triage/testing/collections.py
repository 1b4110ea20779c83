"""Builders of the containers collection tools really produce, for tests: KAPE ``--zip`` and ``--vhdx``/``--vhd``
outputs, zips of a volume, encrypted Velociraptor collections, nested containers, zip bombs and damaged zips.

Every builder starts from a folder tree (e.g. :func:`triage.testing.volume.build_volume`), so a test can compare
what a collection of the container stores with what the folder collection stores.
"""

from __future__ import annotations

import base64
import io
import os
import secrets
import struct
import tempfile
import zipfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

from triage.testing.volume import T0, to_kape, to_velociraptor

ZIP_TIME = (2021, 3, 4, 10, 0, 0)


def zip_tree(
    tree: str | os.PathLike[str],
    out: str | os.PathLike[str],
    *,
    prefix: str = "",
    date_time: tuple[int, int, int, int, int, int] | None = ZIP_TIME,
) -> Path:
    """Zip every file under ``tree`` (names relative to it, under ``prefix``), deflated, as ``zip -r`` does.

    Members get ``date_time``, or with ``None`` each file's own modification time (UTC, in even seconds as the zip
    format stores them), which is how a zip of a volume records the volume's file times.
    """
    tree, out = Path(tree), Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as zf:
        for path in sorted(tree.rglob("*")):
            if path.is_file() and not path.is_symlink():
                name = prefix + path.relative_to(tree).as_posix()
                when = date_time or datetime.fromtimestamp(path.stat().st_mtime, UTC).timetuple()[:6]
                zf.writestr(zipfile.ZipInfo(name, date_time=when), path.read_bytes(), zipfile.ZIP_DEFLATED)
    return out


def kape_zip(volume: str | os.PathLike[str], out: str | os.PathLike[str], *, drive: str = "C") -> Path:
    """A KAPE ``--zip`` container: the tdest tree (``C/...`` and the copy log) in one zip."""
    with tempfile.TemporaryDirectory(prefix="triage-kape-") as tmp:
        tdest = to_kape(volume, Path(tmp) / "tdest", drive=drive)
        return zip_tree(tdest, out)


def kape_image(
    volume: str | os.PathLike[str],
    out: str | os.PathLike[str],
    *,
    fmt: Literal["vhdx", "vhd"] = "vhdx",
    drive: str = "C",
) -> Path:
    """A KAPE ``--vhdx``/``--vhd`` container: an NTFS virtual disk whose volume holds the tdest tree (``C/...``).

    Needs the disk image tools (see :func:`triage.testing.diskimage.tools_missing`).
    """
    from triage.testing.diskimage import build_image

    out = Path(out)
    with tempfile.TemporaryDirectory(prefix="triage-kape-") as tmp:
        tdest = to_kape(volume, Path(tmp) / "tdest", drive=drive)
        paths, _ = build_image([tdest], out, fmt, work=Path(tmp))
    return paths[0]


def velociraptor_zip_bytes(volume: str | os.PathLike[str], *, hostname: str = "EXCH01") -> bytes:
    """An unencrypted Velociraptor collection zip of ``volume`` (what ``data.zip`` holds)."""
    with tempfile.TemporaryDirectory(prefix="triage-vr-") as tmp:
        path = to_velociraptor(volume, Path(tmp) / "vr.zip", as_zip=True, hostname=hostname)
        return path.read_bytes()


def rsa_key_pair(path: str | os.PathLike[str], bits: int = 2048) -> tuple[Path, object]:
    """A fresh RSA private key written as unencrypted PEM to ``path``; returns (path, public key)."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=bits)
    path = Path(path)
    path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return path, key.public_key()


def encrypted_velociraptor(
    volume: str | os.PathLike[str],
    out: str | os.PathLike[str],
    *,
    password: str | None = None,
    public_key: object | None = None,
    hostname: str = "EXCH01",
    created: datetime = T0,
) -> Path:
    """An encrypted Velociraptor offline collection: outer zip of ``metadata.json`` and an AES-256 ``data.zip``.

    Password scheme: ``password`` encrypts ``data.zip``. X.509 scheme (``public_key`` given): a random password
    encrypts ``data.zip`` and is itself encrypted with the key (RSA-OAEP, SHA-512), base64 in the metadata.
    """
    import pyzipper

    if (password is None) == (public_key is None):
        raise ValueError("give exactly one of password (password scheme) or public_key (X.509 scheme)")
    meta: dict[str, object] = {"hostname": hostname, "created": created.isoformat(), "version": "0.7.0"}
    if public_key is not None:
        from cryptography.hazmat.primitives import hashes
        from cryptography.hazmat.primitives.asymmetric import padding

        password = secrets.token_urlsafe(24)
        blob = public_key.encrypt(  # type: ignore[attr-defined]
            password.encode(),
            padding.OAEP(mgf=padding.MGF1(algorithm=hashes.SHA512()), algorithm=hashes.SHA512(), label=None),
        )
        meta |= {"Scheme": "X509", "EncryptedPass": base64.b64encode(blob).decode()}
    else:
        meta |= {"Scheme": "Password"}
    import json

    data = velociraptor_zip_bytes(volume, hostname=hostname)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    with pyzipper.AESZipFile(out, "w", compression=pyzipper.ZIP_STORED) as zf:
        zf.writestr("metadata.json", json.dumps([meta]).encode())
        assert password is not None
        zf.setpassword(password.encode())
        zf.setencryption(pyzipper.WZ_AES, nbits=256)
        zf.writestr("data.zip", data)
    return out


def nested_zip(inner: str | os.PathLike[str], out: str | os.PathLike[str], *, depth: int = 1, name: str = "") -> Path:
    """``inner`` wrapped in ``depth`` more zips (stored, so the nested streams stay seekable and cheap)."""
    data = Path(inner).read_bytes()
    member = name or Path(inner).name
    for level in range(depth):
        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w", zipfile.ZIP_STORED) as zf:
            zf.writestr(zipfile.ZipInfo(member, date_time=ZIP_TIME), data)
        data = buf.getvalue()
        member = f"level{depth - level}.zip"
    out = Path(out)
    out.write_bytes(data)
    return out


def zip_bomb(out: str | os.PathLike[str], *, member_bytes: int = 64 << 20, members: int = 1) -> Path:
    """A zip whose members are ``member_bytes`` of zeros each (deflate: about 1000:1)."""
    out = Path(out)
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as zf:
        for i in range(members):
            info = zipfile.ZipInfo(f"bomb{i}.bin", date_time=ZIP_TIME)
            info.compress_type = zipfile.ZIP_DEFLATED
            with zf.open(info, "w", force_zip64=True) as fh:
                chunk = bytes(1 << 20)
                left = member_bytes
                while left > 0:
                    fh.write(chunk[: min(left, len(chunk))])
                    left -= len(chunk)
    return out


def many_member_zip(out: str | os.PathLike[str], members: int, *, prefix: str = "C/Users/Public/many/") -> Path:
    """A zip of ``members`` tiny stored members (a 200k-member zip builds in a few seconds)."""
    out = Path(out)
    with zipfile.ZipFile(out, "w", zipfile.ZIP_STORED) as zf:
        for i in range(members):
            zf.writestr(zipfile.ZipInfo(f"{prefix}f{i:07d}.txt", date_time=ZIP_TIME), b"x")
    return out


# -- damaged zips -------------------------------------------------------------------------------------------------
Damage = Literal["bad_crc", "bad_magic", "truncated_header", "name_mismatch"]


def damage_member(path: str | os.PathLike[str], member: str, how: Damage) -> Path:
    """Damage one member of a zip in place, leaving the central directory (and so the other members) readable.

    ``bad_crc``: the recorded CRC no longer matches its data; ``bad_magic``: its local header signature overwritten;
    ``truncated_header``: its central directory entry points past the end of the archive's local data;
    ``name_mismatch``: the name in its local header differs from the central directory's.
    """
    path = Path(path)
    data = bytearray(path.read_bytes())
    with zipfile.ZipFile(io.BytesIO(bytes(data))) as zf:
        info = zf.getinfo(member)
    off = info.header_offset
    if data[off : off + 4] != b"PK\x03\x04":
        raise ValueError(f"{member}: no local header at {off}")
    if how == "bad_crc":  # the data no longer matches the CRC both headers record
        wrong = (info.CRC ^ 0x5A5A5A5A) & 0xFFFFFFFF
        struct.pack_into("<I", data, off + 14, wrong)
        _patch_central_crc(data, member, wrong)
    elif how == "bad_magic":
        data[off : off + 4] = b"XX\x03\x04"
    elif how == "name_mismatch":
        data[off + 30] = ord("Z") if data[off + 30] != ord("Z") else ord("Y")
    elif how == "truncated_header":
        _patch_central_offset(data, member, len(data) - 10)
    else:  # pragma: no cover - Literal
        raise ValueError(how)
    path.write_bytes(bytes(data))
    return path


def _central_entries(data: bytearray) -> list[tuple[int, str]]:
    eocd = bytes(data).rfind(b"PK\x05\x06")
    (count,) = struct.unpack_from("<H", data, eocd + 10)
    (cd_off,) = struct.unpack_from("<I", data, eocd + 16)
    out = []
    pos = cd_off
    for _ in range(count):
        name_len, extra_len, comment_len = struct.unpack_from("<HHH", data, pos + 28)
        name = bytes(data[pos + 46 : pos + 46 + name_len]).decode("utf-8", "replace")
        out.append((pos, name))
        pos += 46 + name_len + extra_len + comment_len
    return out


def _patch_central_crc(data: bytearray, member: str, crc: int) -> None:
    for pos, name in _central_entries(data):
        if name == member:
            struct.pack_into("<I", data, pos + 16, crc)


def _patch_central_offset(data: bytearray, member: str, offset: int) -> None:
    for pos, name in _central_entries(data):
        if name == member:
            struct.pack_into("<I", data, pos + 42, offset)


def zip_with_duplicates(out: str | os.PathLike[str], name: str, contents: list[bytes]) -> Path:
    """A zip holding several members of the same ``name`` (zipfile warns; real tools write such archives)."""
    import warnings

    out = Path(out)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as zf:
            for data in contents:
                zf.writestr(zipfile.ZipInfo(name, date_time=ZIP_TIME), data)
    return out
