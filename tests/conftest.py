"""Fixtures every test may use, and each test's tier marker, given by the folder it lives in:

- tests/unit/: in-process and fast (pure code, the host C through ctypes, real ptys and files,
  boards faked at the byte level by hil.testing.fake_board); `pytest -m unit` is the fast floor;
- tests/emulated/: end to end on the emulated rack (QEMU, firmware builds, `hil` as a subprocess);
- tests/physical/: the physical-board path, through the emulated probe (hil.hw.emulated.probe) and pyOCD.
tests/support/ holds helpers for these tests only, imported as tests.support.*.
"""

from pathlib import Path

import pytest

from hil.model.card import load_model

MODELS = ["qute-digits", "qute-mnist1d"]
TIERS = ("unit", "emulated", "physical")  # registered in pyproject.toml; --strict-markers refuses others
TESTS = Path(__file__).parent


def pytest_collection_modifyitems(config, items):
    for item in items:
        tier = Path(item.path).relative_to(TESTS).parts[0]
        if tier not in TIERS:
            raise pytest.UsageError(f"{item.path}: a test lives in tests/unit, tests/emulated or tests/physical")
        item.add_marker(tier)


@pytest.fixture(scope="session", params=MODELS)
def card(request):
    return load_model(request.param)
