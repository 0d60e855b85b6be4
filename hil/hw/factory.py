"""The one place where a board's kind is decided: everything after `make_board` is one code path."""

from __future__ import annotations

import hashlib
from pathlib import Path

from hil.firmware.build import FirmwareManifest
from hil.hw.board import Board
from hil.hw.emulated.board import EmulatedBoard
from hil.hw.physical.board import PhysicalBoard
from hil.lab.load import BoardSpec, RunSettings


def lock_name(spec: BoardSpec, lab_file: Path) -> str:
    """What a board's lock is named after: the thing two runs must not share. A physical board is
    its probe. An emulated board exists once per lab file: two runs of one labs.yaml contend for it,
    two checkouts' labs do not (each would start its own QEMU anyway)."""
    if not spec.emulated:
        return f"probe-{spec.physical.probe}"
    return f"emulated-{hashlib.sha256(str(Path(lab_file).resolve()).encode()).hexdigest()[:12]}-{spec.slot}"


def make_board(spec: BoardSpec, manifest: FirmwareManifest, run: RunSettings) -> Board:
    if spec.emulated:
        return EmulatedBoard(spec, manifest, run)
    return PhysicalBoard(spec, manifest, run)
