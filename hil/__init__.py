"""hil: a hardware-in-the-loop lab for TinyML models that exit early and know their uncertainty."""

from pathlib import Path

__version__ = "0.1.0"

# The folder above the package: in a checkout its root, where fixtures/, firmware/ and docs/ live.
# An installed hil finds its models, test sets and images through hil.assets, never through this.
REPO_ROOT = Path(__file__).resolve().parent.parent
FIXTURES = REPO_ROOT / "fixtures"
