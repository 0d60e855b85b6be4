"""A per-layer device profile: PROFILE on a board, read against the model's layer table.

The firmware runs both stages of one sample `count` times, whatever the threshold, and sums each
layer's cycle-counter ticks (firmware/src/qute.c, docs/firmware.md "Per-layer profile"); the exit
decision and the ensemble are not in it. Here the sums become per-run means beside the layer's op,
output shape and MACs (hil/model/layers.py), with the image, model and sample that produced them.
"""

from __future__ import annotations

import hashlib
import json
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

from hil.errors import BadInput
from hil.hw import protocol
from hil.hw.board import Board, BoardError
from hil.lab.load import Lab, ModelSpec
from hil.model import decisions
from hil.model.card import ModelCard
from hil.model.layers import STAGES, model_layers
from hil.model.testsets import TestSet
from hil.run.rack import BoardFailure, FailureStage, Rack, answered, failure_reason, reserve
from hil.store import results

MAX_COUNT = 1000  # runs per PROFILE: enough to average a noisy board, short enough to wait for
# The longest one run of both stages takes on any board we drive (QEMU or an 80 MHz Nucleo: tens of ms).
SECONDS_PER_RUN = 0.1


@dataclass(frozen=True)
class LayerProfile:
    index: int  # across both stages, as the firmware numbers it
    stage: str
    op: str
    output_shape: tuple[int, ...]
    macs: int
    cycles: float  # cycle-counter ticks of one run: the mean over the profile's runs

    @property
    def cycles_per_mac(self) -> float | None:
        return self.cycles / self.macs if self.macs else None  # a reshape or a pool has no MACs


@dataclass(frozen=True)
class DeviceProfile:
    slot: str
    board: str  # the board kind
    model: str
    image_sha256: str  # what the board reported in HELLO, checked against its manifest at bring-up
    model_sha256: str
    testset: str
    testset_sha256: str
    sample_index: int
    sample_sha256: str  # of the input bytes sent
    count: int  # runs averaged
    clock_hz: int  # the cycle counter's frequency (INFO)
    layers: tuple[LayerProfile, ...]

    @property
    def total_cycles(self) -> float:
        return sum(layer.cycles for layer in self.layers)

    def stage_cycles(self, stage: str) -> float:
        return sum(layer.cycles for layer in self.layers if layer.stage == stage)

    def microseconds(self, cycles: float) -> float:
        return 1e6 * cycles / self.clock_hz

    def to_dict(self) -> dict:
        return {**asdict(self), "stage_cycles": {stage: self.stage_cycles(stage) for stage in STAGES},
                "total_cycles": self.total_cycles}

    @classmethod
    def from_dict(cls, data: dict) -> DeviceProfile:
        fields = {k: v for k, v in data.items() if k not in ("layers", "stage_cycles", "total_cycles")}
        layers = tuple(LayerProfile(**{**layer, "output_shape": tuple(layer["output_shape"])})
                       for layer in data["layers"])
        return cls(**fields, layers=layers)


def profile_board(board: Board, info: protocol.Info, card: ModelCard, testset: TestSet, sample_index: int,
                  count: int, retries: int) -> DeviceProfile:
    """PROFILE one sample of `testset` `count` times on an identified board (its HELLO answer: `info`)."""
    if not 1 <= count <= MAX_COUNT:
        raise ValueError(f"count {count}: give 1..{MAX_COUNT}")
    sample = testset.inputs[sample_index].tobytes()
    timeout = board.link.timeout + count * SECONDS_PER_RUN
    reply, _ = answered(board, protocol.Profile(count, sample), retries, first_timeout=timeout)
    layers = model_layers(card)
    if len(reply.layer_ticks) != len(layers):
        raise BoardError(f"{board.slot}: PROFILE_RESULT has {len(reply.layer_ticks)} layers, model {card.name} "
                         f"has {len(layers)}; reflash the board with `hil firmware build`'s images")
    return DeviceProfile(
        slot=board.slot, board=board.spec.kind, model=card.name, image_sha256=info.firmware_sha256.hex(),
        model_sha256=info.model_sha256.hex(), testset=testset.name, testset_sha256=testset.sha256,
        sample_index=sample_index, sample_sha256=hashlib.sha256(sample).hexdigest(), count=count,
        clock_hz=info.clock_hz,
        layers=tuple(LayerProfile(layer.index, layer.stage, layer.op, layer.output_shape, layer.macs, ticks / count)
                     for layer, ticks in zip(layers, reply.layer_ticks)))


@dataclass(frozen=True)
class SampleChoice:
    """Which sample a profile runs: a test set by name (None: the model's first) and an index in it."""

    testset: str | None = None
    index: int = 0

    def pick(self, model: ModelSpec) -> TestSet:
        """The test set, checked to hold the index; BadInput naming what there is otherwise."""
        sets = {t.name: t for t in model.testsets}
        if not sets:
            raise BadInput(f"model {model.card.name} has no test sets; generate them with `hil testsets generate`")
        name = self.testset or model.testsets[0].name
        if name not in sets:
            raise BadInput(f"model {model.card.name} has no test set {name!r}; its test sets: {', '.join(sets)}")
        if not 0 <= self.index < len(sets[name]):
            raise BadInput(f"{name}: no sample {self.index}; give --sample 0..{len(sets[name]) - 1}")
        return sets[name]


def profile_rack(rack: Rack, choice: SampleChoice, count: int) -> tuple[list[DeviceProfile], list[BoardFailure]]:
    """Every ready board of an up rack profiles the chosen sample of its model; a board that fails is that
    board's failure alone."""
    profiles, failures = [], []
    for board in rack.ready:
        model = rack.lab.models[board.spec.model]
        try:
            profiles.append(profile_board(board, rack.infos[board.slot], model.card, choice.pick(model), choice.index,
                                          count, rack.lab.run.retries))
        except Exception as error:  # noqa: BLE001 - this board's failure alone: the others go on
            failures.append(BoardFailure(board.slot, FailureStage.STREAM, failure_reason(board.slot, error)))
    return profiles, failures


def profile_lab(lab: Lab, choice: SampleChoice, count: int) -> tuple[list[DeviceProfile], list[BoardFailure]]:
    """Every board of the lab, brought up as `hil firmware verify` does (locked, flashed, identified), profiles
    the chosen sample of its model `count` times; the profiles, in the lab's order, and the boards that failed."""
    if not 1 <= count <= MAX_COUNT:
        raise BadInput(f"--count {count}: give 1..{MAX_COUNT} runs")
    for board in lab.boards:  # bad input before any board starts
        choice.pick(lab.models[board.model])
    slots = [b.slot for b in lab.boards]
    with reserve(lab, slots) as lab, tempfile.TemporaryDirectory(prefix="hil-profile-") as scratch:
        with Rack(lab, slots, decisions.Q15_ONE, Path(scratch)) as rack:
            profiles, failures = profile_rack(rack, choice, count)
            return profiles, rack.failures + failures


PROFILE_JSON = "profile.json"


@dataclass
class ProfileFile:
    """A run's profile.json (`hil run --profile`): each board's profile after it streamed, and why a board has
    none. A resumed run replaces the profiles of the boards it brought up again."""

    profiles: list[DeviceProfile]
    failures: list[BoardFailure]

    def merged(self, newer: ProfileFile) -> ProfileFile:
        slots = {p.slot for p in newer.profiles} | {f.slot for f in newer.failures}
        return ProfileFile([p for p in self.profiles if p.slot not in slots] + newer.profiles,
                           [f for f in self.failures if f.slot not in slots] + newer.failures)

    def write(self, run_dir: Path) -> None:
        results.write_json(run_dir / PROFILE_JSON, {
            "profiles": [p.to_dict() for p in self.profiles],
            "failures": [{"slot": f.slot, "reason": f.reason} for f in self.failures]})

    @classmethod
    def read(cls, run_dir: Path) -> ProfileFile | None:
        """The run's profile file, None if it has none; BadInput naming the file if it is broken."""
        path = run_dir / PROFILE_JSON
        if not path.is_file():
            return None
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            return cls([DeviceProfile.from_dict(p) for p in data["profiles"]],
                       [BoardFailure(f["slot"], FailureStage.STREAM, f["reason"]) for f in data["failures"]])
        except (ValueError, KeyError, TypeError) as error:
            raise BadInput(f"{path}: not a profile file ({type(error).__name__}: {error}); delete it, or run the "
                           "lab again with `hil run --profile`") from None
