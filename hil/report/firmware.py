"""Firmware verification results as tables (`hil firmware verify`, docs/firmware.md)."""

from __future__ import annotations

import numpy as np

from hil.firmware.build import FirmwareManifest
from hil.hw.kinds import smallest_kind
from hil.report.table import Table
from hil.run.verify import ImageVerification


def _cycles(values: list[int]) -> str:
    if not values:
        return "–"
    low, high = min(values), max(values)
    return f"{low:,}" if low == high else f"{low:,}–{high:,} (mean {np.mean(values):,.0f})"


def verification_tables(results: list[ImageVerification]) -> list[Table]:
    """The exactness and cycle tables, a pair per (rounding mode, reference) of the images verified."""
    groups: dict[tuple[str, str], list[ImageVerification]] = {}
    for image in results:
        groups.setdefault((image.rounding, image.reference), []).append(image)
    return [table for (rounding, reference), images in groups.items()
            for table in _group_tables(images, f"{rounding} rounding", f"the {reference} host reference")]


def _group_tables(results: list[ImageVerification], rounding: str, reference: str) -> list[Table]:
    exactness, cycles = [], []
    for image in results:
        for s in image.sets:
            mismatched = sum(s.decision_mismatches.values())
            exactness.append([
                image.board, image.model, s.testset, str(s.samples), "yes" if image.identity_ok else "NO",
                str(s.differing_bytes), f"{mismatched} of {s.samples * len(s.decision_mismatches)}",
            ])
            cycles.append([image.board, image.model, s.testset, _cycles(s.exit_cycles), _cycles(s.full_cycles)])
    return [
        Table.of(f"Device ({rounding}) against {reference} (decisions at every threshold 0.5, 0.55, …, 0.95, 1.0)",
                  ["board", "model", "test set", "samples", "identity", "differing output bytes",
                   "decision mismatches"], exactness),
        Table.of(f"Cycles per inference ({rounding}; ticks of each board's cycle counter in QEMU's icount time: "
                 "its clock is its kind's, docs/firmware.md Boards and clocks)",
                  ["board", "model", "test set", "early exit", "full path (τ = 1)"], cycles),
    ]


def size_table(manifests: list[FirmwareManifest]) -> Table:
    """Flash and RAM per image, as arm-none-eabi-size counted them at build time."""
    small = smallest_kind()
    rows = [[m.board, m.model, str(m.rounding), f"{m.flash_bytes:,}",
             f"{100 * m.flash_bytes / small.flash.size:.0f} %", f"{m.ram_bytes:,}",
             f"{100 * m.ram_bytes / small.ram.size:.0f} %", f"{m.arena_bytes:,}"] for m in manifests]
    flash_kib, ram_kib = small.flash.size // 1024, small.ram.size // 1024
    return Table.of(f"Image sizes (arm-none-eabi-size; share of the {small.mcu}'s {flash_kib} KiB flash and "
                    f"{ram_kib} KiB SRAM)", ["board", "model", "rounding", "flash B", f"of {flash_kib} KiB",
                                             "RAM B (static)", f"of {ram_kib} KiB", "arena B"], rows)
