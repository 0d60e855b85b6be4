"""The prebuilt firmware: reproducible, and bit-exact against the host reference when it runs on an
emulated board. Its files on disk (generated code, manifests, sizes) are tests/unit/test_prebuilt.py."""

import os
import shutil

import numpy as np
import pytest

from hil.model import decisions
from hil.firmware import build as firmware
from hil.hw.emulated.qemu import QemuBoard
from hil.hw.kinds import BOARD_KINDS
from hil.hw.link import DeviceError, DeviceLink
from hil.model.card import load_model
from hil.model.reference import run_reference
from hil.model.testsets import load_model_testsets

PAIRS = [(board, model) for board in firmware.BOARDS for model in firmware.MODELS]
# The images an emulated board runs: every kind with a QEMU twin (the F767 has none).
EMULATED = [(board, model) for board, model in PAIRS if BOARD_KINDS[board].qemu is not None]
L4 = "nucleo-l432kc"
TOOLCHAIN = shutil.which("arm-none-eabi-gcc") is not None
QEMU = shutil.which("qemu-system-arm") is not None
SUBSET = 12  # samples per test set on every image here; `hil firmware verify --full` runs all
ANSWER_INSTRUCTIONS = 400  # an early exit's answer after stage 1: argmax, result, the pins (120-150 measured)
THRESHOLDS = ["0.5", "0.55", "0.6", "0.65", "0.7", "0.75", "0.8", "0.85", "0.9", "0.95", "1.0"]

needs_toolchain = pytest.mark.skipif(not TOOLCHAIN and not os.environ.get("CI"),
                                     reason="arm-none-eabi-gcc not installed (CI installs it)")
needs_qemu = pytest.mark.skipif(not QEMU and not os.environ.get("CI"),
                                reason="qemu-system-arm not installed (CI installs it)")


@needs_toolchain
def test_rebuild_is_byte_identical(tmp_path):
    """Every kind's images, MPS2 and STM32 alike, rebuilt here equal the committed ones byte for byte;
    only a toolchain other than the one the manifests name can make them differ, and then it says so."""
    committed_toolchains = {firmware.prebuilt(board, model).toolchain for board, model in PAIRS}
    installed = firmware.toolchain_version()
    if committed_toolchains != {installed}:
        pytest.skip(f"installed toolchain {installed!r} is not the manifests' {sorted(committed_toolchains)!r}: "
                    "the bytes may differ")
    built = firmware.build(out=tmp_path)
    assert sorted((m.board, m.model, m.rounding) for m in built) == sorted(
        (board, model, rounding) for board, model in PAIRS for rounding in firmware.ROUNDINGS)
    for manifest in built:
        committed = firmware.prebuilt(manifest.board, manifest.model, manifest.rounding)
        assert manifest.elf.read_bytes() == committed.elf.read_bytes(), (manifest.board, manifest.model)
        assert manifest.bin.read_bytes() == committed.bin.read_bytes()
        assert manifest.to_json() == committed.to_json()


@pytest.fixture(scope="module", params=EMULATED, ids=[f"{b}-{m}" for b, m in EMULATED])
def board(request):
    board_kind, model = request.param
    manifest = firmware.prebuilt(board_kind, model)
    with QemuBoard(BOARD_KINDS[board_kind], manifest.elf) as qemu:
        yield qemu, DeviceLink(qemu.link, name=f"{board_kind}/{model}"), manifest, load_model(model)


@needs_qemu
def test_hello_reports_the_identity_in_the_manifest(board):
    _qemu, link, manifest, card = board
    info = link.hello()
    assert info.firmware_sha256.hex() == manifest.image_sha256
    assert info.model_sha256.hex() == manifest.model_sha256 == card.sha256
    assert info.board == manifest.board
    assert info.input_size == int(np.prod(card.input.shape))
    assert info.clock_hz == BOARD_KINDS[manifest.board].timer_hz


@needs_qemu
def test_outputs_are_bit_exact_and_decisions_follow_the_spec(board):
    qemu, link, _manifest, card = board
    for testset in load_model_testsets(card):
        inputs = testset.inputs[:SUBSET]
        reference = run_reference(card, inputs)
        ensemble = decisions.ensemble(list(reference.heads), card.head_luts)
        for threshold in ("1.0", "0.9", "0.6"):
            tau = decisions.threshold_q15(threshold)
            assert link.set_threshold(tau) == tau
            spec = decisions.cascade(reference.exit, card.exit_lut, ensemble, tau)
            for i, sample in enumerate(inputs):
                result = link.infer(sample.tobytes())
                where = f"{testset.name}[{i}] at tau {threshold}"
                assert result.logits[0] == tuple(reference.exit[i]), where
                assert result.exited == spec.exited[i], where
                assert result.predicted == spec.predicted[i], where
                assert result.confidence_q15 == spec.confidence_q15[i], where
                if not result.exited:
                    assert result.logits[1:] == tuple(tuple(h[i]) for h in reference.heads), where


@needs_qemu
def test_cycles_are_the_same_on_a_second_run_and_match_the_busy_pin(board):
    qemu, link, _manifest, card = board
    sample = load_model_testsets(card)[0].inputs[0].tobytes()
    link.set_threshold(decisions.Q15_ONE)
    qemu.recorder.take()
    first, second = link.infer(sample), link.infer(sample)
    assert first.cycles == second.cycles > 0
    edges = qemu.recorder.take()
    busy = [e for e in edges if e.pin == 0]
    assert [e.level for e in busy] == [1, 0, 1, 0]
    assert busy[1].ticks - busy[0].ticks == first.cycles
    assert busy[3].ticks - busy[2].ticks == second.cycles


@needs_qemu
def test_early_exit_is_cheaper_and_marked_on_the_exit_pin(board):
    qemu, link, _manifest, card = board
    clean = load_model_testsets(card)[0]
    reference = run_reference(card, clean.inputs[:50])
    confidence = decisions.exit_confidence_q15(reference.exit, card.exit_lut)
    sample = clean.inputs[int(np.argmax(confidence))].tobytes()
    link.set_threshold(decisions.Q15_ONE)
    qemu.recorder.take()
    full = link.infer(sample)
    full_edges = qemu.recorder.take()
    link.set_threshold(decisions.threshold_q15("0.5"))
    early = link.infer(sample)
    early_edges = qemu.recorder.take()
    assert early.exited and not full.exited
    assert early.cycles < full.cycles
    # Pin 1 marks the end of stage 1 on both paths: a pulse on the full path, high to the end on an exit.
    assert [(e.pin, e.level) for e in full_edges] == [(0, 1), (1, 1), (1, 0), (0, 0)]
    assert full_edges[1].ticks == full_edges[2].ticks < full_edges[3].ticks
    assert [(e.pin, e.level) for e in early_edges] == [(0, 1), (1, 1), (1, 0), (0, 0)]
    assert early_edges[2].ticks == early_edges[3].ticks
    stage1 = full_edges[1].ticks - full_edges[0].ticks
    # An exit costs stage 1 and its answer, nothing more: a few hundred instructions (QEMU's icount:
    # 2^shift ns each; a tick is 1/timer_hz), not a share of stage 1, which the DSP kernels made 4x shorter.
    kind = BOARD_KINDS[qemu.kind.name]
    answer_instructions = (early.cycles - stage1) * (1e9 / kind.timer_hz) / 2 ** kind.qemu.icount_shift
    assert stage1 < early.cycles and answer_instructions <= ANSWER_INSTRUCTIONS, answer_instructions


@needs_qemu
def test_burst_runs_back_to_back_in_one_window(board):
    qemu, link, _manifest, card = board
    sample = load_model_testsets(card)[0].inputs[1].tobytes()
    link.set_threshold(decisions.Q15_ONE)
    single = link.infer(sample)
    qemu.recorder.take()
    burst = link.infer_burst(sample, 5)
    assert burst.count == 5 and burst.predicted == single.predicted
    assert 5 * single.cycles * 0.9 < burst.total_cycles < 5 * single.cycles * 1.1
    edges = qemu.recorder.take()
    assert [(e.pin, e.level) for e in edges] == [(0, 1), (0, 0)]
    assert edges[1].ticks - edges[0].ticks == burst.total_cycles


@needs_qemu
def test_every_busy_window_is_numbered_and_the_answer_says_which(board):
    """Protocol v2: RESULT and BURST_RESULT carry the ordinal of the busy window they ran in and
    INFO the count so far, so that the host can tell an answer's window from that of a request
    whose reply was lost. Only inferences raise a window; HELLO, SET_THRESHOLD and refused
    frames do not."""
    qemu, link, _manifest, card = board
    sample = load_model_testsets(card)[0].inputs[0].tobytes()
    before = link.hello().windows
    qemu.recorder.take()
    first = link.infer(sample)
    link.set_threshold(decisions.Q15_ONE)
    with pytest.raises(DeviceError):  # a sample of the wrong size: refused, nothing run
        link.infer(sample[:3])
    second = link.infer(sample)
    burst = link.infer_burst(sample, 3)
    assert (first.window, second.window, burst.window) == (before + 1, before + 2, before + 3)
    assert link.hello().windows == before + 3
    rises = [e for e in qemu.recorder.take() if (e.pin, e.level) == (0, 1)]
    assert len(rises) == 3  # one busy window per ordinal


@needs_qemu
@pytest.mark.parametrize("model", firmware.MODELS)
def test_the_l4_image_is_in_qemus_flash_at_its_load_address(model):
    """QEMU's -kernel puts the ELF at 0x0800_0000, the STM32's flash, where firmware.bin is flashed and
    from where the image hashes itself."""
    manifest = firmware.prebuilt(L4, model)
    image = manifest.bin.read_bytes()
    assert manifest.load_address == BOARD_KINDS[L4].flash.origin == 0x0800_0000
    board = QemuBoard(BOARD_KINDS[L4], manifest.elf)
    try:
        board.power_on()
        assert board.read_memory(manifest.load_address, len(image)) == image
    finally:
        board.stop()


@needs_qemu
@pytest.mark.parametrize("board", [(L4, model) for model in firmware.MODELS], indirect=True,
                         ids=[f"{L4}-{model}" for model in firmware.MODELS])
def test_the_l4_counts_windows_longer_than_a_systick_period(board):
    """SysTick is 24 bits (2^24 ticks, 0.21 s at 80 MHz): the L4 HAL extends it by counting wraps. A burst
    spanning several periods measures what its single inferences add up to, and the same on a second run."""
    qemu, link, manifest, card = board
    assert manifest.board == L4
    sample = load_model_testsets(card)[0].inputs[2].tobytes()
    link.set_threshold(decisions.Q15_ONE)
    single = link.infer(sample).cycles
    count = 2 * (1 << 24) // single + 2
    qemu.recorder.take()
    first, second = link.infer_burst(sample, count), link.infer_burst(sample, count)
    assert first.total_cycles == second.total_cycles > 2 * (1 << 24)
    assert abs(first.total_cycles - count * single) < count * single * 1e-3
    edges = qemu.recorder.take()
    assert edges[1].ticks - edges[0].ticks == first.total_cycles
