"""`hil firmware verify`: images run on boards against the host reference, every output byte, every
decision at every threshold, and the cycle counts per exit path.

A verification is a run of the images on a rack, through the same path as `hil run`: the boards
are locked, brought up by `make_board` (an emulated board or a physical one of a lab), identified
by HELLO, streamed to at each threshold in turn (set over the link, as `hil sweep` does), and
every answer is reconciled by `reconcile.check_samples`. Without a lab, every prebuilt image runs
on an emulated board of its kind, the images of one kernel rounding mode at a time (prebuilt_lab). Each
board's answers are checked against the lab's run.reference: a lab refuses images whose rounding mode is
another reference's, and a verification of prebuilt images takes the reference their mode matches unless
told another (`--reference`). Nothing is measured (the units come up, as in a run, but are not
read), and the journals go to a scratch folder that is removed afterwards: a verification leaves
no run behind.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass, field, replace
from pathlib import Path

from hil.errors import EXIT_INFRASTRUCTURE, EXIT_PASS, EXIT_REGRESSION
from hil.firmware import build as firmware
from hil.hw.kinds import BOARD_KINDS
from hil.lab.load import BoardSpec, Lab, ModelSpec, RunSettings
from hil.model import decisions
from hil.model.card import load_model
from hil.model.reference import DEFAULT_REFERENCE, Reference, run_reference
from hil.model.testsets import load_model_testsets
from hil.run import records
from hil.hw import protocol
from hil.run.rack import BoardFailure, Rack, answered, failure_reason, reserve
from hil.run.reconcile import SampleCheck, check_samples
from hil.run.session import NoProgress, stream_boards
from hil.run.stream import Job

THRESHOLDS = ("0.5", "0.55", "0.6", "0.65", "0.7", "0.75", "0.8", "0.85", "0.9", "0.95", "1.0")


@dataclass
class SetVerification:
    testset: str
    samples: int
    differing_bytes: int = 0  # device int8 outputs that differ from the reference (full path)
    decision_mismatches: dict[str, int] = field(default_factory=dict)  # threshold -> samples
    exit_cycles: list[int] = field(default_factory=list)  # samples that exited, over all thresholds
    full_cycles: list[int] = field(default_factory=list)  # samples that ran both stages, at tau = 1


@dataclass
class ImageVerification:
    board: str  # the board kind
    model: str
    rounding: Reference  # the image's kernel rounding mode (its manifest's)
    reference: Reference  # the host reference its answers were checked against
    identity_ok: bool
    sets: list[SetVerification]
    slot: str = ""
    failures: list[BoardFailure] = field(default_factory=list)  # why the board did not answer everything

    @property
    def exact(self) -> bool:
        """Every answer the board gave is the reference's, byte for byte and decision for decision."""
        return all(s.differing_bytes == 0 and not any(s.decision_mismatches.values()) for s in self.sets)

    @property
    def passed(self) -> bool:
        return self.identity_ok and self.exact and not self.failures


def exit_code(verifications: list[ImageVerification]) -> int:
    """As `hil run`'s verdict: an answer that differs from the reference is a finding (1) and outranks
    a board that did not come up, named another image in its HELLO, or did not answer everything (2)."""
    if not all(v.exact for v in verifications):
        return EXIT_REGRESSION
    return EXIT_INFRASTRUCTURE if any(v.failures for v in verifications) else EXIT_PASS


def no_twin_reason(kind: str) -> str | None:
    """Why the prebuilt images of this board kind cannot run on an emulated board, or None if they can."""
    if kind in BOARD_KINDS and BOARD_KINDS[kind].qemu is None:
        return (f"{kind}: skipped: board kind {kind} has no emulated twin (qemu is None in hil/hw/kinds.py); "
                "verify its images on a physical board with `hil firmware verify --lab`")
    return None


def prebuilt_lab(kinds: list[str], models: list[str], rounding: Reference = DEFAULT_REFERENCE,
                 reference: Reference | None = None) -> Lab:
    """Every prebuilt image of these board kinds and models in one rounding mode on an emulated board of its
    kind: what `hil firmware verify` runs when no lab is given, checked against `reference` (default: the one
    the rounding mode matches). Like every board, each is driven under its lock, named after the prebuilt
    folder and its slot (hw/factory.lock_name). Kinds without an emulated twin must be left out first
    (no_twin_reason)."""
    cards = {name: load_model(name) for name in models}
    images = {(kind, name): firmware.prebuilt(kind, name, rounding) for kind in kinds for name in models}
    suffix = "" if rounding is DEFAULT_REFERENCE else f"-{rounding}"
    return Lab(
        name="prebuilt",
        file=firmware.PREBUILT_DIR,
        results_dir=firmware.PREBUILT_DIR,  # nothing is written there: a verification keeps no results
        models={name: ModelSpec(card, tuple(load_model_testsets(card))) for name, card in cards.items()},
        firmware=images,
        boards=tuple(BoardSpec(f"{kind}-{name}{suffix}", kind, name, None) for kind, name in images),
        run=RunSettings(reference=reference or rounding),
    )


def lab_images(lab: Lab, kinds: list[str] | None = None, models: list[str] | None = None) -> Lab:
    """The lab with only its boards of these kinds and models (all, where None)."""
    return replace(lab, boards=tuple(b for b in lab.boards if (kinds is None or b.kind in kinds)
                                     and (models is None or b.model in models)))


def _set_figures(name: str, samples: int, by_threshold: dict[str, list[SampleCheck]]) -> SetVerification:
    result = SetVerification(name, samples)
    for threshold, checks in by_threshold.items():
        result.decision_mismatches[threshold] = sum(
            not (c.exit_agrees and c.class_agrees and c.confidence_agrees) for c in checks)
        for check in checks:
            record = check.record
            if record.exited:
                result.exit_cycles.append(record.cycles)
                result.differing_bytes += check.differing_bytes
            elif record.tau_q15 >= decisions.Q15_ONE:
                # A full-path answer's bytes are counted once, at τ = 1, where every sample runs both stages.
                result.full_cycles.append(record.cycles)
                result.differing_bytes += check.differing_bytes
    return result


def _answers_at(rack: Rack, jobs: dict[str, list[Job]], threshold: str, scratch: Path,
                ) -> tuple[list[records.Record], list[BoardFailure]]:
    """Every board with jobs streams them at `threshold`, set over the link (the image stays as put
    on); returns what they answered and the boards that failed."""
    tau_q15, failures = decisions.threshold_q15(threshold), []
    for board in rack.ready:
        if board.slot in jobs:
            try:
                answered(board, protocol.SetThreshold(tau_q15), rack.lab.run.retries)
            except Exception as error:  # noqa: BLE001 - this board's failure alone, as in streaming
                failures.append(BoardFailure(board.slot, "stream", failure_reason(board.slot, error)))
    jobs = {slot: board_jobs for slot, board_jobs in jobs.items() if slot not in {f.slot for f in failures}}
    journal_dir = scratch / f"tau-{threshold}"
    journal_dir.mkdir()
    failures += stream_boards(rack, jobs, journal_dir, tau_q15, NoProgress(), measure=False)
    return records.read_records(journal_dir), failures


def verify_lab(lab: Lab, limit: int | None = None, thresholds=THRESHOLDS) -> list[ImageVerification]:
    """Every board of the lab runs the first `limit` samples (all, where None) of each of its model's
    test sets at every threshold; one ImageVerification per board, in the lab's order."""
    slots = [b.slot for b in lab.boards]
    planned = {b.slot: [Job(t, list(range(len(t.inputs[:limit])))) for t in lab.models[b.model].testsets]
               for b in lab.boards}
    references = {(name, t.name): run_reference(m.card, t.inputs[:limit], reference=lab.run.reference)
                  for name, m in lab.models.items() for t in m.testsets}
    models = {b.slot: b.model for b in lab.boards}
    checks: dict[tuple[str, str], dict[str, list[SampleCheck]]] = {}  # (slot, test set) -> threshold -> checks
    with reserve(lab, slots) as lab, tempfile.TemporaryDirectory(prefix="hil-verify-") as scratch:
        # Brought up as for `hil run`, units too: an emulated board's unit is what drains its GPIO wire.
        with Rack(lab, slots, decisions.threshold_q15(thresholds[0]), Path(scratch) / "traces") as rack:
            failures = list(rack.failures)
            for threshold in thresholds:
                failed = {f.slot for f in failures}
                jobs = {b.slot: planned[b.slot] for b in rack.ready if b.slot not in failed}
                answers, failed_now = _answers_at(rack, jobs, threshold, Path(scratch))
                failures += failed_now
                by_set: dict[tuple[str, str], list[records.Record]] = {}
                for record in answers:
                    by_set.setdefault((record.slot, record.testset), []).append(record)
                for (slot, testset), found in by_set.items():
                    model = models[slot]
                    checks.setdefault((slot, testset), {})[threshold] = check_samples(
                        lab.models[model].card, references[(model, testset)], found)
    verifications = []
    for board in lab.boards:
        mine = [f for f in failures if f.slot == board.slot]
        # A board that did not come up, or whose HELLO named another image, is not shown as identified.
        identified = not any(f.stage in ("bring-up", "identity") for f in mine)
        sets = [_set_figures(t.name, len(t.inputs[:limit]), checks.get((board.slot, t.name), {}))
                for t in lab.models[board.model].testsets]
        rounding = lab.firmware[(board.kind, board.model)].rounding
        verifications.append(ImageVerification(board.kind, board.model, rounding, lab.run.reference, identified,
                                               sets, board.slot, mine))
    return verifications
