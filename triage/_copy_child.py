"""The copy helper process: copies small files into the case while hashing them, for :mod:`triage.copyhelper`.

Run as ``python -I -S _copy_child.py`` (standard library only, no ``triage`` import: it starts in ~20 ms). It reads
framed requests on stdin and answers each on stdout in the order asked; the parent writes the manifest rows and
custody events. Each copy is what :meth:`triage.case.Case.store` does in its own process, call for call: the copy
is created exclusively and read-only under its final name (``name~2.ext`` ... when taken), the source is opened
read-only without following links or touching its access time, every byte read is hashed and written, then the
copy gets the source's times on its open descriptor. A copy that fails is removed again and the answer says why,
in the words ``store`` would have used. The process dies with its parent (``PR_SET_PDEATHSIG``), so a killed
collect leaves no writer behind: only copies without rows, which the next collect's ``recover`` removes.

Frames both ways: 4 bytes little-endian length, then ``marshal`` of a list of tuples (see ``triage.copyhelper``).
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import marshal
import os
import signal
import sys

CHUNK = 1 << 20  # as triage.hashing.CHUNK
SMALL_READ = 1 << 16  # as triage.hashing.SMALL_READ
READ_ONLY = 0o444
CREATE_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
SOURCE_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC
CTORS = {"md5": hashlib.md5, "sha1": hashlib.sha1, "sha256": hashlib.sha256}
_MASKED = [True]  # the umask takes read bits off a new file: each copy then gets its mode set (read in main)
_noatime = [getattr(os, "O_NOATIME", 0)]  # dropped after the first EPERM (not the owner): as open_readonly does


def _die_with_parent() -> None:
    try:
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):  # not Linux: the closed request pipe ends this process instead
        pass


def _open_source(path: str) -> int:
    if _noatime[0]:
        try:
            return os.open(path, SOURCE_FLAGS | _noatime[0])
        except OSError as exc:
            if exc.errno not in (errno.EPERM, errno.EINVAL):
                raise
    return os.open(path, SOURCE_FLAGS)


def _create(folder: str, name: str) -> tuple[int, str]:
    """Create ``folder/name`` (or ``stem~N.ext``) exclusively and read-only, as ``Case._create`` names it."""
    # pathlib's stem and suffix of the name, as Case._create forms name~2.ext
    dot = name.rfind(".")
    stem, suffix = (name[:dot], name[dot:]) if 0 < dot < len(name) - 1 else (name, "")
    cand, n, remade = name, 1, 0
    while True:
        try:
            return os.open(f"{folder}/{cand}", CREATE_FLAGS, READ_ONLY), cand
        except FileExistsError:  # a file, a folder or a dangling symlink: never written through
            n += 1
            cand = f"{stem}~{n}{suffix}"
        except FileNotFoundError:  # the folder went away since it was made (an empty one pruned): make it again
            remade += 1
            if remade > 3:
                raise
            os.makedirs(folder, exist_ok=True)


def copy_one(req: tuple) -> tuple:
    """One request ``(ticket, source, folder, name, atime, mtime, size_hint, algos)``; the answer
    ``(ticket, name, size, digests, error)``, ``error`` None or ``(case_side, type name, text, strerror)``."""
    ticket, source, folder, name, atime, mtime, hint, algos = req
    created: str | None = None
    case_side = True  # until the source is opened, an error is the case's (as in Case.store)
    try:
        fd, name = _create(folder, name)
        created = f"{folder}/{name}"
        try:
            case_side = False
            src = _open_source(source)
            try:
                hashers = [CTORS[a]() if a in CTORS else hashlib.new(a) for a in algos]
                want = CHUNK if hint is None else min(CHUNK, max(hint + 1, SMALL_READ))
                size = 0
                while True:
                    data = os.read(src, want)
                    if not data:
                        break
                    for h in hashers:
                        h.update(data)
                    case_side = True
                    view = memoryview(data)
                    while view:
                        view = view[os.write(fd, view) :]
                    case_side = False
                    size += len(data)
            finally:
                os.close(src)
            case_side = True
            if _MASKED[0]:
                os.fchmod(fd, READ_ONLY)  # exact, whatever the umask (created 0444 as it is when nothing is masked)
            if mtime is not None:
                os.utime(fd, (atime if atime is not None else mtime, mtime))
        finally:
            os.close(fd)
        return ticket, name, size, {a: h.hexdigest() for a, h in zip(algos, hashers, strict=True)}, None
    except (OSError, ValueError) as exc:
        if created is not None:
            with contextlib.suppress(OSError):
                os.unlink(created)
        strerror = exc.strerror if isinstance(exc, OSError) else None
        return ticket, name, 0, {}, (case_side, type(exc).__name__, str(exc), strerror)


def _read_exact(fd: int, n: int) -> bytes:
    parts = []
    while n:
        chunk = os.read(fd, n)
        if not chunk:
            return b""
        parts.append(chunk)
        n -= len(chunk)
    return b"".join(parts)


def main() -> int:
    _die_with_parent()
    mask = os.umask(0o022)
    os.umask(mask)
    _MASKED[0] = bool(mask & READ_ONLY)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle; it closes the pipe
    fin, fout = sys.stdin.fileno(), sys.stdout.fileno()
    while True:
        head = _read_exact(fin, 4)
        if not head:
            return 0  # the parent closed the pipe (done, or gone)
        body = _read_exact(fin, int.from_bytes(head, "little"))
        answers = marshal.dumps([copy_one(req) for req in marshal.loads(body)])
        view = memoryview(len(answers).to_bytes(4, "little") + answers)
        while view:
            view = view[os.write(fout, view) :]


if __name__ == "__main__":
    sys.exit(main())
