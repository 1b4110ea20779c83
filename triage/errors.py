"""Exit codes and the exceptions that map onto them."""

from __future__ import annotations

from enum import IntEnum


class ExitCode(IntEnum):
    """Named process exit codes of the ``triage`` command."""

    OK = 0
    FINDINGS = 1  # findings at or above --fail-on
    USAGE = 2  # bad arguments, unknown source, missing case
    INTEGRITY = 3  # verify found changed/missing evidence or a broken custody chain
    INSUFFICIENT = 4  # a source yielded nothing examinable, or a verdict lacks the evidence it needs
    COLLECTION_FAILED = 5  # collection wrote or read some artifacts unsuccessfully (count in the summary)
    INCOMPLETE = 6  # verify: a collection never finished (no collect_end), or a run was interrupted
    INTERRUPTED = 130  # Ctrl-C: stopped promptly, the case is left resumable
    INTERNAL = 70  # a bug (EX_SOFTWARE)


class TriageError(Exception):
    """Base class for errors with a clear message for the analyst."""

    exit_code: ExitCode = ExitCode.INTERNAL


class UsageError(TriageError):
    """The command line or its inputs cannot be used as given."""

    exit_code = ExitCode.USAGE


class IntegrityError(TriageError):
    """Evidence or the custody chain does not verify."""

    exit_code = ExitCode.INTEGRITY


class InsufficientEvidence(TriageError):
    """Nothing examinable was read from the sources, or the evidence a verdict needs is missing."""

    exit_code = ExitCode.INSUFFICIENT


class Incomplete(TriageError):
    """A command on the case never finished (killed): rerun it before sealing or exporting."""

    exit_code = ExitCode.INCOMPLETE


class CollectionFailed(TriageError):
    """Some artifacts could not be collected (write error, full disk, unreadable source)."""

    exit_code = ExitCode.COLLECTION_FAILED


class Skip(Exception):
    """Raised by an analyzer unit that has nothing to do for this evidence (with a reason)."""
