"""The STM32 images on the STM32 harness (tests/support/stm32_harness.py): the Nucleo-F767ZI images, which no
QEMU can run, and the Nucleo-L432KC's, flashed by pyOCD through the emulated probe, booted from the probe's
flash on its Cortex-M core with register models of the chip, answering hil's DeviceLink over a pty bit-exactly
against the host reference (50 INFERs per F7 image; the L4 image is also verified in QEMU, so fewer here);
both boards' clock setup held against the models' rules (RM0410, RM0394), with deliberately wrong sequences
the models must catch, and the L4 models' register map held against the vendor SVD pyOCD ships.

Timing here is not meaningful: the core counts instructions (DWT CYCCNT and SysTick advance one per
instruction), with no pipeline, dual issue, cache or flash wait-state model. Cycle counts are only checked
to be positive and consistent with the pins and the instructions run.
"""

import io
import time
import zipfile
from dataclasses import dataclass
from pathlib import Path
from xml.etree import ElementTree

import pytest

import pyocd
from hil.firmware import build as firmware
from hil.firmware.conformance import read_suite
from hil.hw import protocol
from hil.hw.channel import open_port
from hil.hw.emulated.probe import EmulatedProbe
from hil.hw.flasher import flash_image
from hil.hw.kinds import BOARD_KINDS
from hil.hw.link import DeviceLink
from hil.model import decisions
from hil.model.card import load_model
from hil.model.reference import run_reference
from hil.model.testsets import load_model_testsets
from tests.support import stm32_models as models
from tests.support import stm32f7_models as f7
from tests.support import stm32l4_models as l4
from tests.support.stm32_harness import Stm32Harness

F7, L4 = "nucleo-f767zi", "nucleo-l432kc"
MHZ = models.MHZ


def prebuilt_image(kind: str, model: str = "qute-digits") -> bytes:
    return firmware.prebuilt(kind, model).bin.read_bytes()


def wait_for(condition, what: str, timeout_s: float = 10.0) -> None:
    """Polls: the core runs in its own thread, at the pace the host's cores allow."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.01)


# --- the images, flashed by pyOCD, booted from the probe's flash, on the link ---

@dataclass(frozen=True)
class BoardFacts:
    """What board.h says (and the tests check): the clock, and the GPIO port and pins of busy and exit."""

    clock_hz: int
    pin_port: str
    busy_pin: int
    exit_pin: int
    samples_per_testset: int  # the F7 (which only runs here) gets the 50 INFERs; the L4 runs in QEMU too


FACTS = {F7: BoardFacts(216 * MHZ, "E", 13, 9, samples_per_testset=10),
         L4: BoardFacts(80 * MHZ, "B", 0, 1, samples_per_testset=2)}
IMAGES = [(F7, "qute-digits"), (F7, "qute-mnist1d"), (L4, "qute-digits")]


@pytest.fixture(scope="module", params=IMAGES, ids=[f"{kind}-{model}" for kind, model in IMAGES])
def board(request):
    kind_name, model = request.param
    manifest = firmware.prebuilt(kind_name, model)
    kind = BOARD_KINDS[kind_name]
    with EmulatedProbe(f"HARNESS-{kind_name}", kind.pyocd_target) as probe:
        report = flash_image(probe.address, kind.pyocd_target, manifest.bin, manifest.image_sha256,
                             base_address=manifest.load_address)
        assert report.verified and probe.erases > 0 and probe.programs > 0  # through the flash algorithm
        with Stm32Harness.from_probe(probe, kind_name) as harness:
            link = DeviceLink(open_port(harness.link_path), name=f"{kind_name}/{model}", timeout=10)
            yield harness, link, manifest, load_model(model)
            link.port.close()
            harness.check()  # a rule the firmware broke shows here, even when the link only timed out


def test_the_harness_boots_the_bytes_pyocd_flashed(board):
    harness, _link, manifest, _card = board
    image = manifest.bin.read_bytes()
    assert harness.core.memory(manifest.load_address, len(image)) == image
    boot = harness.core.boot_address  # the alias the vector is read from: ITCM (F7), 0 (L4)
    assert boot != manifest.load_address and harness.core.memory(boot, 8) == image[:8]


def test_hello_reports_the_manifest_identity(board):
    harness, link, manifest, card = board
    info = link.hello()
    assert info.board == manifest.board == harness.kind.name
    assert info.firmware_sha256.hex() == manifest.image_sha256
    assert info.model_sha256.hex() == manifest.model_sha256 == card.sha256
    assert info.clock_hz == FACTS[manifest.board].clock_hz
    harness.check()


def test_an_idle_board_sleeps_in_wfi_until_a_byte_arrives(board):
    harness, link, _manifest, _card = board
    link.hello()
    asleep = harness.sleeps
    wait_for(lambda: harness.sleeps > asleep, "the firmware's WFI")  # back in hal_link_read, waiting
    instructions, sleeps = harness.board.state.time.cycles, harness.sleeps
    wait_for(lambda: harness.sleeps >= sleeps + 5, "five more waits for a byte (50 ms each)")
    assert harness.board.state.time.cycles == instructions  # no instruction ran: it sleeps, it does not poll
    link.hello()
    assert harness.board.state.time.cycles > instructions


def test_the_pins_and_the_wire_frames_time_each_window_in_instructions(board):
    harness, link, manifest, card = board
    facts = FACTS[manifest.board]
    link.set_threshold(decisions.Q15_ONE)
    sample = load_model_testsets(card)[0].inputs[0].tobytes()
    gpio, wire_before = harness.board.gpios[facts.pin_port], len(harness.wire_edges())
    pins_before = len(gpio.edges)
    result = link.infer(sample)
    wait_for(lambda: len(harness.wire_edges()) >= wire_before + 4, "the EDGE frames, sent after the reply")
    wire = harness.wire_edges()[wire_before:]
    pins = gpio.edges[pins_before:]
    assert [(edge.pin, edge.level) for edge in wire] == [(0, 1), (1, 1), (1, 0), (0, 0)]  # busy, exit pulse
    assert [(pin, level) for _, pin, level in pins] == [
        (facts.busy_pin, 1), (facts.exit_pin, 1), (facts.exit_pin, 0), (facts.busy_pin, 0)]
    assert wire[3].ticks - wire[0].ticks == result.cycles  # DWT CYCCNT (F7) or SysTick (L4), as the firmware read it
    pin_window = pins[3][0] - pins[0][0]  # instructions counted by the harness between the two BSRR writes
    assert abs(pin_window - result.cycles) < 64  # the same within a basic block or two: the counter counts instructions


def test_inferences_are_bit_exact_against_the_host_reference(board):
    harness, link, manifest, card = board
    facts = FACTS[manifest.board]
    tau = decisions.threshold_q15("0.9")  # some samples exit early, some run every stage
    assert link.set_threshold(tau) == tau
    gpio = harness.board.gpios[facts.pin_port]
    rises_before = sum(1 for _, pin, level in gpio.edges if pin == facts.busy_pin and level)
    answered = exits = 0
    for testset in load_model_testsets(card):
        inputs = testset.inputs[:facts.samples_per_testset]
        reference = run_reference(card, inputs)
        ensemble = decisions.ensemble(list(reference.heads), card.head_luts)
        spec = decisions.cascade(reference.exit, card.exit_lut, ensemble, tau)
        for i, sample in enumerate(inputs):
            result = link.infer(sample.tobytes())
            where = f"{testset.name}[{i}]"
            assert result.logits[0] == tuple(reference.exit[i]), where
            assert (result.exited, result.predicted, result.confidence_q15) == (
                spec.exited[i], spec.predicted[i], spec.confidence_q15[i]), where
            if not result.exited:
                assert result.logits[1:] == tuple(tuple(head[i]) for head in reference.heads), where
            assert result.cycles > 0
            answered += 1
            exits += result.exited
    assert answered == 5 * facts.samples_per_testset and 0 < exits < answered
    if manifest.board == F7:
        assert answered >= 50
    rises = sum(1 for _, pin, level in gpio.edges if pin == facts.busy_pin and level)
    assert rises - rises_before == answered  # one busy window per inference, on the GPIO model's pin
    harness.check()
    assert harness.findings == []


F7_IMAGES = [image for image in IMAGES if image[0] == F7]


# The F7 images only: no QEMU runs them. (The L4 image runs the suite on QEMU in every health check; on this
# harness, whose USART hands the core a byte the moment RDR is free, its 128-byte receive ring drops bytes of
# frames longer than that, which a real line's byte time never lets happen.)
@pytest.mark.parametrize("board", F7_IMAGES, indirect=True, ids=[f"{kind}-{model}" for kind, model in F7_IMAGES])
def test_the_kernel_conformance_suite_is_exact_and_raises_no_busy_window(board):
    """The suite every health check runs (docs/conformance.md), here on the F7 images no QEMU runs."""
    harness, link, manifest, _card = board
    facts = FACTS[manifest.board]
    gpio = harness.board.gpios[facts.pin_port]
    edges_before = len(gpio.edges)
    for vector in read_suite().vectors:
        reply = link.request(protocol.Conformance(vector.payload))
        assert (reply.kernel, reply.output) == (vector.kernel, vector.expected), vector.name
    assert len(gpio.edges) == edges_before  # not an inference: the pins stay still
    harness.check()
    assert harness.findings == []


@pytest.mark.parametrize("board", [(L4, "qute-digits")], indirect=True, ids=[f"{L4}-qute-digits"])
def test_the_l4_counts_a_burst_over_systick_wraps_and_receives_by_interrupt(board):
    """A burst of 20 runs about 22 M instructions (the DSP kernels' full path is about 1.1 M): SysTick
    (24 bits) wraps, its handler extends the count."""
    harness, link, _manifest, card = board
    sample = load_model_testsets(card)[0].inputs[1].tobytes()
    link.set_threshold(decisions.Q15_ONE)
    single = link.infer(sample)
    wraps_before = harness.exceptions_taken.get(15, 0)
    gpio = harness.board.gpios[FACTS[L4].pin_port]
    pins_before = len(gpio.edges)
    runs = 20
    burst = link.infer_burst(sample, runs)
    assert burst.total_cycles > 1 << 24 and harness.exceptions_taken[15] > wraps_before
    assert abs(burst.total_cycles - runs * single.cycles) < runs * single.cycles * 0.001  # back to back, handlers in
    busy = [at for at, pin, _level in gpio.edges[pins_before:] if pin == FACTS[L4].busy_pin]
    assert len(busy) == 2 and abs(busy[1] - busy[0] - burst.total_cycles) < 64  # every wrap counted once
    assert harness.exceptions_taken[16 + 38] > 0  # USART2's RXNE handler took every byte of the link


# --- clock setup against the register models ---

def test_f7_clock_setup_reaches_216_mhz_within_the_rules():
    harness = Stm32Harness(F7, prebuilt_image(F7)).boot()  # runs to the first WFI: hal_init is done
    board, rcc = harness.board, harness.board.rcc
    clocks = board.clocks()
    assert rcc.switched is models.ClockSource.PLL and clocks.sysclk == clocks.hclk == 216 * MHZ
    cr = rcc.read_word(rcc.CR)
    assert cr & rcc.HSEON and cr & rcc.HSEBYP and cr & rcc.HSERDY and cr & rcc.PLLRDY  # HSE 8 MHz bypass
    assert rcc.bits(rcc.PLLCFGR, 22) == 1 and rcc.pll_input_hz() == 2 * MHZ and rcc.vco_hz() == 432 * MHZ
    assert board.pwr.overdrive and board.pwr.scale is f7.VoltageScale.SCALE1
    assert board.flash.latency == 7 == board.latency_needed(216 * MHZ)  # RM0410 Table 7: 210 < HCLK <= 216
    assert board.latency_needed(210 * MHZ) == 6
    assert clocks.pclk1 == 54 * MHZ and clocks.pclk2 == 108 * MHZ
    assert board.cache.enabled == (True, True)
    assert harness.core.bus_read(0xE000_1FB4, 4) == 0b01  # DWT LSR: lock implemented, unlocked
    assert board.dwt.counting()
    before = board.dwt.cyccnt()
    board.state.time.cycles += 1000
    assert board.dwt.cyccnt() - before == 1000
    link = board.link
    assert link.regs[link.BRR] == 469 and abs(link.baud_now() - 115200) / 115200 < 0.02
    assert harness.findings == []
    harness.stop()


def test_l4_clock_setup_reaches_80_mhz_within_the_rules():
    harness = Stm32Harness(L4, prebuilt_image(L4)).boot()
    board, rcc = harness.board, harness.board.rcc
    clocks = board.clocks()
    assert rcc.switched is models.ClockSource.PLL and clocks.sysclk == clocks.hclk == 80 * MHZ
    assert rcc.msi_hz() == 4 * MHZ and rcc.bits(rcc.PLLCFGR, 0, 2) == 1  # PLLSRC = MSI
    assert rcc.pll_input_hz() == 4 * MHZ and 64 * MHZ <= rcc.vco_hz() == 160 * MHZ <= 344 * MHZ
    assert board.pwr.range == 1 and board.flash.latency == 4 == board.latency_needed(80 * MHZ)
    link = board.link
    assert link.name == "USART2" and abs(link.baud_now() - 115200) / 115200 < 0.02
    assert board.systick.regs[board.systick.CSR] & 0b111 == 0b111  # on, interrupting, at the core clock
    assert harness.findings == []
    harness.stop()


# --- the models catch what silicon would not survive ---

def _f7_pll_locked() -> f7.NucleoF767ZI:
    """An F7 with HSE bypass and the 216 MHz PLL locked, SYSCLK still on HSI, PWR clocked."""
    board = f7.NucleoF767ZI(lambda: True)
    rcc = board.rcc
    rcc.write(rcc.APB1ENR, 4, 1 << 28)
    rcc.read(rcc.APB1ENR, 4)
    rcc.write(rcc.CR, 4, rcc.read(rcc.CR, 4) | rcc.HSEBYP)
    rcc.write(rcc.CR, 4, rcc.read(rcc.CR, 4) | rcc.HSEON)
    board.state.time.cycles += 1000
    rcc.write(rcc.PLLCFGR, 4, 1 << 22 | 4 | 216 << 6 | 9 << 24 | 2 << 28)
    rcc.write(rcc.CR, 4, rcc.read(rcc.CR, 4) | rcc.PLLON)
    board.state.time.cycles += 1000
    return board


def test_f7_switching_to_the_pll_before_raising_the_latency_is_caught():
    board = _f7_pll_locked()
    pwr = board.pwr
    pwr.write(pwr.CR1, 4, pwr.read(pwr.CR1, 4) | pwr.ODEN)
    board.state.time.cycles += 1000
    pwr.write(pwr.CR1, 4, pwr.read(pwr.CR1, 4) | pwr.ODSWEN)
    board.state.time.cycles += 1000
    rcc = board.rcc
    rcc.write(rcc.CFGR, 4, 5 << 10 | 4 << 13)
    with pytest.raises(models.RuleViolation, match=r"LATENCY >= 7, it is 0 \(RM0410 §3.3.2, Table 7"):
        rcc.write(rcc.CFGR, 4, 5 << 10 | 4 << 13 | 2)
    assert rcc.switched is models.ClockSource.HSI  # the switch did not happen
    board.flash.write(0, 4, 7)
    rcc.write(rcc.CFGR, 4, 5 << 10 | 4 << 13 | 2)
    assert board.clocks().sysclk == 216 * MHZ


def test_f7_216_mhz_without_over_drive_and_a_stale_cache_are_caught():
    board = _f7_pll_locked()
    board.flash.write(0, 4, 7)
    rcc = board.rcc
    with pytest.raises(models.RuleViolation, match=r"above the 180 MHz of voltage scale1 \(RM0410 §4.1.4"):
        rcc.write(rcc.CFGR, 4, 5 << 10 | 4 << 13 | 2)
    with pytest.raises(models.RuleViolation, match=r"ODSWEN set before CSR1.ODRDY"):
        board.pwr.write(0, 4, board.pwr.read(0, 4) | board.pwr.ODEN | board.pwr.ODSWEN)
    cache = board.cache
    for set_ in range(cache.D_SETS):
        cache.write(cache.DCISW, 4, set_ << 5)  # way 0 only: three ways of every set left
    with pytest.raises(models.RuleViolation, match=r"384 of the D-cache's 512 lines not invalidated"):
        cache.write(cache.CCR, 4, cache.read(cache.CCR, 4) | cache.DC)


def test_f7_unclocked_writes_a_wrong_divisor_and_an_unrouted_pin_are_caught():
    board = f7.NucleoF767ZI(lambda: True)
    gpiod, usart3 = board.gpios["D"], board.usarts["USART3"]
    gpiod.write(gpiod.MODER, 4, 0xA << 16)  # GPIOD's clock is off: ignored, reported
    assert gpiod.regs[gpiod.MODER] == 0 and "RCC clock disabled" in str(board.state.findings[-1])
    rcc = board.rcc
    rcc.write(rcc.AHB1ENR, 4, rcc.read(rcc.AHB1ENR, 4) | 1 << 3)
    gpiod.write(gpiod.MODER, 4, 0xA << 16)  # the access right after the enable: too early
    assert gpiod.regs[gpiod.MODER] == 0 and "right after its RCC clock was enabled" in str(board.state.findings[-1])
    rcc.write(rcc.APB1ENR, 4, 1 << 18)
    rcc.read(rcc.APB1ENR, 4)
    usart3.write(usart3.BRR, 4, 469)  # 54 MHz's divisor, but PCLK1 is still HSI's 16 MHz
    with pytest.raises(models.RuleViolation, match=r"gives 34115 baud, 70.4% off 115200"):
        usart3.write(usart3.CR1, 4, usart3.UE | usart3.TE)
    usart3.write(usart3.CR1, 4, 0)
    usart3.write(usart3.BRR, 4, 139)  # 16 MHz / 139 = 115108 baud
    usart3.write(usart3.CR1, 4, usart3.UE | usart3.TE)
    usart3.write(usart3.BRR, 4, 140)  # ignored while UE = 1
    assert usart3.regs[usart3.BRR] == 139 and "written while UE = 1" in str(board.state.findings[-1])
    with pytest.raises(models.RuleViolation, match=r"USART3 TX on PD8: the pin is in mode 0, AF0"):
        usart3.write(usart3.TDR, 4, 0x55)
    gpiod.write(gpiod.AFRH, 4, 7)
    gpiod.write(gpiod.MODER, 4, 2 << 16)
    usart3.write(usart3.TDR, 4, 0x55)
    assert bytes(usart3.sent) == b"\x55"


def test_l4_pll_out_of_range_and_a_switch_before_the_latency_are_caught():
    board = l4.NucleoL432KC(lambda: True)
    rcc = board.rcc
    rcc.write(rcc.PLLCFGR, 4, 1 | 0 << 4 | 8 << 8 | 1 << 24)  # MSI 4 MHz x 8 = 32 MHz VCO
    with pytest.raises(models.RuleViolation, match=r"PLL VCO output = 32 MHz is outside 64-344 MHz \(RM0394 §6.4.4"):
        rcc.write(rcc.CR, 4, rcc.read(rcc.CR, 4) | rcc.PLLON)
    rcc.write(rcc.PLLCFGR, 4, 1 | 0 << 4 | 40 << 8 | 1 << 24)  # 160 MHz VCO, R / 2 = 80 MHz
    rcc.write(rcc.CR, 4, rcc.read(rcc.CR, 4) | rcc.PLLON)
    assert not rcc.read(rcc.CR, 4) & rcc.PLLRDY  # not locked at once
    board.state.time.cycles += 1000
    assert rcc.read(rcc.CR, 4) & rcc.PLLRDY
    with pytest.raises(models.RuleViolation, match=r"HCLK 80 MHz needs FLASH_ACR.LATENCY >= 4, it is 0 "
                                                   r"\(RM0394 §3.3.3, Table 12, range 1"):
        rcc.write(rcc.CFGR, 4, 3)
    board.flash.write(0, 4, 0x600 | 4)
    rcc.write(rcc.CFGR, 4, 3)
    assert board.clocks().sysclk == 80 * MHZ
    with pytest.raises(models.RuleViolation, match=r"HCLK 80 MHz needs FLASH_ACR.LATENCY >= 4, it is 3"):
        board.flash.write(0, 4, 0x600 | 3)  # lowering it under a running 80 MHz
    assert board.flash.latency == 4


def test_a_wfi_nothing_can_wake_is_caught(monkeypatch):
    """The F7 image with its NVIC writes lost, as if hal_init never enabled USART3's interrupt: its first WFI
    could never end on silicon."""
    harness = Stm32Harness(F7, prebuilt_image(F7))
    monkeypatch.setattr(harness.board.nvic, "write_word", lambda offset, value: None)
    with pytest.raises(models.RuleViolation, match=r"WFI at pc 0x08[0-9a-f]+ with no enabled interrupt"):
        harness.boot()
    harness.stop()


# --- the L4 models' addresses and bits, against the vendor's SVD that pyOCD carries ---

def _svd() -> ElementTree.Element:
    archive = Path(pyocd.__file__).parent / "debug" / "svd" / "svd_data.zip"
    with zipfile.ZipFile(archive) as svd:
        return ElementTree.parse(io.BytesIO(svd.read("STM32L4x2.svd"))).getroot()


def test_l4_register_map_matches_the_svd():
    device = _svd()
    peripherals = {p.findtext("name"): p for p in device.iter("peripheral")}

    def base(name: str) -> int:
        return int(peripherals[name].findtext("baseAddress"), 0)

    def register(peripheral: str, name: str) -> tuple[int, dict[str, tuple[int, int]]]:
        element = peripherals[peripheral]
        while element.find("registers") is None:  # derivedFrom
            element = peripherals[element.get("derivedFrom")]
        reg = next(r for r in element.iter("register") if r.findtext("name") == name)
        fields = {f.findtext("name"): (int(f.findtext("bitOffset")), int(f.findtext("bitWidth")))
                  for f in reg.iter("field")}
        return int(reg.findtext("addressOffset"), 0), fields

    board = l4.NucleoL432KC(lambda: True)
    bases = {mapping.model.name: mapping.base for mapping in board.mappings()}
    for name in ("RCC", "PWR", "FLASH", "GPIOA", "GPIOB", "USART1", "USART2"):
        assert bases[name] == base(name), name
    rcc = l4.L4Rcc
    expected = {
        ("RCC", "CR"): (rcc.CR, {"MSION": (0, 1), "MSIRDY": (1, 1), "MSIRGSEL": (3, 1), "MSIRANGE": (4, 4),
                                 "HSION": (8, 1), "HSIRDY": (10, 1), "PLLON": (24, 1), "PLLRDY": (25, 1)}),
        ("RCC", "CFGR"): (rcc.CFGR, {"SW": (0, 2), "SWS": (2, 2), "HPRE": (4, 4), "PPRE1": (8, 3), "PPRE2": (11, 3)}),
        ("RCC", "PLLCFGR"): (rcc.PLLCFGR, {"PLLSRC": (0, 2), "PLLM": (4, 3), "PLLN": (8, 7), "PLLREN": (24, 1),
                                           "PLLR": (25, 2)}),
        ("RCC", "AHB2ENR"): (rcc.AHB2ENR, {"GPIOAEN": (0, 1), "GPIOBEN": (1, 1)}),
        ("RCC", "APB1ENR1"): (rcc.APB1ENR1, {"USART2EN": (17, 1), "PWREN": (28, 1)}),
        ("RCC", "APB2ENR"): (rcc.APB2ENR, {"USART1EN": (14, 1)}),
        ("RCC", "CCIPR"): (rcc.CCIPR, {"USART1SEL": (0, 2), "USART2SEL": (2, 2)}),
        ("PWR", "CR1"): (l4.L4Pwr.CR1, {"VOS": (9, 2)}),
        ("PWR", "SR2"): (l4.L4Pwr.SR2, {"VOSF": (10, 1)}),
        ("FLASH", "ACR"): (models.FlashInterface.ACR, {"LATENCY": (0, 3)}),
        ("USART2", "ISR"): (models.Usart.ISR, {"RXNE": (5, 1), "TC": (6, 1), "TXE": (7, 1), "TEACK": (21, 1)}),
        ("USART2", "CR1"): (models.Usart.CR1, {"UE": (0, 1), "RE": (2, 1), "TE": (3, 1), "RXNEIE": (5, 1),
                                               "OVER8": (15, 1)}),
        ("USART2", "BRR"): (models.Usart.BRR, {}), ("USART2", "RDR"): (models.Usart.RDR, {}),
        ("USART2", "TDR"): (models.Usart.TDR, {}), ("USART2", "ICR"): (models.Usart.ICR, {}),
        ("GPIOA", "MODER"): (models.Gpio.MODER, {}), ("GPIOA", "AFRL"): (models.Gpio.AFRL, {}),
        ("GPIOA", "AFRH"): (models.Gpio.AFRH, {}), ("GPIOA", "BSRR"): (models.Gpio.BSRR, {}),
        ("GPIOA", "ODR"): (models.Gpio.ODR, {}),
    }
    for (peripheral, name), (offset, fields) in expected.items():
        svd_offset, svd_fields = register(peripheral, name)
        assert svd_offset == offset, (peripheral, name)
        for field, position in fields.items():
            assert svd_fields[field] == position, (peripheral, name, field)
