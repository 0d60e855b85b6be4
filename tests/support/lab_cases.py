"""Labs for the validation tests: a good lab of one emulated board, and malformed lab files made
from its YAML text (tests/unit/test_lab.py loads them in-process, tests/emulated/test_lab_cli.py
through the CLI)."""

import re

from hil import REPO_ROOT
from hil.firmware import build as firmware

MODELS = REPO_ROOT / "fixtures" / "models"
TESTSETS = REPO_ROOT / "fixtures" / "testsets"


def lab_data(tmp_path) -> dict:
    return {
        "lab": "validation",
        "results": str(tmp_path / "results"),
        "models": {"qute-digits": {"path": str(MODELS / "qute-digits"),
                                   "testsets": [str(TESTSETS / "qute-digits" / "clean.npz")]}},
        "firmware": {"mps2-an386": {"qute-digits": str(firmware.PREBUILT_DIR / "mps2-an386" / "qute-digits")}},
        "boards": [{"slot": "a", "kind": "mps2-an386", "model": "qute-digits", "emulated": True}],
        "run": {"threshold": 0.9, "retries": 1},
    }


def nested_aliases(levels: int, fan: int) -> str:
    """A flow list of `levels` anchors, each holding `fan` aliases of the one before: fan**levels values."""
    items = ["&a0 [" + ", ".join(["lol"] * fan) + "]"]
    items += [f"&a{i} [" + ", ".join([f"*a{i - 1}"] * fan) + "]" for i in range(1, levels)]
    return "[" + ", ".join(items) + "]"


def replace(old: str, new: str):
    def edit(text: str) -> str:
        assert old in text, old
        return text.replace(old, new, 1)
    return edit


LONG_NAME = "n" * 300  # longer than a file name may be (255 bytes)


# (what is wrong, how to make it from the good lab's YAML text, a fragment the error must contain).
# Each of these gave a traceback, a wrong message or a run before; true/false or null for a number, an
# empty file and tabs were already refused well (CASES and "not YAML" in tests/unit/test_lab.py).
TEXT_CASES = [
    ("threshold .nan", replace("threshold: 0.9", "threshold: .nan"), "run.threshold: must be a number, not '.nan'"),
    ("threshold 0x1", replace("threshold: 0.9", "threshold: 0x1"), "run.threshold: write it as a decimal"),
    ("threshold 0b1", replace("threshold: 0.9", "threshold: 0b1"), "run.threshold: write it as a decimal"),
    ("threshold octal 0_1", replace("threshold: 0.9", "threshold: 0_1"), "run.threshold: write it as a decimal"),
    ("threshold .inf", replace("threshold: 0.9", "threshold: .inf"), "run.threshold: .inf is out of range [0.0, 1.0]"),
    ("threshold -.inf", replace("threshold: 0.9", "threshold: -.inf"), "run.threshold: -.inf is out of range"),
    ("threshold 1e400", replace("threshold: 0.9", "threshold: 1e400"),
     "run.threshold: must be a number, not '1e400' (YAML 1.1 reads this spelling as text"),
    ("threshold quoted", replace("threshold: 0.9", "threshold: '0.9'"), "(it is quoted; write it without quotes)"),
    ("threshold a huge int", replace("threshold: 0.9", "threshold: " + "9" * 400),
     "run.threshold: 9999999999999999999999999999999999999999… is out of range [0.0, 1.0]"),
    ("timeout a huge int", replace("retries: 1", "retries: 1\n  request_timeout_s: " + "9" * 400),
     "run.request_timeout_s: 9999999999999999999999999999999999999999… is out of range"),
    ("timeout .nan", replace("retries: 1", "retries: 1\n  request_timeout_s: .nan"),
     "run.request_timeout_s: must be a number, not '.nan'"),
    ("threshold a list", replace("threshold: 0.9", "threshold: [0.9]"), "run.threshold: must be a number, not a list"),
    ("retries !!int on text", replace("retries: 1", "retries: !!int abc"), "run.retries: must be a whole number"),
    ("alpha .nan", lambda t: t + "regression:\n  alpha: .nan\n", "regression.alpha: must be a number, not '.nan'"),
    ("alpha 0", lambda t: t + "regression:\n  alpha: 0\n", "regression.alpha: 0 is out of range (0.0, 1.0)"),
    ("confidence 1", lambda t: t + "regression:\n  confidence: 1\n", "regression.confidence: 1 is out of range"),
    ("bootstrap_resamples 0", lambda t: t + "regression:\n  bootstrap_resamples: 0\n",
     "regression.bootstrap_resamples: 0 is out of range [1, 1000000]"),
    ("a python tag", replace("kind: mps2-an386", "kind: !!python/object:os.system x"),
     "boards[0].kind: the YAML tag tag:yaml.org,2002:python/object:os.syste… is not supported"),
    ("an unknown tag", replace("kind: mps2-an386", "kind: !board x"), "boards[0].kind: the YAML tag !board"),
    ("only a document marker", lambda t: "---\n", "the lab file is empty"),
    ("two documents", lambda t: t + "---\n" + t, "expected a single document in the stream"),
    ("a list at the top", lambda t: "- lab\n- boards\n", "lab file: must be a mapping of keys to values, not a list"),
    ("not UTF-8", lambda t: t.encode().replace(b"validation", b"valid\xc3ation"), ":1: not UTF-8 text (byte 10)"),
    ("UTF-16", lambda t: t.encode("utf-16"), "not UTF-8 text"),
    ("a NUL byte", replace("validation", "valid\0ation"), ":1: not valid YAML (control character"),
    ("deep brackets", replace("lab: validation", "lab: " + "[" * 5000 + "]" * 5000),
     ":1: nested deeper than 32 levels"),
    ("deep mappings", replace("lab: validation", "lab: " + "{a: " * 5000 + "1" + "}" * 5000),
     ":1: nested deeper than 32 levels"),
    ("a list as a key", lambda t: t + "? [lab, boards]\n: 1\n", "lab file: a key must be plain text, not a list"),
    ("a NUL in a path", lambda t: re.sub(r"results: .*", r'results: "/tmp/a\\0b"', t, count=1),
     ":2: results: must not hold a NUL character"),
    ("a file name too long", replace("testsets:\n", f"testsets:\n    - {LONG_NAME}.npz\n"),
     "models.qute-digits.testsets: "),  # then the system's own words, e.g. "File name too long; fix the path"
    ("a value too long", replace("lab: validation", "lab: " + "x" * 5000),
     ":1: a key or value of 5000 characters, more than 4096"),
    ("a file too large", lambda t: t + "#" * (300 * 1024) + "\n", "larger than 256 KiB"),
    ("too many aliases", lambda t: "x: &x 1\nlab: [" + ", ".join(["*x"] * 65) + "]\n", ":2: more than 64 aliases"),
    ("aliases expanding", replace("lab: validation", "lab: " + nested_aliases(8, 5)),
     ":1: holds more than 100000 values once its aliases are expanded"),
]
