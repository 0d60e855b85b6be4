"""Boards: one MCU in a rack slot, emulated (hw/emulated/board.py: QEMU) or physical
(hw/physical/board.py: pyOCD probe + USB serial); hw/factory.py picks one.

A board is a flasher, a port and a monitor. Both kinds offer the same few operations, so
everything after bring-up (identity check, streaming, recovery) is one code path:
- `bring_up()`: its Flasher (hw/flasher.py) puts the verified image on, then the board opens
  its port; the Flasher's report goes into provenance (`identity()["flash"]`);
- `link`: a DeviceLink (protocol v2 over pyserial);
- `start_monitor()`: its measurement unit, if it has one (every emulated board does);
- `alive()`, `shut_down()`;
- the recovery ladder's steps (hil/run/recovery.py): `reset()` (the reset line, through the probe),
  `reflash()` (bring-up again: the verified image flashed anew), `power_cycle()` (where there is a way:
  an emulated board's emulator restarts; a physical one needs the lab's power_cycle command).
A board is driven only under its lock (`lock_name`, taken for the whole rack by
hil.run.rack.reserve), so two runs never drive the same board.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from pathlib import Path

import serial

from hil.errors import HilError
from hil.firmware.build import FirmwareManifest, load_manifest
from hil.hw.flasher import Flasher, FlashReport
from hil.hw.kinds import BOARD_KINDS, BoardKind
from hil.hw.link import DeviceLink
from hil.hw.monitor import Monitor
from hil.lab.load import BoardSpec, RunSettings


class BoardError(HilError):
    """A board could not be brought up, identified or driven (exit code 2)."""


class Board(ABC):
    def __init__(self, spec: BoardSpec, manifest: FirmwareManifest, run: RunSettings, flasher: Flasher):
        self.spec = spec
        self.manifest = manifest
        self.run = run
        self.flasher = flasher
        self.flash_report: FlashReport | None = None  # once the image is on
        self.link: DeviceLink | None = None
        self.monitor: Monitor | None = None  # the measurement unit, once started
        self.unit_failure: str | None = None  # why the lab's unit for it is gone: its answers go unmeasured

    @property
    def slot(self) -> str:
        return self.spec.slot

    @property
    def kind(self) -> BoardKind:
        return BOARD_KINDS[self.spec.kind]

    @abstractmethod
    def _open_port(self) -> serial.SerialBase:
        """The board's serial port, open, once its image is on (the board runs it)."""

    @abstractmethod
    def alive(self) -> bool: ...

    @abstractmethod
    def _make_monitor(self, traces_dir: Path) -> Monitor | None:
        """The board's measurement unit, or None where it has none."""

    @abstractmethod
    def _stop(self) -> None: ...

    def identity(self) -> dict:
        """Where the board is, for the run's provenance."""
        return {"slot": self.slot, "kind": self.spec.kind, "model": self.spec.model,
                "flash": None if self.flash_report is None else self.flash_report.to_dict()}

    def bring_up(self) -> None:
        # The image is verified again right before use (the lab checked it at load, but files
        # can change during a long run): nothing unverified is flashed or run.
        self.manifest = load_manifest(self.manifest.directory)
        self.flash_report = self.flasher.flash(self.manifest)
        port = self._open_port()
        self.link = DeviceLink(port, name=self.slot, timeout=self.run.request_timeout_s)

    @abstractmethod
    def reset(self) -> None:
        """A hardware reset, as the reset line gives one: the firmware starts again on the same port."""

    @abstractmethod
    def power_cycle(self) -> None:
        """Power off and on again, the image as flashed; BoardError where there is no way to."""

    def reflash(self) -> None:
        """The board brought up anew: its port closed, the verified image flashed again, the port opened."""
        self.link = None
        self._stop()
        self.bring_up()

    def restart_monitor(self) -> None:
        """The unit stopped and started again (after the board behind it was brought up anew)."""
        if self.monitor is not None:
            traces_dir = self.monitor.traces_dir
            self.monitor.stop()
            self.monitor = None
            self.start_monitor(traces_dir)

    def start_monitor(self, traces_dir: Path) -> None:
        """Start and configure the measurement unit; a MonitorError leaves the board unmeasured."""
        monitor = self._make_monitor(traces_dir)
        if monitor is not None:
            try:
                monitor.start()
            except BaseException:
                monitor.stop()
                raise
            self.monitor = monitor

    def shut_down(self) -> None:
        try:
            if self.monitor is not None:
                self.monitor.stop()
                self.monitor = None
            self._stop()
        finally:
            self.link = None
