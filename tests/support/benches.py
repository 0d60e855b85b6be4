"""A physical bench as far as one can exist here: a Nucleo-L432KC stand-in on a "USB cable", and the lab of
it as physical board `bench-1` (flashed through its probe, its serial port a path or a URL in front of one)
beside an emulated board.

`Nucleo` is a test double, not a product part. It stands in for the board at its lowest levels:
- the ST-LINK's SWD side is hil.hw.emulated.probe's EmulatedProbe for target stm32l432kc, which unmodified
  pyOCD connects to, flashes (its real flash algorithm on the probe's core), reads back and resets;
- the ST-LINK's virtual COM port is a real pty pair, its slave's path the board's USB serial port (`port`);
- the MCU is QEMU `b-l475e-iot01a` (the kind's twin), booted with what the probe's flash holds each time
  the probe releases the chip from reset to run (its `on_release` hook: the reset that ends a flash, or
  any later reset, which boots a new QEMU with the flash as it is then), and bridged byte for byte to
  the pty: its USART2 is the VCP.
Until the MCU boots, what the host writes waits in the pty, as in a VCP whose MCU is held in reset; it is
handed to USART2 once the firmware has switched its receiver on (CR1.UE and RE), so no byte is lost on
the way and none is sent twice. Bytes the host sent before a reset and not yet taken by the old MCU are
dropped with it. While pyOCD halts the core to flash it, the previous QEMU runs on (a halted MCU would
not); the board answers nothing before its first flash (an erased chip).
With `wire=True` the MCU's edge wire (USART1: the busy and exit pins) is bridged to a second pty
(`wire_port`), stable across boots, for hil.hw.emulated.monitor_unit: a measurement unit clipped to the
pins reads whichever QEMU is current. Without it the wire is drained and dropped (nothing on the pins).
"""

from __future__ import annotations

import json
import logging
import os
import select
import subprocess
import threading
from pathlib import Path
from typing import Self

import yaml

from hil.hw.emulated.probe import EmulatedProbe
from hil.hw.emulated.qemu import QemuBoard
from hil.hw.kinds import BOARD_KINDS

from tests.support.labs import run_dir_of, write_lab
from tests.support.ptys import raw_pty

KIND, MODEL = "nucleo-l432kc", "qute-digits"
FLASH = BOARD_KINDS[KIND].flash
# The VCP's USART2 (UM1956 6.9: PA2/PA15), at 0x4000_4400 on the L432 and on QEMU's L475 alike
# (RM0394 2.2.2); its CR1's UE (bit 0) and RE (bit 2) say the receiver is on (RM0394 38.8.1).
USART2_CR1, CR1_UE, CR1_RE = 0x4000_4400, 1 << 0, 1 << 2
INFRASTRUCTURE = 2  # hil run's exit code for a board, probe or unit that failed
POLL_S = 0.005  # how long the bridge waits for bytes before it looks for a reset again
logger = logging.getLogger(__name__)


class Nucleo:
    """A Nucleo-L432KC on a USB cable (see the module docstring); use as a context manager.
    `probe.address` is its ST-LINK, `port` its serial port, `boots` how often its MCU has booted."""

    def __init__(self, unique_id: str, *, wire: bool = False, **faults: int):
        """`faults`: the probe's test faults (corrupt_program_at=..., tamper_after_verify_at=..., ...)."""
        self.kind = BOARD_KINDS[KIND]
        self.probe = EmulatedProbe(unique_id, self.kind.pyocd_target, on_release=self._released, **faults)
        self._vcp, self._vcp_slave, self.port = raw_pty()
        self._wire, self._wire_slave, self.wire_port = raw_pty() if wire else (None, None, None)
        self.boots = 0
        self.hung = False  # the MCU hangs: its UART neither takes nor sends a byte until it is reset (`hang`)
        self.error: Exception | None = None  # what stopped the bench's thread, raised on exit
        self._lock = threading.Lock()  # orders a release against the bridge's reads of the host's bytes
        self._boot_image: bytes | None = None  # the flash as the chip was released with it, until booted
        self._qemu: QemuBoard | None = None
        self._listening = False  # the current MCU's USART2 receiver is on
        self._to_mcu, self._to_host, self._to_unit = bytearray(), bytearray(), bytearray()
        self._stop = threading.Event()
        # QEMU is started and stopped by this one long-lived thread: a child's parent-death signal follows
        # the thread that started it (hil/hw/children.py).
        self._thread = threading.Thread(target=self._serve, daemon=True, name=f"nucleo {unique_id}")

    def __enter__(self) -> Self:
        for fd in (self._vcp, self._wire):
            if fd is not None:
                os.set_blocking(fd, False)
        self.probe.start()
        self._thread.start()
        return self

    def __exit__(self, exc_type: object, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=15)
        self.probe.stop()
        for fd in (self._vcp, self._vcp_slave, self._wire, self._wire_slave):
            if fd is not None:
                os.close(fd)
        if self.error is not None and exc_type is None:
            raise RuntimeError(f"bench {self.probe.unique_id}: {self.error}") from self.error

    def hang(self) -> None:
        """The MCU hangs, as firmware stuck in a loop does: until the next reset (a boot), nothing it
        sends reaches the host and nothing the host sends reaches it."""
        self.hung = True

    # --- the probe's side: runs in its server thread, before pyOCD's reset returns ---
    def _released(self) -> None:
        image = self.probe.memory(FLASH.origin, FLASH.size)
        with self._lock:
            self._boot_image = image

    # --- the bench's thread ---
    def _serve(self) -> None:
        try:
            while not self._stop.is_set():
                with self._lock:
                    image, self._boot_image = self._boot_image, None
                if image is not None:
                    self._boot(image)
                elif self._qemu is not None and not self._listening:
                    cr1 = int.from_bytes(self._qemu.read_memory(USART2_CR1, 4), "little")
                    self._listening = cr1 & (CR1_UE | CR1_RE) == CR1_UE | CR1_RE
                self._bridge()
        except Exception as error:  # noqa: BLE001 - kept for __exit__, which raises it in the test
            logger.exception("bench %s stopped", self.probe.unique_id)
            self.error = error
        finally:
            self._power_off()

    def _boot(self, image: bytes) -> None:
        self._power_off()
        self._to_mcu.clear()  # sent to the MCU that was reset
        self._qemu = QemuBoard(self.kind, name=f"nucleo-{self.probe.unique_id}", record_wire=False)
        self._qemu.power_on(flash=image)
        self._qemu.run()
        for port in (self._qemu.link, self._qemu.wire):
            os.set_blocking(port.fileno(), False)
        self.boots += 1
        self.hung = False

    def _power_off(self) -> None:
        if self._qemu is not None:
            self._qemu.stop()
            self._qemu = None
        self._listening = False

    def _bridge(self) -> None:
        """One round of the byte bridge: read where nothing waits to be written, write what waits."""
        if self._qemu is None:
            self._stop.wait(POLL_S)
            return
        link, wire = self._qemu.link.fileno(), self._qemu.wire.fileno()
        reads = [fd for fd, pending in ((link, self._to_host), (wire, self._to_unit)) if not pending]
        if self._listening and not self._to_mcu:
            reads.append(self._vcp)
        writes = [fd for fd, pending in ((link, self._to_mcu), (self._vcp, self._to_host),
                                         (self._wire, self._to_unit)) if pending]
        readable, writable, _ = select.select(reads, writes, [], POLL_S)
        if self.hung:  # what the MCU sends, and what it is sent, goes nowhere
            self._to_host.clear(), self._to_mcu.clear()
        if link in readable:
            self._to_host += b"" if self.hung else _read(link)
        if wire in readable:
            data = _read(wire)
            if self._wire is not None:
                self._to_unit += data
        if self._vcp in readable:
            with self._lock:
                if self._boot_image is not None:
                    return  # reset meanwhile: what the host sent since is for the MCU that boots next
                data = _read(self._vcp)
                self._to_mcu += b"" if self.hung else data
        for fd, pending in ((link, self._to_mcu), (self._vcp, self._to_host), (self._wire, self._to_unit)):
            if fd in writable:
                try:
                    del pending[:os.write(fd, pending)]
                except BlockingIOError:
                    pass


def _read(fd: int) -> bytes:
    try:
        return os.read(fd, 4096)
    except BlockingIOError:
        return b""


BESIDE = {"an500-mnist1d": ("mps2-an500", "qute-mnist1d")}  # the emulated board the bench shares its lab with


def physical_lab(tmp_path: Path, probe: str, port: str, beside: dict = BESIDE, samples: int = 10) -> Path:
    """A lab of the `beside` emulated boards and bench-1, a physical Nucleo-L432KC on `port` flashed through
    `probe` (the image at 0x0800_0000, under pyOCD's target stm32l432kc)."""
    lab = write_lab(tmp_path, boards={**beside, "bench-1": (KIND, MODEL)}, samples=samples)
    data = yaml.safe_load(lab.read_text())
    bench = next(b for b in data["boards"] if b["slot"] == "bench-1")
    del bench["emulated"]
    bench.update(probe={"unique_id": probe, "target": BOARD_KINDS[KIND].pyocd_target}, serial={"port": port})
    lab.write_text(yaml.safe_dump(data, sort_keys=False))
    return lab


def with_monitor(lab: Path, port: str) -> Path:
    data = yaml.safe_load(lab.read_text())
    profile = BOARD_KINDS[KIND].power
    next(b for b in data["boards"] if b["slot"] == "bench-1")["monitor"] = {
        "port": port, "shunt_ohms": profile.shunt_ohms, "max_current_a": profile.max_current_a}
    lab.write_text(yaml.safe_dump(data, sort_keys=False))
    return lab


def unit_stopped(tmp_path: Path, result: subprocess.CompletedProcess, reason: str) -> list[dict]:
    """Check a `hil run --json` whose bench-1 unit stopped mid-run: exit 2, its one-line monitor failures
    naming `reason`, all 30 of its records kept and journaled unmeasured with that reason. Returns every
    board's measurements."""
    assert result.returncode == INFRASTRUCTURE, result.stderr[-3000:]
    failures = json.loads(result.stdout)["failures"]
    assert failures and all(f["slot"] == "bench-1" and f["stage"] == "monitor" for f in failures), failures
    assert reason in failures[0]["reason"] and "\n" not in failures[0]["reason"], failures
    run_dir = run_dir_of(tmp_path)
    records = [json.loads(line) for line in (run_dir / "records.jsonl").read_text().splitlines()]
    measured = [json.loads(line) for line in (run_dir / "measurements.jsonl").read_text().splitlines()]
    assert sum(r["slot"] == "bench-1" for r in records) == 30
    # The board is metered once its answers are in (hil/run/metering.py); by then the unit is gone.
    bench = [m for m in measured if m["slot"] == "bench-1"]
    assert len(bench) == 30 and all(m["method"] == "unmeasured" and reason in m["reason"] for m in bench), bench
    return measured
