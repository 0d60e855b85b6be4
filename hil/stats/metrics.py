"""Uncertainty metrics for classifiers judged by their predicted probability vectors.

Inputs follow one convention throughout: `labels` is an integer array (N,) with values in
[0, L), `probs` is a float array (N, L) whose rows sum to ~1. Probabilities are used as
given: fixed-point device outputs do not sum to exactly 1, and renormalising them would
hide the very quantisation the lab measures. Bad shapes, empty input and out-of-range
labels raise ValueError. docs/metrics.md states every definition as a formula.
"""

from __future__ import annotations

import math
import operator
from dataclasses import dataclass

import numpy as np
from scipy.stats import rankdata

__all__ = [
    "UncertaintyReport",
    "accuracy",
    "accuracy_drop_auprc",
    "aurc",
    "auroc",
    "brier",
    "confidence",
    "ece",
    "failure_auroc",
    "nll",
    "ood_auroc",
    "predictions",
    "risk_coverage",
    "summarize",
    "weighted_f1",
]


# --- input validation -------------------------------------------------------------------


def _check_probs(probs: np.ndarray) -> np.ndarray:
    """probs as float64 (N, L) with N >= 1, L >= 1, finite values in [0, 1]."""
    p = np.asarray(probs, dtype=np.float64)
    if p.ndim != 2:
        raise ValueError(f"probs must be a 2-D array (N, L), got shape {p.shape}")
    if p.shape[0] == 0:
        raise ValueError("probs is empty: need at least one sample")
    if p.shape[1] == 0:
        raise ValueError(f"probs has no classes: shape {p.shape}")
    if not np.all(np.isfinite(p)):
        raise ValueError("probs contains NaN or infinite values")
    # A value outside [0, 1] is a bug upstream (logits passed as probabilities, a bad
    # dequantisation scale); the binning and the log would silently absorb it.
    if p.min() < 0.0 or p.max() > 1.0:
        raise ValueError(f"probs must lie in [0, 1], got range [{p.min()}, {p.max()}]")
    return p


def _check_int_vector(values: np.ndarray, name: str) -> np.ndarray:
    """values as a non-empty 1-D integer array."""
    v = np.asarray(values)
    if v.ndim != 1:
        raise ValueError(f"{name} must be a 1-D array (N,), got shape {v.shape}")
    if v.shape[0] == 0:
        raise ValueError(f"{name} is empty: need at least one sample")
    if not np.issubdtype(v.dtype, np.integer):
        raise ValueError(f"{name} must hold integers, got dtype {v.dtype}")
    return v


def _check_range(values: np.ndarray, name: str, num_classes: int) -> None:
    """Every value in [0, num_classes)."""
    if values.min() < 0 or values.max() >= num_classes:
        raise ValueError(
            f"{name} must lie in [0, {num_classes}), got range [{values.min()}, {values.max()}]"
        )


def _check_labels(labels: np.ndarray, probs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Validated (labels, probs): same N, labels in [0, L)."""
    p = _check_probs(probs)
    y = _check_int_vector(labels, "labels")
    if y.shape[0] != p.shape[0]:
        raise ValueError(f"labels has {y.shape[0]} samples but probs has {p.shape[0]}")
    _check_range(y, "labels", p.shape[1])
    return y, p


def _check_scores(scores: np.ndarray, name: str) -> np.ndarray:
    """scores as a 1-D finite float64 array (may be empty)."""
    s = np.asarray(scores, dtype=np.float64)
    if s.ndim != 1:
        raise ValueError(f"{name} must be a 1-D array, got shape {s.shape}")
    if not np.all(np.isfinite(s)):
        raise ValueError(f"{name} contains NaN or infinite values")
    return s


# --- predictions and point metrics ------------------------------------------------------


def confidence(probs: np.ndarray) -> np.ndarray:
    """Confidence of each sample: max_j probs[i, j]."""
    return _check_probs(probs).max(axis=1)


def predictions(probs: np.ndarray) -> np.ndarray:
    """Predicted class of each sample: argmax_j probs[i, j], ties to the lowest index."""
    # np.argmax returns the first maximum, which is the lowest tied class index.
    return _check_probs(probs).argmax(axis=1)


def accuracy(labels: np.ndarray, predicted: np.ndarray) -> float:
    """Fraction of samples with predicted[i] == labels[i]."""
    y = _check_int_vector(labels, "labels")
    yhat = _check_int_vector(predicted, "predicted")
    if y.shape != yhat.shape:
        raise ValueError(f"labels has shape {y.shape} but predicted has shape {yhat.shape}")
    return float(np.mean(y == yhat))


def weighted_f1(labels: np.ndarray, predicted: np.ndarray, num_classes: int) -> float:
    """Support-weighted mean of per-class F1: sum_c (n_c / N) * F1_c.

    F1_c = 2 TP_c / (2 TP_c + FP_c + FN_c), the harmonic mean of precision and recall, taken
    as 0 when TP_c = 0 (so a class never predicted, or with precision + recall = 0, scores
    0). n_c is the number of samples whose label is c; classes with n_c = 0 weigh 0. Equal
    to sklearn's f1_score(average="weighted").
    """
    num_classes = operator.index(num_classes)
    if num_classes < 1:
        raise ValueError(f"num_classes must be >= 1, got {num_classes}")
    y = _check_int_vector(labels, "labels")
    yhat = _check_int_vector(predicted, "predicted")
    if y.shape != yhat.shape:
        raise ValueError(f"labels has shape {y.shape} but predicted has shape {yhat.shape}")
    _check_range(y, "labels", num_classes)
    _check_range(yhat, "predicted", num_classes)

    support = np.bincount(y, minlength=num_classes)  # TP + FN
    predicted_count = np.bincount(yhat, minlength=num_classes)  # TP + FP
    true_positive = np.bincount(y[y == yhat], minlength=num_classes)
    denominator = support + predicted_count  # = 2 TP + FP + FN
    # denominator is 0 only for a class absent from both arrays, whose weight is 0 anyway.
    f1 = np.divide(
        2.0 * true_positive, denominator, out=np.zeros(num_classes), where=denominator > 0
    )
    return float(np.sum(support * f1) / y.shape[0])


def nll(labels: np.ndarray, probs: np.ndarray, eps: float = 1e-7) -> float:
    """Mean negative log-likelihood: mean_i -log(max(probs[i, labels[i]], eps)).

    The true-class probability is clipped at eps because device probabilities are
    fixed-point and can be exactly 0, which would make the NLL infinite.
    """
    if not eps > 0.0:
        raise ValueError(f"eps must be > 0, got {eps}")
    y, p = _check_labels(labels, probs)
    p_true = p[np.arange(y.shape[0]), y]
    return float(np.mean(-np.log(np.maximum(p_true, eps))))


def brier(labels: np.ndarray, probs: np.ndarray) -> float:
    """Brier score: sum_i sum_j (probs[i, j] - onehot(labels[i])[j])^2 / (N * L).

    Normalised by N * L, not N: the QUTE paper prints the formula with 1/N, but the numbers
    in its figures fit 1/(N * L). This is sklearn's multiclass brier_score_loss (with
    scale_by_half=False) divided by L.
    """
    y, p = _check_labels(labels, probs)
    onehot = np.zeros_like(p)
    onehot[np.arange(y.shape[0]), y] = 1.0
    return float(np.sum((p - onehot) ** 2) / p.size)


def ece(labels: np.ndarray, probs: np.ndarray, bins: int = 15) -> float:
    """Expected calibration error with M = bins equal-width confidence bins on [0, 1].

    Bin b (0 <= b < M) holds the samples with confidence in (b/M, (b+1)/M]; confidence 0
    goes into bin 0. ECE = sum_b |B_b|/N * |acc(B_b) - conf(B_b)|, where acc is the fraction
    correct and conf the mean confidence in the bin; empty bins contribute 0. The edges are
    the float64 values b/M, so a confidence written as an edge (0.2 with M = 5) is on it.
    """
    bins = operator.index(bins)
    if bins < 1:
        raise ValueError(f"bins must be >= 1, got {bins}")
    y, p = _check_labels(labels, probs)
    conf = p.max(axis=1)
    correct = p.argmax(axis=1) == y

    edges = np.arange(bins + 1) / bins
    # side="left" gives the i with edges[i-1] < conf <= edges[i], i.e. right-closed bins;
    # confidence 0 lands at i = 0 and is moved into the first bin.
    index = np.maximum(np.searchsorted(edges, conf, side="left") - 1, 0)
    correct_sum = np.bincount(index, weights=correct.astype(np.float64), minlength=bins)
    conf_sum = np.bincount(index, weights=conf, minlength=bins)
    # |B_b|/N * |acc_b - conf_b| = |correct_sum_b - conf_sum_b| / N: no division by |B_b|,
    # and empty bins give exactly 0.
    return float(np.sum(np.abs(correct_sum - conf_sum)) / y.shape[0])


# --- ranking metrics --------------------------------------------------------------------


def auroc(scores_positive: np.ndarray, scores_negative: np.ndarray) -> float:
    """P(score of a random positive > score of a random negative), ties counting 1/2.

    Computed as the Mann-Whitney U statistic from average ranks of the pooled scores:
    AUROC = (R_pos - n_pos (n_pos + 1) / 2) / (n_pos * n_neg), R_pos the positives' rank
    sum. nan if either side is empty.
    """
    pos = _check_scores(scores_positive, "scores_positive")
    neg = _check_scores(scores_negative, "scores_negative")
    n_pos, n_neg = pos.shape[0], neg.shape[0]
    if n_pos == 0 or n_neg == 0:
        return math.nan
    # Average ranks give a tied pair half a win, which is exactly the 1/2 tie rule.
    ranks = rankdata(np.concatenate([pos, neg]), method="average")
    u_statistic = ranks[:n_pos].sum() - n_pos * (n_pos + 1) / 2.0
    return float(u_statistic / (n_pos * n_neg))


def failure_auroc(labels: np.ndarray, probs: np.ndarray) -> float:
    """AUROC of confidence with correct predictions positive and wrong ones negative.

    nan if all predictions are correct or all are wrong.
    """
    y, p = _check_labels(labels, probs)
    conf = p.max(axis=1)
    correct = p.argmax(axis=1) == y
    return auroc(conf[correct], conf[~correct])


def ood_auroc(conf_in: np.ndarray, conf_out: np.ndarray) -> float:
    """AUROC of confidence with in-distribution samples positive and OOD ones negative."""
    return auroc(conf_in, conf_out)


def _errors_at_or_above(
    conf: np.ndarray, wrong: np.ndarray, thresholds: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """For each threshold t: (#samples with conf >= t, #wrong among them)."""
    order = np.argsort(conf, kind="stable")
    sorted_conf = conf[order]
    # wrong_suffix[i] = number of wrong samples among sorted positions i..N-1.
    wrong_suffix = np.concatenate([np.cumsum(wrong[order][::-1])[::-1], [0]])
    first = np.searchsorted(sorted_conf, thresholds, side="left")
    return conf.shape[0] - first, wrong_suffix[first]


def risk_coverage(labels: np.ndarray, probs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Risk-coverage curve over the distinct confidence values t, in descending order.

    coverage(t) = |{i: conf_i >= t}| / N, risk(t) = error rate among {i: conf_i >= t}.
    Returns (coverage, risk); the last point has coverage 1 and the overall error rate.
    """
    y, p = _check_labels(labels, probs)
    conf = p.max(axis=1)
    wrong = p.argmax(axis=1) != y
    thresholds = np.unique(conf)[::-1]
    covered, wrong_covered = _errors_at_or_above(conf, wrong, thresholds)
    return covered / y.shape[0], wrong_covered / covered


def aurc(labels: np.ndarray, probs: np.ndarray) -> float:
    """Area under the risk-coverage curve, independent of the order of tied confidences.

    AURC = (1/N) sum_i risk(conf_i), with risk(t) the error rate among samples with
    conf >= t: each sample contributes the risk of its whole tie group. Without ties this
    is Geifman's mean_k risk(top-k samples).
    """
    y, p = _check_labels(labels, probs)
    conf = p.max(axis=1)
    wrong = p.argmax(axis=1) != y
    covered, wrong_covered = _errors_at_or_above(conf, wrong, conf)
    return float(np.mean(wrong_covered / covered))


# --- accuracy-drop detection (QUTE) -----------------------------------------------------


def _check_correct(correct: np.ndarray) -> np.ndarray:
    """correct as a non-empty 1-D bool array (0/1 integers accepted)."""
    c = np.asarray(correct)
    if c.ndim != 1:
        raise ValueError(f"correct must be a 1-D array (N,), got shape {c.shape}")
    if c.shape[0] == 0:
        raise ValueError("correct is empty: need at least one sample")
    if c.dtype != np.bool_:
        if not np.issubdtype(c.dtype, np.integer) or not np.all((c == 0) | (c == 1)):
            raise ValueError(f"correct must be boolean (or 0/1), got dtype {c.dtype}")
        c = c.astype(np.bool_)
    return c


def _window_sums(values: np.ndarray, window: int) -> np.ndarray:
    """Sums of every length-`window` slice values[t:t+window], t = 0..N-window."""
    cumulative = np.concatenate([[0], np.cumsum(values)])
    return cumulative[window:] - cumulative[:-window]


def _drop_threshold(clean_counts: np.ndarray) -> int:
    """Largest correct-count k with k/w <= mu - 3 sigma over the clean windows, exactly.

    With k_t the correct count of window t, n clean windows, K1 = sum k, K2 = sum k^2:
    mu = K1/(n w) and sigma = sqrt(n K2 - K1^2)/(n w), so k/w <= mu - 3 sigma iff
    K1 - n k >= sqrt(9 (n K2 - K1^2)). Evaluated in integers because a constant clean
    accuracy (sigma = 0) puts every clean window exactly on the boundary, where float
    rounding of the mean would decide the label.
    """
    n = int(clean_counts.shape[0])
    k1 = int(clean_counts.sum())
    k2 = int(np.sum(clean_counts.astype(np.int64) ** 2))
    nine_var = 9 * (n * k2 - k1 * k1)
    root = math.isqrt(nine_var)
    ceil_root = root if root * root == nine_var else root + 1
    # K1 - n k >= ceil_root  <=>  k <= floor((K1 - ceil_root) / n)
    return (k1 - ceil_root) // n


def _average_precision(positive: np.ndarray, score: np.ndarray) -> float:
    """sum_n (R_n - R_{n-1}) P_n over the distinct score thresholds, highest first.

    P_n and R_n are precision and recall of "score >= threshold_n"; R_0 = 0. This is the
    formula of sklearn's average_precision_score. nan without positives.
    """
    n_positive = int(positive.sum())
    if n_positive == 0:
        return math.nan
    order = np.argsort(score, kind="stable")[::-1]
    sorted_score = score[order]
    true_positive = np.cumsum(positive[order])
    # The last position of each group of equal scores: a threshold admits a whole group.
    last = np.concatenate([np.flatnonzero(np.diff(sorted_score) != 0), [score.shape[0] - 1]])
    tp = true_positive[last]
    precision = tp / (last + 1)
    recall = tp / n_positive
    return float(np.sum(np.diff(recall, prepend=0.0) * precision))


def accuracy_drop_auprc(
    correct: np.ndarray, conf: np.ndarray, n_clean: int, window: int = 100
) -> float:
    """AUPRC of windowed mean confidence as a detector of accuracy drops (QUTE).

    The stream's first n_clean samples are clean, the rest shifted. For every window
    t = 0..N-window (stride 1) of `window` samples: a_t = windowed accuracy, c_t = windowed
    mean confidence. mu and sigma (ddof=0) are the mean and std of a_t over the windows
    entirely inside the clean part (t + window <= n_clean; at least 2 are needed). Window
    t is a drop (positive) when a_t <= mu - 3 sigma. The score is -c_t (the detector fires
    when c_t falls below a threshold); the result is its average precision,
    sum_n (R_n - R_{n-1}) P_n as in sklearn's average_precision_score, or nan if no window
    is a drop.
    """
    ok = _check_correct(correct)
    c = _check_scores(conf, "conf")
    n = ok.shape[0]
    if c.shape[0] != n:
        raise ValueError(f"correct has {n} samples but conf has {c.shape[0]}")
    window = operator.index(window)
    n_clean = operator.index(n_clean)
    if not 1 <= window <= n:
        raise ValueError(f"window must be in [1, {n}], got {window}")
    if not 0 <= n_clean <= n:
        raise ValueError(f"n_clean must be in [0, {n}], got {n_clean}")
    n_clean_windows = n_clean - window + 1
    if n_clean_windows < 2:
        raise ValueError(
            f"need at least 2 windows inside the clean part, got {max(n_clean_windows, 0)} "
            f"(n_clean={n_clean}, window={window})"
        )

    # Work with window sums, not means: counts of correct samples are exact integers, and
    # -sum ranks the windows exactly as -mean does without a division that could merge two
    # close sums. For fixed-point confidences (multiples of 2^-8) the cumulative sums are
    # exact too, so windows with equal means stay tied.
    correct_counts = _window_sums(ok.astype(np.int64), window)
    conf_sums = _window_sums(c, window)
    drop = correct_counts <= _drop_threshold(correct_counts[:n_clean_windows])
    return _average_precision(drop, -conf_sums)


# --- summary ----------------------------------------------------------------------------


@dataclass(frozen=True)
class UncertaintyReport:
    """The headline metrics of one evaluation (see the functions of the same names)."""

    accuracy: float
    weighted_f1: float
    nll: float
    brier: float
    ece: float
    failure_auroc: float
    aurc: float
    n: int


def summarize(
    labels: np.ndarray, probs: np.ndarray, num_classes: int, bins: int = 15
) -> UncertaintyReport:
    """All headline metrics of (labels, probs); num_classes must equal probs' L."""
    y, p = _check_labels(labels, probs)
    if p.shape[1] != num_classes:
        raise ValueError(f"probs has {p.shape[1]} classes but num_classes is {num_classes}")
    predicted = p.argmax(axis=1)
    return UncertaintyReport(
        accuracy=accuracy(y, predicted),
        weighted_f1=weighted_f1(y, predicted, num_classes),
        nll=nll(y, p),
        brier=brier(y, p),
        ece=ece(y, p, bins=bins),
        failure_auroc=failure_auroc(y, p),
        aurc=aurc(y, p),
        n=int(y.shape[0]),
    )
