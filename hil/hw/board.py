"""Boards: one MCU in a rack slot, emulated (QEMU) or physical (pyOCD probe + USB serial).

Both kinds offer the same few operations, so everything after bring-up (identity check,
streaming, recovery) is one code path:
- `bring_up()`: put the verified image on the board and open its link;
- `link`: a DeviceLink (protocol v1 over pyserial);
- `start_monitor()`: its measurement unit, if it has one (every emulated board does);
- `alive()`, `shut_down()`.
A board is driven only under its lock (`lock_name`, taken for the whole rack by
hil.run.rack.reserve), so two runs never drive the same board.
"""

from __future__ import annotations

import hashlib
from abc import ABC, abstractmethod
from pathlib import Path

import serial

from hil.hw import flasher as probe
from hil.hw.emulated.qemu import PROFILES, QemuBoard
from hil.errors import HilError
from hil.firmware.build import FirmwareManifest, load_manifest
from hil.lab.load import BoardSpec, RunSettings, find_serial_port
from hil.hw.link import DeviceLink
from hil.hw.monitor import EmulatedMonitor, Monitor, SerialMonitor


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


class PhysicalBoard(Board):
    """A real MCU: flashed and reset through its debug probe by pyOCD, talked to over USB serial."""

    def __init__(self, spec: BoardSpec, manifest: FirmwareManifest, run: RunSettings):
        super().__init__(spec, manifest, run)
        self.port: serial.Serial | None = None
        self.flash_report = None

    def _start(self) -> serial.SerialBase:
        physical = self.spec.physical
        self.flash_report = probe.flash_image(physical.probe, physical.target, self.manifest.bin,
                                              self.manifest.image_sha256)
        path = find_serial_port(physical.serial, self.slot)
        try:
            self.port = serial.Serial(path, physical.serial.baudrate, timeout=1.0, exclusive=True)
        except serial.SerialException as error:
            raise BoardError(f"{self.slot}: cannot open {path} ({error}); is another program using it?") from None
        return self.port

    def alive(self) -> bool:
        return self.port is not None and self.port.is_open

    def _make_monitor(self, traces_dir: Path) -> Monitor | None:
        spec = self.spec.physical.monitor
        if spec is None:
            return None
        device = find_serial_port(spec.serial, self.slot)
        return SerialMonitor(self.slot, spec.shunt_ohms, spec.max_current_a, traces_dir, device, spec.serial.baudrate)

    def identity(self) -> dict:
        physical = self.spec.physical
        return {**super().identity(), "emulated": False, "probe": physical.probe, "target": physical.target,
                "serial_port": self.port.port if self.port else None,
                "flash": None if self.flash_report is None else vars(self.flash_report)}

    def _stop(self) -> None:
        if self.port is not None:
            self.port.close()
            self.port = None


def lock_name(spec: BoardSpec, lab_file: Path) -> str:
    """What a board's lock is named after: the thing two runs must not share. A physical board is
    its probe. An emulated board exists once per lab file: two runs of one labs.yaml contend for it,
    two checkouts' labs do not (each would start its own QEMU anyway)."""
    if not spec.emulated:
        return f"probe-{spec.physical.probe}"
    return f"emulated-{hashlib.sha256(str(Path(lab_file).resolve()).encode()).hexdigest()[:12]}-{spec.slot}"


def make_board(spec: BoardSpec, manifest: FirmwareManifest, run: RunSettings) -> Board:
    if spec.emulated:
        return EmulatedBoard(spec, manifest, run)
    return PhysicalBoard(spec, manifest, run)
