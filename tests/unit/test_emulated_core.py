"""hil.hw.emulated.cortex_m: the unicorn Cortex-M behind the emulated probe, driven through its debug
registers as pyOCD drives it (DHCSR, DCRSR/DCRDR, DEMCR, AIRCR), and as a harness runs it with
peripheral models attached."""

from __future__ import annotations

import struct

import pytest
from pyocd.target.builtin import target_STM32L432xx

from hil.hw.emulated.cortex_m import (CORTEX_M4, KIB, BusFault, CortexM, DebugRegisters, MemoryRegion, StopReason,
                                      WordRegisters)
from hil.hw.emulated.probe import CHIPS, ApBus, build_target

D = DebugRegisters
RAM = 0x2000_0000
DBGKEY = 0xA05F_0000
# Thumb code (arm-none-eabi-as -mcpu=cortex-m4), at RAM:
CODE = bytes.fromhex(
    "2a20" "00be"  # +0x00: movs r0, #42; bkpt 0
    "0130" "0130"  # +0x04: adds r0, #1; adds r0, #1
    "0248" "4121"  # +0x08: ldr r0, [pc, #8] (=0x40004400); movs r1, #'A'
    "4160" "0131" "fce7" "0000"  # +0x0C: loop: str r1, [r0, #4]; adds r1, #1; b loop; (pad)
    "00440040"  # +0x14: .word 0x40004400
    "4ff0c040" "0168" "00be"  # +0x18: mov.w r0, #0x60000000; ldr r1, [r0] (nothing there); bkpt 0
)
BKPT_AT, STEPS_AT, TX_AT, BAD_AT = RAM + 0x00, RAM + 0x04, RAM + 0x08, RAM + 0x18


def core_with_code() -> CortexM:
    core = CortexM(CORTEX_M4, [MemoryRegion("ram", RAM, 64 * KIB)], boot_address=RAM)
    core.load(RAM, CODE)
    return core


def debug_write(core: CortexM, address: int, value: int) -> None:
    core.bus_write(address, value, 4)


def halt_at(core: CortexM, pc: int) -> None:
    debug_write(core, D.DHCSR, DBGKEY | D.C_DEBUGEN | D.C_HALT)
    debug_write(core, D.DCRDR, pc)
    debug_write(core, D.DCRSR, 1 << 16 | 15)  # REGWnR: PC <- DCRDR


def register(core: CortexM, index: int) -> int:
    debug_write(core, D.DCRSR, index)
    return core.bus_read(D.DCRDR, 4)


def test_a_resume_runs_to_the_breakpoint_and_halts_there():
    core = core_with_code()
    halt_at(core, BKPT_AT)
    debug_write(core, D.DFSR, 0xFFFF_FFFF)
    debug_write(core, D.DHCSR, DBGKEY | D.C_DEBUGEN)  # resume: runs now, synchronously

    dhcsr = core.bus_read(D.DHCSR, 4)
    assert dhcsr & D.S_HALT and not dhcsr & D.S_LOCKUP
    assert core.bus_read(D.DFSR, 4) & D.DFSR_BKPT
    assert register(core, 0) == 42 and register(core, 15) == BKPT_AT + 2  # halted on the BKPT itself


def test_c_step_executes_one_instruction():
    core = core_with_code()
    halt_at(core, STEPS_AT)
    debug_write(core, D.DHCSR, DBGKEY | D.C_DEBUGEN | D.C_STEP)
    assert (register(core, 0), register(core, 15)) == (1, STEPS_AT + 2)
    assert core.bus_read(D.DHCSR, 4) & D.S_HALT


class Uart(WordRegisters):
    """A transmit register at +4 that collects bytes and stops the run after a line of five."""

    def __init__(self, core: CortexM):
        self.core, self.sent = core, bytearray()

    def read_word(self, offset: int) -> int:
        return 0

    def write_word(self, offset: int, value: int) -> None:
        if offset != 4:
            raise BusFault(offset, True, "not a UART register")
        self.sent.append(value & 0xFF)
        if len(self.sent) == 5:
            self.core.request_stop()


def test_an_attached_peripheral_sees_the_cores_writes_and_run_stops_on_a_condition():
    core = core_with_code()
    uart = Uart(core)
    core.attach(0x4000_4400, 0x400, uart)
    core.write_register(15, TX_AT)

    assert core.run(1_000_000, until=lambda: len(uart.sent) >= 5) is StopReason.CONDITION
    assert bytes(uart.sent) == b"ABCDE"


def test_a_runaway_loop_spends_its_budget_and_still_counts_as_running():
    core = core_with_code()
    core.attach(0x4000_4400, 0x400, Uart(core))
    core.write_register(15, TX_AT)
    assert core.run(10_000) is StopReason.BUDGET
    assert not core.halted and not core.lockup


def test_a_bus_fault_locks_the_core_up_unless_vector_catch_halts_it():
    core = core_with_code()
    halt_at(core, BAD_AT)
    debug_write(core, D.DHCSR, DBGKEY | D.C_DEBUGEN)
    assert core.bus_read(D.DHCSR, 4) & (D.S_LOCKUP | D.S_HALT) == D.S_LOCKUP
    assert "0x60000000" in (core.fault or "") or "UNMAPPED" in (core.fault or "")

    halt_at(core, BAD_AT)
    debug_write(core, D.DEMCR, D.VC_HARDERR)
    debug_write(core, D.DHCSR, DBGKEY | D.C_DEBUGEN)
    assert core.bus_read(D.DHCSR, 4) & (D.S_LOCKUP | D.S_HALT) == D.S_HALT
    assert core.bus_read(D.DFSR, 4) & D.DFSR_VCATCH


def test_reset_loads_the_vector_table_at_the_boot_address_and_vector_catch_halts():
    target = build_target(CHIPS["stm32l432kc"])
    core = target.core
    core.load(0x0800_0000, struct.pack("<II", 0x2000_C000, 0x0800_0101))  # host-side, bypassing the controller
    assert core.memory(0, 8) == core.memory(0x0800_0000, 8)  # the boot alias
    debug_write(core, D.DHCSR, DBGKEY | D.C_DEBUGEN)
    debug_write(core, D.DEMCR, D.VC_CORERESET)
    debug_write(core, D.AIRCR, 0x05FA_0004)  # SYSRESETREQ

    assert core.halted and core.resets == 1 and core.bus_read(D.DFSR, 4) & D.DFSR_VCATCH
    assert (register(core, 13), register(core, 15), register(core, 16)) == (0x2000_C000, 0x0800_0100, 1 << 24)
    assert core.bus_read(D.DHCSR, 4) & D.S_RESET_ST and not core.bus_read(D.DHCSR, 4) & D.S_RESET_ST  # sticky

    debug_write(core, D.DEMCR, 0)
    debug_write(core, D.AIRCR, 0x05FA_0004)
    assert not core.halted  # runs the application, which is not executed here: PC stays at the reset vector
    assert core.read_register(15) == 0x0800_0100


def test_the_cores_fetches_and_the_debuggers_writes_share_memory():
    core = core_with_code()
    halt_at(core, BKPT_AT)
    debug_write(core, D.DHCSR, DBGKEY | D.C_DEBUGEN)
    assert register(core, 0) == 42
    core.bus_write(BKPT_AT, 0x2007, 2)  # the debugger patches `movs r0, #42` into `movs r0, #7` ...
    halt_at(core, BKPT_AT)
    debug_write(core, D.DHCSR, DBGKEY | D.C_DEBUGEN)
    assert register(core, 0) == 7  # ... and the core runs the new code, not a stale translation


def test_core_registers_through_dcrsr_include_the_special_and_fp_registers():
    core = core_with_code()
    halt_at(core, BKPT_AT)
    for index, value in ((17, 0x2000_1000), (18, 0x2000_0800), (20, 0x0001_0001), (0x21, 0x0300_0000),
                         (0x40, 0x3F80_0000), (0x5F, 0x4000_0000)):
        debug_write(core, D.DCRDR, value)
        debug_write(core, D.DCRSR, 1 << 16 | index)
        assert register(core, index) == value, f"REGSEL {index:#x}"


def run_algorithm(core: CortexM, algo: dict, pc: int, *args: int) -> tuple[StopReason, int]:
    """Call a flash-algorithm function the way pyOCD does: registers, LR at the BKPT, resume."""
    for index, value in enumerate(args):
        core.write_register(index, value)
    core.write_register(9, algo["static_base"])
    core.write_register(13, algo["begin_stack"])
    core.write_register(16, 1 << 24)
    core.write_register(14, algo["load_address"] + 1)
    core.write_register(15, pc)
    return core.run(100_000), core.read_register(0)


def test_pyocds_stm32l4_flash_algorithm_runs_on_the_core_against_the_controller():
    target = build_target(CHIPS["stm32l432kc"])
    algo = target_STM32L432xx.FLASH_ALGO
    core = target.core
    core.load(algo["load_address"], b"".join(struct.pack("<I", word) for word in algo["instructions"]))
    page = bytes(range(256)) * 4
    core.load(0x2000_1000, page)

    assert run_algorithm(core, algo, algo["pc_init"], 0x0800_0000, 0, 2) == (StopReason.BREAKPOINT, 0)
    assert run_algorithm(core, algo, algo["pc_erase_sector"], 0x0800_0800) == (StopReason.BREAKPOINT, 0)
    assert run_algorithm(core, algo, algo["pc_program_page"], 0x0800_0800, len(page), 0x2000_1000) == \
        (StopReason.BREAKPOINT, 0)
    assert run_algorithm(core, algo, algo["pc_unInit"], 3) == (StopReason.BREAKPOINT, 0)
    assert core.memory(0x0800_0800, len(page)) == page
    assert (target.flash.erases, target.flash.programs) == (1, len(page) // 8)
    assert target.flash.keys.locked

    # Init again while unlocked: its key writes are a wrong sequence, a bus error: the core locks up.
    assert run_algorithm(core, algo, algo["pc_init"], 0x0800_0000, 0, 2)[0] is StopReason.BREAKPOINT
    reason, _ = run_algorithm(core, algo, algo["pc_init"], 0x0800_0000, 0, 2)
    assert reason is StopReason.FAULT and core.lockup and "wrong FLASH key sequence" in core.fault


@pytest.mark.parametrize("fault", ["corrupt", "tamper"])
def test_ap_bus_memory_faults_in_ram(fault):
    core = core_with_code()
    bus = ApBus(core, corrupt_program_at=RAM + 0x101 if fault == "corrupt" else None,
                tamper_after_verify_at=RAM + 0x101 if fault == "tamper" else None)
    bus.write(RAM + 0x100, 0x0000_1000, 4)  # byte 0x101 is 0x10
    if fault == "corrupt":
        assert core.memory(RAM + 0x101, 1) == b"\x11"  # its lowest 0 bit stayed 1
    else:
        assert core.memory(RAM + 0x101, 1) == b"\x10"
        assert bus.read(RAM + 0x100, 4) == 0x0000_1000  # the verify reads what was written ...
        assert core.memory(RAM + 0x101, 1) == b"\x11"  # ... and then a bit flips where it is stored
        assert bus.read(RAM + 0x100, 4) == 0x0000_1100  # once
    assert bus.memory_writes == 1
