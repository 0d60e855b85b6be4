"""Which rounding and saturation branches of firmware/src/kernels.c the conformance suite reaches, per kernel, on
the host's portable kernels and on the Cortex-M4's DSP kernels, in both rounding modes (tests/support/
kernel_coverage.py: gcov -b of -O0 builds, SSAT watched on unicorn). Prints the Markdown table of
docs/conformance.md and every branch outcome left, with why no vector can take it.

    .venv/bin/python bench/conformance_coverage.py
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from hil.firmware.conformance import Kernel, read_suite  # noqa: E402
from hil.model.reference import Reference  # noqa: E402
from tests.support.kernel_coverage import FALLBACKS, Build, measure  # noqa: E402

# The TFLM rounding mode changes the FC's rescale only (kernels.c fc_rescale_t).
MEASURED = [(Reference.LITERT, tuple(Kernel)), (Reference.TFLM, (Kernel.FULLY_CONNECTED,))]


def main() -> None:
    suite = read_suite()
    rows, notes = [], []
    for rounding, kernels in MEASURED:
        for build in Build:
            with tempfile.TemporaryDirectory() as directory:
                results = measure(build, rounding, Path(directory), suite, kernels)
            for c in results:
                ssat = f"{c.saturations.taken} of {c.saturations.exist}" if c.saturations.exist else "none"
                rows.append(f"| {c.kernel.name} | {build.value} | {rounding.value} | {c.vectors} | {len(c.functions)} | "
                            f"{c.branches.taken} of {c.branches.exist} | {ssat} | "
                            f"{len(c.missed) - len(c.unexplained)} of {len(c.missed)} |")
                notes += [f"- {c.kernel.name}, {build.value}, {rounding.value}: `{m.function}` line {m.line} "
                          f"`{m.source}`: {c.reason(m) or 'NOT REACHED: add a vector'}" for m in c.missed]
    print(f"suite sha256 {suite.sha256}, {len(suite.vectors)} vectors; gcc {version('gcc')}, "
          f"arm-none-eabi-gcc {version('arm-none-eabi-gcc')}\n")
    print("| kernel | build | rounding | vectors | functions | branch outcomes taken | SSAT sides taken | "
          "lines with an outcome not taken, of them unreachable |")
    print("|---|---|---|---|---|---|---|---|")
    print("\n".join(rows))
    print("\nNot counted on the Cortex-M4 (no vector reaches them):\n")
    print("\n".join(f"- `{function}`: {why}" for function, why in FALLBACKS.items()))
    print("\nLines with a branch outcome not taken:\n")
    print("\n".join(notes))


def version(compiler: str) -> str:
    return subprocess.run([compiler, "-dumpfullversion"], capture_output=True, text=True).stdout.strip()


if __name__ == "__main__":
    missing = [tool for tool in ("gcov", "arm-none-eabi-gcov") if shutil.which(tool) is None]
    if missing:
        raise SystemExit(f"{', '.join(missing)} not found: they come with gcc and gcc-arm-none-eabi (bash setup.sh)")
    main()
