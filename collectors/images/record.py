"""Verification and custody record of an image source: the media hashed and compared with what the
format stores, the failing EWF chunks named, and what the custody log and the manifest keep.
"""

from __future__ import annotations

import logging
import os
import struct
import zlib
from collections.abc import Callable
from typing import Any, BinaryIO, cast

from collectors.collect import COLLECTOR, COLLECTOR_VERSION, CollectStats
from collectors.hostinfo import computer_name
from collectors.images.container import DiskImage
from collectors.images.disk import DiskReader
from collectors.sources import Source
from triage.case import Case, safe_host
from triage.formats.ewf import table_chunks
from triage.hashing import copy_hashing, open_source

log = logging.getLogger(__name__)

# -- EWF chunk checks (what pyewf does not expose: which chunk failed its checksum) -------------------------
MAX_BAD_CHUNKS = 100


def ewf_bad_chunks(image: DiskImage) -> list[dict[str, Any]] | None:
    """Chunks of an E01 whose stored data fails its check (Adler-32, or the zlib stream of a compressed chunk).

    Names the sectors an examiner should look at after a hash mismatch, as ewfverify does. None when the
    segments are not laid out the way this reader understands (the media hash still stands).
    """
    handle = getattr(image.disk, "handle", None)
    if image.format != "ewf" or handle is None:
        return None
    chunk_size = int(handle.chunk_size)
    per_chunk = int(handle.sectors_per_chunk)
    bad: list[dict[str, Any]] = []
    number = 0
    for seg in image.segments:
        with open_source(seg) as fh:
            fd = fh.fileno()
            chunks = table_chunks(fd, os.fstat(fd).st_size)
            if chunks is None:
                return None
            for offset, size, compressed in chunks:
                data = os.pread(fd, max(0, size), offset)
                ok = len(data) == size
                if ok and compressed:
                    try:
                        ok = len(zlib.decompressobj().decompress(data, chunk_size + 1)) <= chunk_size
                    except zlib.error:
                        ok = False
                elif ok:
                    ok = size >= 4 and zlib.adler32(data[:-4]) == struct.unpack_from("<I", data, size - 4)[0]
                if not ok and len(bad) < MAX_BAD_CHUNKS:
                    first = number * per_chunk
                    bad.append(
                        {
                            "chunk": number,
                            "sectors": f"{first}-{first + per_chunk - 1}",
                            "media_offset": number * chunk_size,
                            "segment": os.path.basename(seg),
                        }
                    )
                number += 1
    return bad


# -- verification -------------------------------------------------------------------------------------
def verify_media(image: DiskImage, progress: Callable[[int], None] | None = None) -> dict[str, Any]:
    """Hash the whole media stream and compare with the hashes the format stores (E01: MD5, SHA1).

    Returns the record kept in the custody log: computed and stored hashes, ``status`` 'verified',
    'mismatch', 'computed' (nothing stored to compare with) or 'error' (a read failed: ``error``).
    """
    algos = ["sha256", *[a for a in ("md5", "sha1") if a in image.stored_hashes]]
    record: dict[str, Any] = {"image": image.path, "format": image.format, "media_size": image.disk.size}
    record["stored"] = dict(image.stored_hashes)
    try:
        size, digests = copy_hashing(cast(BinaryIO, DiskReader(image.disk)), None, algos, progress, image.disk.size)
    except OSError as exc:
        record.update(status="error", error=str(exc))
        return record
    record["computed"] = digests
    record["bytes"] = size
    if size != image.disk.size:
        record.update(status="error", error=f"media stream ended after {size} of {image.disk.size} bytes")
        return record
    compared = {a: digests[a] == image.stored_hashes[a] for a in algos if a in image.stored_hashes}
    record["matches"] = compared
    record["status"] = ("verified" if all(compared.values()) else "mismatch") if compared else "computed"
    if record["status"] == "mismatch" and image.format == "ewf":
        # libewf zero-fills a chunk that fails its checksum and pyewf does not say which: find it ourselves
        try:
            record["bad_chunks"] = ewf_bad_chunks(image)
        except OSError as exc:
            record["bad_chunks_error"] = str(exc)
    return record


def record_image(
    case: Case,
    source: Source,
    *,
    host: str | None,
    verify: bool,
    stats: CollectStats,
    progress: Callable[[int], None] | None = None,
) -> dict[str, Any]:
    """Custody and collection record of an image source: its files, partitions, volumes and verification.

    A hash mismatch or an unreadable media stream is a loud warning and a failure row; the collection goes on.
    """
    image = source.image
    if image is None:
        raise ValueError(f"{source.location}: not a disk image source")
    record = image.describe()
    record["partitions"] = source.partitions
    case.custody.append("image_open", **record)
    if verify:
        log.info("verifying %s (%s, %s bytes)", image.path, image.format_name, f"{image.disk.size:,}")
        result = verify_media(image, progress)
    else:
        result = {"image": image.path, "status": "skipped", "reason": "--no-verify-image"}
    case.custody.append("image_verify", **result)
    summary = {"image": image.path, "format": image.format, "verification": result["status"]}
    summary.update({k: result[k] for k in ("computed", "stored", "error") if result.get(k)})
    stats.images.append(summary)
    if result["status"] in ("mismatch", "error"):
        sysroot = next((r for r in source.drives.values() if r.child("Windows") is not None), None)
        who = safe_host(host or (computer_name(sysroot) if sysroot is not None else None) or "unknown-host")
        if result["status"] == "mismatch":
            bad = ", ".join(
                f"{a} computed {result['computed'][a]} but the image stores {result['stored'][a]}"
                for a, ok in result["matches"].items()
                if not ok
            )
            details = f"IMAGE HASH MISMATCH: {bad}; the image is not what was acquired (collected anyway)"
            chunks = result.get("bad_chunks")
            if chunks:
                where = ", ".join(f"sectors {c['sectors']} ({c['segment']})" for c in chunks[:5])
                details += f"; {len(chunks)} chunk(s) fail their checksum and read as zeros: {where}"
        else:
            details = f"image media stream could not be verified: {result['error']} (collected anyway)"
        log.warning("%s: %s", image.path, details)
        stats.add(
            case.record_attempt(
                host=who,
                kind="disk_image",
                outcome="failure",
                source_path=image.path,
                collector=COLLECTOR,
                collector_version=COLLECTOR_VERSION,
                details=details,
                source_type=source.source_type,
                family="image_verification",
            )
        )
    return result
