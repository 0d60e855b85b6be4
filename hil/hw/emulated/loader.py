"""The emulated board's flasher: QEMU loads the ELF into the machine as it powers on.

QEMU's -kernel puts the ELF's segments at their load addresses, so powering on the emulator
and putting the image on are one step. The loader then reads the machine's memory back over
QMP before the CPU runs, and compares it with firmware.bin byte for byte, as pyOCD's flash is
read back (hil/hw/flasher.py): both report the same FlashReport. A later loader can flash the
same emulator through a debug probe instead; the board does not change.
"""

from __future__ import annotations

import time

from hil.firmware.build import FirmwareManifest
from hil.hw.emulated.qemu import EmulatorError, QemuBoard
from hil.hw.flasher import Flasher, FlashMethod, FlashReport, VerifyFailed, check_image


class QemuLoader(Flasher):
    def __init__(self, qemu: QemuBoard):
        self.qemu = qemu

    def flash(self, manifest: FirmwareManifest) -> FlashReport:
        started = time.monotonic()
        if manifest.elf.resolve() != self.qemu.image.resolve():
            raise EmulatorError(f"{self.qemu.name}: this emulator loads {self.qemu.image}, not {manifest.elf}")
        expected = check_image(manifest.bin, manifest.image_sha256)
        address = manifest.load_address  # the lab checked it is the board kind's
        self.qemu.power_on()  # the board stops QEMU again if anything below fails
        loaded = self.qemu.read_memory(address, len(expected))
        if loaded != expected:
            first = next((i for i, (a, b) in enumerate(zip(loaded, expected)) if a != b), len(loaded))
            raise VerifyFailed(f"{self.qemu.name}: QEMU's memory differs from {manifest.bin.name} at "
                               f"{address + first:#010x} after loading {manifest.elf.name}; "
                               "rebuild the firmware (`hil firmware build`)")
        return FlashReport(method=FlashMethod.QEMU_LOADER, target=self.qemu.kind.qemu.machine,
                           image=manifest.elf.name, image_sha256=manifest.elf_sha256, bytes=len(expected),
                           base_address=address, verified=True, seconds=round(time.monotonic() - started, 3),
                           attempts=1)
