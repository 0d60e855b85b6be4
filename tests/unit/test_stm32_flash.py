"""hil.hw.emulated.stm32_flash: the STM32L4 and STM32F7 FLASH controllers driven at register level on
the emulated chip's bus, the way code on the core (or a debugger) drives them; a wrong sequence
fails as on silicon (RM0394 3.3 / RM0410 3.3)."""

from __future__ import annotations

import pytest

from hil.hw.emulated.cortex_m import BusFault
from hil.hw.emulated.probe import CHIPS, EmulatedTarget, build_target
from hil.hw.emulated.stm32_flash import KEY1, KEY2, F7Cr, F7Sr, L4Cr, L4Sr

FLASH = 0x0800_0000
L4_REGS, F7_REGS = 0x4002_2000, 0x4002_3C00
L4_KEYR, L4_SR, L4_CR = L4_REGS + 0x08, L4_REGS + 0x10, L4_REGS + 0x14
F7_KEYR, F7_SR, F7_CR, F7_OPTCR = F7_REGS + 0x04, F7_REGS + 0x0C, F7_REGS + 0x10, F7_REGS + 0x14


@pytest.fixture
def l4() -> EmulatedTarget:
    return build_target(CHIPS["stm32l432kc"])


@pytest.fixture
def f7() -> EmulatedTarget:
    return build_target(CHIPS["stm32f767zi"])


def write(target: EmulatedTarget, address: int, value: int, size: int = 4) -> None:
    target.core.bus_write(address, value, size)


def read(target: EmulatedTarget, address: int) -> int:
    return target.core.bus_read(address, 4)


def unlock(target: EmulatedTarget, keyr: int) -> None:
    write(target, keyr, KEY1)
    write(target, keyr, KEY2)


def l4_erase_page(target: EmulatedTarget, page: int) -> None:
    write(target, L4_CR, L4Cr.PER | page << 3)
    write(target, L4_CR, L4Cr.PER | page << 3 | L4Cr.STRT)


def l4_program(target: EmulatedTarget, address: int, first: int, second: int) -> int:
    write(target, L4_CR, L4Cr.PG)
    write(target, address, first)
    write(target, address + 4, second)
    return read(target, L4_SR)


# --- STM32L4 ---

def test_l4_unlock_erase_and_program_a_double_word(l4):
    assert read(l4, L4_CR) & L4Cr.LOCK
    unlock(l4, L4_KEYR)
    assert not read(l4, L4_CR) & L4Cr.LOCK
    assert l4_program(l4, FLASH + 8, 0x1122_3344, 0x5566_7788) == 0
    assert l4.core.memory(FLASH + 8, 8) == bytes.fromhex("4433221188776655")
    l4_erase_page(l4, 0)
    assert l4.core.memory(FLASH + 8, 8) == b"\xff" * 8 and read(l4, L4_SR) == 0
    assert (l4.flash.erases, l4.flash.programs) == (1, 1)


def test_l4_a_wrong_key_is_a_bus_error_and_locks_until_reset(l4):
    write(l4, L4_KEYR, KEY1)
    with pytest.raises(BusFault, match="wrong FLASH key sequence"):
        write(l4, L4_KEYR, 0x1234_5678)
    with pytest.raises(BusFault, match="locked until reset"):
        unlock(l4, L4_KEYR)  # the right keys no longer help
    assert read(l4, L4_CR) & L4Cr.LOCK
    l4.core.reset()  # a system reset clears the lockout
    unlock(l4, L4_KEYR)
    assert not read(l4, L4_CR) & L4Cr.LOCK


def test_l4_program_without_erase_sets_progerr_and_keeps_the_cells(l4):
    unlock(l4, L4_KEYR)
    l4_program(l4, FLASH, 0xFFFF_00FF, 0xFFFF_FFFF)
    assert l4_program(l4, FLASH, 0x0000_FF00, 0xFFFF_FFFF) & L4Sr.PROGERR
    assert l4.core.memory(FLASH, 4) == bytes.fromhex("ff00ffff")
    write(l4, L4_SR, L4Sr.PROGERR)  # write 1 to clear
    assert l4_program(l4, FLASH, 0, 0) == 0  # zeros may go over programmed cells (RM0394: PROGERR exception)


def test_l4_only_double_words_program(l4):
    unlock(l4, L4_KEYR)
    write(l4, L4_CR, L4Cr.PG)
    write(l4, FLASH + 0x10, 0xAAAA_AAAA)  # one word: nothing happens until its second word
    assert l4.core.memory(FLASH + 0x10, 4) == b"\xff" * 4 and read(l4, L4_SR) == 0
    write(l4, FLASH + 0x20, 0xBBBB_BBBB)  # the second word elsewhere: not in the same 64-bit row
    assert read(l4, L4_SR) & L4Sr.PGAERR
    write(l4, L4_SR, 0xFFFF_FFFF)

    write(l4, FLASH + 0x34, 0xCCCC_CCCC)  # a first word off the 8-byte row
    assert read(l4, L4_SR) & L4Sr.PGAERR
    write(l4, L4_SR, 0xFFFF_FFFF)

    write(l4, FLASH + 0x40, 0xDD, 1)  # a byte
    assert read(l4, L4_SR) & L4Sr.SIZERR
    write(l4, FLASH + 0x48, 0xEEEE_EEEE)  # while an error is pending: a sequence error, nothing stored
    assert read(l4, L4_SR) & L4Sr.PGSERR
    assert l4.core.memory(FLASH, 0x50) == b"\xff" * 0x50 and l4.flash.programs == 0


def test_l4_erase_and_program_while_locked_do_nothing(l4):
    unlock(l4, L4_KEYR)
    assert l4_program(l4, FLASH, 0x1234_5678, 0x9ABC_DEF0) == 0
    write(l4, L4_CR, L4Cr.LOCK)
    l4_erase_page(l4, 0)  # CR cannot be written while locked: no PER, no STRT
    assert l4.core.memory(FLASH, 4) == bytes.fromhex("78563412") and l4.flash.erases == 0
    write(l4, FLASH + 8, 0)  # a flash write without PG
    assert read(l4, L4_SR) & L4Sr.PGSERR


def test_l4_a_write_protected_page_refuses_erase_and_program():
    l4 = build_target(CHIPS["stm32l432kc"], write_protect_at=FLASH + 0x800)
    unlock(l4, L4_KEYR)
    l4_erase_page(l4, 1)
    assert read(l4, L4_SR) & L4Sr.WRPERR and l4.flash.erases == 0
    write(l4, L4_SR, 0xFFFF_FFFF)
    assert l4_program(l4, FLASH + 0x800, 0, 0) & L4Sr.WRPERR
    write(l4, L4_SR, 0xFFFF_FFFF)
    assert l4_program(l4, FLASH, 0, 0) == 0  # page 0 is not protected


# --- STM32F7 ---

def f7_program(target: EmulatedTarget, address: int, value: int, size: int, psize: int) -> int:
    write(target, F7_CR, F7Cr.PG | psize << 8)
    write(target, address, value, size)
    return read(target, F7_SR)


def test_f7_reset_values_pyocd_reads():
    f7 = build_target(CHIPS["stm32f767zi"])
    assert read(f7, F7_OPTCR) == 0xFFFF_AAFD and read(f7, F7_OPTCR) >> 29 & 1  # nDBANK: single bank
    assert read(f7, F7_CR) == 0x8000_0000
    assert read(f7, 0xE004_2000) & 0xFFF == 0x451


@pytest.mark.parametrize(("psize", "size", "value", "stored"), [
    (0, 1, 0x5A, "5a"), (1, 2, 0x5AA5, "a55a"), (2, 4, 0x1234_5678, "78563412")])
def test_f7_programs_at_its_parallelism(f7, psize, size, value, stored):
    unlock(f7, F7_KEYR)
    assert f7_program(f7, FLASH + 0x100, value, size, psize) == 0
    assert f7.core.memory(FLASH + 0x100, size).hex() == stored


def test_f7_x64_takes_two_words_and_a_mismatched_access_sets_pgperr(f7):
    unlock(f7, F7_KEYR)
    write(f7, F7_CR, F7Cr.PG | 3 << 8)
    write(f7, FLASH, 0x1111_1111)
    write(f7, FLASH + 4, 0x2222_2222)
    assert f7.core.memory(FLASH, 8).hex() == "1111111122222222" and read(f7, F7_SR) == 0
    assert f7_program(f7, FLASH + 0x10, 0xAB, 1, 2) & F7Sr.PGPERR  # a byte at x32
    write(f7, F7_SR, 0xFF)
    assert f7_program(f7, FLASH + 0x22, 0xABCD, 2, 2) & F7Sr.PGPERR
    assert f7.core.memory(FLASH + 0x10, 0x20) == b"\xff" * 0x20 and f7.flash.programs == 1


def test_f7_a_misaligned_program_sets_pgaerr(f7):
    unlock(f7, F7_KEYR)
    assert f7_program(f7, FLASH + 0x41, 0xABCD, 2, 1) & F7Sr.PGAERR
    assert f7.core.memory(FLASH + 0x40, 4) == b"\xff" * 4


def test_f7_program_without_pg_or_while_locked_sets_erserr(f7):
    write(f7, FLASH, 0)  # locked
    assert read(f7, F7_SR) & F7Sr.ERSERR
    write(f7, F7_SR, F7Sr.ERSERR)
    assert read(f7, F7_SR) == 0
    unlock(f7, F7_KEYR)
    write(f7, FLASH, 0)  # unlocked, PG clear
    assert read(f7, F7_SR) & F7Sr.ERSERR and f7.core.memory(FLASH, 4) == b"\xff" * 4


def test_f7_sector_erase_clears_exactly_its_sector_and_programming_only_clears_bits(f7):
    unlock(f7, F7_KEYR)
    for address in (FLASH + 0x1_FFFC, FLASH + 0x2_0000, FLASH + 0x3_FFFC, FLASH + 0x4_0000):  # around sector 4
        assert f7_program(f7, address, 0x0F0F_0F0F, 4, 2) == 0
    assert f7_program(f7, FLASH + 0x2_0000, 0xFFFF_00FF, 4, 2) == 0  # 1 -> 0 only: no error, the AND stays
    assert f7.core.memory(FLASH + 0x2_0000, 4).hex() == "0f000f0f"
    write(f7, F7_CR, F7Cr.SER | 4 << 3)
    write(f7, F7_CR, F7Cr.SER | 4 << 3 | F7Cr.STRT)  # sector 4: 0x0802_0000, 128 KiB
    memory = f7.core.memory
    assert memory(FLASH + 0x2_0000, 4) == memory(FLASH + 0x3_FFFC, 4) == b"\xff" * 4
    assert memory(FLASH + 0x1_FFFC, 4) == memory(FLASH + 0x4_0000, 4) == bytes.fromhex("0f0f0f0f")
    assert f7.flash.erases == 1


def test_f7_erase_while_locked_does_nothing_and_a_wrong_key_locks_until_reset(f7):
    unlock(f7, F7_KEYR)
    assert f7_program(f7, FLASH, 0, 4, 2) == 0
    write(f7, F7_CR, F7Cr.LOCK)
    write(f7, F7_CR, F7Cr.SER | F7Cr.STRT)
    assert f7.core.memory(FLASH, 4) == b"\0" * 4 and f7.flash.erases == 0
    with pytest.raises(BusFault):
        write(f7, F7_KEYR, KEY2)  # the second key first
    with pytest.raises(BusFault):
        unlock(f7, F7_KEYR)
    f7.core.reset()
    unlock(f7, F7_KEYR)
    assert not read(f7, F7_CR) & F7Cr.LOCK


def test_f7_a_write_protected_sector_refuses_erase():
    f7 = build_target(CHIPS["stm32f767zi"], write_protect_at=FLASH + 0x8000)
    assert not read(f7, F7_OPTCR) >> 17 & 1  # nWRP1 = 0
    unlock(f7, F7_KEYR)
    write(f7, F7_CR, F7Cr.SER | 1 << 3 | F7Cr.STRT)
    assert read(f7, F7_SR) & F7Sr.WRPERR and f7.flash.erases == 0


def test_a_peripheral_pyocd_does_not_touch_bus_faults(l4):
    with pytest.raises(BusFault):
        read(l4, 0x4002_1000)  # RCC: not modelled on the probe
