"""The emulated board's flasher: pyOCD writes the image through the board's emulated probe, then QEMU
powers on with the probe's flash as it is afterwards.

It is the physical board's flash path (hil/hw/flasher.py's PyocdFlasher, unchanged) ending in an
emulated chip: pyOCD connects under the board kind's real target (stm32l432kc, cortex_m, ...), runs
that target's own flash algorithm on the probe's core against its model of the chip's flash
controller, reads the image back and verifies it. QEMU is then handed the probe's flash, not
firmware.bin, so the bytes that run are the bytes that were flashed: a flash that lost a bit after the
verify boots, and the firmware's own hash in HELLO says so.
"""

from __future__ import annotations

from hil.firmware.build import FirmwareManifest
from hil.hw.emulated.probe import EmulatedProbe
from hil.hw.emulated.qemu import QemuBoard
from hil.hw.flasher import Flasher, FlashReport, PyocdFlasher


class FlashThroughProbe(Flasher):
    def __init__(self, probe: EmulatedProbe, qemu: QemuBoard):
        self.probe, self.qemu = probe, qemu
        self._serving = False

    def flash(self, manifest: FirmwareManifest) -> FlashReport:
        if not self._serving:
            self.probe.start()
            self._serving = True
        report = PyocdFlasher(self.probe.address, self.qemu.kind.pyocd_target).flash(manifest)
        flash = self.qemu.kind.flash
        self.qemu.power_on(self.probe.memory(flash.origin, flash.size))  # the board stops QEMU if a later step fails
        return report

    def stop(self) -> None:
        if self._serving:
            self.probe.stop()
            self._serving = False
