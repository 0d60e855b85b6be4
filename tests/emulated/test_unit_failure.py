"""A board whose measurement unit dies mid-run streams on, unmeasured (docs/monitor.md): a real `hil run`
of two emulated boards, one unit killed by its pid. Unread, the board's GPIO wire pty would fill after
about 340 inferences and the firmware would block on its next edge; the board drains it instead
(hil/hw/emulated/board.py). The unit that only falls silent is tests/emulated/test_measurement.py's."""

import json
import os
import signal
import subprocess
from pathlib import Path

from hil.run.records import read_measurements, read_records
from tests.support.labs import INFRASTRUCTURE, running, unit_pid, write_lab

SAMPLES = 200  # per test set: 600 inferences a board, well past what an unread wire pty holds


def test_a_board_whose_unit_is_killed_streams_every_sample_unmeasured(tmp_path):
    lab = write_lab(tmp_path, samples=SAMPLES)
    owner, _ = running(lab)
    os.kill(unit_pid(owner.pid), signal.SIGKILL)
    try:
        stdout, stderr = owner.communicate(timeout=300)
    except subprocess.TimeoutExpired:
        owner.kill()
        raise AssertionError("the run hung: the board of the killed unit stopped streaming") from None
    assert owner.returncode == INFRASTRUCTURE, stderr[-3000:]
    summary = json.loads(stdout)
    (failure,) = summary["failures"]  # one line, naming the board
    assert failure["slot"] == "an386-digits" and failure["stage"] == "monitor", failure
    assert failure["reason"].startswith("an386-digits") and "unmeasured" in failure["reason"], failure
    run_dir = Path(summary["run_dir"])
    records = read_records(run_dir)
    assert len(records) == 2 * 3 * SAMPLES  # every sample streamed, the killed unit's board's too
    assert all(s["exact"] == s["samples"] for s in summary["summaries"])
    measured = read_measurements(run_dir)
    unmeasured = [m for m in measured if m.slot == "an386-digits" and m.method == "unmeasured"]
    assert len(unmeasured) == 3 * SAMPLES - sum(m.slot == "an386-digits" and m.method == "window" for m in measured)
    assert len(unmeasured) > 3 * SAMPLES // 2  # the unit died near the start
    assert {m.slot for m in measured if m.method == "window"} >= {"an500-mnist1d"}
    assert any(reason.startswith("an386-digits: ") and "unmeasured" in reason
               for reason in summary["verdict"]["reasons"]), summary["verdict"]
    assert f"{2 * 3 * SAMPLES} records ({len(unmeasured)} unmeasured)" in stderr, stderr[-2000:]
