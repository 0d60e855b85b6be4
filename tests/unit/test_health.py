"""The health check before a run, its history in the catalog, and quarantine after N failed checks in a row:
the catalog's rules alone, then whole runs of FakeBoards (hil.testing.fake_board) whose firmware answers the
known question wrongly. The same on QEMU: tests/emulated/test_health.py."""

import sqlite3
import xml.etree.ElementTree as ET

import pytest

from hil import cli
from hil.errors import HilError
from hil.hw import protocol
from hil.lab.load import load_lab
from hil.report import junit
from hil.run.records import read_measurements, read_records
from hil.run.runner import execute
from hil.store import health
from hil.store.files import read_run
from hil.testing.fake_board import Faults
from tests.support.labs import BOARDS, INFRASTRUCTURE, PASS, REGRESSION, write_lab

SAMPLES = 4
SICK = "an386-digits"
TWINS = {SICK: ("mps2-an386", "qute-digits"), "an386-twin": ("mps2-an386", "qute-digits")}  # one image, two boards


class Quiet:
    def start(self, totals):
        pass

    def advance(self, slot, samples):
        pass


def check(slot: str, ok: bool, run_id: str = "r") -> health.HealthCheck:
    return health.HealthCheck(run_id, "2026-01-01T00:00:00Z", "lab", slot, "mps2-an386", None, ok,
                              None if ok else "no answer")


def test_the_history_keeps_every_check_in_order_per_board(tmp_path):
    for run_id, ok in (("r1", True), ("r2", False), ("r3", False)):
        health.record_check(tmp_path, check("a", ok, run_id))
    health.record_check(tmp_path, check("b", True, "r3"))
    assert [(c.run_id, c.ok, c.reason) for c in health.history(tmp_path, "lab", "a")] == [
        ("r1", True, None), ("r2", False, "no answer"), ("r3", False, "no answer")]
    assert [c.slot for c in health.history(tmp_path, "lab", "b")] == ["b"]
    assert health.history(tmp_path, "other lab", "a") == []
    assert health.history(tmp_path / "none", "lab", "a") == []  # no catalog yet: no history, nothing made
    assert not (tmp_path / "none").exists()


def nights(*oks: bool | tuple[bool, ...]) -> list[health.HealthCheck]:
    """One run per argument: its checks (a bool, or several: the check before streaming, then the ladder's)."""
    return [check("a", ok, f"r{night}") for night, run_oks in enumerate(oks)
            for ok in (run_oks if isinstance(run_oks, tuple) else (run_oks,))]


def test_failures_in_a_row_count_the_runs_back_to_the_last_pass():
    assert health.failures_in_a_row([]) == 0
    assert health.failures_in_a_row(nights(False, True)) == 0
    assert health.failures_in_a_row(nights(False, True, False, False)) == 2
    assert health.failures_in_a_row(nights(False, False, False)) == 3
    # healthy each evening, given up on by the ladder each night: three failed nights
    assert health.failures_in_a_row(nights((True, False), (True, False), (True, False))) == 3
    assert health.failures_in_a_row(nights(False, (True, False), True)) == 0
    assert health.failures_in_a_row([check("a", False, "r1")] * 3) == 1  # one run's sessions: one night


def test_a_release_forgives_the_checks_before_it(tmp_path):
    for night in range(3):
        health.record_check(tmp_path, check("a", False, f"r{night}"))
    health.quarantine(tmp_path, "lab", "a", "failed 3 in a row", by="r3")
    assert set(health.quarantined(tmp_path, "lab")) == {"a"} and health.quarantined(tmp_path, "other") == {}
    released = health.release(tmp_path, "lab", "a")
    assert released.reason == "failed 3 in a row" and health.quarantined(tmp_path, "lab") == {}
    assert health.release(tmp_path, "lab", "a") is None  # not quarantined any more
    assert health.history(tmp_path, "lab", "a", since_release=True) == []
    health.record_check(tmp_path, check("a", False))
    assert health.failures_in_a_row(health.history(tmp_path, "lab", "a", since_release=True)) == 1
    assert len(health.history(tmp_path, "lab", "a")) == 4  # the whole history stays


def run(lab):
    return execute(lab, None, Quiet())


def test_the_health_check_asks_one_known_answer_and_leaves_records_and_metering_alone(fake_rack, tmp_path):
    lab_path = write_lab(tmp_path, samples=SAMPLES)
    outcome = run(lab_path)
    assert outcome.verdict.exit_code == PASS, outcome.verdict.reasons
    lab = load_lab(lab_path)
    for board in fake_rack.boards:
        (firmware,) = board.booted
        infers = [r for r in firmware.requests if type(r) is protocol.Infer]
        first_set = lab.models[board.spec.model].testsets[0]
        # Its first INFER is the known question, then every sample once: the check is not journaled.
        assert infers[0].sample == first_set.inputs[0].tobytes()
        assert len(infers) == 1 + 3 * SAMPLES
    records = read_records(outcome.run_dir)
    assert len(records) == len(BOARDS) * 3 * SAMPLES and len({r.key for r in records}) == len(records)
    windows = [m for m in read_measurements(outcome.run_dir) if m.method == "window"]
    assert len(windows) == len(records) and all(m.clock_ok for m in windows)  # every answer its own window
    checks = {slot: health.history(lab.results_dir, lab.name, slot) for slot in BOARDS}
    assert all([(c.run_id, c.ok) for c in checks[slot]] == [(outcome.run_dir.name, True)] for slot in BOARDS)


def test_three_failed_checks_in_a_row_quarantine_a_board_until_it_is_released(fake_rack, tmp_path, capsys):
    lab_path = write_lab(tmp_path, boards=TWINS, samples=SAMPLES, quarantine_after=3)
    lab = load_lab(lab_path)
    fake_rack.faults[SICK] = Faults(wrong_logits=frozenset({1}))  # its first INFER, the known question, is wrong
    for night in (1, 2, 3):
        outcome = run(lab_path)
        assert outcome.verdict.exit_code == INFRASTRUCTURE, outcome.verdict.reasons
        (failure,) = outcome.failures
        assert (failure.slot, failure.stage) == (SICK, "health")
        assert "differs from the host reference (1 output bytes, up to 1 steps" in failure.reason
        assert "another board with its image answered exactly" in failure.reason and "\n" not in failure.reason
        records = read_records(outcome.run_dir)
        assert {r.slot for r in records} == {"an386-twin"} and len(records) == 3 * SAMPLES  # the other goes on
        assert outcome.run.quarantined == [] if night < 3 else [q.slot for q in outcome.run.quarantined] == [SICK]
    assert outcome.run.quarantined[0].brought_up and outcome.run.quarantined[0].by == outcome.run_dir.name
    assert "3 runs in a row" in outcome.run.quarantined[0].reason
    assert [(c.ok, c.counts) for c in health.history(lab.results_dir, lab.name, SICK)] == [(False, True)] * 3
    assert set(health.quarantined(lab.results_dir, lab.name)) == {SICK}

    # The fourth night: the quarantined board is not brought up at all; the rest is judged and passes.
    made = len(fake_rack.boards)
    outcome = run(lab_path)
    assert [b.slot for b in fake_rack.boards[made:]] == ["an386-twin"]
    assert (outcome.verdict.status, outcome.verdict.exit_code) == ("pass", PASS), outcome.verdict.reasons
    (note,) = outcome.verdict.reasons
    assert note.startswith(f"{SICK}: quarantined, not brought up") and "hil board release" in note
    on_disk = read_run(outcome.run_dir)
    assert [(q.slot, q.brought_up) for q in on_disk.quarantined] == [(SICK, False)]
    assert on_disk.sessions[-1].boards == ["an386-twin"] and SICK not in on_disk.boards
    assert len(health.history(lab.results_dir, lab.name, SICK)) == 3  # not checked: it was not brought up
    junit.write(outcome.run_dir / "junit.xml", outcome.run, outcome.summaries, outcome.failures, outcome.rules)
    suite = ET.parse(outcome.run_dir / "junit.xml").getroot()[0]
    (skipped,) = suite.iter("skipped")
    assert "not brought up" in skipped.get("message") and suite.get("skipped") == "1" and suite.get("errors") == "0"
    assert not [c for c in suite.iter("testcase") if c.get("classname").startswith(f"{SICK}.")]

    # `hil board list` shows it; released, the next run checks it again (fixed now) and uses it.
    assert cli.main(["board", "list", str(lab_path)]) == 0
    listed = capsys.readouterr().out
    assert "quarantined since" in listed and "3 of 3" in listed
    assert cli.main(["board", "release", str(lab_path), SICK]) == 0
    assert "released" in capsys.readouterr().out
    fake_rack.faults.clear()
    outcome = run(lab_path)
    assert outcome.verdict.exit_code == PASS and outcome.verdict.reasons == [], outcome.verdict.reasons
    assert [c.ok for c in health.history(lab.results_dir, lab.name, SICK)] == [False, False, False, True]
    assert cli.main(["board", "health", str(lab_path), SICK]) == 0
    assert capsys.readouterr().out.count("FAILED") == 3


def test_a_board_the_ladder_gives_up_on_each_night_is_quarantined_though_it_passes_its_check(fake_rack, tmp_path):
    # Each night it answers the known question, then 5 samples (its last lost), then never again.
    lab_path = write_lab(tmp_path, boards=TWINS, samples=SAMPLES, quarantine_after=2)
    lab = load_lab(lab_path)
    fake_rack.faults[SICK] = Faults(gone_after=1 + 5, stays_gone=True)
    for night in (1, 2):
        outcome = run(lab_path)
        assert outcome.verdict.exit_code == INFRASTRUCTURE, outcome.verdict.reasons
        (recovery,) = outcome.run.recoveries
        assert recovery.slot == SICK and recovery.recovered_by is None
        assert len([r for r in read_records(outcome.run_dir) if r.slot == SICK]) == 4  # what it answered is kept
        assert [q.slot for q in outcome.run.quarantined] == ([] if night == 1 else [SICK])
    assert [(c.ok, c.reason is not None and "recovery ladder" in c.reason)
            for c in health.history(lab.results_dir, lab.name, SICK)] == [(True, False), (False, True)] * 2
    (entry,) = outcome.run.quarantined
    assert entry.brought_up and "failed 2 runs in a row" in entry.reason and "recovery ladder" in entry.reason
    made = len(fake_rack.boards)
    outcome = run(lab_path)  # the third night: set aside, not brought up; the rest passes
    assert [b.slot for b in fake_rack.boards[made:]] == ["an386-twin"]
    assert outcome.verdict.exit_code == PASS, outcome.verdict.reasons


def test_a_wrong_known_answer_no_board_of_its_image_answered_right_is_judged_never_quarantined(fake_rack, tmp_path):
    # Alone with its image, a board cannot be told from its image: it streams, and the wrong answer is a finding
    # of the run (exit 1), night after night, and never quarantines it (a regression must stay red).
    lab_path = write_lab(tmp_path, samples=SAMPLES, quarantine_after=2)
    lab = load_lab(lab_path)
    fake_rack.faults[SICK] = Faults(wrong_logits=frozenset({1}))  # wrong in the check, right when streamed
    for _night in range(3):
        outcome = run(lab_path)
        assert outcome.verdict.exit_code == REGRESSION, outcome.verdict.reasons
        (failure,) = outcome.failures
        assert failure.stage == "rerun"
        assert "in its health check, and answered it exactly when streamed" in failure.reason
        assert len([r for r in read_records(outcome.run_dir) if r.slot == SICK]) == 3 * SAMPLES
    assert [(c.ok, c.counts) for c in health.history(lab.results_dir, lab.name, SICK)] == [(False, False)] * 3
    assert health.quarantined(lab.results_dir, lab.name) == {}
    fake_rack.faults[SICK] = Faults(wrong_logits=frozenset(range(1, 100)))  # a wrong image: every answer wrong
    outcome = run(lab_path)
    assert outcome.verdict.exit_code == REGRESSION and not outcome.failures  # reconciliation says it, once
    assert any(f"{SICK}/clean: {SAMPLES} of {SAMPLES} answers differ" in r for r in outcome.verdict.reasons)


def test_a_board_quarantined_by_hand_is_left_out_and_not_locked(fake_rack, tmp_path, capsys):
    lab_path = write_lab(tmp_path, samples=SAMPLES)
    assert cli.main(["board", "quarantine", str(lab_path), SICK, "--reason", "USB cable  loose"]) == 0
    assert "USB cable loose" in capsys.readouterr().out
    lab = load_lab(lab_path)
    from hil.hw.factory import lock_name
    from hil.hw.locks import Lock

    (spec,) = [b for b in lab.boards if b.slot == SICK]
    held = Lock(lock_name(spec, lab.file))
    assert held.try_acquire("someone fixing it") is None  # on a bench, by hand: the run must not wait for it
    try:
        outcome = run(lab_path)
    finally:
        held.release()
    assert outcome.verdict.exit_code == PASS, outcome.verdict.reasons
    assert "USB cable loose" in outcome.verdict.reasons[0] and "hil board quarantine" in outcome.verdict.reasons[0]


def test_every_board_quarantined_is_refused_and_the_board_commands_refuse_unknown_slots(fake_rack, tmp_path,
                                                                                        capsys):
    lab_path = write_lab(tmp_path, samples=SAMPLES)
    for slot in BOARDS:
        assert cli.main(["board", "quarantine", str(lab_path), slot, "--reason", "away"]) == 0
    with pytest.raises(HilError, match="every board of lab .* is quarantined, nothing to run") as refusal:
        run(lab_path)
    assert refusal.value.exit_code == INFRASTRUCTURE and not fake_rack.boards  # no run folder: test_refused_runs.py
    capsys.readouterr()
    assert cli.main(["board", "release", str(lab_path), "nope"]) == 3
    assert "no board in slot 'nope'" in capsys.readouterr().err
    assert cli.main(["board", "health", str(lab_path), SICK]) == 3  # never checked
    assert "has no health check" in capsys.readouterr().err


def test_the_catalog_keeps_health_beside_the_runs(fake_rack, tmp_path):
    lab_path = write_lab(tmp_path, samples=SAMPLES)
    outcome = run(lab_path)
    with sqlite3.connect(outcome.run_dir.parent / "catalog.sqlite") as db:
        rows = db.execute("SELECT run_id, slot, kind, probe, ok FROM health ORDER BY slot").fetchall()
    assert rows == [(outcome.run_dir.name, slot, kind, None, 1) for slot, (kind, _model) in sorted(BOARDS.items())]


def test_a_catalog_whose_health_table_lacks_counts_takes_new_checks(tmp_path):
    with sqlite3.connect(tmp_path / "catalog.sqlite") as db:
        db.execute("CREATE TABLE health (run_id TEXT, time TEXT, lab TEXT, slot TEXT, kind TEXT, probe TEXT, "
                   "ok INTEGER, reason TEXT)")
        db.execute("INSERT INTO health VALUES ('r0', 't', 'lab', 'a', 'k', NULL, 0, 'old')")
    health.record_check(tmp_path, check("a", False, "r1"))
    assert [(c.run_id, c.counts) for c in health.history(tmp_path, "lab", "a")] == [("r0", True), ("r1", True)]
