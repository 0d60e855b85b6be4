"""Emulated boards: QEMU running a firmware image, its UARTs on real pseudo-terminals.

QEMU starts paused (-S) with a QMP socket and the image in the machine's flash (`power_on`:
the bytes an emulated probe's flash holds after pyOCD wrote them, hil/hw/emulated/loader.py,
or an ELF's segments through -kernel); we read the pty paths of both UARTs from QMP, open
them, and only then let the CPU run (`run`), so not one byte the firmware sends is lost: QEMU 10's pty
writes whenever the other side is open, and the wire is held open here even when the emulated unit
reads it (whose process opens it later and must not flush it: hw/emulated/monitor_unit.py). What
QEMU does lose, and we cannot change, is time on the way in: its pty reads the host's bytes only once
its 1 s reconnect timer has seen our side open, so the first HELLO after a bring-up waits up to 1 s
(measured: 0.997 s; later requests 1 ms). Nothing is dropped: the bytes wait in the pty.
Time is QEMU's instruction counter (-icount), so timer readings are the same on every run. QEMU is always stopped:
on close, on Ctrl-C, and if this process dies (the kernel sends it SIGTERM then, through
PR_SET_PDEATHSIG).
"""

from __future__ import annotations

import json
import logging
import shutil
import socket
import subprocess
import tempfile
import threading
import time
from pathlib import Path

import serial

from hil.hw import protocol
from hil.hw.channel import Channel, open_port
from hil.hw.children import die_with_parent, reap
from hil.errors import HilError
from hil.hw.kinds import BoardKind

QEMU = "qemu-system-arm"
START_TIMEOUT_S = 10.0
logger = logging.getLogger(__name__)


class EmulatorError(HilError):
    """QEMU could not be started or stopped (exit code 2: infrastructure)."""


class Qmp:
    """A minimal QMP client: one JSON object a line, replies matched by their 'return'."""

    def __init__(self, path: Path, timeout: float):
        deadline = time.monotonic() + timeout
        while True:
            try:
                self._socket = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                self._socket.settimeout(timeout)
                self._socket.connect(str(path))
                break
            except (FileNotFoundError, ConnectionRefusedError):
                self._socket.close()
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.02)
        self._reader = self._socket.makefile("r", encoding="utf-8")
        self._read()  # the greeting
        self.execute("qmp_capabilities")

    def _read(self) -> dict:
        line = self._reader.readline()
        if not line:
            raise ConnectionError("QMP connection closed")
        return json.loads(line)

    def execute(self, command: str, **arguments) -> object:
        message = {"execute": command, **({"arguments": arguments} if arguments else {})}
        self._socket.sendall(json.dumps(message).encode() + b"\n")
        while True:
            reply = self._read()
            if "return" in reply:
                return reply["return"]
            if "error" in reply:
                raise RuntimeError(f"QMP {command}: {reply['error'].get('desc')}")
            # anything else is an asynchronous event: skip it

    def close(self) -> None:
        self._reader.close()
        self._socket.close()


class WireRecorder:
    """Reads a board's emulated GPIO wire all the time, as a logic analyser would.

    A real pin never blocks the firmware; a pty does once its buffer is full and nobody
    reads it, and then the firmware would hang in its UART write. So the wire is always
    drained, and the EDGE records are kept until someone takes them (`keep=False`: only drained,
    for a board whose measurement unit has failed, so a long run holds no edges nobody takes).
    """

    def __init__(self, port: serial.SerialBase, name: str = "wire", keep: bool = True):
        self._channel = Channel(port, name)
        self._keep = keep
        self._edges: list[protocol.Edge] = []
        self._lock = threading.Lock()
        self._listener = self._channel.listen(self._on_frame, wait=0.05)  # lost: the board is stopping

    def _on_frame(self, event: protocol.Frame | protocol.FrameError) -> None:
        if self._keep and isinstance(event, protocol.Frame) and event.type == protocol.MessageType.EDGE:
            with self._lock:
                self._edges.append(protocol.Edge.from_payload(event.payload))

    def take(self, settle: float = 0.1) -> list[protocol.Edge]:
        """The edges recorded so far, once the wire has been quiet for `settle` seconds since
        this call (bytes the board sent just before may still be on their way)."""
        called_at = time.monotonic()
        while True:
            with self._lock:
                quiet_for = time.monotonic() - max(self._channel.last_received_at, called_at)
                if quiet_for >= settle:
                    edges, self._edges = self._edges, []
                    return edges
            time.sleep(settle - quiet_for)

    def stop(self) -> None:
        self._listener.stop()


class QemuBoard:
    """One emulated board. Use as a context manager; `link` and `wire` are pyserial ports."""

    def __init__(self, kind: BoardKind, image: Path | None = None, name: str | None = None,
                 record_wire: bool = True):
        """`image`: an ELF that QEMU loads itself; without one, `power_on` is given the flash's bytes.
        `record_wire=False` leaves the GPIO wire to another reader (the emulated measurement
        unit); it is still held open here, so QEMU never sees it disconnected and drops edges."""
        if kind.qemu is None:
            raise EmulatorError(f"{name or kind.name}: board kind {kind.name} has no emulated twin; "
                                "make it a physical board in the lab file")
        self.kind = kind
        self.record_wire = record_wire
        self.image = None if image is None else Path(image)
        self.name = name or kind.name
        self.link: serial.SerialBase | None = None  # UART0: the protocol
        self.wire: serial.SerialBase | None = None  # UART1: GPIO edge records
        self.recorder: WireRecorder | None = None
        self._process: subprocess.Popen | None = None
        self._qmp: Qmp | None = None
        self._workdir: Path | None = None
        self._ptys: dict[str, str] = {}
        self._wire_lock = threading.Lock()  # `drain_wire` may come from another thread than `stop`

    def command(self, qmp_socket: Path, flash_file: Path | None = None) -> list[str]:
        twin = self.kind.qemu
        serials = ["null"] * (max(twin.link_serial, twin.wire_serial) + 1)  # UARTs we do not use
        serials[twin.link_serial], serials[twin.wire_serial] = "chardev:link", "chardev:wire"
        return [
            QEMU, "-M", twin.machine, "-nodefaults", "-display", "none", "-S",
            "-qmp", f"unix:{qmp_socket},server=on,wait=off",
            "-chardev", "pty,id=link", "-chardev", "pty,id=wire",
            *(option for serial in serials for option in ("-serial", serial)),
            "-icount", f"shift={twin.icount_shift},sleep=on",
            *self._image_options(flash_file),
        ]

    def _image_options(self, flash_file: Path | None) -> list[str]:
        if flash_file is None:
            return ["-kernel", str(self.image)]
        # A raw -kernel lands at address 0: the MPS2's code memory, and on an STM32 the boot alias of
        # its main flash (0x0800_0000). `-device loader` cannot write there: it is bounded by the
        # machine's RAM size, which is 0 on QEMU's STM32 machines.
        return ["-kernel", str(flash_file)]

    def start(self) -> "QemuBoard":
        """Power on with the image loaded, then run."""
        self.power_on()
        self.run()
        return self

    def power_on(self, flash: bytes | None = None) -> None:
        """QEMU started with `flash` as its flash's contents (else the ELF), the CPU not yet running."""
        if shutil.which(QEMU) is None:
            raise EmulatorError(f"{self.name}: {QEMU} not found; run setup.sh (it installs qemu-system-arm)")
        if flash is None and (self.image is None or not self.image.is_file()):
            raise EmulatorError(f"{self.name}: firmware image {self.image} not found")
        self._workdir = Path(tempfile.mkdtemp(prefix=f"hil-{self.name}-"))
        qmp_socket = self._workdir / "qmp.sock"
        flash_file = None
        if flash is not None:
            flash_file = self._workdir / "flash.bin"
            flash_file.write_bytes(flash)
        self._process = subprocess.Popen(
            self.command(qmp_socket, flash_file), stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
            stderr=open(self._workdir / "qemu.log", "wb"), preexec_fn=die_with_parent,
        )
        try:
            self._qmp = Qmp(qmp_socket, START_TIMEOUT_S)
            self._ptys = {c["label"]: c["filename"].removeprefix("pty:") for c in self._qmp.execute("query-chardev")}
        except Exception as error:
            raise self._did_not_start(error) from None

    def run(self) -> None:
        """Open both UARTs, then let the CPU run: the firmware's first byte already has a reader."""
        if self._qmp is None:
            raise EmulatorError(f"{self.name}: not powered on")
        try:
            ptys = self._ptys
            self.link = open_port(ptys["link"])
            self.wire = open_port(ptys["wire"])
            if self.record_wire:
                self.recorder = WireRecorder(self.wire, f"{self.name} wire")
            logger.debug("%s: QEMU pid %d, link %s, wire %s", self.name, self._process.pid, ptys["link"], ptys["wire"])
            self._qmp.execute("cont")
        except Exception as error:
            raise self._did_not_start(error) from None

    def drain_wire(self) -> None:
        """Read the GPIO wire from now on, discarding it: its reader (the measurement unit) failed or
        is gone, and unread, the pty fills after a few hundred inferences and the firmware blocks on its
        next edge. Does nothing if the wire is already read here, or the board is stopped."""
        with self._wire_lock:
            if self.wire is not None and self.recorder is None:
                logger.info("%s: the GPIO wire has no reader any more; draining it, the board streams on", self.name)
                self.recorder = WireRecorder(self.wire, f"{self.name} wire", keep=False)

    def _did_not_start(self, error: Exception) -> EmulatorError:
        log = (self._workdir / "qemu.log").read_text(errors="replace").strip().splitlines()
        self.stop()
        detail = log[-1] if log else str(error)
        return EmulatorError(f"{self.name}: QEMU did not start ({detail})")

    def read_memory(self, address: int, size: int) -> bytes:
        """`size` bytes of the machine's memory from `address` (QMP pmemsave), e.g. to read an image back."""
        if self._qmp is None or self._workdir is None:
            raise EmulatorError(f"{self.name}: not running")
        dump = self._workdir / "memory.bin"
        self._qmp.execute("pmemsave", val=address, size=size, filename=str(dump))
        try:
            return dump.read_bytes()
        finally:
            dump.unlink()

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process else None

    def alive(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def reset(self) -> None:
        """A hardware reset, as the reset button does: the firmware starts again, and runs even if the
        machine had been stopped (a frozen board)."""
        if self._qmp is None or not self.alive():
            raise EmulatorError(f"{self.name}: not running")
        try:
            self._qmp.execute("system_reset")
            self._qmp.execute("cont")
        except (OSError, ConnectionError, RuntimeError) as error:
            raise EmulatorError(f"{self.name}: QEMU did not take the reset ({error})") from None

    def stop(self) -> None:
        with self._wire_lock:
            if self.recorder is not None:
                self.recorder.stop()
                self.recorder = None
            for port in (self.link, self.wire):
                if port is not None:
                    port.close()
            self.link = self.wire = None
        if self._qmp is not None:
            try:
                self._qmp.execute("quit")
            except (OSError, ConnectionError, RuntimeError):
                pass  # QEMU may already be gone
            self._qmp.close()
            self._qmp = None
        if self._process is not None:
            reap(self._process)  # QMP's quit asked it to exit
            self._process = None
        if self._workdir is not None:
            shutil.rmtree(self._workdir, ignore_errors=True)
            self._workdir = None

    def __enter__(self) -> "QemuBoard":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
