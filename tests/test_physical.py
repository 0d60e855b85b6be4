"""`hil run` with a physical board, as far as one can exist here.

The physical board's two connections are stood in for at their lowest level:
- its debug probe is hil.hw.emulated.probe, which unmodified pyOCD (in hil.hw.flasher's child
  process) connects to, flashes, reads back and resets;
- its USB serial port is a pseudo-terminal with the firmware image running behind it in
  QEMU (the MCU's UART), opened by path as a /dev/ttyACM port would be.
So the orchestrator runs its whole physical path: exact probe id, lock, flash, verify,
reset, serial port by path, HELLO identity, streaming, reconciliation.
"""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from hil.firmware import build as firmware
from hil.hw.emulated.qemu import QemuBoard
from hil.hw.kinds import BOARD_KINDS
from hil.hw.emulated.probe import ProbeServer
from hil.run.records import read_records

sys.path.insert(0, str(Path(__file__).parent))
from test_run import write_lab  # noqa: E402

pytestmark = pytest.mark.skipif(shutil.which("qemu-system-arm") is None, reason="qemu-system-arm not installed")
PASS, INFRASTRUCTURE = 0, 2
KIND, MODEL = "mps2-an386", "qute-digits"


@pytest.fixture
def uart():
    """The MCU behind the serial port: the image running in QEMU, its UART0 pty free for the lab."""
    board = QemuBoard(BOARD_KINDS[KIND], firmware.prebuilt(KIND, MODEL).elf, name="bench-uart").start()
    path = board.link.port
    board.link.close()  # the lab opens the port itself, by path, exclusively
    yield path
    board.stop()


def physical_lab(tmp_path: Path, probe: str, port: str) -> Path:
    lab = write_lab(tmp_path, boards={"an500-mnist1d": ("mps2-an500", "qute-mnist1d"), "bench-1": (KIND, MODEL)},
                    samples=10)
    data = yaml.safe_load(lab.read_text())
    bench = next(b for b in data["boards"] if b["slot"] == "bench-1")
    del bench["emulated"]
    bench.update(probe={"unique_id": probe, "target": "cortex_m"}, serial={"port": port})
    lab.write_text(yaml.safe_dump(data, sort_keys=False))
    return lab


def run(lab: Path, tmp_path: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "NO_COLOR": "1", "HIL_LOCK_DIR": str(tmp_path / "locks")}
    return subprocess.run([sys.executable, "-m", "hil.cli", "run", str(lab), "--json"], capture_output=True,
                          text=True, env=env, timeout=300)


def test_a_physical_board_is_flashed_verified_reset_and_streamed(tmp_path, uart):
    image = firmware.prebuilt(KIND, MODEL).bin.read_bytes()
    with ProbeServer("DAPLINK-0001") as probe:
        result = run(physical_lab(tmp_path, probe.address, uart), tmp_path)
        assert result.returncode == PASS, result.stderr[-2000:]
        assert probe.read_memory(0, len(image)) == image
        assert probe.resets >= 1
    summary = json.loads(result.stdout)
    bench = summary["boards"]["bench-1"]
    assert bench["emulated"] is False and bench["probe"] == probe.address and bench["serial_port"] == uart
    assert bench["flash"]["verified"] and bench["flash"]["image_sha256"] == firmware.prebuilt(KIND, MODEL).image_sha256
    assert bench["flash"]["method"] == "pyocd"
    assert bench["flash"]["base_address"] == firmware.prebuilt(KIND, MODEL).load_address
    emulated = summary["boards"]["an500-mnist1d"]["flash"]  # every board reports its flash, emulated ones too
    assert emulated["method"] == "qemu-loader" and emulated["verified"]
    records = read_records(Path(summary["run_dir"]))
    assert len([r for r in records if r.slot == "bench-1"]) == 30
    assert all(s["exact"] == s["samples"] == s["expected"] for s in summary["summaries"])


def test_a_flash_that_does_not_verify_sets_the_board_aside(tmp_path, uart):
    with ProbeServer("DAPLINK-0002", corrupt_writes_at=0x100) as probe:
        result = run(physical_lab(tmp_path, probe.address, uart), tmp_path)
    assert result.returncode == INFRASTRUCTURE, result.stderr[-2000:]
    summary = json.loads(result.stdout)
    (failure,) = summary["failures"]
    assert failure["slot"] == "bench-1" and failure["stage"] == "bring-up"
    assert "verify" in failure["reason"] and probe.address in failure["reason"] and "\n" not in failure["reason"]
    records = read_records(Path(summary["run_dir"]))
    assert records and {r.slot for r in records} == {"an500-mnist1d"}  # the other board went on


def test_a_probe_that_is_not_there_is_a_one_line_board_failure(tmp_path, uart):
    with ProbeServer("gone") as probe:
        address = probe.address  # a port that nobody serves once the server is stopped
    result = run(physical_lab(tmp_path, address, uart), tmp_path)
    assert result.returncode == INFRASTRUCTURE, result.stderr[-2000:]
    (failure,) = json.loads(result.stdout)["failures"]
    assert failure["slot"] == "bench-1" and address in failure["reason"] and "\n" not in failure["reason"]


@pytest.fixture
def bench():
    """The MCU (QEMU) and a measurement unit on its pins, each on its own serial port: the unit is
    hil.hw.emulated.monitor_unit reading the MCU's edge wire, as a physical unit would on a USB port."""
    board = QemuBoard(BOARD_KINDS[KIND], firmware.prebuilt(KIND, MODEL).elf, name="bench", record_wire=False).start()
    uart = board.link.port
    board.link.close()
    units = []

    def unit(tmp_path: Path, clock_hz: int) -> str:
        process = subprocess.Popen([sys.executable, "-m", "hil.hw.emulated.monitor_unit", "--wire", board.wire.port, "--kind", KIND,
                                    "--clock-hz", str(clock_hz), "--truth", str(tmp_path / "truth.jsonl")],
                                   stdout=subprocess.PIPE, text=True)
        units.append(process)
        return process.stdout.readline().strip()

    yield uart, unit
    for process in units:
        process.terminate()
        process.wait()
    board.stop()


def with_monitor(lab: Path, port: str) -> Path:
    data = yaml.safe_load(lab.read_text())
    profile = BOARD_KINDS[KIND].power
    next(b for b in data["boards"] if b["slot"] == "bench-1")["monitor"] = {
        "port": port, "shunt_ohms": profile.shunt_ohms, "max_current_a": profile.max_current_a}
    lab.write_text(yaml.safe_dump(data, sort_keys=False))
    return lab


def test_a_physical_boards_measurement_unit_is_read_through_the_lab(tmp_path, bench):
    uart, unit = bench
    with ProbeServer("DAPLINK-0003") as probe:
        lab = with_monitor(physical_lab(tmp_path, probe.address, uart), unit(tmp_path, 25_000_000))
        result = run(lab, tmp_path)
    assert result.returncode == PASS, result.stderr[-2000:]
    summary = json.loads(result.stdout)
    rows = [p for p in summary["performance"] if p["slot"] == "bench-1"]
    assert rows and all(p["clock_ok"] for p in rows)
    assert sum(p["inferences"] for p in rows) == 30 and not any(p["unmeasured"] for p in rows)


def test_a_unit_on_another_clock_is_reported_as_a_clock_problem(tmp_path, bench):
    uart, unit = bench
    with ProbeServer("DAPLINK-0004") as probe:
        # The unit believes its ticks are 24 MHz ones: every busy window reads 4% long.
        lab = with_monitor(physical_lab(tmp_path, probe.address, uart), unit(tmp_path, 24_000_000))
        result = run(lab, tmp_path)
    assert result.returncode == INFRASTRUCTURE, result.stderr[-2000:]
    (failure,) = json.loads(result.stdout)["failures"]
    assert failure["slot"] == "bench-1" and failure["stage"] == "clock"
    assert "differ by more than 1%" in failure["reason"]
