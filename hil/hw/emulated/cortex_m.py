"""A Cortex-M core that executes code, on unicorn, behind the emulated probe's access port.

The core's memory (RAM, flash) is one set of host buffers that unicorn maps directly: what a
debugger writes over the AP and what the core fetches and loads are the same bytes. Peripherals
are register models with read/write callbacks; only their address ranges are hooked (1 KiB pages,
unicorn's MMIO), so code in RAM or flash runs at unicorn's speed (about 100 M instructions/s here)
and no Python runs per instruction.

    core = CortexM(CORTEX_M4, [MemoryRegion("sram", 0x2000_0000, 64 * KIB)], boot_address=0x0800_0000)
    core.attach(0x4000_4400, 0x400, my_usart)          # a Peripheral: read(offset, size), write(offset, size, value)
    core.load(0x2000_0000, code)                        # host-side, no debug port
    core.reset()                                        # SP and PC from the vector table at the boot address
    reason = core.run(10_000_000, until=lambda: my_usart.saw_newline)   # a StopReason

`run(max_instructions, until=...)` runs in chunks and evaluates `until` between chunks and whenever
a peripheral calls `request_stop()` (do that from a callback to stop promptly, e.g. on a TX byte).
It returns BREAKPOINT (a BKPT: the core is halted, DFSR.BKPT), FAULT (a bus fault, an unmapped
access or an exception: the core is locked up, `fault` says why), CONDITION or BUDGET.
Peripherals attached later win over earlier ones where they overlap: the PPB's debug registers are
attached first, over 0xE000_0000-0xE00F_FFFF, so a SysTick model at 0xE000_E010 takes its 16 bytes.
A peripheral may raise BusFault; `reset()` is called on every system reset (SYSRESETREQ, nRESET).
`WordRegisters` turns byte and halfword accesses into word reads and merges.

Debug (ARMv7-M, as pyOCD drives it through the AP): DHCSR C_DEBUGEN/C_HALT/C_STEP/C_MASKINTS and
S_REGRDY/S_HALT/S_LOCKUP/S_RETIRE_ST/S_RESET_ST; DCRSR/DCRDR on the core registers (R0-R12, SP, LR,
PC, xPSR, MSP, PSP, CONTROL/FAULTMASK/BASEPRI/PRIMASK, FPSCR, S0-S31); DFSR; DEMCR VC_CORERESET
(halt on reset) and VC_HARDERR (halt instead of lockup); AIRCR SYSRESETREQ/VECTRESET; a ROM table
at 0xE00F_F000 whose one entry is the SCS; CPUID and MVFR0-2 of the identity.

What runs here and what does not:
- A resume while C_DEBUGEN is set (a debugger is in control, e.g. pyOCD calling a flash-algorithm
  function) runs the core synchronously, inside the DHCSR write, until a BKPT, a fault or a budget of
  instructions (`RESUME_BUDGET`); past the budget the core counts as running and pyOCD's own
  timeout fires as it would on a core that spins; its later halt stops it where it was.
- After a reset that is not caught (DEMCR.VC_CORERESET clear), or once the debugger lets go
  (C_DEBUGEN cleared), the core counts as running the application, which is NOT executed here: the
  emulated board boots the flashed bytes in QEMU. `run()` is for whoever models the rest of the chip.
- Exceptions: `take_exception(number, return_address)` enters a handler (basic frame on MSP, EXC_RETURN
  in LR, the vector at VTOR) for a chip model that decides an interrupt is taken; the handler's branch to
  EXC_RETURN unstacks it. There is no NVIC here: no priorities, no preemption by itself.
- Not modelled: the NVIC, vector fetch on a fault (a fault locks the core up), WFI/WFE sleep (unicorn
  returns from the run at a WFI), caches, the MPU, DWT/FPB comparators (they read 0: no hardware
  breakpoints or watchpoints).
"""

from __future__ import annotations

import ctypes
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from enum import StrEnum
from typing import ClassVar, Protocol

from unicorn import (UC_ARCH_ARM, UC_HOOK_INTR, UC_HOOK_MEM_WRITE_PROT, UC_MODE_MCLASS, UC_MODE_THUMB,
                     UC_PROT_ALL, UC_PROT_EXEC, UC_PROT_READ, Uc, UcError)
from unicorn import arm_const as arm

KIB, MIB = 1 << 10, 1 << 20
PAGE = 1 * KIB  # unicorn's ARM page: the granularity of MMIO mappings
EXCP_BKPT = 7  # QEMU's exception number for BKPT, as unicorn's interrupt hook reports it
EXCP_EXCEPTION_EXIT = 8  # QEMU's: a branch to an EXC_RETURN value, the end of a handler taken by take_exception
EXC_RETURN_THREAD, EXC_RETURN_HANDLER = 0xFFFF_FFF9, 0xFFFF_FFF1  # to thread / handler mode, MSP, basic frame
VTOR = 0xE000_ED08
RESUME_BUDGET = 1_000_000  # a resume's instructions before the core counts as spinning: >100x the longest STM32
# flash-algorithm call (ProgramPage of 1 KiB: about 5,000); fresh code costs some 1 us an instruction to translate


class BusFault(Exception):
    """An access the bus does not accept (an AP transfer fault, a core's bus error)."""

    def __init__(self, address: int, write: bool, why: str = ""):
        detail = f" ({why})" if why else ""
        super().__init__(f"bus fault {'writing' if write else 'reading'} {address:#010x}{detail}")
        self.address, self.write = address, write


class Peripheral(Protocol):
    """A register model on the system bus; offsets are from the address it is attached at."""

    def read(self, offset: int, size: int) -> int: ...

    def write(self, offset: int, size: int, value: int) -> None: ...

    def reset(self) -> None: ...


class WordRegisters:
    """A peripheral of 32-bit registers: byte and halfword reads take their lanes of the word,
    writes merge into it (as a bus would); subclasses implement read_word and write_word."""

    def read(self, offset: int, size: int) -> int:
        shift = 8 * (offset & 3)
        return self.read_word(offset & ~3) >> shift & ((1 << 8 * size) - 1)

    def write(self, offset: int, size: int, value: int) -> None:
        if size < 4:
            shift, mask = 8 * (offset & 3), (1 << 8 * size) - 1
            value = self.read_word(offset & ~3) & ~(mask << shift) | (value & mask) << shift
        self.write_word(offset & ~3, value & 0xFFFF_FFFF)

    def read_word(self, offset: int) -> int:
        raise NotImplementedError

    def write_word(self, offset: int, value: int) -> None:
        raise NotImplementedError

    def reset(self) -> None:
        pass


class MemoryKind(StrEnum):
    RAM = "ram"
    FLASH = "flash"  # the core reads and fetches it; writes go to a store handler (its flash controller)


@dataclass(frozen=True)
class MemoryRegion:
    name: str
    start: int
    size: int
    kind: MemoryKind = MemoryKind.RAM
    aliases: tuple[int, ...] = ()  # other addresses the same cells answer at (a boot alias, SRAM2's second home)


@dataclass(frozen=True)
class CoreIdentity:
    """What the debugger reads to identify the core, its debug port and its access port."""

    name: str
    cpuid: int
    mvfr: tuple[int, int, int]  # MVFR0-2: which FPU pyOCD finds
    dpidr: int
    ap_idr: int
    unicorn_model: int


# Cortex-M4F r0p1: FPv4 single precision (PM0214); SW-DP v1, AHB-AP with 4 KiB wrap (Cortex-M4 TRM).
CORTEX_M4 = CoreIdentity("Cortex-M4", 0x410F_C241, (0x1011_0021, 0x1100_0011, 0), 0x2BA0_1477, 0x2477_0011,
                         arm.UC_CPU_ARM_CORTEX_M4)
# Cortex-M7 r1p0 as on the STM32F76x: FPv5 double precision (PM0253); SW-DP v2 0x5BA02477 (RM0410 40.4),
# its AHB-AP 0x74770001.
CORTEX_M7 = CoreIdentity("Cortex-M7", 0x411F_C270, (0x1011_0221, 0x1200_0011, 0x0000_0040), 0x5BA0_2477,
                         0x7477_0001, arm.UC_CPU_ARM_CORTEX_M7)


class StopReason(StrEnum):
    BREAKPOINT = "breakpoint"
    FAULT = "fault"
    CONDITION = "condition"
    BUDGET = "budget"
    STEPPED = "stepped"


class _Cells:
    """One region's cells. RAM is a host buffer unicorn maps at the start and each alias. Flash is
    unicorn's own read-only mapping, so that a write the controller handles leaves the cells alone
    (unicorn stores through a host buffer even when the write hook handled it); its aliases are
    read-through MMIO pages (code cannot execute from them)."""

    def __init__(self, uc: Uc, region: MemoryRegion):
        self.uc, self.region = uc, region
        self.store: Callable[[int, int, int], None] | None = None  # flash: the controller's bus write
        self.dirty: tuple[int, int] | None = None  # offsets changed from the host since the last run
        if region.kind is MemoryKind.RAM:
            self.buffer = (ctypes.c_ubyte * region.size)()
            self.view: memoryview | None = memoryview(self.buffer).cast("B")
            for address in self.addresses:
                uc.mem_map_ptr(address, region.size, UC_PROT_ALL, ctypes.addressof(self.buffer))
        else:
            self.view = None
            uc.mem_map(region.start, region.size, UC_PROT_READ | UC_PROT_EXEC)
            uc.mem_write(region.start, b"\xff" * region.size)  # erased

    @property
    def addresses(self) -> tuple[int, ...]:
        return (self.region.start, *self.region.aliases)

    def read(self, offset: int, size: int) -> bytes:
        if self.view is not None:
            return bytes(self.view[offset:offset + size])
        return bytes(self.uc.mem_read(self.region.start + offset, size))

    def write(self, offset: int, data: bytes) -> None:
        if self.view is not None:
            self.view[offset:offset + len(data)] = data
        else:
            self.uc.mem_write(self.region.start + offset, data)
        low, high = self.dirty or (offset, offset + len(data))
        self.dirty = (min(low, offset), max(high, offset + len(data)))


def _ppb_id_registers(base: int, pidr: int, component_class: int) -> dict[int, int]:
    """CoreSight PIDR4 and PIDR0-3 / CIDR0-3 at base+0xFD0 / 0xFE0 / 0xFF0, one byte per word."""
    regs = {base + 0xFD0: pidr >> 32 & 0xFF}
    regs |= {base + 0xFE0 + 4 * i: pidr >> (8 * i) & 0xFF for i in range(4)}
    regs |= {base + 0xFF0 + 4 * i: byte for i, byte in enumerate((0x0D, component_class << 4, 0x05, 0xB1))}
    return regs


class DebugRegisters(WordRegisters):
    """The private peripheral bus as the debugger sees it: SCS debug registers, CPUID, the ROM table.

    Offsets are absolute addresses here (attached at 0). Other PPB registers (VTOR, CPACR, DWT, FPB,
    DBGMCU unless a chip attaches its own) hold what was written and read 0 until then.
    """

    BASE, SIZE = 0xE000_0000, 0x10_0000
    ROM_TABLE, SCS = 0xE00F_F000, 0xE000_E000
    CPUID, AIRCR, DFSR = 0xE000_ED00, 0xE000_ED0C, 0xE000_ED30
    DHCSR, DCRSR, DCRDR, DEMCR = 0xE000_EDF0, 0xE000_EDF4, 0xE000_EDF8, 0xE000_EDFC
    MVFR0 = 0xE000_EF40
    # ISAR3 (DSP), MPU_TYPE (8 regions); a ROM table whose only entry points at the SCS (PIDR part
    # 0x4C4 / 0x00C, designer Arm 0x43B): entry = SCS - ROM_TABLE, present, 32-bit format.
    FIXED: ClassVar[dict[int, int]] = {0xE000_ED6C: 0x0111_1110, 0xE000_ED90: 0x0000_0800,
                                       ROM_TABLE: 0xFFF0_F003, ROM_TABLE + 4: 0}
    FIXED |= _ppb_id_registers(ROM_TABLE, 0x4_000B_B4C4, 0x1) | _ppb_id_registers(SCS, 0x4_000B_B00C, 0xE)
    C_DEBUGEN, C_HALT, C_STEP, C_MASKINTS = 1, 1 << 1, 1 << 2, 1 << 3
    S_REGRDY, S_HALT, S_LOCKUP, S_RETIRE_ST, S_RESET_ST = 1 << 16, 1 << 17, 1 << 19, 1 << 24, 1 << 25
    DFSR_HALTED, DFSR_BKPT, DFSR_VCATCH = 1, 1 << 1, 1 << 3
    VC_CORERESET, VC_HARDERR = 1, 1 << 10

    def __init__(self, core: CortexM):
        self.core = core
        self.fixed = self.FIXED | {self.CPUID: core.identity.cpuid}
        self.fixed |= {self.MVFR0 + 4 * i: value for i, value in enumerate(core.identity.mvfr)}
        self.stored: dict[int, int] = {}
        self.control = 0  # DHCSR C_* bits as last written
        self.dcrdr = self.demcr = self.dfsr = 0
        self.reset_sticky = True  # S_RESET_ST: "reset since last read", set at power-on

    def reset(self) -> None:
        pass  # debug registers live in the power-on domain: a system reset keeps DEMCR and C_DEBUGEN

    def read_word(self, offset: int) -> int:
        if offset == self.DHCSR:
            core = self.core
            value = self.control & ~self.C_HALT | self.S_REGRDY | int(self.reset_sticky) * self.S_RESET_ST
            if core.halted:
                value |= self.C_HALT | self.S_HALT
            elif core.lockup:
                value |= self.S_LOCKUP
            else:
                value |= self.S_RETIRE_ST  # running: instructions retire
            self.reset_sticky = False
            return value
        if offset in (self.DCRDR, self.DEMCR, self.DFSR):
            return {self.DCRDR: self.dcrdr, self.DEMCR: self.demcr, self.DFSR: self.dfsr}[offset]
        if offset == self.AIRCR:
            return 0xFA05_0000  # VECTKEYSTAT, little-endian, PRIGROUP 0
        return self.fixed.get(offset, self.stored.get(offset, 0))

    def write_word(self, offset: int, value: int) -> None:
        if offset in self.fixed:
            return
        if offset == self.DHCSR:
            if value >> 16 == 0xA05F:  # DBGKEY, or the write is ignored
                self.control = value & 0xF
                self.core.debug_control(value)
        elif offset == self.DCRSR:  # REGWnR (bit 16): write DCRDR into the register, else read it into DCRDR
            if value & 1 << 16:
                self.core.write_register(value & 0x7F, self.dcrdr)
            else:
                self.dcrdr = self.core.read_register(value & 0x7F)
        elif offset == self.DCRDR:
            self.dcrdr = value
        elif offset == self.DEMCR:
            self.demcr = value
        elif offset == self.DFSR:
            self.dfsr &= ~value  # write one to clear
        elif offset == self.AIRCR:
            if value >> 16 == 0x05FA and value & 0b101:  # VECTKEY with SYSRESETREQ (bit 2) or VECTRESET (bit 0)
                self.core.reset(system=bool(value & 0b100))
        else:
            self.stored[offset] = value


# DCRSR REGSEL -> unicorn register (ARMv7-M C1.6.3); 20 (CONTROL/FAULTMASK/BASEPRI/PRIMASK) is composed.
_REGISTERS: dict[int, int] = {i: arm.UC_ARM_REG_R0 + i for i in range(13)} | {
    13: arm.UC_ARM_REG_SP, 14: arm.UC_ARM_REG_LR, 15: arm.UC_ARM_REG_PC, 16: arm.UC_ARM_REG_XPSR,
    17: arm.UC_ARM_REG_MSP, 18: arm.UC_ARM_REG_PSP, 33: arm.UC_ARM_REG_FPSCR,
} | {0x40 + i: arm.UC_ARM_REG_S0 + i for i in range(32)}
_SPECIAL = ((24, arm.UC_ARM_REG_CONTROL), (16, arm.UC_ARM_REG_FAULTMASK), (8, arm.UC_ARM_REG_BASEPRI),
            (0, arm.UC_ARM_REG_PRIMASK))
_CONTROL_FAULTMASK_BASEPRI_PRIMASK = 20


@dataclass
class _Mapping:
    base: int
    size: int
    peripheral: Peripheral


class CortexM:
    """The core, its memory and its bus; see the module docstring."""

    def __init__(self, identity: CoreIdentity, memories: list[MemoryRegion], boot_address: int = 0):
        self.identity = identity
        self.boot_address = boot_address
        self.uc = Uc(UC_ARCH_ARM, UC_MODE_THUMB | UC_MODE_MCLASS)
        self.uc.ctl_set_cpu_model(identity.unicorn_model)
        self.cells = [_Cells(self.uc, region) for region in memories]
        for cells in self.cells:
            if cells.region.kind is MemoryKind.FLASH:
                for alias in cells.region.aliases:
                    self.uc.mmio_map(alias, cells.region.size, self._alias_read, cells, self._alias_write, cells)
        self._mappings: list[_Mapping] = []
        self._mapped_pages: set[int] = set()
        self.uc.hook_add(UC_HOOK_INTR, self._on_interrupt)
        self.uc.hook_add(UC_HOOK_MEM_WRITE_PROT, self._on_flash_write)
        self.debug = DebugRegisters(self)
        self.attach(DebugRegisters.BASE, DebugRegisters.SIZE, _Absolute(self.debug, DebugRegisters.BASE))
        self.halted = self.lockup = False
        self.fault: str | None = None  # why the core locked up
        self.resets = 0
        self._stop: StopReason | None = None
        self._extra_registers: dict[int, int] = {}  # REGSEL values unicorn has no register for
        self.active_exceptions: list[int] = []  # taken by take_exception, innermost last

    # --- memory ---
    def _locate(self, address: int, size: int) -> tuple[_Cells, int] | None:
        for cells in self.cells:
            for start in cells.addresses:
                if start <= address and address + size <= start + cells.region.size:
                    return cells, address - start
        return None

    def memory(self, address: int, size: int) -> bytes:
        """What memory holds now (flash included), without the bus: raises ValueError outside one region."""
        cells, offset = self._locate_or_refuse(address, size)
        return cells.read(offset, size)

    def load(self, address: int, data: bytes) -> None:
        """Put bytes into memory (flash included) from the host, bypassing any flash controller."""
        cells, offset = self._locate_or_refuse(address, len(data))
        cells.write(offset, data)

    def _locate_or_refuse(self, address: int, size: int) -> tuple[_Cells, int]:
        found = self._locate(address, size)
        if found is None:
            raise ValueError(f"{address:#010x}+{size} is not inside one memory region")
        return found

    def region(self, name: str) -> MemoryRegion:
        return next(cells.region for cells in self.cells if cells.region.name == name)

    def region_at(self, address: int, size: int = 1) -> MemoryRegion | None:
        """The memory region holding [address, address + size) at its start or an alias, if one does."""
        found = self._locate(address, size)
        return found[0].region if found else None

    def set_store_handler(self, name: str, store: Callable[[int, int, int], None]) -> None:
        """Writes into flash region `name`, by the core or the debugger, go to `store(address, size, value)`."""
        next(cells for cells in self.cells if cells.region.name == name).store = store

    # --- peripherals ---
    def attach(self, base: int, size: int, peripheral: Peripheral) -> None:
        """Put a peripheral on the bus at [base, base + size); later attachments win where they overlap."""
        if self._locate(base, 1) or self._locate(base + size - 1, 1):
            raise ValueError(f"{base:#010x}+{size:#x} overlaps memory; peripherals go elsewhere")
        self._mappings.append(_Mapping(base, size, peripheral))
        first, last = base // PAGE, (base + size - 1) // PAGE
        pages = [page for page in range(first, last + 1) if page not in self._mapped_pages]
        for start, count in _runs(pages):
            self.uc.mmio_map(start * PAGE, count * PAGE, self._mmio_read, start * PAGE, self._mmio_write, start * PAGE)
        self._mapped_pages.update(pages)

    def _peripheral_at(self, address: int, size: int, write: bool) -> tuple[Peripheral, int]:
        for mapping in reversed(self._mappings):
            if mapping.base <= address and address + size <= mapping.base + mapping.size:
                return mapping.peripheral, address - mapping.base
        raise BusFault(address, write, "nothing there")

    def bus_read(self, address: int, size: int) -> int:
        """A read on the system bus, as the debugger's access port makes it."""
        if found := self._locate(address, size):
            cells, offset = found
            return int.from_bytes(cells.read(offset, size), "little")
        peripheral, offset = self._peripheral_at(address, size, write=False)
        return peripheral.read(offset, size)

    def bus_write(self, address: int, value: int, size: int) -> None:
        """A write on the system bus, as the debugger's access port makes it; flash goes to its controller."""
        if found := self._locate(address, size):
            cells, offset = found
            if cells.store is not None:
                cells.store(address, size, value)
            elif cells.region.kind is MemoryKind.FLASH:
                raise BusFault(address, True, "flash without a controller")
            else:
                cells.write(offset, value.to_bytes(size, "little"))
            return
        peripheral, offset = self._peripheral_at(address, size, write=True)
        peripheral.write(offset, size, value)

    def _mmio_read(self, uc: Uc, offset: int, size: int, page_base: int) -> int:
        try:
            peripheral, inner = self._peripheral_at(page_base + offset, size, write=False)
            return peripheral.read(inner, size)
        except BusFault as error:
            self._fault(str(error))
            return 0

    def _mmio_write(self, uc: Uc, offset: int, size: int, value: int, page_base: int) -> None:
        try:
            peripheral, inner = self._peripheral_at(page_base + offset, size, write=True)
            peripheral.write(inner, size, value)
        except BusFault as error:
            self._fault(str(error))

    def _alias_read(self, uc: Uc, offset: int, size: int, cells: _Cells) -> int:
        return int.from_bytes(cells.read(offset, size), "little")

    def _alias_write(self, uc: Uc, offset: int, size: int, value: int, cells: _Cells) -> None:
        if not self._on_flash_write(uc, 0, cells.region.start + offset, size, value, None):
            self._fault(str(BusFault(cells.region.start + offset, True, "flash without a controller")))

    def _on_flash_write(self, uc: Uc, access: int, address: int, size: int, value: int, _: object) -> bool:
        found = self._locate(address, size)
        if found is None or found[0].store is None:
            return False  # a write to read-only memory: unicorn stops with UC_ERR_WRITE_PROT
        try:
            found[0].store(address, size, value)
        except BusFault as error:
            self._fault(str(error))
        return True  # handled: the controller decided what the cells hold

    def _on_interrupt(self, uc: Uc, number: int, _: object) -> None:
        if number == EXCP_BKPT:
            self._stop = StopReason.BREAKPOINT
            uc.emu_stop()
        elif number == EXCP_EXCEPTION_EXIT and self.active_exceptions:
            self._exception_return()
        else:
            self._fault(f"exception {number} at pc {uc.reg_read(arm.UC_ARM_REG_PC):#010x} (not modelled)")

    def _fault(self, why: str) -> None:
        if self._stop is not StopReason.FAULT:
            self.fault = why
        self._stop = StopReason.FAULT
        self.uc.emu_stop()

    def request_stop(self) -> None:
        """From a peripheral callback: end the current run chunk now, so `until` is evaluated."""
        self.uc.emu_stop()

    # --- execution ---
    def run(self, max_instructions: int, until: Callable[[], bool] | None = None, chunk: int = 100_000) -> StopReason:
        """Run from the current PC; the core is halted or locked up after, or still running (BUDGET)."""
        self.halted = self.lockup = False
        self.fault = None
        self._flush_stale_code()
        left = max_instructions
        while left > 0:
            count = min(chunk, left) if until else left
            self._stop = None
            try:
                self.uc.emu_start(self.read_register(15) | 1, 0xFFFF_FFFF, count=count)
            except UcError as error:  # an unmapped or read-only access: unicorn stops by itself
                if self._stop is not StopReason.FAULT:
                    self.fault = f"{error} at pc {self.read_register(15):#010x}"
                self._stop = StopReason.FAULT
            if self._stop is StopReason.BREAKPOINT:
                self.halted = True
                self.debug.dfsr |= DebugRegisters.DFSR_BKPT
                return StopReason.BREAKPOINT
            if self._stop is StopReason.FAULT:
                return self._locked_up()
            if until is not None and until():
                return StopReason.CONDITION
            left -= count  # a chunk ended early by request_stop counts whole: the budget is an upper bound
        return StopReason.BUDGET

    def step(self) -> StopReason:
        """One instruction, then halted (as C_STEP does)."""
        self._flush_stale_code()
        self._stop = None
        try:
            self.uc.emu_start(self.read_register(15) | 1, 0xFFFF_FFFF, count=1)
        except UcError as error:
            if self._stop is not StopReason.FAULT:
                self.fault = f"{error} at pc {self.read_register(15):#010x}"
            self._stop = StopReason.FAULT
        if self._stop is StopReason.FAULT:
            return self._locked_up()
        self.halted = True
        self.debug.dfsr |= DebugRegisters.DFSR_HALTED | (DebugRegisters.DFSR_BKPT if self._stop else 0)
        return StopReason.STEPPED

    def _locked_up(self) -> StopReason:
        if self.debug.control & DebugRegisters.C_DEBUGEN and self.debug.demcr & DebugRegisters.VC_HARDERR:
            self.halted = True  # the fault is caught: halted in debug state instead of locking up
            self.debug.dfsr |= DebugRegisters.DFSR_VCATCH
        else:
            self.lockup = True
        return StopReason.FAULT

    def _flush_stale_code(self) -> None:
        for cells in self.cells:
            if cells.dirty:
                low, high = cells.dirty
                for start in cells.addresses:
                    self.uc.ctl_remove_cache(start + low, start + high)
                cells.dirty = None

    def debug_control(self, dhcsr: int) -> None:
        """A DHCSR write with DBGKEY: halt, resume (run here), step, or let the core go."""
        if not dhcsr & DebugRegisters.C_DEBUGEN:
            self.halted = False  # halting debug off: the application runs (not executed here)
        elif dhcsr & DebugRegisters.C_HALT:
            if not self.halted:
                self.halted, self.lockup = True, False
                self.debug.dfsr |= DebugRegisters.DFSR_HALTED
        elif self.halted:
            self.halted = False
            if dhcsr & DebugRegisters.C_STEP:
                self.step()
            else:
                self.run(RESUME_BUDGET)

    def reset(self, system: bool = True) -> None:
        """SP and PC from the vector table at the boot address; memory keeps its contents, as on a warm
        reset. A system reset also resets every peripheral; a caught reset (DEMCR.VC_CORERESET) halts."""
        self.resets += 1
        self.active_exceptions = []
        if system:
            for mapping in self._mappings:
                mapping.peripheral.reset()
        for index in range(13):
            self.write_register(index, 0)
        vector_sp, vector_pc = (self.bus_read(self.boot_address + 4 * i, 4) for i in range(2))
        self.write_register(_CONTROL_FAULTMASK_BASEPRI_PRIMASK, 0)
        self.write_register(17, vector_sp & ~3)
        self.write_register(18, 0)
        self.write_register(14, 0xFFFF_FFFF)
        self.write_register(15, vector_pc & ~1)
        self.write_register(16, (vector_pc & 1) << 24)  # EPSR.T from the vector's bit 0
        self.lockup, self.fault = False, None
        debug = self.debug
        self.halted = bool(debug.control & DebugRegisters.C_DEBUGEN and debug.demcr & DebugRegisters.VC_CORERESET)
        debug.dfsr |= DebugRegisters.DFSR_VCATCH if self.halted else 0
        debug.reset_sticky = True

    # --- exceptions, for a chip model that decides when one is taken (this core has no NVIC) ---
    @property
    def interrupts_masked(self) -> bool:
        """PRIMASK or FAULTMASK set: no configurable-priority exception is taken (BASEPRI is not modelled)."""
        return bool(self.uc.reg_read(arm.UC_ARM_REG_PRIMASK) & 1 or self.uc.reg_read(arm.UC_ARM_REG_FAULTMASK) & 1)

    def take_exception(self, number: int, return_address: int) -> None:
        """Exception entry (ARMv7-M ARM B1.5.6): the basic frame (R0-R3, R12, LR, the return address, xPSR)
        pushed on MSP, 8-byte aligned (xPSR bit 9 says so), LR = EXC_RETURN, PC from the vector table at VTOR.
        Call it between instructions (from a block hook: `return_address` is the block's). Not modelled:
        PSP/thread stacks, the FP frame (soft-float code), priorities and IPSR (reads 0 in the handler)."""
        sp = self.uc.reg_read(arm.UC_ARM_REG_MSP)
        realign = (sp - 32) & 4
        frame_at = (sp - 32) & ~7
        registers = [self.uc.reg_read(reg) for reg in (arm.UC_ARM_REG_R0, arm.UC_ARM_REG_R1, arm.UC_ARM_REG_R2,
                                                        arm.UC_ARM_REG_R3, arm.UC_ARM_REG_R12, arm.UC_ARM_REG_LR)]
        xpsr = self.uc.reg_read(arm.UC_ARM_REG_XPSR) & ~(1 << 9) | (realign and 1 << 9)
        frame = registers + [return_address & ~1, xpsr]
        self.uc.mem_write(frame_at, b"".join(word.to_bytes(4, "little") for word in frame))
        self.uc.reg_write(arm.UC_ARM_REG_MSP, frame_at)
        self.uc.reg_write(arm.UC_ARM_REG_SP, frame_at)
        self.uc.reg_write(arm.UC_ARM_REG_LR, EXC_RETURN_HANDLER if self.active_exceptions else EXC_RETURN_THREAD)
        vector = self.bus_read((self.bus_read(VTOR, 4) or self.boot_address) + 4 * number, 4)
        self.active_exceptions.append(number)
        self.uc.reg_write(arm.UC_ARM_REG_PC, vector | 1)

    def _exception_return(self) -> None:
        """The handler branched to EXC_RETURN (ARMv7-M ARM B1.5.8): unstack the frame take_exception pushed."""
        sp = self.uc.reg_read(arm.UC_ARM_REG_MSP)
        frame = [int.from_bytes(self.uc.mem_read(sp + 4 * i, 4), "little") for i in range(8)]
        for reg, value in zip((arm.UC_ARM_REG_R0, arm.UC_ARM_REG_R1, arm.UC_ARM_REG_R2, arm.UC_ARM_REG_R3,
                               arm.UC_ARM_REG_R12, arm.UC_ARM_REG_LR), frame):
            self.uc.reg_write(reg, value)
        sp += 32 + (4 if frame[7] & 1 << 9 else 0)
        self.uc.reg_write(arm.UC_ARM_REG_MSP, sp)
        self.uc.reg_write(arm.UC_ARM_REG_SP, sp)
        self.uc.reg_write(arm.UC_ARM_REG_XPSR, frame[7] & ~(1 << 9 | 0x1FF))
        self.active_exceptions.pop()
        self.uc.reg_write(arm.UC_ARM_REG_PC, frame[6] | 1)

    # --- registers ---
    def read_register(self, index: int) -> int:
        if index == _CONTROL_FAULTMASK_BASEPRI_PRIMASK:
            return sum((self.uc.reg_read(reg) & 0xFF) << shift for shift, reg in _SPECIAL)
        if index in _REGISTERS:
            return self.uc.reg_read(_REGISTERS[index]) & 0xFFFF_FFFF
        return self._extra_registers.get(index, 0)

    def write_register(self, index: int, value: int) -> None:
        if index == _CONTROL_FAULTMASK_BASEPRI_PRIMASK:
            for shift, reg in _SPECIAL:
                self.uc.reg_write(reg, value >> shift & 0xFF)
        elif index in _REGISTERS:
            self.uc.reg_write(_REGISTERS[index], value & ~1 if index == 15 else value)
        else:
            self._extra_registers[index] = value


class _Absolute:
    """A peripheral whose offsets are absolute addresses (the PPB model)."""

    def __init__(self, inner: WordRegisters, base: int):
        self.inner, self.base = inner, base

    def read(self, offset: int, size: int) -> int:
        return self.inner.read(self.base + offset, size)

    def write(self, offset: int, size: int, value: int) -> None:
        self.inner.write(self.base + offset, size, value)

    def reset(self) -> None:
        self.inner.reset()


def _runs(pages: list[int]) -> Iterator[tuple[int, int]]:
    """Consecutive page numbers as (first, count)."""
    start = previous = None
    for page in pages:
        if previous is not None and page == previous + 1:
            previous = page
            continue
        if start is not None:
            yield start, previous - start + 1
        start = previous = page
    if start is not None:
        yield start, previous - start + 1
