"""The data path of `hil run` in-process on FakeBoards (hil.testing.fake_board): rack, stream,
metering, resume, verdict and baseline in milliseconds to a second, their error paths driven by
a fake that misbehaves on request. The same end to end on QEMU is tests/emulated/."""

import json
from pathlib import Path

import pytest

from hil.hw import protocol
from hil.run.rack import Rack, reserve
from hil.run.records import read_measurements, read_records
from hil.run.runner import execute, pending_jobs, stream_boards
from hil.lab.load import load_lab
from hil.store import files
from hil.testing.fake_board import Faults, Timing
from hil.model.card import load_model
from tests.support.labs import BOARDS, INFRASTRUCTURE, PASS, REGRESSION, write_lab

SAMPLES = 6  # per test set; three sets per board


class Quiet:
    def start(self, totals):
        pass

    def advance(self, slot, samples):
        pass


def run(lab: Path, resume: Path | None = None, baseline: str | None = None):
    return execute(None if resume else lab, resume, Quiet(), baseline)


def stream(tmp_path: Path, **settings):
    """One board's whole stream and metering, without the run around it: (failures, run_dir, rack)."""
    slot = "an386-digits"
    lab = load_lab(write_lab(tmp_path, boards={slot: BOARDS[slot]}, samples=SAMPLES, **settings))
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    with reserve(lab, [slot]), Rack(lab, [slot], lab.run.threshold_q15, run_dir / "traces") as rack:
        assert not rack.failures, rack.failures
        failures = rack.failures + stream_boards(rack, pending_jobs(lab, {}), run_dir, lab.run.threshold_q15, Quiet())
    return failures, run_dir, rack


def test_a_run_of_fake_boards_is_exact_measured_and_passes(fake_rack, tmp_path):
    outcome = run(write_lab(tmp_path, samples=SAMPLES))
    assert (outcome.verdict.status, outcome.verdict.exit_code) == ("pass", PASS), outcome.verdict.reasons
    records = read_records(outcome.run_dir)
    assert len(records) == len(BOARDS) * 3 * SAMPLES and all(r.attempts == 1 for r in records)
    assert all(s.exact == s.samples == SAMPLES for s in outcome.summaries)
    measured = read_measurements(outcome.run_dir)
    by_key = {r.key: r for r in records}
    windows = [m for m in measured if m.method == "window"]
    assert len(windows) == len(records) and all(m.clock_ok for m in measured)
    assert all(m.ticks == by_key[(m.slot, m.testset, m.index)].cycles for m in windows)
    assert {m.method for m in measured} == {"window", "burst"}  # short inferences get a burst for energy
    for slot in BOARDS:  # energy against the unit model's own ground truth, which never crossed the link
        truth = {json.loads(line)["rise"]: json.loads(line)["excess_energy_j"]
                 for line in (outcome.run_dir / "traces" / f"{slot}.truth.jsonl").read_text().splitlines()}
        bursts = [m for m in measured if m.slot == slot and m.method == "burst"]
        assert bursts and all(m.energy_j == pytest.approx(truth[m.rise] / m.count, rel=0.02) for m in bursts)
    run_json = json.loads((outcome.run_dir / "run.json").read_text())
    assert all(board["fake"] for board in run_json["boards"].values())


def test_a_board_reporting_other_firmware_is_set_aside_and_the_others_come_up(fake_rack, tmp_path):
    fake_rack.faults["an386-digits"] = Faults(firmware_sha256=b"\x99" * 32)
    lab = load_lab(write_lab(tmp_path, samples=SAMPLES))
    with reserve(lab, list(BOARDS)), Rack(lab, list(BOARDS), lab.run.threshold_q15, tmp_path / "traces") as rack:
        (failure,) = rack.failures
        assert (failure.slot, failure.stage) == ("an386-digits", "identity") and "reflash the board" in failure.reason
        assert [board.slot for board in rack.ready] == ["an500-mnist1d"]
        (healthy,) = [board for board in fake_rack.boards if board.slot == "an500-mnist1d"]
        assert healthy.firmware.tau_q15 == lab.run.threshold_q15  # identified, then its threshold set
    assert all(board.firmware is None for board in fake_rack.boards), "a board was left up"


def test_lost_and_broken_replies_are_retried_and_every_window_stays_with_its_answer(fake_rack, tmp_path):
    fake_rack.faults["an386-digits"] = Faults(drop_results=frozenset({2, 5}), corrupt_results=frozenset({3}))
    failures, run_dir, rack = stream(tmp_path, request_timeout_s=0.3, retries=2)
    assert failures == []
    records = read_records(run_dir)
    # RESULT 2 is lost, its retry (3) broken, the retry after that answered; RESULT 5 is lost, 6 answers.
    assert sorted(r.attempts for r in records) == [1] * (3 * SAMPLES - 2) + [2, 3]
    counts = rack.link_counts["an386-digits"]
    assert (counts.timeouts, dict(counts.corrupt), counts.retries) == (2, {"BAD_CRC": 1}, 3)
    measured = {(m.testset, m.index): m for m in read_measurements(run_dir) if m.method == "window"}
    assert len(measured) == len(records)
    # Windows 2, 3 and 5 ran without an answer reaching the host: they are nobody's.
    assert sorted(m.window for m in measured.values())[:4] == [1, 4, 6, 7]
    assert all(measured[(r.testset, r.index)].ticks == r.cycles for r in records)


def test_a_board_that_restarts_is_answered_again_but_its_windows_are_nobodys(fake_rack, tmp_path):
    fake_rack.faults["an386-digits"] = Faults(restart_before=frozenset({4}))
    failures, run_dir, _rack = stream(tmp_path, request_timeout_s=0.3, retries=2)
    (failure,) = failures
    assert failure.stage == "stream" and "restarted" in failure.reason and "unmeasured" in failure.reason
    records = read_records(run_dir)
    assert len(records) == 3 * SAMPLES and {r.tau_q15 for r in records} == {29491}  # τ set again after it
    assert {m.method for m in read_measurements(run_dir)} == {"unmeasured"}


def test_a_hung_board_is_brought_back_by_the_ladder_and_every_sample_is_answered_once(fake_rack, tmp_path):
    fake_rack.faults["an386-digits"] = Faults(hang_after=4)
    failures, run_dir, rack = stream(tmp_path, request_timeout_s=0.2, retries=1)
    assert failures == []
    records = read_records(run_dir)
    assert len(records) == len({r.key for r in records}) == 3 * SAMPLES  # none lost, none twice
    # The firmware hangs after every 4 INFERs: resync cannot wake it, the reset does.
    assert len(rack.recoveries) == (3 * SAMPLES - 1) // 4
    for recovery in rack.recoveries:
        assert recovery.recovered_by == "reset" and [(s.step, s.ok) for s in recovery.steps] == [
            ("resync", False), ("reset", True)]
        assert "no valid answer to INFER in 2 attempts" in recovery.error
    assert [r.index for r in rack.recoveries][:2] == [4, 8 % SAMPLES]
    # Windows are measured segment by segment, the device's count read again after each reset.
    assert {m.method for m in read_measurements(run_dir)} <= {"window", "burst"}


def test_answers_whose_windows_froze_with_the_board_are_asked_again_once_it_is_back(fake_rack, tmp_path):
    # The board stops dead after 5 INFERs, the edges of the last still on their wire: which of the 4 windows that
    # came is whose of the 5 answers cannot be known. After the reset those 5 are asked again for their windows
    # only, so the run ends measured, and every answer is journaled once.
    fake_rack.faults["an386-digits"] = Faults(freezes_after=5)
    failures, run_dir, rack = stream(tmp_path, request_timeout_s=0.2, retries=1)
    assert failures == []
    (recovery,) = rack.recoveries
    assert (recovery.recovered_by, recovery.index) == ("reset", 5)
    records = read_records(run_dir)
    assert len(records) == len({r.key for r in records}) == 3 * SAMPLES
    measured = read_measurements(run_dir)
    windows = [(m.testset, m.index) for m in measured if m.method == "window"]
    assert sorted(windows) == sorted(r.key[1:] for r in records)
    assert {m.method for m in measured} <= {"window", "burst"}
    (board,) = rack.boards
    first, second = [[r.sample for r in f.requests if isinstance(r, protocol.Infer)] for f in board.booted]
    assert len(first) == 5 and second[:5] == first  # the frozen board's 5 answers, asked again


def test_a_dead_board_climbs_the_whole_ladder_then_is_quarantined_and_resume_completes_the_run(fake_rack,
                                                                                               tmp_path):
    # The health check's INFER, then 5 (its last lost): the board dies for good.
    fake_rack.faults["an386-digits"] = Faults(gone_after=1 + 5, stays_gone=True)
    first = run(write_lab(tmp_path, samples=SAMPLES))
    assert first.verdict.exit_code == INFRASTRUCTURE
    (failure,) = [f for f in first.failures if f.stage == "stream"]
    assert failure.slot == "an386-digits" and "quarantined for the rest of the run" in failure.reason, first.failures
    assert len([r for r in read_records(first.run_dir) if r.slot == "an386-digits"]) == 4
    (recovery,) = first.run.recoveries
    assert recovery.recovered_by is None and [(s.step, s.ok) for s in recovery.steps] == [
        ("resync", False), ("reset", False), ("reflash", False), ("power-cycle", False), ("quarantine", True)]
    assert files.read_run(first.run_dir).recoveries == [recovery]  # run.json keeps it
    fake_rack.faults.clear()
    resumed = run(None, resume=first.run_dir)
    assert resumed.verdict.exit_code == PASS, resumed.verdict.reasons
    journal = (first.run_dir / "records.jsonl").read_text().splitlines()
    assert len(journal) == len(read_records(first.run_dir)) == len(BOARDS) * 3 * SAMPLES, "resume repeated samples"
    assert [s.boards for s in resumed.run.sessions] == [sorted(BOARDS), ["an386-digits"]]


def test_one_wrong_output_byte_is_a_regression(fake_rack, tmp_path):
    fake_rack.faults["an500-mnist1d"] = Faults(wrong_logits=frozenset({3}))
    outcome = run(write_lab(tmp_path, samples=SAMPLES))
    assert outcome.verdict.exit_code == REGRESSION
    (mismatch,) = outcome.mismatches
    assert (mismatch.record.slot, mismatch.differing_bytes, mismatch.max_steps) == ("an500-mnist1d", 1, 1)
    assert any("an500-mnist1d/" in reason and "differ from the host reference" in reason
               for reason in outcome.verdict.reasons), outcome.verdict.reasons


def test_a_slower_firmware_fails_latency_against_its_baseline_and_an_unchanged_one_passes(fake_rack, tmp_path):
    lab = write_lab(tmp_path, samples=SAMPLES)
    lab.write_text(lab.read_text() + "regression:\n  bootstrap_resamples: 200\n")  # enough for a 1.5x change
    baseline = run(lab)
    assert baseline.verdict.exit_code == PASS
    unchanged = run(lab, baseline=str(baseline.run_dir))
    assert unchanged.verdict.exit_code == PASS, unchanged.verdict.reasons
    assert unchanged.rules and {r.result.status for r in unchanged.rules} <= {"pass", "skip"}
    normal = Timing.of(load_model("qute-digits"))
    fake_rack.timing["an386-digits"] = Timing(normal.stage1_cycles * 3 // 2, normal.stage2_cycles * 3 // 2)
    slower = run(lab, baseline=str(baseline.run_dir))
    assert slower.verdict.exit_code == REGRESSION
    failed = {(r.slot, r.result.rule) for r in slower.rules if r.result.status == "fail"}
    assert failed and {rule for _slot, rule in failed} <= {"latency", "energy"}
    assert {slot for slot, _rule in failed} == {"an386-digits"}
