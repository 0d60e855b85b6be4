"""The INA219 register model against the datasheet (TI SBOS448G) and its worked example."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hil.hw.ina219 import (
    BUS,
    CALIBRATION,
    CNVR,
    CONFIG,
    CONFIG_RESET,
    CURRENT,
    OVF,
    POWER,
    SHUNT,
    Calibration,
    Config,
    Ina219,
    Registers,
    adc_setting,
    decode,
    pga_gain_for,
    swap16,
)

# Datasheet example (notes/hardware.md): 0.1 ohm shunt, Imax 0.4 A, 5 V bus, 250 mA load.
R, IMAX = 0.1, 0.4
EXAMPLE = Registers(config=0x099F, shunt=2500, bus=0x2712, power=3125, current=12500, calibration=20480)


def example_chip() -> Ina219:
    return Ina219(R, Config(bus_range_v=16, pga_gain=pga_gain_for(R, IMAX)), Calibration.for_range(R, IMAX).register)


# --- the worked example, both directions ------------------------------------------------------


def test_example_calibration():
    cal = Calibration.for_range(R, IMAX)
    assert pga_gain_for(R, IMAX) == 2  # 40 mV sits exactly at the /1 limit, so /2 (+-80 mV)
    assert cal.current_lsb_a == 20e-6
    assert cal.register == 20480
    assert cal.power_lsb_w == pytest.approx(0.4e-3, rel=1e-12)
    assert Calibration(R, 20e-6) == cal  # explicit LSB gives the same
    assert Config(bus_range_v=16, pga_gain=2).register == 0x099F


def test_example_encode():
    assert example_chip().convert(0.250, 5.0) == EXAMPLE


def test_example_decode():
    reading = decode(EXAMPLE, R)
    assert reading.current_a == 0.25
    assert reading.bus_v == 5.0
    assert reading.power_w == 1.25
    assert reading.shunt_v == 0.025
    assert reading.conversion_ready and not reading.overflow


def test_power_register_uses_bus_in_4mv_units():
    # Eq. 5: Power = Current x Bus / 5000 with Bus = register >> 3, not the raw 0x2712 word.
    regs = example_chip().convert(0.250, 5.0)
    assert regs.power == 12500 * (0x2712 >> 3) // 5000 == 3125
    assert decode(regs, R).power_w == pytest.approx(0.250 * 5.0, abs=0.4e-3)


# --- configuration register ---------------------------------------------------------------------


def test_reset_config_decodes_to_datasheet_defaults():
    cfg = Config.from_register(CONFIG_RESET)
    assert (cfg.bus_range_v, cfg.pga_gain, cfg.shunt_range_v) == (32, 8, pytest.approx(0.32))
    assert (cfg.bus_adc.bits, cfg.bus_adc.samples) == (12, 1)
    assert (cfg.shunt_adc.bits, cfg.shunt_adc.samples) == (12, 1)
    assert cfg.mode == 0b111  # shunt and bus, continuous
    assert cfg == Config() and cfg.register == CONFIG_RESET


def test_config_round_trip_every_value():
    for word in range(0x4000):  # bit 15 (RST) self-clears, bit 14 is unused
        assert Config.from_register(word).register == word
    assert Config.from_register(0xC000 | 0x099F).register == 0x099F


def test_invalid_config_rejected():
    with pytest.raises(ValueError):
        Config(bus_range_v=24)
    with pytest.raises(ValueError):
        Config(pga_gain=3)
    with pytest.raises(ValueError):
        Config(sadc=0x10)


@pytest.mark.parametrize(
    "field, bits, samples, time_s",
    [
        (0b0000, 9, 1, 84e-6),
        (0b0001, 10, 1, 148e-6),
        (0b0010, 11, 1, 276e-6),
        (0b0011, 12, 1, 532e-6),
        (0b0111, 12, 1, 532e-6),  # bit 2 is "X" (don't care) when bit 3 is clear
        (0b0100, 9, 1, 84e-6),
        (0b1000, 12, 1, 532e-6),
        (0b1001, 12, 2, 1.06e-3),
        (0b1010, 12, 4, 2.13e-3),
        (0b1011, 12, 8, 4.26e-3),
        (0b1100, 12, 16, 8.51e-3),
        (0b1101, 12, 32, 17.02e-3),
        (0b1110, 12, 64, 34.05e-3),
        (0b1111, 12, 128, 68.10e-3),
    ],
)
def test_adc_settings_table(field, bits, samples, time_s):
    setting = adc_setting(field)
    assert (setting.bits, setting.samples, setting.time_s) == (bits, samples, time_s)


def test_conversion_time_depends_on_mode():
    assert Config().conversion_time_s == pytest.approx(532e-6 + 532e-6)  # shunt then bus: ~940 Hz
    assert Config(sadc=0b1111, badc=0b0000).conversion_time_s == pytest.approx(68.10e-3 + 84e-6)
    assert Config(sadc=0b1111, badc=0b0000, mode=0b101).conversion_time_s == pytest.approx(68.10e-3)  # shunt only
    assert Config(sadc=0b1111, badc=0b0000, mode=0b110).conversion_time_s == pytest.approx(84e-6)  # bus only
    assert Config(mode=0b011).conversion_time_s == pytest.approx(1.064e-3)  # triggered: same sequence
    assert Config(mode=0b000).conversion_time_s is None
    assert Config(mode=0b100).conversion_time_s is None


# --- calibration -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "shunt, imax, lsb",
    [
        (0.1, 0.4, 20e-6),
        (0.1, 3.0, 100e-6),
        (0.1, 1.0, 50e-6),
        (0.01, 10.0, 500e-6),
        (1.0, 0.032767, 1e-6),  # Imax/32767 is itself round: taken as is, Imax reads 32767
        (1.0, 0.032768, 2e-6),  # Imax/32768 = 1 uA would read Imax as 32768: overflow
        (0.01, 1.0, 100e-6),  # 10 mV: 50 uA would need Cal 81920, so the next 1-2-5 step
    ],
)
def test_for_range_rounds_up_to_1_2_5(shunt, imax, lsb):
    cal = Calibration.for_range(shunt, imax)
    assert cal.current_lsb_a == lsb
    assert imax / 32767 <= cal.current_lsb_a <= imax / 4096


def test_calibration_masks_bit0_and_checks_range():
    assert Calibration(0.1, 19e-6).register == 21556  # trunc(21557.9) = 21557, then bit 0 dropped
    with pytest.raises(ValueError):
        Calibration(0.1, 1e-9)  # Cal would be 409.6 million
    with pytest.raises(ValueError):
        Calibration.for_range(0.1, 3.3)  # 330 mV: beyond even the /8 range
    with pytest.raises(ValueError):
        Calibration.from_register(0, R)


def test_pga_gain_is_the_smallest_range_strictly_holding_imax():
    assert pga_gain_for(0.1, 0.399) == 1
    assert pga_gain_for(0.1, 0.4) == 2
    assert pga_gain_for(0.1, 1.5) == 4
    assert pga_gain_for(0.1, 3.19) == 8
    with pytest.raises(ValueError):
        pga_gain_for(0.1, 3.2)


@given(st.integers(1, 0x7FFF).map(lambda n: 2 * n), st.sampled_from([0.001, 0.01, 0.05, 0.1, 0.2, 0.5, 1.0]))
def test_calibration_from_register_round_trips(cal, shunt):
    assert Calibration.from_register(cal, shunt).register == cal
    assert Calibration.from_register(cal | 1, shunt).register == cal


# --- overflow, conversion ready, sign, power-on ---------------------------------------------------


def test_shunt_beyond_pga_range_sets_ovf_and_hides_current():
    regs = example_chip().convert(1.0, 5.0)  # 100 mV on a +-80 mV range
    assert regs.shunt == 8000 and regs.bus & OVF
    reading = decode(regs, R)
    assert reading.overflow and reading.current_a is None and reading.power_w is None
    assert reading.shunt_v == pytest.approx(0.080)  # the clipped value is still reported


def test_current_arithmetic_overflow_sets_ovf():
    regs = example_chip().convert(0.7, 5.0)  # 70 mV fits the PGA, but 7000 x 20480 / 4096 = 35000
    assert regs.shunt == 7000 and regs.bus & OVF
    assert decode(regs, R).current_a is None
    assert not example_chip().convert(0.65, 5.0).bus & OVF  # 32500 still fits


def test_cnvr_set_by_conversion_and_cleared_by_reading_power():
    chip = example_chip()
    assert not chip.read(BUS) & CNVR  # nothing converted yet
    chip.convert(0.250, 5.0)
    assert chip.read(BUS) & CNVR
    assert chip.read(BUS) & CNVR  # per the datasheet, reading BUS does not clear it
    assert chip.read(POWER) == 3125
    assert chip.read(BUS) == 0x2710  # CNVR gone, the value stays
    chip.convert(0.250, 5.0)
    chip.write(CONFIG, Config(bus_range_v=16, pga_gain=2, mode=0b011).register)  # a new mode clears it
    assert not chip.read(BUS) & CNVR


def test_reverse_current_round_trips_with_sign():
    regs = example_chip().convert(-0.250, 5.0)
    assert regs.shunt == 0x10000 - 2500 == 0xF63C  # two's complement on the wire
    assert regs.current == 0x10000 - 12500
    assert regs.power == 3125  # the power register has no sign bit
    reading = decode(regs, R)
    assert (reading.shunt_v, reading.current_a, reading.power_w) == (-0.025, -0.25, 1.25)


def test_adc_rounds_to_nearest_and_math_truncates_toward_zero():
    chip = Ina219(R, Config(bus_range_v=16, pga_gain=2), 30000)  # 30000 / 4096 is not an integer
    lsb_a = 10e-6 / R  # one shunt LSB, in amps
    assert chip.convert(2500.4 * lsb_a, 5.0021).shunt == 2500
    regs = chip.convert(2500.6 * lsb_a, 5.0019)
    assert (regs.shunt, regs.bus >> 3) == (2501, 1250)
    assert regs.current == 2501 * 30000 // 4096 == 18317  # 18317.87, truncated
    regs = chip.convert(-2500.6 * lsb_a, 5.0)
    assert _signed(regs.shunt) == -2501 and _signed(regs.current) == -18317  # not floor's -18318


def _signed(word: int) -> int:
    return word - 0x10000 if word & 0x8000 else word


def test_power_on_calibration_zero_reads_zero_current_and_power():
    chip = Ina219(R, Config(bus_range_v=16, pga_gain=2))  # calibration defaults to 0, as at power-on
    regs = chip.convert(0.250, 5.0)
    assert (regs.calibration, regs.current, regs.power) == (0, 0, 0)
    assert regs.shunt == 2500 and regs.bus == 0x2712  # voltages are still measured
    reading = decode(regs, R)
    assert reading.current_a is None and reading.power_w is None and reading.bus_v == 5.0


def test_register_writes():
    chip = example_chip()
    chip.write(CALIBRATION, 20481)
    assert chip.read(CALIBRATION) == 20480  # bit 0 is not implemented
    chip.convert(0.250, 5.0)
    chip.write(CONFIG, 0x8000)  # RST
    assert chip.registers() == Registers(CONFIG_RESET, 0, 0, 0, 0, 0)
    for read_only in (SHUNT, BUS, POWER, CURRENT):
        with pytest.raises(ValueError):
            chip.write(read_only, 0)


def test_bus_clipping_and_modes():
    chip = example_chip()
    assert chip.convert(0.1, 20.0).bus >> 3 == 4000  # 16 V range full scale
    assert chip.convert(0.1, -1.0).bus >> 3 == 0
    assert Ina219(R, Config(bus_range_v=32), 20480).convert(0.1, 40.0).bus >> 3 == 8000
    chip.convert(0.1, 5.0)
    chip.write(CONFIG, Config(bus_range_v=16, pga_gain=2, mode=0b101).register)  # shunt only
    regs = chip.convert(0.2, 12.0)
    assert regs.shunt == 2000 and regs.bus >> 3 == 1250  # bus kept from the last bus conversion
    chip.write(CONFIG, Config(mode=0b000).register)
    with pytest.raises(ValueError):
        chip.convert(0.1, 5.0)


def test_noise_is_reproducible_and_needs_a_generator():
    a = [example_chip().convert(0.25, 5.0, np.random.default_rng(7), noise_lsb=3.0).shunt for _ in range(2)]
    assert a[0] == a[1]
    shunts = [example_chip().convert(0.25, 5.0, np.random.default_rng(s), noise_lsb=3.0).shunt for s in range(50)]
    assert len(set(shunts)) > 3 and abs(np.mean(shunts) - 2500) < 3
    with pytest.raises(ValueError):
        example_chip().convert(0.25, 5.0, noise_lsb=1.0)


# --- property: decode(convert(I)) is within the quantisation bounds -----------------------------


@settings(max_examples=300, deadline=None)
@given(
    shunt=st.sampled_from([0.01, 0.05, 0.1, 0.2, 1.0]),
    full=st.floats(0.02, 0.999),  # Imax x R as a fraction of the 320 mV range
    frac=st.floats(-1.0, 1.0),
    bus_v=st.floats(0.0, 16.0),
)
def test_decode_of_convert_is_within_one_lsb(shunt, full, frac, bus_v):
    imax = full * 0.32 / shunt
    cal = Calibration.for_range(shunt, imax)
    chip = Ina219(shunt, Config(bus_range_v=16, pga_gain=pga_gain_for(shunt, imax)), cal.register)
    current = frac * (imax - 10e-6 / shunt)  # one shunt LSB of headroom: rounding can't overflow
    reading = decode(chip.convert(current, bus_v), shunt)
    assert not reading.overflow
    lsb = Calibration.from_register(cal.register, shunt).current_lsb_a  # effective, after trunc
    current_bound = lsb + 10e-6 / shunt
    assert abs(reading.current_a - current) <= current_bound
    # P = |I| V: one power LSB of truncation, plus the current and bus (2 mV) errors multiplied out.
    power_bound = 20 * lsb + current_bound * bus_v + abs(current) * 2e-3 + current_bound * 2e-3
    assert abs(reading.power_w - abs(current) * bus_v) <= power_bound * (1 + 1e-9)


# --- SMBus byte order ------------------------------------------------------------------------------


def test_swap16():
    assert swap16(0x1227) == 0x2712
    assert swap16(0x2712) == 0x1227
    assert swap16(swap16(0xBEEF)) == 0xBEEF
    assert swap16(0x12345) == 0x4523  # only the low 16 bits
    smbus_words = {name: swap16(value) for name, value in vars(EXAMPLE).items()}
    assert decode(Registers(**{k: swap16(v) for k, v in smbus_words.items()}), R).current_a == 0.25


def exact_reading(registers: Registers, shunt_ohms: float) -> tuple:
    """decode()'s figures as it first computed them: with fractions, on every sample."""
    from fractions import Fraction

    def signed(word: int) -> int:
        return word - 0x10000 if word & 0x8000 else word

    lsb = Fraction(4096, 100_000) / ((registers.calibration & 0xFFFE) * Fraction(repr(float(shunt_ohms))))
    bus = registers.bus & 0xFFFF
    return (float(signed(registers.current & 0xFFFF) * lsb), float((registers.power & 0xFFFF) * 20 * lsb),
            float(signed(registers.shunt & 0xFFFF) * Fraction(1, 100_000)), float((bus >> 3) * Fraction(4, 1000)))


@pytest.mark.parametrize("shunt, imax", [(0.1, 3.0), (0.1, 0.4), (1.0, 0.1), (0.01, 10.0), (0.5, 0.05)])
def test_cached_decode_equals_the_exact_arithmetic_bit_for_bit(shunt, imax):
    calibration = Calibration.for_range(shunt, imax)
    words = np.random.default_rng(12).integers(0, 0x10000, size=(4000, 4))
    words[:, 1] &= ~OVF  # an overflow hides current and power; those words are compared below
    for register in (calibration.register, 0x0002, 0xFFFE, 4097 * 2):
        for shunt_word, bus_word, power_word, current_word in words.tolist():
            registers = Registers(0, shunt_word, bus_word, power_word, current_word, register)
            reading = decode(registers, shunt)
            assert (reading.current_a, reading.power_w, reading.shunt_v, reading.bus_v) == \
                exact_reading(registers, shunt), registers
    overflowed = decode(Registers(0, 1, 0x0001, 5, 5, calibration.register), shunt)
    assert (overflowed.current_a, overflowed.power_w) == (None, None)
