"""`hil run` with one board that misbehaves on its serial line, beside a healthy emulated one.

A run also finishes run.json when hil itself fails after the run started.

The misbehaving board is a physical Nucleo-L432KC (flashed through hil.hw.emulated.probe, as in
tests/physical/test_physical.py) whose serial port is a pty relay (tests/support/ptys.py): in front of the
bench Nucleo's USB serial port (the flashed firmware running in QEMU), rewriting one or more of its
frames, or with nothing behind it, echoing every byte. The run must keep what the healthy board
measured, fail only the bad board (exit 2), and always finish run.json, junit.xml and report.html.
"""

import json
import os
import shutil
import sqlite3
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from hil.hw import protocol
from hil.hw.emulated.probe import EmulatedProbe
from hil.run.records import Record, RecordJournal, read_records
from hil.lab.load import load_lab
from hil.run.runner import open_run

from tests.support.ptys import LineRelay, reframed
from tests.support.benches import physical_lab
from tests.support.labs import write_lab

needs_qemu = pytest.mark.skipif(shutil.which("qemu-system-arm") is None, reason="qemu-system-arm not installed")
PASS, INFRASTRUCTURE = 0, 2
HEALTHY = {"an500-mnist1d": ("mps2-an500", "qute-mnist1d")}
SAMPLES = 8  # per test set; three test sets


def run_lab(lab: Path, tmp_path: Path) -> tuple[subprocess.CompletedProcess, dict]:
    env = {**os.environ, "NO_COLOR": "1", "HIL_LOCK_DIR": str(tmp_path / "locks")}
    result = subprocess.run([sys.executable, "-m", "hil.cli", "run", str(lab), "--json"], capture_output=True,
                            text=True, env=env, timeout=300)
    (run_dir,) = [p for p in (tmp_path / "results").iterdir() if p.is_dir()]
    return result, json.loads((run_dir / "run.json").read_text())


def assert_only_the_bench_failed(result: subprocess.CompletedProcess, run: dict, stage: str) -> dict:
    """Exit 2; the healthy board answered everything, exactly; every result file is there."""
    assert result.returncode == INFRASTRUCTURE, result.stderr[-3000:]
    run_dir = Path(run["lab"]["file"]).parent / "results" / run["id"]
    assert run["status"] == "finished" and run["verdict"]["exit_code"] == INFRASTRUCTURE
    (failure,) = run["failures"]
    assert failure["slot"] == "bench-1" and failure["stage"] == stage and "\n" not in failure["reason"]
    healthy = [r for r in read_records(run_dir) if r.slot == "an500-mnist1d"]
    assert len(healthy) == 3 * SAMPLES
    summary = json.loads(result.stdout)
    assert all(s["exact"] == s["samples"] == s["expected"] for s in summary["summaries"]
               if s["slot"] == "an500-mnist1d")
    cases = ET.parse(run_dir / "junit.xml").getroot().iter("testcase")
    assert any(c.get("classname") == "bench-1" and c.get("name") == stage and c.find("error") is not None
               for c in cases)
    assert (run_dir / "report.html").stat().st_size > 0
    return failure


@needs_qemu
def test_an_echoing_port_fails_only_its_board(tmp_path):
    with EmulatedProbe("STLINK-0101", "stm32l432kc") as probe, LineRelay(None) as echo:  # no MCU behind the port
        result, run = run_lab(physical_lab(tmp_path, probe.address, echo.path, HEALTHY, SAMPLES), tmp_path)
    failure = assert_only_the_bench_failed(result, run, "identity")
    # HELLO came back as HELLO: said so, with every attempt (retries: 1 in the test lab).
    assert "no valid answer to HELLO in 2 attempts: 2 wrong replies (HELLO instead of INFO)" in failure["reason"]
    assert run["sessions"][0]["link"]["bench-1"]["rejected"] == {"HELLO instead of INFO": 2}


class WrongTypeAfter:
    """Passes the first `good` RESULTs, then sends every RESULT as an INFER frame (valid CRC)."""

    def __init__(self, good: int):
        self.good = good
        self.results = 0

    def __call__(self, wire: bytes) -> bytes:
        if protocol.cobs_decode(wire[:-1])[0] != protocol.MessageType.RESULT:
            return wire
        self.results += 1
        return wire if self.results <= self.good else reframed(wire, type=protocol.MessageType.INFER)


@needs_qemu
def test_a_board_answering_with_the_wrong_message_type_fails_alone_and_keeps_its_answers(tmp_path, nucleo):
    good = SAMPLES + 3  # into the second test set
    board = nucleo("STLINK-0102")
    with LineRelay(board.port, WrongTypeAfter(1 + good)) as relay:  # the health check's RESULT comes first
        result, run = run_lab(physical_lab(tmp_path, board.probe.address, relay.path, HEALTHY, SAMPLES), tmp_path)
    failure = assert_only_the_bench_failed(result, run, "stream")
    assert "no valid answer to INFER in 2 attempts: 2 wrong replies (INFER instead of RESULT)" in failure["reason"]
    run_dir = Path(run["lab"]["file"]).parent / "results" / run["id"]
    assert len([r for r in read_records(run_dir) if r.slot == "bench-1"]) == good
    assert "bench-1" in result.stderr and "INFER instead of RESULT" in result.stderr  # the console's link table


@needs_qemu
def test_a_hello_answer_corrupted_once_is_retried_and_reported(tmp_path, nucleo):
    first = {"done": False}

    def corrupt_first_frame(wire: bytes) -> bytes:
        if first["done"]:
            return wire
        first["done"] = True
        return reframed(wire, flip_crc=True)

    board = nucleo("STLINK-0103")
    with LineRelay(board.port, corrupt_first_frame) as relay:
        result, run = run_lab(physical_lab(tmp_path, board.probe.address, relay.path, {}, SAMPLES), tmp_path)
    assert result.returncode == PASS, result.stderr[-3000:]
    link = run["sessions"][0]["link"]["bench-1"]
    assert link["corrupt"] == {"BAD_CRC": 1} and link["retries"] == 1 and link["timeouts"] == 0
    assert "link: 1 retry on 1 board (1 corrupt frame (BAD_CRC))" in result.stderr  # in the verdict panel
    assert json.loads(result.stdout)["link"]["bench-1"]["retries"] == 1


def test_a_run_that_hil_itself_breaks_still_finishes_its_run_json(tmp_path):
    """Every sample already journaled (so no board starts on --resume), and a directory where
    junit.xml goes: writing it fails as nothing in hil foresees."""
    lab_file = write_lab(tmp_path, boards=HEALTHY, samples=2)
    run_dir, _run = open_run(lab := load_lab(lab_file))
    (board,) = lab.boards
    with RecordJournal(run_dir) as journal:
        for testset in lab.models[board.model].testsets:
            for index, label in enumerate(testset.labels):
                journal.append(Record(board.slot, board.model, testset.name, index, int(label), 32768, True, 0, 0, 1,
                                      [0] * 10, [], 1))
    (run_dir / "junit.xml").mkdir()
    result = subprocess.run([sys.executable, "-m", "hil.cli", "run", "--resume", str(run_dir)], capture_output=True,
                            text=True, env={**os.environ, "NO_COLOR": "1"}, timeout=300)
    assert result.returncode == INFRASTRUCTURE, result.stderr[-3000:]
    (line,) = result.stderr.strip().splitlines()
    assert f"run {run_dir.name}: unexpected IsADirectoryError" in line and "traceback.txt" in line
    run = json.loads((run_dir / "run.json").read_text())
    assert run["status"] == "finished" and run["finished"]
    assert run["verdict"]["exit_code"] == INFRASTRUCTURE and "IsADirectoryError" in run["verdict"]["reasons"][0]
    assert "junit" in (run_dir / "traceback.txt").read_text()
    with sqlite3.connect(tmp_path / "results" / "catalog.sqlite") as db:
        assert db.execute("SELECT status, exit_code FROM runs WHERE id = ?", (run_dir.name,)).fetchone() == ("error", 2)
