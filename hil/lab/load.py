"""The lab description, labs.yaml: one schema, validated in full before anything starts.

Loading a lab checks its shape (keys, types, ranges), then everything it points to: each
model is loaded and verified against its model.json, each test set against its model,
each firmware manifest against its image hashes and against the model it claims, and each
physical board's serial ports exist and are free (a port given as a pyserial URL, such as
socket:// or rfc2217://, is checked only for a protocol pyserial knows). Each port is
resolved here, once, into `SerialSpec.device`: what the board opens. Any problem is one line,
`<file>:<line>: <field>: <what is wrong>; <what to do>`, with exit code 3, and by then no
board has been locked, started or flashed. docs/labs.md is the reference.

Relative paths are taken from the lab file's folder, so a lab works from any directory.
"""

from __future__ import annotations

import enum
import fcntl
import glob
import math
import os
import re
import stat
from dataclasses import dataclass
from pathlib import Path

import serial
import yaml
from serial.tools import list_ports

from hil import assets
from hil.model import decisions
from hil.errors import BadInput
from hil.firmware.build import MANIFEST, FirmwareManifest, image_dir, load_manifest
from hil.hw.kinds import BOARD_KINDS
from hil.lab.bounded_yaml import LIMITS, LimitExceeded, compose
from hil.model.card import ModelCard, load_model
from hil.model.reference import DEFAULT_REFERENCE, Reference
from hil.stats.regression import RegressionPolicy
from hil.model.testsets import TestSet, load_testset

SLOT_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,47}$")
# τ is converted to Q15 from its decimal text, so it must be written as a decimal (not 0x1, 0b1, 0_1).
DECIMAL = re.compile(r"[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?")
# Tags a value may carry (YAML gives plain values these itself); others (!!binary, !!python/..., !x) are refused.
PLAIN_TAGS = frozenset(f"tag:yaml.org,2002:{name}" for name in ("str", "int", "float", "bool", "null", "timestamp"))


class LabError(BadInput):
    """labs.yaml is wrong: the message names the file, the line and the field."""


@dataclass(frozen=True)
class SerialSpec:
    """A serial port, by path (/dev/ttyACM0, /dev/serial/by-id/...), by pyserial URL (socket://,
    rfc2217://, spy://...) or by USB serial number; `device` is what that resolved to at load:
    the real path of a local port, or the URL as given."""

    port: str | None
    usb_serial: str | None
    baudrate: int
    device: str


class MonitorKind(enum.Enum):
    """What a board's measurement unit is (docs/labs.md, docs/measurement.md)."""

    SERIAL = "serial"  # a unit speaking monitor protocol v1 on a serial port (docs/monitor.md)
    LINUX_INA219 = "linux-ina219"  # an INA219 on this host's I2C bus, the pins on its GPIO lines
    PPK2 = "ppk2"  # a Nordic Power Profiler Kit II on USB serial, the pins on its digital inputs


class Ppk2Mode(enum.Enum):
    """How a PPK2 is in the board's supply (docs/measurement.md)."""

    SOURCE = "source"  # it powers the board at vdd_mv and meters what it draws
    AMPERE = "ampere"  # it sits in the board's own supply (of vdd_mv) as an ammeter


@dataclass(frozen=True)
class LinuxIna219Spec:
    """Where a linux-ina219 unit's parts are on this host."""

    i2c_bus: int | str  # N of /dev/i2c-N, or the device's path
    address: int
    gpio_chip: str
    busy_line: int
    exit_line: int


@dataclass(frozen=True)
class Ppk2Spec:
    """A PPK2's mode, its supply voltage, and which of its digital inputs D0..D7 the pins are on."""

    mode: Ppk2Mode
    vdd_mv: int
    busy_channel: int
    exit_channel: int


@dataclass(frozen=True)
class MonitorSpec:
    """The measurement unit of a physical board: what it is, where, and (INA219 kinds) the INA219's
    calibration. `serial` is set for kinds serial and ppk2, `linux_ina219` and `ppk2` for their kinds."""

    serial: SerialSpec | None
    shunt_ohms: float | None  # None for a PPK2: it has its own shunts and calibration
    max_current_a: float | None
    kind: MonitorKind = MonitorKind.SERIAL
    linux_ina219: LinuxIna219Spec | None = None
    ppk2: Ppk2Spec | None = None


@dataclass(frozen=True)
class PowerCycleSpec:
    """How to cut and restore a physical board's power: a command (a switchable hub's `uhubctl`, a relay's
    tool), and how long it may take. The recovery ladder's last step before quarantine (hil/run/recovery.py)."""

    command: str
    timeout_s: float = 30.0


@dataclass(frozen=True)
class PhysicalSpec:
    probe: str  # the debug probe's unique id, matched exactly
    target: str  # pyOCD's target name, e.g. stm32l432kc (default: the board kind's)
    serial: SerialSpec
    monitor: MonitorSpec | None
    power_cycle: PowerCycleSpec | None = None
    place: str | None = None  # the labgrid place it was acquired through (hil/run/places.py)


@dataclass(frozen=True)
class PlaceSpec:
    """A labgrid place a board is taken from (docs/distributed.md): one by its name, or any free one whose tags
    include these. `calibration` is the INA219's (shunt_ohms, max_current_a) for the place's `monitor`, if any."""

    name: str | None
    tags: tuple[tuple[str, str], ...] = ()
    calibration: tuple[float, float] | None = None

    @property
    def wanted(self) -> str:
        """How a message names it: `place rack-a-1`, or `a place tagged board=nucleo-l432kc`."""
        if self.name is not None:
            return f"place {self.name}"
        return "a place tagged " + ",".join(f"{key}={value}" for key, value in self.tags)


@dataclass(frozen=True)
class LabgridSettings:
    coordinator: str  # HOST:PORT of the labgrid coordinator the lab's places are on


@dataclass(frozen=True)
class BoardSpec:
    slot: str
    kind: str  # a firmware board kind, e.g. mps2-an386
    model: str
    physical: PhysicalSpec | None  # None: an emulated board, or a place not acquired yet
    # A labgrid place: `physical` is filled in once the run has acquired it (hil/run/places.py).
    place: PlaceSpec | None = None

    @property
    def emulated(self) -> bool:
        return self.physical is None and self.place is None


@dataclass(frozen=True)
class ModelSpec:
    card: ModelCard
    testsets: tuple[TestSet, ...]


@dataclass(frozen=True)
class RunSettings:
    threshold: float = 1.0
    threshold_q15: int = decisions.Q15_ONE  # from the threshold's decimal text, exactly
    request_timeout_s: float = 5.0
    boot_timeout_s: float = 20.0
    retries: int = 2
    quarantine_after: int = 3  # failed health checks in a row that quarantine a board (hil/run/health.py)
    reference: Reference = DEFAULT_REFERENCE  # the host interpreter answers are reconciled against


@dataclass(frozen=True)
class Lab:
    name: str
    file: Path
    results_dir: Path
    models: dict[str, ModelSpec]
    firmware: dict[tuple[str, str], FirmwareManifest]  # (board kind, model) -> verified manifest
    boards: tuple[BoardSpec, ...]
    run: RunSettings
    regression: RegressionPolicy = RegressionPolicy()
    labgrid: LabgridSettings | None = None  # set when a board is on a labgrid place


class _Reader:
    """Walks the YAML node tree, so every value keeps the line it came from."""

    def __init__(self, file: Path):
        self.file = file
        self.folder = file.parent
        self._constructor = yaml.constructor.SafeConstructor()

    def fail(self, node: yaml.Node, field: str, problem: str) -> BadInput:
        return LabError(f"{self.file}:{node.start_mark.line + 1}: {field}: {problem}")

    def mapping(self, node: yaml.Node, field: str, required: tuple = (),
                optional: tuple | None = ()) -> dict[str, yaml.Node]:
        """The keys of a mapping; `optional=None` allows any key (names chosen by the user)."""
        if not isinstance(node, yaml.MappingNode):
            raise self.fail(node, field or "lab file", f"must be a mapping of keys to values, not {_shown(node)}")
        found: dict[str, yaml.Node] = {}
        for key_node, value_node in node.value:
            if not isinstance(key_node, yaml.ScalarNode):
                raise self.fail(key_node, field or "lab file", f"a key must be plain text, not {_shown(key_node)}")
            key = str(key_node.value)
            where = f"{field}.{key}" if field else key
            if key in found:
                raise self.fail(key_node, where, "appears twice; keep one")
            if optional is not None and key not in required + optional:
                raise self.fail(key_node, where, f"unknown key; known keys here: {', '.join(required + optional)}")
            found[key] = value_node
        missing = [key for key in required if key not in found]
        if missing:
            raise self.fail(node, field or "lab file", f"missing {', '.join(missing)}; see docs/labs.md")
        return found

    def sequence(self, node: yaml.Node, field: str) -> list[yaml.Node]:
        if not isinstance(node, yaml.SequenceNode) or not node.value:
            raise self.fail(node, field, "must be a non-empty list")
        return node.value

    def value(self, node: yaml.Node, field: str, kind: type, minimum: float | None = None,
              maximum: float | None = None, exclusive: bool = False):
        """A plain value of `kind`; numbers within [minimum, maximum] (or the open interval, `exclusive`)."""
        wanted = f"must be {_KIND_NAMES[kind]}"
        if not isinstance(node, yaml.ScalarNode):
            raise self.fail(node, field, f"{wanted}, not {_shown(node)}")
        if node.tag not in PLAIN_TAGS:
            raise self.fail(node, field, f"the YAML tag {_cut(node.tag)} is not supported; write a plain value")
        try:
            value = self._constructor.construct_object(node, deep=True)
        except (yaml.YAMLError, ValueError, KeyError):  # an explicit !!int, !!float or !!bool on other text
            raise self.fail(node, field, f"{wanted}, not {_shown(node)}") from None
        if not _is_kind(value, kind):
            hint = _text_hint(node, value) if kind in (int, float) else ""
            raise self.fail(node, field, f"{wanted}, not {_shown(node)}{hint}")
        if kind is str and not value.strip():
            raise self.fail(node, field, "must not be empty")
        if kind is str and "\0" in value:  # no file name, port or lock name can hold one
            raise self.fail(node, field, "must not hold a NUL character; remove it")
        if isinstance(value, float) and math.isnan(value):
            raise self.fail(node, field, f"{wanted}, not {_shown(node)}")
        # Compared before any conversion: a huge whole number is out of range, not an OverflowError.
        if (minimum is not None and (value <= minimum if exclusive else value < minimum)
                or maximum is not None and (value >= maximum if exclusive else value > maximum)):
            low, high = "()" if exclusive else "[]"
            raise self.fail(node, field, f"{_cut(node.value)} is out of range {low}{minimum}, {maximum}{high}")
        return float(value) if kind is float else value

    def path(self, node: yaml.Node, field: str) -> Path:
        path = Path(os.path.expanduser(self.value(node, field, str)))
        return path if path.is_absolute() else self.folder / path

    def checked(self, node: yaml.Node, field: str, load, *args):
        """Run a loader; its BadInput (which names the file and the fix) gets our line and field."""
        try:
            return load(*args)
        except BadInput as error:
            raise self.fail(node, field, str(error)) from None
        except OSError as error:  # a path the system refuses: too long, a loop of links, no permission
            raise self.fail(node, field, f"{_cut(str(error.filename))}: {error.strerror}; fix the path") from None


_KIND_NAMES = {str: "text", int: "a whole number", float: "a number", bool: "true or false"}


def _is_kind(value, kind: type) -> bool:
    """true/false is no number here, and a whole number is also a number."""
    if isinstance(value, bool) or kind is bool:
        return isinstance(value, bool) and kind is bool
    return isinstance(value, (int, float) if kind is float else kind)


def _cut(text: str, width: int = 40) -> str:
    """A user's text in a message: one line, cut short (it may be up to LIMITS.string_chars long)."""
    text = text if len(text) <= width else text[:width] + "…"
    return text.replace("\n", "\\n")


def _shown(node: yaml.Node) -> str:
    """How a value appears in a message: never a whole subtree, which an alias can make huge."""
    if isinstance(node, yaml.MappingNode):
        return "a mapping"
    if isinstance(node, yaml.SequenceNode):
        return "a list"
    return repr(_cut(node.value))


def _text_hint(node: yaml.ScalarNode, value) -> str:
    """Why YAML read a number the user meant as text."""
    if not isinstance(value, str):
        return ""
    if node.style in ("'", '"'):
        return " (it is quoted; write it without quotes)"
    try:
        float(value)
    except ValueError:
        return ""
    return " (YAML 1.1 reads this spelling as text; write a decimal such as 0.5 or 5.0e-1)"


def _read_yaml(file: Path) -> yaml.Node:
    """The lab file's node tree: a regular file of at most LIMITS.file_bytes, UTF-8, one YAML document
    within LIMITS (hil/lab/bounded_yaml.py)."""
    try:
        status = file.stat()
    except (FileNotFoundError, NotADirectoryError):
        raise LabError(f"{file}: no such lab file; give the path of a labs.yaml (see docs/labs.md)") from None
    except OSError as error:
        raise LabError(f"{file}: cannot read the lab file ({error.strerror}); check the path") from None
    if not stat.S_ISREG(status.st_mode):
        raise LabError(f"{file}: not a regular file; give the path of a labs.yaml (see docs/labs.md)")
    try:
        with open(file, "rb") as handle:
            data = handle.read(LIMITS.file_bytes + 1)  # never more than the limit, whatever the file's size
    except OSError as error:
        raise LabError(f"{file}: cannot read the lab file ({error.strerror}); check its permissions") from None
    if len(data) > LIMITS.file_bytes:
        raise LabError(f"{file}: larger than {LIMITS.file_bytes // 1024} KiB, the limit for a lab file "
                       "(docs/labs.md); give the lab file itself")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as error:
        line = data.count(b"\n", 0, error.start) + 1
        raise LabError(f"{file}:{line}: not UTF-8 text (byte {error.start}); save the lab file as UTF-8") from None
    try:
        root = compose(text)
    except LimitExceeded as error:
        raise LabError(f"{file}:{error.mark.line + 1}: {error.problem} (lab file limits: docs/labs.md)") from None
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        if isinstance(error, yaml.reader.ReaderError):  # a control character: it knows where, not which line
            line = ":" + str(text.count("\n", 0, error.position) + 1)
            problem = f"control character {error.character!r} is not allowed"
        else:
            line = f":{mark.line + 1}" if mark else ""
            problem = ", ".join(p for p in (getattr(error, "context", None), getattr(error, "problem", None)) if p)
        raise LabError(f"{file}{line}: not valid YAML ({problem or str(error).splitlines()[0]}); fix the syntax") from None
    if root is None or root.tag == "tag:yaml.org,2002:null":  # nothing, or only `---`
        raise LabError(f"{file}: the lab file is empty; see docs/labs.md for an example")
    return root


def load_lab(path: Path) -> Lab:
    file = Path(path)
    root = _read_yaml(file)
    reader = _Reader(file)
    top = reader.mapping(root, "", ("lab", "models", "firmware", "boards"), ("results", "run", "regression",
                                                                              "labgrid"))
    name = reader.value(top["lab"], "lab", str)
    models = _models(reader, top["models"])
    run = _run_settings(reader, top["run"]) if "run" in top else RunSettings()
    boards = _boards(reader, top["boards"], models)
    labgrid = _labgrid(reader, top.get("labgrid"), top["boards"], boards)
    firmware = _firmware(reader, top["firmware"], models, boards, run.reference)
    results_dir = reader.path(top["results"], "results") if "results" in top else file.parent / "results"
    reader.checked(top.get("results", root), "results", _check_results_dir, results_dir)
    policy = _regression_policy(reader, top["regression"]) if "regression" in top else RegressionPolicy()
    return Lab(name, file, results_dir, models, firmware, boards, run, policy, labgrid)


COORDINATOR = re.compile(r"^[A-Za-z0-9_.-]+:\d{1,5}$|^\[[0-9A-Fa-f:.]+\]:\d{1,5}$")


def _labgrid(reader: _Reader, node: yaml.Node | None, boards_node: yaml.Node,
             boards: tuple[BoardSpec, ...]) -> LabgridSettings | None:
    """Where the places are: `labgrid.coordinator`, else labgrid's own LG_COORDINATOR; None without places."""
    if node is not None:
        entry = reader.mapping(node, "labgrid", ("coordinator",))
        coordinator = reader.value(entry["coordinator"], "labgrid.coordinator", str)
        if not COORDINATOR.match(coordinator):
            raise reader.fail(entry["coordinator"], "labgrid.coordinator", f"{_cut(coordinator)!r} is not HOST:PORT; "
                              "give the coordinator's address, e.g. lab-1.example:20408")
        return LabgridSettings(coordinator)
    if not any(board.place for board in boards):
        return None
    coordinator = os.environ.get("LG_COORDINATOR", "")
    if not COORDINATOR.match(coordinator):
        raise reader.fail(boards_node, "labgrid.coordinator", "boards are on labgrid places but no coordinator is "
                          "named; add labgrid: {coordinator: HOST:PORT} or set LG_COORDINATOR")
    return LabgridSettings(coordinator)


def _check_results_dir(results_dir: Path) -> None:
    if results_dir.exists() and not results_dir.is_dir():
        raise BadInput(f"{results_dir} is a file; name a folder")


def _regression_policy(reader: _Reader, node: yaml.Node) -> RegressionPolicy:
    """Thresholds of the regression rules (docs/labs.md); each key is a RegressionPolicy field."""
    fields = RegressionPolicy.__dataclass_fields__
    entry = reader.mapping(node, "regression", (), tuple(fields))
    values = {}
    for key, value_node in entry.items():
        field = f"regression.{key}"
        if key in ("alpha", "confidence"):
            values[key] = reader.value(value_node, field, float, 0.0, 1.0, exclusive=True)
        elif key == "bootstrap_resamples":
            values[key] = reader.value(value_node, field, int, 1, 1_000_000)
        elif fields[key].type in ("int", int):
            values[key] = reader.value(value_node, field, int, 0, 1_000_000)
        else:
            values[key] = reader.value(value_node, field, float, 0.0, 100.0)
    try:
        return RegressionPolicy(**values)
    except ValueError as error:  # a rule the checks above do not know yet
        raise reader.fail(node, "regression", f"{error}; see docs/labs.md") from None


def _models(reader: _Reader, node: yaml.Node) -> dict[str, ModelSpec]:
    models = {}
    for name, model_node in reader.mapping(node, "models", optional=None).items():
        field = f"models.{name}"
        entry = reader.mapping(model_node, field, ("path", "testsets"))
        card = reader.checked(entry["path"], f"{field}.path", load_model, reader.path(entry["path"], f"{field}.path"))
        if card.name != name:
            raise reader.fail(entry["path"], f"{field}.path", f"the model there is {card.name!r}; name it so")
        testsets: dict[Path, TestSet] = {}
        for item in reader.sequence(entry["testsets"], f"{field}.testsets"):
            pattern = reader.path(item, f"{field}.testsets")
            paths = sorted(Path(p) for p in glob.glob(str(pattern))) if glob.has_magic(str(pattern)) else [pattern]
            if not paths:
                raise reader.fail(item, f"{field}.testsets", f"{pattern} matches no file; "
                                  "generate the test sets with `hil testsets generate`")
            for path in paths:
                testset = reader.checked(item, f"{field}.testsets", load_testset, path, card)
                testsets.setdefault(path.resolve(), testset)
        names = [t.name for t in testsets.values()]
        duplicated = sorted({n for n in names if names.count(n) > 1})
        if duplicated:
            raise reader.fail(entry["testsets"], f"{field}.testsets",
                              f"two test sets are named {duplicated[0]!r}; records are keyed by name, rename one")
        models[name] = ModelSpec(card, tuple(testsets.values()))
    if not models:
        raise reader.fail(node, "models", "no model is listed; name at least one")
    return models


def _run_settings(reader: _Reader, node: yaml.Node) -> RunSettings:
    entry = reader.mapping(node, "run", (), ("threshold", "request_timeout_s", "boot_timeout_s", "retries",
                                                "quarantine_after", "reference"))
    defaults = RunSettings()
    threshold, tau = defaults.threshold, defaults.threshold_q15
    if "threshold" in entry:
        threshold = reader.value(entry["threshold"], "run.threshold", float, 0.0, 1.0)
        if not DECIMAL.fullmatch(entry["threshold"].value):
            raise reader.fail(entry["threshold"], "run.threshold", f"write it as a decimal such as 0.9, not "
                              f"{_shown(entry['threshold'])}: τ is converted to Q15 from its decimal text")
        tau = decisions.threshold_q15(entry["threshold"].value)
    return RunSettings(
        threshold=threshold,
        threshold_q15=tau,
        request_timeout_s=_optional(reader, entry, "run.request_timeout_s", float, defaults.request_timeout_s,
                                    0.1, 600),
        boot_timeout_s=_optional(reader, entry, "run.boot_timeout_s", float, defaults.boot_timeout_s, 0.1, 600),
        retries=_optional(reader, entry, "run.retries", int, defaults.retries, 0, 20),
        quarantine_after=_optional(reader, entry, "run.quarantine_after", int, defaults.quarantine_after, 1, 100),
        reference=_reference(reader, entry) if "reference" in entry else defaults.reference,
    )


def _reference(reader: _Reader, entry: dict) -> Reference:
    name = reader.value(entry["reference"], "run.reference", str)
    try:
        return Reference(name)
    except ValueError:
        raise reader.fail(entry["reference"], "run.reference", f"is {_cut(name)!r}; give litert (LiteRT's reference "
                          "kernels) or tflm (TFLM's), with images of that rounding mode: docs/decisions.md") from None


def _optional(reader: _Reader, entry: dict, field: str, kind: type, default, minimum=None, maximum=None):
    key = field.rsplit(".", 1)[-1]
    return reader.value(entry[key], field, kind, minimum, maximum) if key in entry else default


def _boards(reader: _Reader, node: yaml.Node, models: dict[str, ModelSpec]) -> tuple[BoardSpec, ...]:
    boards: list[BoardSpec] = []
    claimed: dict[str, str] = {}  # a probe or port -> the slot that has it
    for i, board_node in enumerate(reader.sequence(node, "boards")):
        field = f"boards[{i}]"
        entry = reader.mapping(board_node, field, ("slot", "kind", "model"), ("emulated", "probe", "serial", "monitor",
                                                                                  "power_cycle", "place"))
        slot = reader.value(entry["slot"], f"{field}.slot", str)
        if not SLOT_PATTERN.match(slot):
            raise reader.fail(entry["slot"], f"{field}.slot", f"{slot!r} must be letters, digits, '_', '.' or '-'")
        kind = reader.value(entry["kind"], f"{field}.kind", str)
        if kind not in BOARD_KINDS:
            raise reader.fail(entry["kind"], f"{field}.kind",
                              f"unknown board kind {kind!r}; known: {', '.join(BOARD_KINDS)}")
        model = reader.value(entry["model"], f"{field}.model", str)
        if model not in models:
            raise reader.fail(entry["model"], f"{field}.model", f"model {model!r} is not under models; add it there")
        if "place" in entry:
            for spec in _placed(reader, entry, field, slot, kind, model):
                _unique_slot(reader, entry["slot"], field, spec.slot, boards)
                if spec.place.name is not None:
                    _claim(reader, entry["place"], f"{field}.place", f"place {spec.place.name}", slot, claimed)
                boards.append(spec)
            continue
        _unique_slot(reader, entry["slot"], field, slot, boards)
        emulated = reader.value(entry["emulated"], f"{field}.emulated", bool) if "emulated" in entry else False
        hardware = [key for key in ("probe", "serial", "monitor", "power_cycle") if key in entry]
        if emulated:
            if BOARD_KINDS[kind].qemu is None:
                raise reader.fail(entry["emulated"], f"{field}.emulated", f"board kind {kind} has no emulated twin; "
                                  "give the board its probe and serial (`emulated: false`) or use another kind")
            if hardware:
                raise reader.fail(entry[hardware[0]], f"{field}.{hardware[0]}",
                                  "an emulated board has no probe, serial, monitor or power_cycle; remove it or "
                                  "`emulated: false`")
            physical = None
        else:
            if "probe" not in entry or "serial" not in entry:
                raise reader.fail(board_node, field, "a physical board needs probe and serial "
                                  "(or `emulated: true`); see docs/labs.md")
            physical = _physical(reader, entry, field, slot, BOARD_KINDS[kind].pyocd_target, claimed)
        boards.append(BoardSpec(slot, kind, model, physical))
    return tuple(boards)


def _physical(reader: _Reader, entry: dict, field: str, slot: str, default_target: str,
              claimed: dict[str, str]) -> PhysicalSpec:
    probe = reader.mapping(entry["probe"], f"{field}.probe", ("unique_id",), ("target",))
    unique_id = reader.value(probe["unique_id"], f"{field}.probe.unique_id", str)
    _claim(reader, probe["unique_id"], f"{field}.probe.unique_id", f"probe {unique_id}", slot, claimed)
    target = _optional(reader, probe, f"{field}.probe.target", str, default_target)
    serial = _serial(reader, entry["serial"], f"{field}.serial", (), slot, claimed)
    monitor = _monitor(reader, entry["monitor"], f"{field}.monitor", slot, claimed) if "monitor" in entry else None
    power_cycle = None
    if "power_cycle" in entry:
        keys = reader.mapping(entry["power_cycle"], f"{field}.power_cycle", ("command",), ("timeout_s",))
        command = reader.value(keys["command"], f"{field}.power_cycle.command", str)
        timeout_s = _optional(reader, keys, f"{field}.power_cycle.timeout_s", float, 30.0, 1.0, 600.0)
        power_cycle = PowerCycleSpec(command, timeout_s)
    return PhysicalSpec(unique_id, target, serial, monitor, power_cycle)


def _unique_slot(reader: _Reader, node: yaml.Node, field: str, slot: str, boards: list[BoardSpec]) -> None:
    if any(b.slot == slot for b in boards):
        raise reader.fail(node, f"{field}.slot", f"slot {slot!r} is used twice; give each board its own")


PLACE_COUNT_MAX = 64  # boards one tag match may ask for


def _placed(reader: _Reader, entry: dict, field: str, slot: str, kind: str, model: str) -> list[BoardSpec]:
    """A board on a labgrid place: `place: NAME`, or `place: {tags: {...}, count: N}` for N boards
    `<slot>-1` .. `<slot>-N`, each on any free place with those tags (docs/distributed.md)."""
    other = [key for key in ("emulated", "probe", "serial", "power_cycle") if key in entry]
    if other:
        raise reader.fail(entry[other[0]], f"{field}.{other[0]}", "a board on a labgrid place gets its probe and "
                          "ports from the place; remove it, or remove place")
    calibration = None
    if "monitor" in entry:
        keys = reader.mapping(entry["monitor"], f"{field}.monitor", CALIBRATION_KEYS)
        calibration = (reader.value(keys["shunt_ohms"], f"{field}.monitor.shunt_ohms", float, 1e-4, 100.0),
                       reader.value(keys["max_current_a"], f"{field}.monitor.max_current_a", float, 1e-4, 26.0))
    node = entry["place"]
    if isinstance(node, yaml.ScalarNode):
        name = reader.value(node, f"{field}.place", str)
        if not PLACE_NAME.match(name):
            raise reader.fail(node, f"{field}.place", f"{_cut(name)!r} is not a labgrid place name (letters, digits, "
                              "'_', '.', '-'); give the place's name as `labgrid-client places` lists it")
        return [BoardSpec(slot, kind, model, None, PlaceSpec(name, (), calibration))]
    keys = reader.mapping(node, f"{field}.place", ("tags",), ("count",))
    tags = []
    for key, value_node in reader.mapping(keys["tags"], f"{field}.place.tags", optional=None).items():
        value = reader.value(value_node, f"{field}.place.tags.{key}", str)
        if not PLACE_TAG_KEY.match(key) or not PLACE_TAG_VALUE.match(value):
            raise reader.fail(value_node, f"{field}.place.tags.{key}", "a labgrid tag is a key of letters, digits and "
                              "'_' and a value of letters, digits, '_', '.', '-'; fix it")
        tags.append((key, value))
    if not tags:
        raise reader.fail(keys["tags"], f"{field}.place.tags", "name at least one tag, e.g. board: nucleo-l432kc")
    count = _optional(reader, keys, f"{field}.place.count", int, 1, 1, PLACE_COUNT_MAX)
    place = PlaceSpec(None, tuple(sorted(tags)), calibration)
    if count == 1:
        return [BoardSpec(slot, kind, model, None, place)]
    return [BoardSpec(f"{slot}-{i}", kind, model, None, place) for i in range(1, count + 1)]


# What labgrid's coordinator accepts (labgrid.remote.common TAG_KEY, TAG_VAL), and a place name it can hold.
PLACE_TAG_KEY = re.compile(r"^[a-z][a-z0-9_]+$")
PLACE_TAG_VALUE = re.compile(r"^[a-z0-9][a-z0-9_.-]*$")
PLACE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
CALIBRATION_KEYS = ("shunt_ohms", "max_current_a")
PORT_KEYS = ("port", "usb_serial", "baudrate")
LINUX_INA219_KEYS = ("i2c_bus", "address", "gpio_chip", "busy_line", "exit_line")
PPK2_KEYS = ("mode", "vdd_mv", "busy_channel", "exit_channel")
# The keys a unit of each kind takes besides `kind` (a port is `port` or `usb_serial`; a baudrate is optional).
MONITOR_KEYS = {MonitorKind.SERIAL: CALIBRATION_KEYS + PORT_KEYS,
                MonitorKind.LINUX_INA219: CALIBRATION_KEYS + LINUX_INA219_KEYS,
                MonitorKind.PPK2: ("port", "usb_serial") + PPK2_KEYS}
PPK2_VDD_MV = (800, 5000)  # what its regulator sets (and ppk2-api clamps to)


def _monitor(reader: _Reader, node: yaml.Node, field: str, slot: str, claimed: dict[str, str]) -> MonitorSpec:
    kinds = {kind.value: kind for kind in MonitorKind}
    head = reader.mapping(node, field, (), None)
    kind = MonitorKind.SERIAL
    if "kind" in head:
        name = reader.value(head["kind"], f"{field}.kind", str)
        if name not in kinds:
            raise reader.fail(head["kind"], f"{field}.kind", f"unknown unit kind {_cut(name)!r}; known: "
                              f"{', '.join(kinds)}")
        kind = kinds[name]
    own = MONITOR_KEYS[kind]
    calibration = tuple(key for key in own if key in CALIBRATION_KEYS)
    keys = reader.mapping(node, field, calibration, ("kind",) + tuple(key for key in own if key not in calibration))
    if kind is MonitorKind.PPK2:
        return _ppk2(reader, node, keys, field, slot, claimed)
    shunt_ohms = reader.value(keys["shunt_ohms"], f"{field}.shunt_ohms", float, 1e-4, 100.0)
    max_current_a = reader.value(keys["max_current_a"], f"{field}.max_current_a", float, 1e-4, 26.0)
    if kind is MonitorKind.SERIAL:
        serial_spec = _serial(reader, node, field, ("kind",) + CALIBRATION_KEYS, slot, claimed)
        return MonitorSpec(serial_spec, shunt_ohms, max_current_a)
    return MonitorSpec(None, shunt_ohms, max_current_a, kind, _linux_ina219(reader, node, keys, field, slot, claimed))


def _ppk2(reader: _Reader, node: yaml.Node, keys: dict, field: str, slot: str, claimed: dict[str, str]) -> MonitorSpec:
    missing = [key for key in PPK2_KEYS if key not in keys]
    if missing:
        raise reader.fail(node, field, f"a ppk2 unit needs {', '.join(missing)}; see docs/labs.md")
    modes = {mode.value: mode for mode in Ppk2Mode}
    mode_name = reader.value(keys["mode"], f"{field}.mode", str)
    if mode_name not in modes:
        raise reader.fail(keys["mode"], f"{field}.mode", f"is {_cut(mode_name)!r}; give source (the PPK2 powers "
                          "the board) or ampere (it meters the board's own supply)")
    vdd_mv = reader.value(keys["vdd_mv"], f"{field}.vdd_mv", int, *PPK2_VDD_MV)
    channels = [reader.value(keys[key], f"{field}.{key}", int, 0, 7) for key in ("busy_channel", "exit_channel")]
    if channels[0] == channels[1]:
        raise reader.fail(keys["exit_channel"], f"{field}.exit_channel", "is the busy channel too; wire the exit "
                          "pin to another of D0..D7")
    where = keys.get("port")
    if where is not None and is_url(reader.value(where, f"{field}.port", str)):
        raise reader.fail(where, f"{field}.port", "ppk2-api opens a local port, not a URL; give the PPK2's "
                          "path (/dev/serial/by-id/...) or its usb_serial")
    serial_spec = _serial(reader, node, field, ("kind",) + PPK2_KEYS, slot, claimed)
    return MonitorSpec(serial_spec, None, None, MonitorKind.PPK2,
                       ppk2=Ppk2Spec(modes[mode_name], vdd_mv, channels[0], channels[1]))


def _linux_ina219(reader: _Reader, node: yaml.Node, keys: dict, field: str, slot: str,
                  claimed: dict[str, str]) -> LinuxIna219Spec:
    missing = [key for key in LINUX_INA219_KEYS if key not in keys]
    if missing:
        raise reader.fail(node, field, f"a linux-ina219 unit needs {', '.join(missing)}; see docs/labs.md")
    bus_node = keys["i2c_bus"]
    if isinstance(bus_node, yaml.ScalarNode) and bus_node.value.isdigit():
        i2c_bus: int | str = reader.value(bus_node, f"{field}.i2c_bus", int, 0, 1023)
        bus_path = f"/dev/i2c-{i2c_bus}"
    else:
        i2c_bus = bus_path = str(reader.path(bus_node, f"{field}.i2c_bus"))
    if not os.path.exists(bus_path):
        raise reader.fail(bus_node, f"{field}.i2c_bus", f"{bus_path} not found; load i2c-dev "
                          "(`modprobe i2c-dev`) or fix the bus number")
    address = reader.value(keys["address"], f"{field}.address", int, 0x40, 0x4F)
    chip = str(reader.path(keys["gpio_chip"], f"{field}.gpio_chip"))
    if not os.path.exists(chip):
        raise reader.fail(keys["gpio_chip"], f"{field}.gpio_chip", f"{chip} not found; list the chips with "
                          "`gpiodetect` and give one's path")
    lines = [reader.value(keys[key], f"{field}.{key}", int, 0, 1023) for key in ("busy_line", "exit_line")]
    if lines[0] == lines[1]:
        raise reader.fail(keys["exit_line"], f"{field}.exit_line", "is the busy line too; wire the exit pin to "
                          "another line")
    _claim(reader, keys["address"], f"{field}.address", f"INA219 {address:#04x} on {bus_path}", slot, claimed)
    for key, line in zip(("busy_line", "exit_line"), lines):
        _claim(reader, keys[key], f"{field}.{key}", f"GPIO line {line} of {chip}", slot, claimed)
    return LinuxIna219Spec(i2c_bus, address, chip, lines[0], lines[1])


def _serial(reader: _Reader, node: yaml.Node, field: str, other_keys: tuple, slot: str,
            claimed: dict[str, str]) -> SerialSpec:
    entry = reader.mapping(node, field, (), ("port", "usb_serial", "baudrate") + other_keys)
    if ("port" in entry) == ("usb_serial" in entry):
        raise reader.fail(node, field, "give exactly one of port (a path) or usb_serial (a USB serial number)")
    port = reader.value(entry["port"], f"{field}.port", str) if "port" in entry else None
    usb_serial = reader.value(entry["usb_serial"], f"{field}.usb_serial", str) if "usb_serial" in entry else None
    baudrate = _optional(reader, entry, f"{field}.baudrate", int, 115200, 1200, 12_000_000)
    where = entry.get("port") or entry["usb_serial"]
    device = reader.checked(where, field, find_serial_port, port, usb_serial, slot)
    _claim(reader, where, field, f"serial port {device}", slot, claimed)
    if not is_url(device):  # a remote port cannot be locked from here; its server serves one client
        reader.checked(where, field, check_port_free, device, slot)
    return SerialSpec(port, usb_serial, baudrate, device)


def _claim(reader: _Reader, node: yaml.Node, field: str, resource: str, slot: str, claimed: dict[str, str]) -> None:
    """One probe or port serves one board: two boards claiming one would talk over each other."""
    if resource in claimed:
        raise reader.fail(node, field, f"{resource} is already used by board {claimed[resource]}; each board "
                          "needs its own")
    claimed[resource] = slot


def is_url(port: str) -> bool:
    """A pyserial URL (socket://host:port, rfc2217://host:port, spy:///dev/ttyACM0, ...), as
    serial.serial_for_url tells one from a path."""
    return "://" in port


def find_serial_port(port: str | None, usb_serial: str | None, slot: str) -> str:
    """What to open for a serial port: a path that exists (its real path), a URL of a protocol
    pyserial knows (as given), or the one port with that USB serial number."""
    if port and is_url(port):
        try:
            serial.serial_for_url(port, do_not_open=True)
        except (ValueError, serial.SerialException) as error:
            raise BadInput(f"board {slot}: serial port {port}: {error}; give a path or a pyserial URL such as "
                           "socket://HOST:PORT or rfc2217://HOST:PORT") from None
        return port
    if port:
        if not os.path.exists(port):
            raise BadInput(f"board {slot}: serial port {port} not found; is the board plugged in?")
        return os.path.realpath(port)
    ports = list_ports.comports()
    matches = [p.device for p in ports if p.serial_number == usb_serial]
    if len(matches) != 1:
        found = ", ".join(f"{p.device} ({p.serial_number})" for p in ports) or "none"
        raise BadInput(f"board {slot}: {len(matches)} serial ports have USB serial number {usb_serial!r} "
                       f"(ports present: {found}); plug the board in or fix usb_serial")
    return matches[0]


def check_port_free(device: str, slot: str) -> None:
    """Another program holding the port (pyserial's exclusive lock) would steal our bytes."""
    try:
        fd = os.open(device, os.O_RDWR | os.O_NOCTTY | os.O_NONBLOCK)
    except OSError as error:
        raise BadInput(f"board {slot}: cannot open serial port {device} ({error.strerror}); "
                       "check its permissions") from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        raise BadInput(f"board {slot}: serial port {device} is in use by another program; close it first") from None
    finally:
        os.close(fd)


def _firmware(reader: _Reader, node: yaml.Node, models: dict[str, ModelSpec], boards: tuple[BoardSpec, ...],
              reference: Reference) -> dict[tuple[str, str], FirmwareManifest]:
    firmware, nodes = {}, {}
    for kind, kind_node in reader.mapping(node, "firmware", optional=None).items():
        if kind not in BOARD_KINDS:
            raise reader.fail(kind_node, f"firmware.{kind}", f"unknown board kind; known: {', '.join(BOARD_KINDS)}")
        for model, path_node in reader.mapping(kind_node, f"firmware.{kind}", optional=None).items():
            field = f"firmware.{kind}.{model}"
            if model not in models:
                raise reader.fail(path_node, field, f"model {model!r} is not under models; add it there or remove this")
            manifest = reader.checked(path_node, field, load_manifest, reader.path(path_node, field))
            if (manifest.board, manifest.model) != (kind, model):
                raise reader.fail(path_node, field, f"that manifest is for {manifest.board}/{manifest.model}; "
                                  f"name the {kind}/{model} image")
            if manifest.load_address != BOARD_KINDS[kind].load_address:
                raise reader.fail(path_node, field, f"the image is linked at {manifest.load_address:#010x}, but {kind} "
                                  f"loads images at {BOARD_KINDS[kind].load_address:#010x}; rebuild with "
                                  "`hil firmware build`")
            if manifest.model_sha256 != models[model].card.sha256:
                raise reader.fail(path_node, field, f"the image was built for model sha256 {manifest.model_sha256[:12]}…, "
                                  f"but {model} is {models[model].card.sha256[:12]}…; rebuild with `hil firmware build`")
            firmware[(kind, model)], nodes[(kind, model)] = manifest, path_node
    for board in boards:
        image = (board.kind, board.model)
        if image not in firmware:
            raise reader.fail(node, "firmware", f"no image for board {board.slot} ({board.kind}, {board.model}); "
                              f"add firmware.{board.kind}.{board.model}: <manifest.json>")
        if firmware[image].rounding != reference:
            # Its answers would differ from the reference by a step on some samples: refused before any flashing.
            rounding = firmware[image].rounding
            raise reader.fail(nodes[image], f"firmware.{board.kind}.{board.model}", (
                f"board {board.slot}'s image {firmware[image].directory / MANIFEST} has {rounding} rounding, "
                f"but run.reference is {reference}; name its {reference} image "
                f"({assets.PREBUILT_DIR / image_dir(board.kind, board.model, reference) / MANIFEST}) or set "
                f"run.reference: {rounding} (docs/labs.md)"))
    return firmware
