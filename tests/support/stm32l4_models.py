"""Register models of the STM32L432KC on a Nucleo-L432KC (RM0394, UM1956) for the STM32 harness: RCC, PWR and
the board's wiring; the parts all STM32s share are tests/support/stm32_models.py's. Test support, not product."""

from __future__ import annotations

from collections.abc import Callable

from tests.support.stm32_models import (MHZ, Board, ChipState, ClockSource, Clocks, DbgMcu, Dwt, FlashInterface,
                                        Mapping, Pin, Ready, Registers, RuleViolation, Settling, Usart, UsartLine,
                                        ahb_divider, apb_divider, check_range, gpio_ports, latency_violation)

class L4Rcc(Registers):
    """RM0394 §6.4: CR (MSI, HSI16, PLL), CFGR, PLLCFGR, the enable registers, CCIPR and CSR (MSISRANGE)."""

    name = "RCC"
    CR, CFGR, PLLCFGR = 0x00, 0x08, 0x0C
    AHB1ENR, AHB2ENR, APB1ENR1, APB1ENR2, APB2ENR, CCIPR, CSR = 0x48, 0x4C, 0x58, 0x5C, 0x60, 0x88, 0x94
    MSION, MSIRDY, MSIRGSEL, HSION, HSIRDY = 1 << 0, 1 << 1, 1 << 3, 1 << 8, 1 << 10
    PLLON, PLLRDY, PLLREN = 1 << 24, 1 << 25, 1 << 24
    RESET = {CR: 0x0000_0063, PLLCFGR: 0x0000_1000, AHB1ENR: 0x0000_0100, CSR: 0x0C00_0600}
    HSI_HZ = 16 * MHZ
    # RM0394 §6.4.1 MSIRANGE: 100 kHz ... 48 MHz
    MSI_HZ = (100_000, 200_000, 400_000, 800_000, 1 * MHZ, 2 * MHZ, 4 * MHZ, 8 * MHZ, 16 * MHZ, 24 * MHZ,
              32 * MHZ, 48 * MHZ)
    SOURCES = {0: ClockSource.MSI, 1: ClockSource.HSI, 3: ClockSource.PLL}  # 2 = HSE: not fitted on the board
    ENABLES = {AHB1ENR: "AHB1ENR", AHB2ENR: "AHB2ENR", APB1ENR1: "APB1ENR1", APB1ENR2: "APB1ENR2",
               APB2ENR: "APB2ENR"}

    def __init__(self, state: ChipState, chip: NucleoL432KC):
        self.chip = chip
        self.settling = Settling(state.time)
        self.enable_names: dict[tuple[int, int], str] = {}
        super().__init__(state)

    def reset(self) -> None:
        super().reset()
        self.settling = Settling(self.state.time)
        self.settling.ready_at[Ready.MSI] = 0  # on at reset
        self.switched = ClockSource.MSI

    def enabled(self, register: int, bit: int) -> bool:
        return bool(self.regs.get(register, 0) >> bit & 1)

    def msi_hz(self) -> int:
        cr = self.regs[self.CR]
        index = cr >> 4 & 0xF if cr & self.MSIRGSEL else self.bits(self.CSR, 8, 4)
        return self.MSI_HZ[min(index, len(self.MSI_HZ) - 1)]

    def pll_source_hz(self) -> int | None:
        return {0: None, 1: self.msi_hz(), 2: self.HSI_HZ, 3: None}[self.bits(self.PLLCFGR, 0, 2)]

    def pll_input_hz(self) -> int:
        return (self.pll_source_hz() or 0) // (self.bits(self.PLLCFGR, 4, 3) + 1)

    def vco_hz(self) -> int:
        return self.pll_input_hz() * self.bits(self.PLLCFGR, 8, 7)

    def pll_hz(self) -> int:
        return self.vco_hz() // (2 * (self.bits(self.PLLCFGR, 25, 2) + 1))

    def source_ready(self, source: ClockSource) -> bool:
        return {ClockSource.MSI: self.settling.ready(Ready.MSI), ClockSource.HSI: bool(self.regs[self.CR] & self.HSION),
                ClockSource.PLL: self.settling.ready(Ready.PLL)}[source]

    def clocks(self) -> Clocks:
        sysclk = {ClockSource.MSI: self.msi_hz(), ClockSource.HSI: self.HSI_HZ, ClockSource.PLL: self.pll_hz()}[
            self.switched]
        hclk = sysclk // ahb_divider(self.bits(self.CFGR, 4, 4))
        return Clocks(sysclk, hclk, hclk // apb_divider(self.bits(self.CFGR, 8, 3)),
                      hclk // apb_divider(self.bits(self.CFGR, 11, 3)))

    def _follow_switch(self) -> None:
        """SWS follows SW once the source is ready (RM0394 §6.2.7 'Clock source switching')."""
        wanted = self.SOURCES.get(self.bits(self.CFGR, 0, 2))
        if wanted is None:
            raise RuleViolation("RCC CFGR SW = HSE: the Nucleo-L432KC fits no HSE crystal (UM1956 §6.7); use MSI, "
                                "HSI16 or the PLL")
        if wanted != self.switched and self.source_ready(wanted):
            if wanted is ClockSource.PLL and not self.regs[self.PLLCFGR] & self.PLLREN:
                raise RuleViolation("RCC CFGR SW = PLL with PLLCFGR.PLLREN = 0: PLLCLK, the R output, is off "
                                    "(RM0394 §6.4.4 PLLREN); set PLLREN with the PLL configuration")
            previous, self.switched = self.switched, wanted
            try:
                self.chip.check_clocks("RCC CFGR SW")
            except RuleViolation:
                self.switched = previous
                raise

    def read_word(self, offset: int) -> int:
        self._follow_switch()
        value = self.regs.get(offset, 0)
        if offset == self.CR:
            value &= ~(self.MSIRDY | self.HSIRDY | self.PLLRDY)
            value |= self.MSIRDY if self.settling.ready(Ready.MSI) else 0
            value |= self.HSIRDY if value & self.HSION else 0
            value |= self.PLLRDY if self.settling.ready(Ready.PLL) else 0
        elif offset == self.CFGR:
            value = value & ~0xC | {ClockSource.MSI: 0, ClockSource.HSI: 1, ClockSource.PLL: 3}[self.switched] << 2
        return value

    def write_word(self, offset: int, value: int) -> None:
        old = self.regs.get(offset, 0)
        if offset == self.CR:
            if value & self.PLLON and not old & self.PLLON:
                self._check_pll()
            if self.switched is ClockSource.PLL and old & self.PLLON and not value & self.PLLON:
                self.state.find("RCC CR", "PLLON cleared while the PLL is the system clock: ignored (RM0394 §6.2.7)")
                value |= self.PLLON
            self.regs[offset] = value & ~(self.MSIRDY | self.HSIRDY | self.PLLRDY)
            self.settling.start(Ready.PLL, bool(value & self.PLLON))
            self.settling.start(Ready.MSI, bool(value & self.MSION))
        elif offset == self.PLLCFGR:
            fixed = ~(1 << 16 | 1 << 20 | self.PLLREN)  # everything but the output enables
            if (old ^ value) & fixed and self.regs[self.CR] & (self.PLLON | self.PLLRDY):
                self.state.find("RCC PLLCFGR", "divider or source changed while the PLL is on: ignored (RM0394 "
                                "§6.4.4: 'can be written only when the PLL is disabled'); configure before PLLON")
                value = value & ~fixed | old & fixed
            self.regs[offset] = value
        elif offset == self.CFGR:
            self.regs[offset] = value & ~0xC
            try:
                self.chip.check_clocks("RCC CFGR")
                self._follow_switch()
            except RuleViolation:
                self.regs[offset] = old
                raise
        else:
            self.regs[offset] = value
            if offset in self.ENABLES:
                self.state.enabled({name for (register, bit), name in self.enable_names.items()
                                    if register == offset and (value & ~old) >> bit & 1})

    def _check_pll(self) -> None:
        """RM0394 §6.4.4 PLLCFGR: a source, PLLN 8..86, VCO input 4-16 MHz, VCO output 64-344 MHz, PLLR's output
        at most 80 MHz (§6.2.5)."""
        if self.pll_source_hz() is None:
            raise RuleViolation("RCC CR PLLON with PLLCFGR.PLLSRC = none (or HSE, not fitted): the PLL has no input "
                                "(RM0394 §6.4.4 PLLSRC); select MSI or HSI16")
        n = self.bits(self.PLLCFGR, 8, 7)
        if not 8 <= n <= 86:
            raise RuleViolation(f"RCC PLLCFGR PLLN = {n}: outside 8..86 (RM0394 §6.4.4 PLLN); fix it before PLLON")
        check_range("PLL VCO input", self.pll_input_hz(), 4 * MHZ, 16 * MHZ, "RM0394 §6.4.4 PLLM")
        check_range("PLL VCO output", self.vco_hz(), 64 * MHZ, 344 * MHZ, "RM0394 §6.4.4 PLLN")
        check_range("PLLR output", self.pll_hz(), 0, 80 * MHZ, "RM0394 §6.4.4 PLLR")

    def usart_kernel_hz(self, select_shift: int, apb2: bool) -> int:
        """RM0394 §6.4.27 CCIPR USARTxSEL: 00 PCLK, 01 SYSCLK, 10 HSI16, 11 LSE."""
        clocks = self.clocks()
        return {0: clocks.pclk2 if apb2 else clocks.pclk1, 1: clocks.sysclk, 2: self.HSI_HZ, 3: 32768}[
            self.bits(self.CCIPR, select_shift, 2)]


class L4Pwr(Registers):
    """RM0394 §5.4.1 PWR_CR1 VOS (01 range 1, 10 range 2), §5.4.5 PWR_SR2 VOSF while the regulator settles."""

    name = "PWR"
    CR1, SR2 = 0x00, 0x14
    VOSF = 1 << 10
    RESET = {CR1: 0x0000_0200}

    def __init__(self, state: ChipState, chip: NucleoL432KC, clocked: Callable[[], bool]):
        self.chip = chip
        self.settling = Settling(state.time)
        super().__init__(state, clocked)

    def reset(self) -> None:
        super().reset()
        self.settling = Settling(self.state.time)
        self.settling.ready_at[Ready.VOLTAGE] = 0

    @property
    def range(self) -> int:
        return 2 if self.bits(self.CR1, 9, 2) == 2 else 1

    def read_word(self, offset: int) -> int:
        if offset == self.SR2:
            return self.VOSF if not self.settling.ready(Ready.VOLTAGE) else 0
        return self.regs.get(offset, 0)

    def write_word(self, offset: int, value: int) -> None:
        old = self.regs.get(offset, 0)
        self.regs[offset] = value
        if offset == self.CR1 and (old ^ value) >> 9 & 3:
            if self.bits(self.CR1, 9, 2) not in (1, 2):
                self.regs[offset] = old
                raise RuleViolation(f"PWR CR1 VOS = {value >> 9 & 3}: reserved (RM0394 §5.4.1); use 01 or 10")
            try:
                self.chip.check_clocks("PWR CR1 VOS")
            except RuleViolation:
                self.regs[offset] = old
                raise
            self.settling.ready_at[Ready.VOLTAGE] = None
            self.settling.start(Ready.VOLTAGE, True)


class NucleoL432KC(Board):
    """STM32L432KC on a Nucleo-32 (UM1956): MSI (no HSE fitted), link USART2 PA2 (AF7) / PA15 (AF3), wire USART1
    PA9 (AF7)."""

    kind = "nucleo-l432kc"
    link_name, wire_name = "USART2", "USART1"
    # RM0394 §2.2.2 Table 1 (memory map): GPIOA-E, H on AHB2 from 0x4800_0000, AHB2ENR bits 0-4, 7
    GPIO = {"A": (0x4800_0000, 0), "B": (0x4800_0400, 1), "C": (0x4800_0800, 2), "D": (0x4800_0C00, 3),
            "E": (0x4800_1000, 4), "H": (0x4800_1C00, 7)}
    GPIO_MODER = {"A": 0xABFF_FFFF, "B": 0xFFFF_FEBF, "C": 0xFFFF_FFFF, "D": 0xFFFF_FFFF, "E": 0xFFFF_FFFF,
                  "H": 0xFFFF_FFFF}  # RM0394 §8.5.1 reset values
    # name: (base, enable register, bit, CCIPR select shift, on APB2, IRQ (RM0394 §12.3 Table 46), pins)
    USARTS = {
        "USART1": (0x4001_3800, L4Rcc.APB2ENR, 14, 0, True, 37,
                   {UsartLine.TX: Pin("A", 9, 7), UsartLine.RX: Pin("A", 10, 7)}),
        "USART2": (0x4000_4400, L4Rcc.APB1ENR1, 17, 2, False, 38,
                   {UsartLine.TX: Pin("A", 2, 7), UsartLine.RX: Pin("A", 15, 3)}),
    }
    PWREN = (L4Rcc.APB1ENR1, 28)

    def __init__(self, trace_enabled: Callable[[], bool]) -> None:
        super().__init__(trace_enabled)
        state = self.state
        self.rcc = L4Rcc(state, self)
        self.pwr = L4Pwr(state, self, lambda: self.rcc.enabled(*self.PWREN))
        self.flash = FlashInterface(state, latency_bits=3, reset_acr=0x0000_0600,
                                    on_change=lambda: self.check_clocks("FLASH ACR"))
        self.gpios = gpio_ports(state, self.GPIO, lambda bit: self.rcc.enabled(L4Rcc.AHB2ENR, bit), self.GPIO_MODER)
        self.usarts = {}
        for name, (_, register, bit, select, apb2, irq, pins) in self.USARTS.items():
            self.usarts[name] = Usart(
                state, name, "RM0394 §38", lambda r=register, b=bit: self.rcc.enabled(r, b),
                lambda s=select, a=apb2: self.rcc.usart_kernel_hz(s, a), pins, self.gpios.__getitem__, irq)
            self.rcc.enable_names[(register, bit)] = name
        for port, (_, bit) in self.GPIO.items():
            self.rcc.enable_names[(L4Rcc.AHB2ENR, bit)] = f"GPIO{port}"
        self.rcc.enable_names[self.PWREN] = "PWR"
        self.dwt = Dwt(state, trace_enabled, lock=False, manual="PM0214, ARMv7-M ARM C1.8")
        self.dbgmcu = DbgMcu(state, 0x1000_6435)
        self._wire_usarts()

    def mappings(self) -> list[Mapping]:
        maps = [Mapping(0x4002_1000, 0x400, self.rcc), Mapping(0x4000_7000, 0x400, self.pwr),
                Mapping(0x4002_2000, 0x400, self.flash), Mapping(0xE004_2000, 0x10, self.dbgmcu),
                Mapping(0xE000_1000, 0x1000, self.dwt), Mapping(0xE000_E010, 0x10, self.systick),
                Mapping(0xE000_ED04, 4, self.icsr),
                Mapping(0xE000_E100, 0x400, self.nvic)]
        maps += [Mapping(self.GPIO[port][0], 0x400, gpio) for port, gpio in self.gpios.items()]
        maps += [Mapping(self.USARTS[name][0], 0x400, usart) for name, usart in self.usarts.items()]
        return maps

    def clocks(self) -> Clocks:
        return self.rcc.clocks()

    # RM0394 §3.3.3 Table 12: the highest HCLK for LATENCY 0, 1, ... in range 1 and range 2
    LATENCY_LIMITS = {1: (16, 32, 48, 64, 80), 2: (6, 12, 18, 26)}
    RANGE_LIMITS = {1: 80, 2: 26}  # RM0394 §5.1.8 dynamic voltage scaling

    def latency_needed(self, hclk: int) -> int:
        limits = self.LATENCY_LIMITS[self.pwr.range]
        return next((ws for ws, mhz in enumerate(limits) if hclk <= mhz * MHZ), len(limits))

    def check_clocks(self, where: str) -> None:
        clocks = self.clocks()
        needed = self.latency_needed(clocks.hclk)
        if needed > self.flash.latency:
            raise latency_violation(where, clocks.hclk, needed, self.flash.latency,
                                     f"RM0394 §3.3.3, Table 12, range {self.pwr.range}")
        limit = self.RANGE_LIMITS[self.pwr.range] * MHZ
        if clocks.sysclk > limit:
            raise RuleViolation(f"{where}: SYSCLK {clocks.sysclk / MHZ:g} MHz is above the {limit / MHZ:g} MHz of "
                                f"voltage range {self.pwr.range} (RM0394 §5.1.8); select range 1 first")
