"""Tests of hil.stats.metrics: hand-computed cases, scikit-learn references, brute force, errors.

scikit-learn is the reference implementation here and only here; the module is numpy.
"""

from __future__ import annotations

import dataclasses
import math
import warnings
from fractions import Fraction

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.metrics import (
    accuracy_score,
    average_precision_score,
    brier_score_loss,
    f1_score,
    log_loss,
    roc_auc_score,
)

from hil.stats import metrics as m

PROPERTY = settings(max_examples=150, deadline=None)


def random_probs(rng: np.random.Generator, n: int, num_classes: int) -> np.ndarray:
    """Rows drawn from a Dirichlet, sharpened so accuracy and confidence both vary."""
    return rng.dirichlet(np.full(num_classes, 0.7), size=n)


def random_case(seed: int, n: int = 500, num_classes: int = 10):
    rng = np.random.default_rng(seed)
    probs = random_probs(rng, n, num_classes)
    # Labels follow the predictions 60% of the time, so the model is better than chance.
    labels = np.where(rng.random(n) < 0.6, probs.argmax(axis=1), rng.integers(0, num_classes, n))
    return labels, probs


# --- confidence, predictions, accuracy --------------------------------------------------


def test_confidence_and_predictions_by_hand():
    probs = np.array(
        [
            [0.1, 0.7, 0.2],
            [0.4, 0.2, 0.4],  # tie between classes 0 and 2 -> lowest index, 0
            [0.3, 0.35, 0.35],  # tie between classes 1 and 2 -> 1
        ]
    )
    np.testing.assert_array_equal(m.confidence(probs), [0.7, 0.4, 0.35])
    np.testing.assert_array_equal(m.predictions(probs), [1, 0, 1])


def test_accuracy_by_hand_and_against_sklearn():
    # 3 of 4 equal -> 0.75
    assert m.accuracy(np.array([0, 1, 2, 2]), np.array([0, 1, 2, 0])) == 0.75
    labels, probs = random_case(1)
    predicted = m.predictions(probs)
    assert m.accuracy(labels, predicted) == pytest.approx(accuracy_score(labels, predicted))


# --- weighted F1 ------------------------------------------------------------------------


def test_weighted_f1_by_hand():
    labels = np.array([0, 0, 0, 1, 1, 2])
    predicted = np.array([0, 0, 1, 1, 0, 0])
    # class 0: TP 2, FP 2 (the 1 and the 2 predicted as 0), FN 1 -> F1 = 4/(4+2+1) = 4/7
    # class 1: TP 1, FP 1, FN 1 -> F1 = 2/4 = 1/2
    # class 2: TP 0 (never predicted) -> F1 = 0
    # class 3: no support, never predicted -> weight 0
    # weighted: (3 * 4/7 + 2 * 1/2 + 1 * 0) / 6 = (12/7 + 1) / 6 = 19/42
    assert m.weighted_f1(labels, predicted, num_classes=4) == pytest.approx(19 / 42)


def test_weighted_f1_class_predicted_but_absent_weighs_zero():
    # class 1 is predicted once but has no support: it only lowers class 0's precision.
    # class 0: TP 1, FP 0, FN 1 -> F1 = 2/3; weight 2/2 -> 2/3
    assert m.weighted_f1(np.array([0, 0]), np.array([0, 1]), 2) == pytest.approx(2 / 3)


@pytest.mark.parametrize("seed", range(5))
def test_weighted_f1_against_sklearn_random(seed):
    rng = np.random.default_rng(seed)
    num_classes = 10
    labels = rng.integers(0, num_classes, 300)
    # Predictions drawn from only 7 classes, so some classes are never predicted.
    predicted = np.where(rng.random(300) < 0.5, labels, rng.integers(0, 7, 300))
    expected = f1_score(
        labels, predicted, labels=range(num_classes), average="weighted", zero_division=0
    )
    assert m.weighted_f1(labels, predicted, num_classes) == pytest.approx(expected, abs=1e-12)


@PROPERTY
@given(
    st.integers(2, 6).flatmap(
        lambda k: st.tuples(
            st.just(k),
            st.lists(
                st.tuples(st.integers(0, k - 1), st.integers(0, k - 1)), min_size=1, max_size=40
            ),
        )
    )
)
def test_weighted_f1_property_against_sklearn(case):
    num_classes, pairs = case
    labels = np.array([a for a, _ in pairs])
    predicted = np.array([b for _, b in pairs])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        expected = f1_score(labels, predicted, average="weighted", zero_division=0)
    assert m.weighted_f1(labels, predicted, num_classes) == pytest.approx(expected, abs=1e-12)


# --- NLL --------------------------------------------------------------------------------


def test_nll_by_hand_with_eps_clipping():
    labels = np.array([0, 1])
    probs = np.array([[0.5, 0.5], [1.0, 0.0]])
    # sample 0: -log 0.5; sample 1: p_true = 0 clipped to 1e-7 -> -log 1e-7
    expected = (math.log(2) + 7 * math.log(10)) / 2
    assert m.nll(labels, probs) == pytest.approx(expected)
    # a larger eps changes only the clipped term: (log 2 + log 100) / 2
    assert m.nll(labels, probs, eps=1e-2) == pytest.approx((math.log(2) + math.log(100)) / 2)


@pytest.mark.parametrize("seed", range(3))
def test_nll_against_sklearn_log_loss(seed):
    labels, probs = random_case(seed, num_classes=10)
    p_true = probs[np.arange(len(labels)), labels]
    # Keep the comparison away from clipping: sklearn clips at float eps, we clip at 1e-7.
    keep = p_true > 1e-6
    labels, probs = labels[keep], probs[keep]
    expected = log_loss(labels, probs, labels=range(10))
    assert m.nll(labels, probs) == pytest.approx(expected, rel=1e-12)


# --- Brier ------------------------------------------------------------------------------


def test_brier_by_hand():
    labels = np.array([0, 1])
    probs = np.array([[0.8, 0.2, 0.0], [0.5, 0.25, 0.25]])
    # sample 0: 0.2^2 + 0.2^2 + 0 = 0.08
    # sample 1: 0.5^2 + 0.75^2 + 0.25^2 = 0.25 + 0.5625 + 0.0625 = 0.875
    # total 0.955 / (N * L = 6)
    assert m.brier(labels, probs) == pytest.approx(0.955 / 6)


@pytest.mark.parametrize("seed", range(3))
def test_brier_against_sklearn(seed):
    labels, probs = random_case(seed, num_classes=10)
    # sklearn >= 1.7 multiclass Brier with scale_by_half=False is sum_ij (p - y)^2 / N
    # (range [0, 2]); ours divides by N * L, so it is sklearn's value / L.
    expected = brier_score_loss(labels, probs, labels=range(10), scale_by_half=False) / 10
    assert m.brier(labels, probs) == pytest.approx(expected, rel=1e-12)


def test_brier_against_expanded_formula():
    # Written differently: sum_ij (p - y)^2 = sum_ij p^2 - 2 sum_i p_true + N.
    labels, probs = random_case(7, num_classes=4)
    n, num_classes = probs.shape
    p_true = probs[np.arange(n), labels]
    expected = (np.sum(probs**2) - 2 * np.sum(p_true) + n) / (n * num_classes)
    assert m.brier(labels, probs) == pytest.approx(expected, rel=1e-12)


# --- ECE --------------------------------------------------------------------------------


def test_ece_by_hand_bin_edge():
    # bins=5: edges 0, 0.2, 0.4, 0.6, 0.8, 1.
    labels = np.array([0, 1, 0, 0])
    probs = np.array(
        [
            [0.2, 0.2, 0.2, 0.2, 0.2],  # conf 0.2 exactly -> bin (0, 0.2]; argmax 0, correct
            [0.9, 0.1, 0.0, 0.0, 0.0],  # conf 0.9 -> bin (0.8, 1]; predicts 0, wrong
            [0.9, 0.1, 0.0, 0.0, 0.0],  # conf 0.9 -> bin (0.8, 1]; correct
            [0.3, 0.7, 0.0, 0.0, 0.0],  # conf 0.7 -> bin (0.6, 0.8]; predicts 1, wrong
        ]
    )
    # bin (0, 0.2]:   1/4 * |1 - 0.2| = 0.2
    # bin (0.6, 0.8]: 1/4 * |0 - 0.7| = 0.175
    # bin (0.8, 1]:   2/4 * |0.5 - 0.9| = 0.2
    assert m.ece(labels, probs, bins=5) == pytest.approx(0.575)


def test_ece_edge_confidence_is_not_merged_with_the_next_bin():
    labels = np.array([0, 1])
    probs = np.array([[0.2, 0.2, 0.2, 0.2, 0.2], [0.3, 0.25, 0.25, 0.2, 0.0]])
    # conf 0.2 (correct) in (0, 0.2], conf 0.3 (predicts 0, wrong) in (0.2, 0.4]:
    # 1/2 * |1 - 0.2| + 1/2 * |0 - 0.3| = 0.4 + 0.15 = 0.55.
    # Had 0.2 gone into (0.2, 0.4], one bin: |1/2 - 0.25| = 0.25.
    assert m.ece(labels, probs, bins=5) == pytest.approx(0.55)


def test_ece_zero_confidence_goes_to_first_bin_and_one_to_last():
    # All-zero rows are not probability vectors, but fixed-point rows can underflow to
    # zero; conf 0 must land in bin 0, not index -1 (which would wrap to the last bin).
    labels = np.array([0, 1])
    probs = np.array([[0.0, 0.0], [1.0, 0.0]])
    # bin 0: conf 0, argmax 0 correct -> 1/2 * |1 - 0| = 0.5
    # bin 1 (0.5, 1]: conf 1, predicts 0, wrong -> 1/2 * |0 - 1| = 0.5; total 1.0
    # (both in the last bin would give |1/2 - 1/2| = 0)
    assert m.ece(labels, probs, bins=2) == pytest.approx(1.0)


def test_ece_single_bin_is_gap_of_means():
    labels, probs = random_case(3)
    conf = probs.max(axis=1)
    acc = np.mean(probs.argmax(axis=1) == labels)
    assert m.ece(labels, probs, bins=1) == pytest.approx(abs(acc - conf.mean()))


def brute_force_ece(labels, probs, bins):
    """Loop over bins with explicit interval tests (independent of searchsorted)."""
    conf = probs.max(axis=1)
    correct = probs.argmax(axis=1) == labels
    total = 0.0
    for b in range(bins):
        lower, upper = b / bins, (b + 1) / bins
        members = (conf > lower) & (conf <= upper)
        if b == 0:
            members |= conf == 0
        if members.any():
            total += members.sum() / len(conf) * abs(correct[members].mean() - conf[members].mean())
    return total


@pytest.mark.parametrize("seed,bins", [(0, 15), (1, 10), (2, 5), (3, 7)])
def test_ece_against_brute_force(seed, bins):
    labels, probs = random_case(seed)
    # quantise to 1/20 so many confidences sit exactly on edges of the 5- and 10-bin grids
    probs = np.round(probs * 20) / 20
    assert m.ece(labels, probs, bins=bins) == pytest.approx(brute_force_ece(labels, probs, bins))


def test_ece_rejects_zero_bins():
    labels, probs = random_case(0, n=10)
    with pytest.raises(ValueError, match="bins"):
        m.ece(labels, probs, bins=0)


# --- AUROC ------------------------------------------------------------------------------


def test_auroc_by_hand_with_ties():
    # pairs (pos, neg): (0.9,0.5)=1 (0.9,0.1)=1 (0.5,0.5)=1/2 (0.5,0.1)=1 -> 3.5/4
    assert m.auroc(np.array([0.9, 0.5]), np.array([0.5, 0.1])) == pytest.approx(0.875)
    # all tied -> 1/2; perfectly reversed -> 0
    assert m.auroc(np.array([0.3, 0.3]), np.array([0.3])) == pytest.approx(0.5)
    assert m.auroc(np.array([0.1]), np.array([0.2, 0.3])) == 0.0


def test_auroc_empty_side_is_nan():
    assert math.isnan(m.auroc(np.array([]), np.array([0.1])))
    assert math.isnan(m.auroc(np.array([0.1]), np.array([])))


@PROPERTY
@given(
    st.lists(st.integers(0, 5), min_size=1, max_size=30),
    st.lists(st.integers(0, 5), min_size=1, max_size=30),
)
def test_auroc_property_against_sklearn_with_ties(pos, neg):
    # Integer scores in 0..5 force many ties.
    expected = roc_auc_score([1] * len(pos) + [0] * len(neg), pos + neg)
    assert m.auroc(np.array(pos), np.array(neg)) == pytest.approx(expected, abs=1e-12)


def test_failure_auroc_by_hand():
    labels = np.array([0, 0, 1, 1])
    probs = np.array([[0.9, 0.1], [0.6, 0.4], [0.7, 0.3], [0.5, 0.5]])
    # conf 0.9 correct, 0.6 correct, 0.7 wrong (predicts 0), 0.5 wrong (tie -> predicts 0)
    # pairs (correct, wrong): (0.9,0.7)=1 (0.9,0.5)=1 (0.6,0.7)=0 (0.6,0.5)=1 -> 3/4
    assert m.failure_auroc(labels, probs) == pytest.approx(0.75)


def test_failure_auroc_all_correct_is_nan():
    assert math.isnan(m.failure_auroc(np.array([0, 1]), np.array([[0.9, 0.1], [0.2, 0.8]])))


@pytest.mark.parametrize("seed", range(3))
def test_failure_and_ood_auroc_against_sklearn(seed):
    labels, probs = random_case(seed)
    conf = probs.max(axis=1)
    correct = probs.argmax(axis=1) == labels
    assert m.failure_auroc(labels, probs) == pytest.approx(roc_auc_score(correct, conf))

    rng = np.random.default_rng(100 + seed)
    conf_out = rng.dirichlet(np.ones(10), size=200).max(axis=1)
    is_in = np.r_[np.ones(len(conf)), np.zeros(len(conf_out))]
    expected = roc_auc_score(is_in, np.r_[conf, conf_out])
    assert m.ood_auroc(conf, conf_out) == pytest.approx(expected)


# --- risk-coverage and AURC -------------------------------------------------------------

def test_risk_coverage_by_hand_with_ties():
    labels = np.array([0, 1, 0, 1])
    probs = np.array([[0.9, 0.1], [0.9, 0.1], [0.5, 0.5], [0.5, 0.5]])
    # conf 0.9, 0.9, 0.5, 0.5; all predict 0 (the 0.5/0.5 tie goes to 0): samples 1, 3 wrong.
    coverage, risk = m.risk_coverage(labels, probs)
    # t = 0.9: 2 samples, 1 wrong -> coverage 1/2, risk 1/2
    # t = 0.5: 4 samples, 2 wrong -> coverage 1,   risk 1/2
    np.testing.assert_allclose(coverage, [0.5, 1.0])
    np.testing.assert_allclose(risk, [0.5, 0.5])


def test_aurc_by_hand_with_ties():
    labels = np.array([0, 1, 0, 0])
    probs = np.array([[0.9, 0.1], [0.9, 0.1], [0.5, 0.5], [0.5, 0.5]])
    # errors: sample 1 only. Groups: {0,1} at 0.9 with risk 1/2; all four at 0.5, risk 1/4.
    # AURC = (1/2 + 1/2 + 1/4 + 1/4) / 4 = 3/8. Ordering the tie with the error first would
    # give (1 + 1/2 + 1/3 + 1/4)/4 = 25/48, error second (0 + 1/2 + 1/3 + 1/4)/4 = 13/48.
    assert m.aurc(labels, probs) == pytest.approx(3 / 8)
    coverage, risk = m.risk_coverage(labels, probs)
    np.testing.assert_allclose(coverage, [0.5, 1.0])
    np.testing.assert_allclose(risk, [0.5, 0.25])


def probs_from(conf: np.ndarray, correct: np.ndarray, num_classes: int = 4):
    """(labels, probs) with the given confidences (> 1/num_classes) and correctness."""
    n = len(conf)
    probs = np.empty((n, num_classes))
    probs[:, 0] = conf
    probs[:, 1:] = ((1 - conf) / (num_classes - 1))[:, None]
    labels = np.where(correct, 0, 1)
    return labels, probs


def test_aurc_perfect_and_reversed_ranking():
    conf = np.array([0.9, 0.8, 0.7, 0.6])
    # perfect: the one error has the lowest confidence -> risks of top-k: 0, 0, 0, 1/4
    labels, probs = probs_from(conf, np.array([True, True, True, False]))
    assert m.aurc(labels, probs) == pytest.approx(1 / 16)
    # reversed: the error has the highest confidence -> 1, 1/2, 1/3, 1/4 -> 25/48
    labels, probs = probs_from(conf, np.array([False, True, True, True]))
    assert m.aurc(labels, probs) == pytest.approx(25 / 48)


def brute_force_aurc(labels, probs):
    """O(N^2): for each sample, the error rate among all samples at least as confident."""
    conf = probs.max(axis=1)
    wrong = probs.argmax(axis=1) != labels
    return float(np.mean([wrong[conf >= c].mean() for c in conf]))


def brute_force_risk_coverage(labels, probs):
    conf = probs.max(axis=1)
    wrong = probs.argmax(axis=1) != labels
    thresholds = sorted(set(conf.tolist()), reverse=True)
    coverage = [np.mean(conf >= t) for t in thresholds]
    risk = [wrong[conf >= t].mean() for t in thresholds]
    return np.array(coverage), np.array(risk)


@pytest.mark.parametrize("seed", range(4))
def test_aurc_and_risk_coverage_against_brute_force(seed):
    labels, probs = random_case(seed, n=300)
    probs = np.round(probs * 32) / 32  # quantise: many tied confidences
    assert m.aurc(labels, probs) == pytest.approx(brute_force_aurc(labels, probs), rel=1e-12)
    coverage, risk = m.risk_coverage(labels, probs)
    expected_coverage, expected_risk = brute_force_risk_coverage(labels, probs)
    np.testing.assert_allclose(coverage, expected_coverage, rtol=1e-12)
    np.testing.assert_allclose(risk, expected_risk, rtol=1e-12)


def test_aurc_without_ties_is_geifman():
    labels, probs = random_case(11, n=200)
    conf = probs.max(axis=1)
    assert len(np.unique(conf)) == len(conf)
    wrong = (probs.argmax(axis=1) != labels)[np.argsort(-conf)]
    geifman = np.mean(np.cumsum(wrong) / np.arange(1, len(wrong) + 1))
    assert m.aurc(labels, probs) == pytest.approx(geifman, rel=1e-12)


@PROPERTY
@given(
    st.lists(
        st.tuples(st.sampled_from([0.3, 0.5, 0.75, 1.0]), st.booleans()), min_size=1, max_size=25
    ),
    st.randoms(use_true_random=False),
)
def test_aurc_property_permutation_invariant_and_brute_force(samples, random):
    conf = np.array([c for c, _ in samples])
    correct = np.array([ok for _, ok in samples])
    labels, probs = probs_from(conf, correct)
    value = m.aurc(labels, probs)
    assert value == pytest.approx(brute_force_aurc(labels, probs), abs=1e-12)
    order = list(range(len(samples)))
    random.shuffle(order)
    assert m.aurc(labels[order], probs[order]) == pytest.approx(value, abs=1e-12)


# --- accuracy-drop AUPRC ----------------------------------------------------------------


def reference_window_labels(correct, conf, n_clean, window):
    """Window labels and scores built with plain loops; the threshold in exact fractions."""
    positions = range(len(correct) - window + 1)
    counts = [int(np.sum(correct[t : t + window])) for t in positions]
    mean_conf = np.array([np.mean(conf[t : t + window]) for t in positions])
    accuracies = [Fraction(k, window) for k in counts]
    clean = accuracies[: n_clean - window + 1]
    mu = sum(clean) / len(clean)
    variance = sum((a - mu) ** 2 for a in clean) / len(clean)  # ddof = 0
    # a <= mu - 3 sigma  <=>  mu - a >= 0 and (mu - a)^2 >= 9 variance
    drop = np.array([mu - a >= 0 and (mu - a) ** 2 >= 9 * variance for a in accuracies])
    return drop, -mean_conf


def shifted_stream(seed, n_clean=600, n_shifted=400, quantum=None):
    rng = np.random.default_rng(seed)
    correct = np.r_[rng.random(n_clean) < 0.9, rng.random(n_shifted) < 0.6]
    conf = np.r_[rng.uniform(0.6, 1.0, n_clean), rng.uniform(0.3, 0.9, n_shifted)]
    if quantum is not None:
        conf = np.round(conf / quantum) * quantum
    return correct, conf


@pytest.mark.parametrize(
    "seed,window,quantum", [(0, 100, None), (1, 50, None), (2, 100, 1 / 256), (3, 30, 1 / 16)]
)
def test_accuracy_drop_auprc_against_sklearn(seed, window, quantum):
    correct, conf = shifted_stream(seed, quantum=quantum)
    drop, score = reference_window_labels(correct, conf, 600, window)
    assert 0 < drop.sum() < len(drop)
    expected = average_precision_score(drop, score)
    assert m.accuracy_drop_auprc(correct, conf, 600, window) == pytest.approx(expected, rel=1e-12)


@PROPERTY
@given(
    st.integers(2, 6).flatmap(
        lambda w: st.tuples(
            st.just(w),
            st.integers(w + 1, w + 12),  # n_clean: at least 2 clean windows
            st.lists(st.tuples(st.booleans(), st.integers(4, 16)), min_size=w + 12, max_size=60),
        )
    )
)
def test_accuracy_drop_auprc_property_against_sklearn(case):
    window, n_clean, samples = case
    correct = np.array([ok for ok, _ in samples])
    conf = np.array([q / 16 for _, q in samples])  # fixed-point grid: many tied windows
    drop, score = reference_window_labels(correct, conf, n_clean, window)
    value = m.accuracy_drop_auprc(correct, conf, n_clean, window)
    if not drop.any():
        assert math.isnan(value)
    else:
        assert value == pytest.approx(average_precision_score(drop, score), rel=1e-12)


def test_accuracy_drop_auprc_by_hand():
    # window 2, n_clean 4 -> clean windows t = 0, 1, 2.
    correct = np.array([1, 1, 1, 0, 0, 1, 0], dtype=bool)
    # Dyadic confidences, so window sums are exact and the tie below is a real tie.
    conf = np.array([0.875, 0.875, 0.875, 0.5, 0.625, 0.875, 0.5])
    # windows t=0..5: a = 1, 1, 1/2, 0, 1/2, 1/2; c = .875, .875, .6875, .5625, .75, .6875
    # clean a = 1, 1, 1/2: mu = 5/6, var = (1/36 + 1/36 + 1/9) / 3 = 1/18, sigma = 0.2357
    # mu - 3 sigma = 0.1262 -> only t=3 (a = 0) is a drop.
    # score -c: t=3 (-0.5625) ranks first, a positive -> P = 1 at R = 1 -> AP = 1
    assert m.accuracy_drop_auprc(correct, conf, n_clean=4, window=2) == pytest.approx(1.0)
    # Give the drop window the same mean confidence as t=2 and t=5 (0.6875): the top group
    # is then {2, 3, 5} with one positive -> P = 1/3 at R = 1 -> AP = 1/3.
    conf_tied = np.array([0.875, 0.875, 0.875, 0.5, 0.875, 0.875, 0.5])
    # windows c = .875, .875, .6875, .6875, .875, .6875
    assert m.accuracy_drop_auprc(correct, conf_tied, n_clean=4, window=2) == pytest.approx(1 / 3)


def test_accuracy_drop_boundary_is_exact():
    # window 1, 10 clean windows: nine correct, one wrong -> counts 1 x9, 0 x1.
    # mu = 0.9, sigma = sqrt(0.9 - 0.81) = 0.3, mu - 3 sigma = 0 exactly: a wrong sample
    # (a_t = 0) sits on the boundary and is a drop (<=). In floats np.std gives
    # 0.30000000000000004 and mu - 3 sigma = -1.1e-16, which would miss both drops.
    correct = np.array([True] * 9 + [False] + [True, False, True])
    conf = np.array([0.9] * 9 + [0.8] + [0.9, 0.2, 0.9])
    # drops: t = 9 (conf 0.8) and t = 11 (conf 0.2); ranking by -conf: 0.2 (pos), 0.8 (pos)
    # first -> AP = 1
    assert m.accuracy_drop_auprc(correct, conf, n_clean=10, window=1) == pytest.approx(1.0)


def test_accuracy_drop_constant_clean_accuracy_marks_clean_windows():
    # sigma = 0: every window with a_t <= mu is a drop, including the clean ones.
    # Pattern T, F, F with window 3: every window holds exactly one correct sample, a = 1/3.
    # (In floats, np.std of ten copies of 1/3 is 5.6e-17, not 0, and the label flips.)
    correct = np.array([True, False, False] * 6)
    conf = np.linspace(1.0, 0.5, 18)
    # n_clean 12 -> 10 clean windows; all 16 windows are drops -> precision 1 -> AP = 1
    assert m.accuracy_drop_auprc(correct, conf, n_clean=12, window=3) == pytest.approx(1.0)
    # Make the last sample correct: only window 15 (samples 15, 16, 17 = T, F, T) rises to
    # a = 2/3, a negative. conf decreases, so it has the lowest mean conf and ranks first;
    # then windows 14..0, all positive: P at the k-th positive = k/(k+1), R steps of 1/15.
    correct[-1] = True
    expected = np.mean([k / (k + 1) for k in range(1, 16)])
    assert m.accuracy_drop_auprc(correct, conf, n_clean=12, window=3) == pytest.approx(expected)


def test_accuracy_drop_no_positive_is_nan():
    correct = np.ones(20, dtype=bool)
    correct[3] = False  # only in the clean part: shifted windows are at least as accurate
    conf = np.full(20, 0.8)
    # clean windows (w=4, n_clean=10): a = 3/4 for t=0..3, 1 for t=4..6 -> mu - 3 sigma < 3/4
    assert math.isnan(m.accuracy_drop_auprc(correct, conf, n_clean=10, window=4))


@pytest.mark.parametrize(
    "n_clean,window,enough",
    [(100, 100, False), (101, 100, True), (5, 10, False)],  # 1, 2 and no clean windows
)
def test_accuracy_drop_needs_two_clean_windows(n_clean, window, enough):
    correct, conf = shifted_stream(0)
    if enough:
        assert 0.0 <= m.accuracy_drop_auprc(correct, conf, n_clean, window) <= 1.0
    else:
        with pytest.raises(ValueError, match="2 windows"):
            m.accuracy_drop_auprc(correct, conf, n_clean, window)


def test_accuracy_drop_bad_inputs():
    correct, conf = shifted_stream(0)
    with pytest.raises(ValueError, match="samples"):
        m.accuracy_drop_auprc(correct, conf[:-1], 600, 100)
    with pytest.raises(ValueError, match="window"):
        m.accuracy_drop_auprc(correct, conf, 600, 0)
    with pytest.raises(ValueError, match="window"):
        m.accuracy_drop_auprc(correct, conf, 600, len(conf) + 1)
    with pytest.raises(ValueError, match="n_clean"):
        m.accuracy_drop_auprc(correct, conf, len(conf) + 1, 100)
    with pytest.raises(ValueError, match="boolean"):
        m.accuracy_drop_auprc(np.full(len(conf), 0.5), conf, 600, 100)
    with pytest.raises(ValueError, match="empty"):
        m.accuracy_drop_auprc(np.array([], dtype=bool), np.array([]), 0, 1)


# --- summarize --------------------------------------------------------------------------


def test_summarize_matches_the_functions():
    labels, probs = random_case(5)
    report = m.summarize(labels, probs, num_classes=10, bins=10)
    predicted = m.predictions(probs)
    assert report == m.UncertaintyReport(
        accuracy=m.accuracy(labels, predicted),
        weighted_f1=m.weighted_f1(labels, predicted, 10),
        nll=m.nll(labels, probs),
        brier=m.brier(labels, probs),
        ece=m.ece(labels, probs, bins=10),
        failure_auroc=m.failure_auroc(labels, probs),
        aurc=m.aurc(labels, probs),
        n=500,
    )
    with pytest.raises(dataclasses.FrozenInstanceError):
        report.n = 3  # type: ignore[misc]
    with pytest.raises(ValueError, match="num_classes"):
        m.summarize(labels, probs, num_classes=9)


# --- error cases ------------------------------------------------------------------------

LABELLED = [m.nll, m.brier, m.ece, m.failure_auroc, m.risk_coverage, m.aurc]


@pytest.mark.parametrize("function", LABELLED, ids=lambda f: f.__name__)
def test_labelled_functions_reject_bad_inputs(function):
    probs = np.array([[0.7, 0.3], [0.4, 0.6]])
    with pytest.raises(ValueError, match="2-D"):
        function(np.array([0, 1]), probs[0])
    with pytest.raises(ValueError, match="1-D"):
        function(np.array([[0, 1]]), probs)
    with pytest.raises(ValueError, match="samples"):
        function(np.array([0, 1, 1]), probs)
    with pytest.raises(ValueError, match="empty"):
        function(np.array([], dtype=int), np.empty((0, 2)))
    with pytest.raises(ValueError, match=r"labels must lie in \[0, 2\)"):
        function(np.array([0, 2]), probs)
    with pytest.raises(ValueError, match=r"labels must lie"):
        function(np.array([-1, 0]), probs)
    with pytest.raises(ValueError, match="integers"):
        function(np.array([0.0, 1.0]), probs)
    with pytest.raises(ValueError, match="NaN"):
        function(np.array([0, 1]), np.array([[np.nan, 0.3], [0.4, 0.6]]))
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        function(np.array([0, 1]), np.array([[1.5, -0.5], [0.4, 0.6]]))


def test_prob_functions_reject_bad_shapes():
    for function in (m.confidence, m.predictions):
        with pytest.raises(ValueError, match="2-D"):
            function(np.array([0.5, 0.5]))
        with pytest.raises(ValueError, match="empty"):
            function(np.empty((0, 10)))


def test_point_metrics_reject_bad_inputs():
    with pytest.raises(ValueError, match="shape"):
        m.accuracy(np.array([0, 1]), np.array([0]))
    with pytest.raises(ValueError, match="empty"):
        m.accuracy(np.array([], dtype=int), np.array([], dtype=int))
    with pytest.raises(ValueError, match=r"predicted must lie in \[0, 3\)"):
        m.weighted_f1(np.array([0, 1]), np.array([0, 3]), num_classes=3)
    with pytest.raises(ValueError, match=r"labels must lie in \[0, 3\)"):
        m.weighted_f1(np.array([0, 5]), np.array([0, 1]), num_classes=3)
    with pytest.raises(ValueError, match="empty"):
        m.weighted_f1(np.array([], dtype=int), np.array([], dtype=int), num_classes=3)
    with pytest.raises(ValueError, match="eps"):
        m.nll(np.array([0]), np.array([[1.0, 0.0]]), eps=0.0)
    with pytest.raises(ValueError, match="1-D"):
        m.auroc(np.array([[0.1]]), np.array([0.2]))


def test_probabilities_are_not_renormalised():
    # Rows summing to 0.5: a silent renormalisation would double every probability.
    labels = np.array([0])
    probs = np.array([[0.25, 0.25]])
    assert m.nll(labels, probs) == pytest.approx(math.log(4))
    # (0.25 - 1)^2 + 0.25^2 = 0.625, / (N * L = 2)
    assert m.brier(labels, probs) == pytest.approx(0.3125)
