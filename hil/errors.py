"""Errors that end a command, each with the exit code documented in the README."""

from __future__ import annotations

# Exit codes, the same for every hil command.
EXIT_PASS = 0
EXIT_REGRESSION = 1  # a regression or a device/host mismatch
EXIT_INFRASTRUCTURE = 2  # a board, probe or emulator failed
EXIT_BAD_INPUT = 3  # a lab file, model, firmware, test set or run directory is missing or wrong
EXIT_RESULTS_DISK = 4  # the results folder cannot be written: full, read-only, no permission, I/O error
# The command line itself is wrong (an unknown command or option, a missing argument). Not 2, which
# says "infrastructure", and not 4, taken above: 64 is EX_USAGE of sysexits.h, which other tools use too.
EXIT_USAGE = 64
EXIT_INTERRUPTED = 130  # Ctrl-C or SIGTERM

# What each code means, in one line: `hil --help` shows these (README's table says more).
EXIT_CODES: dict[int, str] = {
    EXIT_PASS: "pass",
    EXIT_REGRESSION: "a regression, or a device answer that differs from the host reference",
    EXIT_INFRASTRUCTURE: "infrastructure failure: a board, probe, emulator or measurement unit",
    EXIT_BAD_INPUT: "bad input: a lab file, model, firmware, test set or run directory",
    EXIT_RESULTS_DISK: "the results folder cannot be written (full, read-only, I/O error)",
    EXIT_USAGE: "usage error: an unknown command or option, or a missing or wrong argument",
    EXIT_INTERRUPTED: "interrupted (Ctrl-C or SIGTERM); `hil run --resume` goes on",
}


class HilError(Exception):
    """A failure reported to the user as one line, with a documented exit code."""

    exit_code = EXIT_INFRASTRUCTURE


class BadInput(HilError):
    """Something the user gave us is missing or wrong: the message names the file and what to do."""

    exit_code = EXIT_BAD_INPUT


class ResultsUnwritable(HilError):
    """A results file could not be written (or read back): the disk, not a board. It ends the
    run for every board at once; what was journaled before stays on disk."""

    exit_code = EXIT_RESULTS_DISK


class UsageError(HilError):
    """The command line is wrong (options that go together, an argument missing): nothing was started."""

    exit_code = EXIT_USAGE


class Interrupted(KeyboardInterrupt):
    """Ctrl-C or SIGTERM ended a command once it had made something to go on with: the message says what
    and how (exit code 130). A KeyboardInterrupt, so that everything on the way out treats it as one."""

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message
