"""Regression rules: is a nightly run worse than its baseline run?

Each rule compares one aspect of two runs and returns a RuleResult: pass, fail or skip
(nothing to compare, and the message says why), the figures behind the decision and a one-line
message. Where the two runs cannot be compared at all, every rule fails (`not_comparable`): a
comparison that is not made must never read as a pass. Otherwise a rule fails only on evidence
of a real, large enough change: accuracy needs a significant McNemar test
AND a drop of at least min_accuracy_drop; latency and energy need the whole bootstrap
confidence interval above the tolerance. Pure functions; the bootstrap is seeded, so the
same two runs always get the same verdict.
"""

from __future__ import annotations

import math
import operator
from dataclasses import dataclass
from enum import StrEnum

import numpy as np
from scipy.stats import binomtest

from hil.stats.metrics import UncertaintyReport

__all__ = ["RegressionPolicy", "RuleResult", "RuleStatus", "accuracy_rule", "not_comparable", "numerics_rule",
           "relative_change_rule", "skipped", "tolerance_rule", "uncertainty_rules"]

# Slack on "exceeds the tolerance": 0.13 - 0.11 is 0.020000000000000004 in floats, and a
# change of exactly the tolerance is allowed. Far below any metric's real resolution.
_SLACK = 1e-12
# Bootstrap resamples are drawn in blocks of about this many values to bound memory.
_BLOCK = 1 << 20


@dataclass(frozen=True)
class RegressionPolicy:
    """Thresholds of the rules (labs.yaml `regression:`); tolerances are absolute for the
    uncertainty metrics and relative (0.03 = 3 %) for latency and energy."""

    alpha: float = 0.05  # McNemar significance
    min_accuracy_drop: float = 0.01  # an accuracy drop smaller than this never fails
    latency_tolerance: float = 0.03
    energy_tolerance: float = 0.05
    confidence: float = 0.95  # bootstrap CI level
    bootstrap_resamples: int = 2000
    ece_tolerance: float = 0.02
    nll_tolerance: float = 0.05
    brier_tolerance: float = 0.01
    auroc_tolerance: float = 0.02  # absolute decrease allowed
    seed: int = 2026

    def __post_init__(self) -> None:
        for name in ("alpha", "confidence"):
            if not 0.0 < getattr(self, name) < 1.0:
                raise ValueError(f"{name} must be in (0, 1), got {getattr(self, name)}")
        for name in ("min_accuracy_drop", "latency_tolerance", "energy_tolerance", "ece_tolerance",
                     "nll_tolerance", "brier_tolerance", "auroc_tolerance"):
            if not getattr(self, name) >= 0.0:  # also rejects NaN
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        if operator.index(self.bootstrap_resamples) < 1:
            raise ValueError(f"bootstrap_resamples must be >= 1, got {self.bootstrap_resamples}")
        operator.index(self.seed)


class RuleStatus(StrEnum):
    PASS = "pass"
    FAIL = "fail"
    SKIP = "skip"  # nothing to compare; the message says why


@dataclass(frozen=True)
class RuleResult:
    rule: str  # numerics | accuracy | latency | energy | ece | nll | brier | auroc
    status: RuleStatus
    figures: dict  # JSON-serialisable numbers behind the status (NaN stored as None)
    message: str  # one line, naming the numbers

    @property
    def repeats_reconciliation(self) -> bool:
        """numerics is the run's own reconciliation, which the verdict and junit.xml already report."""
        return self.rule == "numerics"


def _result(rule: str, status: RuleStatus, message: str, **figures: float | bool | None) -> RuleResult:
    # Plain Python numbers, and None for NaN, so json.dumps(allow_nan=False) accepts them.
    clean = {k: None if isinstance(v, float) and math.isnan(v) else v for k, v in figures.items()}
    return RuleResult(rule, status, clean, f"{rule}: {message}")


def skipped(rule: str, why: str) -> RuleResult:
    """A rule with nothing to judge here, for a reason that leaves the comparison sound (an OOD set has no
    accuracy; a board without a unit has no energy)."""
    return _result(rule, RuleStatus.SKIP, f"skipped: {why}")


def not_comparable(rule: str, why: str) -> RuleResult:
    """A rule that cannot be evaluated because the two runs do not compare (no sample in common, a test set
    or model the baseline lacks): it fails, so that no one reads the missing comparison as a pass."""
    return _result(rule, RuleStatus.FAIL, f"cannot compare: {why}")


def numerics_rule(differing_samples: int, samples: int, conformance: str | None = None) -> RuleResult:
    """Fail if any device answer differs from the host reference: the lab's exactness check. `conformance`: the
    line naming the board's first kernel conformance vector that differs (hil/run/conformance.py), which fails
    the rule even when every answer agrees."""
    differing, total = operator.index(differing_samples), operator.index(samples)
    if not 0 <= differing <= total:
        raise ValueError(f"need 0 <= differing_samples <= samples, got {differing} of {total}")
    if conformance is not None:
        return _result("numerics", RuleStatus.FAIL, f"{differing} of {total} device answers differ from the host "
                       f"reference, and its kernels differ on a conformance vector: {conformance}",
                       differing=differing, samples=total)
    if total == 0:
        return _result("numerics", RuleStatus.SKIP, "skipped: no samples answered to compare", differing=0, samples=0)
    status = RuleStatus.FAIL if differing else RuleStatus.PASS
    return _result("numerics", status, f"{differing} of {total} device answers differ from the host reference",
                   differing=differing, samples=total)


def _as_bool(values: np.ndarray, name: str) -> np.ndarray:
    v = np.asarray(values)
    if v.ndim != 1:
        raise ValueError(f"{name} must be a 1-D array, got shape {v.shape}")
    if v.dtype != np.bool_ and not (np.issubdtype(v.dtype, np.integer) and np.all((v == 0) | (v == 1))):
        raise ValueError(f"{name} must be boolean (or 0/1), got dtype {v.dtype}")
    return v.astype(np.bool_)


def accuracy_rule(baseline_correct: np.ndarray, current_correct: np.ndarray, policy: RegressionPolicy) -> RuleResult:
    """Exact McNemar test on the same samples, in the same order, answered by both runs.

    b = right in the baseline and wrong now, c = wrong in the baseline and right now; only
    these discordant samples carry information. p = two-sided exact binomial test of
    min(b, c) in b + c trials at 1/2 (1 when b + c = 0). Fails only when p < alpha AND the
    accuracy drop (b - c) / n is at least min_accuracy_drop: with thousands of samples a
    tiny drop becomes significant, and an improvement (c > b) never fails.
    """
    base, cur = _as_bool(baseline_correct, "baseline_correct"), _as_bool(current_correct, "current_correct")
    if base.shape != cur.shape:
        raise ValueError(f"baseline has {base.shape[0]} samples but current has {cur.shape[0]}: "
                         "McNemar needs the same samples in the same order")
    n = int(base.shape[0])
    if n == 0:
        return _result("accuracy", RuleStatus.SKIP, "skipped: no samples to compare", n=0)
    b, c = int(np.sum(base & ~cur)), int(np.sum(~base & cur))
    p_value = 1.0 if b + c == 0 else float(binomtest(min(b, c), b + c, 0.5).pvalue)
    # One division of integers, so a drop of exactly min_accuracy_drop (4/400 vs 0.01)
    # compares equal; the difference of the two rounded accuracies might not.
    drop = (b - c) / n
    baseline_acc, current_acc = int(base.sum()) / n, int(cur.sum()) / n
    if p_value >= policy.alpha:
        status, why = RuleStatus.PASS, f"not significant at {policy.alpha:g}"
    elif drop < policy.min_accuracy_drop:
        status, why = RuleStatus.PASS, f"significant, but not a drop of >= {policy.min_accuracy_drop:g}"
    else:
        status, why = RuleStatus.FAIL, f"p < {policy.alpha:g} and drop >= {policy.min_accuracy_drop:g}"
    return _result(
        "accuracy", status,
        f"{baseline_acc:.4f} -> {current_acc:.4f} ({-drop:+.4f}) on {n} samples, "
        f"McNemar b={b} c={c} p={p_value:.3g}: {why}",
        n=n, b=b, c=c, p_value=p_value, baseline=baseline_acc, current=current_acc, delta=-drop,
        alpha=policy.alpha, min_drop=policy.min_accuracy_drop)


def _measured(values: np.ndarray, name: str) -> np.ndarray:
    # dtype=float turns the None of an unmeasured energy into NaN.
    v = np.asarray(values, dtype=np.float64)
    if v.ndim != 1:
        raise ValueError(f"{name} must be a 1-D array, got shape {v.shape}")
    return v


def _row_means(x: np.ndarray, index: np.ndarray) -> np.ndarray:
    return x[index].mean(axis=1)


def relative_change_rule(rule: str, baseline: np.ndarray, current: np.ndarray, tolerance: float,
                         policy: RegressionPolicy, paired: bool = True) -> RuleResult:
    """Relative change of the mean, current_mean / baseline_mean - 1, with a percentile
    bootstrap CI at policy.confidence, seeded with policy.seed.

    paired: the same samples in the same order; resampling draws sample indices jointly,
    so per-sample difficulty cancels out. Unpaired: each side is resampled on its own.
    Fails when the CI's lower bound exceeds +tolerance: a slowdown that is both certain and
    larger than allowed. NaN values (unmeasured) are dropped, a pair if either side is NaN;
    nothing left on a side means skip. Values must otherwise be finite and positive.

    Emulated boards are deterministic, so every sample has the same latency: every
    resample of a constant array is that same array, and its mean is computed by the same
    code as the point estimate's, so the CI collapses exactly onto the point estimate and
    emulated comparisons are exact, with no NaN and no bootstrap noise.
    """
    base, cur = _measured(baseline, "baseline"), _measured(current, "current")
    if paired:
        if base.shape != cur.shape:
            raise ValueError(f"paired: baseline has {base.shape[0]} samples but current has {cur.shape[0]}")
        keep = ~(np.isnan(base) | np.isnan(cur))
        base, cur = base[keep], cur[keep]
    else:
        base, cur = base[~np.isnan(base)], cur[~np.isnan(cur)]
    if base.size == 0 or cur.size == 0:
        return _result(rule, RuleStatus.SKIP, "skipped: not measured in both runs (a board without a unit, or "
                       "answers left unmeasured)", n_baseline=int(base.size),
                       n_current=int(cur.size))
    for name, v in (("baseline", base), ("current", cur)):
        if not np.all(np.isfinite(v) & (v > 0)):
            raise ValueError(f"{rule}: {name} values must be finite and positive")

    # The point estimate goes through _row_means too (as the identity resample), see above.
    base_mean = float(_row_means(base, np.arange(base.size)[None])[0])
    cur_mean = float(_row_means(cur, np.arange(cur.size)[None])[0])
    change = cur_mean / base_mean - 1
    rng = np.random.default_rng(policy.seed)
    resamples = policy.bootstrap_resamples
    block = max(1, _BLOCK // max(base.size, cur.size))
    changes = []
    for start in range(0, resamples, block):
        rows = min(block, resamples - start)
        b_index = rng.integers(0, base.size, size=(rows, base.size))
        c_index = b_index if paired else rng.integers(0, cur.size, size=(rows, cur.size))
        changes.append(_row_means(cur, c_index) / _row_means(base, b_index) - 1)
    tail = (1.0 - policy.confidence) / 2.0
    ci_low, ci_high = (float(q) for q in np.quantile(np.concatenate(changes), [tail, 1.0 - tail]))

    status = RuleStatus.FAIL if ci_low > tolerance + _SLACK else RuleStatus.PASS
    return _result(
        rule, status,
        f"mean {base_mean:.4g} -> {cur_mean:.4g} ({change:+.2%}, "
        f"{policy.confidence * 100:g}% CI {ci_low:+.2%} to {ci_high:+.2%}), tolerance +{tolerance:.2%}"
        f"{'' if paired else ', unpaired'}",
        baseline=base_mean, current=cur_mean, delta=change, ci_low=ci_low, ci_high=ci_high,
        tolerance=tolerance, n_baseline=int(base.size), n_current=int(cur.size), paired=paired)


def tolerance_rule(rule: str, baseline: float, current: float, tolerance: float,
                   higher_is_worse: bool = True) -> RuleResult:
    """Fail when the metric gets worse by more than tolerance (absolute); skip on NaN
    (e.g. a failure AUROC when every prediction was right)."""
    baseline, current = float(baseline), float(current)
    direction = "increase" if higher_is_worse else "decrease"
    if math.isnan(baseline) or math.isnan(current):
        return _result(rule, RuleStatus.SKIP, f"skipped: no value in one of the runs ({baseline:.4g} -> "
                       f"{current:.4g}; a failure AUROC needs both right and wrong answers)",
                       baseline=baseline, current=current, tolerance=tolerance)
    delta = current - baseline
    worse_by = delta if higher_is_worse else -delta
    status = RuleStatus.FAIL if worse_by > tolerance + _SLACK else RuleStatus.PASS
    return _result(rule, status, f"{baseline:.4f} -> {current:.4f} ({delta:+.4f}), {direction} allowed {tolerance:g}",
                   baseline=baseline, current=current, delta=delta, tolerance=tolerance)


def uncertainty_rules(baseline_report: UncertaintyReport, current_report: UncertaintyReport,
                      policy: RegressionPolicy) -> list[RuleResult]:
    """ECE, NLL and Brier may not rise, the failure-detection AUROC may not fall, by more
    than their tolerances."""
    return [
        tolerance_rule("ece", baseline_report.ece, current_report.ece, policy.ece_tolerance),
        tolerance_rule("nll", baseline_report.nll, current_report.nll, policy.nll_tolerance),
        tolerance_rule("brier", baseline_report.brier, current_report.brier, policy.brier_tolerance),
        tolerance_rule("auroc", baseline_report.failure_auroc, current_report.failure_auroc,
                       policy.auroc_tolerance, higher_is_worse=False),
    ]
