"""STM32 embedded-flash controllers at register level, and the small peripherals pyOCD's STM32 code touches.

Both controllers sit on the core's bus (hil.hw.emulated.cortex_m) at their FLASH register block and
receive every write into their flash array, whether the core (pyOCD's flash algorithm) or the
debugger makes it. Operations finish at once: SR.BSY always reads 0, so an algorithm's wait loops
(and their watchdog refreshes) fall through.

- Stm32L4Flash (RM0394 3.7, FLASH at 0x4002_2000): KEYR unlock (KEY1 0x45670123 then KEY2
  0xCDEF89AB); CR LOCK/PG/PER/PNB/MER1/STRT/EOPIE/ERRIE; SR EOP/OPERR/PROGERR/WRPERR/PGAERR/SIZERR/
  PGSERR/BSY, written 1 to clear; page erase (2 KiB) and mass erase to 0xFF; programming by double
  word only: two 32-bit writes, the first 8-aligned, the second at +4, into an erased double word
  (or of zeros). A byte or halfword sets SIZERR, a first word off the 8-byte row or a second word
  elsewhere PGAERR, a non-erased target PROGERR, a write with PG clear (locked, or not asked) or
  while an error flag is pending PGSERR; a STRT while errors are pending PGSERR. OPTR reads its
  factory value; WRP1AR/WRP1BR protect pages (WRPERR).
- Stm32F7Flash (RM0410 3.7, FLASH at 0x4002_3C00, single-bank 2 MiB: sectors 4x32 KiB, 128 KiB,
  7x256 KiB): KEYR; CR LOCK/PG/SER/SNB/PSIZE/MER/STRT/EOPIE/ERRIE; SR EOP/OPERR/WRPERR/PGAERR/PGPERR/
  ERSERR/BSY; sector and mass erase; programming at the CR.PSIZE parallelism (x8/x16/x32 one access,
  x64 two aligned words): another access size sets PGPERR, a misaligned one PGAERR, a write with PG
  clear ERSERR. Programming only clears bits (NOR cells), without an error flag. OPTCR reads its
  reset value 0xFFFF_AAFD (nDBANK = 1: single bank, which pyOCD's connect code checks), its nWRP bits
  protect sectors; OPTCR1 0x0040_0080 (boot from 0x0020_0000, the flash's ITCM alias).
- Both: a wrong key, or a key written while unlocked (which ST's HAL guards against), is a bus error
  and leaves CR locked until the next system reset. EOP is set only with EOPIE, OPERR (F7) only with
  ERRIE, as on silicon. Not modelled: option-byte programming (OPTSTRT is ignored), fast programming,
  read protection, ECC, dual-bank modes, power-down (PDKEYR), the caches behind ACR.

`FlashCells` holds a controller's array. Test faults: `stuck_bit_at=ADDR`, that cell does not take the
programmed value (its lowest 0 bit stays 1; a programmed 0xFF shows nothing); Stm32L4Flash's
`failing_programs = N`, the next N double words are not programmed and set PROGERR, as a marginal cell
does once (the algorithm returns an error, pyOCD raises a FlashFailure; a second flash succeeds).
"""

from __future__ import annotations

from collections.abc import Callable
from enum import IntFlag
from typing import Protocol

from hil.hw.emulated.cortex_m import KIB, BusFault, WordRegisters

KEY1, KEY2 = 0x4567_0123, 0xCDEF_89AB


class Memory(Protocol):
    """Where the cells live: the core's memory (hil.hw.emulated.cortex_m.CortexM)."""

    def memory(self, address: int, size: int) -> bytes: ...

    def load(self, address: int, data: bytes) -> None: ...


class FlashCells:
    """A flash array: erase sets cells to 0xFF, programming only clears bits."""

    def __init__(self, memory: Memory, base: int, size: int, *, stuck_bit_at: int | None = None,
                 on_program: Callable[[int, int], None] | None = None):
        self.memory, self.base, self.size = memory, base, size
        self.stuck_bit_at = stuck_bit_at
        self.on_program = on_program or (lambda address, size: None)

    def erased(self, address: int, size: int) -> bool:
        return self.memory.memory(address, size) == b"\xff" * size

    def erase(self, address: int, size: int) -> None:
        self.memory.load(address, b"\xff" * size)

    def program(self, address: int, data: bytes) -> None:
        stored = bytearray(old & new for old, new in zip(self.memory.memory(address, len(data)), data))
        if self.stuck_bit_at is not None and address <= self.stuck_bit_at < address + len(data):
            byte = stored[self.stuck_bit_at - address]
            stored[self.stuck_bit_at - address] = byte | (~byte & (byte + 1) & 0xFF)  # its lowest 0 bit stays 1
        self.memory.load(address, bytes(stored))
        self.on_program(address, len(data))


class _Keys:
    """The KEYR unlock sequence shared by both families."""

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.locked = True
        self.expect_second = False
        self.locked_until_reset = False

    def write(self, address: int, value: int) -> None:
        if self.locked_until_reset:
            raise BusFault(address, True, "FLASH_CR locked until reset after a wrong key")
        if not self.locked or value != (KEY2 if self.expect_second else KEY1):
            self.locked_until_reset, self.locked, self.expect_second = True, True, False
            raise BusFault(address, True, "wrong FLASH key sequence")
        if self.expect_second:
            self.locked = False
        self.expect_second = not self.expect_second


class L4Sr(IntFlag):
    EOP = 1 << 0
    OPERR = 1 << 1
    PROGERR = 1 << 3
    WRPERR = 1 << 4
    PGAERR = 1 << 5
    SIZERR = 1 << 6
    PGSERR = 1 << 7
    MISERR = 1 << 8
    FASTERR = 1 << 9
    RDERR = 1 << 14
    OPTVERR = 1 << 15
    BSY = 1 << 16


class L4Cr(IntFlag):
    PG = 1 << 0
    PER = 1 << 1
    MER1 = 1 << 2
    MER2 = 1 << 15
    STRT = 1 << 16
    OPTSTRT = 1 << 17
    FSTPG = 1 << 18
    EOPIE = 1 << 24
    ERRIE = 1 << 25
    OPTLOCK = 1 << 30
    LOCK = 1 << 31


L4_PROGRAMMING_ERRORS = L4Sr.PROGERR | L4Sr.SIZERR | L4Sr.PGAERR | L4Sr.PGSERR | L4Sr.MISERR | L4Sr.FASTERR
L4_CLEARABLE = 0xC3FB  # SR bits written 1 to clear


class Stm32L4Flash(WordRegisters):
    """The STM32L4 FLASH registers (RM0394 3.7) over one bank of 2 KiB pages."""

    ACR, PDKEYR, KEYR, OPTKEYR, SR, CR, ECCR, OPTR, WRP1AR, WRP1BR = (0x00, 0x04, 0x08, 0x0C, 0x10, 0x14, 0x18,
                                                                     0x20, 0x2C, 0x30)
    OPTR_FACTORY = 0xFFEF_F8AA  # RDP level 0, IWDG_SW = 1 (software watchdog: the algorithm leaves it alone)
    PAGE_SIZE = 2 * KIB

    def __init__(self, cells: FlashCells, base_register: int, *, write_protected_pages: range | None = None):
        self.cells = cells
        self.register_base = base_register
        no_area = 0x0000_00FF  # WRP1xR start 0xFF > end 0: no area, the factory setting
        span = write_protected_pages
        self.wrp1ar = no_area if span is None else (span[-1] << 16 | span[0])
        self.wrp1br = no_area
        self.keys = _Keys()
        self.erases = self.programs = 0
        self.failing_programs = 0  # test fault (module docstring)
        self.reset()

    def reset(self) -> None:
        self.keys.reset()
        self.cr = int(L4Cr.LOCK | L4Cr.OPTLOCK)
        self.sr = 0
        self.acr = 0x0000_0600
        self.pending: tuple[int, int] | None = None  # the first word of a double word being programmed

    @property
    def pages(self) -> int:
        return self.cells.size // self.PAGE_SIZE

    def _protected(self, page: int) -> bool:
        for area in (self.wrp1ar, self.wrp1br):
            if (area & 0xFF) <= page <= (area >> 16 & 0xFF):
                return True
        return False

    def read_word(self, offset: int) -> int:
        return {self.ACR: self.acr, self.SR: self.sr, self.CR: self.cr | (L4Cr.LOCK if self.keys.locked else 0),
                self.OPTR: self.OPTR_FACTORY, self.WRP1AR: self.wrp1ar, self.WRP1BR: self.wrp1br}.get(offset, 0)

    def write_word(self, offset: int, value: int) -> None:
        if offset == self.KEYR:
            self.keys.write(self.register_base + offset, value)
            if not self.keys.locked:
                self.cr &= ~L4Cr.LOCK
        elif offset == self.SR:
            self.sr &= ~(value & L4_CLEARABLE)
        elif offset == self.CR:
            self._write_cr(value)
        elif offset == self.ACR:
            self.acr = value & 0x7F07

    def _write_cr(self, value: int) -> None:
        if self.keys.locked:
            return  # CR cannot be written while locked
        self.cr = value & ~(L4Cr.STRT | L4Cr.OPTSTRT)
        if value & L4Cr.LOCK:
            self.keys.locked = True
        if not value & L4Cr.PG:
            self.pending = None
        if value & L4Cr.STRT:
            self._start(value)

    def _start(self, cr: int) -> None:
        if self.sr & L4_PROGRAMMING_ERRORS or cr & (L4Cr.PG | L4Cr.FSTPG):
            self._fail(L4Sr.PGSERR)
            return
        if cr & L4Cr.PER:
            page = cr >> 3 & 0xFF
            if page >= self.pages:
                self._fail(L4Sr.PGSERR)  # no such page in the one bank
            elif self._protected(page):
                self._fail(L4Sr.WRPERR)
            else:
                self.cells.erase(self.cells.base + page * self.PAGE_SIZE, self.PAGE_SIZE)
                self._done()
        elif cr & (L4Cr.MER1 | L4Cr.MER2):
            if any(self._protected(page) for page in range(self.pages)):
                self._fail(L4Sr.WRPERR)
            else:
                self.cells.erase(self.cells.base, self.cells.size)
                self._done()
        # STRT with neither PER nor MERx: "unpredictable, no error flag" (RM0394): nothing happens

    def _done(self) -> None:
        self.erases += 1
        if self.cr & L4Cr.EOPIE:
            self.sr |= L4Sr.EOP

    def _fail(self, flags: L4Sr) -> None:
        self.sr |= flags | (L4Sr.OPERR if self.cr & L4Cr.ERRIE else 0)

    def store(self, address: int, size: int, value: int) -> None:
        """A write into the flash array: the double-word programming sequence (RM0394 3.3.7)."""
        if self.keys.locked or not self.cr & L4Cr.PG or self.sr & L4_PROGRAMMING_ERRORS:
            self.pending = None
            self._fail(L4Sr.PGSERR)
        elif size != 4:
            self.pending = None
            self._fail(L4Sr.SIZERR)
        elif self.pending is None:
            if address % 8:
                self._fail(L4Sr.PGAERR)
            else:
                self.pending = (address, value)
        else:
            first_address, first = self.pending
            self.pending = None
            if address != first_address + 4:
                self._fail(L4Sr.PGAERR)
            elif self._protected((first_address - self.cells.base) // self.PAGE_SIZE):
                self._fail(L4Sr.WRPERR)
            elif not self.cells.erased(first_address, 8) and (first, value) != (0, 0):
                self._fail(L4Sr.PROGERR)
            elif self.failing_programs:
                self.failing_programs -= 1
                self._fail(L4Sr.PROGERR)
            else:
                self.cells.program(first_address, first.to_bytes(4, "little") + value.to_bytes(4, "little"))
                self.programs += 1
                if self.cr & L4Cr.EOPIE:
                    self.sr |= L4Sr.EOP


class F7Sr(IntFlag):
    EOP = 1 << 0
    OPERR = 1 << 1
    WRPERR = 1 << 4
    PGAERR = 1 << 5
    PGPERR = 1 << 6
    ERSERR = 1 << 7
    BSY = 1 << 16


class F7Cr(IntFlag):
    PG = 1 << 0
    SER = 1 << 1
    MER = 1 << 2
    MER2 = 1 << 15
    STRT = 1 << 16
    EOPIE = 1 << 24
    ERRIE = 1 << 25
    LOCK = 1 << 31


F7_CLEARABLE = 0xF3
F7_SECTORS = (32 * KIB,) * 4 + (128 * KIB,) + (256 * KIB,) * 7  # single bank (RM0410 3.3.1, table 4)


class Stm32F7Flash(WordRegisters):
    """The STM32F76x/77x FLASH registers (RM0410 3.7) over the single-bank sector layout."""

    ACR, KEYR, OPTKEYR, SR, CR, OPTCR, OPTCR1 = 0x00, 0x04, 0x08, 0x0C, 0x10, 0x14, 0x18
    OPTCR_RESET = 0xFFFF_AAFD  # nDBANK (bit 29) = 1: single bank; nWRP all 1: no sector protected; OPTLOCK
    OPTCR1_RESET = 0x0040_0080  # BOOT_ADD0 0x0080: boot from 0x0020_0000; BOOT_ADD1 0x0040: system memory
    OPTKEY1, OPTKEY2 = 0x0819_2A3B, 0x4C5D_6E7F

    def __init__(self, cells: FlashCells, base_register: int, *, write_protected_sectors: tuple[int, ...] = ()):
        self.cells = cells
        self.register_base = base_register
        self.sector_starts = [cells.base + sum(F7_SECTORS[:i]) for i in range(len(F7_SECTORS))]
        self.optcr_reset = self.OPTCR_RESET & ~sum(1 << (16 + sector) for sector in write_protected_sectors)
        self.keys = _Keys()
        self.erases = self.programs = 0
        self.reset()

    def reset(self) -> None:
        self.keys.reset()
        self.cr = int(F7Cr.LOCK)
        self.sr = self.acr = 0
        self.optcr = self.optcr_reset  # option bytes are loaded at reset
        self.optkey_second = False
        self.pending: tuple[int, int] | None = None  # x64: the first word of a double word

    def sector_of(self, address: int) -> int:
        return max(i for i, start in enumerate(self.sector_starts) if start <= address)

    def _protected(self, sector: int) -> bool:
        return not self.optcr >> (16 + sector) & 1

    def read_word(self, offset: int) -> int:
        return {self.ACR: self.acr, self.SR: self.sr, self.CR: self.cr | (F7Cr.LOCK if self.keys.locked else 0),
                self.OPTCR: self.optcr, self.OPTCR1: self.OPTCR1_RESET}.get(offset, 0)

    def write_word(self, offset: int, value: int) -> None:
        if offset == self.KEYR:
            self.keys.write(self.register_base + offset, value)
            if not self.keys.locked:
                self.cr &= ~F7Cr.LOCK
        elif offset == self.OPTKEYR:  # unlocks OPTCR; programming the option bytes is not modelled
            if value == (self.OPTKEY2 if self.optkey_second else self.OPTKEY1):
                self.optkey_second = not self.optkey_second
                if not self.optkey_second:
                    self.optcr &= ~1
        elif offset == self.OPTCR:
            if not self.optcr & 1:
                self.optcr = value & ~0b10  # OPTSTRT ignored
        elif offset == self.SR:
            self.sr &= ~(value & F7_CLEARABLE)
        elif offset == self.CR:
            self._write_cr(value)
        elif offset == self.ACR:
            self.acr = value & 0xB0F

    def _write_cr(self, value: int) -> None:
        if self.keys.locked:
            return
        self.cr = value & ~F7Cr.STRT
        if value & F7Cr.LOCK:
            self.keys.locked = True
        if not value & F7Cr.PG:
            self.pending = None
        if value & F7Cr.STRT:
            self._start(value)

    def _start(self, cr: int) -> None:
        if cr & F7Cr.SER and not cr & (F7Cr.MER | F7Cr.MER2 | F7Cr.PG):
            sector = cr >> 3 & 0x1F
            if sector >= len(F7_SECTORS):
                self._fail(F7Sr.ERSERR)  # no such sector in the single-bank layout
            elif self._protected(sector):
                self._fail(F7Sr.WRPERR)
            else:
                self.cells.erase(self.sector_starts[sector], F7_SECTORS[sector])
                self._done()
        elif cr & F7Cr.MER and not cr & (F7Cr.SER | F7Cr.PG):
            if any(self._protected(sector) for sector in range(len(F7_SECTORS))):
                self._fail(F7Sr.WRPERR)
            else:
                self.cells.erase(self.cells.base, self.cells.size)
                self._done()
        elif cr & (F7Cr.SER | F7Cr.MER | F7Cr.PG):
            self._fail(F7Sr.ERSERR)  # conflicting operations

    def _done(self) -> None:
        self.erases += 1
        if self.cr & F7Cr.EOPIE:
            self.sr |= F7Sr.EOP

    def _fail(self, flags: F7Sr) -> None:
        self.sr |= flags | (F7Sr.OPERR if self.cr & F7Cr.ERRIE else 0)

    def store(self, address: int, size: int, value: int) -> None:
        """A write into the flash array: programming at the PSIZE parallelism (RM0410 3.3.7)."""
        if self.keys.locked or not self.cr & F7Cr.PG:
            self.pending = None
            self._fail(F7Sr.ERSERR)
            return
        psize = 1 << (self.cr >> 8 & 3)  # bytes per program operation: x8, x16, x32, x64
        if size != min(psize, 4):  # x64 arrives as two word writes
            self.pending = None
            self._fail(F7Sr.PGPERR)
            return
        if psize == 8:
            if self.pending is None:
                if address % 8:
                    self._fail(F7Sr.PGAERR)
                else:
                    self.pending = (address, value)
                return
            first_address, first = self.pending
            self.pending = None
            if address != first_address + 4:
                self._fail(F7Sr.PGAERR)
                return
            address, data = first_address, first.to_bytes(4, "little") + value.to_bytes(4, "little")
        elif address % size:
            self._fail(F7Sr.PGAERR)
            return
        else:
            data = value.to_bytes(size, "little")
        if self._protected(self.sector_of(address)):
            self._fail(F7Sr.WRPERR)
            return
        self.cells.program(address, data)
        self.programs += 1
        if self.cr & F7Cr.EOPIE:
            self.sr |= F7Sr.EOP


class Dbgmcu(WordRegisters):
    """DBGMCU (RM0394 46.16 / RM0410 40.16): IDCODE read-only; the freeze registers pyOCD writes hold values."""

    def __init__(self, idcode: int, registers: int):
        self.idcode = idcode
        self.registers = registers  # how many configuration words follow IDCODE (CR, APBxFZ...)
        self.values = [0] * registers

    def read_word(self, offset: int) -> int:
        if offset == 0:
            return self.idcode
        index = offset // 4 - 1
        return self.values[index] if index < self.registers else 0

    def write_word(self, offset: int, value: int) -> None:
        index = offset // 4 - 1
        if 0 <= index < self.registers:
            self.values[index] = value

    def reset(self) -> None:
        pass  # DBGMCU keeps its configuration over a system reset (power-on reset only)


class Inert(WordRegisters):
    """A register block that reads 0 and ignores writes: for one pyOCD's flash algorithms write
    (the IWDG: KR/PR/RLR, when the watchdog is in hardware mode or while it waits on BSY)."""

    def __init__(self, name: str):
        self.name = name

    def read_word(self, offset: int) -> int:
        return 0

    def write_word(self, offset: int, value: int) -> None:
        pass
