"""An emulated board: a chip behind an emulated debug probe, flashed by pyOCD, then booted by QEMU
with what its flash holds; its unit a process on the board's GPIO wire.

A board whose unit fails to start, or dies mid-run, streams on unmeasured (docs/monitor.md): the
wire is then drained here (QemuBoard.drain_wire), else the firmware would block on its full pty.

Its flasher is FlashThroughProbe (hw/emulated/loader.py): the physical boards' pyOCD path into the
probe's model of the kind's flash, then QEMU powers on with those bytes, paused; the board then opens
its UARTs and lets it run.
"""

from __future__ import annotations

import threading
from pathlib import Path

import serial

from hil.firmware.build import FirmwareManifest
from hil.hw.board import Board
from hil.hw.emulated.loader import FlashThroughProbe
from hil.hw.emulated.monitor import EmulatedMonitor
from hil.hw.emulated.probe import EmulatedProbe
from hil.hw.emulated.qemu import QemuBoard
from hil.hw.kinds import BOARD_KINDS
from hil.hw.link import DeviceLink
from hil.hw.monitor import Monitor
from hil.lab.load import BoardSpec, RunSettings


class EmulatedBoard(Board):
    """A QEMU machine booting what pyOCD flashed through the board's own emulated probe."""

    def __init__(self, spec: BoardSpec, manifest: FirmwareManifest, run: RunSettings,
                 probe: EmulatedProbe | None = None):
        """`probe`: the board's probe, if not a new one for the kind's pyOCD target (a test gives one with faults)."""
        kind = BOARD_KINDS[spec.kind]
        # Brought up on the main thread only: QEMU is tied to the thread that starts it (hw/children.py).
        self.qemu = QemuBoard(kind, name=spec.slot, record_wire=False)
        self.probe = probe or EmulatedProbe(f"emulated-{spec.slot}", kind.pyocd_target, core=kind.cpu)
        self._flash = FlashThroughProbe(self.probe, self.qemu)
        super().__init__(spec, manifest, run, self._flash)

    def _open_port(self) -> serial.SerialBase:
        self.qemu.run()
        return self.qemu.link

    def _make_monitor(self, traces_dir: Path) -> Monitor:
        # The emulated unit reads the board's GPIO wire and clocks it by the board's timer.
        return EmulatedMonitor(self.slot, self.spec.kind, self.kind.timer_hz, traces_dir, self.qemu.wire.port)

    def start_monitor(self, traces_dir: Path) -> None:
        try:
            super().start_monitor(traces_dir)
        except BaseException:
            self.qemu.drain_wire()  # the unit was stopped: nobody else reads the wire
            raise
        monitor = self.monitor  # an EmulatedMonitor (_make_monitor), with the unit's own process
        if monitor.process is not None:
            threading.Thread(target=self._drain_when_gone, args=(monitor, monitor.process),
                             name=f"{self.slot} unit watch", daemon=True).start()

    def _drain_when_gone(self, monitor: EmulatedMonitor, process) -> None:
        # The unit exits when it dies, and when the board stops it (to restart it on a new wire, or at the
        # end): only a death leaves the wire without a reader.
        process.wait()
        if not monitor.stopped:
            self.qemu.drain_wire()

    def alive(self) -> bool:
        return self.qemu.alive()

    def reset(self) -> None:
        self.qemu.reset()

    def reflash(self) -> None:
        """The emulator stopped, then flashed anew through the same probe (which keeps serving)."""
        self.link = None
        self.qemu.stop()
        self.bring_up()

    def power_cycle(self) -> None:
        """The emulator stopped and started again with what the probe's flash holds: power off and on."""
        self.link = None
        self.qemu.stop()
        flash = self.kind.flash
        self.qemu.power_on(self.probe.memory(flash.origin, flash.size))
        self.link = DeviceLink(self._open_port(), name=self.slot, timeout=self.run.request_timeout_s)

    def identity(self) -> dict:
        return {**super().identity(), "emulated": True, "qemu_machine": self.kind.qemu.machine,
                "icount_shift": self.kind.qemu.icount_shift, "qemu_pid": self.qemu.pid,
                "probe": self.probe.unique_id, "target": self.kind.pyocd_target}

    def _stop(self) -> None:
        self.qemu.stop()
        self._flash.stop()
