"""A device profile as a table (`hil firmware profile`, `hil run --profile`, docs/firmware.md)."""

from __future__ import annotations

from hil.model.layers import STAGES
from hil.report.table import Table
from hil.run.profile import DeviceProfile, ProfileFile


def _cycles(cycles: float) -> str:
    return f"{cycles:,.0f}" if cycles == int(cycles) else f"{cycles:,.1f}"


def _share(cycles: float, total: float) -> str:
    return f"{100 * cycles / total:.1f} %" if total else "–"


def profile_table(profile: DeviceProfile) -> Table:
    """One row per layer, then each stage's total and both together."""
    total = profile.total_cycles
    rows = []
    for layer in profile.layers:
        per_mac = layer.cycles_per_mac
        rows.append([str(layer.index), layer.stage, layer.op, "×".join(map(str, layer.output_shape)),
                     f"{layer.macs:,}", _cycles(layer.cycles), f"{profile.microseconds(layer.cycles):,.1f}",
                     "–" if per_mac is None else f"{per_mac:.2f}", _share(layer.cycles, total)])
    sums = [(stage, profile.stage_cycles(stage), sum(la.macs for la in profile.layers if la.stage == stage))
            for stage in STAGES] + [("both", total, sum(la.macs for la in profile.layers))]
    for name, cycles, macs in sums:
        rows.append(["", name, "total", "", f"{macs:,}", _cycles(cycles), f"{profile.microseconds(cycles):,.1f}",
                     f"{cycles / macs:.2f}" if macs else "–", _share(cycles, total)])
    runs = "one run" if profile.count == 1 else f"the mean of {profile.count} runs"
    return Table.of(
        f"Per-layer profile: {profile.board} / {profile.model} ({profile.slot})",
        ["#", "stage", "op", "output shape", "MACs", "cycles", "µs", "cycles/MAC", "share"], rows,
        caption=(f"{runs} of {profile.testset}[{profile.sample_index}], both stages, no exit decision; "
                 f"cycles: ticks of the {profile.clock_hz / 1e6:g} MHz cycle counter; "
                 f"image {profile.image_sha256[:12]}…, model {profile.model_sha256[:12]}…"),
        sections=frozenset({len(profile.layers)}))


def stage_split_table(profiles: ProfileFile) -> Table:
    """Per board, what each stage of a full-path inference costs: an early exit saves stage 2's share."""
    rows = []
    for p in profiles.profiles:
        stage1, stage2 = (p.stage_cycles(stage) for stage in STAGES)
        rows.append([p.slot, p.model, _cycles(stage1), f"{p.microseconds(stage1):,.1f}", _cycles(stage2),
                     f"{p.microseconds(stage2):,.1f}", _share(stage2, stage1 + stage2)])
    rows += [[f.slot, "", "–", "–", "–", "–", "–"] for f in profiles.failures]
    return Table.of("Stage 1 and stage 2 per board (a profile of the first clean sample, both stages)",
                    ["board", "model", "stage 1 cycles", "stage 1 µs", "stage 2 cycles", "stage 2 µs",
                     "stage 2 share"], rows,
                    caption="An inference that exits early runs stage 1 only; the sweep's exit % is the share of "
                            "samples that do at each τ. Per-layer tables: profile.json, `hil firmware profile`.")
