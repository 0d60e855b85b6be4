"""Instructions per inference of the firmware's kernels: the portable C ones against the DSP ones.

    python bench/firmware.py [--samples 5]

Builds the MPS2 images twice from this checkout into a temporary folder, `make -C firmware` as
`hil firmware build` does: once as they ship (the DSP kernels of firmware/src/kernels.c, chosen by
__ARM_FEATURE_DSP on the Cortex-M4 and M7) and once with EXTRA_CFLAGS=-DKERNELS_PORTABLE (the portable
kernels, as on a core without DSP and on the host). Each image runs on its QEMU twin (mps2-an386 =
Cortex-M4, mps2-an500 = Cortex-M7), one after the other in this one run, and is sent the first
`--samples` inputs of the model's clean test set at τ = 1, so every inference runs both stages.

From cycles to instructions. QEMU runs with -icount shift=N: every instruction takes exactly 2^N ns of
virtual time (docs/firmware.md, "Boards and clocks"), and the cycle counter is CMSDK timer 0 at 25 MHz
of that time, 40 ns a tick, re-phased at the start of each timed window. So a window of T ticks holds
T * 40 / 2^N instructions: 2.5 per tick on mps2-an386 (shift 4), 10 on mps2-an500 (shift 2), to within
one tick. Stage 1 is the busy pin's rise to the exit pin's rise (its EDGE records carry the counter),
stage 2 the rest of the full path (stage 2 and the ensemble decision). icount counts instructions, not
pipeline cycles: a multiply-accumulate, a load or a taken branch each count one.

The outputs of both builds are compared byte for byte on every sample (they must be equal: the DSP path
changes only the order of additions). The CMSIS-NN figures are quoted from issue 16's measurement
(instructions per stage-1 inference on the emulated Cortex-M4); CMSIS-NN cannot be vendored or built
in this repository, so it is compared by ratio: the DSP kernels' share of the portable ones' instructions
against CMSIS-NN's share of hil's in that measurement (whose units differ from these: its hil figures are
64 times our 25 MHz tick counts, for both models alike, so only ratios carry over).
Not a test: docs/firmware.md ("Kernel speed") records the table.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

import numpy as np

from hil import REPO_ROOT
from hil.hw.emulated.qemu import QemuBoard
from hil.hw.kinds import BOARD_KINDS, BoardKind
from hil.hw.link import DeviceLink
from hil.model import decisions
from hil.model.card import load_model
from hil.model.testsets import load_model_testsets

BOARDS = ("mps2-an386", "mps2-an500")
MODELS = ("qute-digits", "qute-mnist1d")
TICK_NS = 40  # CMSDK timer 0 at 25 MHz of QEMU's virtual time
# Issue 16, stage 1 on the emulated Cortex-M4: (hil, CMSIS-NN) instructions per inference, byte-identical outputs.
ISSUE_STAGE1_M4 = {"qute-digits": (43.2e6, 10.3e6), "qute-mnist1d": (13.8e6, 4.1e6)}


class Kernels(StrEnum):
    PORTABLE = "portable"
    DSP = "dsp"


EXTRA_CFLAGS = {Kernels.PORTABLE: "-DKERNELS_PORTABLE", Kernels.DSP: ""}


@dataclass(frozen=True)
class Measurement:
    stage1: float  # instructions, mean over the samples
    stage2: float
    outputs: list[tuple]  # every sample's logits, all heads


def instructions_per_tick(kind: BoardKind) -> float:
    return TICK_NS / 2 ** kind.qemu.icount_shift


def build(out: Path, kernels: Kernels) -> Path:
    images = [f"{out}/{board}/{model}/firmware.elf" for board in BOARDS for model in MODELS]
    subprocess.run(["make", "-s", "-C", str(REPO_ROOT / "firmware"), "-j2", f"BUILD={out}",
                    f"EXTRA_CFLAGS={EXTRA_CFLAGS[kernels]}", *images], check=True)
    return out


def measure(elf: Path, board: str, model: str, samples: int) -> Measurement:
    kind = BOARD_KINDS[board]
    inputs = load_model_testsets(load_model(model))[0].inputs[:samples]
    scale = instructions_per_tick(kind)
    stage1, stage2, outputs = [], [], []
    with QemuBoard(kind, elf) as qemu:
        link = DeviceLink(qemu.link, name=f"{board}/{model}")
        link.hello()
        link.set_threshold(decisions.Q15_ONE)
        for sample in inputs:
            qemu.recorder.take()
            result = link.infer(sample.tobytes())
            edges = qemu.recorder.take()
            busy_rise = next(e.ticks for e in edges if e.pin == 0 and e.level == 1)
            exit_rise = next(e.ticks for e in edges if e.pin == 1 and e.level == 1)
            stage1.append((exit_rise - busy_rise) * scale)
            stage2.append((result.cycles - (exit_rise - busy_rise)) * scale)
            outputs.append(result.logits)
    return Measurement(float(np.mean(stage1)), float(np.mean(stage2)), outputs)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=5)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="hil-bench-firmware-") as scratch:
        builds = {kernels: build(Path(scratch) / kernels.value, kernels) for kernels in Kernels}
        results = {(board, model, kernels): measure(builds[kernels] / board / model / "firmware.elf", board, model,
                                                    args.samples)
                   for board in BOARDS for model in MODELS for kernels in Kernels}
    print("| board | model | stage | portable | DSP | DSP / portable | CMSIS-NN / hil (issue 16) | DSP vs CMSIS-NN |")
    print("|---|---|---|---|---|---|---|---|")
    differing = 0
    for board in BOARDS:
        for model in MODELS:
            portable, dsp = results[board, model, Kernels.PORTABLE], results[board, model, Kernels.DSP]
            differing += sum(a != b for a, b in zip(portable.outputs, dsp.outputs))
            for stage in ("stage1", "stage2"):
                before, after = getattr(portable, stage), getattr(dsp, stage)
                ratio = after / before
                quoted = compared = "–"
                if board == "mps2-an386" and stage == "stage1":
                    hil, cmsis = ISSUE_STAGE1_M4[model]
                    quoted = f"{cmsis / hil:.3f}"
                    compared = f"{ratio / (cmsis / hil):.2f}x"
                print(f"| {board} | {model} | {stage[-1]} | {before:,.0f} | {after:,.0f} | {ratio:.3f} | {quoted} | "
                      f"{compared} |")
    print(f"\n{args.samples} samples per image at τ = 1; instructions = 25 MHz ticks x 40 ns / 2^icount_shift. "
          f"Samples whose outputs differ between the builds: {differing}")
    return 1 if differing else 0


if __name__ == "__main__":
    sys.exit(main())
