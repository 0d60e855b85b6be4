"""Boards: one MCU in a rack slot, emulated (hw/emulated/board.py: QEMU) or physical
(hw/physical/board.py: pyOCD probe + USB serial); hw/factory.py picks one.

Both kinds offer the same few operations, so everything after bring-up (identity check,
streaming, recovery) is one code path:
- `bring_up()`: put the verified image on the board and open its link;
- `link`: a DeviceLink (protocol v2 over pyserial);
- `start_monitor()`: its measurement unit, if it has one (every emulated board does);
- `alive()`, `shut_down()`.
A board is driven only under its lock (`lock_name`, taken for the whole rack by
hil.run.rack.reserve), so two runs never drive the same board.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from pathlib import Path

import serial

from hil.errors import HilError
from hil.firmware.build import FirmwareManifest, load_manifest
from hil.hw.link import DeviceLink
from hil.hw.monitor import Monitor
from hil.lab.load import BoardSpec, RunSettings


class BoardError(HilError):
    """A board could not be brought up, identified or driven (exit code 2)."""


class Board(ABC):
    def __init__(self, spec: BoardSpec, manifest: FirmwareManifest, run: RunSettings):
        self.spec = spec
        self.manifest = manifest
        self.run = run
        self.link: DeviceLink | None = None
        self.monitor: Monitor | None = None  # the measurement unit, once started

    @property
    def slot(self) -> str:
        return self.spec.slot

    @abstractmethod
    def _start(self) -> serial.SerialBase:
        """Put the verified image on the board and return its open serial port."""

    @abstractmethod
    def alive(self) -> bool: ...

    @abstractmethod
    def _make_monitor(self, traces_dir: Path) -> Monitor | None:
        """The board's measurement unit, or None where it has none."""

    @abstractmethod
    def _stop(self) -> None: ...

    def identity(self) -> dict:
        """Where the board is, for the run's provenance."""
        return {"slot": self.slot, "kind": self.spec.kind, "model": self.spec.model}

    def bring_up(self) -> None:
        # The image is verified again right before use (the lab checked it at load, but files
        # can change during a long run): nothing unverified is flashed or run.
        self.manifest = load_manifest(self.manifest.directory)
        port = self._start()
        self.link = DeviceLink(port, name=self.slot, timeout=self.run.request_timeout_s)

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
