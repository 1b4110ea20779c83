"""Exit codes and the exceptions that map onto them."""

from __future__ import annotations

from enum import IntEnum


class ExitCode(IntEnum):
    """Named process exit codes of the ``triage`` command."""

    OK = 0
    FINDINGS = 1  # findings at or above --fail-on
    USAGE = 2  # bad arguments, unknown source, missing case
    INTEGRITY = 3  # verify found changed/missing evidence or a broken custody chain
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


class Skip(Exception):
    """Raised by an analyzer unit that has nothing to do for this evidence (with a reason)."""
