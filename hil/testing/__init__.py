"""Test support: stand-ins for hardware at its lowest level, for hil's tests and for users' own.

Nothing here is part of a lab run. `fake_board`: a board answered in-process from the
decision spec and the host reference, at the level of protocol v2 bytes on a serial port.
docs/testing.md describes it. The emulated debug probe is a product part now:
hil.hw.emulated.probe.
"""
