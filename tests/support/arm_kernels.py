"""The firmware's kernels (firmware/src/kernels.c) compiled for a Cortex-M core and called on unicorn.

The host cannot run the DSP path (SMLAD, SXTB16: Armv7E-M), so the kernels are cross-compiled with
the firmware's flags for `-mcpu=cortex-m4` or `cortex-m7`, linked at a fixed address with nothing
else (no startup, no HAL), and each kernel is called as the firmware calls it: the AAPCS arguments
in R0-R3 and on the stack, the return address a sentinel that stops the emulation. Parameters and
tensors are written into the core's RAM as the bytes the firmware would hold (the ctypes structures
of tests/unit/test_kernels.py have the Arm EABI layout too: natural alignment), and the output is read back.

    kernels = ArmKernels.build(tmp_path, "cortex-m4")
    out = kernels.conv2d(bytes(conv_params), bytes(qmul_array), x, weights, bias, out_size)   # flat int8
"""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from elftools.elf.elffile import ELFFile
from unicorn import UC_ARCH_ARM, UC_MODE_MCLASS, UC_MODE_THUMB, UC_PROT_ALL, Uc
from unicorn import arm_const as arm

from tests.support.native import FIRMWARE_SRC, compile_c

CODE_BASE = 0x0001_0000  # the kernels' .text, .rodata, .data and .bss (the static scratch)
CODE_SIZE = 0x0010_0000
DATA_BASE = 0x2000_0000  # parameters, tensors and the stack of each call
DATA_SIZE = 0x0020_0000
STACK_TOP = DATA_BASE + DATA_SIZE
RETURN_SENTINEL = CODE_BASE + CODE_SIZE - 0x100  # a halfword of mapped memory no code occupies
MAX_INSTRUCTIONS = 200_000_000
UNICORN_MODELS = {"cortex-m4": arm.UC_CPU_ARM_CORTEX_M4, "cortex-m7": arm.UC_CPU_ARM_CORTEX_M7}

LINKER_SCRIPT = f"""ENTRY(k_conv2d)
SECTIONS {{
    . = {CODE_BASE:#x};
    .text : {{ *(.text*) *(.rodata*) }}
    .data : {{ *(.data*) }}
    .gcov_info : {{ __gcov_info_start = .; KEEP(*(.gcov_info)) __gcov_info_end = .; }}
    .bss (NOLOAD) : ALIGN(8) {{ *(.bss*) *(COMMON) }}
}}
"""

# The firmware's compile flags (firmware/Makefile) for the kernels alone.
ARM_FLAGS = ["-std=c11", "-Wall", "-Wextra", "-Werror", "-O2", "-mthumb", "-mfloat-abi=soft", "-ffreestanding",
             "-ffunction-sections", "-fdata-sections", "-fno-common", "-fno-tree-loop-distribute-patterns"]
KERNELS = ("k_conv2d", "k_depthwise_conv2d", "k_fully_connected", "k_avg_pool2d")


@dataclass(frozen=True)
class ArmKernels:
    """One build of kernels.c for one core, and a unicorn core to call it on."""

    elf: Path
    cpu: str
    image: bytes
    symbols: dict[str, int]

    @classmethod
    def build(cls, directory: Path, cpu: str, extra_flags: tuple[str, ...] = ()) -> ArmKernels:
        elf = Path(directory) / f"kernels-{cpu}{''.join(extra_flags)}.elf"
        link_for_core(elf, cpu, [*ARM_FLAGS, *extra_flags], [FIRMWARE_SRC / "kernels.c"], KERNELS)
        return cls(elf, cpu, *load_elf(elf))

    def disassembly(self) -> str:
        return subprocess.run(["arm-none-eabi-objdump", "-d", str(self.elf)], check=True, capture_output=True,
                              text=True).stdout

    def conv2d(self, params: bytes, per_channel: bytes, x, weights, bias, out_size: int,
               depthwise: bool = False) -> np.ndarray:
        """k_conv2d (or k_depthwise_conv2d): params is a conv_params_t, per_channel the qmul_t array."""
        call = Call(self)
        arguments = [call.put(params), call.put(_int8(x)), call.put(_int8(weights)), call.put_optional(_int32(bias)),
                     call.put(per_channel)]
        output = call.put(bytes([0x55]) * out_size)
        call.run("k_depthwise_conv2d" if depthwise else "k_conv2d", arguments + [output])
        return np.frombuffer(call.read(output, out_size), dtype=np.int8)

    def fully_connected(self, params: bytes, scales: bytes, per_channel: bool, x, weights, bias,
                        out_size: int) -> np.ndarray:
        """k_fully_connected: params is an fc_params_t, scales the fc_scale_t array."""
        call = Call(self)
        arguments = [call.put(params), call.put(_int8(x)), call.put(_int8(weights)), call.put_optional(_int32(bias)),
                     call.put(scales), int(per_channel)]
        output = call.put(bytes([0x55]) * out_size)
        call.run("k_fully_connected", arguments + [output])
        return np.frombuffer(call.read(output, out_size), dtype=np.int8)

    def avg_pool2d(self, params: bytes, x, out_size: int) -> np.ndarray:
        """k_avg_pool2d: params is a pool_params_t."""
        call = Call(self)
        arguments = [call.put(params), call.put(_int8(x))]
        output = call.put(bytes([0x55]) * out_size)
        call.run("k_avg_pool2d", arguments + [output])
        return np.frombuffer(call.read(output, out_size), dtype=np.int8)


def link_for_core(elf: Path, cpu: str, flags: list[str], inputs: list[Path], keep: tuple[str, ...],
                  libraries: tuple[str, ...] = ("-lgcc",)) -> None:
    """Compiles and links C sources (or objects) for `cpu` at CODE_BASE, with nothing else (no startup, no libc),
    keeping the functions in `keep` that no code calls."""
    script = elf.parent / "kernels.ld"
    script.write_text(LINKER_SCRIPT)
    command = ["arm-none-eabi-gcc", *flags, f"-mcpu={cpu}", "-nostdinc", "-isystem", compiler_include(),
               f"-I{FIRMWARE_SRC}",
               "-nostdlib", f"-T{script}", *(f"-Wl,--undefined={name}" for name in keep), "-o", str(elf),
               *map(str, inputs), *libraries]
    compile_c(command)


def compiler_include() -> str:
    """arm-none-eabi-gcc's own headers (stdint.h, arm_acle.h, gcov.h), the only ones with -nostdinc."""
    return subprocess.run(["arm-none-eabi-gcc", "-print-file-name=include"], check=True, capture_output=True,
                          text=True).stdout.strip()


def load_elf(elf: Path) -> tuple[bytes, dict[str, int]]:
    """The image from CODE_BASE (its loaded segments, zeros between) and the symbols' addresses."""
    with elf.open("rb") as stream:
        elf_file = ELFFile(stream)
        symbol_table = elf_file.get_section_by_name(".symtab")
        symbols = {symbol.name: symbol["st_value"] for symbol in symbol_table.iter_symbols() if symbol.name}
        image = bytearray()
        for segment in elf_file.iter_segments():
            if segment["p_type"] == "PT_LOAD" and segment["p_filesz"]:
                offset = segment["p_paddr"] - CODE_BASE
                image[len(image):offset] = bytes(max(0, offset - len(image)))
                image[offset:offset + segment["p_filesz"]] = segment.data()
    return bytes(image), symbols


def _int8(array) -> bytes:
    return np.ascontiguousarray(array, dtype=np.int8).tobytes()


def _int32(array) -> bytes | None:
    return None if array is None else np.ascontiguousarray(array, dtype="<i4").tobytes()


class Call:
    """One kernel call on a fresh core: blobs placed in RAM, arguments by AAPCS, run to the sentinel."""

    def __init__(self, kernels: ArmKernels):
        self.kernels = kernels
        self.uc = Uc(UC_ARCH_ARM, UC_MODE_THUMB | UC_MODE_MCLASS)
        self.uc.ctl_set_cpu_model(UNICORN_MODELS[kernels.cpu])
        self.uc.mem_map(CODE_BASE, CODE_SIZE, UC_PROT_ALL)
        self.uc.mem_map(DATA_BASE, DATA_SIZE, UC_PROT_ALL)
        self.uc.mem_write(CODE_BASE, kernels.image)
        self.uc.mem_write(RETURN_SENTINEL, b"\x00\xbe")  # BKPT, never reached: the run stops at its address
        self.next_free = DATA_BASE

    def put(self, blob: bytes) -> int:
        address = self.next_free
        self.uc.mem_write(address, blob)
        self.next_free = (address + len(blob) + 7) & ~7
        return address

    def put_optional(self, blob: bytes | None) -> int:
        return 0 if blob is None else self.put(blob)

    def read(self, address: int, size: int) -> bytes:
        return bytes(self.uc.mem_read(address, size))

    def run(self, function: str, arguments: list[int]) -> None:
        registers, stacked = arguments[:4], arguments[4:]
        sp = (STACK_TOP - 4 * len(stacked)) & ~7
        self.uc.mem_write(sp, b"".join((value & 0xFFFF_FFFF).to_bytes(4, "little") for value in stacked))
        for register, value in zip((arm.UC_ARM_REG_R0, arm.UC_ARM_REG_R1, arm.UC_ARM_REG_R2, arm.UC_ARM_REG_R3),
                                   registers):
            self.uc.reg_write(register, value)
        self.uc.reg_write(arm.UC_ARM_REG_SP, sp)
        self.uc.reg_write(arm.UC_ARM_REG_LR, RETURN_SENTINEL | 1)
        self.uc.emu_start(self.kernels.symbols[function] | 1, RETURN_SENTINEL, count=MAX_INSTRUCTIONS)
        pc = self.uc.reg_read(arm.UC_ARM_REG_PC)
        if pc != RETURN_SENTINEL:
            raise RuntimeError(f"{function} on {self.kernels.cpu} did not return (stopped at {pc:#x})")
