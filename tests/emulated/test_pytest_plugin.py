"""The pytest plugin (hil/pytest_plugin.py) as a team uses it: its own test file, run by pytest (pytester, in a
subprocess) with --hil-lab, against an emulated rack of two QEMU boards."""

import importlib.metadata
import os
import re

import pytest

from hil import REPO_ROOT
from hil.hw.factory import lock_name
from hil.hw.locks import Lock
from hil.lab.load import load_lab
from tests.support.labs import BOARDS, hil, write_lab

pytest_plugins = ["pytester"]

DOCS = REPO_ROOT / "docs" / "pytest.md"
MORE_TESTS = '''
import subprocess
import sys

import pytest


def test_a_wrong_expectation_fails(hil_board):
    sample = next(iter(hil_board.testsets.values())).inputs[0]
    assert hil_board.infer(sample).predicted == hil_board.reference(sample).predicted + 1


@pytest.mark.hil_kind("mps2-an500")
def test_only_an500_boards(hil_board):
    assert hil_board.kind == "mps2-an500"
    assert hil_board.info.board


@pytest.mark.hil_kind("nucleo-l432kc")
def test_no_board_of_this_kind(hil_board):
    raise AssertionError("never run: the lab has no nucleo-l432kc")


def test_the_rack_is_held(hil_rack, hil_lab):
    """`hil run` of the same lab while this session holds the rack: refused, exit 2, naming the holder."""
    refused = subprocess.run([sys.executable, "-m", "hil.cli", "run", str(hil_lab.file)], capture_output=True,
                             text=True, timeout=120)
    assert refused.returncode == 2, refused.stderr
    assert "is in use by pid" in refused.stderr
'''


def docs_example() -> str:
    """The example test file of docs/pytest.md, as a team would save it."""
    text = DOCS.read_text()
    start = text.index("```python\n# tests/hil/test_answers.py") + len("```python\n")
    return text[start:text.index("```", start)]


def plugin_args() -> list[str]:
    """`-p hil.pytest_plugin` where the installed hil does not register it as a pytest11 entry point yet (a venv
    installed before the plugin existed); twice would be an error."""
    installed = any(ep.value == "hil.pytest_plugin" for ep in importlib.metadata.entry_points(group="pytest11"))
    return [] if installed else ["-p", "hil.pytest_plugin"]


def outcomes_of(result) -> dict[str, str]:
    """Each test's outcome, from pytest -v's lines."""
    return dict(re.findall(r"^(test_\w+\.py::\S+) (PASSED|FAILED|SKIPPED|ERROR)", result.stdout.str(), re.M))


@pytest.fixture
def team(pytester, monkeypatch):
    """A team's folder of tests, run with the hil of this checkout."""
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(REPO_ROOT), os.environ.get("PYTHONPATH")])))
    monkeypatch.setenv("NO_COLOR", "1")
    pytester.makepyfile(test_answers=docs_example(), test_on_the_rack=MORE_TESTS)
    return pytester


def test_a_teams_tests_run_on_the_emulated_rack(team, tmp_path):
    lab = write_lab(tmp_path, samples=4)
    result = team.runpytest_subprocess(*plugin_args(), "--hil-lab", str(lab), "-v", "-rs", timeout=300)
    assert outcomes_of(result) == {
        "test_answers.py::test_every_answer_is_the_host_references[an386-digits]": "PASSED",
        "test_answers.py::test_every_answer_is_the_host_references[an500-mnist1d]": "PASSED",
        "test_answers.py::test_the_m7_runs_its_image_within_budget[an500-mnist1d]": "PASSED",
        "test_answers.py::test_the_whole_rack_came_up": "PASSED",
        "test_on_the_rack.py::test_a_wrong_expectation_fails[an386-digits]": "FAILED",
        "test_on_the_rack.py::test_a_wrong_expectation_fails[an500-mnist1d]": "FAILED",
        "test_on_the_rack.py::test_only_an500_boards[an500-mnist1d]": "PASSED",
        "test_on_the_rack.py::test_no_board_of_this_kind[no-board]": "SKIPPED",
        "test_on_the_rack.py::test_the_rack_is_held": "PASSED",
    }, result.stdout.str()
    result.stdout.fnmatch_lines(["*assert * == (* + 1)*", "*no board of kind nucleo-l432kc*"])
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    # The session's end gave every lock back: the next run can have the rack.
    for spec in load_lab(lab).boards:
        lock = Lock(lock_name(spec, lab))
        assert lock.try_acquire("after the session") is None, spec.slot
        lock.release()


def test_without_a_lab_the_rack_tests_skip_saying_why(team):
    result = team.runpytest_subprocess(*plugin_args(), "-rs", timeout=120)
    result.assert_outcomes(skipped=7)  # each test once: no boards to run it on
    result.stdout.fnmatch_lines(["*no lab given: run pytest with --hil-lab labs.yaml*"])


def test_a_bad_lab_stops_the_session_before_anything_starts(team, tmp_path):
    lab = write_lab(tmp_path, samples=4)
    lab.write_text(lab.read_text().replace("retries: 1", "retries: many"))
    result = team.runpytest_subprocess(*plugin_args(), "--hil-lab", str(lab), timeout=120)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([f"*--hil-lab: {lab}:*: run.retries: must be a whole number, not 'many'*"])


def test_an_unknown_kind_in_a_marker_is_named(team, tmp_path):
    team.makepyfile(test_typo='''
import pytest

@pytest.mark.hil_kind("nucleo-l432")
def test_typo(hil_board):
    pass
''')
    result = team.runpytest_subprocess(*plugin_args(), "--hil-lab", str(write_lab(tmp_path, samples=4)),
                                       "test_typo.py", timeout=120)
    assert result.ret == pytest.ExitCode.INTERRUPTED  # a collection error
    result.stdout.fnmatch_lines(["*test_typo.py::test_typo: @pytest.mark.hil_kind: unknown board kind "
                                 "'nucleo-l432'; known: mps2-an386, *"])
    assert "Traceback" not in result.stdout.str() and "pytest_plugin.py" not in result.stdout.str()


def test_a_busy_rack_errors_the_tests_with_hils_one_line(team, tmp_path):
    """Someone holds a board's lock: every test that needs the rack errors, naming the board and the holder, and
    nothing is brought up."""
    lab = write_lab(tmp_path, samples=4)
    (spec, *_) = load_lab(lab).boards
    lock = Lock(lock_name(spec, lab))
    assert lock.try_acquire("pid 1 (by hand)") is None
    try:
        result = team.runpytest_subprocess(*plugin_args(), "--hil-lab", str(lab), timeout=120)
    finally:
        lock.release()
    result.assert_outcomes(errors=8, skipped=1)  # the nucleo-l432kc test skips: no such board to wait for
    result.stdout.fnmatch_lines([f"*{spec.slot}: board is in use by pid 1 (by hand) (lock *); wait for that run "
                                 "to end*"])
    assert "Traceback" not in result.stdout.str()


def test_a_quarantined_boards_tests_skip_saying_how_to_release_it(team, tmp_path):
    lab = write_lab(tmp_path, boards={"an500-mnist1d": BOARDS["an500-mnist1d"]}, samples=4)
    quarantined = hil("board", "quarantine", lab, "an500-mnist1d", "--reason", "its USB cable is loose")
    assert quarantined.returncode == 0, quarantined.stderr
    result = team.runpytest_subprocess(*plugin_args(), "--hil-lab", str(lab), "-v", "-rs", "test_answers.py",
                                       timeout=120)
    result.stdout.fnmatch_lines(["*an500-mnist1d: quarantined since *: its USB cable is loose; "
                                 f"`hil board release {lab} an500-mnist1d` once it is fixed*"])
    assert outcomes_of(result) == {
        "test_answers.py::test_every_answer_is_the_host_references[an500-mnist1d]": "SKIPPED",
        "test_answers.py::test_the_m7_runs_its_image_within_budget[an500-mnist1d]": "SKIPPED",
        "test_answers.py::test_the_whole_rack_came_up": "FAILED",  # no board is up: it was not brought up
    }
