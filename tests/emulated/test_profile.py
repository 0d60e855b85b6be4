"""PROFILE on emulated boards: the firmware's per-layer cycles, and `hil firmware profile` around them."""

import json
import shutil
from pathlib import Path

import pytest

from hil.cli import main
from hil.firmware import build as firmware
from hil.hw import protocol
from hil.hw.emulated.qemu import QemuBoard
from hil.hw.kinds import BOARD_KINDS
from hil.hw.link import DeviceError, DeviceLink
from hil.model import decisions
from hil.model.card import load_model
from hil.model.layers import model_layers
from hil.model.testsets import load_model_testsets
from hil.run.profile import DeviceProfile, ProfileFile
from tests.support.labs import PASS, hil, write_lab

needs_qemu = pytest.mark.skipif(shutil.which("qemu-system-arm") is None, reason="qemu-system-arm not installed")
# The CMSDK timer of the MPS2 boards and the SysTick of the L4 twin: each HAL's hal_cycles under the hook.
IMAGES = [("mps2-an386", "qute-digits"), ("nucleo-l432kc", "qute-mnist1d")]


@pytest.fixture(scope="module", params=IMAGES, ids=[f"{b}-{m}" for b, m in IMAGES])
def board(request):
    kind, model = request.param
    manifest = firmware.prebuilt(kind, model)
    card = load_model(model)
    sample = load_model_testsets(card)[0].inputs[0].tobytes()
    with QemuBoard(BOARD_KINDS[kind], manifest.elf) as qemu:
        link = DeviceLink(qemu.link, name=f"{kind}/{model}", timeout=30)
        link.hello()
        yield link, card, sample


@needs_qemu
def test_layers_add_up_to_a_full_path_inference(board):
    link, card, sample = board
    link.set_threshold(decisions.Q15_ONE)
    inference = link.infer(sample)
    profile = link.profile(sample, 1)
    assert not inference.exited
    assert len(profile.layer_ticks) == len(model_layers(card))
    assert all(ticks > 0 for ticks in profile.layer_ticks)
    # INFER also times the exit decision and the ensemble, and PROFILE the hooks: a few hundred ticks apart.
    assert abs(sum(profile.layer_ticks) - inference.cycles) < 0.002 * inference.cycles


@needs_qemu
def test_profile_covers_both_stages_whatever_the_threshold_and_raises_no_window(board):
    link, card, sample = board
    link.set_threshold(0)  # every inference exits early
    before = link.hello().windows
    everything = link.profile(sample, 1)
    link.set_threshold(decisions.Q15_ONE)
    assert link.profile(sample, 1) == everything  # deterministic (icount), and stage 2 ran at tau 0 too
    assert link.hello().windows == before  # a profile is no busy window: a measurement unit sees nothing


@needs_qemu
def test_cycles_follow_the_macs_of_the_convolutions(board):
    link, card, sample = board
    ticks = link.profile(sample, 1).layer_ticks
    convs = [layer for layer in model_layers(card) if layer.op == "CONV_2D"]
    smallest, largest = min(convs, key=lambda la: la.macs), max(convs, key=lambda la: la.macs)
    assert largest.macs > smallest.macs and ticks[largest.index] > ticks[smallest.index]


@needs_qemu
def test_n_runs_sum_to_n_times_one_run(board):
    link, _card, sample = board
    one, five = link.profile(sample, 1), link.profile(sample, 5)
    assert five.count == 5
    assert five.layer_ticks == tuple(5 * ticks for ticks in one.layer_ticks)


@needs_qemu
def test_a_bad_profile_request_is_refused(board):
    link, _card, sample = board
    with pytest.raises(DeviceError) as zero:
        link.request(protocol.Profile(0, sample))
    with pytest.raises(DeviceError) as short:
        link.request(protocol.Profile(1, sample[:-1]))
    assert (zero.value.code, short.value.code) == (protocol.ErrorCode.BAD_VALUE, protocol.ErrorCode.BAD_LENGTH)
    assert link.profile(sample, 1).count == 1  # and the board goes on


@needs_qemu
def test_hil_firmware_profile_prints_the_table_and_the_json(capsys):
    code = main(["firmware", "profile", "--board", "mps2-an500", "--model", "qute-mnist1d", "--count", "2",
                 "--testset", "shift-s1", "--sample", "3", "--json"])
    out, err = capsys.readouterr()
    assert code == 0, err
    (profile,) = json.loads(out)
    manifest, card = firmware.prebuilt("mps2-an500", "qute-mnist1d"), load_model("qute-mnist1d")
    assert (profile["board"], profile["model"], profile["count"]) == ("mps2-an500", "qute-mnist1d", 2)
    assert (profile["image_sha256"], profile["model_sha256"]) == (manifest.image_sha256, card.sha256)
    assert (profile["testset"], profile["sample_index"], profile["clock_hz"]) == ("shift-s1", 3, 25_000_000)
    layers = model_layers(card)
    assert [(la["op"], tuple(la["output_shape"]), la["macs"]) for la in profile["layers"]] == [
        (la.op, la.output_shape, la.macs) for la in layers]
    assert profile["total_cycles"] == pytest.approx(sum(profile["stage_cycles"].values()))
    assert "Per-layer profile: mps2-an500 / qute-mnist1d" in err and "cycles/MAC" in err


def test_a_sample_that_is_not_there_is_bad_input(capsys):
    assert main(["firmware", "profile", "--board", "mps2-an386", "--model", "qute-digits", "--sample",
                 "100000"]) == 3
    assert "clean: no sample 100000; give --sample 0.." in capsys.readouterr().err


@needs_qemu
def test_hil_run_profile_keeps_each_boards_profile_with_the_run(tmp_path):
    lab = write_lab(tmp_path, boards={"an386-digits": ("mps2-an386", "qute-digits")}, samples=3)
    result = hil("run", lab, "--profile", "--json")
    assert result.returncode == PASS, result.stderr
    run_dir = Path(json.loads(result.stdout)["run_dir"])
    saved = ProfileFile.read(run_dir)
    (profile,) = saved.profiles
    assert saved.failures == []
    assert (profile.slot, profile.board, profile.count, profile.testset) == ("an386-digits", "mps2-an386", 1, "clean")
    assert profile.image_sha256 == firmware.prebuilt("mps2-an386", "qute-digits").image_sha256
    assert len(profile.layers) == 15 and profile.stage_cycles("stage1") > 0 < profile.stage_cycles("stage2")
    assert [DeviceProfile.from_dict(p) for p in json.loads(result.stdout)["profiles"]] == [profile]
    assert "Per-layer profile: mps2-an386 / qute-digits (an386-digits)" in result.stderr
    assert "Per-layer profile: mps2-an386 / qute-digits" in (run_dir / "report.html").read_text()
