"""`hil firmware verify` is a run of images on a rack: the prebuilt images on emulated boards, or
any board of a lab, a physical one too (its probe and serial port stood in for as in
tests/physical/), through the same bring-up, streaming and reconciliation as `hil run`."""

import shutil

import pytest
import yaml

from hil.firmware import build as firmware
from hil.hw.emulated.probe import EmulatedProbe
from hil.model.card import load_model
from hil.model.testsets import load_model_testsets

from tests.support.benches import KIND, MODEL, physical_lab
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


def test_a_labs_physical_board_is_flashed_and_verified(tmp_path, uart):
    image = firmware.prebuilt(KIND, MODEL).bin.read_bytes()
    with EmulatedProbe("DAPLINK-0301", "cortex_m") as probe:
        lab = physical_lab(tmp_path, probe.address, uart)
        result = hil("firmware", "verify", "--lab", lab, "--board", KIND, "--samples", "2", "--markdown",
                     env={"HIL_LOCK_DIR": str(tmp_path / "locks")})
        assert result.returncode == PASS, result.stderr[-3000:]
        assert probe.memory(0, len(image)) == image  # put on through pyOCD, as `hil run` does
    rows = exactness_rows(result.stdout)
    assert len(rows) == 3  # the bench board's test sets; the lab's emulated an500 board is not of --board
    assert all(row[:2] == [KIND, MODEL] and row[3:] == ["2", "yes", "0", "0 of 22"] for row in rows)
    assert not (tmp_path / "results").exists()  # a verification leaves no run behind


def test_a_board_that_runs_another_image_is_not_verified(tmp_path, uart):
    """The bench board's lab entry says qute-mnist1d, but its MCU runs qute-digits: HELLO names
    another image, the rack sets the board aside, and verify says so (exit 2, as `hil run`)."""
    with EmulatedProbe("DAPLINK-0302", "cortex_m") as probe:
        lab = physical_lab(tmp_path, probe.address, uart)
        data = yaml.safe_load(lab.read_text())
        bench = next(b for b in data["boards"] if b["slot"] == "bench-1")
        bench["model"] = "qute-mnist1d"
        data["firmware"][KIND]["qute-mnist1d"] = str(firmware.PREBUILT_DIR / KIND / "qute-mnist1d" / "manifest.json")
        lab.write_text(yaml.safe_dump(data, sort_keys=False))
        result = hil("firmware", "verify", "--lab", lab, "--board", KIND, "--samples", "2", "--markdown",
                     env={"HIL_LOCK_DIR": str(tmp_path / "locks")})
    assert result.returncode == INFRASTRUCTURE, result.stderr[-3000:]
    assert all(row[4] == "NO" for row in exactness_rows(result.stdout))
    (line,) = [line for line in result.stderr.splitlines() if line.startswith("hil: bench-1: identity failed")]
    assert "reflash the board" in line
