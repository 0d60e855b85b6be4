"""Serial ports given as pyserial URLs: a board and its measurement unit reached over the network.

The lab takes `socket://HOST:PORT` and `rfc2217://HOST:PORT` wherever it takes a port path,
checks only that pyserial knows the protocol, and hands the URL to the board, which opens it
with serial.serial_for_url. The servers here are what a remote bench runs in front of its
USB ports: a raw TCP relay (socket://), and RFC 2217 by pyserial's own PortManager (as its
rfc2217_server example does), each in front of a real serial port: the bench Nucleo's USB serial
port (a pty bridged to the flashed firmware in QEMU), and the pty of the emulated measurement unit
on that board's pins.
"""

import json
import os
import shutil
import socket
import subprocess
import sys
import threading
from pathlib import Path

import pytest
import serial
import serial.rfc2217
import yaml

from hil.firmware import build as firmware
from hil.hw.kinds import BOARD_KINDS
from hil.lab.load import LabError, load_lab
from hil.run.records import read_records

from tests.support.benches import KIND, MODEL, physical_lab, with_monitor

pytestmark = pytest.mark.skipif(shutil.which("qemu-system-arm") is None, reason="qemu-system-arm not installed")
PASS, BAD_INPUT = 0, 3


class PortServer:
    """A TCP server in front of a local serial port, one client at a time: raw bytes both ways
    (a socket:// port) or RFC 2217 (an rfc2217:// port). `relayed` counts the bytes it carried."""

    def __init__(self, device: str, rfc2217: bool = False):
        self.rfc2217 = rfc2217
        self.port = _PtySerial(device, timeout=0.05)
        self.server = socket.create_server(("127.0.0.1", 0))
        self.server.settimeout(0.2)
        self.url = f"{'rfc2217' if rfc2217 else 'socket'}://127.0.0.1:{self.server.getsockname()[1]}"
        self.relayed = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self.server.close()
        self.port.close()

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                client, _ = self.server.accept()
            except TimeoutError:
                continue
            with client:
                self._relay(client)

    def _relay(self, client: socket.socket) -> None:
        client.settimeout(0.2)
        manager = serial.rfc2217.PortManager(self.port, _Writer(client)) if self.rfc2217 else None
        done = threading.Event()

        def to_client() -> None:
            while not done.is_set():
                data = self.port.read(self.port.in_waiting or 1)
                if data:
                    self.relayed += len(data)
                    try:
                        client.sendall(b"".join(manager.escape(data)) if manager else data)
                    except OSError:
                        return

        reader = threading.Thread(target=to_client, daemon=True)
        reader.start()
        try:
            while not self._stop.is_set():
                try:
                    data = client.recv(4096)
                except TimeoutError:
                    continue
                except OSError:
                    break
                if not data:
                    break  # the client closed its port
                data = b"".join(manager.filter(data)) if manager else data
                self.relayed += len(data)
                self.port.write(data)
        finally:
            done.set()
            reader.join(timeout=2)


class _PtySerial(serial.Serial):
    """A pty as a serial port with modem lines: a pty has none (their ioctls fail), so DTR and RTS
    go nowhere and CTS, DSR, RI and CD read low, as on a USB serial adapter with nothing wired."""

    def _update_dtr_state(self) -> None:
        pass

    def _update_rts_state(self) -> None:
        pass

    cts = dsr = ri = cd = property(lambda self: False)


class _Writer:
    """What PortManager writes its option replies to: the client's socket."""

    def __init__(self, client: socket.socket):
        self.client = client

    def write(self, data: bytes) -> None:
        self.client.sendall(data)


def test_a_board_and_its_unit_run_over_socket_and_rfc2217_urls(tmp_path, nucleo, unit):
    board = nucleo("STLINK-URL1", wire=True)
    with (PortServer(board.port) as board_port,
          PortServer(unit(board, BOARD_KINDS[KIND].timer_hz), rfc2217=True) as unit_port):
        lab = with_monitor(physical_lab(tmp_path, board.probe.address, board_port.url), unit_port.url)
        assert {b.slot: b.physical.serial.device for b in load_lab(lab).boards if b.physical} == {
            "bench-1": board_port.url}
        env = {**os.environ, "NO_COLOR": "1", "HIL_LOCK_DIR": str(tmp_path / "locks")}
        result = subprocess.run([sys.executable, "-m", "hil.cli", "run", str(lab), "--json"], capture_output=True,
                                text=True, env=env, timeout=300)
        assert result.returncode == PASS, result.stderr[-2000:]
        assert board_port.relayed > 0 and unit_port.relayed > 0
    summary = json.loads(result.stdout)
    bench_1 = summary["boards"]["bench-1"]
    assert bench_1["emulated"] is False and bench_1["serial_port"] == board_port.url
    assert bench_1["flash"]["image_sha256"] == firmware.prebuilt(KIND, MODEL).image_sha256
    assert len([r for r in read_records(Path(summary["run_dir"])) if r.slot == "bench-1"]) == 30
    assert all(s["exact"] == s["samples"] == s["expected"] for s in summary["summaries"])
    rows = [p for p in summary["performance"] if p["slot"] == "bench-1"]
    assert sum(p["inferences"] for p in rows) == 30 and not any(p["unmeasured"] for p in rows)
    assert all(p["clock_ok"] for p in rows)


def lab_with_port(tmp_path: Path, port: str) -> Path:
    """A lab whose physical board's serial port is `port`; its probe is never reached at load."""
    return physical_lab(tmp_path, "remote:127.0.0.1:1", port)


def test_a_url_port_is_taken_as_given_and_not_checked_as_a_path(tmp_path):
    lab = load_lab(lab_with_port(tmp_path, "socket://127.0.0.1:1"))
    (physical,) = [b.physical for b in lab.boards if b.physical]
    assert physical.serial.port == physical.serial.device == "socket://127.0.0.1:1"


def test_a_local_port_is_resolved_once_to_its_real_path(tmp_path):
    master, slave = os.openpty()
    try:
        link = tmp_path / "ttyBENCH"
        link.symlink_to(os.ttyname(slave))
        lab = load_lab(lab_with_port(tmp_path, str(link)))
        (physical,) = [b.physical for b in lab.boards if b.physical]
        assert physical.serial.port == str(link) and physical.serial.device == os.ttyname(slave)
    finally:
        os.close(master)
        os.close(slave)


@pytest.mark.parametrize("port, problem", [
    ("bogus://127.0.0.1:1", "protocol 'bogus' not known"),
    (str(Path("/dev") / "ttyNOTHERE0"), "not found"),
])
def test_a_port_pyserial_cannot_open_is_a_one_line_lab_error(tmp_path, port, problem):
    lab = lab_with_port(tmp_path, port)
    result = subprocess.run([sys.executable, "-m", "hil.cli", "run", str(lab)], capture_output=True, text=True,
                            env={**os.environ, "HIL_LOCK_DIR": str(tmp_path / "locks")}, timeout=120)
    assert result.returncode == BAD_INPUT
    (line,) = result.stderr.strip().splitlines()
    assert f"{lab}:" in line and "boards[1].serial" in line and problem in line and port in line
    assert not (tmp_path / "results").exists()


def test_two_boards_cannot_claim_one_url(tmp_path):
    lab = lab_with_port(tmp_path, "socket://127.0.0.1:1")
    data = yaml.safe_load(lab.read_text())
    data["boards"][0] = {**data["boards"][1], "slot": "bench-2", "probe": {"unique_id": "remote:127.0.0.1:2",
                                                                            "target": "stm32l432kc"}}
    lab.write_text(yaml.safe_dump(data, sort_keys=False))
    with pytest.raises(LabError, match="socket://127.0.0.1:1 is already used by board bench-2"):
        load_lab(lab)
