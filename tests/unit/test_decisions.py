"""The integer decision spec at its edges: ties, a threshold exactly on a step, tau >= 1."""

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hil.model import decisions

# A scale of ln 2 halves e for every step below the top logit: LUT = 2^16, 2^15, 2^14, ...
HALVING_LUT = decisions.softmax_lut(math.log(2))


def logits(*rows):
    return np.array(rows, dtype=np.int8)


def test_lut_is_exp_in_q16():
    assert HALVING_LUT[:4] == [65536, 32768, 16384, 8192]
    assert HALVING_LUT[16] == 1 and HALVING_LUT[18] == 0  # 2^16 * 2^-16 = 1; 2^16 * 2^-18 rounds to 0
    lut = decisions.softmax_lut(0.1)
    assert lut[0] == decisions.LUT_ONE and len(lut) == 256
    assert all(a >= b for a, b in zip(lut, lut[1:]))
    assert lut[10] == round(65536 * math.exp(-1.0))


def test_lut_rejects_a_non_positive_scale():
    with pytest.raises(ValueError):
        decisions.softmax_lut(0.0)


@pytest.mark.parametrize(
    "tau, expected",
    [("0.5", 16384), ("0.95", 31130), ("0.55", 18022), ("1.0", 32768), ("1.7", 32768), ("0", 0),
     # half a Q15 step rounds up; just below half rounds down
     (0.5 / 32768, 1), ("0.0000152587", 0)],
)
def test_threshold_to_q15(tau, expected):
    assert decisions.threshold_q15(tau) == expected


def test_negative_threshold_is_rejected():
    with pytest.raises(ValueError):
        decisions.threshold_q15(-0.1)


def test_softmax_q15_by_hand():
    # top logit 5, others 4 and 3: e = 65536, 32768, 16384, S = 114688
    p, s = decisions.softmax_q15(logits([5, 4, 3]), HALVING_LUT)
    assert s.tolist() == [114688]
    # floor(65536 * 32768 / 114688) = floor(18724.57) = 18724, then 9362, 4681
    assert p.tolist() == [[18724, 9362, 4681]]


def test_exit_confidence_equals_the_top_probability():
    rng = np.random.default_rng(0)
    x = rng.integers(-128, 128, (500, 10)).astype(np.int8)
    lut = decisions.softmax_lut(0.07)
    p, _ = decisions.softmax_q15(x, lut)
    assert (decisions.exit_confidence_q15(x, lut) == p.max(axis=1)).all()


def test_all_equal_logits_tie_to_class_zero():
    x = logits([7] * 10)
    conf = decisions.exit_confidence_q15(x, HALVING_LUT)
    assert conf.tolist() == [(1 << 31) // (10 * 65536)]  # 3276
    assert decisions.argmax_lowest(x).tolist() == [0]


def test_argmax_tie_picks_the_lowest_index():
    assert decisions.argmax_lowest(logits([0, 0, 0, 9, 0, 0, 0, 9, 0, 0])).tolist() == [3]


def test_threshold_exactly_on_a_step_exits():
    x = logits([5, 4, 3])
    conf = int(decisions.exit_confidence_q15(x, HALVING_LUT)[0])  # floor(2^31 / 114688) = 18724
    assert conf == 18724
    assert decisions.takes_exit(np.array([conf]), conf).tolist() == [True]
    assert decisions.takes_exit(np.array([conf]), conf + 1).tolist() == [False]


def test_tau_one_never_exits_even_at_full_confidence():
    x = logits([127] + [-128] * 9)  # every other e is LUT[255] = 0: S = 2^16
    conf = decisions.exit_confidence_q15(x, HALVING_LUT)
    assert conf.tolist() == [32768]
    assert decisions.takes_exit(conf, decisions.threshold_q15("1.0")).tolist() == [False]
    assert decisions.takes_exit(conf, decisions.threshold_q15("2")).tolist() == [False]
    assert decisions.takes_exit(conf, 32767).tolist() == [True]


def test_ensemble_tie_between_heads_goes_to_the_lowest_class():
    a = logits([9, 0, 0, 0], [0, 0, 0, 9])
    b = logits([0, 9, 0, 0], [0, 0, 9, 0])
    result = decisions.ensemble([a, b], [HALVING_LUT, HALVING_LUT])
    # each row: the two heads put the same mass on two different classes
    assert result.summed_q15[0, 0] == result.summed_q15[0, 1]
    assert result.summed_q15[1, 2] == result.summed_q15[1, 3]
    assert result.predicted.tolist() == [0, 2]
    # confidence = floor(P_max / K)
    assert result.confidence_q15.tolist() == (result.summed_q15.max(axis=1) // 2).tolist()


def test_cascade_takes_exit_answers_only_where_it_exits():
    exit_logits = logits([9, 0, 0], [0, 1, 0])  # confident on class 0; unsure between 1 and 0/2
    heads = decisions.ensemble([logits([0, 0, 9], [0, 0, 9])], [HALVING_LUT])
    answer = decisions.cascade(exit_logits, HALVING_LUT, heads, decisions.threshold_q15("0.9"))
    assert answer.exited.tolist() == [True, False]
    assert answer.predicted.tolist() == [0, 2]
    assert answer.confidence_q15[0] == decisions.exit_confidence_q15(exit_logits, HALVING_LUT)[0]
    assert answer.confidence_q15[1] == heads.confidence_q15[1]


def test_logits_must_be_int8():
    with pytest.raises(TypeError):
        decisions.softmax_q15(np.array([[1, 2]], dtype=np.int32), HALVING_LUT)


@settings(max_examples=200, deadline=None)
@given(
    scale=st.floats(min_value=1e-4, max_value=2.0),
    row=st.lists(st.integers(-128, 127), min_size=2, max_size=15),
)
def test_fixed_point_softmax_tracks_the_float_softmax(scale, row):
    x = np.array([row], dtype=np.int8)
    p, s = decisions.softmax_q15(x, decisions.softmax_lut(scale))
    assert s[0] < 1 << 20 and p.max() <= decisions.Q15_ONE  # fits the C side's uint32
    exact = np.exp(-scale * (x.max() - x.astype(float)))
    exact /= exact.sum()
    # LUT rounding is half a Q16 step per entry, the division floors to Q15
    assert np.abs(p / decisions.Q15_ONE - exact).max() < len(row) * 2e-5 + 2 / decisions.Q15_ONE
