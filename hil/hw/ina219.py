"""TI INA219 current/power monitor at register level, both directions (datasheet SBOS448G).

`decode()` is the host side: raw registers (real or emulated unit) -> volts, amps, watts.
`Ina219` is the chip side: a modelled true current and bus voltage -> the exact registers a real
INA219 reports (integer math, clipping, flags). No I2C here; see `swap16` for the SMBus trap.
"""

from __future__ import annotations

import functools
import itertools
import math
from collections.abc import Iterator
from dataclasses import dataclass
from fractions import Fraction

import numpy as np

# Register map (SBOS448G §8.6.1, Table 2).
CONFIG, SHUNT, BUS, POWER, CURRENT, CALIBRATION = 0x00, 0x01, 0x02, 0x03, 0x04, 0x05
CONFIG_RESET = 0x399F  # 32 V, /8, 12-bit bus and shunt, shunt+bus continuous
CNVR, OVF = 0x2, 0x1  # bus register bit 1 (conversion ready) and bit 0 (math overflow)
MODE_SHUNT_BUS_CONTINUOUS = 0b111

_SHUNT_LSB_V = Fraction(1, 100_000)  # 10 uV whatever the PGA: the register is sign-extended instead
_BUS_LSB_V = Fraction(4, 1000)  # 4 mV
_CAL_NUMERATOR = Fraction(4096, 100_000)  # the 0.04096 of Cal = trunc(0.04096 / (Current_LSB * Rshunt))
_PG_BITS = {1: 0, 2: 1, 4: 2, 8: 3}  # PGA gain (divider) -> PG field; range = 40 mV * gain
_PG_GAIN = {bits: gain for gain, bits in _PG_BITS.items()}
# ADC table of §8.6.2.1 (Configuration register): conversion time by resolution (1 sample)
# and by number of 12-bit samples averaged.
_RES_TIME_S = {9: 84e-6, 10: 148e-6, 11: 276e-6, 12: 532e-6}
_AVG_TIME_S = {1: 532e-6, 2: 1.06e-3, 4: 2.13e-3, 8: 4.26e-3, 16: 8.51e-3, 32: 17.02e-3, 64: 34.05e-3, 128: 68.10e-3}


def swap16(word: int) -> int:
    """Swap the bytes of a 16-bit word. The INA219 sends MSB first (§8.5.6); SMBus read/write
    word (e.g. Linux i2c_smbus_read_word_data) assumes LSB first: swap such words both ways."""
    return ((word & 0xFF) << 8) | ((word >> 8) & 0xFF)


def _signed16(word: int) -> int:
    word &= 0xFFFF
    return word - 0x10000 if word & 0x8000 else word


def _exact(x: float) -> Fraction:
    # The decimal the caller wrote (0.1 ohm means 0.1, not 0.1000000000000000055...): without
    # this, the datasheet's own example computes Cal = 20479.99... and truncates to 20478.
    return Fraction(repr(float(x)))


def _round_half_away(x: float) -> int:
    # Symmetric, so that I and -I give opposite registers (the shunt register is two's complement).
    n = math.floor(abs(x) + 0.5)
    return -n if x < 0 else n


@dataclass(frozen=True)
class AdcSetting:
    bits: int
    samples: int  # averaged
    time_s: float  # conversion time of one result, averaging included


def adc_setting(field: int) -> AdcSetting:
    """Decode a 4-bit BADC/SADC field. Bit 3 clear: 9..12-bit, one sample, chosen by bits 1:0
    (bit 2 is the table's "X", don't care). Bit 3 set: 12-bit, 2**(bits 2:0) samples averaged."""
    if field & 0x8:
        samples = 1 << (field & 0x7)
        return AdcSetting(12, samples, _AVG_TIME_S[samples])
    bits = 9 + (field & 0x3)
    return AdcSetting(bits, 1, _RES_TIME_S[bits])


@dataclass(frozen=True)
class Config:
    """The configuration register. Defaults are the power-on value 0x399F."""

    bus_range_v: int = 32  # BRNG: 16 or 32
    pga_gain: int = 8  # PG: divide by 1/2/4/8 -> shunt range +-40/80/160/320 mV
    badc: int = 0b0011  # raw 4-bit fields, kept raw so that register round trips are exact
    sadc: int = 0b0011
    mode: int = MODE_SHUNT_BUS_CONTINUOUS  # bit 0: shunt, bit 1: bus, bit 2: continuous

    def __post_init__(self) -> None:
        fields_ok = 0 <= self.badc <= 0xF and 0 <= self.sadc <= 0xF and 0 <= self.mode <= 0x7
        if self.bus_range_v not in (16, 32) or self.pga_gain not in _PG_BITS or not fields_ok:
            raise ValueError(f"not an INA219 configuration: {self}")

    @classmethod
    def from_register(cls, register: int) -> Config:
        # Bit 15 (RST) self-clears and bit 14 is unused: neither is configuration.
        pga = _PG_GAIN[(register >> 11) & 0x3]
        return cls(32 if register & 0x2000 else 16, pga, (register >> 7) & 0xF, (register >> 3) & 0xF, register & 0x7)

    @property
    def register(self) -> int:
        brng = 0x2000 if self.bus_range_v == 32 else 0
        return brng | _PG_BITS[self.pga_gain] << 11 | self.badc << 7 | self.sadc << 3 | self.mode

    @property
    def shunt_range_v(self) -> float:
        return 0.04 * self.pga_gain

    @property
    def bus_adc(self) -> AdcSetting:
        return adc_setting(self.badc)

    @property
    def shunt_adc(self) -> AdcSetting:
        return adc_setting(self.sadc)

    @property
    def conversion_time_s(self) -> float | None:
        """Time until all the mode converts is fresh (None: nothing converts). §8.3.1: the device
        converts the shunt (SADC) and *then* the bus (BADC), and the current/power math adds no
        time, so shunt+bus = shunt time + bus time (1.064 ms at 12/12 bit, ~940 Hz)."""
        shunt = self.shunt_adc.time_s if self.mode & 0x1 else 0.0
        bus = self.bus_adc.time_s if self.mode & 0x2 else 0.0
        return (shunt + bus) or None  # MODE 000 / 100: power-down, ADC off


def pga_gain_for(shunt_ohms: float, max_current_a: float) -> int:
    """Smallest PGA range that Imax*Rshunt fits strictly inside: a reading at exactly full
    scale can't be told from a clipped one (so Imax 0.4 A on 0.1 ohm = 40 mV needs /2, as in
    the datasheet example)."""
    counts = _round_half_away(max_current_a * shunt_ohms / float(_SHUNT_LSB_V))
    for gain in sorted(_PG_BITS):
        if counts < 4000 * gain:
            return gain
    raise ValueError(f"{max_current_a} A x {shunt_ohms} ohm exceeds the 320 mV shunt range")


def _one_two_five_from(x: float) -> Iterator[float]:
    """1-2-5 numbers >= x, ascending (1e-9 relative slack absorbs float noise in x), each built
    from its decimal spelling so that 2e-05 is exactly the literal 2e-05."""
    e = math.floor(math.log10(x)) - 1
    for k in itertools.count():
        yield from (v for v in (float(f"{m}e{e + k}") for m in (1, 2, 5)) if v >= x * (1 - 1e-9))


def _cal_raw(current_lsb_a: float, shunt_ohms: float) -> int:
    return math.trunc(_CAL_NUMERATOR / (_exact(current_lsb_a) * _exact(shunt_ohms)))


def _lsb_from_register(register: int, shunt_ohms: float) -> Fraction:
    return _CAL_NUMERATOR / (register * _exact(shunt_ohms))


@dataclass(frozen=True)
class Calibration:
    """A current LSB for a given shunt, and the calibration register that implements it."""

    shunt_ohms: float
    current_lsb_a: float

    def __post_init__(self) -> None:
        if self.shunt_ohms <= 0 or self.current_lsb_a <= 0 or not 2 <= self._raw() <= 0xFFFF:
            raise ValueError(f"{self}: calibration must fit 16 bits (Cal = 0.04096 / (LSB x Rshunt))")

    def _raw(self) -> int:
        return _cal_raw(self.current_lsb_a, self.shunt_ohms)

    @property
    def register(self) -> int:
        # Bit 0 is not used in the calculation and reads 0 (§8.6.4.1), so mask it here too.
        return self._raw() & 0xFFFE

    @property
    def power_lsb_w(self) -> float:
        return 20 * self.current_lsb_a  # §8.5.1: Power_LSB = 20 x Current_LSB

    @classmethod
    def for_range(cls, shunt_ohms: float, max_current_a: float) -> Calibration:
        """The datasheet's range is Imax/32767 <= LSB <= Imax/4096 (§8.5.1). Rule: the smallest
        1-2-5 number >= Imax/32767 (not /32768, which allows 32768 counts: overflow at Imax) whose
        Cal fits 16 bits; below Imax*Rshunt ~ 20 mV that is above Imax/32767, below 2.56 mV none is.
        """
        pga_gain_for(shunt_ohms, max_current_a)  # refuse a current the shunt range can't hold
        for lsb in _one_two_five_from(max_current_a / 32767):
            if lsb > max_current_a / 4096:
                break
            if _cal_raw(lsb, shunt_ohms) <= 0xFFFF:
                return cls(shunt_ohms, lsb)
        raise ValueError(f"{max_current_a} A x {shunt_ohms} ohm: no current LSB in range has a 16-bit Cal")

    @classmethod
    def from_register(cls, register: int, shunt_ohms: float) -> Calibration:
        """The calibration a unit reports; current_lsb_a is then the *effective* LSB."""
        register &= 0xFFFE
        if register == 0:
            raise ValueError("calibration register is 0 (power-on): the chip reports no current or power")
        lsb = float(_lsb_from_register(register, shunt_ohms))
        while cls(shunt_ohms, lsb).register < register:  # float rounding up: step back an ulp or two
            lsb = math.nextafter(lsb, 0.0)
        return cls(shunt_ohms, lsb)


@dataclass(frozen=True)
class Registers:
    """Raw 16-bit words as the chip reports them (shunt and current are two's complement)."""

    config: int
    shunt: int
    bus: int
    power: int
    current: int
    calibration: int


@dataclass(frozen=True)
class Reading:
    shunt_v: float
    bus_v: float
    conversion_ready: bool
    overflow: bool
    current_a: float | None  # None when OVF is set or calibration is 0: the register is meaningless
    power_w: float | None


@functools.lru_cache(maxsize=64)
def _current_lsb_ratio(calibration: int, shunt_ohms: float) -> tuple[int, int]:
    """The exact current LSB of a calibration register, as numerator and denominator: worked out with
    fractions once per calibration, not per sample (a run decodes hundreds of thousands)."""
    lsb = _lsb_from_register(calibration, shunt_ohms)
    return lsb.numerator, lsb.denominator


def decode(registers: Registers, shunt_ohms: float) -> Reading:
    """Registers -> physical units, scaling current/power by the calibration the unit reports
    (not the one the lab file asked for). Computed exactly, then rounded once to float: Python
    divides integers with one correct rounding, so `count * numerator / denominator` is the float
    nearest the exact product, as float(count * Fraction) is."""
    bus = registers.bus & 0xFFFF
    overflow = bool(bus & OVF)
    current = power = None
    calibration = registers.calibration & 0xFFFE
    if not overflow and calibration:
        numerator, denominator = _current_lsb_ratio(calibration, shunt_ohms)
        current = _signed16(registers.current) * numerator / denominator
        power = (registers.power & 0xFFFF) * 20 * numerator / denominator  # unsigned: PD15..PD0, no sign bit
    shunt_v = _signed16(registers.shunt) * _SHUNT_LSB_V.numerator / _SHUNT_LSB_V.denominator
    bus_v = (bus >> 3) * _BUS_LSB_V.numerator / _BUS_LSB_V.denominator
    return Reading(shunt_v, bus_v, bool(bus & CNVR), overflow, current, power)


class Ina219:
    """The chip model behind an emulated measurement unit (one per shunt): writable config and
    calibration, and the results of the last conversion. Current and power are computed at
    conversion time (the chip's background math), so a new calibration shows at the next one."""

    def __init__(self, shunt_ohms: float, config: Config | None = None, calibration: int = 0):
        self.shunt_ohms = shunt_ohms
        self._regs = {CONFIG: CONFIG_RESET, SHUNT: 0, BUS: 0, POWER: 0, CURRENT: 0, CALIBRATION: 0}
        self.write(CONFIG, (config or Config()).register)
        self.write(CALIBRATION, calibration)

    @property
    def config(self) -> Config:
        return Config.from_register(self._regs[CONFIG])

    def write(self, register: int, value: int) -> None:
        value &= 0xFFFF
        if register == CONFIG:
            if value & 0x8000:  # RST: everything back to power-on values
                self._regs = {r: 0 for r in self._regs} | {CONFIG: CONFIG_RESET}
                return
            self._regs[CONFIG] = value & 0x3FFF
            if value & 0x3:  # writing a converting mode clears CNVR (§8.6.3.2, condition 1)
                self._regs[BUS] &= ~CNVR
        elif register == CALIBRATION:
            self._regs[CALIBRATION] = value & 0xFFFE
        else:
            raise ValueError(f"register {register:#x} is read-only or does not exist")

    def read(self, register: int) -> int:
        """A bus read, with its side effect: reading POWER clears CNVR (§8.6.3.2, condition 2).
        TI E2E thread 647053 reports a part where reading BUS cleared it: hosts rely on neither."""
        value = self._regs[register]
        if register == POWER:
            self._regs[BUS] &= ~CNVR
        return value

    def registers(self) -> Registers:
        """All six registers, without read side effects."""
        return Registers(*(self._regs[r] for r in (CONFIG, SHUNT, BUS, POWER, CURRENT, CALIBRATION)))

    def convert(
        self, true_current_a: float, bus_v: float, rng: np.random.Generator | None = None, noise_lsb: float = 0.0
    ) -> Registers:
        """One completed conversion in the configured mode; returns the registers after it.

        true_current_a is the *mean* current over the shunt conversion window
        (config.shunt_adc.time_s, the first part of config.conversion_time_s): the ADC integrates
        and averages, and only the caller knows the waveform. bus_v is the voltage at IN-, the
        load side of the shunt. noise_lsb adds Gaussian noise of that sigma, in 10 uV shunt LSBs.
        The datasheet gives no rounding rule for the ADC (only for the digital math, which
        truncates): the shunt and bus values round to nearest, as an ideal ADC does.
        """
        cfg, regs = self.config, self._regs
        if not cfg.mode & 0x3:
            raise ValueError(f"MODE {cfg.mode:03b} converts nothing (power-down / ADC off)")
        overflow = False
        shunt = _signed16(regs[SHUNT])
        if cfg.mode & 0x1:
            counts = true_current_a * self.shunt_ohms / float(_SHUNT_LSB_V)
            if noise_lsb:
                if rng is None:
                    raise ValueError("noise needs a seeded numpy Generator, so that runs reproduce")
                counts += float(rng.normal(0.0, noise_lsb))
            full_scale = 4000 * cfg.pga_gain  # +-40 mV x gain in 10 uV counts (0x7D00 at /8)
            shunt = _round_half_away(counts)
            if abs(shunt) > full_scale:  # the PGA saturates: current/power become meaningless
                shunt, overflow = (full_scale if shunt > 0 else -full_scale), True
            regs[SHUNT] = shunt & 0xFFFF
        bus = regs[BUS] >> 3
        if cfg.mode & 0x2:  # clip at the full-scale code of §8.6.3.2: 32 V = 8000 (0x1F40), 16 V = 4000
            bus = min(max(_round_half_away(bus_v / float(_BUS_LSB_V)), 0), cfg.bus_range_v * 250)
        # Eq. 4 and 5 (§8.5.1): integer results, truncated (toward zero, so sign-symmetric).
        # "Bus Voltage" in Eq. 5 is the register shifted right 3 (4 mV units): 12500 x 1250 / 5000
        # = 3125 in the datasheet example; the raw word 0x2712 would give 25004.
        product = shunt * regs[CALIBRATION]
        current = abs(product) // 4096 * (-1 if product < 0 else 1)
        if not -0x8000 <= current <= 0x7FFF:
            current, overflow = max(min(current, 0x7FFF), -0x8000), True
        # Power is unsigned (PD15..PD0, no sign bit: §8.6.3.3), so |current|. It cannot overflow
        # once current fits: 32768 x 8000 / 5000 = 52428 < 65536, so OVF only comes from current.
        power = abs(current) * bus // 5000
        regs[CURRENT], regs[POWER] = current & 0xFFFF, power
        regs[BUS] = bus << 3 | CNVR | (OVF if overflow else 0)
        return self.registers()
