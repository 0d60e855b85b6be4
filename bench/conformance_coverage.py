"""Which branches of firmware/src/kernels.c the conformance suite reaches, measured with gcov.

The firmware's kernels.c and conformance.c are compiled by the host gcc with --coverage (-O0, no inlining, so that
every branch of the C source is one of the object's), once per kernel, and the suite's vectors of that kernel are
run through conformance_run() via ctypes in a process of their own; gcov -b then counts, in the functions that
kernel runs (the kernel and the rescaling and clamping helpers it calls), the branch outcomes that exist and those
the vectors took. Every output is also checked against the vector's expected one, so the run is the suite's.
Prints the Markdown table of docs/conformance.md and the branches left unreached.

    .venv/bin/python bench/conformance_coverage.py
"""

from __future__ import annotations

import ctypes
import re
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from hil.firmware.conformance import Kernel, read_suite  # noqa: E402

SRC = REPO / "firmware" / "src"
FLAGS = ["-std=c11", "-Wall", "-Wextra", "-Werror", "-O0", "-fno-inline", "--coverage", "-fPIC", "-shared"]
HELPERS_CONV = ["requantize", "k_multiply_by_quantized_multiplier", "saturating_rounding_doubling_high_mul",
                "rounding_divide_by_pot", "clamp", "inside"]
FUNCTIONS = {  # the functions of kernels.c each kernel runs
    Kernel.CONV_2D: ["k_conv2d", *HELPERS_CONV],
    Kernel.DEPTHWISE_CONV_2D: ["k_depthwise_conv2d", *HELPERS_CONV],
    Kernel.FULLY_CONNECTED: ["k_fully_connected", "k_fc_rescale", "bit_length_128"],
    Kernel.AVERAGE_POOL_2D: ["k_avg_pool2d", "clamp", "inside"],
    Kernel.RESHAPE: ["k_copy"],
}
# Branches no vector can take, and why (the lines as they stand in kernels.c).
UNREACHABLE = {
    "if (a == INT32_MIN && b == INT32_MIN) {": "multipliers are >= 0 (QuantizeMultiplier), never INT32_MIN",
    "if (input == output) {": "a CONFORMANCE reply is never the request's buffer",
    "if (count > 0) {": "TFLite padding never leaves a window empty",
    "if (exponent >= 0) {": "a value of exponent >= 0 is at least 2^52: as below, no reference exists",
    "rounded = too_big ? (uint64_t)1 << 32 : significand << exponent;": "as above",
    "const bool too_big = exponent >= 32 || (significand >> (32 - exponent)) != 0;":
        "|acc * scale| >= 2^31: LiteRT's double-to-int32 cast is undefined there, so no reference exists",
    "return rounded >= (uint64_t)1 << 31 ? INT32_MIN : -(int32_t)rounded;": "as above, the negative side",
    "return rounded > (uint64_t)INT32_MAX ? INT32_MAX : (int32_t)rounded;": "as above, the positive side",
}


@dataclass
class Branches:
    exist: int = 0
    taken: int = 0


def run_kernel(kernel: Kernel, work: Path) -> None:
    """Builds the instrumented library in `work` and runs that kernel's vectors in a child process (the counters
    are written when it exits)."""
    library = work / "libconformance.so"
    subprocess.run(["gcc", *FLAGS, f"-I{SRC}", "-o", str(library), str(SRC / "kernels.c"), str(SRC / "conformance.c"),
                    str(SRC / "protocol.c")], check=True, cwd=work)
    subprocess.run([sys.executable, __file__, "--child", kernel.name, str(library)], check=True, cwd=work)


def child(kernel_name: str, library: str) -> None:
    lib = ctypes.CDLL(library)
    lib.conformance_run.argtypes = [ctypes.c_char_p, ctypes.c_size_t, ctypes.POINTER(ctypes.c_uint8),
                                    ctypes.POINTER(ctypes.c_size_t)]
    for vector in read_suite().by_kernel()[Kernel[kernel_name]]:
        out, n = (ctypes.c_uint8 * 256)(), ctypes.c_size_t()
        code = lib.conformance_run(vector.payload, len(vector.payload), out, ctypes.byref(n))
        if code != 0 or bytes(out[1:n.value]) != vector.expected:
            raise SystemExit(f"{vector.name}: the host build does not give the expected output")


def count(kernel: Kernel, work: Path) -> tuple[Branches, list[str]]:
    """Branch outcomes in the kernel's functions: how many exist, how many were taken, and the lines not taken."""
    gcda = next(work.glob("*kernels.gcda"))
    subprocess.run(["gcov", "-b", "-o", str(gcda.parent), str(gcda)], check=True, cwd=work, capture_output=True)
    lines = (work / "kernels.c.gcov").read_text().splitlines()
    totals, missed, function, source = Branches(), [], None, ""
    for line in lines:
        started = re.match(r"function (\w+) called", line)
        if started:
            function = started.group(1)
            continue
        code = re.match(r"\s*[-#=\d*]+:\s*(\d+):(.*)", line)
        if code:
            source = code.group(2).strip()
            continue
        outcome = re.match(r"branch\s+\d+ (taken (\d+)|never executed)", line)
        if outcome and function in FUNCTIONS[kernel]:
            totals.exist += 1
            if outcome.group(2) is not None and int(outcome.group(2)) > 0:
                totals.taken += 1
            elif source not in missed:
                missed.append(source)
    return totals, missed


def main() -> None:
    suite = read_suite()
    rows, notes = [], []
    for kernel in Kernel:
        with tempfile.TemporaryDirectory() as directory:
            work = Path(directory)
            run_kernel(kernel, work)
            branches, missed = count(kernel, work)
        vectors = len(suite.by_kernel()[kernel])
        explained = [line for line in missed if line in UNREACHABLE]
        rows.append(f"| {kernel.name} | {vectors} | {branches.taken} of {branches.exist} | "
                    f"{branches.exist - branches.taken} | {len(explained)} of {len(missed)} |")
        notes += [f"- {kernel.name}: `{line}`: {UNREACHABLE.get(line, 'not reached: add a vector')}" for line in missed]
    print(f"suite sha256 {suite.sha256}, {len(suite.vectors)} vectors, gcc {gcc_version()}\n")
    print("| kernel | vectors | branch outcomes taken | not taken | lines not fully taken, of them unreachable |")
    print("|---|---|---|---|---|")
    print("\n".join(rows))
    print("\nLines with a branch outcome not taken:\n")
    print("\n".join(notes))


def gcc_version() -> str:
    return subprocess.run(["gcc", "-dumpfullversion"], capture_output=True, text=True).stdout.strip()


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "--child":
        child(sys.argv[2], sys.argv[3])
    elif shutil.which("gcov") is None:
        raise SystemExit("gcov not found: it comes with gcc")
    else:
        main()
