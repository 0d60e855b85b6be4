"""A physical board: flashed and reset by pyOCD through its exact probe, talked to over USB serial
(or any port pyserial opens by URL: the lab resolved it to `serial.device`)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import serial

from hil.firmware.build import FirmwareManifest
from hil.hw.board import Board, BoardError
from hil.hw.channel import open_port
from hil.hw.flasher import PyocdFlasher
from hil.hw.link import DeviceLink
from hil.hw.monitor import Monitor
from hil.hw.physical.linux_ina219 import LinuxIna219Monitor, LinuxIna219Wiring
from hil.hw.physical.monitor import SerialMonitor
from hil.hw.physical.ppk2 import Ppk2Monitor
from hil.lab.load import BoardSpec, MonitorKind, RunSettings


class PhysicalBoard(Board):
    """A real MCU: flashed and reset through its debug probe by pyOCD, talked to over USB serial."""

    def __init__(self, spec: BoardSpec, manifest: FirmwareManifest, run: RunSettings):
        super().__init__(spec, manifest, run, PyocdFlasher(spec.physical.probe, spec.physical.target))
        self.port: serial.SerialBase | None = None

    def _open_port(self) -> serial.SerialBase:
        physical = self.spec.physical
        path = physical.serial.device
        try:
            self.port = open_port(path, physical.serial.baudrate)
        except serial.SerialException as error:
            raise BoardError(f"{self.slot}: cannot open {path} ({error}); is another program using it?") from None
        return self.port

    def alive(self) -> bool:
        return self.port is not None and self.port.is_open

    def reset(self) -> None:
        self.flasher.reset()

    def power_cycle(self) -> None:
        cycle = self.spec.physical.power_cycle
        if cycle is None:
            raise BoardError(f"{self.slot}: the lab names no way to cycle its power; add power_cycle.command")
        self._stop()
        self.link = None
        try:
            done = subprocess.run(cycle.command, shell=True, capture_output=True, text=True, timeout=cycle.timeout_s)
        except subprocess.TimeoutExpired:
            raise BoardError(f"{self.slot}: power_cycle.command did not finish within {cycle.timeout_s:g} s; "
                             "check it by hand") from None
        if done.returncode != 0:
            last = (done.stderr.strip().splitlines() or ["no output"])[-1][:200]
            raise BoardError(f"{self.slot}: power_cycle.command failed (exit {done.returncode}: {last}); check it "
                             "by hand")
        self.link = DeviceLink(self._open_port(), name=self.slot, timeout=self.run.request_timeout_s)

    def _make_monitor(self, traces_dir: Path) -> Monitor | None:
        spec = self.spec.physical.monitor
        if spec is None:
            return None
        # The one place a unit's kind picks its class; the run code reads every kind alike.
        if spec.kind is MonitorKind.LINUX_INA219:
            wiring = spec.linux_ina219
            return LinuxIna219Monitor(self.slot, spec.shunt_ohms, spec.max_current_a, traces_dir, LinuxIna219Wiring(
                wiring.i2c_bus, wiring.address, wiring.gpio_chip, wiring.busy_line, wiring.exit_line))
        if spec.kind is MonitorKind.PPK2:
            return Ppk2Monitor(self.slot, traces_dir, spec.serial.device, spec.ppk2)
        return SerialMonitor(self.slot, spec.shunt_ohms, spec.max_current_a, traces_dir, spec.serial.device,
                             spec.serial.baudrate)

    def identity(self) -> dict:
        physical = self.spec.physical
        place = {"place": physical.place} if physical.place is not None else {}
        return {**super().identity(), "emulated": False, "probe": physical.probe, "target": physical.target,
                "serial_port": self.port.port if self.port else None, **place}

    def _stop(self) -> None:
        if self.port is not None:
            self.port.close()
            self.port = None
