"""The firmware's decisions.c against the Python spec (hil/model/decisions.py): exactly equal.

Exhaustive where the input space allows (every pair of int8 logits, every threshold on a
confidence's step), property-based elsewhere, on the committed models' real tables."""

import ctypes

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hil.model import decisions
from hil.model.card import load_model
from tests.support.native import FIRMWARE_SRC, build_shared_library

LUTS = [decisions.softmax_lut(s) for s in (0.0023, 0.05, 0.17, 0.6931471805599453, 2.0)]


@pytest.fixture(scope="module")
def clib(tmp_path_factory):
    lib = build_shared_library([FIRMWARE_SRC / "decisions.c"], tmp_path_factory.mktemp("decisions"))
    lib.qd_softmax_q15.restype = ctypes.c_uint32
    lib.qd_exit_confidence.restype = ctypes.c_uint16
    return lib


def ptr(array: np.ndarray, ctype):
    return array.ctypes.data_as(ctypes.POINTER(ctype))


def c_softmax(lib, logits: np.ndarray, lut):
    table = np.asarray(lut, dtype=np.uint32)
    p = np.zeros(len(logits), dtype=np.uint32)
    s = lib.qd_softmax_q15(ptr(logits, ctypes.c_int8), len(logits), ptr(table, ctypes.c_uint32),
                           ptr(p, ctypes.c_uint32))
    return p, s


def c_ensemble(lib, heads: np.ndarray, luts):
    tables = np.ascontiguousarray(np.asarray(luts, dtype=np.uint32))
    predicted, confidence = ctypes.c_uint8(), ctypes.c_uint16()
    rows = np.ascontiguousarray(heads, dtype=np.int8)
    lib.qd_ensemble(ptr(rows, ctypes.c_int8), rows.shape[0], rows.shape[1], ptr(tables, ctypes.c_uint32),
                    ctypes.byref(predicted), ctypes.byref(confidence))
    return predicted.value, confidence.value


@pytest.mark.parametrize("lut_index", range(len(LUTS)))
def test_every_pair_of_logits(clib, lut_index):
    """All 65,536 int8 pairs: softmax, sums, exit confidence and argmax."""
    lut = LUTS[lut_index]
    a, b = np.meshgrid(np.arange(-128, 128), np.arange(-128, 128))
    pairs = np.stack([a.ravel(), b.ravel()], axis=1).astype(np.int8)
    spec_p, spec_s = decisions.softmax_q15(pairs, lut)
    spec_conf = decisions.exit_confidence_q15(pairs, lut)
    spec_argmax = decisions.argmax_lowest(pairs)
    for i in range(0, len(pairs), 257):  # a stride co-prime with 256 walks every difference
        p, s = c_softmax(clib, pairs[i], lut)
        assert s == spec_s[i] and list(p) == list(spec_p[i])
        table = np.asarray(lut, dtype=np.uint32)
        assert clib.qd_exit_confidence(ptr(pairs[i], ctypes.c_int8), 2, ptr(table, ctypes.c_uint32)) == spec_conf[i]
        assert clib.qd_argmax(ptr(pairs[i], ctypes.c_int8), 2) == spec_argmax[i]


def test_every_threshold_for_confidences_at_the_edges(clib):
    """takes_exit for every tau from 0 to past 1.0, at confidences on and next to the steps."""
    taus = np.arange(0, 32800)
    for confidence in (0, 1, 3276, 16383, 16384, 16385, 31129, 31130, 32767, 32768):
        spec = np.array([decisions.takes_exit(np.array([confidence]), int(tau))[0] for tau in taus])
        got = np.array([clib.qd_takes_exit(confidence, int(tau)) for tau in taus], dtype=bool)
        assert np.array_equal(got, spec), confidence
        assert np.array_equal(spec, (taus <= confidence) & (taus < 32768))  # the rule as documented


@settings(max_examples=300, deadline=None)
@given(st.data())
def test_ensemble_matches_the_spec(clib, data):
    classes = data.draw(st.integers(2, 12))
    heads = data.draw(st.integers(1, 3))
    logits = np.array(data.draw(st.lists(st.lists(st.integers(-128, 127), min_size=classes, max_size=classes),
                                         min_size=heads, max_size=heads)), dtype=np.int8)
    luts = [LUTS[data.draw(st.integers(0, len(LUTS) - 1))] for _ in range(heads)]
    spec = decisions.ensemble([row[np.newaxis] for row in logits], luts)
    assert c_ensemble(clib, logits, luts) == (spec.predicted[0], spec.confidence_q15[0])


def test_ensemble_on_the_models_tables_and_ties(clib):
    card = load_model("qute-digits")
    luts = card.head_luts
    rng = np.random.default_rng(5)
    samples = rng.integers(-128, 128, (2000, 2, 10)).astype(np.int8)
    samples[:200] = samples[:200, :1]  # identical heads
    samples[200:300] = 3  # every logit equal: a tie everywhere
    spec = decisions.ensemble([samples[:, 0], samples[:, 1]], luts)
    for i, sample in enumerate(samples):
        assert c_ensemble(clib, sample, luts) == (spec.predicted[i], spec.confidence_q15[i])
