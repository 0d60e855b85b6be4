"""Latency and energy on the emulated rack: real QEMU boards, the emulated measurement unit
in its own process on a pty, the host decoding INA219 registers. The unit's ground truth
(traces/<slot>.truth.jsonl) is never sent over the link; these tests hold the host's
figures against it."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from hil import protocol
from hil.measurement import MIN_WINDOW_CONVERSIONS, BusyWindow, Edge, PowerSample, busy_windows, window_energies
from hil.monitor import MonitorError, MonitorLink
from hil import monitor_protocol as mp
from hil.records import read_measurements, read_records

sys.path.insert(0, str(Path(__file__).parent))
from test_run import BOARDS, hil, write_lab  # noqa: E402

PASS, INFRASTRUCTURE = 0, 2
CLOCK_HZ = 25_000_000
CONVERSION_TICKS = 53_250  # 2.13 ms: 12 bits averaged over 4 (docs/monitor.md)


@pytest.fixture(scope="module")
def two_runs(tmp_path_factory):
    """The same small lab run twice."""
    runs = []
    for name in ("first", "second"):
        tmp_path = tmp_path_factory.mktemp(name)
        result = hil("run", write_lab(tmp_path, samples=15), "--json")
        assert result.returncode == PASS, result.stderr[-3000:]
        runs.append(json.loads(result.stdout))
    return runs


def truth(run_dir: Path, slot: str) -> dict[int, float]:
    lines = (run_dir / "traces" / f"{slot}.truth.jsonl").read_text().splitlines()
    return {entry["rise"]: entry["excess_energy_j"] for entry in map(json.loads, lines)}


def test_latency_is_the_device_cycle_count_and_repeats(two_runs):
    first, second = (read_measurements(Path(run["run_dir"])) for run in two_runs)
    windows = [m for m in first if m.method == "window"]
    assert len(windows) == len(read_records(Path(two_runs[0]["run_dir"]))) == 2 * 3 * 15
    for m in windows:  # the emulated unit clocks edges by the device's timer: exactly equal
        assert m.clock_ok and m.ticks == round(m.device_latency_s * CLOCK_HZ)
    key = lambda m: (m.slot, m.testset, m.index, m.method)  # noqa: E731
    assert {key(m): m.ticks for m in first} == {key(m): m.ticks for m in second}


def test_energy_is_within_2_percent_of_the_units_ground_truth(two_runs):
    run_dir = Path(two_runs[0]["run_dir"])
    measurements = read_measurements(run_dir)
    checked = {"window": 0, "burst": 0}
    for m in measurements:
        truth_j = truth(run_dir, m.slot)[m.rise] / m.count
        if m.method == "burst" or m.ticks >= MIN_WINDOW_CONVERSIONS * CONVERSION_TICKS:
            assert m.energy_j == pytest.approx(truth_j, rel=0.02), m
            checked[m.method] += 1
    assert checked["window"] and checked["burst"]  # both ways of measuring were exercised


def test_early_exits_are_faster_and_cheaper_and_the_report_says_so(two_runs):
    performance = two_runs[0]["performance"]
    for slot in BOARDS:
        for testset in ("shift-s2", "ood"):
            rows = {p["exited"]: p for p in performance if p["slot"] == slot and p["testset"] == testset}
            assert set(rows) == {True, False}, rows
            assert rows[True]["latency_ms_p50"] < 0.5 * rows[False]["latency_ms_p50"]
            assert rows[True]["energy_uj"] < 0.5 * rows[False]["energy_uj"]


def unit_pid(owner: int) -> int:
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                command = (proc / "cmdline").read_bytes()
                ppid = int((proc / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, ValueError):
                continue
            if b"hil.monitor_unit" in command and b"an386-digits" in command and ppid == owner:
                return int(proc.name)
    raise AssertionError("no emulated unit found")


def test_a_unit_that_stops_talking_is_a_board_error_and_the_answers_are_kept(tmp_path):
    lab = write_lab(tmp_path, samples=60)
    owner = subprocess.Popen([sys.executable, "-m", "hil.cli", "run", str(lab), "--json"], stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True, env={**os.environ, "NO_COLOR": "1"})
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        run_dirs = [p for p in (tmp_path / "results").glob("*") if p.is_dir()]
        if run_dirs and read_records(run_dirs[0]):
            break
        time.sleep(0.05)
    os.kill(unit_pid(owner.pid), signal.SIGSTOP)  # alive, silent
    stdout, stderr = owner.communicate(timeout=300)
    assert owner.returncode == INFRASTRUCTURE, stderr[-3000:]
    summary = json.loads(stdout)
    (failure,) = summary["failures"]
    assert failure["slot"] == "an386-digits" and failure["stage"] == "monitor"
    assert "did not answer" in failure["reason"] and "unmeasured" in failure["reason"]
    run_dir = Path(summary["run_dir"])
    assert len(read_records(run_dir)) == 2 * 3 * 60  # every answer kept, reconciled
    assert all(s["exact"] == s["samples"] for s in summary["summaries"])
    assert {m.slot for m in read_measurements(run_dir)} == {"an500-mnist1d"}


@pytest.fixture
def unit_pty():
    """A pty whose far end this test plays as a measurement unit."""
    import serial
    import tty

    controller, device = os.openpty()
    tty.setraw(device)
    port = serial.Serial(os.ttyname(device), timeout=0.1)
    yield controller, port
    port.close()
    os.close(controller)
    os.close(device)


def test_a_unit_that_sends_garbage_is_a_clear_error(tmp_path, unit_pty):
    controller, port = unit_pty
    link = MonitorLink(port, "bench monitor", tmp_path / "trace.jsonl")
    try:
        os.write(controller, b"\x13\x37garbage\x00" + protocol.encode_frame(0x77, 1, b"??"))
        with pytest.raises(MonitorError, match=r"bench monitor: the measurement unit did not answer MonitorHello "
                                               r"within 1 s \(garbled data from the unit"):
            link.request(mp.MonitorHello(), timeout=1)
    finally:
        link.close()


def test_energy_of_a_window_from_samples_that_straddle_it():
    # Idle 1 W, 3 W while busy from t=25 to t=75; samples of 20 ticks; clock 100 Hz.
    samples = [PowerSample(t, t + 20, 1 + 2 * max(0, min(t + 20, 75) - max(t, 25)) / 20) for t in range(0, 120, 20)]
    (window,) = busy_windows([Edge(0, 1, 25), Edge(0, 0, 75)])
    assert window == BusyWindow(25, 75, False)
    (energy,) = window_energies([window], samples, idle_w=1.0, clock_hz=100)
    assert energy == pytest.approx(2.0 * 50 / 100)
    (uncovered,) = window_energies([window], samples[:3], idle_w=1.0, clock_hz=100)
    assert uncovered is None  # samples end before the window does: no figure rather than a wrong one
