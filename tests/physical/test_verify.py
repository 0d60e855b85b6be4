"""`hil firmware verify` is a run of images on a rack: the prebuilt images on emulated boards, or
any board of a lab, a physical one too (a Nucleo-L432KC stand-in, tests/support/benches.py), through
the same bring-up, streaming and reconciliation as `hil run`."""

import shutil

import pytest
import yaml

from hil.firmware import build as firmware
from hil.hw.flasher import flash_image
from hil.hw.kinds import BOARD_KINDS
from hil.model.card import load_model
from hil.model.testsets import load_model_testsets

from tests.support.benches import FLASH, KIND, MODEL, physical_lab
from tests.support.labs import hil

pytestmark = pytest.mark.skipif(shutil.which("qemu-system-arm") is None, reason="qemu-system-arm not installed")
PASS, INFRASTRUCTURE = 0, 2


def exactness_rows(markdown: str) -> list[list[str]]:
    """The first table's rows (device against host reference), as cells."""
    table = markdown.split("\n\n")[1]
    return [[cell.strip() for cell in line.strip("|").split("|")] for line in table.splitlines()[2:]]


def test_a_prebuilt_image_is_verified_at_every_threshold():
    result = hil("firmware", "verify", "--board", "mps2-an500", "--model", "qute-mnist1d", "--samples", "3",
                 "--markdown")
    assert result.returncode == PASS, result.stderr[-3000:]
    rows = exactness_rows(result.stdout)
    assert [row[2] for row in rows] == [t.name for t in load_model_testsets(load_model("qute-mnist1d"))]
    assert all(row[:2] == ["mps2-an500", "qute-mnist1d"] and row[3:] == ["3", "yes", "0", "0 of 33"] for row in rows)
    cycles = exactness_rows(result.stdout.split("\n\n", 2)[2])  # the next table: cycles per exit path
    assert len(cycles) == len(rows) and all("–" not in row[3:] for row in cycles)  # both paths ran on every set


def test_a_labs_physical_board_is_flashed_and_verified(tmp_path, nucleo):
    image = firmware.prebuilt(KIND, MODEL).bin.read_bytes()
    board = nucleo("STLINK-0301")
    lab = physical_lab(tmp_path, board.probe.address, board.port)
    result = hil("firmware", "verify", "--lab", lab, "--board", KIND, "--samples", "2", "--markdown",
                 env={"HIL_LOCK_DIR": str(tmp_path / "locks")})
    assert result.returncode == PASS, result.stderr[-3000:]
    assert board.probe.memory(FLASH.origin, len(image)) == image  # put on through pyOCD, as `hil run` does
    assert board.boots == 1
    rows = exactness_rows(result.stdout)
    assert len(rows) == 3  # the bench board's test sets; the lab's emulated an500 board is not of --board
    assert all(row[:2] == [KIND, MODEL] and row[3:] == ["2", "yes", "0", "0 of 22"] for row in rows)
    assert not (tmp_path / "results").exists()  # a verification leaves no run behind


def test_a_board_that_runs_another_image_is_not_verified(tmp_path, nucleo, monkeypatch):
    """The bench board's lab entry says qute-mnist1d, and its probe is flashed with it, but the serial port
    in the lab file is another Nucleo's (two USB cables swapped), whose MCU runs qute-digits: HELLO names
    another image, the rack sets the board aside, and verify says so (exit 2, as `hil run`)."""
    monkeypatch.setenv("HIL_LOCK_DIR", str(tmp_path / "locks"))
    flashed, other = nucleo("STLINK-0302"), nucleo("STLINK-0303")
    digits = firmware.prebuilt(KIND, MODEL)
    flash_image(other.probe.address, BOARD_KINDS[KIND].pyocd_target, digits.bin, digits.image_sha256,
                base_address=FLASH.origin)
    lab = physical_lab(tmp_path, flashed.probe.address, other.port)
    data = yaml.safe_load(lab.read_text())
    bench = next(b for b in data["boards"] if b["slot"] == "bench-1")
    bench["model"] = "qute-mnist1d"
    data["firmware"][KIND]["qute-mnist1d"] = str(firmware.PREBUILT_DIR / KIND / "qute-mnist1d" / "manifest.json")
    lab.write_text(yaml.safe_dump(data, sort_keys=False))
    result = hil("firmware", "verify", "--lab", lab, "--board", KIND, "--samples", "2", "--markdown",
                 env={"HIL_LOCK_DIR": str(tmp_path / "locks")})
    assert (flashed.boots, other.boots) == (1, 1)  # each MCU runs what its own probe flashed
    assert result.returncode == INFRASTRUCTURE, result.stderr[-3000:]
    assert all(row[4] == "NO" for row in exactness_rows(result.stdout))
    (line,) = [line for line in result.stderr.splitlines() if line.startswith("hil: bench-1: identity failed")]
    assert "reflash the board" in line
