"""Kernels with one corner changed, built from a copy of firmware/ as the rack's images are built: the test
set, which never reaches that corner, still reconciles exactly, and the health check's conformance suite fails
the run (exit 1) naming the kernel and the vector. One QEMU board per mutant."""

import json
import os
import shutil
from pathlib import Path

import pytest

from hil import REPO_ROOT
from hil.firmware import build as firmware
from hil.model.reference import Reference
from tests.emulated.test_pytest_plugin import outcomes_of, plugin_args
from tests.support.labs import REGRESSION, hil, write_lab

pytest_plugins = ["pytester"]

pytestmark = pytest.mark.skipif(shutil.which("qemu-system-arm") is None or shutil.which("arm-none-eabi-gcc") is None,
                                reason="needs qemu-system-arm and arm-none-eabi-gcc")
IMAGE = ("mps2-an386", "qute-mnist1d")
SLOT = "an386-mnist1d"
SAMPLES = 2  # per test set: the corner is one no model reaches, so more samples would only take longer

# The conv rescale's left shift, in the portable requantization and in the DSP kernels' per-channel table.
LEFT_SHIFT = "const int32_t left_shift = shift > 0 ? shift : 0;"
DSP_LEFT_SHIFT = LEFT_SHIFT + "\n        const int32_t right_shift = shift > 0 ? 0 : -shift;\n        const int32_t mask"
PORTABLE_LEFT_SHIFT = LEFT_SHIFT + "\n    const int32_t right_shift = shift > 0 ? 0 : -shift;\n    /* TFLite computes"
SHIFTED_LESS = "const int32_t left_shift = shift > 1 ? shift - 1 : 0;"
# name: (the edits to kernels.c, the kernel the check must name, the vector that shows it first)
MUTANTS = {
    # The models' multipliers all shift right: no test set ever takes the left shift.
    "left-shift-off-by-one": ([(DSP_LEFT_SHIFT, DSP_LEFT_SHIFT.replace(LEFT_SHIFT, SHIFTED_LESS)),
                               (PORTABLE_LEFT_SHIFT, PORTABLE_LEFT_SHIFT.replace(LEFT_SHIFT, SHIFTED_LESS))],
                              "CONV_2D", "conv/shift-left-small"),
    # An exact tie in the FC's double rescale needs acc * scale to end in exactly .5: the models' scales never do.
    "fc-ties-toward-zero": ([("(fraction >= (uint64_t)1 << (drop - 1) ? 1u : 0u)",
                              "(fraction > (uint64_t)1 << (drop - 1) ? 1u : 0u)")], "FULLY_CONNECTED", "fc/ties-half"),
    # The models pool VALID (no window reaches the padding): dividing by the padded taps too goes unseen. Every
    # board kind is a Cortex-M4 or M7, whose pool is the DSP one.
    "pool-counts-padding": ([("const int32_t count = rows * cols;", "const int32_t count = p->filter_h * p->filter_w;")],
                            "AVERAGE_POOL_2D", "pool/same-partial"),
    # The DSP path's choice of clamp over SSAT when only act_max is inside int8's range: no model's activation range
    # is so (RELU, RELU6 or none, zero point -128); only the vectors added for the DSP path reach it.
    "narrowing-ignores-act-max": ([("p->act_min > INT8_MIN || p->act_max < INT8_MAX};", "p->act_min > INT8_MIN};")],
                                  "CONV_2D", "conv/in-8-relu6-zp-128"),
}


def mutant_lab(tmp_path: Path, mutant: str) -> Path:
    """A lab of one board whose image is built from a copy of firmware/ with the mutant's line of kernels.c."""
    edits, _kernel, _vector = MUTANTS[mutant]
    source = tmp_path / "firmware"
    shutil.copytree(firmware.FIRMWARE_DIR, source, ignore=shutil.ignore_patterns("prebuilt", "build"))
    kernels = source / "src" / "kernels.c"
    text = kernels.read_text()
    for original, mutation in edits:
        assert text.count(original) == 1, f"{original!r} moved: update MUTANTS"
        text = text.replace(original, mutation)
    kernels.write_text(text)
    (manifest,) = firmware.build(out=tmp_path / "built", source_dir=source, images=[IMAGE], roundings=(Reference.LITERT,))
    return write_lab(tmp_path, boards={SLOT: IMAGE}, samples=SAMPLES,
                     manifests={IMAGE: manifest.directory / "manifest.json"})


@pytest.mark.parametrize("mutant", MUTANTS)
def test_a_changed_corner_passes_the_test_sets_and_fails_conformance(tmp_path, mutant):
    _edits, kernel, vector = MUTANTS[mutant]
    lab = mutant_lab(tmp_path, mutant)
    result = hil("run", lab, "--json")
    assert result.returncode == REGRESSION, result.stderr[-3000:]
    summary = json.loads(result.stdout)
    run_dir = tmp_path / "results" / summary["run_dir"].rsplit("/", 1)[-1]
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["summaries"] and all(s["exact"] == s["samples"] == SAMPLES for s in metrics["summaries"])
    (reason,) = summary["verdict"]["reasons"]
    assert reason.startswith(f"{SLOT}: kernel {kernel} differs from the host reference (litert) on conformance vector "
                             f"{vector} ("), reason
    assert " on the device, " in reason and " expected; " in reason
    run = json.loads((run_dir / "run.json").read_text())
    assert run["conformance"]["boards"][SLOT] == {"conforms": False, "line": reason}
    assert [f["stage"] for f in run["failures"]] == ["conformance"]


def test_the_pytest_plugin_fails_a_board_whose_kernels_differ(pytester, monkeypatch, tmp_path):
    """A team's tests on the rack (docs/pytest.md): the board's health check names the differing kernel."""
    lab = mutant_lab(tmp_path, "left-shift-off-by-one")
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(REPO_ROOT), os.environ.get("PYTHONPATH")])))
    pytester.makepyfile(test_team="def test_the_board_is_up(hil_board):\n    assert hil_board.info.board\n")
    result = pytester.runpytest_subprocess(*plugin_args(), "--hil-lab", str(lab), "-v", timeout=300)
    # failed in the fixture, as a board that did not come up is: an error of the test
    assert outcomes_of(result) == {f"test_team.py::test_the_board_is_up[{SLOT}]": "ERROR"}, result.stdout.str()
    result.stdout.fnmatch_lines([f"*{SLOT}: kernel CONV_2D differs from the host reference (litert) on "
                                 "conformance vector conv/shift-left-small*"])
