"""Board kinds: what each kind of board is, in one table that everything else reads.

The firmware build (the CPU gcc compiles for, the Makefile's list of boards), the lab (the
kinds it accepts, the pyOCD target a physical board defaults to, where its image is flashed),
the emulator (QEMU machine and speed), the emulated measurement unit (the modelled supply) and
the reports (the smallest MCU a model must fit) all take a kind's facts from BOARD_KINDS.

Adding a kind is one row here and its board support in firmware/boards/<kind>/ (board.h and a
memory.ld whose FLASH and RAM are the row's; a test holds them equal), with its C sources from the
HAL family folder firmware/boards/<hal>/, then `hil firmware build`.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class MemoryRegion:
    origin: int
    size: int  # bytes


@dataclass(frozen=True)
class QemuTwin:
    """How a kind runs in QEMU; docs/firmware.md explains the clocks."""

    machine: str  # qemu-system-arm -M
    icount_shift: int  # one instruction takes 2**shift ns of virtual time
    # QEMU connects its i-th -serial option to the machine's i-th UART; these say which UART is which.
    link_serial: int = 0  # the protocol's UART
    wire_serial: int = 1  # the UART that carries the pin edges to the measurement unit
    # An STM32 link UART's CR1 address: its UE (bit 0) and RE (bit 2) say the firmware's receiver is on, which a
    # served board (hil/hw/emulated/served.py) waits for before it hands on the host's bytes. None: not servable.
    link_uart_cr1: int | None = None
    # Whether the default rack (labs.yaml, and `hil init`'s starter lab) has a board of each model of the kind.
    in_starter_rack: bool = True


@dataclass(frozen=True)
class PowerProfile:
    """A modelled supply: what an emulated board draws, and the shunt its unit measures it on."""

    bus_v: float
    idle_w: float
    active_w: float
    shunt_ohms: float
    max_current_a: float


@dataclass(frozen=True)
class BoardKind:
    name: str  # as labs.yaml, manifests and the firmware's HELLO name it
    cpu: str  # gcc's -mcpu
    mcu: str  # the part the board is, or (emulated) stands in for
    clock_hz: int  # that MCU's core clock
    timer_hz: int  # the firmware's cycle counter: INFO's clock_hz, the unit's time base
    flash: MemoryRegion  # where the image is linked and flashed (its origin is the load address)
    ram: MemoryRegion
    pyocd_target: str  # a physical board's default probe.target
    hal: str  # the HAL family folder, firmware/boards/<hal>/, whose C sources the kind's images compile
    qemu: QemuTwin | None  # None: the kind has no emulated twin
    power: PowerProfile  # what the emulated unit models for it (not a measurement)

    @property
    def load_address(self) -> int:
        return self.flash.origin

    @property
    def firmware_dir(self) -> str:
        """Its board support, relative to the firmware folder."""
        return f"boards/{self.name}"

    @property
    def hal_dir(self) -> str:
        """Its HAL family's C sources, relative to the firmware folder."""
        return f"boards/{self.hal}"

    @property
    def core(self) -> str:
        """The CPU as people write it: cortex-m4 -> Cortex-M4."""
        return "Cortex-" + self.cpu.removeprefix("cortex-").upper()


KIB = 1024
CMSDK_TIMER_HZ = 25_000_000  # QEMU clocks the MPS2 boards' CMSDK timers at 25 MHz of icount time

# The MPS2 boards are QEMU's Cortex-M4 and -M7 machines, each sized (memory.ld) and timed (icount)
# as the STM32 it stands in for. Currents are in the range of those MCUs' datasheets (run mode at
# full clock; sleep with peripherals on): plausible figures, not measurements.
BOARD_KINDS: dict[str, BoardKind] = {kind.name: kind for kind in (
    BoardKind(
        name="mps2-an386", cpu="cortex-m4", mcu="STM32L432KC", clock_hz=80_000_000, timer_hz=CMSDK_TIMER_HZ,
        flash=MemoryRegion(0x0000_0000, 256 * KIB), ram=MemoryRegion(0x2000_0000, 64 * KIB),
        pyocd_target="cortex_m", hal="cmsdk",
        # 16 ns per instruction: 62.5 MIPS, about a Cortex-M4 at 80 MHz. Not in the default rack: the
        # nucleo-l432kc twin is its M4, running the very image a Nucleo-L432KC runs.
        qemu=QemuTwin(machine="mps2-an386", icount_shift=4, in_starter_rack=False),
        power=PowerProfile(bus_v=3.3, idle_w=3.3 * 0.0021, active_w=3.3 * 0.0088, shunt_ohms=1.0,
                           max_current_a=0.04),
    ),
    BoardKind(
        name="mps2-an500", cpu="cortex-m7", mcu="STM32F767ZI", clock_hz=216_000_000, timer_hz=CMSDK_TIMER_HZ,
        flash=MemoryRegion(0x0000_0000, 2048 * KIB), ram=MemoryRegion(0x2000_0000, 512 * KIB),
        pyocd_target="cortex_m", hal="cmsdk",
        # 4 ns per instruction: 250 MIPS, about a dual-issue Cortex-M7 at 216 MHz.
        qemu=QemuTwin(machine="mps2-an500", icount_shift=2),
        power=PowerProfile(bus_v=3.3, idle_w=3.3 * 0.045, active_w=3.3 * 0.115, shunt_ohms=0.1,
                           max_current_a=0.4),
    ),
    # The STM32 boards themselves, linked and flashed at the chips' flash (0x0800_0000). Their cycle
    # counters run at the core clock: SysTick on the L432 (QEMU models neither DWT CYCCNT nor TIM2),
    # DWT CYCCNT on the F767. Power as the MPS2 twins' above, which stand in for the same parts.
    BoardKind(
        name="nucleo-l432kc", cpu="cortex-m4", mcu="STM32L432KC", clock_hz=80_000_000, timer_hz=80_000_000,
        flash=MemoryRegion(0x0800_0000, 256 * KIB), ram=MemoryRegion(0x2000_0000, 64 * KIB),
        pyocd_target="stm32l432kc", hal="stm32l4",
        # QEMU's B-L475E-IOT01A is an STM32L475 (the same RCC, GPIO, USART and SysTick as the L432):
        # -serial #0 is USART1 (the wire, the board's spare trace port), #1 USART2 (ST-LINK's VCP).
        # The link is USART2 (UM1956 6.9: PA2/PA15), at 0x4000_4400 on the L432 and on QEMU's L475 alike (RM0394 2.2.2).
        qemu=QemuTwin(machine="b-l475e-iot01a", icount_shift=4, link_serial=1, wire_serial=0,
                      link_uart_cr1=0x4000_4400),
        power=PowerProfile(bus_v=3.3, idle_w=3.3 * 0.0021, active_w=3.3 * 0.0088, shunt_ohms=1.0,
                           max_current_a=0.04),
    ),
    BoardKind(
        name="nucleo-f767zi", cpu="cortex-m7", mcu="STM32F767ZI", clock_hz=216_000_000, timer_hz=216_000_000,
        # 512 KiB of RAM from 0x2000_0000: DTCM (128 KiB), SRAM1 (368 KiB) and SRAM2 (16 KiB) are contiguous.
        flash=MemoryRegion(0x0800_0000, 2048 * KIB), ram=MemoryRegion(0x2000_0000, 512 * KIB),
        pyocd_target="stm32f767zi", hal="stm32f7",
        qemu=None,  # no QEMU has an STM32F7
        power=PowerProfile(bus_v=3.3, idle_w=3.3 * 0.045, active_w=3.3 * 0.115, shunt_ohms=0.1,
                           max_current_a=0.4),
    ),
)}


def smallest_kind() -> BoardKind:
    """The kind with the least flash (then RAM): every model must fit it (the QUTE paper's small MCU)."""
    return min(BOARD_KINDS.values(), key=lambda kind: (kind.flash.size, kind.ram.size))
