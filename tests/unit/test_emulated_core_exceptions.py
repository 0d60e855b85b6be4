"""hil.hw.emulated.cortex_m: exception entry and return (`take_exception`), as a chip model uses them to
deliver an interrupt (the STM32 harness's SysTick and USART handlers)."""

from __future__ import annotations

import pytest

from hil.hw.emulated.cortex_m import CORTEX_M4, KIB, CortexM, MemoryRegion, StopReason

RAM = 0x2000_0000
MAIN, HANDLER = RAM + 0x40, RAM + 0x60
# Thumb code (arm-none-eabi-as -mcpu=cortex-m4)
MAIN_CODE = bytes.fromhex("0020" "0130" "3228" "fcd1" "00be")  # movs r0, #0; 1: adds r0, #1; cmp r0, #50; bne 1b; bkpt
HANDLER_CODE = bytes.fromhex("0721" "0135" "7047")  # movs r1, #7; adds r5, #1; bx lr


@pytest.mark.parametrize("stack_top", [RAM + 0x1000, RAM + 0x0FFC], ids=["aligned", "realigned"])
def test_a_taken_exception_runs_its_handler_and_returns_with_the_registers_it_interrupted(stack_top):
    core = CortexM(CORTEX_M4, [MemoryRegion("ram", RAM, 64 * KIB)], boot_address=RAM)
    vectors = bytearray(0x40)
    vectors[15 * 4:16 * 4] = (HANDLER | 1).to_bytes(4, "little")  # SysTick
    core.load(RAM, bytes(vectors))
    core.load(MAIN, MAIN_CODE)
    core.load(HANDLER, HANDLER_CODE)
    core.bus_write(0xE000_ED08, RAM, 4)  # VTOR
    core.write_register(13, stack_top)
    core.write_register(1, 3)
    core.write_register(14, 0x1234_5679)

    core.take_exception(15, return_address=MAIN)
    assert core.read_register(15) == HANDLER and core.read_register(14) == 0xFFFF_FFF9
    assert core.active_exceptions == [15]
    assert core.run(10_000) is StopReason.BREAKPOINT

    assert core.read_register(5) == 1  # the handler ran once
    assert core.read_register(0) == 50  # then the interrupted code, from where it was
    assert core.read_register(1) == 3 and core.read_register(14) == 0x1234_5679  # unstacked
    assert core.read_register(13) == stack_top and core.active_exceptions == []
