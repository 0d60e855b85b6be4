"""The physical bench: Nucleo-L432KC stand-ins (tests/support/benches.py: an emulated ST-LINK, a pty as its
USB serial port, QEMU booting what the probe flashed) and measurement units clipped to their pins."""

import subprocess
import sys
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from pathlib import Path

import pytest

from tests.support.benches import KIND, Nucleo


@pytest.fixture
def nucleo() -> Iterator[Callable[..., Nucleo]]:
    """`nucleo(unique_id, wire=False, **probe_faults)`: a Nucleo on the bench, unplugged after the test."""
    with ExitStack() as stack:
        yield lambda unique_id, **options: stack.enter_context(Nucleo(unique_id, **options))


@pytest.fixture
def unit(tmp_path: Path) -> Iterator[Callable[[Nucleo, int], str]]:
    """`unit(board, clock_hz)`: hil.hw.emulated.monitor_unit on the pins of a Nucleo made with wire=True, as a
    physical unit on its own USB port; returns that port. Its true energies go to tmp_path/truth.jsonl."""
    units: list[subprocess.Popen] = []

    def start(board: Nucleo, clock_hz: int) -> str:
        process = subprocess.Popen([sys.executable, "-m", "hil.hw.emulated.monitor_unit", "--wire", board.wire_port,
                                    "--kind", KIND, "--clock-hz", str(clock_hz),
                                    "--truth", str(tmp_path / "truth.jsonl")], stdout=subprocess.PIPE, text=True)
        units.append(process)
        return process.stdout.readline().strip()

    yield start
    for process in units:
        process.terminate()
        process.wait()
