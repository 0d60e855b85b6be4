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

from hil.firmware import build as firmware
from hil.hw.emulated.probe import EmulatedProbe
from hil.run.records import read_records

from tests.support.benches import KIND, MODEL, physical_lab, with_monitor

pytestmark = pytest.mark.skipif(shutil.which("qemu-system-arm") is None, reason="qemu-system-arm not installed")
PASS, INFRASTRUCTURE = 0, 2


def run(lab: Path, tmp_path: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "NO_COLOR": "1", "HIL_LOCK_DIR": str(tmp_path / "locks")}
    return subprocess.run([sys.executable, "-m", "hil.cli", "run", str(lab), "--json"], capture_output=True,
                          text=True, env=env, timeout=300)


def test_a_physical_board_is_flashed_verified_reset_and_streamed(tmp_path, uart):
    image = firmware.prebuilt(KIND, MODEL).bin.read_bytes()
    with EmulatedProbe("DAPLINK-0001", "cortex_m") as probe:
        result = run(physical_lab(tmp_path, probe.address, uart), tmp_path)
        assert result.returncode == PASS, result.stderr[-2000:]
        assert probe.memory(0, len(image)) == image
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
    with EmulatedProbe("DAPLINK-0002", "cortex_m", corrupt_program_at=0x100) as probe:
        result = run(physical_lab(tmp_path, probe.address, uart), tmp_path)
    assert result.returncode == INFRASTRUCTURE, result.stderr[-2000:]
    summary = json.loads(result.stdout)
    (failure,) = summary["failures"]
    assert failure["slot"] == "bench-1" and failure["stage"] == "bring-up"
    assert "verify" in failure["reason"] and probe.address in failure["reason"] and "\n" not in failure["reason"]
    records = read_records(Path(summary["run_dir"]))
    assert records and {r.slot for r in records} == {"an500-mnist1d"}  # the other board went on


def test_a_probe_that_is_not_there_is_a_one_line_board_failure(tmp_path, uart):
    with EmulatedProbe("gone", "cortex_m") as probe:
        address = probe.address  # a port that nobody serves once the server is stopped
    result = run(physical_lab(tmp_path, address, uart), tmp_path)
    assert result.returncode == INFRASTRUCTURE, result.stderr[-2000:]
    (failure,) = json.loads(result.stdout)["failures"]
    assert failure["slot"] == "bench-1" and address in failure["reason"] and "\n" not in failure["reason"]


def test_a_physical_boards_measurement_unit_is_read_through_the_lab(tmp_path, bench):
    uart, unit = bench
    with EmulatedProbe("DAPLINK-0003", "cortex_m") as probe:
        lab = with_monitor(physical_lab(tmp_path, probe.address, uart), unit(tmp_path, 25_000_000))
        result = run(lab, tmp_path)
    assert result.returncode == PASS, result.stderr[-2000:]
    summary = json.loads(result.stdout)
    rows = [p for p in summary["performance"] if p["slot"] == "bench-1"]
    assert rows and all(p["clock_ok"] for p in rows)
    assert sum(p["inferences"] for p in rows) == 30 and not any(p["unmeasured"] for p in rows)


def test_a_unit_on_another_clock_is_reported_as_a_clock_problem(tmp_path, bench):
    uart, unit = bench
    with EmulatedProbe("DAPLINK-0004", "cortex_m") as probe:
        # The unit believes its ticks are 24 MHz ones: every busy window reads 4% long.
        lab = with_monitor(physical_lab(tmp_path, probe.address, uart), unit(tmp_path, 24_000_000))
        result = run(lab, tmp_path)
    assert result.returncode == INFRASTRUCTURE, result.stderr[-2000:]
    (failure,) = json.loads(result.stdout)["failures"]
    assert failure["slot"] == "bench-1" and failure["stage"] == "clock"
    assert "differ by more than 1%" in failure["reason"]
