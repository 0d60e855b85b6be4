"""The JSON Schema of labs.yaml (hil/lab/schema.py) and the lab loader (hil/lab/load.py) agree on every key.

Good labs of every shape (an emulated board with every run and regression key; physical boards with each kind of
measurement unit and a power-cycle command, on real ptys; boards on labgrid places, by name and by tags) are walked
along the schema's table. At every mapping and value the table describes, each lab is changed the ways the table
says matter (a key unknown, removed or added from another variant, a value of the wrong type, at and past each
bound, outside its choices, not matching its pattern), and the loader and the schema must both accept or both refuse
it; where the loader lists the keys or choices it knows, that list must be the table's. Every mapping and value of
the table must be reached, so a key the table has and no lab exercises fails too. Then the committed labs validate,
docs/labs.schema.json is json_schema() as it is now, and the malformed labs the loader's own tests refuse (bad
places too) are refused by the schema.
"""

from __future__ import annotations

import copy
import json
import os
import re
from dataclasses import dataclass
from pathlib import Path

import jsonschema
import pytest
import yaml

from hil import REPO_ROOT
from hil.cli import main
from hil.errors import BadInput
from hil.hw.kinds import BOARD_KINDS
from hil.lab.load import load_lab
from hil.lab.schema import LAB, Either, Keys, ListOf, Named, Value, Variants, json_schema
from tests.support.lab_cases import lab_data
from tests.unit.test_lab import CASES, make_case
from tests.unit.test_lab_places import BAD_PLACES, lab_with

SCHEMA_FILE = REPO_ROOT / "docs" / "labs.schema.json"
UNKNOWN = "zz_unknown"
VALIDATOR = jsonschema.Draft7Validator(json_schema())
BOARD_VARIANTS = LAB.required["boards"].item.variants  # emulated: True / False (a board with place is neither)
COORDINATOR = "coordinator-host:20408"


@pytest.fixture
def ports():
    """Real pseudo-terminals: the board's serial port, a serial unit's, a PPK2's, and a GPIO chip's device."""
    opened = [os.openpty() for _ in range(4)]
    yield [os.ttyname(device) for _, device in opened]
    for pair in opened:
        for fd in pair:
            os.close(fd)


def good_labs(tmp_path: Path, ports: list[str]) -> dict[str, dict]:
    """Labs the loader accepts that, together, hold every key of the table."""
    board_port, unit_port, ppk2_port, gpio_chip = ports
    (tmp_path / "i2c-1").touch()
    emulated = lab_data(tmp_path)
    emulated["run"] = {"threshold": 0.9, "request_timeout_s": 5.0, "boot_timeout_s": 20.0, "retries": 1,
                       "quarantine_after": 3, "reference": "litert"}  # its images' rounding: a lab without it agrees
    emulated["regression"] = {"alpha": 0.05, "min_accuracy_drop": 0.01, "latency_tolerance": 0.03,
                              "energy_tolerance": 0.05, "confidence": 0.95, "bootstrap_resamples": 2000,
                              "ece_tolerance": 0.02, "nll_tolerance": 0.05, "brier_tolerance": 0.01,
                              "auroc_tolerance": 0.02, "seed": 2026}
    units = {
        "serial": {"kind": "serial", "port": unit_port, "baudrate": 115200, "shunt_ohms": 0.1, "max_current_a": 0.4},
        "linux-ina219": {"kind": "linux-ina219", "i2c_bus": str(tmp_path / "i2c-1"), "address": 0x41,
                         "gpio_chip": gpio_chip, "busy_line": 17, "exit_line": 27, "shunt_ohms": 1.0,
                         "max_current_a": 0.04},
        "ppk2": {"kind": "ppk2", "port": ppk2_port, "mode": "source", "vdd_mv": 3300, "busy_channel": 1,
                 "exit_channel": 2},
    }
    placed = lab_data(tmp_path)
    placed["labgrid"] = {"coordinator": COORDINATOR}
    placed["boards"] = [{"slot": "named", "kind": "mps2-an386", "model": "qute-digits", "place": "rack-a-1",
                         "monitor": {"shunt_ohms": 0.1, "max_current_a": 0.4}},
                        {"slot": "tagged", "kind": "mps2-an386", "model": "qute-digits",
                         "place": {"tags": {"board": "mps2-an386", "rack": "a"}, "count": 2}}]
    labs = {"emulated": emulated, "on labgrid places": placed}
    for name, unit in units.items():
        lab = lab_data(tmp_path)
        lab["boards"] = [{"slot": "bench", "kind": "mps2-an386", "model": "qute-digits", "emulated": False,
                          "probe": {"unique_id": "0240000012345678", "target": "cortex_m"},
                          "serial": {"port": board_port, "baudrate": 115200}, "monitor": unit,
                          "power_cycle": {"command": "uhubctl -a cycle -l 1-1 -p 2", "timeout_s": 30.0}}]
        labs[f"physical, {name} unit"] = lab
    return labs


@dataclass(frozen=True)
class Case:
    what: str
    lab: dict
    accepted: bool  # what both the loader and the schema must say
    # The loader's message lists names after this text: at least the first set, at most the second (a board's keys
    # are listed before its variant is known: all of them, though an emulated board takes only some).
    known: tuple[str, set[str], set[str]] | None = None


def get(doc, path):
    for step in path:
        doc = doc[step]
    return doc


def changed(doc: dict, path: tuple, edit) -> dict:
    """A deep copy of `doc` with `edit` applied to the node at `path`."""
    copied = copy.deepcopy(doc)
    edit(get(copied, path))
    return copied


def with_value(doc: dict, path: tuple, value) -> dict:
    """A deep copy of `doc` with `value` at `path`."""
    return changed(doc, path[:-1], lambda node: node.__setitem__(path[-1], value))


def drop(key):
    return lambda node: node.pop(key)


def walk(node, doc, path=()):
    """Every (table node, path) this lab reaches, the variant it picks for a Variants, the form it takes for an
    Either."""
    yield node, path
    if isinstance(node, (Variants, Either)):
        node = node.chosen(doc)
        yield node, path
    if isinstance(node, Keys):
        for key, child in {**node.required, **node.optional}.items():
            if key in doc:
                yield from walk(child, doc[key], path + (key,))
    elif isinstance(node, Named):
        for key, value in doc.items():
            yield from walk(node.value, value, path + (key,))
    elif isinstance(node, ListOf):
        for i, item in enumerate(doc):
            yield from walk(node.item, item, path + (i,))


def keys_cases(node: Keys, lab: dict, path: tuple, variants: Variants | None) -> list[Case]:
    """`variants`: what this Keys is a variant of (removing its tag may change the variant)."""
    where = ".".join(map(str, path)) or "top"
    here = get(lab, path)
    every = set(node.names) if variants is None else set().union(*(v.names for v in variants.every))
    cases = [Case(f"{where}: an unknown key", with_value(lab, path + (UNKNOWN,), 1), False,
                  known=(f"{UNKNOWN}: unknown key; known keys here: ", set(node.names), every))]
    cases += [Case(f"{where}: without required {key}", changed(lab, path, drop(key)), False) for key in node.required]
    for key in node.optional:
        if key in here and key not in node.one_of:
            same_variant = variants is None or key != variants.tag or here[key] == variants.default
            cases.append(Case(f"{where}: without optional {key}", changed(lab, path, drop(key)), same_variant))
    if node.one_of:
        given = [key for key in node.one_of if key in here]
        cases.append(Case(f"{where}: none of {node.one_of}", changed(
            lab, path, lambda n: [n.pop(key) for key in given]), False))
        cases.append(Case(f"{where}: all of {node.one_of}", changed(
            lab, path, lambda n: n.update({key: n.get(key, "X0001") for key in node.one_of})), False))
    return cases


def bounds(node: Value) -> list[tuple[str, object, bool]]:
    """(what, a value, whether it is in range) at and just past each bound."""
    step = 1 if node.kind is int else None
    out = []
    for name, bound, outward in (("minimum", node.minimum, -1), ("maximum", node.maximum, 1)):
        if bound is None:
            continue
        past = bound + outward * (step or max(abs(bound), 1.0) * 1e-6)
        out += [(f"at its {name} {bound}", bound, not node.exclusive), (f"past its {name}", past, False)]
    return out


# Values the loader takes only where hardware exists: an I2C bus given by number must be /dev/i2c-N on this host,
# and a port given by USB serial number must be plugged in (test_a_usb_serial_is_text_to_both).
NEEDS_HARDWARE = {"i2c_bus", "usb_serial"}


def value_cases(node: Value, lab: dict, path: tuple) -> list[Case]:
    where, key = ".".join(map(str, path)), path[-1]
    cases = []
    wrong = {str: [5, True], int: ["five", 1.5, True], float: ["five", True], bool: ["yes", 1]}[node.kind]
    if node.or_text:
        wrong = [True, 1.5]
    cases += [Case(f"{where}: {value!r} is the wrong type", with_value(lab, path, value), False) for value in wrong]
    for what, value, inside in bounds(node):
        if inside and key in NEEDS_HARDWARE:
            continue
        cases.append(Case(f"{where}: {what}", with_value(lab, path, value), inside))
    if node.kind is str:
        cases += [Case(f"{where}: {value!r}", with_value(lab, path, value), False) for value in ("", "   ")]
    if node.choices:
        cases.append(Case(f"{where}: not one of its choices", with_value(lab, path, "zz-none"), False))
    if node.pattern:
        cases.append(Case(f"{where}: not matching its pattern", with_value(lab, path, "a/b"), False))
    return cases


def named_cases(node: Named, lab: dict, path: tuple, parent) -> list[Case]:
    where = ".".join(map(str, path))
    cases = []
    if node.at_least_one:
        cases.append(Case(f"{where}: empty", with_value(lab, path, {}), False))
    if isinstance(parent, Named) and parent.names:  # an empty one beside this one, under a name not used yet
        unused = next(name for name in parent.names if name not in get(lab, path[:-1]))
        cases.append(Case(f"{where}: an empty one beside it", with_value(lab, path[:-1] + (unused,), {}),
                          not node.at_least_one))
    first = next(iter(get(lab, path)))
    if node.names:
        cases.append(Case(f"{where}: a name not among its names", changed(
            lab, path, lambda n: n.__setitem__("zz-none", n.pop(first))), False,
            known=("unknown board kind; known: ", set(node.names), set(node.names))))
    if node.name_pattern:
        cases.append(Case(f"{where}: a name not matching its pattern", changed(
            lab, path, lambda n: n.__setitem__("Zz-none", n.pop(first))), False))
    return cases


def cases_of(lab: dict) -> tuple[list[Case], set[int]]:
    """Every case of this lab, and the ids of the table nodes it reached."""
    cases, reached = [], set()
    parents: dict[tuple, Variants] = {}
    at: dict[tuple, object] = {}  # the table node at each path (a Variants' Keys after it)
    for node, path in walk(LAB, lab):
        reached.add(id(node))
        at[path] = node
        if isinstance(node, Variants):
            parents[path] = node
            here = get(lab, path)
            others = set().union(*(v.names for v in node.every)) - set(node.chosen(here).names)
            cases += [Case(f"{'.'.join(map(str, path))}: {key} of another variant", with_value(lab, path + (key,), "x"),
                           False) for key in sorted(others)]
        elif isinstance(node, Keys):
            cases += keys_cases(node, lab, path, parents.get(path))
        elif isinstance(node, Value):
            cases += value_cases(node, lab, path)
        elif isinstance(node, Named):
            cases += named_cases(node, lab, path, at.get(path[:-1]))
        elif isinstance(node, Either):
            cases.append(Case(f"{'.'.join(map(str, path))}: a list, neither form", with_value(lab, path, ["x"]), False))
        elif isinstance(node, ListOf):
            cases.append(Case(f"{'.'.join(map(str, path))}: empty", with_value(lab, path, []), False))
    return cases, reached


def table_nodes(node) -> list:
    """Every node of the table, each once."""
    children = {Keys: lambda n: list({**n.required, **n.optional}.values()), Named: lambda n: [n.value],
                ListOf: lambda n: [n.item], Variants: lambda n: list(n.every), Either: lambda n: [n.text, n.keys],
                Value: lambda n: []}
    out = [node]
    for child in children[type(node)](node):
        out += table_nodes(child)
    return out


def loaded(tmp_path: Path, lab: dict) -> str | None:
    """None if the loader takes the lab, else its one-line error."""
    path = tmp_path / "labs.yaml"
    path.write_text(yaml.safe_dump(lab, sort_keys=False))
    try:
        load_lab(path)
    except BadInput as error:
        return str(error)
    return None


def listed_after(message: str, prefix: str) -> set[str]:
    """The comma-separated names a loader message lists after `prefix`."""
    found = re.search(re.escape(prefix) + r"(.*)$", message)
    assert found, message
    return {name.strip() for name in found.group(1).split(",")}


def test_the_schema_and_the_loader_agree_on_every_key(tmp_path, ports, monkeypatch):
    # Without labgrid.coordinator the loader takes labgrid's own LG_COORDINATOR, which a schema cannot see.
    monkeypatch.setenv("LG_COORDINATOR", COORDINATOR)
    labs = good_labs(tmp_path, ports)
    disagreements, reached = [], set()
    for name, lab in labs.items():
        assert loaded(tmp_path, lab) is None, name
        VALIDATOR.validate(lab)
        cases, seen = cases_of(lab)
        reached |= seen
        for case in cases:
            refused = loaded(tmp_path, case.lab)
            schema_errors = [e.message for e in VALIDATOR.iter_errors(case.lab)]
            if (refused is None) != case.accepted or (not schema_errors) != case.accepted:
                disagreements.append(f"{name}: {case.what}: expected {'accepted' if case.accepted else 'refused'}; "
                                     f"loader: {refused or 'accepted'}; schema: {schema_errors or 'accepted'}")
            elif case.known is not None:
                prefix, least, most = case.known
                if not least <= listed_after(refused, prefix) <= most:
                    disagreements.append(f"{name}: {case.what}: the loader knows {refused.split(prefix)[1]}, "
                                         f"the table {', '.join(sorted(least))}")
    assert not disagreements, "\n".join(disagreements)
    usb_serials = {id(node.optional["usb_serial"]) for node in table_nodes(LAB)
                   if isinstance(node, Keys) and "usb_serial" in node.optional}
    unreached = [node.about for node in table_nodes(LAB) if id(node) not in reached | usb_serials]
    assert not unreached, f"no good lab holds these parts of the table: {unreached}"


def test_the_board_kinds_the_loader_knows_are_the_schemas(tmp_path):
    """The loader lists its kinds when one is unknown; emulated boards only of kinds with a twin, as it refuses."""
    lab = lab_data(tmp_path)
    lab["boards"][0]["kind"] = "zz-none"
    refused = loaded(tmp_path, lab)
    assert listed_after(refused, "known: ") == set(BOARD_KINDS) == set(BOARD_VARIANTS[False].required["kind"].choices)
    for kind, spec in BOARD_KINDS.items():
        lab["boards"][0]["kind"] = kind
        if spec.qemu is None:
            assert "has no emulated twin" in loaded(tmp_path, lab)
            assert not VALIDATOR.is_valid(lab), kind


def test_the_unit_kinds_the_loader_knows_are_the_schemas(tmp_path, ports):
    lab = good_labs(tmp_path, ports)["physical, serial unit"]
    lab["boards"][0]["monitor"]["kind"] = "zz-none"
    refused = loaded(tmp_path, lab)
    assert listed_after(refused, "known: ") == set(BOARD_VARIANTS[False].optional["monitor"].variants)
    assert not VALIDATOR.is_valid(lab)


@pytest.mark.parametrize("mode", ["source", "ampere"])
def test_each_ppk2_mode_is_taken_by_both(tmp_path, ports, mode):
    lab = good_labs(tmp_path, ports)["physical, ppk2 unit"]
    lab["boards"][0]["monitor"]["mode"] = mode
    assert loaded(tmp_path, lab) is None
    VALIDATOR.validate(lab)


@pytest.mark.parametrize("path", [REPO_ROOT / "labs.yaml", *sorted((REPO_ROOT / "labs").glob("*.yaml"))],
                         ids=lambda p: str(p.relative_to(REPO_ROOT)))
def test_the_committed_labs_are_valid_by_the_schema(path):
    VALIDATOR.validate(yaml.safe_load(path.read_text()))


@pytest.mark.parametrize("where", ["serial", "monitor"])
def test_a_usb_serial_is_text_to_both(tmp_path, ports, where):
    """No lab here can hold a usb_serial the loader takes (no such USB device): wrong types are refused by both."""
    lab = good_labs(tmp_path, ports)["physical, serial unit"]
    for value, accepted_by_schema in ((5, False), (True, False), ("", False), ("066DFF495051717867", True)):
        lab["boards"][0][where] = {**{k: v for k, v in lab["boards"][0][where].items() if k != "port"},
                                   "usb_serial": value}
        assert loaded(tmp_path, lab) is not None
        assert VALIDATOR.is_valid(lab) == accepted_by_schema, value


def test_the_committed_schema_is_the_tables(capsys):
    """docs/labs.schema.json is what `hil lab schema` prints now; regenerate it with
    `hil lab schema > docs/labs.schema.json`."""
    assert main(["lab", "schema"]) == 0
    printed = capsys.readouterr().out
    assert json.loads(printed) == json_schema()
    assert SCHEMA_FILE.read_text() == printed, "stale: `hil lab schema > docs/labs.schema.json`"
    jsonschema.Draft7Validator.check_schema(json_schema())


# The loader's malformed labs (tests/unit/test_lab.py CASES) that a schema can see: shape, not what the lab points to
# (files, hashes, ports) nor what spans fields (unique slots, probes, an image per board).
SHAPE_CASES = ["unknown top-level key", "unknown board key", "unknown run key", "missing boards",
               "boards not a list", "retries is text", "retries is a bool", "quarantine_after 0", "threshold above 1",
               "negative timeout", "unknown board kind", "bad slot name", "physical board without serial",
               "emulated board with a probe", "serial with port and usb_serial"]


def test_the_shape_cases_are_the_loaders():
    assert set(SHAPE_CASES) <= {name for name, _edit, _fragment in CASES}


@pytest.mark.parametrize("name, edit", [(name, edit) for name, edit, _ in CASES if name in SHAPE_CASES],
                         ids=lambda value: value if isinstance(value, str) else "")
def test_the_loaders_wrong_labs_are_wrong_by_the_schema(tmp_path, ports, name, edit):
    path = make_case(name, edit, tmp_path, ports[0])
    with pytest.raises(BadInput):
        load_lab(path)
    assert not VALIDATOR.is_valid(yaml.safe_load(Path(path).read_text())), name


@pytest.mark.parametrize("board, labgrid", [(board, labgrid) for board, labgrid, _, _ in BAD_PLACES[1:]])
def test_the_loaders_wrong_places_are_wrong_by_the_schema(tmp_path, monkeypatch, board, labgrid):
    """Every bad place the loader refuses (tests/unit/test_lab_places.py) but the one only LG_COORDINATOR decides:
    the place names, tag keys and values and the coordinator's HOST:PORT the loader's patterns refuse among them."""
    monkeypatch.setenv("LG_COORDINATOR", COORDINATOR)
    path = lab_with(tmp_path, board, labgrid=labgrid)
    with pytest.raises(BadInput):
        load_lab(path)
    assert not VALIDATOR.is_valid(yaml.safe_load(Path(path).read_text()))
