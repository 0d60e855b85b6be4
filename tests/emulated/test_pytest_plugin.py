"""The pytest plugin (hil/pytest_plugin.py) as a team uses it: its own test file, run by pytest (pytester, in a
subprocess) with --hil-lab, against an emulated rack of two QEMU boards."""

import importlib.metadata
import os

import pytest

from hil import REPO_ROOT
from hil.hw.factory import lock_name
from hil.hw.locks import Lock
from hil.lab.load import load_lab
from tests.support.labs import write_lab

pytest_plugins = ["pytester"]

A_TEAMS_TESTS = '''
import subprocess
import sys

import pytest


def first_samples(hil_board, count=3):
    testset = next(iter(hil_board.testsets.values()))
    return testset.inputs[:count]


def test_answers_as_the_host_reference(hil_board):
    for sample in first_samples(hil_board):
        answer = hil_board.infer(sample)
        assert answer == hil_board.reference(sample)
        assert answer.cycles > 0 and 0 <= answer.confidence <= 1


def test_a_wrong_expectation_fails(hil_board):
    (sample,) = first_samples(hil_board, 1)
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
    assert sorted(board.slot for board in hil_rack.ready) == sorted(spec.slot for spec in hil_lab.boards)
    refused = subprocess.run([sys.executable, "-m", "hil.cli", "run", str(hil_lab.file)], capture_output=True,
                             text=True, timeout=120)
    assert refused.returncode == 2, refused.stderr
    assert "is in use by pid" in refused.stderr
'''


def plugin_args() -> list[str]:
    """`-p hil.pytest_plugin` where the installed hil does not register it as a pytest11 entry point yet (a venv
    installed before the plugin existed); twice would be an error."""
    installed = any(ep.value == "hil.pytest_plugin" for ep in importlib.metadata.entry_points(group="pytest11"))
    return [] if installed else ["-p", "hil.pytest_plugin"]


@pytest.fixture
def team(pytester, monkeypatch):
    """A team's folder of tests, run with the hil of this checkout."""
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(REPO_ROOT), os.environ.get("PYTHONPATH")])))
    monkeypatch.setenv("NO_COLOR", "1")
    pytester.makepyfile(test_on_the_rack=A_TEAMS_TESTS)
    return pytester


def test_a_teams_tests_run_on_the_emulated_rack(team, tmp_path):
    lab = write_lab(tmp_path, samples=4)
    result = team.runpytest_subprocess(*plugin_args(), "--hil-lab", str(lab), "-v", "-rs", timeout=300)
    outcomes = {line.split(" ")[0].split("::")[-1]: line.split(" ")[1] for line in result.outlines
                if line.startswith("test_on_the_rack.py::")}
    assert outcomes == {
        "test_answers_as_the_host_reference[an386-digits]": "PASSED",
        "test_answers_as_the_host_reference[an500-mnist1d]": "PASSED",
        "test_a_wrong_expectation_fails[an386-digits]": "FAILED",
        "test_a_wrong_expectation_fails[an500-mnist1d]": "FAILED",
        "test_only_an500_boards[an500-mnist1d]": "PASSED",
        "test_no_board_of_this_kind[no-board]": "SKIPPED",
        "test_the_rack_is_held": "PASSED",
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
    result.assert_outcomes(skipped=5)
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
