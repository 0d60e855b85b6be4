"""Tests of hil.stats.regression: hand-computed McNemar cases, an independent exact p-value,
bootstrap behaviour on constant (emulated) and noisy (physical) measurements, messages."""

from __future__ import annotations

import dataclasses
import json
import math
from fractions import Fraction

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hil.stats import metrics
from hil.stats.regression import (
    RegressionPolicy,
    RuleResult,
    accuracy_rule,
    numerics_rule,
    relative_change_rule,
    tolerance_rule,
    uncertainty_rules,
)

POLICY = RegressionPolicy()


def paired_correct(b: int, c: int, both_right: int = 0, both_wrong: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Baseline/current correctness with exactly b and c discordant samples, shuffled."""
    base = np.array([True] * b + [False] * c + [True] * both_right + [False] * both_wrong)
    cur = np.array([False] * b + [True] * c + [True] * both_right + [False] * both_wrong)
    order = np.random.default_rng(b * 1000 + c).permutation(base.size)
    return base[order], cur[order]


def exact_p(b: int, c: int) -> float:
    """Two-sided exact McNemar p-value from binomial coefficients, independently of scipy."""
    n, k = b + c, min(b, c)
    if n == 0:
        return 1.0
    tail = Fraction(sum(math.comb(n, i) for i in range(k + 1)), 2**n)
    return float(min(Fraction(1), 2 * tail))


def assert_one_line(result: RuleResult, *numbers: str) -> None:
    assert "\n" not in result.message and result.message.startswith(f"{result.rule}: ")
    for number in numbers:
        assert number in result.message, (number, result.message)


# --- numerics ---------------------------------------------------------------------------


def test_numerics_fails_on_any_difference():
    assert numerics_rule(0, 500).status == "pass"
    failed = numerics_rule(1, 500)
    assert failed.status == "fail" and failed.figures == {"differing": 1, "samples": 500}
    assert_one_line(failed, "1 of 500")
    assert numerics_rule(0, 0).status == "skip"
    with pytest.raises(ValueError):
        numerics_rule(501, 500)


# --- accuracy: McNemar ------------------------------------------------------------------


def test_mcnemar_ten_to_zero_is_exact():
    result = accuracy_rule(*paired_correct(10, 0, both_right=90), POLICY)
    assert result.figures["b"] == 10 and result.figures["c"] == 0
    assert result.figures["p_value"] == 2 * 0.5**10 == 0.001953125
    assert result.figures["delta"] == pytest.approx(-0.10)
    assert result.status == "fail"
    assert_one_line(result, "b=10", "c=0", "p=0.00195", "1.0000 -> 0.9000")


def test_mcnemar_balanced_discordance_has_p_one():
    result = accuracy_rule(*paired_correct(7, 7, both_right=50, both_wrong=3), POLICY)
    assert result.figures["p_value"] == 1.0
    assert result.figures["delta"] == 0.0
    assert result.status == "pass"


def test_mcnemar_no_discordance_passes_with_p_one():
    base = np.array([True, False, True, True])
    result = accuracy_rule(base, base.copy(), POLICY)
    assert (result.figures["b"], result.figures["c"], result.figures["p_value"]) == (0, 0, 1.0)
    assert result.status == "pass"


@pytest.mark.parametrize("b, c", [(1, 0), (5, 1), (12, 3), (20, 9), (3, 17), (40, 41), (100, 70)])
def test_mcnemar_p_value_matches_binomial_coefficients(b, c):
    result = accuracy_rule(*paired_correct(b, c, both_right=200), POLICY)
    assert result.figures["p_value"] == pytest.approx(exact_p(b, c), rel=1e-10)


@settings(max_examples=60, deadline=None)
@given(st.integers(0, 80), st.integers(0, 80))
def test_mcnemar_p_value_property(b, c):
    result = accuracy_rule(*paired_correct(b, c, both_right=5), POLICY)
    assert result.figures["p_value"] == pytest.approx(exact_p(b, c), rel=1e-10)
    assert result.figures["p_value"] == accuracy_rule(*paired_correct(c, b, both_right=5), POLICY).figures["p_value"]


def test_significant_but_small_drop_passes():
    # 20 vs 0 discordant in 10000 samples: p ~ 2e-6, but only a 0.2-point drop.
    base, cur = paired_correct(20, 0, both_right=9980)
    result = accuracy_rule(base, cur, POLICY)
    assert result.figures["p_value"] < 1e-5
    assert result.status == "pass"
    assert accuracy_rule(base, cur, dataclasses.replace(POLICY, min_accuracy_drop=0.001)).status == "fail"


def test_drop_of_exactly_the_minimum_fails():
    # (10 - 0) / 1000 == 0.01 exactly, and p = 0.00195 < 0.05.
    assert accuracy_rule(*paired_correct(10, 0, both_right=990), POLICY).status == "fail"
    assert accuracy_rule(*paired_correct(9, 0, both_right=991), POLICY).status == "pass"


def test_improvement_never_fails():
    result = accuracy_rule(*paired_correct(0, 40, both_right=60), POLICY)
    assert result.figures["p_value"] < 1e-10
    assert result.figures["delta"] == pytest.approx(0.40)
    assert result.status == "pass"


def test_accuracy_needs_the_same_samples():
    with pytest.raises(ValueError, match="same samples"):
        accuracy_rule(np.ones(10, bool), np.ones(9, bool), POLICY)
    with pytest.raises(ValueError):
        accuracy_rule(np.full(3, 0.5), np.ones(3, bool), POLICY)


def flipped_test_set(wrong: int, n: int = 400) -> tuple[np.ndarray, np.ndarray]:
    """A perfect baseline, and a current run whose answers are wrong on `wrong` samples."""
    rng = np.random.default_rng(wrong)
    labels = rng.integers(0, 10, n)
    baseline, current = labels.copy(), labels.copy()
    flipped = rng.choice(n, size=wrong, replace=False)
    current[flipped] = (labels[flipped] + 1 + rng.integers(0, 9, wrong)) % 10
    return baseline == labels, current == labels


def test_thirty_flipped_answers_fail():
    result = accuracy_rule(*flipped_test_set(30), POLICY)
    assert (result.figures["b"], result.figures["c"]) == (30, 0)
    assert result.figures["current"] == pytest.approx(370 / 400)
    assert result.status == "fail"
    assert_one_line(result, "b=30", "c=0", "0.9250", "400 samples")


def test_one_flipped_answer_is_not_significant():
    result = accuracy_rule(*flipped_test_set(1), POLICY)
    assert result.figures["p_value"] == 1.0
    assert result.status == "pass"
    assert "not significant" in result.message


# --- latency and energy: bootstrap ------------------------------------------------------


def latencies(seed: int, n: int = 600) -> np.ndarray:
    """Per-sample latencies as on a physical board: samples differ a lot (early exits)."""
    return np.random.default_rng(seed).lognormal(math.log(2e-3), 0.5, n)


def noisy(base: np.ndarray, factor: float, seed: int) -> np.ndarray:
    return base * factor * (1 + np.random.default_rng(seed).normal(0, 0.02, base.size))


def test_identical_arrays_give_zero_change():
    base = latencies(1)
    result = relative_change_rule("latency", base, base.copy(), POLICY.latency_tolerance, POLICY)
    assert (result.figures["delta"], result.figures["ci_low"], result.figures["ci_high"]) == (0.0, 0.0, 0.0)
    assert result.status == "pass"


@pytest.mark.parametrize("paired", [True, False])
def test_constant_slowdown_is_exact(paired):
    base = np.full(500, 1.234e-3)
    result = relative_change_rule("latency", base, base * 1.1, POLICY.latency_tolerance, POLICY, paired=paired)
    f = result.figures
    assert f["ci_low"] == f["ci_high"] == f["delta"]
    assert f["delta"] == pytest.approx(0.10, abs=1e-12)
    assert result.status == "fail"
    assert_one_line(result, "+10.00%", "CI +10.00% to +10.00%", "tolerance +3.00%")


@settings(max_examples=40, deadline=None)
@given(st.floats(1e-7, 10.0), st.floats(0.5, 2.0), st.integers(1, 300), st.integers(1, 300), st.booleans())
def test_constant_arrays_collapse_the_interval(value, factor, n_base, n_cur, paired):
    n_cur = n_base if paired else n_cur
    policy = dataclasses.replace(POLICY, bootstrap_resamples=200)
    base, cur = np.full(n_base, value), np.full(n_cur, value * factor)
    f = relative_change_rule("latency", base, cur, 0.03, policy, paired=paired).figures
    assert f["ci_low"] == f["ci_high"] == f["delta"] == pytest.approx(factor - 1, abs=1e-12)


@pytest.mark.parametrize("value, n", [(0.1, 7), (0.1, 100), (7e-4, 1000), (1.234e-3, 100)])
def test_constant_arrays_whose_mean_is_not_the_value(value, n):
    # n copies of these values do not sum to exactly n * value: the resample means must be
    # rounded exactly like the point estimate's for the interval to collapse.
    base = np.full(n, value)
    f = relative_change_rule("latency", base, np.full(n, value * 1.05), 0.03, POLICY, paired=False).figures
    assert f["ci_low"] == f["ci_high"] == f["delta"]


def test_slowdown_of_exactly_the_tolerance_passes():
    base = np.full(100, 2.5e-3)  # 1.03 * 2.5e-3 / 2.5e-3 - 1 = 0.03000000000000025 in floats
    assert relative_change_rule("latency", base, base * 1.03, 0.03, POLICY).status == "pass"
    assert relative_change_rule("latency", base, base * 1.031, 0.03, POLICY).status == "fail"


def test_small_true_slowdown_passes():
    base = latencies(2)
    result = relative_change_rule("latency", base, noisy(base, 1.01, 3), POLICY.latency_tolerance, POLICY)
    f = result.figures
    assert f["ci_low"] < 0.01 < f["ci_high"] < 0.03
    assert result.status == "pass"


def test_large_true_slowdown_fails():
    base = latencies(4)
    result = relative_change_rule("energy", base, noisy(base, 1.20, 5), POLICY.energy_tolerance, POLICY)
    f = result.figures
    assert 0.05 < f["ci_low"] < 0.20 < f["ci_high"]
    assert result.status == "fail"


def test_bootstrap_is_reproducible_and_seeded():
    base = latencies(6)
    cur = noisy(base, 1.05, 7)
    first = relative_change_rule("latency", base, cur, 0.03, POLICY)
    assert relative_change_rule("latency", base, cur, 0.03, POLICY) == first
    other = relative_change_rule("latency", base, cur, 0.03, dataclasses.replace(POLICY, seed=7))
    assert other.figures["ci_low"] != first.figures["ci_low"]
    assert other.figures["delta"] == first.figures["delta"]


def test_unpaired_bootstrap():
    base, cur = latencies(8, n=500), latencies(9, n=700) * 1.5
    unpaired = relative_change_rule("latency", base, cur, 0.03, POLICY, paired=False)
    assert unpaired.figures["n_baseline"] == 500 and unpaired.figures["n_current"] == 700
    assert unpaired.figures["ci_low"] < 0.5 < unpaired.figures["ci_high"]
    assert unpaired.status == "fail"
    assert "unpaired" in unpaired.message
    with pytest.raises(ValueError):
        relative_change_rule("latency", base, cur, 0.03, POLICY, paired=True)


def test_pairing_removes_per_sample_spread():
    # The same samples, each 2 % slower: paired is sure of it, unpaired sees sample spread.
    base = latencies(10)
    cur = noisy(base, 1.02, 11)
    paired = relative_change_rule("latency", base, cur, 0.03, POLICY).figures
    unpaired = relative_change_rule("latency", base, cur, 0.03, POLICY, paired=False).figures
    assert paired["ci_high"] - paired["ci_low"] < 0.01
    assert unpaired["ci_high"] - unpaired["ci_low"] > 5 * (paired["ci_high"] - paired["ci_low"])


def test_uncertain_slowdown_passes_even_above_tolerance():
    # A true +6 %: the paired CI proves it; unpaired, the lower bound is below +3 %.
    base = latencies(14)
    cur = noisy(base, 1.06, 15)
    paired = relative_change_rule("latency", base, cur, 0.03, POLICY)
    unpaired = relative_change_rule("latency", base, cur, 0.03, POLICY, paired=False)
    assert paired.figures["delta"] == unpaired.figures["delta"] > 0.03
    assert paired.status == "fail"
    assert unpaired.figures["ci_low"] < 0.03 and unpaired.status == "pass"


@pytest.mark.parametrize("base, cur", [
    ([], []),
    ([np.nan, np.nan], [1e-3, 1e-3]),
    ([1e-3, 2e-3], [None, None]),  # energy_j is None where unmeasurable
])
@pytest.mark.parametrize("paired", [True, False])
def test_unmeasured_is_skipped(base, cur, paired):
    result = relative_change_rule("energy", base, cur, 0.05, POLICY, paired=paired)
    assert result.status == "skip"
    assert_one_line(result, "not measured")


def test_partly_unmeasured_pairs_are_dropped():
    base = np.array([1.0, np.nan, 1.0, 1.0])
    cur = np.array([1.2, 1.2, np.nan, 1.2])
    f = relative_change_rule("energy", base, cur, 0.05, POLICY).figures
    assert f["n_baseline"] == f["n_current"] == 2
    assert f["delta"] == pytest.approx(0.2)


def test_non_positive_values_are_rejected():
    with pytest.raises(ValueError):
        relative_change_rule("latency", np.array([1.0, 0.0]), np.array([1.0, 1.0]), 0.03, POLICY)
    with pytest.raises(ValueError):
        relative_change_rule("latency", np.array([1.0, np.inf]), np.array([1.0, 1.0]), 0.03, POLICY)


# --- uncertainty metrics ----------------------------------------------------------------


@pytest.mark.parametrize("baseline, current, status", [
    (0.05, 0.08, "fail"),
    (0.05, 0.06, "pass"),
    (0.11, 0.13, "pass"),  # exactly the tolerance, though 0.13 - 0.11 > 0.02 in floats
    (0.08, 0.01, "pass"),  # better
])
def test_tolerance_higher_is_worse(baseline, current, status):
    result = tolerance_rule("ece", baseline, current, 0.02)
    assert result.status == status
    assert result.figures["delta"] == pytest.approx(current - baseline)
    assert_one_line(result, f"{baseline:.4f}", f"{current:.4f}")


@pytest.mark.parametrize("baseline, current, status", [
    (0.90, 0.85, "fail"),
    (0.90, 0.89, "pass"),
    (0.90, 0.99, "pass"),  # better
])
def test_tolerance_lower_is_worse(baseline, current, status):
    assert tolerance_rule("auroc", baseline, current, 0.02, higher_is_worse=False).status == status


@pytest.mark.parametrize("baseline, current", [(math.nan, 0.5), (0.5, math.nan), (math.nan, math.nan)])
def test_tolerance_skips_nan(baseline, current):
    result = tolerance_rule("auroc", baseline, current, 0.02, higher_is_worse=False)
    assert result.status == "skip"
    json.dumps(result.figures, allow_nan=False)


def report(seed: int) -> metrics.UncertaintyReport:
    rng = np.random.default_rng(seed)
    probs = rng.dirichlet(np.full(5, 0.7), size=300)
    labels = np.where(rng.random(300) < 0.7, probs.argmax(axis=1), rng.integers(0, 5, 300))
    return metrics.summarize(labels, probs, 5)


def test_uncertainty_rules():
    base = report(1)
    same = uncertainty_rules(base, base, POLICY)
    assert [r.rule for r in same] == ["ece", "nll", "brier", "auroc"]
    assert all(r.status == "pass" for r in same)
    worse = dataclasses.replace(base, ece=base.ece + 0.05, failure_auroc=base.failure_auroc - 0.05)
    assert {r.rule: r.status for r in uncertainty_rules(base, worse, POLICY)} == {
        "ece": "fail", "nll": "pass", "brier": "pass", "auroc": "fail"}
    worse = dataclasses.replace(base, nll=base.nll + 0.06, brier=base.brier + 0.011)
    assert {r.rule: r.status for r in uncertainty_rules(base, worse, POLICY)} == {
        "ece": "pass", "nll": "fail", "brier": "fail", "auroc": "pass"}
    better = dataclasses.replace(base, ece=0.0, nll=0.0, brier=0.0, failure_auroc=1.0)
    assert all(r.status == "pass" for r in uncertainty_rules(base, better, POLICY))
    all_right = dataclasses.replace(base, failure_auroc=math.nan)
    assert uncertainty_rules(base, all_right, POLICY)[3].status == "skip"


# --- figures, policy -----------------------------------------------------------



def test_figures_are_json_and_messages_one_line():
    base = latencies(12)
    results = [
        numerics_rule(3, 100),
        accuracy_rule(*flipped_test_set(30), POLICY),
        relative_change_rule("latency", base, noisy(base, 1.1, 13), 0.03, POLICY),
        relative_change_rule("energy", [None], [None], 0.05, POLICY),
        *uncertainty_rules(report(2), dataclasses.replace(report(2), failure_auroc=math.nan), POLICY),
    ]
    for result in results:
        json.dumps(result.figures, allow_nan=False)
        assert result.status in {"pass", "fail", "skip"}
        assert_one_line(result)


@pytest.mark.parametrize("change", [
    {"alpha": 0.0}, {"alpha": 1.5}, {"confidence": 1.0}, {"bootstrap_resamples": 0},
    {"latency_tolerance": -0.01}, {"ece_tolerance": math.nan}, {"bootstrap_resamples": 2.5},
])
def test_policy_rejects_nonsense(change):
    with pytest.raises((ValueError, TypeError)):
        RegressionPolicy(**change)
