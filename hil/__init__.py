"""hil: a hardware-in-the-loop lab for TinyML models that exit early and know their uncertainty."""

from pathlib import Path

__version__ = "0.1.0"

# The repository root: fixtures/ and docs/ live beside the package in a checkout.
REPO_ROOT = Path(__file__).resolve().parent.parent
FIXTURES = REPO_ROOT / "fixtures"
