"""A run refused before any board starts leaves nothing behind: no run folder, no catalog row, no board
brought up. Each refusal as a user meets it, through `hil run` (hil.cli.main) on a rack of FakeBoards."""

import sqlite3

import pytest

from hil import cli
from hil.hw.factory import lock_name
from hil.hw.locks import Lock
from hil.lab.load import load_lab
from hil.store import results
from tests.support.labs import BAD_INPUT, BOARDS, INFRASTRUCTURE, PASS, write_lab

SAMPLES = 2


def run_folders(lab_path) -> list[str]:
    folder = lab_path.parent / "results"
    return sorted(p.name for p in folder.iterdir() if p.is_dir()) if folder.exists() else []


def catalog_runs(lab_path) -> list[str]:
    catalog = lab_path.parent / "results" / results.CATALOG
    if not catalog.exists():
        return []
    with sqlite3.connect(catalog) as db:
        tables = {row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        return sorted(row[0] for row in db.execute("SELECT id FROM runs")) if "runs" in tables else []


def refused(fake_rack, lab_path, capsys, *args, code: int) -> str:
    """`hil run lab args...` is refused with `code` and one line, and leaves what was there as it was."""
    folders, rows = run_folders(lab_path), catalog_runs(lab_path)
    capsys.readouterr()
    assert cli.main(["run", str(lab_path), *args]) == code
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert not fake_rack.boards, "a board was brought up"
    assert run_folders(lab_path) == folders, "the refused run left a run folder"
    assert catalog_runs(lab_path) == rows, "the refused run left a catalog row"
    return line


@pytest.fixture
def lab_path(tmp_path):
    return write_lab(tmp_path, samples=SAMPLES)


def test_a_baseline_that_is_no_run_is_refused(fake_rack, lab_path, capsys):
    line = refused(fake_rack, lab_path, capsys, "--baseline", "nope", code=BAD_INPUT)
    assert "nope: not a run" in line


def passed_run(fake_rack, lab_path) -> str:
    """One passing run of the lab; then the rack is as new."""
    assert cli.main(["run", str(lab_path)]) == PASS
    fake_rack.boards.clear()
    (run_id,) = run_folders(lab_path)
    return run_id


def test_a_baseline_whose_run_json_is_broken_is_refused_before_any_board_starts(fake_rack, lab_path, capsys):
    run_id = passed_run(fake_rack, lab_path)
    (lab_path.parent / "results" / run_id / results.RUN_JSON).write_text('{"id": ')
    line = refused(fake_rack, lab_path, capsys, "--baseline", run_id, code=BAD_INPUT)
    assert f"{run_id}/{results.RUN_JSON}" in line


def test_a_baseline_whose_run_folder_is_gone_is_refused_before_any_board_starts(fake_rack, lab_path, capsys):
    run_id = passed_run(fake_rack, lab_path)
    assert cli.main(["baseline", "set", str(lab_path.parent / "results" / run_id)]) == PASS
    (lab_path.parent / "results" / run_id / results.RUN_JSON).unlink()
    line = refused(fake_rack, lab_path, capsys, "--baseline", "baseline", code=BAD_INPUT)
    assert "not a run directory" in line


def test_a_bad_lab_is_refused(fake_rack, lab_path, capsys):
    lab_path.write_text(lab_path.read_text().replace("threshold: 0.9", "threshold: 2.5"))
    line = refused(fake_rack, lab_path, capsys, code=BAD_INPUT)
    assert "threshold" in line


def test_a_busy_rack_is_refused(fake_rack, lab_path, capsys):
    lab = load_lab(lab_path)
    held = Lock(lock_name(lab.boards[0], lab.file))
    assert held.try_acquire("another run") is None
    try:
        line = refused(fake_rack, lab_path, capsys, code=INFRASTRUCTURE)
    finally:
        held.release()
    assert "board is in use by another run" in line


def test_a_rack_whose_every_board_is_quarantined_is_refused(fake_rack, lab_path, capsys):
    for slot in BOARDS:
        assert cli.main(["board", "quarantine", str(lab_path), slot, "--reason", "away"]) == 0
    line = refused(fake_rack, lab_path, capsys, code=INFRASTRUCTURE)
    assert "every board of lab" in line and "is quarantined" in line and "hil board release" in line
