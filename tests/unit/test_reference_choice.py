"""`run.reference: tflm`: a lab reconciled against TFLM's kernels, on boards that compute LiteRT's.

The fake boards answer with LiteRT's outputs (hil/testing/fake_board.py), as today's firmware does; against
TFLM, the samples where the two references differ by a step must come out as mismatches, and nothing else.
"""

import json

import numpy as np

from hil.lab.load import load_lab
from hil.model.reference import Reference, run_reference
from hil.run.runner import execute
from tests.support.labs import BOARDS, PASS, REGRESSION, write_lab
from tests.unit.test_pipeline import Quiet

SLOT = "an500-mnist1d"  # the model where the references differ most often (2.4% of exits)
SAMPLES = 40  # per test set: enough that some differ


def _differing(lab) -> dict[str, set[int]]:
    """Per test set, the samples whose LiteRT and TFLM outputs differ anywhere."""
    model = lab.models[BOARDS[SLOT][1]]
    found = {}
    for testset in model.testsets:
        litert, tflm = (run_reference(model.card, testset.inputs, reference=r) for r in Reference)
        differ = np.zeros(len(testset), dtype=bool)
        for a, b in [(litert.exit, tflm.exit), *zip(litert.heads, tflm.heads)]:
            differ |= np.any(a != b, axis=1)
        found[testset.name] = set(np.nonzero(differ)[0].tolist())
    return found


def test_the_lab_names_its_reference_and_litert_is_the_default(tmp_path):
    assert load_lab(write_lab(tmp_path, boards={SLOT: BOARDS[SLOT]})).run.reference is Reference.LITERT
    assert load_lab(write_lab(tmp_path, boards={SLOT: BOARDS[SLOT]}, reference="tflm")).run.reference is Reference.TFLM


def test_against_tflm_todays_firmware_mismatches_where_the_references_differ(fake_rack, tmp_path):
    path = write_lab(tmp_path, boards={SLOT: BOARDS[SLOT]}, samples=SAMPLES, reference="tflm")
    differing = _differing(load_lab(path))
    assert any(differing.values()), "the chosen samples do not tell the references apart"
    outcome = execute(path, None, Quiet())
    assert outcome.verdict.exit_code == REGRESSION, outcome.verdict.reasons
    assert outcome.mismatches and all(m.max_steps == 1 for m in outcome.mismatches)
    assert all(m.record.index in differing[m.record.testset] for m in outcome.mismatches)
    assert any("differ from the host reference (tflm)" in reason for reason in outcome.verdict.reasons)
    assert json.loads((outcome.run_dir / "run.json").read_text())["reference"] == "tflm"


def test_against_litert_the_same_boards_pass_and_run_json_says_litert(fake_rack, tmp_path):
    outcome = execute(write_lab(tmp_path, boards={SLOT: BOARDS[SLOT]}, samples=SAMPLES), None, Quiet())
    assert outcome.verdict.exit_code == PASS, outcome.verdict.reasons
    assert json.loads((outcome.run_dir / "run.json").read_text())["reference"] == "litert"
