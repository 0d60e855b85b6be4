"""A pytest plugin: a team's own tests against a lab's rack, brought up as `hil run` brings it up (docs/pytest.md).

`pytest --hil-lab labs.yaml` loads and validates the lab (hil.lab.load: a bad lab is one line, and pytest stops
before anything is locked). Tests then ask for:

- `hil_lab`: the validated Lab;
- `hil_rack`: the session's Rack (hil.run.rack): the boards the selected tests need, locked all or none
  (`reserve`), flashed with their verified images, identified by HELLO and health-checked (one known answer and
  the kernel conformance suite, the run's KnownAnswerCheck); held for the whole session, since bring-up is slow,
  and shut down and unlocked at its end;
- `hil_board`: one of those boards, a test per board of the lab (`@pytest.mark.hil_kind(...)` keeps the boards of
  those kinds), as a HilBoard: `infer(sample)` asks the device, `reference(sample)` gives the host reference's
  answer at the same threshold, to compare with `==`.

Without --hil-lab these fixtures skip, saying so. A board that did not come up fails its tests with the reason;
a quarantined one (`hil board list`) skips them. Health checks are not written to the lab's health history: a test
session is not a run of the lab, and its results are the tests' (nothing goes to the lab's results folder).
"""

from __future__ import annotations

from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from hil.hw.kinds import BOARD_KINDS

# pytest loads this plugin into every session of a venv that has hil: the rack's modules (numpy, LiteRT, pyOCD,
# joblib) are imported when a session uses them, so that other test suites do not start slower.
if TYPE_CHECKING:
    from hil.hw import protocol
    from hil.hw.board import Board
    from hil.lab.load import BoardSpec, Lab
    from hil.run.health import KnownAnswerCheck
    from hil.run.rack import Rack

KIND_MARKER = "hil_kind"
LAB_KEY = pytest.StashKey["Lab"]()
SLOTS_KEY = pytest.StashKey[list[str]]()  # the boards the selected tests use, the ones the rack brings up
CHECK_KEY = pytest.StashKey["KnownAnswerCheck"]()  # the rack's health check: each board's kernel conformance
NO_LAB = "no lab given: run pytest with --hil-lab labs.yaml to test on a rack (docs/pytest.md)"


@dataclass(frozen=True)
class Answer:
    """One answer to one sample, the device's or the host reference's. `logits[0]` is the early exit's int8 outputs;
    when it did not exit, one row per head follows. Two answers are equal when they agree bit for bit; `cycles`
    (the device's count, None for the reference) is not part of the answer."""

    exited: bool
    predicted: int
    confidence_q15: int
    logits: tuple[tuple[int, ...], ...]
    cycles: int | None = field(default=None, compare=False)

    @property
    def confidence(self) -> float:
        from hil.model.decisions import Q15_ONE

        return self.confidence_q15 / Q15_ONE


class HilBoard:
    """A board of the session's rack, up and identified, its threshold the lab's `run.threshold`."""

    def __init__(self, board: Board, lab: Lab, info: protocol.Info):
        self.board = board  # hil.hw.board.Board: its spec, manifest, link and unit
        self.info = info  # what its HELLO reported
        self.lab = lab
        self.card = lab.models[board.spec.model].card  # hil.model.card.ModelCard
        self.testsets = {t.name: t for t in lab.models[board.spec.model].testsets}  # hil.model.testsets.TestSet

    @property
    def slot(self) -> str:
        return self.board.slot

    @property
    def spec(self) -> BoardSpec:
        return self.board.spec

    @property
    def kind(self) -> str:
        return self.board.spec.kind

    @property
    def tau_q15(self) -> int:
        return self.lab.run.threshold_q15

    def infer(self, sample) -> Answer:
        """The device's answer to one sample (int8 bytes, or an int8 array in the model's input layout), asked as
        a run asks: an INFER frame, retried after a resync `run.retries` times, the threshold set again if it
        restarted. A board that does not answer is a BoardError naming it."""
        from hil.hw import protocol
        from hil.run.rack import answered

        result, _attempts = answered(self.board, protocol.Infer(self._raw(sample)), self.lab.run.retries,
                                     tau_q15=self.tau_q15, fix="check the board, then run the tests again")
        return Answer(result.exited, result.predicted, result.confidence_q15, tuple(map(tuple, result.logits)),
                      result.cycles)

    def reference(self, sample) -> Answer:
        """What the device must answer: the lab's host reference (hil.model.reference, run.reference) and the
        integer decision spec (hil.model.decisions) at the board's threshold."""
        import numpy as np

        from hil.model import decisions
        from hil.model.reference import run_reference

        inputs = np.frombuffer(self._raw(sample), dtype=np.int8).reshape((1,) + self.card.input.shape[1:])
        outputs = run_reference(self.card, inputs, reference=self.lab.run.reference)
        ensemble = decisions.ensemble(list(outputs.heads), self.card.head_luts)
        decided = decisions.cascade(outputs.exit, self.card.exit_lut, ensemble, self.tau_q15)
        exited = bool(decided.exited[0])
        rows = [outputs.exit[0]] + ([] if exited else [head[0] for head in outputs.heads])
        return Answer(exited, int(decided.predicted[0]), int(decided.confidence_q15[0]),
                      tuple(tuple(int(v) for v in row) for row in rows))

    def _raw(self, sample) -> bytes:
        """A sample's bytes: int8 arrays (a test set's inputs) as they are; other numbers would be cut to int8."""
        dtype = getattr(sample, "dtype", None)
        if dtype is not None and str(dtype) != "int8":
            raise ValueError(f"{self.slot}: a sample of {dtype}; give int8 values, as a test set's inputs are")
        raw = sample.tobytes() if dtype is not None else bytes(sample)
        if len(raw) != self.info.input_size:
            raise ValueError(f"{self.slot}: a sample of {len(raw)} bytes, but {self.card.name} takes "
                             f"{self.info.input_size}; give one input of its test sets")
        return raw

    def __repr__(self) -> str:
        return f"HilBoard({self.slot}, {self.kind}, {self.card.name})"


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("hil", "hardware-in-the-loop tests on a lab's rack (docs/pytest.md)")
    group.addoption("--hil-lab", metavar="LABS_YAML", help="the lab whose boards the hil_rack and hil_board "
                    "fixtures bring up (without it they skip)")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", f"{KIND_MARKER}(*kinds): run the test only on the lab's boards of these "
                            f"kinds ({', '.join(BOARD_KINDS)})")
    path = config.getoption("hil_lab", None)
    if path is not None:
        from hil.errors import BadInput
        from hil.lab.load import load_lab

        try:
            config.stash[LAB_KEY] = load_lab(Path(path))
        except BadInput as error:  # before anything is collected, locked or started
            raise pytest.UsageError(f"--hil-lab: {error}") from None


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """A test of `hil_board` runs once per board of the lab, of the kinds its hil_kind markers name."""
    if "hil_board" not in metafunc.fixturenames:
        return
    lab = metafunc.config.stash.get(LAB_KEY, None)
    if lab is None:
        metafunc.parametrize("hil_board", [pytest.param(None, marks=pytest.mark.skip(reason=NO_LAB))],
                             indirect=True, ids=["no-lab"])
        return
    kinds = wanted_kinds(metafunc.definition)
    slots = [spec.slot for spec in lab.boards if not kinds or spec.kind in kinds]
    if not slots:
        reason = f"lab {lab.name} has no board of kind {', '.join(sorted(kinds))}"
        metafunc.parametrize("hil_board", [pytest.param(None, marks=pytest.mark.skip(reason=reason))],
                             indirect=True, ids=["no-board"])
        return
    metafunc.parametrize("hil_board", slots, indirect=True, ids=slots)


def wanted_kinds(item: pytest.Item) -> set[str]:
    """The board kinds a test's hil_kind markers name, checked against the kinds hil knows."""
    kinds = {kind for marker in item.iter_markers(KIND_MARKER) for kind in marker.args}
    unknown = sorted(kinds - set(BOARD_KINDS))
    if unknown:
        pytest.fail(f"{item.nodeid}: @pytest.mark.{KIND_MARKER}: unknown board kind {unknown[0]!r}; known: "
                    f"{', '.join(BOARD_KINDS)}", pytrace=False)  # a collection error: the session stops, exit 2
    return kinds


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """The rack brings up only the boards the selected tests run on (all of the lab's if none asks for one)."""
    lab = config.stash.get(LAB_KEY, None)
    if lab is None:
        return
    used = {item.callspec.params["hil_board"] for item in items
            if hasattr(item, "callspec") and item.callspec.params.get("hil_board") is not None}
    config.stash[SLOTS_KEY] = [spec.slot for spec in lab.boards if not used or spec.slot in used]


@pytest.fixture(scope="session")
def hil_lab(pytestconfig: pytest.Config) -> Lab:
    """The lab of --hil-lab, validated."""
    lab = pytestconfig.stash.get(LAB_KEY, None)
    if lab is None:
        pytest.skip(NO_LAB)
    return lab


@pytest.fixture(scope="session")
def hil_rack(hil_lab: Lab, pytestconfig: pytest.Config, tmp_path_factory: pytest.TempPathFactory):
    """The session's rack: its boards locked, flashed, identified and health-checked as `hil run` does them; the
    locks are held until the session ends. Another run of the lab meanwhile is refused (exit 2)."""
    from hil.errors import HilError
    from hil.firmware.conformance import read_suite
    from hil.run import health
    from hil.run.rack import Rack, reserve

    wanted = pytestconfig.stash.get(SLOTS_KEY, [spec.slot for spec in hil_lab.boards])
    slots = [slot for slot in health.in_service(hil_lab) if slot in wanted]
    tau = hil_lab.run.threshold_q15
    with ExitStack() as held:
        try:
            # The lab as reserved: boards on labgrid places come back resolved to the places acquired.
            lab = held.enter_context(reserve(hil_lab, slots))
            check = health.KnownAnswerCheck(health.known_answers(lab), tau, lab.run.retries, read_suite(),
                                            lab.run.reference)
            pytestconfig.stash[CHECK_KEY] = check
            rack = held.enter_context(Rack(lab, slots, tau, tmp_path_factory.mktemp("hil-traces"), check))
        except HilError as error:  # the rack busy, the lock folder unsafe: hil's one line, on every test that needs it
            pytest.fail(str(error), pytrace=False)
        yield rack


@pytest.fixture
def hil_board(request: pytest.FixtureRequest, hil_lab: Lab) -> HilBoard:
    """One board of the rack (the test's parameter), up and identified."""
    from hil.run import health

    slot = request.param
    quarantined = {q.slot: q for q in health.set_aside(hil_lab)}
    if slot in quarantined:
        q = quarantined[slot]
        pytest.skip(f"{slot}: quarantined since {q.since}: {q.reason}; `hil board release {hil_lab.file} {slot}` "
                    "once it is fixed")
    rack: Rack = request.getfixturevalue("hil_rack")
    ready = {board.slot: board for board in rack.ready}
    if slot not in ready:
        reasons = "; ".join(f"{f.stage}: {f.reason}" for f in rack.failures if f.slot == slot)
        pytest.fail(f"{slot}: not brought up ({reasons or 'not in the rack'})", pytrace=False)
    conformance = request.config.stash[CHECK_KEY].conformance.get(slot)
    if conformance is not None and conformance.mismatch is not None:  # its numerics are the image's: never exact
        pytest.fail(conformance.line, pytrace=False)
    return HilBoard(ready[slot], hil_lab, rack.infos[slot])
