"""A ppk2 unit (hil/hw/physical/ppk2.py) on the bench's Nucleo, through a real `hil run` and unmodified ppk2-api.

The PPK2 is tests/support/fake_ppk2.py on a pty, speaking the device's serial protocol: its samples are the
Nucleo's power profile over the Nucleo's own edges (its wire), and it writes the true energies."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from hil.hw.kinds import BOARD_KINDS
from tests.support.benches import KIND, physical_lab, unit_stopped
from tests.support.labs import REPO_ROOT, run_dir_of
from tests.support.ptys import raw_pty

PASS, INFRASTRUCTURE = 0, 2


@pytest.fixture
def ppk2(tmp_path: Path):
    """`ppk2(board, *options)`: the fake PPK2 on a Nucleo made with wire=True; returns its port."""
    processes: list[subprocess.Popen] = []

    def start(board, *options: str) -> str:
        process = subprocess.Popen(
            [sys.executable, "-m", "tests.support.fake_ppk2", "--wire", board.wire_port, "--kind", KIND,
             "--clock-hz", str(BOARD_KINDS[KIND].timer_hz), "--truth", str(tmp_path / "truth.jsonl"), *options],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=REPO_ROOT)
        processes.append(process)
        return process.stdout.readline().strip()

    yield start
    for process in processes:
        process.terminate()
        process.wait()


def lab_for(tmp_path: Path, board, port: str, mode: str = "source") -> Path:
    lab = physical_lab(tmp_path, board.probe.address, board.port)
    data = yaml.safe_load(lab.read_text())
    profile = BOARD_KINDS[KIND].power
    next(b for b in data["boards"] if b["slot"] == "bench-1")["monitor"] = {
        "kind": "ppk2", "port": port, "mode": mode, "vdd_mv": round(profile.bus_v * 1000),
        "busy_channel": 0, "exit_channel": 1}
    lab.write_text(yaml.safe_dump(data, sort_keys=False))
    return lab


def run(lab: Path, tmp_path: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "hil.cli", "run", str(lab), "--json"], capture_output=True,
                          text=True, timeout=300, env={**os.environ, "NO_COLOR": "1",
                                                       "HIL_LOCK_DIR": str(tmp_path / "locks")})


@pytest.mark.parametrize("mode", ["source", "ampere"])
def test_a_ppk2_meters_the_board_as_the_emulated_truth_says(tmp_path, nucleo, ppk2, mode):
    board = nucleo("STLINK-0201", wire=True)
    result = run(lab_for(tmp_path, board, ppk2(board), mode), tmp_path)
    assert result.returncode == PASS, result.stderr[-3000:]
    summary = json.loads(result.stdout)
    rows = [p for p in summary["performance"] if p["slot"] == "bench-1"]
    assert rows and all(p["clock_ok"] for p in rows), rows
    assert sum(p["inferences"] for p in rows) == 30 and not any(p["unmeasured"] for p in rows)
    truth = [json.loads(line) for line in (tmp_path / "truth.jsonl").read_text().splitlines()]
    lines = (run_dir_of(tmp_path) / "measurements.jsonl").read_text().splitlines()
    metered = [m for m in map(json.loads, lines) if m["slot"] == "bench-1"]
    assert len(metered) == 30 and all(m["method"] == "window" and m["energy_j"] is not None for m in metered)
    for m in metered:
        true = truth[m["window"] - 1]["excess_energy_j"]
        assert abs(m["energy_j"] - true) <= 0.01 * true, (m, true)
    traces = run_dir_of(tmp_path) / "traces"
    trace = [json.loads(line) for line in (traces / "bench-1.jsonl").read_text().splitlines()]
    assert trace[0]["unit"] == "ppk2" and trace[0]["HW"] == "9173" and trace[0]["mode"] == mode
    # The device's raw words decode again, offline, to the very edges and spans the run used.
    edges, spans = redecode(trace[0], (traces / "bench-1.ppk2").read_bytes())
    assert edges == [e for line in trace if "edges" in line for e in line["edges"]]
    assert spans == [s for line in trace if "spans" in line for s in line["spans"]]


def redecode(header: dict, raw: bytes) -> tuple[list, list]:
    """ppk2-api, given the calibration the trace recorded, and hil's SampleStream, on a recorded stream."""
    from ppk2_api.ppk2_api import PPK2_API

    from hil.hw.physical.ppk2 import SampleStream

    master, slave, path = raw_pty()  # ppk2-api wants a port to exist; nothing is read from it
    try:
        offline = PPK2_API(path)
        offline.modifiers.update(header["calibration"])
        offline.current_vdd = header["vdd_mv"]
        stream = SampleStream(offline.get_samples, header["vdd_mv"] / 1000, *header["channels"])
        edges, spans = stream.take(raw[:len(raw) // 4 * 4])
        offline.ser.close()
    finally:
        os.close(master), os.close(slave)
    return [[e.pin, e.level, e.at] for e in edges], [[s.start, s.end, s.power_w] for s in spans]


@pytest.mark.parametrize("samples", [30_000, 100])  # mid-run; during the health check's known answer
def test_a_ppk2_that_stops_is_one_board_error_and_every_record_is_kept_unmeasured(tmp_path, nucleo, ppk2, samples):
    board = nucleo(f"STLINK-02{samples % 97:02d}", wire=True)
    unit_stopped(tmp_path, run(lab_for(tmp_path, board, ppk2(board, "--stall-after", str(samples))), tmp_path),
                 "stopped streaming")


def test_a_ppk2_that_does_not_answer_leaves_the_board_streaming_unmeasured_with_one_clear_error(tmp_path, nucleo):
    board = nucleo("STLINK-0203")
    silent, silent_slave, silent_port = raw_pty()  # a port with nothing behind it that speaks
    try:
        result = run(lab_for(tmp_path, board, silent_port), tmp_path)
    finally:
        os.close(silent), os.close(silent_slave)
    assert result.returncode == INFRASTRUCTURE, result.stderr[-3000:]
    failures = json.loads(result.stdout)["failures"]
    assert [(f["slot"], f["stage"]) for f in failures] == [("bench-1", "monitor")], failures
    assert f"no PPK2 answers at {os.path.realpath(silent_port)}" in failures[0]["reason"], failures
    records = [json.loads(line) for line in (run_dir_of(tmp_path) / "records.jsonl").read_text().splitlines()]
    assert sum(r["slot"] == "bench-1" for r in records) == 30
    measured = [json.loads(line) for line in (run_dir_of(tmp_path) / "measurements.jsonl").read_text().splitlines()]
    bench = [m for m in measured if m["slot"] == "bench-1"]  # each answer journaled with why it is unmeasured
    assert len(bench) == 30 and all(m["method"] == "unmeasured" and "no PPK2 answers" in m["reason"] for m in bench)
