"""Test-only: Python runs this at start-up when this folder is on PYTHONPATH (the `site` module's
sitecustomize hook). With HIL_FAKE_LINUX_UNIT set, it puts a fake I2C bus and GPIO chip behind the real
smbus2 and gpiod modules (tests/support/fake_linux_unit.py), so a `hil run` subprocess reads a
linux-ina219 unit on the emulated bench. Nothing in hil knows of it."""

import os

if os.environ.get("HIL_FAKE_LINUX_UNIT"):
    from tests.support import fake_linux_unit

    fake_linux_unit.install()
