"""Register-level models of the STM32F767 (RM0410) and STM32L432 (RM0394) parts the firmware touches, for the
STM32 harness (tests/support/stm32_harness.py). Test support, not product. This module holds what both chips
share (the rules' machinery, GPIO, USART, FLASH_ACR, the Cortex-M SysTick, NVIC, ICSR, DWT, M7 caches, the
Board); tests/support/stm32f7_models.py and stm32l4_models.py hold each chip's RCC, PWR and board wiring.

Each model holds its registers at their reset values, sets ready flags some instructions after the enable bit
is written (as silicon does: a firmware that does not wait for them sees them clear), and enforces the rules a
real chip has:
- a RuleViolation (raised, stops the core) for what would break silicon: SYSCLK or HCLK above what the FLASH
  latency or the voltage scale allow, a PLL out of its VCO ranges, over-drive switched in the wrong order, a
  cache enabled before it was invalidated, a UART whose divisor is more than 2% off its nominal baud, a UART
  byte on a pin that is not routed to the USART, a WFI nothing can wake;
- a Finding (recorded, the write is ignored as silicon ignores it) for a write the chip does not honour: a
  peripheral written with its RCC clock off (or in the access right after enabling it), PLLCFGR changed while
  the PLL runs, BRR written while the USART is enabled, the DWT written while locked or without TRCENA.
Addresses and bits: RM0410 (STM32F76x, Rev 4), RM0394 (STM32L41x-L46x, Rev 4), PM0253 (Cortex-M7), PM0214
(Cortex-M4); the L4's were checked against pyOCD's STM32L4x2.svd (tests/emulated/test_stm32_harness.py).
Time is the core's instruction count (one instruction = one cycle): no pipeline, wait-state or bus timing.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum

MHZ = 1_000_000


class RuleViolation(Exception):
    """A register write that a real chip would not survive; the message names the rule and its section."""


@dataclass(frozen=True)
class Finding:
    """A write the silicon ignores (or a byte it loses), reported by the harness."""

    where: str  # peripheral and register
    rule: str  # what the manual says, with its section

    def __str__(self) -> str:
        return f"{self.where}: {self.rule}"


@dataclass
class ChipTime:
    """The chip's clock in core cycles: the harness's instruction counter (one instruction per cycle)."""

    cycles: int = 0


@dataclass
class ChipState:
    """What every model of one chip shares: the time, the findings, the clock enable just made, and when the
    harness looks for an interrupt next."""

    time: ChipTime = field(default_factory=ChipTime)
    findings: list[Finding] = field(default_factory=list)
    # peripherals whose RCC clock the last bus access enabled, and the time it did (the enable's basic block)
    just_enabled: dict[str, int] = field(default_factory=dict)

    # the time the harness next looks for an interrupt to take; 0: at the next basic block
    interrupt_check_at: int = 0

    def interrupt_may_change(self) -> None:
        """A model changed something an interrupt depends on (an enable, a flag, a counter)."""
        self.interrupt_check_at = 0

    def enabled(self, names: set[str]) -> None:
        self.just_enabled = dict.fromkeys(names, self.time.cycles)

    def find(self, where: str, rule: str) -> None:
        finding = Finding(where, rule)
        if finding not in self.findings:  # a loop repeating one mistake is one finding
            self.findings.append(finding)


class Ready(StrEnum):
    """The ready flags that settle some time after their enable."""

    HSE = "HSERDY"
    PLL = "PLLRDY"
    MSI = "MSIRDY"
    OVERDRIVE = "ODRDY"  # F7 PWR_CSR1
    OVERDRIVE_SWITCH = "ODSWRDY"
    VOLTAGE = "VOSF clear"  # L4 PWR_SR2


# Ready flags settle this many instructions after their enable bit (silicon: microseconds; kept short so the
# polls run few times; what matters is that they are not set at once).
SETTLE_INSTRUCTIONS = {Ready.HSE: 64, Ready.PLL: 256, Ready.MSI: 16, Ready.OVERDRIVE: 128,
                       Ready.OVERDRIVE_SWITCH: 128, Ready.VOLTAGE: 32}


class Registers:
    """32-bit registers on the bus (the probe core's Peripheral protocol: read, write, reset). Byte and
    halfword accesses take or merge their lanes. Writes need the peripheral's bus clock (`clocked`)."""

    name = "?"
    RESET: dict[int, int] = {}

    def __init__(self, state: ChipState, clocked: Callable[[], bool] = lambda: True):
        self.state = state
        self.clocked = clocked
        self.regs: dict[int, int] = {}
        self.reset()

    def reset(self) -> None:
        self.regs = dict(self.RESET)

    def read(self, offset: int, size: int) -> int:
        if not self._accessible(offset, "read"):
            return 0
        shift = 8 * (offset & 3)
        return self.read_word(offset & ~3) >> shift & ((1 << 8 * size) - 1)

    def write(self, offset: int, size: int, value: int) -> None:
        if not self._accessible(offset, "write"):
            return
        word = offset & ~3
        if size < 4:
            shift, mask = 8 * (offset & 3), (1 << 8 * size) - 1
            value = self.regs.get(word, 0) & ~(mask << shift) | (value & mask) << shift
        self.write_word(word, value & 0xFFFF_FFFF)

    def _accessible(self, offset: int, what: str) -> bool:
        # Too early: the very next peripheral access after the enable, in the same straight-line code. Any
        # access, or a branch, in between gives the enable the two bus cycles it needs.
        too_early = self.state.just_enabled.get(self.name) == self.state.time.cycles
        self.state.just_enabled = {}
        if too_early:
            self.state.find(f"{self.name} +{offset:#x}", f"{what} in the access right after its RCC clock was "
                            "enabled, before the enable took effect (STM32F7/L4 errata sheets, 'Delay after an RCC "
                            "peripheral clock enabling'): read the RCC enable register back first")
            return False
        if not self.clocked():
            if what == "write":
                self.state.find(f"{self.name} +{offset:#x}", "written with its RCC clock disabled: the write is "
                                "ignored (RM0410 §5.3.10-14 / RM0394 §6.4.16-21 xxxENR); enable the clock first")
            return False
        return True

    def read_word(self, offset: int) -> int:
        return self.regs.get(offset, 0)

    def write_word(self, offset: int, value: int) -> None:
        self.regs[offset] = value

    def bits(self, offset: int, low: int, width: int = 1) -> int:
        return self.regs.get(offset, 0) >> low & ((1 << width) - 1)


class Settling:
    """Ready flags that become set a number of cycles after their enable (None: not enabled)."""

    def __init__(self, time: ChipTime):
        self.time = time
        self.ready_at: dict[Ready, int | None] = {}

    def start(self, what: Ready, enabled: bool) -> None:
        if not enabled:
            self.ready_at[what] = None
        elif self.ready_at.get(what) is None:
            self.ready_at[what] = self.time.cycles + SETTLE_INSTRUCTIONS[what]

    def ready(self, what: Ready) -> bool:
        at = self.ready_at.get(what)
        return at is not None and self.time.cycles >= at


def check_range(what: str, value: int, low: int, high: int, rule: str) -> None:
    if not low <= value <= high:
        raise RuleViolation(f"{what} = {value / MHZ:g} MHz is outside {low / MHZ:g}-{high / MHZ:g} MHz ({rule}); "
                            "fix PLLCFGR before PLLON")


def ahb_divider(hpre: int) -> int:
    return 1 if hpre < 8 else (2, 4, 8, 16, 64, 128, 256, 512)[hpre - 8]


def apb_divider(ppre: int) -> int:
    return 1 if ppre < 4 else 2 << (ppre - 4)


@dataclass(frozen=True)
class Clocks:
    """The clock tree as the RCC model computes it now, in Hz."""

    sysclk: int
    hclk: int
    pclk1: int
    pclk2: int


class UsartLine(StrEnum):
    TX = "TX"
    RX = "RX"


@dataclass(frozen=True)
class Pin:
    port: str  # "A", "D", ...
    number: int
    alternate: int  # the AF that routes the USART to it


# --- GPIO (RM0410 §6.4, RM0394 §8.4: the same layout) ---

class Gpio(Registers):
    MODER, OTYPER, OSPEEDR, PUPDR, IDR, ODR, BSRR, LCKR, AFRL, AFRH, BRR = (
        0x00, 0x04, 0x08, 0x0C, 0x10, 0x14, 0x18, 0x1C, 0x20, 0x24, 0x28)

    def __init__(self, state: ChipState, port: str, reset_moder: int, clocked: Callable[[], bool]):
        self.port = port
        self.name = f"GPIO{port}"
        self.RESET = {self.MODER: reset_moder}
        self.edges: list[tuple[int, int, int]] = []  # (cycles, pin, level) of every ODR change
        super().__init__(state, clocked)

    def read_word(self, offset: int) -> int:
        if offset == self.IDR:  # outputs read back; nothing drives the inputs
            return self.regs.get(self.ODR, 0)
        if offset in (self.BSRR, self.BRR):
            return 0  # write-only
        return self.regs.get(offset, 0)

    def write_word(self, offset: int, value: int) -> None:
        if offset == self.BSRR:  # set bits 15:0, reset bits 31:16; set wins (RM0410 §6.4.7)
            self._drive(self.regs.get(self.ODR, 0) & ~(value >> 16) | (value & 0xFFFF))
        elif offset == self.BRR:
            self._drive(self.regs.get(self.ODR, 0) & ~(value & 0xFFFF))
        elif offset == self.ODR:
            self._drive(value & 0xFFFF)
        elif offset != self.IDR:
            self.regs[offset] = value

    def _drive(self, odr: int) -> None:
        old = self.regs.get(self.ODR, 0)
        for pin in range(16):
            if (old ^ odr) >> pin & 1:
                self.edges.append((self.state.time.cycles, pin, odr >> pin & 1))
        self.regs[self.ODR] = odr

    def mode(self, pin: int) -> int:
        return self.bits(self.MODER, 2 * pin, 2)

    def alternate(self, pin: int) -> int:
        return self.bits(self.AFRL if pin < 8 else self.AFRH, 4 * (pin % 8), 4)

    def routes(self, pin: int, function: int) -> bool:
        return self.mode(pin) == 2 and self.alternate(pin) == function


# --- USART (RM0410 §34.8, RM0394 §38.8: the same registers) ---

class Usart(Registers):
    CR1, CR2, CR3, BRR, GTPR, RTOR, RQR, ISR, ICR, RDR, TDR = (
        0x00, 0x04, 0x08, 0x0C, 0x10, 0x14, 0x18, 0x1C, 0x20, 0x24, 0x28)
    UE, RE, TE, RXNEIE, OVER8 = 1 << 0, 1 << 2, 1 << 3, 1 << 5, 1 << 15
    ORE, RXNE, TC, TXE, TEACK, REACK = 1 << 3, 1 << 5, 1 << 6, 1 << 7, 1 << 21, 1 << 22
    TX_CYCLES = 32  # a byte leaves TDR this many instructions after it was written (not its line time)
    BAUD_TOLERANCE = 0.02

    def __init__(self, state: ChipState, name: str, manual: str, clocked: Callable[[], bool],
                 kernel_hz: Callable[[], int], pins: dict[UsartLine, Pin], gpio: Callable[[str], Gpio],
                 irq: int, baud: int = 115200):
        self.name, self.manual = name, manual
        self.kernel_hz, self.pins, self.gpio, self.irq, self.baud = kernel_hz, pins, gpio, irq, baud
        self.RESET = {self.ISR: self.TXE | self.TC}
        self.sent = bytearray()  # bytes that left on the TX pin
        self.incoming: Callable[[], int | None] = lambda: None  # the next byte on the RX pin, if one waits
        self.on_send: Callable[[int], None] = lambda byte: None
        self.tx_done_at: int | None = None
        super().__init__(state, clocked)

    def reset(self) -> None:
        super().reset()
        self.tx_done_at = None

    @property
    def cr1(self) -> int:
        return self.regs.get(self.CR1, 0)

    def receiving(self) -> bool:
        return self.clocked() and self.cr1 & (self.UE | self.RE) == self.UE | self.RE

    def rx_pending(self) -> bool:
        """RXNE with its interrupt enabled: the USART's interrupt request to the NVIC."""
        self._receive()
        return bool(self.regs[self.ISR] & self.RXNE and self.cr1 & self.RXNEIE)

    def read_word(self, offset: int) -> int:
        if offset == self.ISR:
            self._settle_tx()
            self._receive()
            cr1 = self.cr1
            acks = (self.TEACK if cr1 & self.TE else 0) | (self.REACK if cr1 & self.RE else 0)
            return self.regs[self.ISR] & ~(self.TEACK | self.REACK) | (acks if cr1 & self.UE else 0)
        if offset == self.RDR:
            self._receive()
            self.regs[self.ISR] &= ~self.RXNE
            self.state.interrupt_may_change()  # the next byte may come in, and pend the interrupt again
            return self.regs.get(self.RDR, 0)
        if offset in (self.TDR, self.RQR, self.ICR):
            return 0
        return self.regs.get(offset, 0)

    def write_word(self, offset: int, value: int) -> None:
        enabled = self.cr1 & self.UE
        if offset in (self.CR1, self.ICR, self.RQR):
            self.state.interrupt_may_change()
        if offset == self.TDR:
            self._transmit(value & 0xFF)
        elif offset == self.ICR:
            self.regs[self.ISR] &= ~(value & (self.ORE | self.TC))
        elif offset == self.RQR:
            if value & 1 << 3:  # RXFRQ: flush RDR
                self.regs[self.ISR] &= ~self.RXNE
        elif offset in (self.BRR, self.CR2, self.CR3) and enabled:
            register = {self.BRR: "BRR", self.CR2: "CR2", self.CR3: "CR3"}[offset]
            self.state.find(f"{self.name} {register}", f"written while UE = 1: ignored ({self.manual}.8, {register}: "
                            "'can only be written when the USART is disabled'); clear UE first")
        elif offset == self.CR1:
            if enabled and (value ^ self.cr1) & (self.OVER8 | 1 << 12 | 1 << 28):
                self.state.find(f"{self.name} CR1", f"M/OVER8 changed while UE = 1: ignored ({self.manual}.8, CR1)")
                value = value & ~(self.OVER8 | 1 << 12 | 1 << 28) | self.cr1 & (self.OVER8 | 1 << 12 | 1 << 28)
            old, self.regs[self.CR1] = self.cr1, value
            if value & self.UE:
                try:
                    self.check_baud()
                except RuleViolation:
                    self.regs[self.CR1] = old
                    raise
        else:
            self.regs[offset] = value

    def baud_now(self) -> float:
        brr = self.regs.get(self.BRR, 0)
        if self.cr1 & self.OVER8:
            divider = (brr & 0xFFF0) | (brr & 0x7) << 1
            return 2 * self.kernel_hz() / divider if divider >= 16 else 0.0
        return self.kernel_hz() / brr if brr >= 16 else 0.0

    def check_baud(self) -> None:
        """RM0410 §34.5 / RM0394 §38.5: baud rate generation, and the receiver's tolerance to clock deviation."""
        actual = self.baud_now()
        error = abs(actual - self.baud) / self.baud
        if error > self.BAUD_TOLERANCE:
            raise RuleViolation(
                f"{self.name} BRR {self.regs.get(self.BRR, 0)} at a kernel clock of {self.kernel_hz() / MHZ:g} MHz "
                f"gives {actual:.0f} baud, {error:.1%} off {self.baud} (more than 2%: {self.manual}.5, baud rate "
                "generation and receiver tolerance); compute BRR from the clock the USART has when it is used")

    def _pin_check(self, line: UsartLine) -> None:
        pin = self.pins.get(line)
        if pin is not None and not self.gpio(pin.port).routes(pin.number, pin.alternate):
            gpio = self.gpio(pin.port)
            raise RuleViolation(
                f"{self.name} {line} on P{pin.port}{pin.number}: the pin is in mode {gpio.mode(pin.number)}, "
                f"AF{gpio.alternate(pin.number)}, not alternate function {pin.alternate}, so the byte never reaches "
                "the board (GPIO MODER/AFR, RM0410 §6.4 / RM0394 §8.4); route the pin before using the USART")

    def _transmit(self, byte: int) -> None:
        if self.cr1 & (self.UE | self.TE) != self.UE | self.TE:
            self.state.find(f"{self.name} TDR",
                            f"written with UE or TE clear: the byte is not sent ({self.manual}.8 CR1)")
            return
        self._settle_tx()
        if not self.regs[self.ISR] & self.TXE:
            self.state.find(f"{self.name} TDR", f"written while TXE = 0: the byte waiting in TDR is overwritten "
                            f"({self.manual}.8 ISR TXE); wait for TXE before each write")
            return
        self.check_baud()
        self._pin_check(UsartLine.TX)
        self.regs[self.ISR] &= ~(self.TXE | self.TC)
        self.tx_done_at = self.state.time.cycles + self.TX_CYCLES
        self.sent.append(byte)
        self.on_send(byte)

    def _settle_tx(self) -> None:
        if self.tx_done_at is not None and self.state.time.cycles >= self.tx_done_at:
            self.regs[self.ISR] |= self.TXE | self.TC
            self.tx_done_at = None

    def _receive(self) -> None:
        """Takes the next waiting byte into RDR once RDR is free and the receiver is on (a host's bytes wait in
        its buffer until then: no overrun is modelled)."""
        if self.regs[self.ISR] & self.RXNE or not self.receiving():
            return
        byte = self.incoming()
        if byte is None:
            return
        self.check_baud()
        self._pin_check(UsartLine.RX)
        self.regs[self.RDR] = byte
        self.regs[self.ISR] |= self.RXNE


# --- The Cortex-M system control space parts the firmware uses (PM0253 / PM0214) ---

class SysTick(Registers):
    """PM0214 §4.5 / PM0253 §4.4: CSR, RVR, CVR, CALIB; counts down at the processor clock (CLKSOURCE = 1) or
    HCLK/8, one cycle per instruction; COUNTFLAG and the exception's pending bit at each wrap."""

    name = "SysTick"
    CSR, RVR, CVR, CALIB = 0x0, 0x4, 0x8, 0xC
    ENABLE, TICKINT, CLKSOURCE, COUNTFLAG = 1 << 0, 1 << 1, 1 << 2, 1 << 16

    def __init__(self, state: ChipState):
        self.base_cycles = 0  # the time CVR was last cleared, or the counter started or stopped
        self.base_value = 0  # CVR then
        self.zeros_seen = 0  # times it had reached 0 at the last CSR read (COUNTFLAG: "since last read")
        self.zeros_pended = 0  # times it had reached 0 when its exception was last taken or cleared
        self.pend_latched = False  # ICSR.PENDSTSET
        super().__init__(state)

    def reset(self) -> None:
        super().reset()
        self.base_cycles = self.base_value = self.zeros_seen = self.zeros_pended = 0
        self.pend_latched = False

    def pending(self) -> bool:
        """The SysTick exception is pending: a wrap with TICKINT set, not yet taken or cleared (ICSR.PENDSTSET)."""
        if self.regs.get(self.CSR, 0) & self.TICKINT and self.zeros() > self.zeros_pended:
            self.pend_latched, self.zeros_pended = True, self.zeros()
        return self.pend_latched

    def clear_pending(self) -> None:
        self.pending()
        self.pend_latched = False

    def set_pending(self) -> None:
        self.pend_latched = True
        self.state.interrupt_may_change()

    def next_wrap_at(self) -> int | None:
        """The time of the next wrap that pends the exception, if one will."""
        csr, period = self.regs.get(self.CSR, 0), self._reload() + 1
        if csr & (self.ENABLE | self.TICKINT) != self.ENABLE | self.TICKINT or period == 1:
            return None
        first = self.base_value if self.base_value else period
        return self.base_cycles + (first + self.zeros() * period) * (1 if csr & self.CLKSOURCE else 8)

    def _ticks(self) -> int:
        if not self.regs.get(self.CSR, 0) & self.ENABLE:
            return 0
        divider = 1 if self.regs[self.CSR] & self.CLKSOURCE else 8
        return (self.state.time.cycles - self.base_cycles) // divider

    def _reload(self) -> int:
        return self.regs.get(self.RVR, 0) & 0xFF_FFFF

    def zeros(self) -> int:
        """How often the counter has reached 0 since the base: each time, a wrap (and COUNTFLAG)."""
        ticks, period = self._ticks(), self._reload() + 1
        first = self.base_value if self.base_value else period
        return 0 if ticks < first or period == 1 else 1 + (ticks - first) // period

    def current(self) -> int:
        ticks = self._ticks()
        if ticks <= self.base_value:
            return self.base_value - ticks
        return self._reload() - (ticks - self.base_value - 1) % (self._reload() + 1)

    def _rebase(self, value: int) -> None:
        self.pending()  # a wrap before the rebase stays pending
        self.base_value, self.base_cycles, self.zeros_seen, self.zeros_pended = value, self.state.time.cycles, 0, 0
        self.state.interrupt_may_change()

    def read_word(self, offset: int) -> int:
        if offset == self.CVR:
            return self.current()
        if offset == self.CSR:
            zeros = self.zeros()
            flag = self.COUNTFLAG if zeros > self.zeros_seen else 0
            self.zeros_seen = zeros
            return self.regs.get(self.CSR, 0) | flag
        return self.regs.get(offset, 0)

    def write_word(self, offset: int, value: int) -> None:
        if offset == self.CVR:  # any write clears it, and COUNTFLAG
            self._rebase(0)
        elif offset == self.CSR:
            now = self.current()
            self.regs[self.CSR] = value & 0x7
            self._rebase(now)
        elif offset == self.RVR:
            self.regs[self.RVR] = value & 0xFF_FFFF
            self.state.interrupt_may_change()


class Nvic(Registers):
    """PM0214 §4.2: ISER/ICER/ISPR/ICPR/IPR. A source's request latches its pending bit; ICPR clears it."""

    name = "NVIC"
    ISER, ICER, ISPR, ICPR, IPR = 0x000, 0x080, 0x100, 0x180, 0x300  # from 0xE000_E100

    def __init__(self, state: ChipState):
        self.enabled = 0
        self.pending = 0
        self.sources: dict[int, Callable[[], bool]] = {}  # IRQ number -> its request line now
        super().__init__(state)

    def reset(self) -> None:
        super().reset()
        self.enabled = self.pending = 0

    def sample(self) -> None:
        for irq, request in self.sources.items():
            if request():
                self.pending |= 1 << irq

    def read_word(self, offset: int) -> int:
        self.sample()
        shift = 8 * (offset & 0x7F)  # word n of a bank holds IRQs 32n..32n+31
        if offset < self.ISPR:  # ISER and ICER read the enables
            return self.enabled >> shift & 0xFFFF_FFFF
        if offset < self.ICPR + 0x80:  # ISPR and ICPR read the pending bits
            return self.pending >> shift & 0xFFFF_FFFF
        return self.regs.get(offset, 0)

    def write_word(self, offset: int, value: int) -> None:
        self.state.interrupt_may_change()
        shift = 8 * (offset & 0x7F)
        if offset < self.ICER:
            self.enabled |= value << shift
        elif offset < self.ISPR:
            self.enabled &= ~(value << shift)
        elif offset < self.ICPR:
            self.pending |= value << shift
        elif offset < self.ICPR + 0x80:
            self.pending &= ~(value << shift)
        else:
            self.regs[offset] = value

    def wakeable(self) -> bool:
        """An enabled interrupt is pending: WFI returns (even with PRIMASK set, ARMv7-M ARM B1.5.19)."""
        self.sample()
        return bool(self.pending & self.enabled)

    def can_wake(self) -> list[int]:
        """The enabled IRQs that have a modelled source: what could end a WFI."""
        return [irq for irq in self.sources if self.enabled >> irq & 1]

    def next_pending(self) -> int | None:
        """The lowest-numbered enabled pending IRQ (priorities are not modelled)."""
        self.sample()
        ready = self.pending & self.enabled
        return (ready & -ready).bit_length() - 1 if ready else None

    def taken(self, irq: int) -> None:
        """Exception entry clears the pending bit; a source still asserted pends it again."""
        self.pending &= ~(1 << irq)


class InterruptControl(Registers):
    """SCB ICSR (0xE000_ED04, PM0214 §4.4.3): PENDSTSET reads and sets SysTick's pending bit, PENDSTCLR
    clears it; VECTACTIVE is the exception the core is handling."""

    name = "SCB ICSR"
    PENDSTCLR, PENDSTSET = 1 << 25, 1 << 26

    def __init__(self, state: ChipState, systick: SysTick, active: Callable[[], int]):
        self.systick, self.active = systick, active
        super().__init__(state)

    def read_word(self, offset: int) -> int:
        return (self.PENDSTSET if self.systick.pending() else 0) | self.active() & 0x1FF

    def write_word(self, offset: int, value: int) -> None:
        if value & self.PENDSTCLR:
            self.systick.clear_pending()
        if value & self.PENDSTSET:
            self.systick.set_pending()


class Dwt(Registers):
    """PM0253 §4.1 / ARMv7-M ARM C1.8: CTRL.CYCCNTENA, CYCCNT (one count per instruction here), and on the M7
    the software lock (LAR/LSR): writes are ignored until LAR = 0xC5ACCE55; all need DEMCR.TRCENA."""

    name = "DWT"
    CTRL, CYCCNT, LAR, LSR = 0x000, 0x004, 0xFB0, 0xFB4
    CYCCNTENA, KEY = 1 << 0, 0xC5AC_CE55

    def __init__(self, state: ChipState, trace_enabled: Callable[[], bool], lock: bool, manual: str):
        self.trace_enabled, self.has_lock, self.manual = trace_enabled, lock, manual
        self.locked = lock
        self.count_base = 0  # CYCCNT = count_base + cycles since counting_since, while it counts
        self.counting_since: int | None = None
        self.RESET = {self.CTRL: 0x4000_0000}  # NUMCOMP = 4
        super().__init__(state)

    def reset(self) -> None:
        super().reset()
        self.locked, self.count_base, self.counting_since = self.has_lock, 0, None

    def counting(self) -> bool:
        return self.counting_since is not None

    def cyccnt(self) -> int:
        if self.counting_since is None:
            return self.count_base
        return (self.count_base + self.state.time.cycles - self.counting_since) & 0xFFFF_FFFF

    def read_word(self, offset: int) -> int:
        if offset == self.CYCCNT:
            return self.cyccnt()
        if offset == self.LSR:
            return (1 | int(self.locked) << 1) if self.has_lock else 0
        return self.regs.get(offset, 0)

    def write_word(self, offset: int, value: int) -> None:
        if offset == self.LAR:
            self.locked = self.has_lock and value != self.KEY
            return
        if not self.trace_enabled():
            self.state.find(f"DWT +{offset:#x}", "written with DEMCR.TRCENA = 0: the DWT is off and ignores it "
                            "(ARMv7-M ARM C1.6.5 DEMCR); set TRCENA first")
            return
        if self.locked:
            self.state.find(f"DWT +{offset:#x}", f"written while the DWT is locked (LSR.SLK = 1): ignored "
                            f"({self.manual}); write 0xC5ACCE55 to DWT_LAR first")
            return
        if offset == self.CYCCNT:
            self.count_base = value
            self.counting_since = self.state.time.cycles if self.counting() else None
        elif offset == self.CTRL:
            self.count_base = self.cyccnt()
            self.counting_since = self.state.time.cycles if value & self.CYCCNTENA else None
            self.regs[self.CTRL] = value & 0x0FFF_FFFF | 0x4000_0000


class CacheControl(Registers):
    """PM0253 §4.8-4.9 (M7 L1 caches): CCR.IC/DC at 0xE000_ED14, CLIDR/CTR/CCSIDR/CSSELR at 0xE000_ED78, and the
    maintenance operations ICIALLU (0xE000_EF50) and DCISW (0xE000_EF60). 16 KiB each, 32-byte lines: the
    D-cache 4-way x 128 sets, the I-cache 2-way x 256 sets. A cache must be invalidated before it is enabled:
    its contents are unknown at reset."""

    name = "SCB cache"
    # offsets from 0xE000_ED00
    CCR, CLIDR, CTR, CCSIDR, CSSELR = 0x14, 0x78, 0x7C, 0x80, 0x84
    ICIALLU, DCISW = 0x250, 0x260
    DC, IC = 1 << 16, 1 << 17
    D_SETS, D_WAYS = 128, 4
    CCSIDR_D, CCSIDR_I = 0xF00F_E019, 0xF01F_E009
    RESET = {CCR: 0x0000_0200, CLIDR: 0x0900_0003, CTR: 0x8303_C003}

    def __init__(self, state: ChipState):
        self.dcache_invalidated: set[tuple[int, int]] = set()
        self.icache_invalidated = False
        super().__init__(state)

    def reset(self) -> None:
        super().reset()
        self.dcache_invalidated = set()
        self.icache_invalidated = False

    @property
    def enabled(self) -> tuple[bool, bool]:
        """(I-cache, D-cache)"""
        ccr = self.regs[self.CCR]
        return bool(ccr & self.IC), bool(ccr & self.DC)

    def read_word(self, offset: int) -> int:
        if offset == self.CCSIDR:
            return self.CCSIDR_I if self.regs.get(self.CSSELR, 0) & 1 else self.CCSIDR_D
        if offset in (self.ICIALLU, self.DCISW):
            return 0
        return self.regs.get(offset, 0)

    def write_word(self, offset: int, value: int) -> None:
        if offset == self.ICIALLU:
            self.icache_invalidated = True
        elif offset == self.DCISW:
            self.dcache_invalidated.add((value >> 5 & 0x1FF, value >> 30))
        elif offset == self.CCR:
            old = self.regs[self.CCR]
            if value & self.IC and not old & self.IC and not self.icache_invalidated:
                raise RuleViolation("SCB CCR.IC set before the I-cache was invalidated (ICIALLU): its contents are "
                                    "unknown after reset (PM0253 §4.8.4, enabling the L1 caches); invalidate first")
            missing = self.D_SETS * self.D_WAYS - len(self.dcache_invalidated)
            if value & self.DC and not old & self.DC and missing:
                raise RuleViolation(f"SCB CCR.DC set with {missing} of the D-cache's {self.D_SETS * self.D_WAYS} "
                                    "lines not invalidated by DCISW: their contents are unknown after reset (PM0253 "
                                    "§4.8.4); invalidate every set and way first")
            self.regs[self.CCR] = value
        elif offset != self.CCSIDR:
            self.regs[offset] = value


class DbgMcu(Registers):
    """DBGMCU_IDCODE at 0xE004_2000 (RM0410 §40.6.1: 0x451; RM0394 §46.6.1: 0x435) and CR."""

    name = "DBGMCU"

    def __init__(self, state: ChipState, idcode: int):
        self.RESET = {0x0: idcode}
        super().__init__(state)

    def write_word(self, offset: int, value: int) -> None:
        if offset:
            self.regs[offset] = value


class FlashInterface(Registers):
    """FLASH_ACR: LATENCY reads back at once; lowering it below what HCLK needs is a violation."""

    name = "FLASH"
    ACR = 0x00

    def __init__(self, state: ChipState, latency_bits: int, reset_acr: int, on_change: Callable[[], None]):
        self.latency_mask = (1 << latency_bits) - 1
        self.on_change = on_change
        self.RESET = {self.ACR: reset_acr}
        super().__init__(state)

    @property
    def latency(self) -> int:
        return self.regs[self.ACR] & self.latency_mask

    def write_word(self, offset: int, value: int) -> None:
        old = self.regs.get(offset, 0)
        self.regs[offset] = value
        if offset == self.ACR:
            try:
                self.on_change()
            except RuleViolation:
                self.regs[offset] = old
                raise


class ClockSource(StrEnum):
    HSI = "HSI"
    HSE = "HSE"
    MSI = "MSI"
    PLL = "PLL"


def latency_violation(where: str, hclk: int, needed: int, latency: int, table: str) -> RuleViolation:
    return RuleViolation(f"{where}: HCLK {hclk / MHZ:g} MHz needs FLASH_ACR.LATENCY >= {needed}, it is {latency} "
                         f"({table}); raise LATENCY and read it back before raising the clock")


@dataclass(frozen=True)
class Mapping:
    """A model on the bus at [base, base + size); `shift` is added to the bus offset (a window into a model)."""

    base: int
    size: int
    model: Registers
    shift: int = 0


class Window:
    """A window of a model at another base: offset + shift (the SCB cache registers sit among the core's)."""

    def __init__(self, model: Registers, shift: int):
        self.model, self.shift = model, shift

    def read(self, offset: int, size: int) -> int:
        return self.model.read(offset + self.shift, size)

    def write(self, offset: int, size: int, value: int) -> None:
        self.model.write(offset + self.shift, size, value)

    def reset(self) -> None:
        pass  # the model resets through its own mapping


class Board:
    """One Nucleo board's chip: its models, their addresses, and the clock rules that span them."""

    kind: str
    link_name: str
    wire_name: str
    usarts: dict[str, Usart]
    gpios: dict[str, Gpio]

    def __init__(self, trace_enabled: Callable[[], bool]) -> None:
        self.state = ChipState()
        self.trace_enabled = trace_enabled
        self.systick = SysTick(self.state)
        self.nvic = Nvic(self.state)
        self.active_exception: Callable[[], int] = lambda: 0  # the core's, for ICSR.VECTACTIVE (the harness sets it)
        self.icsr = InterruptControl(self.state, self.systick, lambda: self.active_exception())

    @property
    def link(self) -> Usart:
        return self.usarts[self.link_name]

    @property
    def wire(self) -> Usart:
        return self.usarts[self.wire_name]

    def mappings(self) -> list[Mapping]:
        raise NotImplementedError

    def clocks(self) -> Clocks:
        raise NotImplementedError

    def check_clocks(self, where: str) -> None:
        raise NotImplementedError

    def _wire_usarts(self) -> None:
        for usart in self.usarts.values():
            self.nvic.sources[usart.irq] = usart.rx_pending


def gpio_ports(state: ChipState, ports: dict[str, tuple[int, int]], enabled: Callable[[int], bool],
                reset_moder: dict[str, int]) -> dict[str, Gpio]:
    return {port: Gpio(state, port, reset_moder.get(port, 0), lambda bit=bit: enabled(bit))
            for port, (_, bit) in ports.items()}
