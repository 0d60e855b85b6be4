"""Which rounding and saturation corners of firmware/src/kernels.c the conformance suite reaches, measured.

Two builds of the same sources, each instrumented by gcc's --coverage at -O0 -fno-inline (so that every branch of
the C source is one of the object's), run every vector of the suite through conformance_run() and check its
output against the vector's expected one for the build's rounding mode:
- HOST: the host gcc, the portable kernels (what the host tests run, and a core without the DSP extension
  would), called via ctypes in a child process, whose exit writes the counters;
- CORTEX_M4: arm-none-eabi-gcc for the Cortex-M4, the DSP kernels the boards run (the M7's are the same C
  source), on unicorn; gcov_dump.c serializes the counters in the core's RAM (GCC's freestanding scheme).
Then `gcov -b` (the build's own) counts, per kernel, the branch outcomes that exist and those the vectors took in
the functions that kernel can run: its entry point and every function reachable from it in the call graph gcc
itself writes (-fcallgraph-info), so no list of helpers is kept by hand. SSAT saturates without a branch, so on
the Cortex-M4 each SSAT of those functions is also watched as it runs: below, inside and above its range are
three outcomes.
"""

from __future__ import annotations

import ctypes
import re
import subprocess
import sys
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path

from unicorn import UC_HOOK_CODE, arm_const

from hil.firmware.conformance import Kernel, Suite, Vector, read_suite
from hil.model.reference import Reference
from tests.support.arm_kernels import Call, compiler_include, link_for_core, load_elf
from tests.support.native import FIRMWARE_SRC, KERNEL_FUNCTIONS, REPLY_SIZE, compile_c, conformance_runner

SOURCES = ("kernels.c", "conformance.c", "protocol.c")
GCOV_DUMP = Path(__file__).with_name("gcov_dump.c")
COVERAGE_FLAGS = ["-std=c11", "-Wall", "-Wextra", "-Werror", "-O0", "-fno-inline", "-g", "--coverage",
                  "-fcallgraph-info"]
ARM_FLAGS = ["-mthumb", "-mfloat-abi=soft", "-ffreestanding", "-fno-common", "-fprofile-info-section"]

# Branch outcomes no vector can take, and why: (the kernel, or None for any, the function, the source line as it
# stands in kernels.c). A line is excused whole: keep each to the one outcome its reason covers.
UNREACHABLE: dict[tuple[Kernel | None, str, str], str] = {
    (None, "saturating_rounding_doubling_high_mul", "if (a == INT32_MIN && b == INT32_MIN) {"):
        "multipliers are >= 0 (QuantizeMultiplier), never INT32_MIN",
    (None, "k_copy", "if (input == output) {"): "a CONFORMANCE reply is never the request's buffer",
    (None, "portable_avg_pool2d", "if (count > 0) {"): "TFLite padding never leaves a window empty",
    (None, "pool_output", "if (count > 0) {"): "TFLite padding never leaves a window empty",
    (None, "taps_inside", "while (k < kernel && origin + k < 0) {"):
        "TFLite padding never puts a whole window before the image",
    (None, "k_fc_rescale", "if (exponent >= 0) {"):
        "a value of exponent >= 0 is at least 2^52: as below, no reference exists",
    (None, "k_fc_rescale", "rounded = too_big ? (uint64_t)1 << 32 : significand << exponent;"): "as above",
    (None, "k_fc_rescale", "const bool too_big = exponent >= 32 || (significand >> (32 - exponent)) != 0;"):
        "|acc * scale| >= 2^31: LiteRT's double-to-int32 cast is undefined there, so no reference exists",
    (None, "k_fc_rescale", "return rounded >= (uint64_t)1 << 31 ? INT32_MIN : -(int32_t)rounded;"):
        "as above, the negative side",
    (None, "k_fc_rescale", "return rounded > (uint64_t)INT32_MAX ? INT32_MAX : (int32_t)rounded;"):
        "as above, the positive side",
    (None, "dsp_conv2d", "if (2 * taps > K_DSP_SCRATCH_Q15 || p->out_c > K_DSP_MAX_CHANNELS) {"):
        "the fallback to portable_conv2d, for layers no vector can carry",
    (None, "k_conv2d", "if (dsp_conv2d(p, input, filter, bias, per_channel, output)) {"): "as above",
    (None, "dsp_fully_connected", "if (n > K_DSP_SCRATCH_Q15) {"):
        "the fallback to portable_fully_connected, for layers no vector can carry",
    (None, "k_fully_connected", "if (dsp_fully_connected(p, input, weights, bias, scale, per_channel, output)) {"):
        "as above",
    (None, "dsp_depthwise_conv2d", "p->kernel_h * row > K_DSP_SCRATCH_Q15 || channels > K_DSP_MAX_CHANNELS) {"):
        "channels > 64: a vector carries at most 32 channels, and the generator refuses over 64",
    (Kernel.CONV_2D, "widen_reordered", "for (; i < n; i++) {"):
        "im2col widens whole groups of 4 channels only: no remainder",
    (Kernel.DEPTHWISE_CONV_2D, "widen_reordered", "for (; i < n; i++) {"):
        "the DSP depthwise widens rows of 4k channels only: no remainder",
}
# The portable kernels two DSP kernels fall back to only for layers no vector can carry (a request is at most
# 256 bytes; the code generator refuses such layers too): not counted on the Cortex-M4, where no vector reaches
# them. The HOST rows measure them.
FALLBACKS = {
    "portable_conv2d": "CONV_2D's, for 2 * taps > 1152 or over 64 output channels: a filter of over 576 bytes",
    "portable_fully_connected": "FULLY_CONNECTED's, for over 1152 inputs: a weight row of over 1152 bytes",
}


class Build(Enum):
    """What runs the vectors: the compiler, the core and so the kernels' path."""

    HOST = "host gcc, portable kernels"
    CORTEX_M4 = "Cortex-M4, DSP kernels"


@dataclass
class Outcomes:
    exist: int = 0
    taken: int = 0


@dataclass(frozen=True)
class Missed:
    """A source line with a branch outcome (or an SSAT's range side) no vector took."""

    function: str
    line: int
    source: str


@dataclass
class KernelCoverage:
    build: Build
    rounding: Reference
    kernel: Kernel
    vectors: int
    functions: list[str]  # the kernel's entry point and what it can call, in kernels.c
    branches: Outcomes = field(default_factory=Outcomes)
    saturations: Outcomes = field(default_factory=Outcomes)  # SSAT's three sides, the Cortex-M4 only
    missed: list[Missed] = field(default_factory=list)

    def reason(self, missed: Missed) -> str | None:
        """Why no vector can take it, or None: a vector is missing."""
        return (UNREACHABLE.get((self.kernel, missed.function, missed.source))
                or UNREACHABLE.get((None, missed.function, missed.source)))

    @property
    def unexplained(self) -> list[Missed]:
        return [m for m in self.missed if self.reason(m) is None]


def measure(build: Build, rounding: Reference, work: Path, suite: Suite | None = None,
            kernels: tuple[Kernel, ...] = tuple(Kernel)) -> list[KernelCoverage]:
    """Builds the instrumented sources in `work` (a directory of its own) and measures each kernel's vectors: those
    of `suite`, the committed suite or some of its vectors (the host's child process reads them from the file)."""
    suite = suite or read_suite()
    work.mkdir(parents=True, exist_ok=True)
    defines = ["-DKERNEL_ROUNDING_TFLM"] if rounding is Reference.TFLM else []
    run = _HostRun(work, defines) if build is Build.HOST else _ArmRun(work, defines)
    graph = call_graph(work / "kernels.ci")
    results = []
    for kernel in kernels:
        vectors = suite.by_kernel()[kernel]
        functions = reachable(graph, KERNEL_FUNCTIONS[kernel.name], set(FALLBACKS) if build is Build.CORTEX_M4 else set())
        coverage = KernelCoverage(build, rounding, kernel, len(vectors), functions)
        saturations = run.run(vectors, rounding)
        count_branches(run.gcov(), functions, coverage)
        for site, sides in saturations.items():
            if site.function in functions:
                coverage.saturations.exist += 3
                coverage.saturations.taken += len(sides)
                if len(sides) < 3:
                    coverage.missed.append(site)
        results.append(coverage)
    return results


class _HostRun:
    """The sources as one instrumented shared library; each kernel's vectors in a child process of their own."""

    def __init__(self, work: Path, defines: list[str]):
        self.work = work
        self.library = work / "libconformance.so"
        objects = []
        for name in SOURCES:
            objects.append(work / f"{Path(name).stem}.o")
            compile_c(["gcc", *COVERAGE_FLAGS, *defines, "-fPIC", f"-I{FIRMWARE_SRC}", "-c", "-o", str(objects[-1]),
                      str(FIRMWARE_SRC / name)])
        compile_c(["gcc", "--coverage", "-shared", "-o", str(self.library), *map(str, objects)])

    def run(self, vectors: list[Vector], rounding: Reference) -> dict[Missed, set[str]]:
        for stale in self.work.glob("*.gcda"):
            stale.unlink()
        names = ",".join(v.name for v in vectors)
        subprocess.run([sys.executable, "-m", "tests.support.kernel_coverage", str(self.library), rounding.value,
                        names], check=True, cwd=Path(__file__).resolve().parents[2])
        return {}

    def gcov(self) -> list[str]:
        return _gcov("gcov", self.work)


class _ArmRun:
    """The sources and gcov_dump.c linked for the Cortex-M4; each kernel's vectors on a fresh unicorn core."""

    def __init__(self, work: Path, defines: list[str]):
        self.work = work
        include = compiler_include()
        # The measured sources instrumented; the firmware's own memset/memcpy (mem.c: no libc) and the dump not.
        sources = [*((FIRMWARE_SRC / name, True) for name in SOURCES), (FIRMWARE_SRC / "mem.c", False),
                   (GCOV_DUMP, False)]
        objects = []
        for source, measured in sources:
            objects.append(work / f"{source.stem}.o")
            flags = [*COVERAGE_FLAGS, *defines] if measured else ["-std=c11", "-Wall", "-Wextra", "-Werror", "-O2"]
            compile_c(["arm-none-eabi-gcc", *flags, *ARM_FLAGS, "-mcpu=cortex-m4", "-nostdinc", "-isystem", include,
                      f"-I{FIRMWARE_SRC}", "-c", "-o", str(objects[-1]), str(source)])
        self.elf = work / "conformance-cortex-m4.elf"
        link_for_core(self.elf, "cortex-m4", ["-mthumb", "-mfloat-abi=soft"], objects,
                      ("conformance_run", "gcov_dump"), ("-lgcov", "-lgcc"))
        self.image, self.symbols = load_elf(self.elf)
        self.cpu = "cortex-m4"
        self.ssats = _ssat_instructions(self.elf)

    def run(self, vectors: list[Vector], rounding: Reference) -> dict[Missed, set[str]]:
        for stale in self.work.glob("*.gcda"):
            stale.unlink()
        call = Call(self)
        sides: dict[Missed, set[str]] = {ssat.site: set() for ssat in self.ssats.values()}
        for address, ssat in self.ssats.items():
            call.uc.hook_add(UC_HOOK_CODE, _watch_ssat(sides[ssat.site], ssat), begin=address, end=address)
        for vector in vectors:
            request, reply, length = call.put(vector.payload), call.put(bytes(REPLY_SIZE)), call.put(bytes(4))
            call.run("conformance_run", [request, len(vector.payload), reply, length])
            size = int.from_bytes(call.read(length, 4), "little")
            _check(vector, rounding, call.read(reply, size))
        call.run("gcov_dump", [])
        if int.from_bytes(call.read(self.symbols["gcov_overflow"], 4), "little"):
            raise RuntimeError("gcov_dump.c's buffers are too small for the counters")
        dump_length = int.from_bytes(call.read(self.symbols["gcov_out_length"], 4), "little")
        _write_gcda(call.read(self.symbols["gcov_out"], dump_length))
        return sides

    def gcov(self) -> list[str]:
        return _gcov("arm-none-eabi-gcov", self.work)


def _check(vector: Vector, rounding: Reference, reply: bytes) -> None:
    if reply[1:] != vector.expected_by(rounding.value):
        raise AssertionError(f"{vector.name}: the instrumented build does not give the expected {rounding.value} output")


def _write_gcda(dump: bytes) -> None:
    """gcov_dump.c's records: a file name, then that file's .gcda bytes."""
    files: dict[str, bytearray] = {}
    name, at = "", 0
    while at < len(dump):
        kind, length = int.from_bytes(dump[at:at + 4], "little"), int.from_bytes(dump[at + 4:at + 8], "little")
        data = dump[at + 8:at + 8 + length]
        at += 8 + ((length + 3) & ~3)
        if kind == 1:
            name = data.decode()
            files[name] = bytearray()
        else:
            files[name] += data
    for path, data in files.items():
        Path(path).write_bytes(bytes(data))


def _gcov(gcov: str, work: Path) -> list[str]:
    subprocess.run([gcov, "-b", "-o", str(work), str(work / "kernels.gcda")], check=True, cwd=work,
                   capture_output=True)
    return (work / "kernels.c.gcov").read_text().splitlines()


def call_graph(ci_file: Path) -> dict[str, set[str]]:
    """caller -> callees, from gcc's -fcallgraph-info (VCG): static functions are titled `file:name`."""
    graph: dict[str, set[str]] = {}
    for caller, callee in re.findall(r'edge: \{ sourcename: "([^"]+)" targetname: "([^"]+)"', ci_file.read_text()):
        graph.setdefault(caller.rsplit(":", 1)[-1], set()).add(callee.rsplit(":", 1)[-1])
    return graph


def reachable(graph: dict[str, set[str]], entry: str, excluded: set[str]) -> list[str]:
    """`entry` and the functions it calls, directly or not, short of `excluded`."""
    seen, todo = [entry], [entry]
    while todo:
        for callee in sorted(graph.get(todo.pop(), ())):
            if callee not in seen and callee not in excluded and not callee.startswith("__"):  # libgcc's
                seen.append(callee)
                todo.append(callee)
    return seen


def count_branches(gcov_lines: list[str], functions: list[str], coverage: KernelCoverage) -> None:
    """Adds the branch outcomes of `functions` in kernels.c.gcov: those that exist, those taken, the lines missed."""
    function, line, source = None, 0, ""
    for text in gcov_lines:
        started = re.match(r"function (\w+) called", text)
        if started:
            function = started.group(1)
            continue
        code = re.match(r"\s*[-#=\d*]+:\s*(\d+):(.*)", text)
        if code:
            line, source = int(code.group(1)), code.group(2).strip()
            continue
        outcome = re.match(r"branch\s+\d+ (taken (\d+)|never executed)", text)
        if outcome and function in functions:
            coverage.branches.exist += 1
            if outcome.group(2) is not None and int(outcome.group(2)) > 0:
                coverage.branches.taken += 1
            elif not any(m.line == line for m in coverage.missed):
                coverage.missed.append(Missed(function, line, source))


@dataclass(frozen=True)
class _Ssat:
    site: Missed  # its function and source line
    register: str  # the operand it saturates
    bits: int


def _ssat_instructions(elf: Path) -> dict[int, _Ssat]:
    """Each SSAT instruction by address, from objdump -dl (functions, source lines and instructions in order)."""
    listing = subprocess.run(["arm-none-eabi-objdump", "-dl", str(elf)], check=True, capture_output=True,
                             text=True).stdout
    source_lines = (FIRMWARE_SRC / "kernels.c").read_text().splitlines()
    found, function, line = {}, "", 0
    for text in listing.splitlines():
        if started := re.match(r"[0-9a-f]+ <(\w+)>:", text):
            function = started.group(1)
        elif located := re.match(r"\S*/kernels\.c:(\d+)", text):
            line = int(located.group(1))
        elif ssat := re.match(r"\s+([0-9a-f]+):\s+(?:[0-9a-f]{4}\s?)+\s+ssat\s+\w+, #(\d+), (\w+)", text):
            site = Missed(function, line, source_lines[line - 1].strip())
            found[int(ssat.group(1), 16)] = _Ssat(site, ssat.group(3), int(ssat.group(2)))
    return found


def _watch_ssat(sides: set[str], ssat: _Ssat):
    """A hook run before the SSAT: which side of its range the operand lies on."""
    register = getattr(arm_const, f"UC_ARM_REG_{ssat.register.upper()}")
    low, high = -(1 << (ssat.bits - 1)), (1 << (ssat.bits - 1)) - 1

    def hook(uc, address, size, data):
        value = uc.reg_read(register)
        value = value - (1 << 32) if value & 0x8000_0000 else value
        sides.add("below" if value < low else "above" if value > high else "inside")

    return hook


def _child(library: str, rounding: str, names: str) -> None:
    """Runs the named vectors through the host library's conformance_run; the counters are written at exit."""
    run = conformance_runner(ctypes.CDLL(library))
    wanted = set(names.split(","))
    vectors = [v for v in read_suite().vectors if v.name in wanted]
    if len(vectors) != len(wanted):
        raise SystemExit("the host run takes vectors of the committed suite only")
    for vector in vectors:
        code, reply = run(vector.payload)
        if code != 0:
            raise SystemExit(f"{vector.name}: refused by the host build")
        _check(vector, Reference(rounding), reply)


if __name__ == "__main__":
    _child(*sys.argv[1:4])
