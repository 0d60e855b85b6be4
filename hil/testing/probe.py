"""An emulated debug probe: pyOCD's remote-probe protocol in front of a RAM-only Cortex-M4.

Unmodified pyOCD connects to it with `unique_id="remote:127.0.0.1:PORT"` (its TCPClientProbe) and
does what it does with a real board: SWD connect, DP power-up, AP scan, ROM-table walk, core
identification, halt, core-register access, RAM programming, read-back and reset. Only the lowest
level is fake: every pyOCD access ends in a DP or AP register access here, as it would on the wire.

    DebugPort (DPIDR, CTRL/STAT, SELECT, RDBUFF, ABORT)
      -> MemAP #0 (AHB-AP: CSW, TAR, DRW, BD0-3, CFG, BASE, IDR)
        -> CortexM4 system bus: code RAM 0x0 and data RAM 0x2000_0000 (4 MiB each), the ROM table
           at 0xE00F_F000 and the SCS (CPUID, DHCSR, DCRSR/DCRDR, DEMCR, AIRCR, DFSR)

Wire format (pyocd/probe/tcp_probe_server.py): one JSON object a line,
`{"id", "request", "arguments"}` -> `{"id", "status", "result"|"error"}`. The probe claims no
capabilities, so pyOCD selects APs by writing DP SELECT itself and never sends SWJ sequences.
`get_memory_interface_for_ap` answers null by default: with a handle, pyOCD sends a RAM load's
bytearray to json.dumps, which fails (RamBuilder -> RemoteMemoryInterface.write_memory_block8).

A test double (hil.testing, docs/testing.md); `python -m hil.testing.probe --unique-id ID` serves one.

Test hooks: `read_memory()`, `resets`, `ram_writes`, `connections`, `max_concurrent`, and faults:
`corrupt_writes_at=ADDR` (a stored bit flips there), `responding = False` (no ACK from the target:
pyOCD says "Target not detected"), `stalled = True` (requests are read and never answered: a hung probe),
`latency_s` (every answer waits this long: a slow probe, so a flash takes a while).
"""

from __future__ import annotations

import argparse
import json
import socketserver
import threading
from collections.abc import Callable
from typing import Any, ClassVar, Self

# Status codes of the protocol (pyocd/probe/tcp_probe_server.py, DebugProbeRequestHandler.StatusCode).
GENERAL_ERROR, PROBE_ERROR, TRANSFER_ERROR, TRANSFER_FAULT = 1, 3, 10, 12
MIB = 1 << 20


class WireError(Exception):
    """A failed request; `status` tells pyOCD's client which exception to raise."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


def _id_registers(base: int, pidr: int, component_class: int) -> dict[int, int]:
    """CoreSight PIDR4 and PIDR0-3 / CIDR0-3 at base+0xFD0 / 0xFE0 / 0xFF0, one byte per word."""
    regs = {base + 0xFD0: pidr >> 32 & 0xFF}
    regs |= {base + 0xFE0 + 4 * i: pidr >> (8 * i) & 0xFF for i in range(4)}
    regs |= {base + 0xFF0 + 4 * i: byte for i, byte in enumerate((0x0D, component_class << 4, 0x05, 0xB1))}
    return regs


class CortexM4:
    """The system bus seen by the AHB-AP: two RAMs, the ROM table and the core's debug registers."""

    RAMS = ((0x0000_0000, 4 * MIB), (0x2000_0000, 4 * MIB))
    PPB = (0xE000_0000, 0xE010_0000)  # private peripheral bus: SCS and ROM table
    ROM_TABLE, SCS = 0xE00F_F000, 0xE000_E000
    CPUID, AIRCR, DFSR = 0xE000_ED00, 0xE000_ED0C, 0xE000_ED30
    DHCSR, DCRSR, DCRDR, DEMCR = 0xE000_EDF0, 0xE000_EDF4, 0xE000_EDF8, 0xE000_EDFC
    # Read-only identity: a Cortex-M4F r0p1 (ISAR3 says DSP, MPU_TYPE 8 regions, MVFR0 single-precision FPU),
    # a ROM table whose only entry points at the SCS (PIDR part 0x4C4 / 0x00C, designer Arm 0x43B).
    CONSTANTS: ClassVar[dict[int, int]] = {CPUID: 0x410F_C241, 0xE000_ED6C: 0x0111_1110, 0xE000_ED90: 0x0000_0800,
                 0xE000_EF40: 0x1011_0021, 0xE000_EF44: 0x1100_0011,
                 ROM_TABLE: 0xFFF0_F003, ROM_TABLE + 4: 0}  # entry: SCS = ROM_TABLE - 0xF1000, present, 32-bit
    CONSTANTS |= _id_registers(ROM_TABLE, 0x4_000B_B4C4, 0x1) | _id_registers(SCS, 0x4_000B_B00C, 0xE)

    def __init__(self, corrupt_writes_at: int | None = None):
        self.rams = [(start, bytearray(size)) for start, size in self.RAMS]  # zero pages cost nothing until touched
        self.ppb: dict[int, int] = {}  # other PPB registers (VTOR, CPACR, ...) just hold what was written
        self.corrupt_writes_at = corrupt_writes_at
        self.resets = 0
        self.ram_writes = 0
        self.debugen = self.halted = False
        self.reset_sticky = True  # DHCSR.S_RESET_ST: "reset since last read", set at power-on
        self.regs: dict[int, int] = {}
        self.dcrdr = self.demcr = self.dfsr = 0

    def ram_at(self, addr: int, size: int) -> tuple[bytearray, int] | None:
        for start, mem in self.rams:
            if start <= addr and addr + size <= start + len(mem):
                return mem, addr - start
        return None

    def read(self, addr: int, size: int) -> int:
        if ram := self.ram_at(addr, size):
            mem, offset = ram
            return int.from_bytes(mem[offset:offset + size], "little")
        if self.PPB[0] <= addr < self.PPB[1]:
            shift = 8 * (addr & 3)
            return self.read32(addr & ~3) >> shift & ((1 << 8 * size) - 1)
        raise WireError(TRANSFER_FAULT, f"bus fault reading {addr:#010x}")

    def write(self, addr: int, value: int, size: int) -> None:
        if ram := self.ram_at(addr, size):
            mem, offset = ram
            mem[offset:offset + size] = value.to_bytes(size, "little")
            self.ram_writes += 1
            if self.corrupt_writes_at is not None and addr <= self.corrupt_writes_at < addr + size:
                mem[offset + self.corrupt_writes_at - addr] ^= 0x01  # a bit that did not stick
        elif self.PPB[0] <= addr < self.PPB[1]:
            if size < 4:  # merge into the word, as the bus would
                shift, mask = 8 * (addr & 3), (1 << 8 * size) - 1
                value = self.read32(addr & ~3) & ~(mask << shift) | (value & mask) << shift
            self.write32(addr & ~3, value)
        else:
            raise WireError(TRANSFER_FAULT, f"bus fault writing {addr:#010x}")

    def read32(self, addr: int) -> int:
        if addr == self.DHCSR:
            # S_REGRDY always (register transfers are instant); C_HALT and S_HALT when halted;
            # S_RETIRE_ST when running; S_RESET_ST is sticky and clears on read.
            value = 1 << 16 | int(self.debugen) | int(self.reset_sticky) << 25
            value |= 0b10 | 1 << 17 if self.halted else 1 << 24
            self.reset_sticky = False
            return value
        return {self.DCRDR: self.dcrdr, self.DEMCR: self.demcr, self.DFSR: self.dfsr,
                self.AIRCR: 0xFA05_0000}.get(addr, self.CONSTANTS.get(addr, self.ppb.get(addr, 0)))

    def write32(self, addr: int, value: int) -> None:
        if addr in self.CONSTANTS:
            return
        if addr == self.DHCSR:
            if value >> 16 == 0xA05F:  # DBGKEY, or the write is ignored
                self.debugen = bool(value & 1)
                self.halted = self.debugen and bool(value & 0b110)  # C_HALT, or C_STEP (an instant step)
                self.dfsr |= self.halted  # DFSR.HALTED
        elif addr == self.DCRSR:  # bit 16 REGWnR: write DCRDR into the register, else read it into DCRDR
            if value & 1 << 16:
                self.regs[value & 0x7F] = self.dcrdr
            else:
                self.dcrdr = self.regs.get(value & 0x7F, 0)
        elif addr == self.DCRDR:
            self.dcrdr = value
        elif addr == self.DEMCR:
            self.demcr = value
        elif addr == self.DFSR:
            self.dfsr &= ~value  # write one to clear
        elif addr == self.AIRCR:
            if value >> 16 == 0x05FA and value & 0b101:  # VECTKEY with SYSRESETREQ or VECTRESET
                self.reset()
        else:
            self.ppb[addr] = value

    def reset(self) -> None:
        """Core state from the vector table at 0; RAM keeps its contents, as on a warm reset."""
        self.resets += 1
        self.regs = {13: self.read(0, 4), 14: 0xFFFF_FFFF, 15: self.read(4, 4) & ~1, 16: 0x0100_0000}
        self.halted = self.debugen and bool(self.demcr & 1)  # DEMCR.VC_CORERESET catches the reset
        self.dfsr |= self.halted << 3  # DFSR.VCATCH
        self.reset_sticky = True


class MemAP:
    """An ADIv5 AHB-AP (the Cortex-M4's, IDR 0x24770011, auto-increment wraps at 4 KiB)."""

    IDR, BASE, CFG = 0x2477_0011, CortexM4.ROM_TABLE | 0b11, 0  # BASE: ADIv5 format, entry present
    TAR_WRAP = 0x1000

    def __init__(self, bus: CortexM4):
        self.bus = bus
        self.csw = 0x0300_0040  # HPROT data/privileged; DeviceEn
        self.tar = 0

    def read(self, reg: int) -> int:
        if reg == 0x0C:  # DRW: the data sits in its byte lanes
            size, lane = self._size(), 8 * (self.tar & 3)
            value = self.bus.read(self.tar, size) << lane
            self._increment(size)
            return value & 0xFFFF_FFFF
        if 0x10 <= reg <= 0x1C:  # BD0-3: words around TAR, no increment
            return self.bus.read(self.tar & ~0xF | reg & 0xC, 4)
        return {0x00: self.csw, 0x04: self.tar, 0xF4: self.CFG, 0xF8: self.BASE, 0xFC: self.IDR}.get(reg, 0)

    def write(self, reg: int, value: int) -> None:
        if reg == 0x00:
            size = min(value & 7, 2)  # an unsupported size reads back as 32-bit
            self.csw = value & ~0xC7 | 0x40 | size  # DeviceEn reads 1, TrInProg 0
        elif reg == 0x04:
            self.tar = value
        elif reg == 0x0C:
            size = self._size()
            self.bus.write(self.tar, value >> 8 * (self.tar & 3) & ((1 << 8 * size) - 1), size)
            self._increment(size)
        elif 0x10 <= reg <= 0x1C:
            self.bus.write(self.tar & ~0xF | reg & 0xC, value, 4)

    def _size(self) -> int:
        return 1 << (self.csw & 7)

    def _increment(self, size: int) -> None:
        if self.csw & 0x30:  # AddrInc single/packed: only TAR's low bits count
            self.tar = self.tar & ~(self.TAR_WRAP - 1) | (self.tar + size) & (self.TAR_WRAP - 1)


class DebugPort:
    """An ADIv5 SW-DP (v1, the Cortex-M4's DPIDR) with one AP at APSEL 0."""

    DPIDR = 0x2BA0_1477
    STICKYERR = 1 << 5

    def __init__(self, ap: MemAP):
        self.ap = ap
        self.ctrl_stat = self.select = self.rdbuff = 0
        self.responding = True

    def check_responding(self) -> None:
        if not self.responding:
            raise WireError(TRANSFER_ERROR, "no ACK from target")

    def read_dp(self, addr: int) -> int:
        self.check_responding()
        if addr == 0x4:  # power-up acks follow the requests (bits 28 -> 29, 30 -> 31)
            return self.ctrl_stat | (self.ctrl_stat & 0x5000_0000) << 1
        return {0x0: self.DPIDR, 0x8: self.select, 0xC: self.rdbuff}[addr & 0xC]

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


class _TCPServer(socketserver.ThreadingTCPServer):
    allow_reuse_address = True  # a restarted server can take its port back at once
    daemon_threads = True  # a client that never hangs up does not keep the process alive


class ProbeServer:
    """One emulated probe on 127.0.0.1, served in a thread; use as a context manager."""

    def __init__(self, unique_id: str, port: int = 0, *, corrupt_writes_at: int | None = None,
                 memory_interface: bool = False):
        self.unique_id = unique_id
        self.target = CortexM4(corrupt_writes_at)
        self.dp = DebugPort(MemAP(self.target))
        self.memory_interface = memory_interface
        self.stalled = False
        self.latency_s = 0.0
        self.connections = self.max_concurrent = 0
        self._active = 0
        self._wire_protocol: str | None = None
        self._reset_asserted = False
        self._lock = threading.Lock()  # one request at a time, across clients
        self._stop = threading.Event()
        self._handlers = self._requests()
        self._server = _TCPServer(("127.0.0.1", port), self._handler_class())
        self._thread: threading.Thread | None = None

    # --- lifecycle ---
    @property
    def port(self) -> int:
        return self._server.server_address[1]

    @property
    def address(self) -> str:
        return f"remote:127.0.0.1:{self.port}"

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

    # --- test hooks ---
    def read_memory(self, addr: int, length: int) -> bytes:
        """What the target's RAM holds now (without going through the debug port)."""
        ram = self.target.ram_at(addr, length)
        if ram is None:
            raise ValueError(f"{addr:#010x}+{length} is not inside one RAM")
        mem, offset = ram
        return bytes(mem[offset:offset + length])

    @property
    def resets(self) -> int:
        return self.target.resets

    @property
    def ram_writes(self) -> int:
        return self.target.ram_writes

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
                 "description": f"hil emulated probe ({self.unique_id})",
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
        self.target.reset()

    def _assert_reset(self, asserted: bool) -> None:
        if self._reset_asserted and not asserted:
            self.target.reset()  # the target leaves reset when nRESET is released
        self._reset_asserted = asserted

    def _memif(self, handle: int) -> CortexM4:
        if not self.memory_interface or handle != 0:
            raise WireError(GENERAL_ERROR, "invalid handle received from remote memory access")
        self.dp.check_responding()
        return self.target

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
    parser = argparse.ArgumentParser(description="Serve an emulated debug probe with a RAM-only Cortex-M4 "
                                                 "over pyOCD's remote-probe protocol.")
    parser.add_argument("--unique-id", required=True, help="the probe's unique id, as pyOCD would report it")
    parser.add_argument("--port", type=int, default=5555, help="TCP port on 127.0.0.1 (0: any free port)")
    parser.add_argument("--corrupt-writes-at", type=lambda s: int(s, 0), help="flip a bit of data stored here")
    args = parser.parse_args(argv)
    server = ProbeServer(args.unique_id, args.port, corrupt_writes_at=args.corrupt_writes_at)
    print(f"serving probe {args.unique_id} at {server.address} (Ctrl-C stops)", flush=True)
    server.start()
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()


if __name__ == "__main__":
    main()
