"""Unmodified pyOCD flashing real STM32 targets through hil.hw.emulated.probe: pyOCD's own flash
algorithm for stm32l432kc and stm32f767zi, run on the emulated core against the modelled FLASH
controller, then hil.hw.flasher's read-back verify and reset.

Each flash runs pyOCD in a child process (as in production); the probe's memory and flash
counters are what the tests check.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

from hil.errors import EXIT_INFRASTRUCTURE, BadInput
from hil.hw.emulated.probe import EmulatedProbe
from hil.hw.emulated.stm32_flash import F7_SECTORS, Stm32L4Flash
from hil.hw.flasher import FlashFailed, ProbeError, VerifyFailed, flash_image

PREBUILT = Path(__file__).resolve().parents[2] / "firmware/prebuilt/mps2-an386/qute-digits"
IMAGE = PREBUILT / "firmware.bin"  # any image's bytes will do: 53,804 of them
SHA256 = json.loads((PREBUILT / "manifest.json").read_text())["image_sha256"]
FLASH_BASE = 0x0800_0000
PYOCD_PAGE = 0x400  # both targets' flash algorithms program 1 KiB pages (FLASH_ALGO page_size)


@pytest.fixture(autouse=True)
def lock_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("HIL_LOCK_DIR", str(tmp_path / "locks"))


def one_line(error: Exception) -> str:
    text = str(error)
    assert "\n" not in text and text
    return text


def expected_erases(target: str, size: int) -> int:
    """Pages (L4, 2 KiB) or sectors (F7, single bank) the image touches."""
    if target == "stm32l432kc":
        return math.ceil(size / Stm32L4Flash.PAGE_SIZE)
    starts = [sum(F7_SECTORS[:i]) for i in range(len(F7_SECTORS))]
    return sum(1 for start in starts if start < size)


def expected_programs(target: str, size: int) -> int:
    """Program operations: whole 1 KiB pages, as double words (L4) or words (the F7 algorithm's PSIZE x32)."""
    unit = 8 if target == "stm32l432kc" else 4
    return math.ceil(size / PYOCD_PAGE) * PYOCD_PAGE // unit


@pytest.mark.parametrize("target", ["stm32l432kc", "stm32f767zi"])
def test_pyocd_flashes_a_real_target_through_its_flash_algorithm(target):
    image = IMAGE.read_bytes()
    with EmulatedProbe("STLINK-1", target) as probe:
        report = flash_image(probe.address, target, IMAGE, SHA256, base_address=FLASH_BASE, retries=0)

        assert probe.memory(FLASH_BASE, len(image)) == image
        assert probe.memory(FLASH_BASE + len(image), 256) == b"\xff" * 256  # the rest of the page stays erased
        assert (probe.erases, probe.programs) == (expected_erases(target, len(image)),
                                                  expected_programs(target, len(image)))
        assert probe.resets >= 1
        assert not probe.core.halted  # reset and let go: the application would run (in QEMU, not here)
        assert probe.releases == 1  # once, at the final reset: never while the flash algorithm ran
    assert (report.target, report.base_address, report.bytes, report.verified) == (target, FLASH_BASE, len(image), True)
    assert report.reset_error is None and report.attempts == 1


def test_a_cell_that_does_not_take_its_value_fails_the_read_back_verify():
    address = FLASH_BASE + 0x1234
    with EmulatedProbe("STLINK-2", "stm32l432kc", corrupt_program_at=address) as probe:
        with pytest.raises(VerifyFailed) as caught:
            flash_image(probe.address, "stm32l432kc", IMAGE, SHA256, base_address=FLASH_BASE, retries=0)
        stored = probe.memory(address, 1)[0]
    message = one_line(caught.value)
    assert message.startswith(f"probe {probe.address}: read-back verify failed at {address:#010x} ")
    assert caught.value.exit_code == EXIT_INFRASTRUCTURE
    assert stored != IMAGE.read_bytes()[0x1234] and stored & IMAGE.read_bytes()[0x1234] == IMAGE.read_bytes()[0x1234]


def test_a_bit_that_flips_after_the_verify_passes_it_and_changes_what_boots():
    address = FLASH_BASE + 0x2345
    image = IMAGE.read_bytes()
    with EmulatedProbe("STLINK-3", "stm32f767zi", tamper_after_verify_at=address) as probe:
        report = flash_image(probe.address, "stm32f767zi", IMAGE, SHA256, base_address=FLASH_BASE, retries=0)
        booted = probe.memory(FLASH_BASE, len(image))
    assert report.verified
    assert [i for i in range(len(image)) if booted[i] != image[i]] == [0x2345]
    assert bin(booted[0x2345] ^ image[0x2345]).count("1") == 1


@pytest.mark.parametrize(("target", "protected"), [("stm32l432kc", 0x0800_0800), ("stm32f767zi", 0x0800_8000)])
def test_a_write_protected_page_is_a_flash_failure_from_pyocd(target, protected):
    # Page 1 (L4, WRP1AR) or sector 1 (F7, OPTCR.nWRP1): the erase sets WRPERR, pyOCD's algorithm returns 1.
    with EmulatedProbe("STLINK-4", target, write_protect_at=protected) as probe:
        with pytest.raises(ProbeError) as caught:
            flash_image(probe.address, target, IMAGE, SHA256, base_address=FLASH_BASE, retries=0)
        assert probe.programs == 0  # pyOCD erases every sector before it programs one
    message = one_line(caught.value)
    assert message.startswith(f"probe {probe.address}: flash programming failed at {protected:#010x} while programming")
    assert f"pyocd erase --chip -t {target}" in message


def test_a_flash_write_that_fails_once_is_retried_and_reported_as_a_flash_error():
    image = IMAGE.read_bytes()
    with EmulatedProbe("STLINK-6", "stm32l432kc") as probe:
        probe.failing_programs = 1  # one double word sets PROGERR: pyOCD's algorithm fails that page
        report = flash_image(probe.address, "stm32l432kc", IMAGE, SHA256, base_address=FLASH_BASE)
        assert probe.memory(FLASH_BASE, len(image)) == image  # the second attempt wrote it all, verified
        first_probe = probe.address
    with EmulatedProbe("STLINK-7", "stm32l432kc") as probe:
        probe.failing_programs = 2
        with pytest.raises(FlashFailed) as caught:  # a failure on every attempt stays a flash error
            flash_image(probe.address, "stm32l432kc", IMAGE, SHA256, base_address=FLASH_BASE)
    assert (report.attempts, report.verified) == (2, True)
    (first,) = report.failed_attempts
    assert first.startswith(f"probe {first_probe}: flash programming failed at 0x08000000 while programming")
    assert one_line(caught.value).startswith(f"probe {probe.address}: flash programming failed at 0x08000000")
    assert str(caught.value).endswith("(each of 2 attempts failed)")
    assert "time" not in str(caught.value) and "hang" not in str(caught.value)


def test_an_image_outside_the_targets_flash_is_bad_input():
    with EmulatedProbe("STLINK-5", "stm32l432kc") as probe:
        with pytest.raises(BadInput, match=r"^firmware\.bin: does not fit target stm32l432kc at 0x00000000") as caught:
            flash_image(probe.address, "stm32l432kc", IMAGE, SHA256, base_address=0, retries=0)
        assert (probe.erases, probe.programs) == (0, 0)
    one_line(caught.value)


PYOCD_SESSION = """
import json, sys, tempfile
from pyocd.core.session import Session
from pyocd.probe.tcp_client_probe import TCPClientProbe

target = sys.argv[2]
options = {"target_override": target, "project_dir": tempfile.mkdtemp(), "no_config": True}
with Session(TCPClientProbe(sys.argv[1]), options=options) as session:
    core = session.target.selected_core
    core.halt()
    found = {"core": core.name, "extensions": sorted(e.name for e in core.extensions), "halted": core.is_halted()}
    if target.startswith("stm32"):
        found["idcode"] = session.target.read32(0xE0042000)  # DBGMCU_IDCODE
    if target == "stm32f767zi":
        found["optcr"] = session.target.read32(0x40023C14)  # FLASH_OPTCR, as pyOCD's connect hook reads it
    print(json.dumps(found))
"""


@pytest.mark.parametrize(("target", "core", "expected"), [
    ("stm32f767zi", None, {"core": "Cortex-M7", "halted": True, "idcode": 0x1001_6451, "optcr": 0xFFFF_AAFD}),
    ("stm32l432kc", None, {"core": "Cortex-M4", "halted": True, "idcode": 0x1001_6435}),
    ("cortex_m", "cortex-m7", {"core": "Cortex-M7", "halted": True}),  # an MPS2-AN500 probe
])
def test_pyocd_identifies_each_chips_core(target, core, expected):
    with EmulatedProbe("STLINK-6", target, core=core) as probe:
        out = subprocess.run([sys.executable, "-c", PYOCD_SESSION, f"127.0.0.1:{probe.port}", target],
                             capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr[-2000:]
    found = json.loads(out.stdout)
    assert {key: found[key] for key in expected} == expected
    fpu = {"FPU", "FPU_DP", "FPU_V5"} if expected["core"] == "Cortex-M7" else {"FPU", "FPU_V4"}
    assert fpu <= set(found["extensions"])
    if target == "stm32f767zi":
        assert "Dual bank configuration" not in out.stderr  # pyOCD's post-connect check saw nDBANK = 1


def test_the_probe_serves_from_a_shell():
    process = subprocess.Popen([sys.executable, "-m", "hil.hw.emulated.probe", "--unique-id", "SHELL-1",
                                "--target", "stm32l432kc", "--port", "0"], stdout=subprocess.PIPE, text=True)
    try:
        line = process.stdout.readline()
        assert line.startswith("serving probe SHELL-1 (stm32l432kc) at remote:127.0.0.1:")
        address = line.split(" at ")[1].split()[0]
        report = flash_image(address, "stm32l432kc", IMAGE, SHA256, base_address=FLASH_BASE, retries=0,
                             expect_served_id="SHELL-1")
        assert report.verified and report.served_probe == "SHELL-1"
    finally:
        process.terminate()
        process.wait(timeout=10)
