"""The recovery ladder on the bench's Nucleo (tests/support/benches.py), through a real `hil run`: its MCU
hangs mid-run; resync cannot wake it; pyOCD resets it through its (emulated) ST-LINK, it boots again and
goes on from the sample it failed on. Where the reset boots an image that is no longer the verified one,
the reflash brings it back, through a flash write that fails once; where the probe is gone, nothing does."""

import json
import subprocess
from pathlib import Path

from hil.run.records import read_records
from hil.store import files
from tests.support.benches import FLASH, KIND, MODEL, physical_lab
from tests.support.labs import INFRASTRUCTURE, PASS, running

PREBUILT = Path(__file__).resolve().parents[2] / "firmware/prebuilt" / KIND / MODEL


def run_with_fault(tmp_path, board, fault) -> tuple[subprocess.Popen, str, str, object]:
    """`hil run` of the bench; once bench-1 has answered, `fault()`; then the run to its end."""
    owner, run_dir = running(physical_lab(tmp_path, board.probe.address, board.port, samples=20))
    while not any(r.slot == "bench-1" for r in read_records(run_dir)):
        pass
    fault()
    try:
        stdout, stderr = owner.communicate(timeout=300)
    except subprocess.TimeoutExpired:
        owner.kill()
        raise AssertionError("the run hung on the board that failed") from None
    return owner, stdout, stderr, run_dir


def test_a_hung_nucleo_is_reset_through_its_probe_and_goes_on(tmp_path, nucleo):
    board = nucleo("STLINK-0301")
    owner, stdout, stderr, run_dir = run_with_fault(tmp_path, board, board.hang)
    assert owner.returncode == PASS, stderr[-3000:]
    assert json.loads(stdout)["failures"] == []
    (recovery,) = files.read_run(run_dir).recoveries
    assert (recovery.slot, recovery.recovered_by) == ("bench-1", "reset"), recovery
    assert [(s.step, s.ok) for s in recovery.steps] == [("resync", False), ("reset", True)]
    assert board.boots == 2  # flashed, then reset through the probe
    records = [r for r in read_records(run_dir) if r.slot == "bench-1"]
    assert len(records) == len({r.key for r in records}) == 3 * 20


def test_a_nucleo_whose_flash_rotted_is_reflashed_through_a_flash_write_that_fails_once(tmp_path, nucleo):
    board = nucleo("STLINK-0303")

    def rot_and_hang() -> None:
        flipped = FLASH.origin + 0x6000  # inside the image: the firmware's self-hash no longer matches
        board.probe.core.load(flipped, bytes([board.probe.memory(flipped, 1)[0] ^ 0x10]))
        board.probe.failing_programs = 1  # the reflash's first write of that page fails (PROGERR)
        board.hang()

    owner, stdout, stderr, run_dir = run_with_fault(tmp_path, board, rot_and_hang)
    assert owner.returncode == PASS, stderr[-3000:]
    (recovery,) = files.read_run(run_dir).recoveries
    assert [(s.step, s.ok) for s in recovery.steps] == [("resync", False), ("reset", False), ("reflash", True)]
    assert "board reports firmware" in recovery.steps[1].detail, recovery.steps[1]  # booted, not the image
    flash = recovery.steps[2].flash
    assert (flash["attempts"], flash["verified"]) == (2, True), flash
    (first,) = flash["failed_attempts"]
    assert "flash programming failed at 0x08006000" in first and "time" not in first, first  # a flash error
    assert board.boots == 3  # flashed, reset into the rotten image, reflashed
    image = (PREBUILT / "firmware.bin").read_bytes()
    assert board.probe.memory(FLASH.origin, len(image)) == image  # the verified image again, the bit put right
    records = [r for r in read_records(run_dir) if r.slot == "bench-1"]
    assert len(records) == len({r.key for r in records}) == 3 * 20


def test_a_hung_nucleo_whose_probe_stops_answering_climbs_the_whole_ladder_and_is_quarantined(tmp_path, nucleo):
    board = nucleo("STLINK-0302")

    def probe_gone_and_hung() -> None:
        board.probe.stop()  # the ST-LINK is gone: nothing can reset or flash the board now
        board.hang()

    owner, stdout, stderr, run_dir = run_with_fault(tmp_path, board, probe_gone_and_hung)
    assert owner.returncode == INFRASTRUCTURE, stderr[-3000:]
    (failure,) = json.loads(stdout)["failures"]
    assert failure["slot"] == "bench-1" and "quarantined for the rest of the run" in failure["reason"], failure
    (recovery,) = files.read_run(run_dir).recoveries
    assert recovery.recovered_by is None and [(s.step, s.ok) for s in recovery.steps] == [
        ("resync", False), ("reset", False), ("reflash", False), ("power-cycle", False), ("quarantine", True)]
    assert "probe" in recovery.steps[1].detail and "power_cycle.command" in recovery.steps[3].detail, recovery
    records = [r for r in read_records(run_dir) if r.slot == "bench-1"]
    assert records and len(records) == len({r.key for r in records}) < 3 * 20  # what it answered is kept, once
    others = [r for r in read_records(run_dir) if r.slot != "bench-1"]
    assert len(others) == 3 * 20  # the emulated board beside it finished
