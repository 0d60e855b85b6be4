"""`hil run`: lab -> rack -> stream -> records -> reconcile -> metrics -> verdict -> results.

The lab is validated, then every board of the lab is locked (all or none), and only then
is a run directory created (or, with --resume, reopened): bad input (the lab, a baseline), a busy
rack or a rack whose every board is quarantined leaves no run behind. Its run.json already holds
the provenance before any board comes up; records are journaled as they arrive; the verdict and
metrics are computed from the journal, so a resumed run is judged on everything it measured, in
this session and before.
"""

from __future__ import annotations

import time
import traceback
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from hil.firmware.conformance import read_suite
from hil.run import divergence, health, records
from hil.store import files, results
from hil.store.files import (BaselineRef, BoardConformance, ConformanceRef, MetricsFile, QuarantinedBoard, RunFile,
                             RunStatus, Session)
from hil.run.baseline import RuleOutcome, RunInputs, compare, resolve_run
from hil.errors import EXIT_INTERRUPTED, BadInput, HilError, Interrupted, ResultsUnwritable
from hil.lab.load import Lab, load_lab
from hil.hw.link import LinkCounts
from hil.model.card import sha256_file
from hil.run.profile import ProfileFile, SampleChoice, profile_rack
from hil.run.rack import BoardFailure, FailureStage, Rack, reserve
from hil.run.reconcile import Disagreement, SampleCheck
from hil.run.session import (Progress, assess, board_identities, host_references, pending_jobs, provenance,
                             run_inputs, stream_boards)
from hil.run.assess import BoardSetSummary, PathPerformance
from hil.model.reference import ReferenceOutputs
from hil.run.verdict import Verdict, VerdictStatus, decide


TRACES = "traces"  # per board: what its measurement unit sent (and, emulated, the ground truth)
TRACEBACK = "traceback.txt"  # where an error nobody foresaw leaves its traceback


class RunCrashed(HilError):
    """An error hil did not foresee ended a run; run.json says so and traceback.txt shows where (exit code 2)."""


@dataclass
class RunOutcome:
    run_dir: Path
    run: RunFile
    summaries: list[BoardSetSummary]
    performance: list[PathPerformance]
    mismatches: list[SampleCheck]
    disagreements: list[Disagreement]
    failures: list[BoardFailure]
    rules: list[RuleOutcome]  # against the baseline, when one was given
    verdict: Verdict
    link: dict[str, LinkCounts]  # per board brought up in this session: retries, broken and wrong frames
    rules_seconds: float = 0.0  # how long the rules against the baseline took to evaluate (junit.xml's times)
    profiles: ProfileFile | None = None  # with `hil run --profile`: the run's profile.json


def load_run_lab(lab_path: Path | None, resume: Path | None) -> tuple[Lab, Path | None, RunFile | None]:
    """The validated lab, and with --resume the run to reopen (its directory and run.json): nothing
    is locked, started or written on bad input."""
    if resume is not None:
        run_dir = Path(resume)
        run = files.read_run(run_dir)
        lab = load_lab(Path(run.lab.file))
        if sha256_file(lab.file) != run.lab.sha256:
            raise BadInput(f"{lab.file}: changed since run {run.id} started; restore it or start a new run")
        models, testsets = run_inputs(lab)
        for part, now, then in (("models", models, run.models), ("testsets", testsets, run.testsets)):
            if now != then:
                raise BadInput(f"{run_dir / results.RUN_JSON}: the lab's {part} changed since run {run.id} "
                               "started; restore them or start a new run")
        # Every journal line must be one of this lab's samples: a bad one is refused here (exit 3, file:line).
        expected = {(b.slot, t.name): (b.model, len(t)) for b in lab.boards for t in lab.models[b.model].testsets}
        records.read_records(run_dir, expected)
        records.read_measurements(run_dir, expected)
        return lab, run_dir, run
    return load_lab(lab_path), None, None


def open_run(lab: Lab) -> tuple[Path, RunFile]:
    """A new run directory, its run.json holding the provenance."""
    run_dir = results.new_run_dir(lab.results_dir)
    run = provenance(lab, run_dir)
    run.write(run_dir)
    return run_dir, run


def stream_rack(lab: Lab, run_dir: Path, run: RunFile, progress: Progress,
                references: dict[tuple[str, str], ReferenceOutputs], profile: bool = False,
                ) -> tuple[list[BoardFailure], dict[str, LinkCounts]]:
    """Bring up the boards that have work left (samples to answer, or answers to measure), stream to them in
    parallel, measure them, trace their first answers that differ from the `references` layer by layer
    (run.json `layer_traces`); returns the boards' failures and what each link met (also in the session's
    `link` in run.json). With `profile`, each board that is still up then profiles its model's first sample
    once, into profile.json: a board that fails to is named there, and its answers count as they are."""
    kept = {r.key: r for r in records.read_records(run_dir)}
    measured = {(m.slot, m.testset, m.index) for m in records.read_measurements(run_dir)
                if m.method == records.MeasurementMethod.WINDOW}
    jobs = pending_jobs(lab, kept, measured)
    started = results.utc_now()
    # A quarantined board is not brought up (no flashing): the run says so and judges the rest.
    aside = [q for q in health.set_aside(lab) if q.slot in jobs]
    note_quarantined(run, aside)
    jobs = {slot: board_jobs for slot, board_jobs in jobs.items() if slot not in {q.slot for q in aside}}
    if not jobs:
        return [], {}
    results.check_writable(run_dir)
    tau = lab.run.threshold_q15
    suite = read_suite()
    check = health.KnownAnswerCheck(health.known_answers(lab), tau, lab.run.retries, suite, lab.run.reference)
    with Rack(lab, list(jobs), tau, run_dir / TRACES, check) as rack:
        note_quarantined(run, health.record_checks(lab, health.checks_of(rack, check, lab, run.id,
                                                                         results.utc_now())))
        run.boards.update(board_identities(rack))
        note_conformance(run, suite.sha256, len(suite.vectors),
                         {s: BoardConformance(c.mismatch is None, c.line) for s, c in check.conformance.items()})
        run.write(run_dir)
        streamed: dict[tuple[str, str], float] = {}
        try:
            failures = rack.failures + stream_boards(rack, jobs, run_dir, tau, progress, streamed=streamed)
        finally:  # what the ladder did is kept, however the session ends
            run.recoveries += rack.recoveries
        run.layer_traces += divergence.trace_rack(rack, run_dir, references, run.layer_traces)
        note_quarantined(run, health.record_checks(lab, health.ladder_checks(rack.recoveries, lab, run.id,
                                                                             results.utc_now())))
        failures += check.unconfirmed(records.read_records(run_dir))
        if profile:
            _profile_into(rack, run_dir)
    seconds: dict[str, dict[str, float]] = {}
    for (slot, testset), spent in sorted(streamed.items()):
        seconds.setdefault(slot, {})[testset] = round(spent, 6)
    run.sessions.append(Session(started, sorted(jobs), results.utc_now(),
                                {slot: counts.to_dict() for slot, counts in rack.link_counts.items()}, seconds))
    return failures, rack.link_counts


def _profile_into(rack: Rack, run_dir: Path) -> None:
    profiles, failures = profile_rack(rack, SampleChoice(), 1)
    earlier = ProfileFile.read(run_dir) or ProfileFile([], [])
    earlier.merged(ProfileFile(profiles, failures)).write(run_dir)


def note_conformance(run: RunFile, suite_sha256: str, vectors: int, boards: dict[str, BoardConformance]) -> None:
    """run.json's `conformance`: the suite's digest, and per board how it ran the suite, this session's word on
    the boards it checked and an earlier session's on the rest (if that ran the same suite)."""
    earlier = {} if run.conformance is None or run.conformance.suite_sha256 != suite_sha256 else run.conformance.boards
    run.conformance = ConformanceRef(suite_sha256, vectors, dict(sorted((earlier | boards).items())))


def conformance_findings(run: RunFile) -> list[BoardFailure]:
    """Each board whose kernels differ from the host reference on a conformance vector, in this session or an
    earlier one of the run: a regression (stage `conformance`) naming the kernel, the vector and the element."""
    boards = {} if run.conformance is None else run.conformance.boards
    return [BoardFailure(slot, FailureStage.CONFORMANCE, b.line) for slot, b in boards.items() if not b.conforms]


def note_quarantined(run: RunFile, boards: list[QuarantinedBoard]) -> None:
    """run.json's `quarantined`, one entry per board: the latest session's word on it."""
    by_slot = {q.slot: q for q in run.quarantined} | {q.slot: q for q in boards}
    run.quarantined = [by_slot[slot] for slot in sorted(by_slot)]


def _end(run_dir: Path, run: RunFile, status: RunStatus, verdict: Verdict) -> None:
    run.status, run.verdict = status, verdict
    run.write(run_dir)
    results.catalog_record(run_dir, run.catalog_row(run_dir))


@contextmanager
def recorded_end(run_dir: Path, run: RunFile) -> Iterator[None]:
    """However a run ends once its directory exists, run.json and the catalog say how: interrupted
    (Ctrl-C or SIGTERM; `hil run --resume` goes on), or finished with an error verdict."""
    try:
        yield
    except KeyboardInterrupt:
        # The boards are down and the journal is on disk; say so where people look, in one line.
        how = f"interrupted; `hil run --resume {run_dir}` completes it"
        _end(run_dir, run, RunStatus.INTERRUPTED, Verdict(VerdictStatus.INTERRUPTED, EXIT_INTERRUPTED, [how]))
        raise Interrupted(how) from None
    except ResultsUnwritable as error:
        try:  # the disk that failed may not take run.json either; the journals hold what was measured
            run.finished = results.utc_now()
            _end(run_dir, run, RunStatus.FINISHED, Verdict(VerdictStatus.ERROR, error.exit_code, [str(error)]))
        except ResultsUnwritable:
            pass
        raise ResultsUnwritable(f"{error}, then `hil run --resume {run_dir}`: every record so far is kept") from None
    except Exception as error:  # noqa: BLE001 - recorded, then raised on
        ended = error if isinstance(error, HilError) else None
        if ended is None:
            results.write_text(run_dir / TRACEBACK, traceback.format_exc())
            ended = RunCrashed(f"run {run.id}: unexpected {type(error).__name__}: {error} "
                               f"(traceback in {run_dir / TRACEBACK}); please report it")
        run.finished = results.utc_now()
        _end(run_dir, run, RunStatus.FINISHED, Verdict(VerdictStatus.ERROR, ended.exit_code, [str(ended)]))
        if ended is error:
            raise
        raise ended from error


def execute(lab_path: Path | None, resume: Path | None, progress: Progress, baseline: str | None = None,
            wait_s: float = 0.0, profile: bool = False) -> RunOutcome:
    """`wait_s`: how long to queue for boards another run holds (`hil run --wait`); 0 refuses at once.
    `profile`: each board profiles its model once after streaming (`hil run --profile`, profile.json)."""
    lab, run_dir, run = load_run_lab(lab_path, resume)
    # The baseline is found and read before anything is locked or made: a wrong one is bad input (exit 3).
    baseline_dir = None if baseline is None else resolve_run(baseline, lab.results_dir, lab.name, exclude=run_dir)
    if baseline_dir is not None:
        files.read_run(baseline_dir)  # a baseline whose run.json is gone or broken, before any board is touched
    in_service = health.in_service(lab)
    if not in_service:  # nothing to bring up: refused (exit 2), no run directory, no catalog row
        raise HilError(f"{lab.file}: every board of lab {lab.name!r} is quarantined, nothing to run; "
                       f"`hil board list {lab.file}` shows why, `hil board release` once one is fixed")
    if run_dir is None:  # a full or read-only disk is exit 4 before anything is locked or made
        results.check_writable(lab.results_dir)
    else:
        try:
            results.check_writable(run_dir)
        except ResultsUnwritable as error:
            raise ResultsUnwritable(f"{error}, then `hil run --resume {run_dir}`") from None
    # The whole rack, or a refusal (exit 2) that leaves no run directory and no catalog row. A resumed
    # run locks every board too: two resumes of one run never journal into it at once.
    # A quarantined board is not locked either: it may be on someone's bench being fixed.
    with reserve(lab, in_service, wait_s) as lab:
        if run_dir is None:
            run_dir, run = open_run(lab)
        with recorded_end(run_dir, run):
            return _stream_and_judge(lab, run_dir, run, progress, baseline_dir, profile)


def _stream_and_judge(lab: Lab, run_dir: Path, run: RunFile, progress: Progress, baseline_dir: Path | None,
                      profile: bool = False) -> RunOutcome:
    references = host_references(lab)
    failures, link = stream_rack(lab, run_dir, run, progress, references, profile)
    failures = conformance_findings(run) + failures
    now = assess(lab, run_dir, references)
    rules, rules_seconds = [], 0.0
    if baseline_dir is not None:
        baseline_run = files.read_run(baseline_dir)
        then = assess(lab, baseline_dir, references)
        began = time.monotonic()
        rules = compare(now, then, lab.regression, RunInputs.of(run.models, run.testsets),
                        RunInputs.of(baseline_run.models, baseline_run.testsets),
                        {f.slot: f.reason for f in failures if f.stage == FailureStage.CONFORMANCE})
        rules_seconds = time.monotonic() - began
        run.baseline = BaselineRef(baseline_dir.name, str(baseline_dir.resolve()), baseline_run.git)
    verdict = decide(now.summaries, now.disagreements, failures, rules,
                     health.quarantine_notes(run.quarantined, run.lab.file), lab.run.reference, run.layer_traces)
    records.write_parquet(now.records, run_dir)
    records.write_parquet(now.measurements, run_dir, records.MEASUREMENTS_PARQUET, records.Measurement)
    MetricsFile(now.summaries, now.performance, rules).write(run_dir)
    run.status, run.finished, run.samples, run.failures, run.verdict = (
        RunStatus.FINISHED, results.utc_now(), len(now.records), failures, verdict)
    run.write(run_dir)
    results.catalog_record(run_dir, run.catalog_row(run_dir))
    return RunOutcome(run_dir, run, now.summaries, now.performance, now.mismatches, now.disagreements, failures,
                      rules, verdict, link, rules_seconds, ProfileFile.read(run_dir))
