"""The typed result files of a run directory: run.json, metrics.json and sweep.json.

Each file is a dataclass written with `to_json()` and read back with `from_json()`, keeping
the field names (and order) on disk that earlier runs have, so their directories still load:
`hil run --resume`, `--baseline` and `hil baseline set` read runs made before this module.
Fields added later are optional when read. A file that does not have the shape is bad input
(exit 3), in one line naming the file, the line and the field: `run.json:12: lab.file: must be
text; restore it from a copy or start a new run`.

The records inside (BoardSetSummary, PathPerformance, RuleOutcome, BoardFailure, Verdict,
SweepPoint) are the pipeline's own dataclasses; their readers are here, explicit, one per type.
What a board or a link reports about itself (its identity, its link counts, the software
versions) stays a JSON object: its shape belongs to hw/.
"""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass, field
from enum import StrEnum
from pathlib import Path

from hil.errors import BadInput
from hil.run.assess import BoardSetSummary, PathPerformance, SweepPoint
from hil.run.baseline import RuleOutcome
from hil.run.rack import BoardFailure, FailureStage
from hil.run.records import MeasurementMethod
from hil.run.recovery import Recovery, RecoveryStep, StepOutcome
from hil.run.divergence import Divergence, TraceFinding
from hil.run.verdict import Verdict, VerdictStatus
from hil.stats.metrics import UncertaintyReport
from hil.stats.regression import RuleResult, RuleStatus
from hil.store import results
from hil.model.reference import DEFAULT_REFERENCE, Reference
from hil.model.testsets import TestSetKind

SWEEP_JSON = "sweep.json"
RUN_FIX = "restore it from a copy or start a new run"
RESULTS_FIX = "restore it from a copy or run again"


class RunStatus(StrEnum):
    """Where a run is (run.json `status`); how it went is its verdict."""

    RUNNING = "running"
    FINISHED = "finished"
    INTERRUPTED = "interrupted"  # `hil run --resume` goes on


# --- reading JSON with the file, line and field in every error ----------------------------------------------


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


class Fields:
    """One JSON object of a results file, read field by field with its type. A missing or wrong field
    is BadInput naming the file, the field's line and its dotted name (`lab.file`), then the fix."""

    def __init__(self, path: Path, text: str, value: object, keys: tuple[str | int, ...], root: str, fix: str):
        self.path, self._text, self._keys, self._root, self._fix = path, text, keys, root, fix
        if not isinstance(value, dict):
            raise self._problem(keys, "must be an object")
        self.value: dict = value

    @classmethod
    def read(cls, path: Path, root: str, fix: str) -> Fields:
        """The file's top-level object; not UTF-8 or not JSON is bad input naming the line."""
        with results.on_disk(path):
            data = path.read_bytes()
        try:
            text = data.decode("utf-8")
            value = json.loads(text)  # Python's json reads the NaN our files hold for "no figure"
        except UnicodeDecodeError as error:
            line = data.count(b"\n", 0, error.start) + 1
            raise BadInput(f"{path}:{line}: not UTF-8 text; {fix}") from None
        except (json.JSONDecodeError, RecursionError) as error:
            line = getattr(error, "lineno", 1)
            raise BadInput(f"{path}:{line}: not valid JSON ({getattr(error, 'msg', 'nested too deep')}); "
                           f"{fix}") from None
        return cls(path, text, value, (), root, fix)

    def _problem(self, keys: tuple[str | int, ...], what: str) -> BadInput:
        where = ".".join(map(str, keys)) or self._root
        return BadInput(f"{self.path}:{_line_of(self._text, keys)}: {where}: {what}; {self._fix}")

    def _get(self, key: str, check, wanted: str, optional: bool, default=None):
        if key not in self.value:
            if optional:
                return default
            raise self._problem(self._keys, f"{key} is missing")
        value = self.value[key]
        if not check(value):
            raise self._problem(self._keys + (key,), f"must be {wanted}")
        return value

    def text(self, key: str) -> str:
        return self._get(key, lambda v: isinstance(v, str), "text", False)

    def optional_text(self, key: str) -> str | None:
        return self._get(key, lambda v: v is None or isinstance(v, str), "text or null", True)

    def integer(self, key: str) -> int:
        return self._get(key, _is_int, "a whole number", False)

    def optional_integer(self, key: str) -> int | None:
        return self._get(key, lambda v: v is None or _is_int(v), "a whole number or null", True)

    def number(self, key: str) -> float:
        return self._get(key, _is_number, "a number", False)

    def optional_number(self, key: str) -> float | None:
        return self._get(key, lambda v: v is None or _is_number(v), "a number or null", True)

    def boolean(self, key: str) -> bool:
        return self._get(key, lambda v: isinstance(v, bool), "true or false", False)

    def optional_boolean(self, key: str) -> bool | None:
        return self._get(key, lambda v: v is None or isinstance(v, bool), "true, false or null", True)

    def texts(self, key: str) -> list[str]:
        return self._get(key, lambda v: isinstance(v, list) and all(isinstance(t, str) for t in v),
                         "a list of text", False)

    def json_object(self, key: str, optional: bool = False) -> dict | None:
        """An object whose shape another part owns (software versions, link counts, rule figures)."""
        return self._get(key, lambda v: isinstance(v, dict), "an object", optional)

    def choice(self, key: str, kind: type[StrEnum]) -> StrEnum:
        value = self.text(key)
        try:
            return kind(value)
        except ValueError:
            raise self._problem(self._keys + (key,),
                                f"must be one of {', '.join(kind)}, not {json.dumps(value)[:40]}") from None

    def obj(self, key: str) -> Fields:
        return Fields(self.path, self._text, self._get(key, lambda v: True, "", False), self._keys + (key,),
                      self._root, self._fix)

    def optional_obj(self, key: str) -> Fields | None:
        value = self._get(key, lambda v: True, "", True)
        return None if value is None else Fields(self.path, self._text, value, self._keys + (key,), self._root,
                                                 self._fix)

    def objects(self, key: str) -> dict[str, Fields]:
        """An object of objects, keyed by name (boards by slot, models by name)."""
        inner = self.obj(key)
        return {name: inner.obj(name) for name in inner.value}

    def items(self, key: str) -> list[Fields]:
        """A list of objects."""
        values = self._get(key, lambda v: isinstance(v, list), "a list", False)
        return [Fields(self.path, self._text, v, self._keys + (key, i), self._root, self._fix)
                for i, v in enumerate(values)]


def _line_of(text: str, keys: tuple[str | int, ...]) -> int:
    """The line of a field in JSON text. json keeps no positions, so each key is found after its parent's:
    our files are written one key per line, and the first match after the parent is the field. In a list
    of objects of one kind (an index, then a key) the field of element i is the (i+1)-th match."""
    position, element = 0, 0
    for key in keys:
        if isinstance(key, int):
            element = key
            continue
        pattern, found = re.compile(rf'"{re.escape(key)}"\s*:'), None
        for _ in range(element + 1):
            found = pattern.search(text, position if found is None else found.end())
            if found is None:
                break
        if found is None:
            break
        position, element = found.start(), 0
    return text.count("\n", 0, position) + 1


def _without_none(data: dict) -> dict:
    return {key: value for key, value in data.items() if value is not None}


# --- the pipeline's records, read back ----------------------------------------------------------------------


def read_failure(f: Fields) -> BoardFailure:
    return BoardFailure(f.text("slot"), f.choice("stage", FailureStage), f.text("reason"))


def read_recovery(f: Fields) -> Recovery:
    steps = [StepOutcome(step.choice("step", RecoveryStep), step.boolean("ok"), step.number("seconds"),
                         step.text("detail"), flash.value if (flash := step.optional_obj("flash")) else None)
             for step in f.items("steps")]
    recovered_by = f.optional_text("recovered_by")
    return Recovery(f.text("slot"), f.text("testset"), f.integer("index"), f.text("error"), steps,
                    None if recovered_by is None else f.choice("recovered_by", RecoveryStep))


def read_verdict(f: Fields) -> Verdict:
    return Verdict(f.choice("status", VerdictStatus), f.optional_integer("exit_code"),
                   f.texts("reasons") if "reasons" in f.value else [])


def read_uncertainty(f: Fields) -> UncertaintyReport:
    return UncertaintyReport(accuracy=f.number("accuracy"), weighted_f1=f.number("weighted_f1"), nll=f.number("nll"),
                             brier=f.number("brier"), ece=f.number("ece"), failure_auroc=f.number("failure_auroc"),
                             aurc=f.number("aurc"), n=f.integer("n"))


def read_summary(f: Fields) -> BoardSetSummary:
    uncertainty = f.optional_obj("uncertainty")
    reasons = f.json_object("unmeasured_reasons", optional=True) or {}
    return BoardSetSummary(
        slot=f.text("slot"), model=f.text("model"), testset=f.text("testset"), kind=f.choice("kind", TestSetKind),
        samples=f.integer("samples"), expected=f.integer("expected"), accuracy=f.number("accuracy"),
        exit_rate=f.number("exit_rate"), uncertainty=None if uncertainty is None else read_uncertainty(uncertainty),
        exact=f.integer("exact"), max_steps=f.integer("max_steps"), exit_cycles_mean=f.number("exit_cycles_mean"),
        full_cycles_mean=f.number("full_cycles_mean"), unmeasured=f.optional_integer("unmeasured"),
        unmeasured_reasons=dict(reasons))


def read_performance(f: Fields) -> PathPerformance:
    return PathPerformance(
        slot=f.text("slot"), testset=f.text("testset"), exited=f.boolean("exited"), inferences=f.integer("inferences"),
        latency_ms_p50=f.number("latency_ms_p50"), latency_ms_p95=f.number("latency_ms_p95"),
        latency_ms_p99=f.number("latency_ms_p99"), energy_uj=f.number("energy_uj"),
        energy_method=f.choice("energy_method", MeasurementMethod), clock_ok=f.boolean("clock_ok"),
        unmeasured=f.integer("unmeasured") if "unmeasured" in f.value else 0)


def read_rule(f: Fields) -> RuleOutcome:
    result = f.obj("result")
    return RuleOutcome(f.text("slot"), f.text("testset"),
                       RuleResult(result.text("rule"), result.choice("status", RuleStatus),
                                  result.json_object("figures"), result.text("message")))


def read_point(f: Fields) -> SweepPoint:
    return SweepPoint(
        slot=f.text("slot"), tau=f.text("tau"), tau_q15=f.integer("tau_q15"), accuracy=f.number("accuracy"),
        exit_rate=f.number("exit_rate"), ece=f.number("ece"), nll=f.number("nll"), brier=f.number("brier"),
        failure_auroc=f.number("failure_auroc"), latency_ms=f.number("latency_ms"), energy_uj=f.number("energy_uj"),
        pareto=bool(f.optional_boolean("pareto")), recommended=bool(f.optional_boolean("recommended")))


# --- run.json -------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class LabRef:
    name: str
    file: str  # absolute
    sha256: str


@dataclass(frozen=True)
class GitRevision:
    revision: str  # "unknown" outside a checkout
    dirty: bool | None = None  # None when there is no revision

    @classmethod
    def from_json(cls, f: Fields) -> GitRevision:
        return cls(f.text("revision"), f.optional_boolean("dirty"))


@dataclass(frozen=True)
class Threshold:
    value: float
    tau_q15: int


@dataclass(frozen=True)
class ModelRef:
    path: str
    sha256: str


@dataclass(frozen=True)
class TestSetRef:
    path: str
    sha256: str
    samples: int

    __test__ = False  # not a pytest test class


@dataclass(frozen=True)
class ReportedIdentity:
    """What the board's HELLO reported."""

    firmware_sha256: str
    model_sha256: str
    board: str
    firmware_id: str
    clock_hz: int

    @classmethod
    def from_json(cls, f: Fields) -> ReportedIdentity:
        return cls(f.text("firmware_sha256"), f.text("model_sha256"), f.text("board"), f.text("firmware_id"),
                   f.integer("clock_hz"))


@dataclass(frozen=True)
class BoardProvenance:
    """What one ready board was: where it sits (its identity, as the board gives it), its image, and what
    it reported. On disk the identity's fields come first, then firmware, manifest and reported."""

    slot: str
    kind: str
    model: str
    emulated: bool
    details: dict  # the rest of the board's identity (QEMU machine and pid; probe, target, port, flash report)
    firmware: dict  # the image's manifest (FirmwareManifest.to_dict())
    manifest: str  # where manifest.json was read
    reported: ReportedIdentity

    @classmethod
    def of(cls, identity: dict, firmware: dict, manifest: str, reported: ReportedIdentity) -> BoardProvenance:
        """From what the board says it is (Board.identity()), its image and its HELLO."""
        details = {k: v for k, v in identity.items() if k not in ("slot", "kind", "model", "emulated")}
        return cls(identity["slot"], identity["kind"], identity["model"], bool(identity.get("emulated")), details,
                   firmware, manifest, reported)

    @property
    def image_sha256(self) -> str | None:
        return self.firmware.get("image_sha256")

    @property
    def model_sha256(self) -> str | None:
        return self.firmware.get("model_sha256")

    @property
    def rounding(self) -> str | None:
        """The image's kernel rounding mode (litert, tflm); None in runs from before the manifests named it."""
        return self.firmware.get("rounding")

    def to_json(self) -> dict:
        return {"slot": self.slot, "kind": self.kind, "model": self.model, "emulated": self.emulated, **self.details,
                "firmware": self.firmware, "manifest": self.manifest, "reported": asdict(self.reported)}

    @classmethod
    def from_json(cls, f: Fields) -> BoardProvenance:
        own = ("slot", "kind", "model", "emulated", "firmware", "manifest", "reported")
        return cls(f.text("slot"), f.text("kind"), f.text("model"), bool(f.optional_boolean("emulated")),
                   {k: v for k, v in f.value.items() if k not in own}, f.json_object("firmware"), f.text("manifest"),
                   ReportedIdentity.from_json(f.obj("reported")))


@dataclass(frozen=True)
class Session:
    """One `hil run` (or `--resume`) that brought boards up."""

    started: str
    boards: list[str]  # the slots that had work left
    finished: str | None = None
    link: dict[str, dict] | None = None  # per slot: what its link met (LinkCounts.to_dict())
    # per slot, per test set: wall-clock seconds it streamed (absent from runs made before it was kept)
    streamed: dict[str, dict[str, float]] | None = None

    def to_json(self) -> dict:
        return _without_none(asdict(self))

    @classmethod
    def from_json(cls, f: Fields) -> Session:
        link = f.json_object("link", optional=True)
        streamed = f.objects("streamed") if "streamed" in f.value else None
        return cls(f.text("started"), f.texts("boards"), f.optional_text("finished"),
                   None if link is None else dict(link),
                   None if streamed is None else {slot: {name: sets.number(name) for name in sets.value}
                                                  for slot, sets in streamed.items()})


@dataclass(frozen=True)
class QuarantinedBoard:
    """A board of the lab in quarantine (run.json `quarantined`): set aside before this run (`brought_up`
    false: not flashed, not judged), or quarantined by this run's own health check (true)."""

    slot: str
    reason: str
    since: str
    by: str  # the run whose health check quarantined it, or "hil board quarantine"
    brought_up: bool

    @classmethod
    def from_json(cls, f: Fields) -> QuarantinedBoard:
        return cls(f.text("slot"), f.text("reason"), f.text("since"), f.text("by"), f.boolean("brought_up"))


def read_layer_trace(f: Fields) -> TraceFinding:
    """One of run.json's `layer_traces` (hil/run/divergence.py)."""
    d = f.optional_obj("divergence")
    divergence = None if d is None else Divergence(
        d.integer("layer"), d.text("stage"), d.text("op"), d.integer("element"),
        tuple(d._get("coordinates", lambda v: isinstance(v, list) and all(map(_is_int, v)), "a list of whole numbers",
                     False)),
        d.integer("device"), d.integer("host"))
    return TraceFinding(f.text("slot"), f.text("testset"), f.integer("index"), f.integer("layers"), divergence,
                        f.optional_text("failure"))


@dataclass(frozen=True)
class BoardConformance:
    conforms: bool
    line: str  # `conforms on all N …`, or the kernel, vector and element that differ


@dataclass(frozen=True)
class ConformanceRef:
    """The kernel conformance suite the boards ran in their health check (hil/run/conformance.py), and how each
    board that ran it did: kept across sessions, so that a resumed run still judges a board checked before."""

    suite_sha256: str
    vectors: int
    boards: dict[str, BoardConformance]

    @classmethod
    def from_json(cls, f: Fields) -> ConformanceRef:
        boards = {slot: BoardConformance(b.boolean("conforms"), b.text("line")) for slot, b in f.objects("boards").items()}
        return cls(f.text("suite_sha256"), f.integer("vectors"), boards)


@dataclass(frozen=True)
class BaselineRef:
    id: str
    path: str
    git: GitRevision | None


def _models(f: Fields) -> dict[str, ModelRef]:
    return {name: ModelRef(m.text("path"), m.text("sha256")) for name, m in f.objects("models").items()}


def _testsets(f: Fields) -> dict[str, dict[str, TestSetRef]]:
    models = f.obj("testsets")
    return {model: {name: TestSetRef(t.text("path"), t.text("sha256"), t.integer("samples"))
                    for name, t in models.objects(model).items()}
            for model in models.value}


def _lab(f: Fields) -> LabRef:
    return LabRef(f.text("name"), f.text("file"), f.text("sha256"))


@dataclass
class RunFile:
    """run.json: the run's provenance and verdict. Written when the run directory is made and rewritten as
    the run goes on (boards, sessions) and ends, so it is the one results record the runner updates in
    place; everything inside it is frozen."""

    id: str
    status: RunStatus
    started: str
    lab: LabRef
    git: GitRevision
    software: dict[str, str | None] | None  # package -> version (None: not installed)
    host: str | None
    threshold: Threshold | None
    models: dict[str, ModelRef]
    testsets: dict[str, dict[str, TestSetRef]]  # model -> test set name -> file
    boards: dict[str, BoardProvenance] = field(default_factory=dict)
    sessions: list[Session] = field(default_factory=list)
    failures: list[BoardFailure] = field(default_factory=list)
    recoveries: list[Recovery] = field(default_factory=list)  # boards taken up the ladder (hil/run/recovery.py)
    verdict: Verdict = field(default_factory=lambda: Verdict(VerdictStatus.RUNNING, None, []))
    baseline: BaselineRef | None = None
    finished: str | None = None
    samples: int | None = None
    quarantined: list[QuarantinedBoard] = field(default_factory=list)  # absent from runs made before quarantine
    # The host reference the answers were reconciled against; runs made before the choice used LiteRT.
    reference: Reference = DEFAULT_REFERENCE
    layer_traces: list[TraceFinding] = field(default_factory=list)  # differing samples traced layer by layer
    conformance: ConformanceRef | None = None  # absent from runs made before the health check ran the suite

    def to_json(self) -> dict:
        data = {"id": self.id, "status": self.status, "started": self.started, "lab": asdict(self.lab),
                "git": asdict(self.git), "software": self.software, "host": self.host,
                "threshold": None if self.threshold is None else asdict(self.threshold),
                "reference": str(self.reference),
                "models": {name: asdict(m) for name, m in self.models.items()},
                "testsets": {model: {name: asdict(t) for name, t in sets.items()}
                             for model, sets in self.testsets.items()},
                "boards": {slot: b.to_json() for slot, b in self.boards.items()},
                "sessions": [s.to_json() for s in self.sessions],
                "failures": [asdict(f) for f in self.failures],
                "recoveries": [r.to_json() for r in self.recoveries] or None, "verdict": asdict(self.verdict),
                "baseline": None if self.baseline is None else asdict(self.baseline),
                "finished": self.finished, "samples": self.samples,
                "quarantined": [asdict(q) for q in self.quarantined],
                "layer_traces": [asdict(t) for t in self.layer_traces] or None,
                "conformance": None if self.conformance is None else asdict(self.conformance)}
        return _without_none(data)

    def write(self, run_dir: Path) -> None:
        results.write_json(Path(run_dir) / results.RUN_JSON, self.to_json())

    @classmethod
    def from_json(cls, f: Fields) -> RunFile:
        threshold, baseline = f.optional_obj("threshold"), f.optional_obj("baseline")
        baseline_git = None if baseline is None else baseline.optional_obj("git")
        return cls(
            id=f.text("id"), status=f.choice("status", RunStatus), started=f.text("started"), lab=_lab(f.obj("lab")),
            git=GitRevision.from_json(f.obj("git")), software=f.json_object("software", optional=True),
            host=f.optional_text("host"),
            threshold=None if threshold is None else Threshold(threshold.number("value"), threshold.integer("tau_q15")),
            models=_models(f), testsets=_testsets(f),
            boards={slot: BoardProvenance.from_json(b) for slot, b in f.objects("boards").items()},
            sessions=[Session.from_json(s) for s in f.items("sessions")],
            failures=[read_failure(x) for x in f.items("failures")],
            recoveries=[read_recovery(x) for x in f.items("recoveries")] if "recoveries" in f.value else [],
            verdict=read_verdict(f.obj("verdict")),
            baseline=None if baseline is None else BaselineRef(
                baseline.text("id"), baseline.text("path"),
                None if baseline_git is None else GitRevision.from_json(baseline_git)),
            finished=f.optional_text("finished"), samples=f.optional_integer("samples"),
            quarantined=[QuarantinedBoard.from_json(q) for q in f.items("quarantined")]
            if "quarantined" in f.value else [],
            reference=f.choice("reference", Reference) if "reference" in f.value else DEFAULT_REFERENCE,
            layer_traces=[read_layer_trace(t) for t in f.items("layer_traces")] if "layer_traces" in f.value else [],
            conformance=None if f.optional_obj("conformance") is None else ConformanceRef.from_json(
                f.obj("conformance")))

    def catalog_row(self, run_dir: Path) -> results.CatalogRow:
        return results.CatalogRow(self.id, self.lab.name, self.started, self.finished, self.verdict.status,
                                  self.verdict.exit_code, self.git.revision, len(self.boards), self.samples or 0,
                                  str(Path(run_dir).resolve()))


def read_run(run_dir: Path) -> RunFile:
    """run.json of a run directory (given by the user, or a baseline); bad input, naming the file, the
    line and the field, when it is none, is not JSON or lacks a field."""
    path = Path(run_dir) / results.RUN_JSON
    if not path.is_file():
        raise BadInput(f"{run_dir}: not a run directory (no {results.RUN_JSON}); give results/<run-id>")
    return RunFile.from_json(Fields.read(path, "run", RUN_FIX))


def baseline_unfit(run: RunFile, metrics: MetricsFile | None) -> list[str]:
    """Why a run cannot be a baseline (`hil baseline set`; `--force` sets it anyway): only a finished run that
    passed and answered every sample of every board and test set of its lab can be. Empty: it is fit."""
    reasons = []
    if run.status != RunStatus.FINISHED:
        reasons.append(f"it is {run.status}, not finished")
    if run.verdict.status != VerdictStatus.PASS:
        reasons.append(f"its verdict is {run.verdict.status}, not pass")
    if metrics is None or not metrics.summaries:
        reasons.append(f"it has no {results.METRICS_JSON} with samples")
    else:
        missing = [s for s in metrics.summaries if not s.complete]
        if missing:
            expected = sum(s.expected for s in metrics.summaries)
            answered = sum(s.samples for s in metrics.summaries)
            shown = ", ".join(f"{s.slot}/{s.testset}" for s in missing[:3]) + (", ..." if len(missing) > 3 else "")
            reasons.append(f"it answered {answered} of its {expected} expected samples (short: {shown})")
    return reasons


# --- metrics.json -----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class MetricsFile:
    """metrics.json: per board and test set, per exit path, and the rules against a baseline."""

    summaries: list[BoardSetSummary]
    performance: list[PathPerformance]
    rules: list[RuleOutcome]

    def to_json(self) -> dict:
        return {"summaries": [asdict(s) for s in self.summaries],
                "performance": [asdict(p) for p in self.performance], "rules": [asdict(r) for r in self.rules]}

    def write(self, run_dir: Path) -> None:
        results.write_json(Path(run_dir) / results.METRICS_JSON, self.to_json())

    @classmethod
    def from_json(cls, f: Fields) -> MetricsFile:
        return cls([read_summary(s) for s in f.items("summaries")],
                   [read_performance(p) for p in f.items("performance")],
                   [read_rule(r) for r in f.items("rules")] if "rules" in f.value else [])


def read_metrics(run_dir: Path) -> MetricsFile | None:
    """metrics.json of a run; None when the run has none (interrupted, or failed before its end)."""
    path = Path(run_dir) / results.METRICS_JSON
    if not path.is_file():
        return None
    return MetricsFile.from_json(Fields.read(path, "metrics", RESULTS_FIX))


# --- sweep.json -------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SweepProvenance:
    """What a sweep was made on: run.json's provenance, without what belongs to one run."""

    id: str
    started: str
    lab: LabRef
    git: GitRevision
    software: dict[str, str | None] | None
    host: str | None
    models: dict[str, ModelRef]
    testsets: dict[str, dict[str, TestSetRef]]
    boards: dict[str, BoardProvenance]

    @classmethod
    def of(cls, run: RunFile) -> SweepProvenance:
        return cls(run.id, run.started, run.lab, run.git, run.software, run.host, run.models, run.testsets, run.boards)

    def to_json(self) -> dict:
        return _without_none({
            "id": self.id, "started": self.started, "lab": asdict(self.lab), "git": asdict(self.git),
            "software": self.software, "host": self.host, "models": {n: asdict(m) for n, m in self.models.items()},
            "testsets": {model: {n: asdict(t) for n, t in sets.items()} for model, sets in self.testsets.items()},
            "boards": {slot: b.to_json() for slot, b in self.boards.items()}})

    @classmethod
    def from_json(cls, f: Fields) -> SweepProvenance:
        return cls(f.text("id"), f.text("started"), _lab(f.obj("lab")), GitRevision.from_json(f.obj("git")),
                   f.json_object("software", optional=True), f.optional_text("host"), _models(f), _testsets(f),
                   {slot: BoardProvenance.from_json(b) for slot, b in f.objects("boards").items()})


@dataclass(frozen=True)
class SweepFile:
    """sweep.json: the thresholds swept, each board's point at each, and the sweep's verdict."""

    provenance: SweepProvenance
    thresholds: list[str]
    max_accuracy_drop: float | None
    points: list[SweepPoint]
    failures: list[BoardFailure]
    verdict: Verdict
    recoveries: list[Recovery] = field(default_factory=list)  # boards taken up the ladder mid-sweep
    quarantined: list[QuarantinedBoard] = field(default_factory=list)  # left out: quarantined before it

    def to_json(self) -> dict:
        return {"provenance": self.provenance.to_json(), "thresholds": self.thresholds,
                "max_accuracy_drop": self.max_accuracy_drop, "points": [asdict(p) for p in self.points],
                "failures": [asdict(f) for f in self.failures], "verdict": asdict(self.verdict),
                "recoveries": [r.to_json() for r in self.recoveries],
                "quarantined": [asdict(q) for q in self.quarantined]}

    def write(self, sweep_dir: Path) -> None:
        results.write_json(Path(sweep_dir) / SWEEP_JSON, self.to_json())

    @classmethod
    def from_json(cls, f: Fields) -> SweepFile:
        return cls(SweepProvenance.from_json(f.obj("provenance")), f.texts("thresholds"),
                   f.optional_number("max_accuracy_drop"),
                   [read_point(p) for p in f.items("points")], [read_failure(x) for x in f.items("failures")],
                   read_verdict(f.obj("verdict")),
                   [read_recovery(x) for x in f.items("recoveries")] if "recoveries" in f.value else [],
                   [QuarantinedBoard.from_json(x) for x in f.items("quarantined")] if "quarantined" in f.value else [])


def read_sweep(sweep_dir: Path) -> SweepFile:
    path = Path(sweep_dir) / SWEEP_JSON
    if not path.is_file():
        raise BadInput(f"{sweep_dir}: not a sweep (no {SWEEP_JSON}); give results/<sweep-id>")
    return SweepFile.from_json(Fields.read(path, "sweep", RESULTS_FIX))
