"""Register models of the STM32F767ZI on a Nucleo-F767ZI (RM0410, UM1974) for the STM32 harness: RCC, PWR and
the board's wiring; the parts all STM32s share are tests/support/stm32_models.py's. Test support, not product."""

from __future__ import annotations

from collections.abc import Callable
from enum import IntEnum

from tests.support.stm32_models import (MHZ, Board, CacheControl, ChipState, ClockSource, Clocks,
                                        DbgMcu, Dwt, FlashInterface, Mapping, Pin, Ready, Registers, RuleViolation,
                                        Settling, Usart, UsartLine, ahb_divider, apb_divider, check_range,
                                        gpio_ports, latency_violation)

class VoltageScale(IntEnum):
    """PWR_CR1.VOS on the F7 (RM0410 §4.4.1)."""

    SCALE3 = 1
    SCALE2 = 2
    SCALE1 = 3


class F7Rcc(Registers):
    """RM0410 §5.3: CR, PLLCFGR, CFGR, the enable registers and DCKCFGR2. HSE is the ST-LINK's 8 MHz MCO in
    bypass (UM1974 §6.8.1); HSI 16 MHz."""

    name = "RCC"
    CR, PLLCFGR, CFGR = 0x00, 0x04, 0x08
    AHB1ENR, APB1ENR, APB2ENR, DCKCFGR2 = 0x30, 0x40, 0x44, 0x90
    HSION, HSIRDY, HSEON, HSERDY, HSEBYP = 1 << 0, 1 << 1, 1 << 16, 1 << 17, 1 << 18
    PLLON, PLLRDY = 1 << 24, 1 << 25
    RESET = {CR: 0x0000_0083, PLLCFGR: 0x2400_3010, AHB1ENR: 0x0010_0000}
    HSI_HZ, HSE_HZ = 16 * MHZ, 8 * MHZ
    SOURCES = {0: ClockSource.HSI, 1: ClockSource.HSE, 2: ClockSource.PLL}
    ENABLES = {AHB1ENR: "AHB1ENR", APB1ENR: "APB1ENR", APB2ENR: "APB2ENR"}

    def __init__(self, state: ChipState, chip: NucleoF767ZI):
        self.chip = chip
        self.settling = Settling(state.time)
        self.enable_names: dict[tuple[int, int], str] = {}  # (register, bit) -> the peripheral it clocks
        super().__init__(state)

    def reset(self) -> None:
        super().reset()
        self.settling = Settling(self.state.time)
        self.switched = ClockSource.HSI  # SWS

    def enabled(self, register: int, bit: int) -> bool:
        return bool(self.regs.get(register, 0) >> bit & 1)

    def pll_input_hz(self) -> int:
        return (self.HSE_HZ if self.bits(self.PLLCFGR, 22) else self.HSI_HZ) // max(self.bits(self.PLLCFGR, 0, 6), 1)

    def vco_hz(self) -> int:
        return self.pll_input_hz() * self.bits(self.PLLCFGR, 6, 9)

    def pll_hz(self) -> int:
        return self.vco_hz() // (2 * (self.bits(self.PLLCFGR, 16, 2) + 1))

    def source_ready(self, source: ClockSource) -> bool:
        cr = self.regs[self.CR]
        return {ClockSource.HSI: bool(cr & self.HSION), ClockSource.HSE: self.settling.ready(Ready.HSE),
                ClockSource.PLL: self.settling.ready(Ready.PLL)}[source]

    def clocks(self) -> Clocks:
        sysclk = {ClockSource.HSI: self.HSI_HZ, ClockSource.HSE: self.HSE_HZ,
                  ClockSource.PLL: self.pll_hz()}[self.switched]
        hclk = sysclk // ahb_divider(self.bits(self.CFGR, 4, 4))
        return Clocks(sysclk, hclk, hclk // apb_divider(self.bits(self.CFGR, 10, 3)),
                      hclk // apb_divider(self.bits(self.CFGR, 13, 3)))

    def _follow_switch(self) -> None:
        """SWS follows SW once the source is ready (RM0410 §5.2.6: 'the switch occurs when the clock source is
        ready')."""
        wanted = self.SOURCES.get(self.bits(self.CFGR, 0, 2))
        if wanted is not None and wanted != self.switched and self.source_ready(wanted):
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
            value &= ~(self.HSIRDY | self.HSERDY | self.PLLRDY)
            value |= (self.HSIRDY if value & self.HSION else 0) | (self.HSERDY if self.settling.ready(Ready.HSE) else 0)
            value |= self.PLLRDY if self.settling.ready(Ready.PLL) else 0
        elif offset == self.CFGR:
            value = value & ~0xC | {ClockSource.HSI: 0, ClockSource.HSE: 1, ClockSource.PLL: 2}[self.switched] << 2
        return value

    def write_word(self, offset: int, value: int) -> None:
        old = self.regs.get(offset, 0)
        if offset == self.CR:
            self._write_cr(old, value)
        elif offset == self.PLLCFGR:
            if old != value and self.regs[self.CR] & self.PLLON:
                self.state.find("RCC PLLCFGR", "written while PLLON = 1: ignored (RM0410 §5.3.2: 'written only "
                                "when the PLL is disabled'); configure the PLL before PLLON")
                return
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

    def _write_cr(self, old: int, value: int) -> None:
        if (old ^ value) & self.HSEBYP and old & self.HSEON:
            self.state.find("RCC CR HSEBYP", "changed while HSEON = 1: ignored (RM0410 §5.3.1: 'HSEBYP can be "
                            "written only if the HSE oscillator is disabled'); set it before HSEON")
            value = value & ~self.HSEBYP | old & self.HSEBYP
        if value & self.HSEON and not value & self.HSEBYP:
            raise RuleViolation("RCC CR HSEON without HSEBYP: the Nucleo-F767ZI's HSE is the ST-LINK's 8 MHz MCO, a "
                                "clock, not a crystal (UM1974 §6.8.1, RM0410 §5.2.2 'External source (HSE bypass)'); "
                                "set HSEBYP before HSEON")
        if value & self.PLLON and not old & self.PLLON:
            self._check_pll()
        in_use = {ClockSource.HSE: self.HSEON, ClockSource.PLL: self.PLLON}.get(self.switched, 0)
        if in_use and old & in_use and not value & in_use:
            self.state.find("RCC CR", f"{self.switched} cleared while it is the system clock: ignored (RM0410 "
                            "§5.2.6); switch SYSCLK away first")
            value |= in_use
        self.regs[self.CR] = value & ~(self.HSIRDY | self.HSERDY | self.PLLRDY)
        self.settling.start(Ready.HSE, bool(value & self.HSEON))
        self.settling.start(Ready.PLL, bool(value & self.PLLON))

    def _check_pll(self) -> None:
        """RM0410 §5.3.2 PLLCFGR: PLLM 2..63 giving a VCO input of 1-2 MHz, PLLN 50..432 giving a VCO output of
        100-432 MHz, PLLP's output at most 216 MHz; a PLL fed by HSE needs HSE on."""
        m, n = self.bits(self.PLLCFGR, 0, 6), self.bits(self.PLLCFGR, 6, 9)
        if not 2 <= m <= 63 or not 50 <= n <= 432:
            raise RuleViolation(f"RCC PLLCFGR PLLM = {m}, PLLN = {n}: outside 2..63 and 50..432 (RM0410 §5.3.2); "
                                "fix PLLCFGR before PLLON")
        if self.bits(self.PLLCFGR, 22) and not self.regs[self.CR] & self.HSEON:
            raise RuleViolation("RCC CR PLLON with PLLSRC = HSE while HSE is off: the PLL has no input (RM0410 "
                                "§5.2.3); turn HSE on and wait for HSERDY first")
        check_range("PLL VCO input", self.pll_input_hz(), 1 * MHZ, 2 * MHZ, "RM0410 §5.3.2 PLLM")
        check_range("PLL VCO output", self.vco_hz(), 100 * MHZ, 432 * MHZ, "RM0410 §5.3.2 PLLN")
        check_range("PLLP output", self.pll_hz(), 0, 216 * MHZ, "RM0410 §5.3.2 PLLP")

    def usart_kernel_hz(self, select_shift: int, apb2: bool) -> int:
        """RM0410 §5.3.28 DCKCFGR2 USARTxSEL: 00 PCLK, 01 SYSCLK, 10 HSI (LSE is not fitted)."""
        clocks = self.clocks()
        return {0: clocks.pclk2 if apb2 else clocks.pclk1, 1: clocks.sysclk, 2: self.HSI_HZ, 3: 32768}[
            self.bits(self.DCKCFGR2, select_shift, 2)]


class F7Pwr(Registers):
    """RM0410 §4.4.1-2: PWR_CR1 VOS/ODEN/ODSWEN and PWR_CSR1 VOSRDY/ODRDY/ODSWRDY; the over-drive sequence of
    §4.1.4."""

    name = "PWR"
    CR1, CSR1 = 0x00, 0x04
    ODEN, ODSWEN = 1 << 16, 1 << 17
    VOSRDY, ODRDY, ODSWRDY = 1 << 14, 1 << 16, 1 << 17
    RESET = {CR1: 0x0000_C000}

    def __init__(self, state: ChipState, rcc: F7Rcc, clocked: Callable[[], bool]):
        self.rcc = rcc
        self.settling = Settling(state.time)
        super().__init__(state, clocked)

    def reset(self) -> None:
        super().reset()
        self.settling = Settling(self.state.time)

    @property
    def scale(self) -> VoltageScale:
        """The scale in force: VOS once the PLL is on, scale 3 while it is off (RM0410 §4.4.1 VOS)."""
        if not self.rcc.settling.ready(Ready.PLL):
            return VoltageScale.SCALE3
        return VoltageScale(max(self.bits(self.CR1, 14, 2), 1))

    @property
    def overdrive(self) -> bool:
        return self.settling.ready(Ready.OVERDRIVE_SWITCH)

    def read_word(self, offset: int) -> int:
        if offset == self.CSR1:
            return ((self.VOSRDY if self.rcc.settling.ready(Ready.PLL) else 0)
                    | (self.ODRDY if self.settling.ready(Ready.OVERDRIVE) else 0)
                    | (self.ODSWRDY if self.settling.ready(Ready.OVERDRIVE_SWITCH) else 0))
        return self.regs.get(offset, 0)

    def write_word(self, offset: int, value: int) -> None:
        if offset != self.CR1:
            self.regs[offset] = value
            return
        old = self.regs[self.CR1]
        if (old ^ value) >> 14 & 3 and self.rcc.regs[self.rcc.CR] & self.rcc.PLLON:
            self.state.find("PWR CR1 VOS", "changed while the PLL is on: ignored (RM0410 §4.4.1 VOS: 'can be "
                            "modified only when the PLL is OFF'); set VOS before PLLON")
            value = value & ~(3 << 14) | old & 3 << 14
        changed = (old ^ value) & (self.ODEN | self.ODSWEN)
        if changed and self.rcc.switched is ClockSource.PLL:
            raise RuleViolation("PWR CR1 ODEN/ODSWEN changed while SYSCLK is the PLL: 'the HSI or HSE must be "
                                "selected as system clock' (RM0410 §4.4.1, over-drive sequence §4.1.4)")
        if value & self.ODSWEN and not old & self.ODSWEN and not self.settling.ready(Ready.OVERDRIVE):
            raise RuleViolation("PWR CR1 ODSWEN set before CSR1.ODRDY: the over-drive switch needs the over-drive "
                                "ready (RM0410 §4.1.4 steps 3-5); set ODEN, wait for ODRDY, then set ODSWEN")
        self.regs[self.CR1] = value
        self.settling.start(Ready.OVERDRIVE, bool(value & self.ODEN))
        self.settling.start(Ready.OVERDRIVE_SWITCH, bool(value & self.ODSWEN))


class NucleoF767ZI(Board):
    """STM32F767ZI on a Nucleo-144 (UM1974): HSE bypass 8 MHz, link USART3 PD8/PD9 (AF7), wire USART6 PG14 (AF8)."""

    kind = "nucleo-f767zi"
    link_name, wire_name = "USART3", "USART6"
    # RM0410 §2.2.2 Table 1 (memory map): GPIOA-K from 0x4002_0000, 1 KiB each, AHB1ENR bits 0-10
    GPIO = {port: (0x4002_0000 + 0x400 * i, i) for i, port in enumerate("ABCDEFGHIJK")}
    GPIO_MODER = {"A": 0xA800_0000, "B": 0x0000_0280}  # RM0410 §6.4.1 reset values
    # name: (base, enable register, bit, DCKCFGR2 select shift, on APB2, IRQ (RM0410 Table 40), pins)
    USARTS = {
        "USART1": (0x4001_1000, F7Rcc.APB2ENR, 4, 0, True, 37, {}),
        "USART2": (0x4000_4400, F7Rcc.APB1ENR, 17, 2, False, 38, {}),
        "USART3": (0x4000_4800, F7Rcc.APB1ENR, 18, 4, False, 39,
                   {UsartLine.TX: Pin("D", 8, 7), UsartLine.RX: Pin("D", 9, 7)}),
        "USART6": (0x4001_1400, F7Rcc.APB2ENR, 5, 10, True, 71,
                   {UsartLine.TX: Pin("G", 14, 8), UsartLine.RX: Pin("G", 9, 8)}),
    }
    PWREN = (F7Rcc.APB1ENR, 28)

    def __init__(self, trace_enabled: Callable[[], bool]) -> None:
        super().__init__(trace_enabled)
        state = self.state
        self.rcc = F7Rcc(state, self)
        self.pwr = F7Pwr(state, self.rcc, lambda: self.rcc.enabled(*self.PWREN))
        self.flash = FlashInterface(state, latency_bits=4, reset_acr=0,
                                    on_change=lambda: self.check_clocks("FLASH ACR"))
        self.gpios = gpio_ports(state, self.GPIO, lambda bit: self.rcc.enabled(F7Rcc.AHB1ENR, bit), self.GPIO_MODER)
        self.usarts = {}
        for name, (_, register, bit, select, apb2, irq, pins) in self.USARTS.items():
            self.usarts[name] = Usart(
                state, name, "RM0410 §34", lambda r=register, b=bit: self.rcc.enabled(r, b),
                lambda s=select, a=apb2: self.rcc.usart_kernel_hz(s, a), pins, self.gpios.__getitem__, irq)
            self.rcc.enable_names[(register, bit)] = name
        for port, (_, bit) in self.GPIO.items():
            self.rcc.enable_names[(F7Rcc.AHB1ENR, bit)] = f"GPIO{port}"
        self.rcc.enable_names[self.PWREN] = "PWR"
        self.dwt = Dwt(state, trace_enabled, lock=True, manual="PM0253 §4.1, ARMv7-M ARM D1.2 LAR/LSR")
        self.cache = CacheControl(state)
        self.dbgmcu = DbgMcu(state, 0x1000_6451)
        self._wire_usarts()

    def mappings(self) -> list[Mapping]:
        # RM0410 §2.2.2 Table 1; the core's: PM0253 §4.1 (DWT), §4.4 (SysTick), §4.2 (NVIC), §4.3 and §4.8 (SCB)
        maps = [Mapping(0x4002_3800, 0x400, self.rcc), Mapping(0x4000_7000, 0x400, self.pwr),
                Mapping(0x4002_3C00, 0x400, self.flash), Mapping(0xE004_2000, 0x10, self.dbgmcu),
                Mapping(0xE000_1000, 0x1000, self.dwt), Mapping(0xE000_E010, 0x10, self.systick),
                Mapping(0xE000_ED04, 4, self.icsr),
                Mapping(0xE000_E100, 0x400, self.nvic), Mapping(0xE000_ED14, 4, self.cache, 0x14),
                Mapping(0xE000_ED78, 0x10, self.cache, 0x78), Mapping(0xE000_EF50, 0x14, self.cache, 0x250)]
        maps += [Mapping(self.GPIO[port][0], 0x400, gpio) for port, gpio in self.gpios.items()]
        maps += [Mapping(self.USARTS[name][0], 0x400, usart) for name, usart in self.usarts.items()]
        return maps

    def clocks(self) -> Clocks:
        return self.rcc.clocks()

    # RM0410 §3.3.2 Table 7, 2.7-3.6 V: LATENCY n allows HCLK up to 30 MHz x (n + 1), 216 MHz at most
    @staticmethod
    def latency_needed(hclk: int) -> int:
        return max(0, -(-hclk // (30 * MHZ)) - 1)

    def hclk_limit(self) -> tuple[int, str]:
        """The HCLK the voltage scale and over-drive allow (RM0410 §4.1.4, Table 18 / DS11532 §6.3.1)."""
        overdrive, scale = self.pwr.overdrive, self.pwr.scale
        limit = {VoltageScale.SCALE1: 216 if overdrive else 180, VoltageScale.SCALE2: 180 if overdrive else 168,
                 VoltageScale.SCALE3: 144}[scale]
        return limit * MHZ, f"{scale.name.lower()}{' with over-drive' if overdrive else ''}"

    def check_clocks(self, where: str) -> None:
        clocks = self.clocks()
        needed = self.latency_needed(clocks.hclk)
        if needed > self.flash.latency:
            raise latency_violation(where, clocks.hclk, needed, self.flash.latency,
                                     "RM0410 §3.3.2, Table 7 at 2.7-3.6 V")
        limit, regime = self.hclk_limit()
        if clocks.hclk > limit:
            raise RuleViolation(f"{where}: HCLK {clocks.hclk / MHZ:g} MHz is above the {limit / MHZ:g} MHz of voltage "
                                f"{regime} (RM0410 §4.1.4: 216 MHz needs scale 1 with over-drive, ODSWRDY set); "
                                "enter over-drive before switching to the PLL")
        apb1, apb2 = (54, 108) if self.pwr.overdrive else (45, 90)
        if clocks.pclk1 > apb1 * MHZ or clocks.pclk2 > apb2 * MHZ:
            raise RuleViolation(f"{where}: PCLK1 {clocks.pclk1 / MHZ:g} MHz / PCLK2 {clocks.pclk2 / MHZ:g} MHz above "
                                f"{apb1} / {apb2} MHz (RM0410 §5.2: APB1 and APB2 maxima); set PPRE1/PPRE2 before "
                                "raising HCLK")
