"""The recovery ladder (hil/run/recovery.py) on real emulated boards, through a real `hil run`: a board's
emulator killed mid-run, and one frozen mid-run (SIGSTOP: its CPU, UARTs and QMP all stop). Each is
brought back by the step that can, goes on from the sample it failed on, and the run passes with every
record once. The fake boards' ladder (a hung firmware reset back, a dead board quarantined) is
tests/unit/test_pipeline.py's."""

import json
import os
import signal
import subprocess
from pathlib import Path

import pytest

from hil.run.records import read_measurements, read_records
from hil.store import files
from tests.support.labs import PASS, running, write_lab

SAMPLES = 40  # per test set


def qemu_pid(run_dir: Path, slot: str) -> int:
    return files.read_run(run_dir).boards[slot].details["qemu_pid"]


@pytest.mark.parametrize("fault, steps", [
    (signal.SIGKILL, [("resync", False), ("reset", False), ("reflash", True)]),
    (signal.SIGSTOP, [("resync", False), ("reset", False), ("reflash", True)]),
])
def test_a_board_brought_back_mid_run_goes_on_from_where_it_failed(tmp_path, fault, steps):
    lab = write_lab(tmp_path, samples=SAMPLES)
    owner, run_dir = running(lab)
    pid = qemu_pid(run_dir, "an386-digits")
    os.kill(pid, fault)
    try:
        stdout, stderr = owner.communicate(timeout=300)
    except subprocess.TimeoutExpired:
        owner.kill()
        raise AssertionError("the run hung on the board that failed") from None
    finally:
        if fault == signal.SIGSTOP:
            try:
                os.kill(pid, signal.SIGKILL)  # the frozen emulator, if hil's stop did not end it
            except ProcessLookupError:
                pass
    assert owner.returncode == PASS, stderr[-3000:]
    summary = json.loads(stdout)
    assert summary["failures"] == [] and all(s["exact"] == s["samples"] for s in summary["summaries"])
    (recovery,) = files.read_run(run_dir).recoveries
    assert recovery.slot == "an386-digits" and recovery.recovered_by == steps[-1][0], recovery
    assert [(s.step, s.ok) for s in recovery.steps] == steps, recovery.steps
    records = read_records(run_dir)
    assert len(records) == len({r.key for r in records}) == 2 * 3 * SAMPLES  # none lost, none asked twice
    assert qemu_pid(run_dir, "an386-digits") == pid  # provenance: the board as first brought up
    measured = read_measurements(run_dir)
    assert {m.method for m in measured if m.slot == "an386-digits"} <= {"window", "burst", "unmeasured"}
    assert sum(m.method == "window" for m in measured if m.slot == "an386-digits") >= 3 * SAMPLES - 2
