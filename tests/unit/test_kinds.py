"""One board-kind table (hil/hw/kinds.py) and one model registry (hil/model/registry.py): what reads
them takes its lists from them, and what cannot (the C board support, the docs) is held equal here."""

import ast
import dataclasses
import json
import os
import re
import shutil
from itertools import takewhile

import pytest
import yaml

from hil import REPO_ROOT
from hil.cli import build_parser
from hil.firmware import build as firmware
from hil.hw.kinds import BOARD_KINDS, smallest_kind
from hil.lab.load import LabError, load_lab
from hil.model import datasets, testsets
from hil.model.registry import MODEL_NAMES, MODELS

DOCS = REPO_ROOT / "docs"
KIND = "mps2-an386"


def test_the_makefile_takes_boards_and_models_from_the_tables():
    committed = (firmware.FIRMWARE_DIR / firmware.MAKE_TABLES).read_text()
    assert committed == firmware.make_tables(), "firmware/tables.mk is stale: run `hil firmware build`"
    for kind in BOARD_KINDS.values():
        assert f"cpu_{kind.name} := {kind.cpu}\n" in committed and f"hal_{kind.name} := {kind.hal}\n" in committed
    assert f"BOARDS := {' '.join(BOARD_KINDS)}\n" in committed and f"MODELS := {' '.join(MODEL_NAMES)}\n" in committed
    makefile = (firmware.FIRMWARE_DIR / "Makefile").read_text()
    assert "include tables.mk" in makefile
    assert not re.search(r"^(BOARDS|MODELS|cpu_\S+|hal_\S+)\s*:?=", makefile, re.M), "the Makefile keeps a list of its own"
    assert "boards/$(hal_$(1))/*.c" in makefile, "the Makefile compiles each kind's HAL family folder"
    assert not any(name in makefile for name in [*BOARD_KINDS, *MODEL_NAMES])


def test_build_writes_the_makefile_tables_into_the_tree_it_builds(tmp_path, monkeypatch):
    monkeypatch.setitem(BOARD_KINDS, "mps2-extra", dataclasses.replace(BOARD_KINDS[KIND], name="mps2-extra"))
    monkeypatch.setattr(firmware, "BOARDS", tuple(BOARD_KINDS))
    firmware.write_make_tables(tmp_path)
    text = (tmp_path / firmware.MAKE_TABLES).read_text()
    assert f"BOARDS := {' '.join(BOARD_KINDS)}\n" in text and text.count("mps2-extra") == 3
    assert "cpu_mps2-extra := cortex-m4\n" in text and "hal_mps2-extra := cmsdk\n" in text


def _memory_ld(kind: str) -> dict[str, tuple[int, int]]:
    text = (firmware.FIRMWARE_DIR / BOARD_KINDS[kind].firmware_dir / "memory.ld").read_text()
    regions = {}
    for name, origin, length, unit in re.findall(r"(\w+)\s*\([rwx]+\)\s*:\s*ORIGIN\s*=\s*(0x[0-9A-Fa-f]+),"
                                                 r"\s*LENGTH\s*=\s*(\d+)([KM]?)", text):
        regions[name] = (int(origin, 16), int(length) * {"": 1, "K": 1024, "M": 1024 * 1024}[unit])
    return regions


@pytest.mark.parametrize("kind", list(BOARD_KINDS))
def test_each_kinds_board_support_is_its_row(kind):
    row = BOARD_KINDS[kind]
    assert _memory_ld(kind) == {"FLASH": (row.flash.origin, row.flash.size), "RAM": (row.ram.origin, row.ram.size)}
    header = (firmware.FIRMWARE_DIR / row.firmware_dir / "board.h").read_text()
    assert f'#define BOARD_KIND "{kind}"' in header
    assert f"#define BOARD_CYCLE_HZ {row.timer_hz}u" in header


def test_every_board_folder_is_a_kind_of_the_table_or_a_hal_family_it_names():
    boards = firmware.FIRMWARE_DIR / "boards"
    hals = {kind.hal for kind in BOARD_KINDS.values()}
    folders = {p.name for p in boards.iterdir() if p.is_dir()}
    assert folders == set(BOARD_KINDS) | hals | {"cortex-m"}
    assert not set(BOARD_KINDS) & hals
    for hal in hals:
        assert list((boards / hal).glob("*.c")), f"firmware/boards/{hal}/ has no C source"
    # Every image hashes itself from its flash origin, wherever that is (0 or 0x0800_0000).
    sections = (boards / "cortex-m" / "sections.ld").read_text()
    assert "__image_start = ORIGIN(FLASH);" in sections
    assert "sha256(__image_start, (size_t)(__image_end - __image_start)" in (
        firmware.FIRMWARE_DIR / "src" / "main.c").read_text()


@pytest.mark.parametrize("kind", list(BOARD_KINDS))
def test_an_image_is_built_from_its_kinds_hal_family_and_the_shared_core(kind):
    files = {str(p.relative_to(firmware.FIRMWARE_DIR)) for p in firmware.source_files(kind, "qute-digits")}
    row = BOARD_KINDS[kind]
    assert f"{row.hal_dir}/" in {f[:len(row.hal_dir) + 1] for f in files}
    assert {"boards/cortex-m/startup.c", "boards/cortex-m/sections.ld", f"{row.firmware_dir}/board.h"} <= files
    others = {k.hal_dir for k in BOARD_KINDS.values()} - {row.hal_dir}
    assert not any(f.startswith(other + "/") for f in files for other in others)


def test_a_kind_without_a_twin_is_skipped_by_verify_and_refused_as_an_emulated_board(tmp_path):
    from hil.run.verify import no_twin_reason

    (kind,) = [k.name for k in BOARD_KINDS.values() if k.qemu is None]
    assert f"{kind}: skipped: board kind {kind} has no emulated twin" in no_twin_reason(kind)
    assert all(no_twin_reason(k.name) is None for k in BOARD_KINDS.values() if k.qemu is not None)
    path = lab(tmp_path, kind)
    with pytest.raises(LabError, match=rf"boards\[0\]\.emulated: board kind {kind} has no emulated twin; give"):
        load_lab(path)


def _size(size: int) -> str:
    return f"{size // (1 << 20)} MiB" if size % (1 << 20) == 0 else f"{size // 1024} KiB"


def kinds_table_rows() -> list[str]:
    """The rows of docs/firmware.md's table of board kinds, rendered from BOARD_KINDS."""
    rows = []
    for kind in BOARD_KINDS.values():
        twin = "–" if kind.qemu is None else (
            f"{kind.qemu.machine}, icount shift {kind.qemu.icount_shift} ({2 ** kind.qemu.icount_shift} ns per "
            f"instruction, {1000 / 2 ** kind.qemu.icount_shift:g} M per second)")
        rows.append(f"| `{kind.name}` | {kind.core} | {kind.mcu} ({kind.clock_hz / 1e6:g} MHz) | "
                    f"{_size(kind.flash.size)} at {kind.flash.origin:#010x} | {_size(kind.ram.size)} at "
                    f"{kind.ram.origin:#010x} | {kind.timer_hz / 1e6:g} MHz | `{kind.pyocd_target}` | `{kind.hal}` | "
                    f"{twin} |")
    return rows


def test_the_docs_list_the_kinds_of_the_table():
    text = (DOCS / "firmware.md").read_text()
    section = text.split("## Boards and clocks", 1)[1].splitlines()
    header = next(i for i, line in enumerate(section) if line.startswith("| kind |"))
    body = list(takewhile(lambda line: line.startswith("|"), section[header + 2:]))
    assert body == kinds_table_rows(), "docs/firmware.md's table of board kinds differs from hil/hw/kinds.py"
    labs = (DOCS / "labs.md").read_text().splitlines()
    (labs_row,) = [line for line in labs if line.startswith("| `boards[i].kind`")]
    assert labs_row.split(" | ")[1] == ", ".join(f"`{name}`" for name in BOARD_KINDS)


def test_the_reports_small_mcu_is_the_smallest_kind():
    small = smallest_kind()
    assert (small.mcu, small.flash.size, small.ram.size) == ("STM32L432KC", 256 * 1024, 64 * 1024)


# --- the lab takes its kinds from the table ---

def lab(tmp_path, kind: str = KIND, manifest=None, board: dict | None = None) -> str:
    data = {
        "lab": "kinds", "results": str(tmp_path / "results"),
        "models": {"qute-digits": {"path": str(REPO_ROOT / "fixtures/models/qute-digits"),
                                   "testsets": [str(REPO_ROOT / "fixtures/testsets/qute-digits/clean.npz")]}},
        "firmware": {kind: {"qute-digits": str(manifest or firmware.PREBUILT_DIR / kind / "qute-digits")}},
        "boards": [board or {"slot": "a", "kind": kind, "model": "qute-digits", "emulated": True}],
    }
    path = tmp_path / "labs.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return str(path)


def manifest_copy(tmp_path, **changes) -> str:
    copy = tmp_path / "image"
    shutil.copytree(firmware.PREBUILT_DIR / KIND / "qute-digits", copy)
    data = json.loads((copy / "manifest.json").read_text())
    (copy / "manifest.json").write_text(json.dumps({**data, **changes}))
    return str(copy)


def test_a_kind_is_known_to_the_lab_once_it_is_a_row_of_the_table(tmp_path, monkeypatch):
    path = lab(tmp_path, "mps2-twin", manifest_copy(tmp_path, board="mps2-twin"))
    with pytest.raises(LabError, match=r"unknown board kind.*; known: " + ", ".join(BOARD_KINDS) + "$"):
        load_lab(path)
    monkeypatch.setitem(BOARD_KINDS, "mps2-twin", dataclasses.replace(BOARD_KINDS[KIND], name="mps2-twin"))
    loaded = load_lab(path)
    assert [b.kind for b in loaded.boards] == ["mps2-twin"]


def test_an_image_linked_elsewhere_than_its_kind_loads_is_refused(tmp_path):
    path = lab(tmp_path, manifest=manifest_copy(tmp_path, load_address=0x0800_0000))
    with pytest.raises(LabError, match=r"firmware\.mps2-an386\.qute-digits: the image is linked at 0x08000000, but "
                                       r"mps2-an386 loads images at 0x00000000; rebuild"):
        load_lab(path)


def test_a_manifest_without_a_load_address_is_refused_with_the_fix(tmp_path):
    copy = manifest_copy(tmp_path)
    data = json.loads((tmp_path / "image" / "manifest.json").read_text())
    del data["load_address"]
    (tmp_path / "image" / "manifest.json").write_text(json.dumps(data))
    with pytest.raises(LabError, match="not a valid firmware manifest .*load_address.*; rebuild with `hil firmware"):
        load_lab(lab(tmp_path, manifest=copy))


def test_a_physical_boards_pyocd_target_defaults_to_its_kinds(tmp_path, monkeypatch):
    controller, device = os.openpty()
    try:
        board = {"slot": "bench", "kind": KIND, "model": "qute-digits", "probe": {"unique_id": "P1"},
                 "serial": {"port": os.ttyname(device)}}
        monkeypatch.setitem(BOARD_KINDS, KIND, dataclasses.replace(BOARD_KINDS[KIND], pyocd_target="stm32l432kc"))
        (spec,) = load_lab(lab(tmp_path, board=board)).boards
        assert spec.physical.target == "stm32l432kc"
        board["probe"]["target"] = "cortex_m"
        (spec,) = load_lab(lab(tmp_path, board=board)).boards
        assert spec.physical.target == "cortex_m"
    finally:
        os.close(controller)
        os.close(device)


# --- one model registry ---

def test_every_list_of_models_is_the_registrys(capsys):
    assert firmware.MODELS == MODEL_NAMES
    assert sorted(MODEL_NAMES) == sorted(p.name for p in (REPO_ROOT / "fixtures" / "models").iterdir() if p.is_dir())
    with pytest.raises(SystemExit):
        build_parser().parse_args(["model", "train", "qute-other"])
    assert "(choose from " + ", ".join(f"'{name}'" for name in MODEL_NAMES) + ")" in capsys.readouterr().err
    for entry in MODELS.values():
        assert entry.dataset in datasets.SOURCES and entry.dataset in testsets.GENERATORS
    # training/network.py needs TensorFlow (the train extra): its table is read from the source.
    tree = ast.parse((REPO_ROOT / "hil" / "training" / "network.py").read_text())
    (table,) = [node.value for node in tree.body if isinstance(node, ast.Assign)
                and any(isinstance(t, ast.Name) and t.id == "ARCHITECTURES" for t in node.targets)]
    assert {entry.architecture for entry in MODELS.values()} <= {key.value for key in table.keys}


def test_an_unregistered_model_has_no_test_sets(tmp_path):
    from hil.errors import BadInput
    from hil.model.card import load_model

    card = dataclasses.replace(load_model("qute-digits"), name="qute-other")
    with pytest.raises(BadInput, match="no test-set generator for model 'qute-other'.*hil/model/registry.py"):
        testsets.generate(card, tmp_path)
