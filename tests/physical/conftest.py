"""The physical bench's MCU and unit: the image running in QEMU behind a pty, as a USB serial port would be."""

import subprocess
import sys
from pathlib import Path

import pytest

from hil.firmware import build as firmware
from hil.hw.emulated.qemu import QemuBoard
from hil.hw.kinds import BOARD_KINDS

from tests.support.benches import KIND, MODEL


@pytest.fixture
def uart():
    """The MCU behind the serial port: the image running in QEMU, its UART0 pty free for the lab."""
    board = QemuBoard(BOARD_KINDS[KIND], firmware.prebuilt(KIND, MODEL).elf, name="bench-uart").start()
    path = board.link.port
    board.link.close()  # the lab opens the port itself, by path, exclusively
    yield path
    board.stop()


@pytest.fixture
def bench():
    """The MCU (QEMU) and a measurement unit on its pins, each on its own serial port: the unit is
    hil.hw.emulated.monitor_unit reading the MCU's edge wire, as a physical unit would on a USB port."""
    board = QemuBoard(BOARD_KINDS[KIND], firmware.prebuilt(KIND, MODEL).elf, name="bench", record_wire=False).start()
    uart = board.link.port
    board.link.close()
    units = []

    def unit(tmp_path: Path, clock_hz: int) -> str:
        process = subprocess.Popen([sys.executable, "-m", "hil.hw.emulated.monitor_unit", "--wire", board.wire.port, "--kind", KIND,
                                    "--clock-hz", str(clock_hz), "--truth", str(tmp_path / "truth.jsonl")],
                                   stdout=subprocess.PIPE, text=True)
        units.append(process)
        return process.stdout.readline().strip()

    yield uart, unit
    for process in units:
        process.terminate()
        process.wait()
    board.stop()
