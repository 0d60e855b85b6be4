"""The results disk: full, read-only, or holding a run that was cut off or changed. Real
tmpfs mounts (size-limited, or read-only), real QEMU runs, the real CLI.

A disk error is one line and exit code 4, with every record so far kept; one resume then
completes the run. A journal's torn last line (a crash) is cut off, never glued onto; any
other bad line of a journal or run.json is refused on resume with exit 3 and file:line. The journal on
its own is tests/unit/test_journal.py."""

import json
import re
import shutil
from pathlib import Path

import pytest
import yaml

from hil.cli import main
from hil.run.records import MEASUREMENTS, read_records
from tests.support.disks import journal_lines, remount, tmpfs
from tests.support.labs import BOARDS, hil, write_lab

PASS, BAD_INPUT, RESULTS_DISK = 0, 3, 4
ONE_BOARD = {"an386-digits": BOARDS["an386-digits"]}
needs_qemu = pytest.mark.skipif(shutil.which("qemu-system-arm") is None, reason="qemu-system-arm not installed")


def results_at(lab: Path, folder: Path) -> Path:
    data = yaml.safe_load(lab.read_text())
    data["results"] = str(folder)
    lab.write_text(yaml.safe_dump(data, sort_keys=False))
    return lab


def the_error_line(result) -> str:
    assert "Traceback" not in result.stderr, result.stderr
    (line,) = result.stderr.strip().splitlines()
    return line


# --- a run on a disk that fills, a folder that is read-only -------------------------------------------------


@needs_qemu
def test_a_disk_filled_mid_run_is_exit_4_and_one_resume_completes(tmp_path):
    with tmpfs(tmp_path / "disk", size="512k") as disk:
        samples = 40  # enough records and unit traces to fill what is left during the stream
        lab = results_at(write_lab(tmp_path, boards=ONE_BOARD, samples=samples), disk / "results")
        filler = disk / "filler"
        # 44 KiB left: the catalog with its health rows, run.json and a few records fit
        filler.write_bytes(b"\0" * (512 - 44) * 1024)
        result = hil("run", lab)
        assert result.returncode == RESULTS_DISK, result.stdout[-2000:] + result.stderr
        line = the_error_line(result)
        (run_dir,) = [p for p in (disk / "results").iterdir() if p.is_dir()]  # beside the catalog
        assert line.startswith(f"hil: error: {run_dir}/") and "No space left on device" in line, line
        assert f"`hil run --resume {run_dir}`" in line and "every record so far is kept" in line, line
        kept = journal_lines(run_dir)
        assert 0 < len(kept) < 3 * samples, "the disk was meant to fill during streaming"
        assert len(read_records(run_dir)) == len(kept)

        filler.unlink()
        resumed = hil("run", "--resume", run_dir)
        assert resumed.returncode == PASS, resumed.stdout[-3000:] + resumed.stderr
        lines = journal_lines(run_dir)
        keys = [(r["slot"], r["testset"], r["index"]) for r in lines]
        assert len(keys) == len(set(keys)) == 3 * samples, "a record was lost or repeated"
        assert lines[:len(kept)] == kept


def test_a_read_only_results_folder_is_exit_4_before_anything_starts(tmp_path):
    with tmpfs(tmp_path / "disk", read_only=True) as disk:
        lab = results_at(write_lab(tmp_path, boards=ONE_BOARD, samples=4), disk / "results")
        result = hil("run", lab, env={"HIL_LOCK_DIR": str(tmp_path / "locks")})
    assert result.returncode == RESULTS_DISK, result.stderr
    line = the_error_line(result)
    assert line.startswith(f"hil: error: {disk}/results") and "Read-only file system" in line, line
    assert not (tmp_path / "locks").exists(), "a board was locked"


# --- resuming a run that was cut off or changed ------------------------------------------------------------


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory) -> Path:
    """One short run on one emulated board: 3 test sets of 4 samples, measured."""
    if shutil.which("qemu-system-arm") is None:
        pytest.skip("qemu-system-arm not installed")
    folder = tmp_path_factory.mktemp("finished")
    result = hil("run", write_lab(folder, boards=ONE_BOARD, samples=4))
    assert result.returncode == PASS, result.stdout[-2000:] + result.stderr
    (run_dir,) = [p for p in (folder / "results").iterdir() if p.is_dir()]
    assert len(read_records(run_dir)) == 12 and (run_dir / MEASUREMENTS).stat().st_size
    return run_dir


def copy_of(run_dir: Path, tmp_path: Path) -> Path:
    copy = tmp_path / "results" / run_dir.name
    shutil.copytree(run_dir, copy)
    return copy


def test_a_torn_last_journal_line_is_cut_off_and_one_resume_completes(finished_run, tmp_path):
    run_dir = copy_of(finished_run, tmp_path)
    journal = run_dir / "records.jsonl"
    data = journal.read_bytes()
    journal.write_bytes(data[:len(data) - 1 - len(data.splitlines()[-1]) // 2])  # killed mid-write
    resumed = hil("run", "--resume", run_dir)
    assert resumed.returncode == PASS, resumed.stdout[-3000:] + resumed.stderr
    keys = [(r["slot"], r["testset"], r["index"]) for r in journal_lines(run_dir)]
    assert len(keys) == len(set(keys)) == 12


def edit_line(name: str, number: int, change):
    """Change line `number` (1-based) of journal `name`: `change` edits its dict, or returns the new bytes."""
    def edit(run_dir: Path) -> tuple[Path, int]:
        path = run_dir / name
        lines = path.read_bytes().splitlines(keepends=True)
        row = json.loads(lines[number - 1])
        new = change(row, lines)
        lines[number - 1] = new if isinstance(new, bytes) else json.dumps(row).encode() + b"\n"
        path.write_bytes(b"".join(lines))
        return path, number
    return edit


def edit_run_json(change, key: str | int | None):
    """Change run.json; the error must name the line of `key`, or line `key` (None: where the JSON breaks)."""
    def edit(run_dir: Path) -> tuple[Path, int | None]:
        path = run_dir / "run.json"
        new = change(json.loads(path.read_text()), path.read_text())
        text = new if isinstance(new, str) else json.dumps(new, indent=1)
        path.write_text(text)
        line = key if not isinstance(key, str) else next(
            i for i, row in enumerate(text.splitlines(), 1) if f'"{key}":' in row)
        return path, line
    return edit


def set_field(key, value):
    return lambda row, lines: row.update({key: value})


CORRUPTIONS = [
    ("not JSON", edit_line("records.jsonl", 3, lambda row, lines: b"{\"slot\": garbage\n"), "not a line of JSON"),
    ("a torn line glued to the next", edit_line("records.jsonl", 3, lambda row, lines: lines[2][:60] + lines[3]),
     "not a line of JSON"),
    ("index as text", edit_line("records.jsonl", 3, set_field("index", "2")), "index must be a whole number, not \"2\""),
    ("a negative index", edit_line("records.jsonl", 3, set_field("index", -1)), "index: -1 is out of range"),
    ("an index past the end", edit_line("records.jsonl", 3, set_field("index", 4)),
     "index 4 is past the end of clean (4 samples)"),
    ("an unknown board", edit_line("records.jsonl", 3, set_field("slot", "ghost")), "board 'ghost' is not in the lab"),
    ("an unknown test set", edit_line("records.jsonl", 3, set_field("testset", "nope")),
     "board an386-digits has no test set 'nope'"),
    ("another model", edit_line("records.jsonl", 3, set_field("model", "qute-mnist1d")),
     "model 'qute-mnist1d', but board an386-digits runs qute-digits"),
    ("a missing field", edit_line("records.jsonl", 3, lambda row, lines: row.pop("cycles")), "missing cycles"),
    ("an unknown field", edit_line("records.jsonl", 3, set_field("colour", "red")), "unknown field 'colour'"),
    ("true for a number", edit_line("records.jsonl", 3, set_field("attempts", True)),
     "attempts must be a whole number, not true"),
    ("a logit beyond int8", edit_line("records.jsonl", 3, set_field("exit_logits", [300] * 10)),
     "exit_logits: 300 is out of range [-128, 127]"),
    ("not an object", edit_line("records.jsonl", 3, lambda row, lines: b"[1, 2, 3]\n"), "not a JSON object"),
    ("a measurement's method", edit_line(MEASUREMENTS, 2, set_field("method", "guess")),
     "method must be one of window, burst"),
    ("a measurement's negative index", edit_line(MEASUREMENTS, 2, set_field("index", -5)),
     "index: -5 is out of range"),
    ("run.json cut short", edit_run_json(lambda run, text: text[:len(text) // 2], None), "not valid JSON"),
    ("run.json lab file a number", edit_run_json(lambda run, text: run["lab"].update(file=7) or run, "file"),
     "lab.file: must be text"),
    ("run.json boards a list", edit_run_json(lambda run, text: run.update(boards=[]) or run, "boards"),
     "boards: must be an object"),
    ("run.json without sessions", edit_run_json(lambda run, text: run.pop("sessions") and run, 1),
     "run: sessions is missing"),
]


@pytest.mark.parametrize("name, corrupt, fragment", CORRUPTIONS, ids=[c[0] for c in CORRUPTIONS])
def test_a_changed_run_is_refused_on_resume_with_its_file_and_line(finished_run, tmp_path, capsys, monkeypatch,
                                                                   name, corrupt, fragment):
    run_dir = copy_of(finished_run, tmp_path)
    path, line = corrupt(run_dir)
    before = {p.name: p.read_bytes() for p in run_dir.iterdir() if p.is_file()}
    locks = tmp_path / "locks"
    monkeypatch.setenv("HIL_LOCK_DIR", str(locks))
    code = main(["run", "--resume", str(run_dir)])
    err = capsys.readouterr().err
    assert code == BAD_INPUT, err
    (message,) = err.strip().splitlines()
    where = f"{path}:{line}:" if line else f"{path}:"
    assert message.startswith(f"hil: error: {where}") and fragment in message, message
    if line is None:
        assert re.match(rf"hil: error: {re.escape(str(path))}:\d+: ", message), message
    assert {p.name: p.read_bytes() for p in run_dir.iterdir() if p.is_file()} == before, "the run was changed"
    assert not locks.exists(), "a board was locked"


def test_the_cli_says_which_journal_line_is_bad_in_one_line(finished_run, tmp_path):
    run_dir = copy_of(finished_run, tmp_path)
    path, line = edit_line("records.jsonl", 5, set_field("index", -1))(run_dir)
    result = hil("run", "--resume", run_dir)
    assert result.returncode == BAD_INPUT, result.stdout[-2000:] + result.stderr
    assert the_error_line(result).startswith(f"hil: error: {path}:5: index: -1 is out of range")


def test_resuming_on_a_read_only_disk_is_exit_4_before_any_board_starts(finished_run, tmp_path):
    with tmpfs(tmp_path / "disk") as disk:
        run_dir = disk / finished_run.name
        shutil.copytree(finished_run, run_dir)
        journal = run_dir / "records.jsonl"
        journal.write_bytes(b"".join(journal.read_bytes().splitlines(keepends=True)[:5]))  # 7 samples to go
        remount(disk, "ro")
        result = hil("run", "--resume", run_dir, env={"HIL_LOCK_DIR": str(tmp_path / "locks")})
        assert result.returncode == RESULTS_DISK, result.stdout[-2000:] + result.stderr
        line = the_error_line(result)
        assert line.startswith(f"hil: error: {run_dir}: cannot write the results (Read-only file system)"), line
        assert f"`hil run --resume {run_dir}`" in line
        assert not (tmp_path / "locks").exists(), "a board was locked"
