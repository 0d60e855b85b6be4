"""An emulated board: QEMU running the very image, its unit a process on the board's GPIO wire."""

from __future__ import annotations

from pathlib import Path

import serial

from hil.firmware.build import FirmwareManifest
from hil.hw.board import Board
from hil.hw.emulated.monitor import EmulatedMonitor
from hil.hw.emulated.qemu import PROFILES, QemuBoard
from hil.hw.monitor import Monitor
from hil.lab.load import BoardSpec, RunSettings


class EmulatedBoard(Board):
    """QEMU running the image; flashing is loading the verified ELF into the emulator."""

    def __init__(self, spec: BoardSpec, manifest: FirmwareManifest, run: RunSettings):
        super().__init__(spec, manifest, run)
        self.qemu: QemuBoard | None = None

    def _start(self) -> serial.SerialBase:
        # Must run on the main thread: QEMU is tied to the thread that starts it (see emulator.py).
        self.qemu = QemuBoard(PROFILES[self.spec.kind], self.manifest.elf, name=self.slot, record_wire=False).start()
        return self.qemu.link

    def _make_monitor(self, traces_dir: Path) -> Monitor:
        # The emulated unit reads the board's GPIO wire (UART1) and clocks it by the board's timer.
        return EmulatedMonitor(self.slot, self.spec.kind, PROFILES[self.spec.kind].timer_hz, traces_dir,
                               self.qemu.wire.port)

    def alive(self) -> bool:
        return self.qemu is not None and self.qemu.alive()

    def identity(self) -> dict:
        return {**super().identity(), "emulated": True, "qemu_machine": PROFILES[self.spec.kind].machine,
                "icount_shift": PROFILES[self.spec.kind].icount_shift,
                "qemu_pid": self.qemu.pid if self.qemu else None}

    def _stop(self) -> None:
        if self.qemu is not None:
            self.qemu.stop()
            self.qemu = None
