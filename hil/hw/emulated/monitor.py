"""The emulated measurement unit: hil.hw.emulated.monitor_unit in its own process, behind a pty."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import serial

from hil.hw.channel import open_port
from hil.hw.children import child_env, die_with_parent, reap
from hil.hw.kinds import BOARD_KINDS
from hil.hw.monitor import MonitorError, ProtocolMonitor


class EmulatedMonitor(ProtocolMonitor):
    """hil.hw.emulated.monitor_unit on the emulated board's wire; its ground truth goes to <slot>.truth.jsonl."""

    def __init__(self, slot: str, kind: str, clock_hz: int, traces_dir: Path, wire: str):
        profile = BOARD_KINDS[kind].power
        super().__init__(slot, profile.shunt_ohms, profile.max_current_a, traces_dir)
        self.kind, self.clock_hz, self.wire = kind, clock_hz, wire
        self.process: subprocess.Popen | None = None
        self.stopped = False  # stopped by the board, not dead

    @property
    def truth_path(self) -> Path:
        return self.traces_dir / f"{self.slot}.truth.jsonl"

    def _open_port(self) -> serial.SerialBase:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "hil.hw.emulated.monitor_unit", "--wire", self.wire, "--kind", self.kind,
             "--clock-hz", str(self.clock_hz), "--truth", str(self.truth_path)],
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, text=True, preexec_fn=die_with_parent,
            env=child_env(),
        )
        path = self.process.stdout.readline().strip()
        if not path:
            raise MonitorError(f"{self.slot}: the emulated measurement unit did not start")
        return open_port(path)

    def stop(self) -> None:
        self.stopped = True
        super().stop()
        if self.process is not None:
            self.process.terminate()
            reap(self.process)
            self.process = None
