"""`hil sweep` on emulated boards: τ set over the link, measured at each point, and the
host's replay from one full-path run held against the measured sweep."""

import json
import shutil
from pathlib import Path

import pytest
import yaml

from hil.run.sweep import ENERGY_RESOLUTION

from tests.support.labs import BOARDS, USAGE, hil, write_lab

pytestmark = pytest.mark.skipif(shutil.which("qemu-system-arm") is None, reason="qemu-system-arm not installed")
PASS, BAD_INPUT = 0, 3
THRESHOLDS = "0.5:0.95:0.15"


@pytest.fixture(scope="module")
def sweep(tmp_path_factory):
    tmp_path = tmp_path_factory.mktemp("sweep")
    lab = write_lab(tmp_path, samples=30)
    result = hil("sweep", lab, "--threshold", THRESHOLDS, "--max-accuracy-drop", "1", "--json")
    assert result.returncode == PASS, result.stderr[-3000:]
    return lab, json.loads(result.stdout)


@pytest.fixture(scope="module")
def full_path_run(sweep):
    lab, _ = sweep
    data = yaml.safe_load(lab.read_text())
    data["run"]["threshold"] = 1.0
    full = lab.with_name("full-path.yaml")
    full.write_text(yaml.safe_dump(data, sort_keys=False))
    result = hil("run", full, "--json")
    assert result.returncode == PASS, result.stderr[-3000:]
    return json.loads(result.stdout)["run_dir"]


def by_board(points):
    boards = {}
    for p in points:
        boards.setdefault(p["slot"], []).append(p)
    return {slot: sorted(rows, key=lambda p: p["tau_q15"]) for slot, rows in boards.items()}


def test_exit_rate_latency_and_energy_move_monotonically_with_the_threshold(sweep):
    _, summary = sweep
    boards = by_board(summary["points"])
    assert set(boards) == set(BOARDS)
    for slot, points in boards.items():
        assert [p["tau"] for p in points] == ["0.50", "0.65", "0.80", "0.95", "1.0"]
        assert points[-1]["exit_rate"] == 0  # τ = 1: pure QUTE, never the early exit
        for lower, higher in zip(points, points[1:]):
            assert higher["exit_rate"] <= lower["exit_rate"], slot
            assert higher["latency_ms"] >= lower["latency_ms"], slot
            assert higher["energy_uj"] >= lower["energy_uj"] * (1 - ENERGY_RESOLUTION), slot
        assert points[0]["energy_uj"] < 0.8 * points[-1]["energy_uj"]  # exits save energy
    assert Path(summary["sweep_dir"], "sweep.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    for tau in ("0.50", "1.0"):  # every point is a run of its own, reconciled against the host
        assert Path(summary["sweep_dir"], f"tau-{tau}", "records.jsonl").stat().st_size > 0


def test_the_sweep_shows_each_boards_stage_split_from_a_profile(sweep):
    _, summary = sweep
    profiles = {p["slot"]: p for p in summary["profiles"]}
    assert set(profiles) == set(BOARDS)
    assert json.loads(Path(summary["sweep_dir"], "profile.json").read_text())["profiles"] == summary["profiles"]
    for slot, points in by_board(summary["points"]).items():
        stages = profiles[slot]["stage_cycles"]
        assert stages["stage1"] > 0 and stages["stage2"] > 0
        # The busy pin's full-path time at τ = 1 is what the two stages of the profile add up to.
        full_ms = 1e3 * (stages["stage1"] + stages["stage2"]) / profiles[slot]["clock_hz"]
        assert points[-1]["latency_ms"] == pytest.approx(full_ms, rel=0.02), slot


def test_the_recommended_threshold_keeps_the_accuracy_constraint(sweep):
    _, summary = sweep
    for slot, points in by_board(summary["points"]).items():
        (best,) = [p for p in points if p["recommended"]]
        reference = points[-1]
        assert best["accuracy"] >= reference["accuracy"] - 0.01
        cheaper = [p for p in points if p["energy_uj"] < best["energy_uj"] * (1 - ENERGY_RESOLUTION)]
        assert all(p["accuracy"] < reference["accuracy"] - 0.01 for p in cheaper), slot
        assert best["pareto"]


def test_the_replay_predicts_the_measured_sweep(sweep, full_path_run):
    lab, summary = sweep
    result = hil("sweep", lab, "--threshold", THRESHOLDS, "--replay", full_path_run, "--measured",
                 summary["sweep_dir"], "--window", "0.3:0.9", "--json")
    assert result.returncode == PASS, result.stderr[-3000:]
    replayed = json.loads(result.stdout)
    measured = {(p["slot"], p["tau_q15"]): p for p in replayed["measured"]}
    compared = 0
    for p in replayed["predicted"]:
        if p["tau_q15"] < 0:
            assert p["tau"] == "[0.3,0.9]"  # the window cascade, predicted only
            continue
        m = measured[(p["slot"], p["tau_q15"])]
        assert (p["accuracy"], p["exit_rate"]) == (m["accuracy"], m["exit_rate"])  # exact
        assert p["latency_ms"] == pytest.approx(m["latency_ms"], rel=0.01)
        compared += 1
    assert compared == 2 * 5
    assert "next to the measured sweep" in result.stderr


def test_bad_sweep_input_is_exit_3_and_options_that_do_not_go_together_a_usage_error(sweep, tmp_path):
    lab, summary = sweep
    for args, code, fragment in (
            (["--threshold", "0.9:0.5"], BAD_INPUT, "START:STOP"),
            (["--threshold", "0.5:0.9", "--replay", Path(summary["sweep_dir"]) / "tau-0.50"], BAD_INPUT,
             "not a full-path run"),
            (["--threshold", "0.5:0.9", "--window", "0.3:0.9"], USAGE, "go with --replay")):
        result = hil("sweep", lab, *args)
        assert result.returncode == code, (args, result.stderr)
        assert fragment in result.stderr
