"""`hil run` with a physical board, as far as one can exist here: a Nucleo-L432KC stand-in
(tests/support/benches.py), its two connections stood in for at their lowest level:
- its ST-LINK's SWD side is hil.hw.emulated.probe (target stm32l432kc), which unmodified pyOCD (in
  hil.hw.flasher's child process) connects to, flashes through the chip's flash algorithm, reads back
  and resets;
- its USB serial port is a pseudo-terminal, opened by path as a /dev/ttyACM port would be, bridged to
  the MCU's USART2: QEMU booting what the probe's flash holds once pyOCD's reset lets the chip run.
So the orchestrator runs its whole physical path: exact probe id, lock, flash, verify, reset, serial
port by path, HELLO identity, streaming, reconciliation; and the bytes that answer are the flashed ones.
"""

import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from hil.firmware import build as firmware
from hil.hw.emulated.probe import EmulatedProbe
from hil.hw.kinds import BOARD_KINDS
from hil.run.records import read_records

from tests.support.benches import FLASH, KIND, MODEL, physical_lab, with_monitor

pytestmark = pytest.mark.skipif(shutil.which("qemu-system-arm") is None, reason="qemu-system-arm not installed")
PASS, INFRASTRUCTURE = 0, 2
TIMER_HZ = BOARD_KINDS[KIND].timer_hz
OFFSET = 0x200  # inside .text, past the vector table: a byte the firmware hashes and never runs first


def run(lab: Path, tmp_path: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "NO_COLOR": "1", "HIL_LOCK_DIR": str(tmp_path / "locks")}
    return subprocess.run([sys.executable, "-m", "hil.cli", "run", str(lab), "--json"], capture_output=True,
                          text=True, env=env, timeout=300)


def test_a_physical_board_is_flashed_verified_reset_and_streamed(tmp_path, nucleo):
    image = firmware.prebuilt(KIND, MODEL).bin.read_bytes()
    board = nucleo("STLINK-0001")
    probe = board.probe
    result = run(physical_lab(tmp_path, probe.address, board.port), tmp_path)
    assert result.returncode == PASS, result.stderr[-2000:]
    assert probe.memory(FLASH.origin, len(image)) == image
    assert probe.resets >= 1 and board.boots == 1  # flashed, reset once, and what it held booted
    summary = json.loads(result.stdout)
    bench = summary["boards"]["bench-1"]
    assert bench["emulated"] is False and bench["probe"] == probe.address and bench["serial_port"] == board.port
    assert bench["flash"]["verified"] and bench["flash"]["image_sha256"] == firmware.prebuilt(KIND, MODEL).image_sha256
    assert bench["flash"]["method"] == "pyocd"
    assert bench["flash"]["base_address"] == firmware.prebuilt(KIND, MODEL).load_address
    emulated = summary["boards"]["an500-mnist1d"]["flash"]  # every board reports its flash, emulated ones too
    assert emulated["method"] == "pyocd" and emulated["verified"]
    records = read_records(Path(summary["run_dir"]))
    assert len([r for r in records if r.slot == "bench-1"]) == 30
    assert all(s["exact"] == s["samples"] == s["expected"] for s in summary["summaries"])


def test_a_flash_that_does_not_verify_sets_the_board_aside(tmp_path, nucleo):
    board = nucleo("STLINK-0002", corrupt_program_at=FLASH.origin + 0x100)
    probe = board.probe
    result = run(physical_lab(tmp_path, probe.address, board.port), tmp_path)
    assert result.returncode == INFRASTRUCTURE, result.stderr[-2000:]
    assert board.boots == 0  # pyOCD stopped at the verify: the chip was never reset to run
    summary = json.loads(result.stdout)
    (failure,) = summary["failures"]
    assert failure["slot"] == "bench-1" and failure["stage"] == "bring-up"
    assert "verify" in failure["reason"] and probe.address in failure["reason"] and "\n" not in failure["reason"]
    records = read_records(Path(summary["run_dir"]))
    assert records and {r.slot for r in records} == {"an500-mnist1d"}  # the other board went on


def test_a_probe_that_is_not_there_is_a_one_line_board_failure(tmp_path, nucleo):
    board = nucleo("STLINK-0005")  # its USB serial port is there; the probe in the lab file is not
    with EmulatedProbe("gone", "stm32l432kc") as probe:
        address = probe.address  # a port that nobody serves once the server is stopped
    result = run(physical_lab(tmp_path, address, board.port), tmp_path)
    assert result.returncode == INFRASTRUCTURE, result.stderr[-2000:]
    (failure,) = json.loads(result.stdout)["failures"]
    assert failure["slot"] == "bench-1" and address in failure["reason"] and "\n" not in failure["reason"]


def test_a_physical_boards_measurement_unit_is_read_through_the_lab(tmp_path, nucleo, unit):
    board = nucleo("STLINK-0003", wire=True)
    lab = with_monitor(physical_lab(tmp_path, board.probe.address, board.port), unit(board, TIMER_HZ))
    result = run(lab, tmp_path)
    assert result.returncode == PASS, result.stderr[-2000:]
    summary = json.loads(result.stdout)
    rows = [p for p in summary["performance"] if p["slot"] == "bench-1"]
    assert rows and all(p["clock_ok"] for p in rows)
    assert sum(p["inferences"] for p in rows) == 30 and not any(p["unmeasured"] for p in rows)


def test_a_unit_on_another_clock_is_reported_as_a_clock_problem(tmp_path, nucleo, unit):
    board = nucleo("STLINK-0004", wire=True)
    # The unit believes its ticks are 4% slower ones (76.8 MHz, not 80): every busy window reads 4% long.
    lab = with_monitor(physical_lab(tmp_path, board.probe.address, board.port), unit(board, TIMER_HZ * 24 // 25))
    result = run(lab, tmp_path)
    assert result.returncode == INFRASTRUCTURE, result.stderr[-2000:]
    (failure,) = json.loads(result.stdout)["failures"]
    assert failure["slot"] == "bench-1" and failure["stage"] == "clock"
    assert "differ by more than 1%" in failure["reason"]


def test_a_byte_changed_after_the_verify_runs_and_hello_refuses_the_board(tmp_path, nucleo):
    """The flash verifies, then a bit flips in it (the probe's tamper_after_verify_at): the MCU boots those
    bytes, its HELLO hash is not the manifest's, and the run sets the board aside; the other board finishes."""
    manifest = firmware.prebuilt(KIND, MODEL)
    image = manifest.bin.read_bytes()
    board = nucleo("STLINK-0006", tamper_after_verify_at=FLASH.origin + OFFSET)
    result = run(physical_lab(tmp_path, board.probe.address, board.port), tmp_path)
    assert result.returncode == INFRASTRUCTURE, result.stderr[-2000:]
    flashed = board.probe.memory(FLASH.origin, len(image))
    assert [i for i in range(len(image)) if flashed[i] != image[i]] == [OFFSET] and board.boots == 1
    summary = json.loads(result.stdout)
    (failure,) = summary["failures"]
    # Past bring-up (flash, read-back verify, reset), refused at identity: by what the MCU itself says.
    assert failure["slot"] == "bench-1" and failure["stage"] == "identity" and "\n" not in failure["reason"]
    # The hash HELLO reports is that of the bytes the probe's flash holds, not the manifest's.
    assert f"board reports firmware {hashlib.sha256(flashed).hexdigest()[:12]}" in failure["reason"]
    assert f"but its manifest says {manifest.image_sha256[:12]}" in failure["reason"]
    assert failure["reason"].endswith("reflash the board")
    records = read_records(Path(summary["run_dir"]))
    assert len(records) == 30 and {r.slot for r in records} == {"an500-mnist1d"}  # the other board finished
    assert all(s["exact"] == s["samples"] == s["expected"] for s in summary["summaries"] if s["slot"] != "bench-1")
