"""Fixtures of the unit tier: a rack of FakeBoards (hil.testing.fake_board) in place of QEMU."""

import pytest

from hil.run import rack
from hil.testing.fake_board import FakeRack


@pytest.fixture
def fake_rack(monkeypatch, tmp_path) -> FakeRack:
    """Every board a run brings up is a FakeBoard; set `fake_rack.faults[slot]` to make one misbehave.
    The one seam: the rack's make_board, where a board's kind is decided."""
    fakes = FakeRack()
    monkeypatch.setattr(rack, "make_board", fakes.make_board)
    monkeypatch.setenv("HIL_LOCK_DIR", str(tmp_path / "locks"))
    return fakes
