"""Errors that end a command, each with the exit code documented in the README."""

from __future__ import annotations

# Exit codes, the same for every hil command.
EXIT_PASS = 0
EXIT_REGRESSION = 1  # a regression or a device/host mismatch
EXIT_INFRASTRUCTURE = 2  # a board, probe or emulator failed
EXIT_BAD_INPUT = 3  # a lab file, model, firmware, test set or run directory is missing or wrong
EXIT_RESULTS_DISK = 4  # the results folder cannot be written: full, read-only, no permission, I/O error


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
