"""labs.yaml validation through the CLI, as a user runs it (`python -m hil.cli` in a subprocess): a
malformed lab is one line and exit code 3, and a billion-laughs lab is refused fast within bounded
memory. The same cases in-process are tests/unit/test_lab.py."""

import os
import resource
import subprocess
import sys
import time

import pytest
import yaml

from tests.support.lab_cases import TEXT_CASES, lab_data, nested_aliases

BAD_INPUT = 3


def hil_cli(*args, memory_bytes: int | None = None):
    """`python -m hil.cli` as a user runs it, optionally within an address-space limit."""
    def limit():
        resource.setrlimit(resource.RLIMIT_AS, (memory_bytes, memory_bytes))
    return subprocess.run([sys.executable, "-m", "hil.cli", *map(str, args)], capture_output=True, text=True,
                          timeout=120, env={**os.environ, "NO_COLOR": "1"},
                          preexec_fn=limit if memory_bytes else None)


@pytest.mark.parametrize("where", ["a value", "a key"])
def test_a_billion_laughs_lab_is_refused_fast_within_bounded_memory(tmp_path, where):
    """Nine anchors of nine aliases: a 1 KB file whose value expands to 9**9 = 387 million strings."""
    laughs = nested_aliases(9, 9)
    text = yaml.safe_dump(lab_data(tmp_path), sort_keys=False)
    text = text.replace("lab: validation", f"lab: {laughs}" if where == "a value" else f"lab: x\n? {laughs}\n: 1")
    path = tmp_path / "labs.yaml"
    path.write_text(text)
    assert len(laughs) < 1100
    started = time.monotonic()
    # 1 GiB of address space: plenty for hil, far below what expanding the aliases takes.
    result = hil_cli("run", path, memory_bytes=1 << 30)
    assert time.monotonic() - started < 60
    assert result.returncode == BAD_INPUT, result.stderr[-2000:]
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith(f"hil: error: {path}:") and "once its aliases are expanded" in line, line
    assert not (tmp_path / "results").exists()


@pytest.mark.parametrize("name", ["threshold .nan", "threshold 0x1", "threshold a huge int", "deep brackets",
                                  "not UTF-8", "a python tag"])
def test_the_cli_refuses_a_malformed_lab_with_one_line_and_exit_3(tmp_path, name):
    _, edit, fragment = next(c for c in TEXT_CASES if c[0] == name)
    content = edit(yaml.safe_dump(lab_data(tmp_path), sort_keys=False))
    path = tmp_path / "labs.yaml"
    path.write_bytes(content if isinstance(content, bytes) else content.encode())
    result = hil_cli("run", path)
    assert result.returncode == BAD_INPUT, result.stderr[-2000:]
    assert "Traceback" not in result.stderr
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith(f"hil: error: {path}") and fragment in line, line
