"""The health check on the emulated rack (QEMU, real firmware).

A board whose manifest claims the digits model but ships the MNIST-1D image (consistent on disk, so only its
HELLO can tell) fails its check three nights running while the other board is judged, is quarantined on the
third, not brought up (no QEMU, no flashing) on the fourth, then released, given the good image, and checked
again. A board whose image has one corrupted weight (its manifest re-hashed, so HELLO names it exactly)
answers the known question wrongly: alone with its image it cannot be told from the image, so it streams and
the run is a regression (exit 1), not held against the board."""

import hashlib
import json
import shutil
import struct
import xml.etree.ElementTree as ET
from pathlib import Path

from elftools.elf.elffile import ELFFile

from hil.firmware import build as firmware
from tests.support.labs import INFRASTRUCTURE, PASS, REGRESSION, hil, write_lab

SICK = "an386-digits"
BOARDS = {SICK: ("mps2-an386", "qute-digits"), "an500-mnist1d": ("mps2-an500", "qute-mnist1d")}
SYMBOL = "stage1_op5_bias"  # the exit head's bias: every sample's exit logit 0 moves


def corrupted_image(tmp_path: Path) -> Path:
    """The prebuilt digits image with the exit head's first bias raised, its manifest's image_sha256 made to
    match: consistent on disk, so only an answer can tell."""
    good = firmware.prebuilt("mps2-an386", "qute-digits")
    sick = tmp_path / "sick"
    shutil.copytree(good.directory, sick)
    with open(sick / "firmware.elf", "rb") as file:
        elf = ELFFile(file)
        (symbol,) = [s for s in elf.get_section_by_name(".symtab").iter_symbols() if s.name == SYMBOL]
        address = symbol["st_value"]
        section = next(s for s in elf.iter_sections()
                       if s["sh_addr"] <= address < s["sh_addr"] + s["sh_size"] and s["sh_type"] == "SHT_PROGBITS")
        in_elf = section.data()[address - section["sh_addr"]:][:4]
    image = bytearray((sick / "firmware.bin").read_bytes())
    offset = address - good.load_address
    assert image[offset:offset + 4] == in_elf, "the bias is not where the ELF says"
    (bias,) = struct.unpack("<i", image[offset:offset + 4])
    image[offset:offset + 4] = struct.pack("<i", bias + (1 << 20))
    (sick / "firmware.bin").write_bytes(image)
    manifest = json.loads((sick / "manifest.json").read_text())
    manifest["image_sha256"] = hashlib.sha256(image).hexdigest()
    (sick / "manifest.json").write_text(json.dumps(manifest))
    return sick / "manifest.json"


def other_models_image(tmp_path: Path) -> Path:
    """A manifest that claims the digits model but ships the MNIST-1D image (as in test_run.py)."""
    fake = tmp_path / "other"
    shutil.copytree(firmware.prebuilt("mps2-an386", "qute-mnist1d").directory, fake)
    data = json.loads((fake / "manifest.json").read_text())
    data.update(model="qute-digits", model_sha256=firmware.prebuilt("mps2-an386", "qute-digits").model_sha256)
    (fake / "manifest.json").write_text(json.dumps(data))
    return fake / "manifest.json"


def runs(tmp_path: Path) -> set[Path]:
    folder = tmp_path / "results"
    return {p for p in folder.iterdir() if p.is_dir()} if folder.exists() else set()


def run_json(tmp_path: Path, before: set[Path]) -> tuple[Path, dict]:
    (run_dir,) = runs(tmp_path) - before
    return run_dir, json.loads((run_dir / "run.json").read_text())


def test_a_board_failing_its_health_check_three_nights_is_quarantined_skipped_released_and_checked(tmp_path):
    sick_lab = write_lab(tmp_path, boards=BOARDS, samples=2, quarantine_after=3,
                         manifests={BOARDS[SICK]: other_models_image(tmp_path)})
    for night in (1, 2, 3):
        before = runs(tmp_path)
        result = hil("run", sick_lab)
        assert result.returncode == INFRASTRUCTURE, result.stdout + result.stderr
        run_dir, run = run_json(tmp_path, before)
        (failure,) = run["failures"]
        assert (failure["slot"], failure["stage"]) == (SICK, "identity"), failure
        records = [json.loads(line) for line in (run_dir / "records.jsonl").read_text().splitlines()]
        assert {r["slot"] for r in records} == {"an500-mnist1d"} and len(records) == 3 * 2
        assert [q["slot"] for q in run["quarantined"]] == ([] if night < 3 else [SICK])
    assert "quarantined by this run (since" in result.stdout

    before = runs(tmp_path)
    result = hil("run", sick_lab)
    assert result.returncode == PASS, result.stdout + result.stderr  # the rest is judged, and passes
    run_dir, run = run_json(tmp_path, before)
    assert [(q["slot"], q["brought_up"]) for q in run["quarantined"]] == [(SICK, False)]
    assert run["sessions"][0]["boards"] == ["an500-mnist1d"] and SICK not in run["boards"]  # never flashed
    assert "quarantined, not brought up" in result.stdout
    suite = ET.parse(run_dir / "junit.xml").getroot()[0]
    assert (suite.get("errors"), suite.get("failures"), suite.get("skipped")) == ("0", "0", "1")
    measured = [json.loads(line) for line in (run_dir / "measurements.jsonl").read_text().splitlines()]
    assert len([m for m in measured if m["method"] == "window"]) == 3 * 2  # the check's window is no one's

    listed = hil("board", "list", sick_lab)
    assert listed.returncode == 0 and "quarantined since" in listed.stdout, listed.stdout + listed.stderr
    assert hil("board", "release", sick_lab, SICK).returncode == 0
    fixed_lab = write_lab(tmp_path, boards=BOARDS, samples=2, quarantine_after=3)  # the same lab, the good image
    before = runs(tmp_path)
    result = hil("run", fixed_lab)
    assert result.returncode == PASS, result.stdout + result.stderr
    run_dir, run = run_json(tmp_path, before)
    assert sorted(run["boards"]) == sorted(BOARDS) and run["quarantined"] == []
    history = hil("board", "health", fixed_lab, SICK)
    assert history.returncode == 0 and history.stdout.count("FAILED") == 3 and history.stdout.count(" ok ") == 1


def test_a_wrong_known_answer_of_an_image_alone_is_a_regression_not_the_boards_fault(tmp_path):
    lab = write_lab(tmp_path, boards={SICK: BOARDS[SICK]}, samples=2, quarantine_after=1,
                    manifests={BOARDS[SICK]: corrupted_image(tmp_path)})
    result = hil("run", lab)
    assert result.returncode == REGRESSION, result.stdout + result.stderr
    run_dir, run = run_json(tmp_path, set())
    assert run["failures"] == [] and run["quarantined"] == []  # it streamed; reconciliation found it
    assert f"{SICK}/clean: 2 of 2 answers differ from the host reference" in result.stdout
    listed = hil("board", "health", lab, SICK)
    assert listed.returncode == 0 and "clean#0 differs from the host reference" in listed.stdout
    assert "image may be wrong" in listed.stdout
