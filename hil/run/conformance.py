"""Kernel conformance on a board: the suite's vectors streamed through its kernels, each output against the
host reference's (hil/firmware/conformance.py).

The test sets reach only the corners of the kernels their inputs happen to reach; the suite is built to reach
every rounding and saturation corner. It runs in every board's health check (hil/run/health.py), before the
board streams. A differing output is a finding about the image (its sources, compiler, flags), as a differing
test-set answer is: the run fails (exit 1) and the verdict names the kernel, the vector and its first differing
element; the board still streams, since its test-set answers are to be judged too. A board that does not answer
a vector fails its health check as it would for the known answer. CONFORMANCE requests raise no busy window, so
neither the journal nor the metering sees them.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from hil.firmware.conformance import Suite, Vector
from hil.hw import protocol
from hil.hw.board import Board
from hil.model.reference import DEFAULT_REFERENCE, Reference
from hil.run.rack import answered


@dataclass(frozen=True)
class Mismatch:
    """The first vector whose output differs, and where: `index` the first differing element (or the length the
    shorter output has, with None for the missing value)."""

    vector: Vector
    index: int
    device: int | None
    expected: int | None
    differing_vectors: int  # of the suite, this one included


@dataclass(frozen=True)
class Conformance:
    """One board's run of the suite."""

    slot: str
    suite_sha256: str
    vectors: int
    reference: Reference  # whose expected outputs it was held to
    mismatch: Mismatch | None
    seconds: float

    @property
    def line(self) -> str:
        """The verdict's line for a board that differs; 'conforms' otherwise."""
        m = self.mismatch
        if m is None:
            return f"{self.slot}: conforms on all {self.vectors} kernel conformance vectors"
        return (f"{self.slot}: kernel {m.vector.kernel.name} differs from the host reference ({self.reference}) on "
                f"conformance vector {m.vector.name} ({m.vector.corner}): element {m.index} is {_shown(m.device)} "
                f"on the device, {_shown(m.expected)} expected; {m.differing_vectors} of {self.vectors} vectors differ "
                f"(suite {self.suite_sha256[:12]}…)")


def _shown(value: int | None) -> str:
    return "missing" if value is None else str(value)


def _int8(data: bytes) -> list[int]:
    return [b - 256 if b > 127 else b for b in data]


def first_difference(device: bytes, expected: bytes) -> tuple[int, int | None, int | None] | None:
    """(index, device value, expected value) of the first int8 element that differs, or None if equal."""
    got, want = _int8(device), _int8(expected)
    for index, (a, b) in enumerate(zip(got, want)):
        if a != b:
            return index, a, b
    if len(got) != len(want):
        index = min(len(got), len(want))
        return index, got[index] if index < len(got) else None, want[index] if index < len(want) else None
    return None


def run_suite(board: Board, suite: Suite, retries: int, reference: Reference = DEFAULT_REFERENCE) -> Conformance:
    """Every vector of `suite` on `board`, retried like every request, against `reference`'s expected outputs;
    BoardError when one goes unanswered."""
    began = time.monotonic()
    first: tuple[Vector, tuple] | None = None
    differing = 0
    for vector in suite.vectors:
        reply, _ = answered(board, protocol.Conformance(vector.payload), retries,
                            fix=f"conformance vector {vector.name}: check that the image speaks CONFORMANCE "
                            "(rebuild it with `hil firmware build`)")
        difference = first_difference(reply.output, vector.expected_by(reference))
        if difference is not None:
            differing += 1
            first = first or (vector, difference)
    mismatch = None if first is None else Mismatch(first[0], *first[1], differing_vectors=differing)
    return Conformance(board.slot, suite.sha256, len(suite.vectors), reference, mismatch, time.monotonic() - began)
