"""A physical measurement unit on a serial port, speaking monitor protocol v1.1 or v1 (docs/monitor.md)."""

from __future__ import annotations

from pathlib import Path

import serial

from hil.hw.channel import open_port
from hil.hw.monitor import MonitorError, ProtocolMonitor


class SerialMonitor(ProtocolMonitor):
    """A physical unit on a serial port, by path or pyserial URL (labs.yaml: boards[i].monitor)."""

    def __init__(self, slot: str, shunt_ohms: float, max_current_a: float, traces_dir: Path, device: str,
                 baudrate: int):
        super().__init__(slot, shunt_ohms, max_current_a, traces_dir)
        self.device, self.baudrate = device, baudrate

    def _open_port(self) -> serial.SerialBase:
        try:
            return open_port(self.device, self.baudrate)
        except serial.SerialException as error:
            raise MonitorError(f"{self.slot}: cannot open the measurement unit's port {self.device} ({error})") from None
