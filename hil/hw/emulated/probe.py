"""The emulated board's Probe edge: pyOCD's remote-probe protocol in front of an emulated target chip.

Unmodified pyOCD connects to it with `unique_id="remote:127.0.0.1:PORT"` (its TCPClientProbe) and
does what it does with a real board: SWD connect, DP power-up, AP scan, ROM-table walk, core
identification, halt, core-register access, flash programming through the target's own flash
algorithm (loaded into SRAM and run on the core), read-back and reset. Only the lowest level is
emulated: every pyOCD access ends in a DP or AP register access here, as it would on the wire, and
the core behind the AP executes code (hil.hw.emulated.cortex_m, on unicorn).

    DebugPort (DPIDR, CTRL/STAT, SELECT, RDBUFF, ABORT)
      -> MemAP #0 (AHB-AP: CSW, TAR, DRW, BD0-3, CFG, BASE, IDR)
        -> the chip's system bus: its memories (the core's own), its FLASH controller, DBGMCU,
           the PPB (ROM table at 0xE00F_F000, SCS debug registers)

One probe serves one chip, by pyOCD target name (`CHIPS`):
- "cortex_m", the MPS2 boards: code RAM at 0x0 and RAM at 0x2000_0000 (4 MiB each), no flash (pyOCD
  writes it as RAM); a Cortex-M4 (AN386), or a Cortex-M7 with `core="cortex-m7"` (AN500).
- "stm32l432kc" (RM0394): flash 256 KiB at 0x0800_0000 (2 KiB pages, aliased at 0 for boot), SRAM1
  48 KiB at 0x2000_0000, SRAM2 16 KiB at 0x1000_0000 (and 0x2000_C000), FLASH at 0x4002_2000,
  DBGMCU IDCODE 0x1001_6435 (DEV_ID 0x435); Cortex-M4.
- "stm32f767zi" (RM0410): flash 2 MiB at 0x0800_0000 in single-bank sectors 4x32 KiB, 128 KiB,
  7x256 KiB (aliased at 0x0020_0000, its ITCM address and the boot address), SRAM 512 KiB at
  0x2000_0000, FLASH at 0x4002_3C00 (OPTCR reads nDBANK = 1), DBGMCU IDCODE 0x1001_6451 (DEV_ID
  0x451); Cortex-M7 r1p0.
The flash controllers are hil.hw.emulated.stm32_flash's. Besides them, only what pyOCD's own target
code touches answers: DBGMCU (its connect hooks write CR and the freeze registers; the L4 algorithm
reads IDCODE) and the IWDG at 0x4000_3000 (the algorithms write KR/PR/RLR), which reads 0 and ignores
writes. Any other address bus-faults (pyOCD gets a transfer fault).

After the final reset pyOCD lets the core run: the application is NOT executed here. The emulated
board takes the flashed bytes with `memory()` and boots exactly those in QEMU.

Release hook: the first time after a reset (SYSRESETREQ, VECTRESET, nRESET pulsed or released) that a
request leaves the core neither halted, locked up nor held in reset, the chip has left reset to run what
its flash holds: `releases` counts up and `on_release()` is called, for whoever models the running MCU
(a bench that boots the flash in QEMU). It is called in the probe's server thread, under its request
lock, before that request is answered (so before pyOCD's reset returns): keep it short, take what it
needs (`memory()`) and hand the rest to a thread of its own. A reset caught by DEMCR.VC_CORERESET is no
release until the debugger resumes the core.

Wire format (pyocd/probe/tcp_probe_server.py): one JSON object a line,
`{"id", "request", "arguments"}` -> `{"id", "status", "result"|"error"}`. The probe claims no
capabilities, so pyOCD selects APs by writing DP SELECT itself and never sends SWJ sequences.
`get_memory_interface_for_ap` answers null by default: with a handle, pyOCD sends a RAM load's
bytearray to json.dumps, which fails (RamBuilder -> RemoteMemoryInterface.write_memory_block8).

`EmulatedProbe(unique_id, target)` serves one in a thread of the calling process (a context manager;
`address` is "remote:127.0.0.1:PORT"); `python -m hil.hw.emulated.probe --unique-id ID --target T`
serves one from a shell.

Observations: `memory(address, size)` (what the target's memory, flash included, holds now, without
the debug port: how the emulated board hands the flashed image to QEMU), `resets`, `releases`, `memory_writes`
(debugger writes into RAM or flash), `erases` and `programs` (flash operations the controller
carried out: pages or sectors, double words or PSIZE units), `connections`, `max_concurrent`, `core`.

Test faults (for tests only; each makes the probe misbehave as a broken board would):
- `responding = False`: no ACK from the target (pyOCD says "Target not detected");
- `stalled = True`: requests are read and never answered (a hung probe);
- `latency_s`: every answer waits this long (a slow probe);
- `corrupt_program_at=ADDR`: the cell at ADDR does not take the programmed value (its lowest 0 bit
  stays 1), in flash or RAM: hil.hw.flasher's read-back verify fails;
- `tamper_after_verify_at=ADDR`: once ADDR has been written and then read back over the AP (the
  verify), one of its bits flips in the stored memory: the flash verifies, the bytes booted differ;
- `write_protect_at=ADDR`: the flash page (L4) or sector (F7) holding ADDR is write-protected by its
  option bytes: erasing it fails with WRPERR and pyOCD reports a flash failure;
- `failing_programs = N` (stm32l432kc): the next N double words programmed fail with PROGERR: this flash
  fails, pyOCD reports a flash failure, and the next flash succeeds.
"""

from __future__ import annotations

import argparse
import json
import socketserver
import threading
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Self

from hil.hw.emulated.cortex_m import (CORTEX_M4, CORTEX_M7, KIB, MIB, BusFault, CoreIdentity, CortexM,
                                      DebugRegisters, MemoryKind, MemoryRegion)
from hil.hw.emulated.stm32_flash import Dbgmcu, FlashCells, Inert, Stm32F7Flash, Stm32L4Flash

# Status codes of the protocol (pyocd/probe/tcp_probe_server.py, DebugProbeRequestHandler.StatusCode).
GENERAL_ERROR, PROBE_ERROR, TRANSFER_ERROR, TRANSFER_FAULT = 1, 3, 10, 12
DBGMCU_BASE, IWDG_BASE = 0xE004_2000, 0x4000_3000


class WireError(Exception):
    """A failed request; `status` tells pyOCD's client which exception to raise."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


class FlashFamily(StrEnum):
    STM32L4 = "stm32l4"
    STM32F7 = "stm32f7"


@dataclass(frozen=True)
class Chip:
    """One target chip a probe can serve, by pyOCD target name."""

    target: str
    core: CoreIdentity
    memories: tuple[MemoryRegion, ...]
    boot_address: int  # where the vector table is read at reset
    flash: FlashFamily | None = None
    flash_registers: int = 0  # the FLASH register block
    idcode: int = 0  # DBGMCU IDCODE: REV_ID << 16 | DEV_ID
    dbgmcu_registers: int = 0  # configuration words after IDCODE (CR, APBxFZ...)


FLASH, RAM = MemoryKind.FLASH, MemoryKind.RAM
CHIPS: dict[str, Chip] = {chip.target: chip for chip in (
    Chip("cortex_m", CORTEX_M4, (MemoryRegion("code", 0x0000_0000, 4 * MIB), MemoryRegion("ram", 0x2000_0000, 4 * MIB)),
         boot_address=0),
    Chip("stm32l432kc", CORTEX_M4, (MemoryRegion("flash", 0x0800_0000, 256 * KIB, FLASH, aliases=(0,)),
                                    MemoryRegion("sram1", 0x2000_0000, 48 * KIB),
                                    MemoryRegion("sram2", 0x1000_0000, 16 * KIB, aliases=(0x2000_C000,))),
         boot_address=0, flash=FlashFamily.STM32L4, flash_registers=0x4002_2000, idcode=0x1001_6435,
         dbgmcu_registers=4),  # CR, APB1FZR1, APB1FZR2, APB2FZR (RM0394 46.16)
    Chip("stm32f767zi", CORTEX_M7, (MemoryRegion("flash", 0x0800_0000, 2 * MIB, FLASH, aliases=(0x0020_0000,)),
                                    MemoryRegion("sram", 0x2000_0000, 512 * KIB)),
         boot_address=0x0020_0000, flash=FlashFamily.STM32F7, flash_registers=0x4002_3C00, idcode=0x1001_6451,
         dbgmcu_registers=3),  # CR, APB1FZ, APB2FZ (RM0410 40.16)
)}
CORES = {"cortex-m4": CORTEX_M4, "cortex-m7": CORTEX_M7}


class ApBus:
    """The system bus as the access port sees it: the core's bus, plus the counters and memory faults."""

    def __init__(self, core: CortexM, *, corrupt_program_at: int | None = None,
                 tamper_after_verify_at: int | None = None):
        self.core = core
        self.corrupt_program_at = corrupt_program_at
        self.tamper_after_verify_at = tamper_after_verify_at
        self.tamper_armed = self.tampered = False
        self.memory_writes = 0

    def _covers(self, fault_address: int | None, address: int, size: int) -> bool:
        return fault_address is not None and address <= fault_address < address + size

    def read(self, address: int, size: int) -> int:
        value = self.core.bus_read(address, size)
        if self.tamper_armed and self._covers(self.tamper_after_verify_at, address, size):
            self.tamper_armed, self.tampered = False, True  # read back once: now a bit flips where it is stored
            address = self.tamper_after_verify_at
            self.core.load(address, bytes([self.core.memory(address, 1)[0] ^ 0x01]))
        return value

    def write(self, address: int, value: int, size: int) -> None:
        self.core.bus_write(address, value, size)
        region = self.core.region_at(address, size)
        if region is None:
            return
        self.memory_writes += 1
        if region.kind is MemoryKind.RAM:
            if self._covers(self.corrupt_program_at, address, size):
                byte = self.core.memory(self.corrupt_program_at, 1)[0]
                self.core.load(self.corrupt_program_at, bytes([byte | (~byte & (byte + 1) & 0xFF)]))
            self.programmed(address, size)

    def programmed(self, address: int, size: int) -> None:
        if not self.tampered and self._covers(self.tamper_after_verify_at, address, size):
            self.tamper_armed = True


@dataclass
class EmulatedTarget:
    chip: Chip
    core: CortexM
    flash: Stm32L4Flash | Stm32F7Flash | None
    bus: ApBus


def build_target(chip: Chip, core: CoreIdentity | None = None, *, corrupt_program_at: int | None = None,
                 tamper_after_verify_at: int | None = None, write_protect_at: int | None = None) -> EmulatedTarget:
    """The chip's core, memories and peripherals, with the faults asked for."""
    if core is not None and chip.target != "cortex_m" and core != chip.core:
        raise ValueError(f"target {chip.target}: its core is its own ({chip.core.name}); `core` is for cortex_m")
    cortex = CortexM(core or chip.core, list(chip.memories), chip.boot_address)
    bus = ApBus(cortex, corrupt_program_at=corrupt_program_at, tamper_after_verify_at=tamper_after_verify_at)
    flash: Stm32L4Flash | Stm32F7Flash | None = None
    if chip.flash is not None:
        region = cortex.region("flash")
        cells = FlashCells(cortex, region.start, region.size, stuck_bit_at=corrupt_program_at,
                           on_program=bus.programmed)
        protected = write_protect_at is not None and region.start <= write_protect_at < region.start + region.size
        if chip.flash is FlashFamily.STM32L4:
            page = (write_protect_at - region.start) // Stm32L4Flash.PAGE_SIZE if protected else None
            flash = Stm32L4Flash(cells, chip.flash_registers,
                                 write_protected_pages=None if page is None else range(page, page + 1))
        else:
            flash = Stm32F7Flash(cells, chip.flash_registers)
            if protected:
                flash = Stm32F7Flash(cells, chip.flash_registers,
                                     write_protected_sectors=(flash.sector_of(write_protect_at),))
        cortex.set_store_handler("flash", flash.store)
        cortex.attach(chip.flash_registers, 0x400, flash)
        cortex.attach(DBGMCU_BASE, 0x400, Dbgmcu(chip.idcode, chip.dbgmcu_registers))
        cortex.attach(IWDG_BASE, 0x400, Inert("IWDG"))
    elif write_protect_at is not None:
        raise ValueError(f"target {chip.target} has no flash to write-protect")
    return EmulatedTarget(chip, cortex, flash, bus)


class MemAP:
    """An ADIv5 AHB-AP (IDR from the core's identity, auto-increment wraps at 4 KiB)."""

    BASE, CFG = DebugRegisters.ROM_TABLE | 0b11, 0  # BASE: ADIv5 format, entry present
    TAR_WRAP = 0x1000

    def __init__(self, bus: ApBus, idr: int):
        self.bus = bus
        self.idr = idr
        self.csw = 0x0300_0040  # HPROT data/privileged; DeviceEn
        self.tar = 0

    def read(self, reg: int) -> int:
        if reg == 0x0C:  # DRW: the data sits in its byte lanes
            size, lane = self._size(), 8 * (self.tar & 3)
            value = self._bus(self.bus.read, self.tar, size) << lane
            self._increment(size)
            return value & 0xFFFF_FFFF
        if 0x10 <= reg <= 0x1C:  # BD0-3: words around TAR, no increment
            return self._bus(self.bus.read, self.tar & ~0xF | reg & 0xC, 4)
        return {0x00: self.csw, 0x04: self.tar, 0xF4: self.CFG, 0xF8: self.BASE, 0xFC: self.idr}.get(reg, 0)

    def write(self, reg: int, value: int) -> None:
        if reg == 0x00:
            size = min(value & 7, 2)  # an unsupported size reads back as 32-bit
            self.csw = value & ~0xC7 | 0x40 | size  # DeviceEn reads 1, TrInProg 0
        elif reg == 0x04:
            self.tar = value
        elif reg == 0x0C:
            size = self._size()
            self._bus(self.bus.write, self.tar, value >> 8 * (self.tar & 3) & ((1 << 8 * size) - 1), size)
            self._increment(size)
        elif 0x10 <= reg <= 0x1C:
            self._bus(self.bus.write, self.tar & ~0xF | reg & 0xC, value, 4)

    @staticmethod
    def _bus(access: Callable[..., Any], *args: int) -> Any:
        try:
            return access(*args)
        except BusFault as fault:
            raise WireError(TRANSFER_FAULT, str(fault)) from None

    def _size(self) -> int:
        return 1 << (self.csw & 7)

    def _increment(self, size: int) -> None:
        if self.csw & 0x30:  # AddrInc single/packed: only TAR's low bits count
            self.tar = self.tar & ~(self.TAR_WRAP - 1) | (self.tar + size) & (self.TAR_WRAP - 1)


class DebugPort:
    """An ADIv5 SW-DP (DPIDR from the core's identity) with one AP at APSEL 0."""

    STICKYERR = 1 << 5

    def __init__(self, ap: MemAP, dpidr: int):
        self.ap = ap
        self.dpidr = dpidr
        self.ctrl_stat = self.select = self.rdbuff = 0
        self.responding = True

    def check_responding(self) -> None:
        if not self.responding:
            raise WireError(TRANSFER_ERROR, "no ACK from target")

    def read_dp(self, addr: int) -> int:
        self.check_responding()
        if addr == 0x4:  # power-up acks follow the requests (bits 28 -> 29, 30 -> 31)
            return self.ctrl_stat | (self.ctrl_stat & 0x5000_0000) << 1
        return {0x0: self.dpidr, 0x8: self.select, 0xC: self.rdbuff}[addr & 0xC]

    def write_dp(self, addr: int, value: int) -> None:
        self.check_responding()
        if addr == 0x0:  # ABORT: STKERRCLR clears the sticky error
            if value & 0b100:
                self.ctrl_stat &= ~self.STICKYERR
        elif addr == 0x4:
            self.ctrl_stat = value & 0x5000_0F00 | self.ctrl_stat & self.STICKYERR & ~value  # JTAG: write 1 clears
        elif addr == 0x8:
            self.select = value

    def _selected_ap(self) -> MemAP | None:
        """The AP selected by SELECT.APSEL; its bank (SELECT.APBANKSEL) is combined with A[3:2] of each access."""
        if self.ctrl_stat & self.STICKYERR:
            raise WireError(TRANSFER_FAULT, "sticky error set; clear it with ABORT")
        return self.ap if self.select >> 24 == 0 else None

    def read_ap(self, addr: int) -> int:
        self.check_responding()
        ap = self._selected_ap()
        try:
            self.rdbuff = ap.read(self.select & 0xF0 | addr & 0xC) if ap else 0  # absent APs read IDR 0
        except WireError:
            self.ctrl_stat |= self.STICKYERR
            raise
        return self.rdbuff

    def write_ap(self, addr: int, value: int) -> None:
        self.check_responding()
        if ap := self._selected_ap():
            try:
                ap.write(self.select & 0xF0 | addr & 0xC, value)
            except WireError:
                self.ctrl_stat |= self.STICKYERR
                raise


class _Memif:
    """The memory-interface requests' view (handle 0: AP #0): the AP's bus, bus faults as transfer faults."""

    def __init__(self, bus: ApBus):
        self.bus = bus

    def read(self, address: int, size: int) -> int:
        return MemAP._bus(self.bus.read, address, size)

    def write(self, address: int, value: int, size: int) -> None:
        MemAP._bus(self.bus.write, address, value, size)


class _TCPServer(socketserver.ThreadingTCPServer):
    allow_reuse_address = True  # a restarted server can take its port back at once
    daemon_threads = True  # a client that never hangs up does not keep the process alive


class EmulatedProbe:
    """One emulated probe on 127.0.0.1 (or `host`) serving one target chip, in a thread; use as a context manager."""

    def __init__(self, unique_id: str, target: str, port: int = 0, *, host: str = "127.0.0.1", core: str | None = None,
                 corrupt_program_at: int | None = None, tamper_after_verify_at: int | None = None,
                 write_protect_at: int | None = None, memory_interface: bool = False,
                 on_release: Callable[[], None] | None = None):
        if target not in CHIPS:
            raise ValueError(f"probe {unique_id}: no emulated chip for pyOCD target {target!r} "
                             f"(emulated: {', '.join(CHIPS)})")
        if core is not None and core not in CORES:
            raise ValueError(f"probe {unique_id}: core {core!r} is not one of {', '.join(CORES)}")
        self.unique_id = unique_id
        self.target = target
        self.emulated = build_target(CHIPS[target], CORES[core] if core else None,
                                     corrupt_program_at=corrupt_program_at,
                                     tamper_after_verify_at=tamper_after_verify_at, write_protect_at=write_protect_at)
        self.core = self.emulated.core
        self.dp = DebugPort(MemAP(self.emulated.bus, self.core.identity.ap_idr), self.core.identity.dpidr)
        self.memory_interface = memory_interface
        self.on_release = on_release
        self.releases = 0
        self._resets_released = 0  # the core's reset count when it was last released
        self.stalled = False
        self.latency_s = 0.0
        self.connections = self.max_concurrent = 0
        self._active = 0
        self._wire_protocol: str | None = None
        self._reset_asserted = False
        self._lock = threading.Lock()  # one request at a time, across clients
        self._stop = threading.Event()
        self._handlers = self._requests()
        self.host = host
        self._server = _TCPServer((host, port), self._handler_class())
        self._thread: threading.Thread | None = None

    # --- lifecycle ---
    @property
    def port(self) -> int:
        return self._server.server_address[1]

    @property
    def address(self) -> str:
        return f"remote:{self.host}:{self.port}"

    def start(self) -> Self:
        # A short poll interval: stop() returns in 50 ms rather than serve_forever's default 0.5 s.
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.05,), daemon=True,
                                        name=f"probe {self.unique_id}")
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()  # releases stalled handlers
        self._server.shutdown()
        self._server.server_close()
        if self._thread:
            self._thread.join()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # --- observations ---
    def memory(self, address: int, size: int) -> bytes:
        """What the target's memory (flash included) holds now, without the debug port."""
        return self.core.memory(address, size)

    @property
    def resets(self) -> int:
        return self.core.resets

    @property
    def memory_writes(self) -> int:
        return self.emulated.bus.memory_writes

    @property
    def erases(self) -> int:
        return self.emulated.flash.erases if self.emulated.flash else 0

    @property
    def programs(self) -> int:
        return self.emulated.flash.programs if self.emulated.flash else 0

    @property
    def failing_programs(self) -> int:
        return self.emulated.flash.failing_programs if isinstance(self.emulated.flash, Stm32L4Flash) else 0

    @failing_programs.setter
    def failing_programs(self, count: int) -> None:
        if not isinstance(self.emulated.flash, Stm32L4Flash):
            raise ValueError(f"target {self.target}: failing_programs is modelled for the STM32L4 flash only")
        self.emulated.flash.failing_programs = count

    @property
    def responding(self) -> bool:
        return self.dp.responding

    @responding.setter
    def responding(self, value: bool) -> None:
        self.dp.responding = value

    # --- protocol ---
    def _requests(self) -> dict[str, Callable[..., Any]]:
        dp, nothing = self.dp, lambda *args: None
        return {
            "hello": self._hello, "readprop": self._readprop, "open": nothing, "close": nothing,
            "lock": nothing, "unlock": nothing, "connect": self._connect, "disconnect": self._disconnect,
            "swj_sequence": nothing, "set_clock": nothing, "flush": nothing,
            "reset": self._pulse_reset, "assert_reset": self._assert_reset,
            "is_reset_asserted": lambda: self._reset_asserted,
            "read_dp": dp.read_dp, "write_dp": dp.write_dp, "read_ap": dp.read_ap, "write_ap": dp.write_ap,
            "read_ap_multiple": lambda addr, count: [dp.read_ap(addr) for _ in range(count)],
            "write_ap_multiple": lambda addr, values: self._each(dp.write_ap, [(addr, v) for v in values]),
            "get_memory_interface_for_ap": lambda version, ap: 0 if self.memory_interface and ap == 0 else None,
            # The memory-interface requests (handle 0: AP #0), used only if a handle was handed out.
            "read_mem": lambda h, addr, bits: self._memif(h).read(addr, bits // 8),
            "write_mem": lambda h, addr, value, bits: self._memif(h).write(addr, value, bits // 8),
            "read_block32": lambda h, addr, count: self._read_block(h, addr, count, 4),
            "write_block32": lambda h, addr, words: self._write_block(h, addr, words, 4),
            "read_block8": lambda h, addr, count: self._read_block(h, addr, count, 1),
            "write_block8": lambda h, addr, data: self._write_block(h, addr, data, 1),
        }

    @staticmethod
    def _each(write: Callable[..., None], calls: list[tuple[int, ...]]) -> None:
        for args in calls:
            write(*args)

    def _read_block(self, handle: int, addr: int, count: int, size: int) -> list[int]:
        return [self._memif(handle).read(addr + size * i, size) for i in range(count)]

    def _write_block(self, handle: int, addr: int, values: list[int], size: int) -> None:
        self._each(self._memif(handle).write, [(addr + size * i, value, size) for i, value in enumerate(values)])

    def _hello(self, version: int) -> None:
        if version != 1:
            raise WireError(GENERAL_ERROR, f"client requested unsupported protocol version {version} (expected 1)")

    def _readprop(self, name: str) -> Any:
        # DEFAULT must be listed: pyOCD checks its `dap_protocol` option ("default") against this list.
        props = {"unique_id": self.unique_id, "vendor_name": "hil", "product_name": "emulated probe",
                 "description": f"hil emulated probe ({self.unique_id}, {self.target})",
                 "supported_wire_protocols": ["DEFAULT", "SWD"], "wire_protocol": self._wire_protocol,
                 "capabilities": []}
        if name not in props:
            raise WireError(GENERAL_ERROR, f"unknown property name '{name}' requested")
        return props[name]

    def _connect(self, protocol: str) -> None:
        if protocol not in ("DEFAULT", "SWD"):
            raise WireError(PROBE_ERROR, f"{protocol} is not supported by this probe")
        self._wire_protocol = "SWD"

    def _disconnect(self) -> None:
        self._wire_protocol = None

    def _pulse_reset(self) -> None:
        self.core.reset()

    def _assert_reset(self, asserted: bool) -> None:
        if self._reset_asserted and not asserted:
            self.core.reset()  # the target leaves reset when nRESET is released
        self._reset_asserted = asserted

    def _note_release(self) -> None:
        core = self.core
        if core.resets != self._resets_released and not (core.halted or core.lockup or self._reset_asserted):
            self._resets_released = core.resets
            self.releases += 1
            if self.on_release is not None:
                self.on_release()

    def _memif(self, handle: int) -> _Memif:
        if not self.memory_interface or handle != 0:
            raise WireError(GENERAL_ERROR, "invalid handle received from remote memory access")
        self.dp.check_responding()
        return _Memif(self.emulated.bus)

    def _answer(self, line: bytes) -> bytes:
        request_id = -1
        try:
            request = json.loads(line)
            request_id = request["id"]
            handler = self._handlers.get(request["request"])
            if handler is None:
                raise WireError(GENERAL_ERROR, "unknown request type")
            with self._lock:
                result = handler(*request.get("arguments", []))
                self._note_release()
            response = {"id": request_id, "status": 0} | ({} if result is None else {"result": result})
        except WireError as error:
            response = {"id": request_id, "status": error.status, "error": str(error)}
        except (ValueError, KeyError, TypeError) as error:  # malformed request or wrong argument count
            response = {"id": request_id, "status": GENERAL_ERROR, "error": f"bad request: {error}"}
        return json.dumps(response).encode() + b"\n"

    def _handler_class(self) -> type[socketserver.StreamRequestHandler]:
        owner = self

        class Handler(socketserver.StreamRequestHandler):
            def handle(self) -> None:
                with owner._lock:
                    owner.connections += 1
                    owner._active += 1
                    owner.max_concurrent = max(owner.max_concurrent, owner._active)
                try:
                    while line := self.rfile.readline():
                        if owner.stalled:  # a hung probe: never answer
                            owner._stop.wait()
                            return
                        if owner.latency_s:
                            owner._stop.wait(owner.latency_s)
                        self.wfile.write(owner._answer(line))
                finally:
                    with owner._lock:
                        owner._active -= 1

        return Handler


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Serve an emulated debug probe in front of an emulated target "
                                                 "chip over pyOCD's remote-probe protocol.")
    parser.add_argument("--unique-id", required=True, help="the probe's unique id, as pyOCD would report it")
    parser.add_argument("--target", required=True, choices=sorted(CHIPS), help="the chip, by pyOCD target name")
    parser.add_argument("--core", choices=sorted(CORES), help="cortex_m only: the MPS2 board's core (default M4)")
    parser.add_argument("--port", type=int, default=5555, help="TCP port on 127.0.0.1 (0: any free port)")
    address = lambda s: int(s, 0)  # noqa: E731
    parser.add_argument("--corrupt-program-at", type=address, help="test fault: this cell keeps a bit at 1")
    parser.add_argument("--tamper-after-verify-at", type=address, help="test fault: a bit flips here once verified")
    parser.add_argument("--write-protect-at", type=address, help="test fault: the flash page/sector here is protected")
    args = parser.parse_args(argv)
    server = EmulatedProbe(args.unique_id, args.target, args.port, core=args.core,
                           corrupt_program_at=args.corrupt_program_at,
                           tamper_after_verify_at=args.tamper_after_verify_at, write_protect_at=args.write_protect_at)
    print(f"serving probe {args.unique_id} ({args.target}) at {server.address} (Ctrl-C stops)", flush=True)
    server.start()
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()


if __name__ == "__main__":
    main()
