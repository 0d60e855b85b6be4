"""A rack spread over two lab hosts on labgrid, on localhost (tests/support/labgrid_rack.py): a labgrid
coordinator, two exporters each exporting two served emulated Nucleo-L432KC boards (`hil board serve`: the
probe on TCP, the VCP on a pty that the exporter's ser2net publishes over RFC2217), and four places.
`hil run` takes its boards from the places, by name and by tags: flashed through `remote:HOST:PORT`, streamed
through `rfc2217://`, every answer bit for bit the host reference's; then the places are free again. A place
someone holds refuses a run by name, or queues it with --wait; a lab host that goes down mid-run fails its
boards alone, and `--resume` completes them once it is back.
"""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from hil.hw.kinds import BOARD_KINDS
from hil.run.records import read_records

from tests.support.benches import KIND, MODEL
from tests.support.labgrid_rack import LabgridRack, labgrid_available, place_lab
from tests.support.labs import run_dir_of, running, write_lab

pytestmark = pytest.mark.skipif(not labgrid_available(), reason="labgrid, ser2net or qemu-system-arm not installed")
PASS, INFRASTRUCTURE = 0, 2
SAMPLES = 10  # per test set: the lab's one model has 3 test sets
LAYOUT = {"exp-a": ["a1", "a2"], "exp-b": ["b1", "b2"]}
# Two boards by place name, two by tags: the named ones come first, so the tag match gets exp-b's places.
PLACES = {"a1": "a1", "a2": "a2", "any": {"tags": {"board": KIND, "rack": "ci"}, "count": 2}}
SLOTS = ["a1", "a2", "any-1", "any-2"]
PROFILE = BOARD_KINDS[KIND].power
# a2's place has a measurement unit (an emulated one on the served board's pins), reached through its ser2net too.
METERED = {"a2": {"shunt_ohms": PROFILE.shunt_ohms, "max_current_a": PROFILE.max_current_a}}


@pytest.fixture(scope="module")
def rack(tmp_path_factory):
    with LabgridRack(tmp_path_factory.mktemp("labgrid")) as rack:
        yield rack.start(LAYOUT, monitored=frozenset(METERED))


@pytest.fixture
def lab(rack, tmp_path) -> Path:
    lab = write_lab(tmp_path, boards={"a1": (KIND, MODEL)}, samples=SAMPLES)
    return place_lab(lab, rack.coordinator, PLACES, METERED)


def hil_run(lab: Path, tmp_path: Path, *args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, "NO_COLOR": "1", "HIL_LOCK_DIR": str(tmp_path / "locks"), **(env or {})}
    return subprocess.run([sys.executable, "-m", "hil.cli", "run", str(lab), "--json", *args], capture_output=True,
                          text=True, env=env, timeout=300)


def acquired(rack: LabgridRack) -> dict[str, str]:
    """place -> who holds it (host/user), from `labgrid-client who` (as a lab's user would look)."""
    rows = [line.split() for line in rack.client("who").stdout.splitlines()[1:] if line.strip()]
    return {place: f"{host}/{user}" for user, host, place, *_ in rows}


def test_a_run_over_four_places_on_two_exporters_is_bit_exact_and_gives_them_back(rack, lab, tmp_path):
    done = hil_run(lab, tmp_path)
    assert done.returncode == PASS, done.stderr[-3000:]
    summary = json.loads(done.stdout)
    boards = summary["boards"]
    assert sorted(boards) == SLOTS
    assert {boards[s]["place"] for s in SLOTS} == {"a1", "a2", "b1", "b2"}
    assert boards["a1"]["place"] == "a1" and {boards["any-1"]["place"], boards["any-2"]["place"]} == {"b1", "b2"}
    assert all(boards[s]["probe"].startswith("remote:127.0.0.1:") for s in SLOTS)
    assert all(boards[s]["serial_port"].startswith("rfc2217://127.0.0.1:") for s in SLOTS)
    records = read_records(run_dir_of(tmp_path))
    assert sorted({r.slot for r in records}) == SLOTS and len(records) == 4 * 3 * SAMPLES
    assert summary["mismatches"] == [] and summary["failures"] == []
    # a2's answers are measured by its unit, over the network: each its own busy window.
    measured = [json.loads(line) for line in (run_dir_of(tmp_path) / "measurements.jsonl").read_text().splitlines()]
    # (Its inferences are short enough that each test set's exit path also gets an energy burst.)
    a2 = [m for m in measured if m["slot"] == "a2"]
    assert sum(m["method"] == "window" for m in a2) == 3 * SAMPLES and {m["method"] for m in a2} <= {"window", "burst"}
    assert all(m["method"] == "unmeasured" for m in measured if m["slot"] != "a2")
    assert acquired(rack) == {}


def test_a_place_held_by_another_user_refuses_the_run_by_name_or_queues_with_wait(rack, lab, tmp_path):
    alice = {**rack.env, "LG_USERNAME": "alice", "LG_HOSTNAME": "desk"}
    rack.client("-p", "a2", "acquire", env=alice)
    try:
        refused = hil_run(lab, tmp_path)
        assert refused.returncode == INFRASTRUCTURE, refused.stderr[-3000:]
        assert "a2: place a2 is in use (place a2 acquired by desk/alice)" in refused.stderr, refused.stderr[-2000:]
        assert not (tmp_path / "results").exists() or not any((tmp_path / "results").iterdir())
        assert acquired(rack) == {"a2": "desk/alice"}  # nothing of the refused run is left held
        waiting = subprocess.Popen([sys.executable, "-m", "hil.cli", "run", str(lab), "--json", "--wait", "2m"],
                                   stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                   env={**os.environ, "NO_COLOR": "1", "HIL_LOCK_DIR": str(tmp_path / "locks")})
        time.sleep(3)
        assert waiting.poll() is None  # queued behind alice
    finally:
        rack.client("-p", "a2", "release", env=alice)
    out, err = waiting.communicate(timeout=300)
    assert waiting.returncode == PASS, err[-3000:]
    assert "place a2 acquired by desk/alice); waiting for it" in err
    assert json.loads(out)["boards"]["a2"]["place"] == "a2"


def test_a_second_concurrent_run_is_refused_naming_the_run_that_holds_the_places(rack, lab, tmp_path):
    first, run_dir = running(lab)
    os.kill(first.pid, signal.SIGSTOP)  # held mid-run, its places acquired, however fast it would stream
    try:
        second = hil_run(lab, tmp_path)
        assert second.returncode == INFRASTRUCTURE, second.stderr[-3000:]
        assert "a1: place a1 is in use (place a1 acquired by " in second.stderr, second.stderr[-2000:]
    finally:
        os.kill(first.pid, signal.SIGCONT)
        out, err = first.communicate(timeout=300)
    assert first.returncode == PASS, err[-3000:]
    assert len(read_records(run_dir)) == 4 * 3 * SAMPLES


def test_an_exporter_killed_mid_run_fails_its_boards_keeps_their_records_and_resume_completes_them(
        rack, lab, tmp_path):
    owner, run_dir = running(lab)
    exporter_b = next(e for e in rack.exporters if e.name == "exp-b")
    rack.kill_exporter(exporter_b)  # the lab host goes down: the exporter and its ser2nets
    out, err = owner.communicate(timeout=300)
    assert owner.returncode == INFRASTRUCTURE, err[-3000:]
    summary = json.loads(out)
    failed = {f["slot"] for f in summary["failures"]}
    assert failed and failed <= {"any-1", "any-2"}, summary["failures"]
    kept = read_records(run_dir)
    assert sum(r.slot in {"a1", "a2"} for r in kept) == 2 * 3 * SAMPLES  # exp-a's boards finished
    assert sum(r.slot in failed for r in kept) < len(failed) * 3 * SAMPLES
    assert acquired(rack) == {}  # the run gave back every place, the dead exporter's too

    rack.start_exporter(exporter_b)
    resumed = subprocess.run([sys.executable, "-m", "hil.cli", "run", "--resume", str(run_dir), "--json"],
                             capture_output=True, text=True, env={**os.environ, "NO_COLOR": "1"}, timeout=300)
    assert resumed.returncode == PASS, resumed.stderr[-3000:]
    records = read_records(run_dir)
    assert len(records) == 4 * 3 * SAMPLES
    assert len({(r.slot, r.testset, r.index) for r in records}) == len(records)  # none asked twice
    assert [r for r in kept if r not in records] == []  # every record of the first session is still there
    assert json.loads(resumed.stdout)["mismatches"] == []


def test_an_interrupted_run_gives_its_places_back(rack, lab, tmp_path):
    owner, run_dir = running(lab)
    assert set(acquired(rack)) == {"a1", "a2", "b1", "b2"}
    owner.send_signal(signal.SIGINT)
    owner.communicate(timeout=120)
    assert owner.returncode == 130
    assert acquired(rack) == {}
    assert read_records(run_dir)  # kept for --resume
