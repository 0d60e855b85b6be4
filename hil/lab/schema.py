"""labs.yaml's shape as one table, and the JSON Schema editors read, generated from it (`hil lab schema`,
docs/labs.schema.json).

The table says, for every mapping of a lab file, which keys it takes (required, optional), and for every value its
kind, range, choices, pattern and default, from what hil.lab.load reads them with: its key lists (MONITOR_KEYS, ...)
and patterns (SLOT_PATTERN, PLACE_NAME, COORDINATOR, ...), the board kinds (hw/kinds.py), the unit kinds and PPK2
modes (its enums), RegressionPolicy's fields, RunSettings' defaults. tests/unit/test_lab_schema.py holds the table
equal to what the loader accepts, key by key and bound by bound, and docs/labs.schema.json equal to `json_schema()`.

A schema checks shape only: what a lab points to (models, test sets, images, ports) and what spans fields
(unique slots, one board per probe, an image per board) is the loader's, as is the decimal spelling of
run.threshold. A lab the schema accepts may still be refused by `hil run`; one it refuses, `hil run` refuses too.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, fields

from hil.hw.kinds import BOARD_KINDS
from hil.lab.bounded_yaml import LIMITS
from hil.lab.load import (CALIBRATION_KEYS, COORDINATOR, LINUX_INA219_KEYS, MONITOR_KEYS, PLACE_COUNT_MAX,
                          PLACE_NAME, PLACE_TAG_KEY, PLACE_TAG_VALUE, PPK2_KEYS, PPK2_VDD_MV, SLOT_PATTERN, MonitorKind,
                          Ppk2Mode, RunSettings)
from hil.model.reference import Reference
from hil.stats.regression import RegressionPolicy

SCHEMA_ID = "https://hil.invalid/labs.schema.json"  # a name, never fetched (.invalid resolves nowhere)
# Draft 7: what editors (yaml-language-server, JetBrains) support best; every keyword used here is in it.
DRAFT = "http://json-schema.org/draft-07/schema#"


@dataclass(frozen=True)
class Value:
    """A plain value: `kind` is str, int, float (any number) or bool, as hil.lab.load's `_Reader.value` takes it."""

    kind: type
    about: str
    minimum: float | None = None
    maximum: float | None = None
    exclusive: bool = False  # the open interval (minimum, maximum)
    choices: tuple = ()
    pattern: str | None = None
    default: object = None
    or_text: bool = False  # text is taken too (an I2C bus by number or by its device path)


@dataclass(frozen=True)
class Keys:
    """A mapping of fixed keys. `one_of`: keys of which exactly one is given (a port by path or by USB serial)."""

    about: str
    required: dict[str, Node]
    optional: dict[str, Node] = field(default_factory=dict)
    one_of: tuple[str, ...] = ()

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(self.required) + tuple(self.optional)


@dataclass(frozen=True)
class Named:
    """A mapping whose keys the user names (models), or picks from `names` (board kinds), each holding `value`;
    `at_least_one`: an empty one is refused; `name_pattern`: what a name must match (a labgrid tag's key)."""

    about: str
    value: Node
    names: tuple[str, ...] = ()
    at_least_one: bool = True
    name_pattern: str | None = None


@dataclass(frozen=True)
class ListOf:
    about: str
    item: Node


@dataclass(frozen=True)
class Variants:
    """A mapping whose keys follow from one of them, `tag`: one Keys per value of the tag, `default` when it is
    absent (a monitor's `kind`, a board's `emulated`). `present`: Keys chosen by a key's presence instead, before
    the tag is looked at (a board with `place` is on a labgrid place, whatever else it holds)."""

    about: str
    tag: str
    variants: dict[object, Keys]
    default: object
    present: dict[str, Keys] = field(default_factory=dict)

    def chosen(self, mapping: dict) -> Keys:
        """The variant that holds for this mapping."""
        for key, keys in self.present.items():
            if key in mapping:
                return keys
        return self.variants[mapping.get(self.tag, self.default)]

    @property
    def every(self) -> tuple[Keys, ...]:
        return tuple(self.variants.values()) + tuple(self.present.values())


@dataclass(frozen=True)
class Either:
    """A value given as text or as a mapping (a board's place: by name, or by tags)."""

    about: str
    text: Value
    keys: Keys

    def chosen(self, value) -> Value | Keys:
        return self.keys if isinstance(value, dict) else self.text


Node = Value | Keys | Named | ListOf | Variants | Either


def text(about: str, **more) -> Value:
    return Value(str, about, **more)


def _port_keys(baudrate: bool) -> dict[str, Node]:
    keys: dict[str, Node] = {
        "port": text("a path (/dev/serial/by-id/...) or a pyserial URL (socket://HOST:PORT, rfc2217://HOST:PORT)"),
        "usb_serial": text("the port's USB serial number, instead of port"),
    }
    if baudrate:
        keys["baudrate"] = Value(int, "bits per second", 1200, 12_000_000, default=115200)
    return keys


CALIBRATION: dict[str, Node] = {
    "shunt_ohms": Value(float, "the INA219's shunt resistor, ohms", 1e-4, 100.0),
    "max_current_a": Value(float, "the largest current expected, amperes (sets the INA219's calibration)", 1e-4, 26.0),
}
LINUX_INA219: dict[str, Node] = {
    "i2c_bus": Value(int, "N of /dev/i2c-N, or the bus's device path", 0, 1023, or_text=True),
    "address": Value(int, "the INA219's I2C address", 0x40, 0x4F),
    "gpio_chip": text("the GPIO chip's device path (gpiodetect lists them)"),
    "busy_line": Value(int, "the GPIO line the board's busy pin is wired to", 0, 1023),
    "exit_line": Value(int, "the GPIO line the board's exit pin is wired to", 0, 1023),
}
PPK2: dict[str, Node] = {
    "mode": Value(str, "source: the PPK2 powers the board; ampere: it meters the board's own supply",
                  choices=tuple(mode.value for mode in Ppk2Mode)),
    "vdd_mv": Value(int, "the supply voltage, millivolts", *PPK2_VDD_MV),
    "busy_channel": Value(int, "the digital input D0..D7 the busy pin is wired to", 0, 7),
    "exit_channel": Value(int, "the digital input D0..D7 the exit pin is wired to", 0, 7),
}
_UNIT_PARTS = {**CALIBRATION, **LINUX_INA219, **PPK2, **_port_keys(baudrate=True)}
_UNIT_ABOUT = {MonitorKind.SERIAL: "a unit speaking monitor protocol v1 on a serial port (docs/monitor.md)",
               MonitorKind.LINUX_INA219: "an INA219 on this host's I2C bus, the pins on its GPIO lines",
               MonitorKind.PPK2: "a Nordic PPK2 on USB serial, the pins on its digital inputs"}


def _unit(kind: MonitorKind) -> Keys:
    """One unit kind's keys, as hil.lab.load's `_monitor` takes them: MONITOR_KEYS, the calibration and (not for a
    serial unit, whose port may be either) the unit's own parts required."""
    own = MONITOR_KEYS[kind]
    wanted = CALIBRATION_KEYS + {MonitorKind.LINUX_INA219: LINUX_INA219_KEYS, MonitorKind.PPK2: PPK2_KEYS}.get(kind, ())
    kind_key = {"kind": Value(str, "what the unit is", choices=(kind.value,))}
    return Keys(_UNIT_ABOUT[kind], {key: _UNIT_PARTS[key] for key in own if key in wanted},
                {**kind_key, **{key: _UNIT_PARTS[key] for key in own if key not in wanted}},
                one_of=("port", "usb_serial") if "port" in own else ())


def _regression() -> Keys:
    """RegressionPolicy's fields, in the ranges hil.lab.load's `_regression_policy` gives them."""
    defaults = RegressionPolicy()
    keys: dict[str, Node] = {}
    for policy_field in fields(RegressionPolicy):
        name, default = policy_field.name, getattr(defaults, policy_field.name)
        about = f"regression rule setting (docs/labs.md), default {default}"
        if name in ("alpha", "confidence"):
            keys[name] = Value(float, about, 0.0, 1.0, exclusive=True, default=default)
        elif name == "bootstrap_resamples":
            keys[name] = Value(int, about, 1, 1_000_000, default=default)
        elif policy_field.type in ("int", int):
            keys[name] = Value(int, about, 0, 1_000_000, default=default)
        else:
            keys[name] = Value(float, about, 0.0, 100.0, default=default)
    return Keys("thresholds of the regression rules against a baseline", {}, keys)


_RUN = RunSettings()
BOARD_HEAD: dict[str, Node] = {
    "slot": text("the board's name in the rack: letters, digits, '_', '.', '-'", pattern=SLOT_PATTERN.pattern),
    "kind": Value(str, "the board kind (docs/boards.md)", choices=tuple(BOARD_KINDS)),
    "model": text("a model named under models"),
}
EMULATED_KINDS = tuple(name for name, kind in BOARD_KINDS.items() if kind.qemu is not None)
PLACED = Keys("a board on a labgrid place, which has its probe and ports (docs/distributed.md)", {
    **BOARD_HEAD,
    "place": Either("the place: its name, or tags any free place must have", text(
        "the place's name, as `labgrid-client places` lists it", pattern=PLACE_NAME.pattern), Keys(
        "any free places with these tags", {
            "tags": Named("labgrid tags the place must have, e.g. board: nucleo-l432kc", text(
                "the tag's value: letters, digits, '_', '.', '-'", pattern=PLACE_TAG_VALUE.pattern),
                name_pattern=PLACE_TAG_KEY.pattern)}, {
            "count": Value(int, "how many such places, boards <slot>-1 .. <slot>-N", 1, PLACE_COUNT_MAX, default=1)})),
}, {
    "monitor": Keys("the calibration of the place's measurement unit (its port is the place's)",
                    {key: CALIBRATION[key] for key in CALIBRATION_KEYS}),
})

LAB = Keys("a hil lab: models, images, boards and how a run behaves (docs/labs.md)", {
    "lab": text("the lab's name: runs, baselines and the health history are kept per name"),
    "models": Named("models by name", Keys("a model and its test sets", {
        "path": text("the model's folder (model.json and its stages); relative to the lab file"),
        "testsets": ListOf("test set files (.npz), globs allowed; relative to the lab file",
                           text("a test set file or a glob")),
    })),
    "firmware": Named("images by board kind, then by model", Named(
        "images of this board kind by model", text("the image's manifest.json, or its folder"), at_least_one=False),
        tuple(BOARD_KINDS)),
    "boards": ListOf("the rack's boards", Variants("a board: emulated (QEMU), physical (a probe and a port) or on a "
                                                   "labgrid place",
                                                   "emulated", {
        True: Keys("an emulated board", {**BOARD_HEAD, "kind": Value(
            str, "a board kind with an emulated twin (docs/boards.md)", choices=EMULATED_KINDS)}, {
            "emulated": Value(bool, "true: the board's QEMU twin", default=False)}),
        False: Keys("a physical board", {**BOARD_HEAD,
            "probe": Keys("the debug probe pyOCD flashes through", {
                "unique_id": text("the probe's unique id, matched exactly (`hil lab scan` lists them)")}, {
                "target": text("pyOCD's target name (default: the board kind's)")}),
            "serial": Keys("the board's serial port", {}, _port_keys(baudrate=True), one_of=("port", "usb_serial")),
        }, {
            "emulated": Value(bool, "false (the default): a physical board", default=False),
            "monitor": Variants("the board's measurement unit (docs/measurement.md)", "kind",
                                {kind.value: _unit(kind) for kind in MonitorKind}, MonitorKind.SERIAL.value),
            "power_cycle": Keys("how to cut and restore the board's power, the recovery ladder's last step", {
                "command": text("a command that power-cycles the board (uhubctl, a relay's tool)")}, {
                "timeout_s": Value(float, "how long the command may take, seconds", 1.0, 600.0, default=30.0)}),
        }),
    }, False, {"place": PLACED})),
}, {
    "results": text("where runs are kept (default: results/ beside the lab file)"),
    "run": Keys("how a run behaves", {}, {
        "threshold": Value(float, "the early-exit confidence threshold τ, written as a decimal", 0.0, 1.0,
                           default=_RUN.threshold),
        "request_timeout_s": Value(float, "one request's answer, seconds", 0.1, 600, default=_RUN.request_timeout_s),
        "boot_timeout_s": Value(float, "the first HELLO after bring-up, seconds", 0.1, 600,
                                default=_RUN.boot_timeout_s),
        "retries": Value(int, "per request, each after a resync", 0, 20, default=_RUN.retries),
        "quarantine_after": Value(int, "runs in a row a board failed that quarantine it", 1, 100,
                                  default=_RUN.quarantine_after),
        "reference": Value(str, "the host reference the answers are reconciled against (docs/decisions.md)",
                           choices=tuple(reference.value for reference in Reference),
                           default=_RUN.reference.value),
    }),
    "regression": _regression(),
    "labgrid": Keys("where the boards' labgrid places are (docs/distributed.md)", {
        "coordinator": text("the labgrid coordinator's HOST:PORT (without it: the LG_COORDINATOR variable)",
                            pattern=COORDINATOR.pattern)}),
})

_JSON_TYPES = {str: "string", int: "integer", float: "number", bool: "boolean"}


def json_schema() -> dict:
    """The JSON Schema (draft 7) of labs.yaml, from LAB."""
    return {"$schema": DRAFT, "$id": SCHEMA_ID, "title": "hil lab (labs.yaml)", **_schema(LAB)}


def schema_text() -> str:
    """json_schema() as docs/labs.schema.json holds it."""
    return json.dumps(json_schema(), indent=2, ensure_ascii=False) + "\n"


def _schema(node: Node) -> dict:
    if isinstance(node, Value):
        return _value(node)
    if isinstance(node, Keys):
        return _keys(node)
    if isinstance(node, Named):
        out = {"type": "object", "description": node.about, "additionalProperties": _schema(node.value)}
        if node.at_least_one:
            out["minProperties"] = 1
        if node.names:
            out["propertyNames"] = {"enum": list(node.names)}
        if node.name_pattern:
            out["propertyNames"] = {"pattern": node.name_pattern}
        return out
    if isinstance(node, ListOf):
        return {"type": "array", "description": node.about, "minItems": 1, "items": _schema(node.item)}
    if isinstance(node, Either):
        return {"description": node.about, "oneOf": [_value(node.text), _keys(node.keys)]}
    return _variants(node)


def _value(node: Value) -> dict:
    if node.or_text:  # a number in its range, or any text
        return {"description": node.about, "anyOf": [_value(Value(node.kind, node.about, node.minimum, node.maximum)),
                                                     _value(Value(str, node.about))]}
    out: dict = {"type": _JSON_TYPES[node.kind], "description": node.about}
    if node.kind is str:
        out |= {"minLength": 1, "maxLength": LIMITS.string_chars, "pattern": node.pattern or r"\S"}
    if node.choices:
        out["enum"] = list(node.choices)
    if node.minimum is not None:
        out["exclusiveMinimum" if node.exclusive else "minimum"] = node.minimum
    if node.maximum is not None:
        out["exclusiveMaximum" if node.exclusive else "maximum"] = node.maximum
    if node.default is not None:
        out["default"] = node.default
    return out


def _keys(node: Keys) -> dict:
    out: dict = {"type": "object", "description": node.about,
                 "properties": {key: _schema(value) for key, value in {**node.required, **node.optional}.items()},
                 "additionalProperties": False}
    if node.required:
        out["required"] = list(node.required)
    if node.one_of:
        out["oneOf"] = [{"required": [key]} for key in node.one_of]
    return out


def _variants(node: Variants) -> dict:
    """Each variant chosen by a key's presence where that key is; where none is, each tag variant where its tag has
    that value, the default's also where the tag is absent."""
    cases = [{"if": {"required": [key]}, "then": _keys(keys)} for key, keys in node.present.items()]
    for tag_value, keys in node.variants.items():
        when: dict = {"properties": {node.tag: {"const": tag_value}}}
        if tag_value != node.default:
            when["required"] = [node.tag]
        if node.present:
            when["not"] = {"anyOf": [{"required": [key]} for key in node.present]}
        cases.append({"if": when, "then": _keys(keys)})
    tag_values = list(node.variants)
    return {"type": "object", "description": node.about,
            "properties": {node.tag: {"enum": tag_values, "default": node.default}}, "allOf": cases}
