"""What `hil run`, `hil sweep` and `hil firmware verify` share: a rack session from the jobs
left to do, through every board streaming in its own context, to the journal assessed.

A session is one bring-up of a rack (run.json lists them under `sessions`): every ready board
streams its jobs in parallel, each in a BoardContext (its threshold, clock, retries and
journals), and is then measured. What the boards answered is judged from the journal alone,
so a resumed run, a sweep point and a verification are assessed alike.
"""

from __future__ import annotations

import platform
import queue
import threading
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Callable, Protocol


from hil.firmware import build as firmware
from hil.lab.load import BoardSpec, Lab
from hil.model.card import sha256_file
from hil.model.reference import ReferenceOutputs, run_reference
from hil.run import records
from hil.run.assess import Assessment, summarize, summarize_performance, with_unmeasured
from hil.run.rack import BoardFailure, Rack
from hil.run.reconcile import check_samples, cross_board
from hil.run.stream import BoardContext, Job, Journals, stream_board
from hil.store import results
from hil.store.files import (BoardProvenance, GitRevision, LabRef, ModelRef, ReportedIdentity, RunFile, RunStatus,
                             TestSetRef, Threshold)


class Progress(Protocol):
    """What the console shows while boards stream."""

    def start(self, totals: dict[str, int]) -> None: ...

    def advance(self, slot: str, samples: int) -> None: ...


class NoProgress:
    """Shows nothing: for commands whose output is their tables alone (`hil firmware verify`)."""

    def start(self, totals: dict[str, int]) -> None:
        pass

    def advance(self, slot: str, samples: int) -> None:
        pass


def run_inputs(lab: Lab) -> tuple[dict[str, ModelRef], dict[str, dict[str, TestSetRef]]]:
    """The models and test sets a run is made on: a resumed run must find them unchanged."""
    models = {name: ModelRef(str(m.card.directory), m.card.sha256) for name, m in lab.models.items()}
    testsets = {name: {t.name: TestSetRef(str(t.path), t.sha256, len(t)) for t in m.testsets}
                for name, m in lab.models.items()}
    return models, testsets


def provenance(lab: Lab, run_dir: Path) -> RunFile:
    models, testsets = run_inputs(lab)
    git = results.git_revision()
    return RunFile(
        id=run_dir.name,
        status=RunStatus.RUNNING,
        started=results.utc_now(),
        lab=LabRef(lab.name, str(lab.file.resolve()), sha256_file(lab.file)),
        git=GitRevision(git["revision"], git["dirty"]),
        software=results.software_versions(),
        host=platform.node(),
        threshold=Threshold(lab.run.threshold, lab.run.threshold_q15),
        reference=lab.run.reference,
        models=models,
        testsets=testsets,
    )


def has_unit(board: BoardSpec) -> bool:
    """Every emulated board has a measurement unit; a physical one has one where the lab names it."""
    return board.emulated or board.physical.monitor is not None


def pending_jobs(lab: Lab, kept: dict[tuple, records.Record], measured: set[tuple] = frozenset(),
                 ) -> dict[str, list[Job]]:
    """Per board, the samples it has not answered (not in `kept`), and, where it has a unit, those it
    answered that have no measurement (not in `measured`): asked again for their windows only."""
    jobs = {}
    for board in lab.boards:
        board_jobs = []
        metered = has_unit(board)
        for testset in lab.models[board.model].testsets:
            keys = [(board.slot, testset.name, i) for i in range(len(testset))]
            again = {key[2]: kept[key] for key in keys if metered and key in kept and key not in measured}
            indices = [key[2] for key in keys if key not in kept or key[2] in again]
            if indices:
                board_jobs.append(Job(testset, indices, again))
        if board_jobs:
            jobs[board.slot] = board_jobs
    return jobs


def board_identities(rack: Rack) -> dict[str, BoardProvenance]:
    """What each ready board is, for provenance: where it sits, its image, and what it reported."""
    identities = {}
    for board in rack.ready:
        info = rack.infos[board.slot]
        identities[board.slot] = BoardProvenance.of(
            board.identity(), board.manifest.to_dict(), str(board.manifest.directory / firmware.MANIFEST),
            ReportedIdentity(info.firmware_sha256.hex(), info.model_sha256.hex(), info.board, info.firmware_id,
                             info.clock_hz))
    return identities


class MainThread:
    """Runs, for the boards' streaming threads, what must run on the main thread: a recovery step that
    starts a new emulator (QEMU dies with the thread that started it: hil/hw/children.py). Ctrl-C reaches
    the main thread while it serves: then `stopping` tells every board to stop at its next sample, what
    waits for the main thread (and all that asks later) is refused with a KeyboardInterrupt in its own
    thread, and the interrupt goes on once every board has stopped."""

    def __init__(self) -> None:
        self._work: queue.SimpleQueue = queue.SimpleQueue()
        self.stopping = threading.Event()

    def run(self, work: Callable[[], None]) -> None:
        """Do `work` on the main thread and wait for it; its exception is raised here."""
        if threading.current_thread() is threading.main_thread():
            work()
            return
        if self.stopping.is_set():
            raise KeyboardInterrupt
        done: Future = Future()
        self._work.put((work, done))
        done.result()

    def serve(self, futures: list[Future]) -> None:
        """Do the streaming threads' work until every one of `futures` is done."""
        try:
            while not all(f.done() for f in futures):
                try:
                    work, done = self._work.get(timeout=0.05)
                except queue.Empty:
                    continue
                try:
                    work()
                    done.set_result(None)
                except BaseException as error:  # noqa: BLE001 - handed to the thread that asked
                    done.set_exception(error)
        except KeyboardInterrupt:
            self.stopping.set()
            while not all(f.done() for f in futures):
                try:
                    _work, done = self._work.get(timeout=0.05)
                    done.set_exception(KeyboardInterrupt())
                except queue.Empty:
                    pass
            raise


def stream_boards(rack: Rack, jobs: dict[str, list[Job]], run_dir: Path, tau_q15: int,
                  progress: Progress, measure: bool = True,
                  streamed: dict[tuple[str, str], float] | None = None) -> list[BoardFailure]:
    """Every ready board of the rack streams its jobs at threshold tau_q15, in parallel, then is measured
    (unless not to `measure`); answers and measurements are journaled into run_dir, the boards' trips up
    the recovery ladder appended to `rack.recoveries`, the seconds each (board, test set) streamed added
    to `streamed`."""
    streamed = {} if streamed is None else streamed
    ready = [board for board in rack.ready if board.slot in jobs]
    # A board whose unit did not come up cannot be measured: asking it again for windows is no use.
    jobs = {b.slot: jobs[b.slot] if b.monitor is not None else [j.unanswered() for j in jobs[b.slot]] for b in ready}
    progress.start({b.slot: sum(len(j.indices) for j in jobs[b.slot]) for b in ready})
    main = MainThread()
    with records.RecordJournal(run_dir) as journal, records.RecordJournal(run_dir, records.MEASUREMENTS) as measured:
        journals = Journals(journal, measured)
        with ThreadPoolExecutor(max_workers=max(1, len(ready)), thread_name_prefix="board") as pool:
            futures = [pool.submit(stream_board, board, jobs[board.slot],
                                   BoardContext(tau_q15, rack.infos[board.slot].clock_hz, rack.lab.run.retries,
                                                journals, measure, main.run, rack.recoveries, streamed,
                                                main.stopping),
                                   progress.advance)
                       for board in ready]
            main.serve(futures)
        outcomes = [future.result() for future in futures]
    # Each board stopped at its next record once the results disk failed; that is no board's failure
    # but the run's (exit 4), raised once every board is done.
    disk = [journal.failure, measured.failure] + [b.monitor.trace_failure for b in ready if b.monitor]
    for failure in disk:
        if failure is not None:
            raise failure
    return [failure for outcome in outcomes for failure in outcome]


def host_references(lab: Lab) -> dict[tuple[str, str], ReferenceOutputs]:
    """The host reference of every (model, test set) of the lab: computed once, whatever τ or run it judges."""
    return {(name, t.name): run_reference(m.card, t.inputs, reference=lab.run.reference)
            for name, m in lab.models.items() for t in m.testsets}


def assess(lab: Lab, run_dir: Path, references: dict[tuple[str, str], ReferenceOutputs]) -> Assessment:
    """Reconcile every journaled record and summarise per board and test set."""
    all_records = records.read_records(run_dir)
    measurements = records.read_measurements(run_dir)
    by_board_set: dict[tuple, list] = {}
    for record in all_records:
        by_board_set.setdefault((record.slot, record.testset), []).append(record)
    measured_by_board_set: dict[tuple, list] = {}
    for m in measurements:
        measured_by_board_set.setdefault((m.slot, m.testset), []).append(m)
    summaries, mismatches = [], []
    for board in lab.boards:
        card = lab.models[board.model].card
        for testset in lab.models[board.model].testsets:
            board_records = by_board_set.get((board.slot, testset.name), [])
            checks = check_samples(card, references[(board.model, testset.name)], board_records)
            mismatches += [c for c in checks if not c.exact]
            summary = summarize(card, testset, board.slot, checks)
            if has_unit(board):
                summary = with_unmeasured(summary, board_records,
                                          measured_by_board_set.get((board.slot, testset.name), []))
            summaries.append(summary)
    performance = summarize_performance(measurements, all_records)
    return Assessment(all_records, measurements, summaries, performance, mismatches, cross_board(all_records))
