"""An emulated board: QEMU running the very image, its unit a process on the board's GPIO wire.

Its flasher is the QemuLoader (hw/emulated/loader.py): QEMU powers on with the image loaded,
paused; the board then opens its UARTs and lets it run.
"""

from __future__ import annotations

from pathlib import Path

import serial

from hil.firmware.build import FirmwareManifest
from hil.hw.board import Board
from hil.hw.emulated.loader import QemuLoader
from hil.hw.emulated.monitor import EmulatedMonitor
from hil.hw.emulated.qemu import QemuBoard
from hil.hw.kinds import BOARD_KINDS
from hil.hw.monitor import Monitor
from hil.lab.load import BoardSpec, RunSettings


class EmulatedBoard(Board):
    """QEMU running the image; flashing is QEMU loading the verified ELF as it powers on."""

    def __init__(self, spec: BoardSpec, manifest: FirmwareManifest, run: RunSettings):
        # Brought up on the main thread only: QEMU is tied to the thread that starts it (hw/children.py).
        qemu = QemuBoard(BOARD_KINDS[spec.kind], manifest.elf, name=spec.slot, record_wire=False)
        super().__init__(spec, manifest, run, QemuLoader(qemu))
        self.qemu = qemu

    def _open_port(self) -> serial.SerialBase:
        self.qemu.run()
        return self.qemu.link

    def _make_monitor(self, traces_dir: Path) -> Monitor:
        # The emulated unit reads the board's GPIO wire (UART1) and clocks it by the board's timer.
        return EmulatedMonitor(self.slot, self.spec.kind, self.kind.timer_hz, traces_dir, self.qemu.wire.port)

    def alive(self) -> bool:
        return self.qemu.alive()

    def identity(self) -> dict:
        return {**super().identity(), "emulated": True, "qemu_machine": self.kind.qemu.machine,
                "icount_shift": self.kind.qemu.icount_shift, "qemu_pid": self.qemu.pid}

    def _stop(self) -> None:
        self.qemu.stop()
