"""Latency and energy on the emulated rack: real QEMU boards, the emulated measurement unit
in its own process on a pty, the host decoding INA219 registers. The unit's ground truth
(traces/<slot>.truth.jsonl) is never sent over the link; these tests hold the host's
figures against it. The host's side of metering on its own is tests/unit/test_metering.py."""

import json
import os
import select
import signal
import subprocess
import sys
import threading
import time
import tty
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
import serial

from hil.hw import protocol
from hil.hw.measurement import MIN_WINDOW_CONVERSIONS
from hil.run.records import read_measurements, read_records
from tests.support.labs import BOARDS, hil, running, unit_pid, write_lab

PASS, REGRESSION, INFRASTRUCTURE = 0, 1, 2
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


def test_a_unit_that_stops_talking_is_a_board_error_and_the_answers_are_kept(tmp_path):
    lab = write_lab(tmp_path, samples=60)
    owner, _ = running(lab)
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
    measured = read_measurements(run_dir)
    assert {m.slot for m in measured if m.method == "window"} == {"an500-mnist1d"}
    # Every answer of the silent unit's board is journaled as unmeasured, with why...
    unmeasured = [m for m in measured if m.slot == "an386-digits"]
    assert len(unmeasured) == 3 * 60 and all(m.method == "unmeasured" and "did not answer" in m.reason
                                             for m in unmeasured)
    # ...and the count is in the verdict, on the console and in junit.xml.
    assert any(reason.startswith("an386-digits: 180 of 180 answered samples unmeasured (180: ")
               for reason in summary["verdict"]["reasons"]), summary["verdict"]
    assert "360 records (180 unmeasured)" in stderr
    suite = ET.parse(run_dir / "junit.xml").getroot().find("testsuite")
    cases = {(c.get("classname"), c.get("name")): c for c in suite.iter("testcase")}
    for testset in ("clean", "shift-s2", "ood"):
        (error,) = cases[(f"an386-digits.{testset}", "measurement")].findall("error")
        assert error.get("message").startswith("60 of 60 answered samples unmeasured (60: ")
        assert not list(cases[(f"an500-mnist1d.{testset}", "measurement")])  # measured: a passing case


# --- windows matched to answers by the device's window ordinal (protocol v2) -----------------


class LossyLine:
    """A relay between a board's own pty (QEMU's UART) and a pty that the host link opens
    instead, that drops chosen RESULT frames on their way to the host: the device ran the
    request, the host never hears of it and asks again. It notes the input of every INFER
    that crossed to the device, in order: the samples the device ran, window after window; and
    counts the INFER_BURSTs (energy bursts, one window each, after the stream)."""

    def __init__(self, device: serial.Serial, drop: set[int]):
        self.device, self.drop = device, drop  # drop: which RESULT frames, counted from 0 as the device sends them
        self.controller, self.peer = os.openpty()
        tty.setraw(self.peer)
        self.path = os.ttyname(self.peer)
        self.ran: list[bytes] = []
        self.results = self.dropped = self.bursts = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._relay, daemon=True)
        self._thread.start()

    @staticmethod
    def _write(fd: int, data: bytes) -> None:
        while data:
            data = data[os.write(fd, data):]

    def _relay(self) -> None:
        device = self.device.fileno()
        to_device, to_host = protocol.FrameDecoder(), bytearray()
        while not self._stop.is_set():
            readable = select.select([self.controller, device], [], [], 0.05)[0]
            if self.controller in readable:
                data = os.read(self.controller, 4096)
                self._write(device, data)  # the host's bytes pass at once, as they came
                frames = [f for f in to_device.feed(data) if isinstance(f, protocol.Frame)]
                self.ran += [f.payload for f in frames if f.type == protocol.MessageType.INFER]
                self.bursts += sum(f.type == protocol.MessageType.INFER_BURST for f in frames)
            if device in readable:
                to_host += os.read(device, 4096)
                while protocol.DELIMITER in to_host:
                    body, _, rest = bytes(to_host).partition(protocol.DELIMITER)
                    to_host = bytearray(rest)
                    frame = protocol.decode_body(body) if body else None
                    if isinstance(frame, protocol.Frame) and frame.type == protocol.MessageType.RESULT:
                        self.results += 1
                        if self.results - 1 in self.drop:
                            self.dropped += 1
                            continue
                    self._write(self.controller, body + protocol.DELIMITER)

    def close(self) -> None:
        self._stop.set()
        self._thread.join()
        os.close(self.controller)
        os.close(self.peer)


class Quiet:
    def start(self, totals):
        pass

    def advance(self, slot, samples):
        pass


def test_every_measurement_stays_on_its_own_sample_when_replies_are_lost(tmp_path):
    """Behind a line that loses replies the device runs requests whose answers never arrive, and
    the host asks again: the unit then holds more busy windows than there are answers. Each
    measurement must still be its own sample's window, held against the ground truth of which
    sample the device ran in every window the unit saw (a shift within one exit path keeps
    the cycle count almost the same, so the window itself is checked, by where it starts)."""
    from hil.lab.load import load_lab
    from hil.hw.link import DeviceLink
    from hil.run.rack import Rack
    from hil.run.session import pending_jobs, stream_boards

    slot, samples = "an386-digits", 6
    lab = load_lab(write_lab(tmp_path, boards={slot: BOARDS[slot]}, samples=samples, request_timeout_s=1, retries=3))
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    tau = lab.run.threshold_q15
    drop = {0, 5, 9, 10, 20}  # the first answer; one among samples of one exit path; one twice over; a late one
    with Rack(lab, [slot], tau, run_dir / "traces") as rack:
        (board,) = rack.ready
        line = LossyLine(board.link.port, drop)
        try:
            board.link = DeviceLink(serial.Serial(line.path, exclusive=True), name=slot,
                                    timeout=lab.run.request_timeout_s)
            failures = stream_boards(rack, pending_jobs(lab, {}), run_dir, tau, Quiet())
        finally:
            board.link.port.close()
            line.close()
    assert failures == []
    assert line.dropped == len(drop)
    records = {r.key: r for r in read_records(run_dir)}
    assert len(records) == 3 * samples
    # A sample is told by its input (two test sets may share one: then their windows are alike too).
    inputs = {(t.name, i): t.inputs[i].tobytes() for t in lab.models["qute-digits"].testsets for i in range(samples)}
    ran = line.ran  # the input of every request the device ran, in order
    assert len(ran) == line.results >= 3 * samples + len(drop) and set(ran) == set(inputs.values())
    assert sum(r.attempts - 1 for r in records.values()) == len(ran) - 3 * samples
    truth = [json.loads(line_) for line_ in (run_dir / "traces" / f"{slot}.truth.jsonl").read_text().splitlines()]
    # The unit saw every window, those of lost answers too, and then those of the energy bursts
    # (inferences too short to meter one by one get one each per test set and exit path).
    assert len(truth) == len(ran) + line.bursts
    ran_at = {window["rise"]: sample for window, sample in zip(truth, ran)}
    measured = [m for m in read_measurements(run_dir) if m.method == "window"]
    assert len(read_measurements(run_dir)) - len(measured) == line.bursts
    assert sorted((m.testset, m.index) for m in measured) == sorted((t, i) for _s, t, i in records)
    for m in measured:
        assert ran_at[m.rise] == inputs[(m.testset, m.index)], f"{m.testset}#{m.index} got another sample's window"
        assert m.ticks == records[(slot, m.testset, m.index)].cycles and m.clock_ok


# --- measurements of a run that was stopped before its boards were measured -----------------


def window_rows(run_dir: Path) -> dict[tuple, list]:
    rows: dict[tuple, list] = {}
    for m in read_measurements(run_dir):
        if m.method == "window":
            rows.setdefault((m.slot, m.testset, m.index), []).append(m)
    return rows


def test_a_killed_run_is_measured_when_it_is_resumed(tmp_path):
    """Answers are journaled as they come, measurements once a board has streamed: a run killed
    mid-stream leaves answers without measurements. Resuming asks for those again, for their
    busy windows only (the answers are kept, not journaled twice), and ends fully measured."""
    lab = write_lab(tmp_path, samples=40)
    owner = subprocess.Popen([sys.executable, "-m", "hil.cli", "run", str(lab)], stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL, env={**os.environ, "NO_COLOR": "1"})
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        run_dirs = [p for p in (tmp_path / "results").glob("*") if p.is_dir()]
        if run_dirs and len(read_records(run_dirs[0])) >= 40:
            break
        time.sleep(0.05)
    owner.kill()  # SIGKILL: nothing of hil runs after this
    owner.wait(timeout=30)
    run_dir = run_dirs[0]
    kept = {r.key: r for r in read_records(run_dir)}
    assert 40 <= len(kept) < 2 * 3 * 40
    assert len(window_rows(run_dir)) < len(kept)  # answers without a measurement

    resumed = hil("run", "--resume", run_dir, "--json")
    assert resumed.returncode == PASS, resumed.stdout[-2000:] + resumed.stderr[-3000:]
    records = {r.key: r for r in read_records(run_dir)}
    assert len(records) == 2 * 3 * 40 and all(records[key] == record for key, record in kept.items())
    assert len((run_dir / "records.jsonl").read_text().splitlines()) == len(records), "an answer journaled twice"
    rows = window_rows(run_dir)
    assert sorted(rows) == sorted(records) and all(len(mine) == 1 for mine in rows.values())
    for key, (m,) in rows.items():  # the emulated unit clocks the device's timer: its own window, exactly
        assert m.ticks == records[key].cycles and m.clock_ok, m
    summary = json.loads(resumed.stdout)
    assert all(s["unmeasured"] == 0 for s in summary["summaries"])
    assert "(0 unmeasured)" in resumed.stderr


def test_a_sample_that_answers_differently_when_asked_again_is_a_finding(tmp_path):
    slot = "an500-mnist1d"
    lab = write_lab(tmp_path, boards={slot: BOARDS[slot]}, samples=3)
    first = hil("run", lab, "--json")
    assert first.returncode == PASS, first.stderr[-3000:]
    run_dir = Path(json.loads(first.stdout)["run_dir"])
    # As if the run had stopped before its board was measured, and its first answer were not what
    # the device answers now.
    (run_dir / "measurements.jsonl").unlink()
    journal = run_dir / "records.jsonl"
    lines = journal.read_text().splitlines()
    changed = json.loads(lines[0])
    changed["predicted"] = (changed["predicted"] + 1) % 10
    journal.write_text("\n".join([json.dumps(changed)] + lines[1:]) + "\n")

    resumed = hil("run", "--resume", run_dir, "--json")
    assert resumed.returncode == REGRESSION, resumed.stderr[-3000:]
    reasons = json.loads(resumed.stdout)["verdict"]["reasons"]
    where = f"{changed['testset']}#{changed['index']}"
    assert any(f"{slot}: 1 samples answered differently when asked again to be measured (first {where})" in reason
               for reason in reasons), reasons
    measured = read_measurements(run_dir)
    (again,) = [m for m in measured if (m.testset, m.index) == (changed["testset"], changed["index"])
                and m.method != "burst"]
    assert again.method == "unmeasured" and "answered differently" in again.reason
    assert len([m for m in measured if m.method == "window"]) == 3 * 3 - 1  # the others are measured
