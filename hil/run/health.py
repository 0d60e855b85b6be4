"""The health check before a run, and the quarantine it leads to.

Every board a run brings up is checked before it streams: it came up (flashed, started), its HELLO names its
manifest's image and model (rack.check_identity), it runs the kernel conformance suite (hil/run/conformance.py:
every vector through its kernel, against the run's host reference, run.reference), and it answers one known
question exactly: the first sample of its model's first test set, compared bit for bit with that reference at
the run's threshold. A conformance mismatch is the image's, not the board's: the board streams, the run fails
(stage `conformance`, exit 1) and its health row is kept as failed but not counted towards quarantine. The
known answer is not journaled (it is no record of the run), and its busy window is taken from the board's unit
and dropped before the metering reads the device's window count, so neither the records nor the metering see
it; the suite runs first, so that the unit's samples of its time go with that window.

A board that fails is set aside for this run (stage `health`, or `bring-up` / `identity` where it failed
earlier); the others go on. A wrong answer is held against the board only when another board with the same
image answered exactly: otherwise the image itself may be wrong, a regression, and the board streams so that
the run judges it (KnownAnswerCheck). A firmware regression thus stays exit 1 and never quarantines a board.

Each check is a row of the catalog's health history (hil/store/health.py), and a board that failed its last
`run.quarantine_after` checks in a row is quarantined: later runs do not lock or bring it up (no flashing)
until `hil board release`. A board the recovery ladder gave up on mid-run has failed that night too: one
more failed row (`ladder_checks`), so a board that passes every evening and dies every night is quarantined
the same way.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from joblib import Parallel, delayed

from hil.firmware.conformance import Suite
from hil.hw import protocol
from hil.hw.board import Board
from hil.hw.monitor import MonitorError
from hil.lab.load import Lab
from hil.model.card import ModelCard
from hil.model.reference import DEFAULT_REFERENCE, Reference, ReferenceOutputs, run_reference
from hil.model.testsets import TestSet
from hil.run.conformance import Conformance, run_suite
from hil.run.rack import BoardFailure, FailureStage, Rack, answered, failure_reason
from hil.run.reconcile import check_samples
from hil.run.records import Record
from hil.run.recovery import Recovery
from hil.store import health
from hil.store.files import QuarantinedBoard
from hil.run.verdict import QuarantineNote

KNOWN_INDEX = 0  # the sample asked: the first of the model's first test set
CHECKED_STAGES = (FailureStage.BRING_UP, FailureStage.IDENTITY, FailureStage.HEALTH)


@dataclass(frozen=True)
class KnownAnswer:
    """One model's known question: a sample and the host reference's answer to it."""

    card: ModelCard
    testset: TestSet
    reference: ReferenceOutputs  # of that one sample (index KNOWN_INDEX)


def known_answers(lab: Lab) -> dict[str, KnownAnswer]:
    """Per model of the lab, its known question and the answer of the run's host reference (run.reference)."""
    answers = {}
    for name, model in lab.models.items():
        testset = model.testsets[0]
        answers[name] = KnownAnswer(model.card, testset, run_reference(model.card, testset.inputs[:KNOWN_INDEX + 1],
                                                                       reference=lab.run.reference))
    return answers


@dataclass(frozen=True)
class _Asked:
    """One board's answer to its known question: how it differs (None: exactly right), or why there is none."""

    differs: str | None = None
    failures: tuple[BoardFailure, ...] = ()
    record: Record | None = None  # the answer, as a record that is never journaled


def answer_of(record: Record) -> tuple:
    """What the device answered, without how it was asked (attempts) or how long it took (cycles)."""
    return (record.tau_q15, record.exited, record.predicted, record.confidence_q15, record.exit_logits,
            record.head_logits)


class KnownAnswerCheck:
    """The rack's `pre_run_check`: each identified board, its unit started, answers its model's known question.

    A board that does not answer fails its check (stage `health`). One that answers wrongly is to blame only if
    another board with the same image answered exactly: then it is set aside (`health`). Otherwise the image may
    be what is wrong, a regression this run must judge in full, so the board streams and reconciliation counts
    its answers (exit 1); its check is kept as failed but not held against it (`suspect`)."""

    def __init__(self, answers: dict[str, KnownAnswer], tau_q15: int, retries: int, suite: Suite | None = None,
                 reference: Reference = DEFAULT_REFERENCE):
        self.answers, self.tau_q15, self.retries = answers, tau_q15, retries
        self.suite, self.reference = suite, reference  # the conformance suite, and whose outputs it expects
        self.conformance: dict[str, Conformance] = {}  # slot: its run of the suite, for each board that ran it
        self.suspect: dict[str, str] = {}  # slot: why its wrong answer is not held against it
        self.suspect_answers: dict[str, tuple[Record, str]] = {}  # slot: that answer and how it differs

    def __call__(self, boards: list[Board]) -> list[BoardFailure]:
        asked = Parallel(n_jobs=max(1, len(boards)), backend="threading")(delayed(self._ask)(b) for b in boards)
        exact_images = {b.manifest.image_sha256 for b, a in zip(boards, asked) if a.differs is None and not
                        any(f.stage == FailureStage.HEALTH for f in a.failures)}
        failures = []
        for board, answer in zip(boards, asked):
            failures += answer.failures
            if answer.differs is None:
                continue
            if board.manifest.image_sha256 in exact_images:
                failures.append(BoardFailure(board.slot, FailureStage.HEALTH, f"{answer.differs}, where another "
                                             "board with its image answered exactly; set aside for this run"))
            else:
                self.suspect[board.slot] = (f"{answer.differs}; no board with its image answered exactly, so the "
                                            "image may be wrong: the board streams and the run judges its answers")
                self.suspect_answers[board.slot] = (answer.record, answer.differs)
        return failures

    def unconfirmed(self, records: list[Record]) -> list[BoardFailure]:
        """A wrong known answer of a board that streamed is a finding, never lost: where the run's journal does
        not hold the same answer to that sample (which reconciliation then reports), it is a regression of its
        own (stage `rerun`: the device answered one question two ways, or the answer is only here)."""
        journaled = {r.key: r for r in records}
        failures = []
        for slot, (wrong, differs) in self.suspect_answers.items():
            kept = journaled.get(wrong.key)
            if kept is not None and answer_of(kept) == answer_of(wrong):
                continue
            how = "answered it exactly when streamed" if kept is not None else "never streamed it"
            failures.append(BoardFailure(slot, FailureStage.RERUN, f"{differs} in its health check, and {how}: "
                                         "one of its answers differs from the host reference"))
        return failures

    def _ask(self, board: Board) -> _Asked:
        conformance = self._run_suite(board)
        known = self.answers[board.spec.model]
        testset = known.testset
        try:
            result, attempts = answered(board, protocol.Infer(testset.inputs[KNOWN_INDEX].tobytes()), self.retries,
                                        tau_q15=self.tau_q15, fix="check the board, then run again")
        except Exception as error:  # noqa: BLE001 - whatever it is, this board failed its check alone
            reason = failure_reason(board.slot, error).removeprefix(f"{board.slot}: ")
            return _Asked(failures=conformance + (BoardFailure(board.slot, FailureStage.HEALTH, f"{board.slot}: "
                                                 f"health check: no answer to {testset.name}#{KNOWN_INDEX}: {reason}"),))
        record = Record(slot=board.slot, model=board.spec.model, testset=testset.name, index=KNOWN_INDEX,
                        label=int(testset.labels[KNOWN_INDEX]), tau_q15=self.tau_q15, exited=result.exited,
                        predicted=result.predicted, confidence_q15=result.confidence_q15, cycles=result.cycles,
                        exit_logits=list(result.logits[0]), head_logits=[list(row) for row in result.logits[1:]],
                        attempts=attempts)
        (check,) = check_samples(known.card, known.reference, [record])
        differs = None
        if not check.exact:
            wrong = [what for what, agrees in (("exit", check.exit_agrees), ("class", check.class_agrees),
                                               ("confidence", check.confidence_agrees)) if not agrees]
            differs = (f"{board.slot}: health check: its answer to {testset.name}#{KNOWN_INDEX} differs from the host "
                       f"reference ({check.differing_bytes} output bytes, up to {check.max_steps} steps"
                       f"{'; ' + ', '.join(wrong) + ' differ' if wrong else ''})")
        return _Asked(differs, conformance + self._forget_window(board), record)

    def _run_suite(self, board: Board) -> tuple[BoardFailure, ...]:
        """The conformance suite on the board, before its known answer: the time it takes is then inside what the
        check's flush drops, and the metering's first samples start after it."""
        if self.suite is None:
            return ()
        try:
            self.conformance[board.slot] = run_suite(board, self.suite, self.retries, self.reference)
        except Exception as error:  # noqa: BLE001 - as for the known answer: this board failed alone
            reason = failure_reason(board.slot, error).removeprefix(f"{board.slot}: ")
            return (BoardFailure(board.slot, FailureStage.HEALTH, f"{board.slot}: health check: kernel conformance: "
                                 f"{reason}"),)
        return ()

    @staticmethod
    def _forget_window(board: Board) -> tuple[BoardFailure, ...]:
        """The unit takes the check's busy window now, and it is dropped: the metering then starts from the
        device's count after it, whether or not this unit would have reported it."""
        if board.monitor is None:
            return ()
        try:
            board.monitor.link.flush(1)
        except MonitorError as error:
            board.monitor.stop()
            board.monitor = None
            board.unit_failure = str(error)
            return (BoardFailure(board.slot, FailureStage.MONITOR, f"{error}; its answers are kept, unmeasured"),)
        return ()


def checks_of(rack: Rack, check: KnownAnswerCheck, lab: Lab, run_id: str, time: str) -> list[health.HealthCheck]:
    """One health row per board the rack tried to bring up: ok when it came up, identified and answered exactly;
    a wrong answer or a conformance mismatch that may be its image's (`check.suspect`, `check.conformance`) is kept
    as failed, not counted towards quarantine."""
    failed = {f.slot: f.reason for f in rack.failures if f.stage in CHECKED_STAGES}
    specs = {spec.slot: spec for spec in lab.boards}
    checks = []
    for board in rack.boards:
        spec = specs[board.slot]
        conformance = check.conformance.get(board.slot)
        differs = None if conformance is None or conformance.mismatch is None else conformance.line
        reason = failed.get(board.slot, check.suspect.get(board.slot, differs))
        not_its_own = board.slot in check.suspect or (board.slot not in failed and differs is not None)
        checks.append(health.HealthCheck(run_id, time, lab.name, board.slot, spec.kind,
                                         None if spec.physical is None else spec.physical.probe,
                                         reason is None, reason, counts=not not_its_own))
    return checks


def ladder_checks(recoveries: list[Recovery], lab: Lab, run_id: str, time: str) -> list[health.HealthCheck]:
    """One failed health row per board the recovery ladder gave up on mid-run: a night it failed, though it
    passed its check before streaming."""
    specs = {spec.slot: spec for spec in lab.boards}
    return [health.HealthCheck(run_id, time, lab.name, r.slot, specs[r.slot].kind,
                               None if specs[r.slot].physical is None else specs[r.slot].physical.probe, False,
                               f"quarantined mid-run by the recovery ladder at {r.testset}#{r.index}: {r.error}")
            for r in recoveries if r.recovered_by is None]


def record_checks(lab: Lab, checks: list[health.HealthCheck]) -> list[QuarantinedBoard]:
    """Keeps each check in the catalog; quarantines every board that has now failed `run.quarantine_after`
    checks in a row (since its last release), and returns those."""
    newly = []
    for check in checks:
        health.record_check(lab.results_dir, check)
        if check.ok:
            continue
        streak = health.failures_in_a_row(health.history(lab.results_dir, lab.name, check.slot, since_release=True))
        if streak >= lab.run.quarantine_after:
            entry = health.quarantine(lab.results_dir, lab.name, check.slot,
                                      f"failed {streak} runs in a row, last: {check.reason}",
                                      by=check.run_id)
            newly.append(QuarantinedBoard(entry.slot, entry.reason, entry.since, entry.by, brought_up=True))
    return newly


def quarantine_notes(boards: list[QuarantinedBoard], lab_file: str | Path) -> list[QuarantineNote]:
    """Per quarantined board, the line the verdict shows; a board set aside before the run is not judged."""
    notes = []
    for q in boards:
        what = "quarantined by this run" if q.brought_up else "quarantined, not brought up"
        notes.append(QuarantineNote(q.slot, f"{q.slot}: {what} (since {q.since}, by {q.by}): {q.reason}; "
                                    f"`hil board release {lab_file} {q.slot}` once it is fixed", judged=q.brought_up))
    return notes


def set_aside(lab: Lab) -> list[QuarantinedBoard]:
    """The lab's boards in quarantine now: a run does not bring them up."""
    slots = {spec.slot for spec in lab.boards}
    return [QuarantinedBoard(q.slot, q.reason, q.since, q.by, brought_up=False)
            for slot, q in sorted(health.quarantined(lab.results_dir, lab.name).items()) if slot in slots]


def in_service(lab: Lab) -> list[str]:
    """The lab's slots that are not quarantined: those a run locks and may bring up."""
    out = health.quarantined(lab.results_dir, lab.name)
    return [spec.slot for spec in lab.boards if spec.slot not in out]
