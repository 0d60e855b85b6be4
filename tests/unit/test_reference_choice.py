"""`run.reference: tflm`: a lab reconciled against TFLM's kernels, on boards whose images round as TFLM does.

A lab's images must have the rounding mode of its reference (their manifests' `rounding`), or it is refused at
load (exit 3), before any board is flashed. The fake boards answer with the reference their manifest's rounding
mode matches (hil/testing/fake_board.py), as the firmware does (tests/emulated/test_rounding.py runs the real
images); the samples chosen include some where LiteRT and TFLM differ by a step.
"""

import json

import numpy as np
import pytest

from hil.cli import main
from hil.firmware import build as firmware
from hil.lab.load import LabError, load_lab
from hil.model.reference import Reference, run_reference
from hil.model.testsets import write_npz
from hil.run.health import known_answers
from hil.run.runner import execute
from hil.store import health
from tests.support.labs import BAD_INPUT, BOARDS, PASS, REGRESSION, write_lab
from tests.unit.test_pipeline import Quiet

SLOT = "an500-mnist1d"  # the model where the references differ most often (2.4% of exits)
KIND, MODEL = BOARDS[SLOT]
SAMPLES = 40  # per test set: enough that some differ


def _differing(lab) -> dict[str, set[int]]:
    """Per test set, the samples whose LiteRT and TFLM outputs differ anywhere."""
    model = lab.models[MODEL]
    found = {}
    for testset in model.testsets:
        litert, tflm = (run_reference(model.card, testset.inputs, reference=r) for r in Reference)
        differ = np.zeros(len(testset), dtype=bool)
        for a, b in [(litert.exit, tflm.exit), *zip(litert.heads, tflm.heads)]:
            differ |= np.any(a != b, axis=1)
        found[testset.name] = set(np.nonzero(differ)[0].tolist())
    return found


def _manifest(rounding: Reference):
    return firmware.PREBUILT_DIR / firmware.image_dir(KIND, MODEL, rounding) / firmware.MANIFEST


def test_the_lab_names_its_reference_and_litert_is_the_default(tmp_path):
    assert load_lab(write_lab(tmp_path, boards={SLOT: BOARDS[SLOT]})).run.reference is Reference.LITERT
    lab = load_lab(write_lab(tmp_path, boards={SLOT: BOARDS[SLOT]}, reference="tflm"))
    assert lab.run.reference is Reference.TFLM
    assert lab.firmware[(KIND, MODEL)].rounding is Reference.TFLM  # write_lab names the matching image


@pytest.mark.parametrize("reference, rounding", [(Reference.TFLM, Reference.LITERT),
                                                 (Reference.LITERT, Reference.TFLM)])
def test_an_image_whose_rounding_is_another_references_is_refused_at_load(tmp_path, capsys, reference, rounding):
    path = write_lab(tmp_path, boards={SLOT: BOARDS[SLOT]}, reference=str(reference),
                     manifests={(KIND, MODEL): _manifest(rounding)})
    line = (rf"^{path}:\d+: firmware\.{KIND}\.{MODEL}: board {SLOT}'s image {_manifest(rounding)} has {rounding} "
            rf"rounding, but run\.reference is {reference}; name its {reference} image \({_manifest(reference)}\) "
            rf"or set run\.reference: {rounding} \(docs/labs\.md\)$")
    with pytest.raises(LabError, match=line) as refused:
        load_lab(path)
    assert main(["run", str(path)]) == BAD_INPUT  # as a user sees it: that one line, and no board was brought up
    assert capsys.readouterr().err == f"hil: error: {refused.value}\n"
    assert not (tmp_path / "results").exists()


def test_against_tflm_tflm_images_pass_where_the_references_differ(fake_rack, tmp_path):
    path = write_lab(tmp_path, boards={SLOT: BOARDS[SLOT]}, samples=SAMPLES, reference="tflm")
    assert any(_differing(load_lab(path)).values()), "the chosen samples do not tell the references apart"
    outcome = execute(path, None, Quiet())
    assert outcome.verdict.exit_code == PASS, outcome.verdict.reasons
    assert not outcome.mismatches
    run = json.loads((outcome.run_dir / "run.json").read_text())
    assert run["reference"] == "tflm"
    assert {board["firmware"]["rounding"] for board in run["boards"].values()} == {"tflm"}


def test_against_litert_the_litert_images_pass_and_run_json_says_litert(fake_rack, tmp_path):
    outcome = execute(write_lab(tmp_path, boards={SLOT: BOARDS[SLOT]}, samples=SAMPLES), None, Quiet())
    assert outcome.verdict.exit_code == PASS, outcome.verdict.reasons
    run = json.loads((outcome.run_dir / "run.json").read_text())
    assert run["reference"] == "litert"
    assert {board["firmware"]["rounding"] for board in run["boards"].values()} == {"litert"}


def test_the_health_checks_known_answer_is_the_runs_reference(fake_rack, tmp_path):
    """The known question made one where LiteRT and TFLM differ (the test sets rewritten to start with such a
    sample): against tflm the check expects TFLM's answer, which the tflm image gives, and the board is healthy."""
    path = write_lab(tmp_path, boards={SLOT: BOARDS[SLOT]}, samples=SAMPLES, reference="tflm")
    lab = load_lab(path)
    first = lab.models[MODEL].testsets[0]
    differing = sorted(_differing(lab)[first.name])
    assert differing, "no sample of the first test set tells the references apart"
    with np.load(first.path) as data:
        arrays = {key: data[key] for key in data.files}
    order = [differing[0]] + [i for i in range(len(first)) if i != differing[0]]
    for key in ("inputs", "labels", "corruption"):
        arrays[key] = arrays[key][order]
    write_npz(first.path, arrays)

    lab = load_lab(path)
    known = known_answers(lab)[MODEL]
    sample = known.testset.inputs[:1]
    litert, tflm = (run_reference(known.card, sample, reference=r) for r in Reference)
    assert not np.array_equal(np.concatenate([litert.exit, *litert.heads]), np.concatenate([tflm.exit, *tflm.heads]))
    assert np.array_equal(known.reference.exit, tflm.exit)
    assert all(np.array_equal(a, b) for a, b in zip(known.reference.heads, tflm.heads))

    outcome = execute(path, None, Quiet())
    assert outcome.verdict.exit_code == PASS, outcome.verdict.reasons
    (check,) = health.history(lab.results_dir, lab.name, SLOT)
    assert check.ok, check.reason


def test_verify_checks_images_against_their_rounding_modes_reference_or_the_one_given(fake_rack, capsys):
    """`hil firmware verify --rounding tflm`: the tflm images, by default against TFLM (their manifests' mode),
    exact; with `--reference litert`, the samples where the references differ come out as differing bytes (exit 1).
    The fake boards answer as their manifest's rounding mode, as the images do (tests/emulated/test_rounding.py)."""
    args = ["firmware", "verify", "--rounding", "tflm", "--board", KIND, "--model", MODEL, "--samples", "40",
            "--markdown"]
    assert main(args) == PASS
    exact = capsys.readouterr().out
    assert "**Device (tflm rounding) against the tflm host reference" in exact
    assert _differing_bytes(exact) == [0] * 5
    assert main(args + ["--reference", "litert"]) == REGRESSION
    against_litert = capsys.readouterr().out
    assert "**Device (tflm rounding) against the litert host reference" in against_litert
    assert sum(_differing_bytes(against_litert)) > 0


def test_verify_refuses_rounding_with_a_lab(tmp_path, capsys):
    path = write_lab(tmp_path, boards={SLOT: BOARDS[SLOT]})
    assert main(["firmware", "verify", "--lab", str(path), "--rounding", "tflm"]) == BAD_INPUT
    assert capsys.readouterr().err == (f"hil: error: {path}: --rounding picks prebuilt images, and a lab names its "
                                       "own; leave it out (its images' rounding is its run.reference)\n")


def _differing_bytes(markdown: str) -> list[int]:
    """The exactness table's 'differing output bytes' column."""
    table = markdown.split("\n\n")[1]
    return [int(line.strip("|").split("|")[5]) for line in table.splitlines()[2:]]
