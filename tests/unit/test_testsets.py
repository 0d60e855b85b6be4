"""The committed test sets: regenerated from their seed they are the same files, byte for byte."""

import json

import numpy as np
import pytest

from hil import FIXTURES
from hil.errors import BadInput
from hil.model.testsets import KINDS, generate, load_model_testsets, load_testset, model_testsets_dir, set_names


def test_regenerating_from_the_seed_gives_identical_files(tmp_path, card):
    paths = generate(card, tmp_path / card.name)
    assert [p.name for p in paths] == [f"{n}.npz" for n in set_names()]
    for path in paths:
        committed = model_testsets_dir(card) / path.name
        assert path.read_bytes() == committed.read_bytes(), path.name


def test_another_seed_gives_other_shifted_sets(tmp_path, card):
    generate(card, tmp_path, seed=7)
    assert (tmp_path / "shift-s2.npz").read_bytes() != (model_testsets_dir(card) / "shift-s2.npz").read_bytes()


def test_sets_hold_what_the_lab_needs(card):
    sets = load_model_testsets(card)
    assert [s.kind for s in sets] == ["clean", "shifted", "shifted", "shifted", "ood"]
    assert [s.severity for s in sets] == [0, 1, 2, 3, 0]
    for testset in sets:
        assert testset.kind in KINDS
        assert testset.inputs.dtype == np.int8
        assert testset.inputs.shape[1:] == card.input.shape[1:]
        assert testset.provenance["model_sha256"] == card.sha256
        assert testset.provenance["seed"] == 2026
        assert len(testset.corruption) == len(testset)
        if testset.kind == "ood":
            assert (testset.labels == -1).all()
        else:
            assert set(np.unique(testset.labels)) == set(range(10))


def test_shift_severity_lowers_accuracy(card):
    from hil.model.evaluation import answers
    from hil.model.reference import run_reference

    accuracy = [
        np.mean(answers(card, run_reference(card, s.inputs))["qute"].predicted == s.labels)
        for s in load_model_testsets(card)[:4]
    ]
    assert accuracy[0] > accuracy[1] > accuracy[2] > accuracy[3], accuracy


def test_digits_shifted_sets_share_every_corruption_equally():
    from hil.model.card import load_model

    card = load_model("qute-digits")
    shifted = load_model_testsets(card)[1]
    _, counts = np.unique(shifted.corruption, return_counts=True)
    assert len(counts) == 6 and counts.max() - counts.min() <= 1


def test_all_fixtures_stay_small():
    total = sum(p.stat().st_size for p in FIXTURES.rglob("*") if p.is_file())
    assert total < 5 * 1024 * 1024


def test_a_truncated_test_set_is_refused(tmp_path, card):
    source = model_testsets_dir(card) / "clean.npz"
    broken = tmp_path / "clean.npz"
    broken.write_bytes(source.read_bytes()[:500])
    with pytest.raises(BadInput, match="clean.npz: not a readable test set"):
        load_testset(broken, card)


def test_a_set_quantized_for_another_input_is_refused(tmp_path, card):
    from hil.model.testsets import write_npz

    with np.load(model_testsets_dir(card) / "clean.npz") as data:
        arrays = {k: data[k] for k in data.files}
    provenance = json.loads(str(arrays["provenance"]))
    provenance["input_scale"] *= 2
    arrays["provenance"] = np.array(json.dumps(provenance))
    write_npz(tmp_path / "clean.npz", arrays)
    with pytest.raises(BadInput, match="quantized for input"):
        load_testset(tmp_path / "clean.npz", card)
