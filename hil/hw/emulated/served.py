"""An emulated board served as a physical one: its debug probe on TCP, its USB serial port a pty, its MCU the
kind's QEMU twin. `hil board serve` runs one, for a labgrid exporter to publish (docs/distributed.md), so a team's
CI can spread emulated racks over hosts as it would physical ones; hil's tests stand their physical benches on it.

- The probe's SWD side is hil.hw.emulated.probe's EmulatedProbe for the kind's pyOCD target, which unmodified
  pyOCD connects to (`remote:HOST:PORT`), flashes (its real flash algorithm on the probe's core), reads back and
  resets;
- the virtual COM port is a real pty pair, its slave's path the board's serial port (`port`); `--pty-link`
  gives it a stable name, and a labgrid exporter's RawSerialPort publishes it through ser2net;
- the MCU is the kind's QEMU twin, booted with what the probe's flash holds each time the probe releases the
  chip from reset to run (its `on_release` hook: the reset that ends a flash, or any later reset, which boots a
  new QEMU with the flash as it is then), and bridged byte for byte to the pty: its USART2 is the VCP.
Until the MCU boots, what the host writes waits in the pty, as in a VCP whose MCU is held in reset; it is
handed to USART2 once the firmware has switched its receiver on (CR1.UE and RE), so no byte is lost on
the way and none is sent twice. Bytes the host sent before a reset and not yet taken by the old MCU are
dropped with it. While pyOCD halts the core to flash it, the previous QEMU runs on (a halted MCU would
not); the board answers nothing before its first flash (an erased chip).
With `wire=True` the MCU's edge wire (USART1: the busy and exit pins) is bridged to a second pty
(`wire_port`), stable across boots, for hil.hw.emulated.monitor_unit: a measurement unit clipped to the
pins reads whichever QEMU is current. Without it the wire is drained and dropped (nothing on the pins).

    hil board serve --kind nucleo-l432kc --probe-port 5555 --pty-link /run/hil/nucleo-1 \\
        --exporter-group /etc/labgrid/exporter.yaml.d/nucleo-1.yaml
"""

from __future__ import annotations

import argparse
import logging
import os
import select
import signal
import socket
import subprocess
import sys
import threading
import tty
from pathlib import Path
from typing import Self

import yaml

from hil.hw.children import child_env, die_with_parent, reap
from hil.hw.emulated.probe import EmulatedProbe
from hil.hw.emulated.qemu import QemuBoard
from hil.hw.kinds import BOARD_KINDS

# The kinds that can be served, and where their link USART's CR1 is (the kinds table's QemuTwin.link_uart_cr1):
# its UE (bit 0) and RE (bit 2) say the receiver is on (RM0394 38.8.1).
SERVED_KINDS = {name: kind.qemu.link_uart_cr1 for name, kind in BOARD_KINDS.items()
                if kind.qemu is not None and kind.qemu.link_uart_cr1 is not None}
CR1_UE, CR1_RE = 1 << 0, 1 << 2
POLL_S = 0.005  # how long the bridge waits for bytes before it looks for a reset again
logger = logging.getLogger(__name__)


class ServedBoard:
    """An emulated board served as a physical one (see the module docstring); use as a context manager.
    `probe.address` is its debug probe, `port` its serial port (the VCP pty), `boots` how often its MCU has
    booted."""

    def __init__(self, unique_id: str, kind: str = "nucleo-l432kc", *, host: str = "127.0.0.1", probe_port: int = 0,
                 wire: bool = False, **faults: int):
        """`faults`: the probe's fault injection (corrupt_program_at=..., tamper_after_verify_at=..., ...)."""
        if kind not in SERVED_KINDS:
            raise ValueError(f"board kind {kind!r} cannot be served; served kinds: {', '.join(SERVED_KINDS)}")
        self.kind = BOARD_KINDS[kind]
        self._receiver = SERVED_KINDS[kind]
        self.probe = EmulatedProbe(unique_id, self.kind.pyocd_target, probe_port, host=host,
                                   on_release=self._released, **faults)
        self._vcp, self._vcp_slave, self.port = raw_pty()
        self._wire, self._wire_slave, self.wire_port = raw_pty() if wire else (None, None, None)
        self.boots = 0
        self.hung = False  # the MCU hangs: its UART neither takes nor sends a byte until it is reset (`hang`)
        self.error: Exception | None = None  # what stopped the board's thread, raised on exit
        self._lock = threading.Lock()  # orders a release against the bridge's reads of the host's bytes
        self._boot_image: bytes | None = None  # the flash as the chip was released with it, until booted
        self._qemu: QemuBoard | None = None
        self._listening = False  # the current MCU's USART2 receiver is on
        self._to_mcu, self._to_host, self._to_unit = bytearray(), bytearray(), bytearray()
        self._stop = threading.Event()
        # QEMU is started and stopped by this one long-lived thread: a child's parent-death signal follows
        # the thread that started it (hil/hw/children.py).
        self._thread = threading.Thread(target=self._serve, daemon=True, name=f"served {unique_id}")

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
            raise RuntimeError(f"served board {self.probe.unique_id}: {self.error}") from self.error

    def hang(self) -> None:
        """Fault injection: the MCU hangs, as firmware stuck in a loop does: until the next reset (a boot),
        nothing it sends reaches the host and nothing the host sends reaches it."""
        self.hung = True

    # --- the probe's side: runs in its server thread, before pyOCD's reset returns ---
    def _released(self) -> None:
        flash = self.kind.flash
        image = self.probe.memory(flash.origin, flash.size)
        with self._lock:
            self._boot_image = image

    # --- the board's thread ---
    def _serve(self) -> None:
        try:
            while not self._stop.is_set():
                with self._lock:
                    image, self._boot_image = self._boot_image, None
                if image is not None:
                    self._boot(image)
                elif self._qemu is not None and not self._listening:
                    cr1 = int.from_bytes(self._qemu.read_memory(self._receiver, 4), "little")
                    self._listening = cr1 & (CR1_UE | CR1_RE) == CR1_UE | CR1_RE
                self._bridge()
        except Exception as error:  # noqa: BLE001 - kept for __exit__, which raises it
            logger.exception("served board %s stopped", self.probe.unique_id)
            self.error = error
        finally:
            self._power_off()

    def _boot(self, image: bytes) -> None:
        self._power_off()
        self._to_mcu.clear()  # sent to the MCU that was reset
        self._qemu = QemuBoard(self.kind, name=f"served-{self.probe.unique_id}", record_wire=False)
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


def raw_pty() -> tuple[int, int, str]:
    """A pty pair in raw mode: (master, slave, the slave's path). Keep the slave open while the master is
    used: a pty whose slave nobody holds reads EIO."""
    master, slave = os.openpty()
    tty.setraw(slave)  # no line discipline: no echo, no CR/LF rewriting, from the first byte
    return master, slave, os.ttyname(slave)


def link(target: str, link_path: Path) -> None:
    """`link_path` -> `target`, replacing an old link at once (a board served again gets a new pty)."""
    link_path.parent.mkdir(parents=True, exist_ok=True)
    staged = link_path.with_name(f".{link_path.name}.{os.getpid()}")
    staged.unlink(missing_ok=True)
    os.symlink(target, staged)
    os.replace(staged, link_path)


def start_unit(board: ServedBoard, truth: str) -> tuple[subprocess.Popen, str]:
    """hil.hw.emulated.monitor_unit clipped to the board's pins (its wire), as a serial measurement unit on a
    pty of its own; the process and that pty's path. Its true energies go to `truth`."""
    process = subprocess.Popen(
        [sys.executable, "-m", "hil.hw.emulated.monitor_unit", "--wire", board.wire_port, "--kind", board.kind.name,
         "--clock-hz", str(board.kind.timer_hz), "--truth", truth],
        stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, text=True, preexec_fn=die_with_parent, env=child_env())
    port = process.stdout.readline().strip()
    if not port:
        raise RuntimeError(f"served board {board.probe.unique_id}: its measurement unit did not start")
    return process, port


def exporter_group(board: ServedBoard, group: str, monitor: str | None = None) -> dict:
    """The labgrid exporter's resource group for this board, laid out as a hil place expects
    (hil/run/places.py): `console` its serial port, `probe` its probe server, `monitor` its unit's port if it
    has one. labgrid's exporter needs a pty's own /dev path (it refuses any other), not a link."""
    # A probe listening on every interface is reached by this host's name.
    host = socket.gethostname() if board.probe.host in ("0.0.0.0", "::") else board.probe.host
    port = board.probe.port
    resources = {"location": f"hil board serve, pid {os.getpid()}",
                 "console": {"cls": "RawSerialPort", "port": board.port, "speed": 115200},
                 "probe": {"cls": "NetworkService", "address": host, "port": port, "username": "pyocd"}}
    if monitor is not None:
        resources["monitor"] = {"cls": "RawSerialPort", "port": monitor, "speed": 115200}
    return {group: resources}


def serve(args: argparse.Namespace) -> int:
    """`hil board serve`: until SIGTERM or Ctrl-C. Says `ready: ...` on one line once it can be flashed."""
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    unique_id = args.unique_id or f"served-{os.getpid()}"
    with ServedBoard(unique_id, args.kind, host=args.host, probe_port=args.probe_port,
                     wire=args.monitor) as board:
        written = []
        unit, unit_port = start_unit(board, args.monitor_truth) if args.monitor else (None, None)
        try:
            if args.pty_link:
                link(board.port, Path(args.pty_link))
                written.append(Path(args.pty_link))
            if args.exporter_group:
                group = Path(args.exporter_group)
                group.parent.mkdir(parents=True, exist_ok=True)
                group.write_text(yaml.safe_dump(exporter_group(board, args.group or unique_id, unit_port),
                                                sort_keys=False))
                written.append(group)
            print(f"ready: probe {board.probe.address}, serial port {board.port}"
                  + (f" ({args.pty_link})" if args.pty_link else "")
                  + (f", measurement unit {unit_port}" if unit_port else ""), flush=True)
            while not stop.wait(0.2):
                if board.error is not None:
                    break
        finally:
            for path in written:
                path.unlink(missing_ok=True)
            if unit is not None:
                unit.terminate()
                reap(unit)
    return 0
