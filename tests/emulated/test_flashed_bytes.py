"""An emulated board runs the bytes pyOCD flashed: through the board's emulated probe, under the kind's
real pyOCD target, into its flash; QEMU then boots what that flash holds, and nothing else."""

import shutil

import pytest

from hil.firmware import build as firmware
from hil.hw.board import BoardError
from hil.hw.emulated.board import EmulatedBoard
from hil.hw.emulated.probe import EmulatedProbe
from hil.hw.flasher import VerifyFailed
from hil.hw.kinds import BOARD_KINDS
from hil.lab.load import BoardSpec, RunSettings
from hil.run.rack import check_identity

pytestmark = pytest.mark.skipif(shutil.which("qemu-system-arm") is None, reason="qemu-system-arm not installed")
TWIN_KINDS = [name for name, kind in BOARD_KINDS.items() if kind.qemu is not None]
MODEL = "qute-mnist1d"
OFFSET = 0x200  # inside .text, past the vector table: a byte the firmware hashes and never runs first


def board(kind: str, **faults) -> EmulatedBoard:
    manifest = firmware.prebuilt(kind, MODEL)
    probe = EmulatedProbe(f"test-{kind}", BOARD_KINDS[kind].pyocd_target, core=BOARD_KINDS[kind].cpu, **faults)
    return EmulatedBoard(BoardSpec("twin-1", kind, MODEL, None), manifest, RunSettings(), probe=probe)


@pytest.mark.parametrize("kind", TWIN_KINDS)
def test_pyocd_flashes_every_emulated_board_under_its_real_target(kind):
    twin, manifest = board(kind), firmware.prebuilt(kind, MODEL)
    try:
        twin.bring_up()
        flash = twin.identity()["flash"]
        image = manifest.bin.read_bytes()
        origin = BOARD_KINDS[kind].flash.origin
        assert twin.probe.memory(origin, len(image)) == image  # what pyOCD wrote
        assert twin.qemu.read_memory(origin, len(image)) == image  # is what QEMU holds
        assert twin.link.hello().firmware_sha256.hex() == manifest.image_sha256  # and what runs
    finally:
        twin.shut_down()
    assert flash["method"] == "pyocd" and flash["target"] == BOARD_KINDS[kind].pyocd_target and flash["verified"]
    assert flash["probe"] == twin.probe.address
    assert (flash["image"], flash["image_sha256"]) == ("firmware.bin", manifest.image_sha256)
    assert (flash["base_address"], flash["bytes"]) == (manifest.load_address, len(image))
    assert not twin.alive()


@pytest.mark.parametrize("kind", TWIN_KINDS)
def test_a_flash_write_that_does_not_stick_refuses_the_board(kind):
    origin = BOARD_KINDS[kind].flash.origin
    twin = board(kind, corrupt_program_at=origin + OFFSET)
    with pytest.raises(VerifyFailed, match=rf"read-back verify failed at {origin + OFFSET:#010x}"):
        twin.bring_up()
    twin.shut_down()
    assert twin.flash_report is None and not twin.alive()  # QEMU never started


@pytest.mark.parametrize("kind", TWIN_KINDS)
def test_a_byte_changed_after_the_verify_is_what_runs_and_hello_says_so(kind):
    origin = BOARD_KINDS[kind].flash.origin
    twin, manifest = board(kind, tamper_after_verify_at=origin + OFFSET), firmware.prebuilt(kind, MODEL)
    try:
        twin.bring_up()  # the verify saw the right byte
        assert twin.flash_report.verified
        booted = twin.qemu.read_memory(origin, OFFSET + 1)
        assert booted[OFFSET] != manifest.bin.read_bytes()[OFFSET]  # QEMU has the flash's byte, not the file's
        with pytest.raises(BoardError, match=r"^twin-1: board reports firmware .* reflash the board$"):
            check_identity(twin, 1 << 15, retries=0)
    finally:
        twin.shut_down()
