"""The QUTE decisions as integer arithmetic on int8 outputs: the executable spec.

The firmware implements exactly this, in C; docs/decisions.md states it for implementers.
Everything here is integer arithmetic on int8 logits and per-output lookup tables, so the
host and the device must agree bit for bit. Summary:

- Softmax of one output with L int8 logits x, using that output's table LUT
  (LUT[d] = round(2^16 * exp(-scale * d)), d = 0..255, stored in model.json):
      m = max(x);  e_i = LUT[m - x_i];  S = sum(e_i);  p_i = floor(e_i * 2^15 / S)
  p_i is a probability in Q15 (32768 = 1.0). e of the largest logit is LUT[0] = 2^16.
- Exit confidence: c = floor(2^31 / S), which equals p of the largest logit.
- Threshold: tau_q15 = round(tau * 2^15) (half up), clamped to [0, 32768].
  The device exits iff tau_q15 < 32768 and c >= tau_q15. So tau >= 1 never exits (pure
  QUTE), and a confidence exactly on the threshold step exits.
- Ensemble over K heads: P_c = sum_k p_kc; class = argmax_c P_c, ties to the lowest
  class index; confidence = floor(P_max / K) in Q15.
- Cascade: if the exit is taken, the answer is the exit's argmax (ties to the lowest
  index) and c; otherwise it is the ensemble's class and confidence.

All intermediate values fit in uint32: e_i <= 2^16, e_i * 2^15 <= 2^31, S < 2^20 for
L <= 15, P_c <= K * 2^15.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from fractions import Fraction

import numpy as np

Q15_ONE = 1 << 15
LUT_ONE = 1 << 16
LUT_SIZE = 256  # every difference of two int8 values, 0..255


def softmax_lut(scale: float) -> list[int]:
    """LUT[d] = round(2^16 * exp(-scale * d)), computed once when a model is exported.

    The table is stored in model.json and read from there by host and firmware alike, so
    no two parties ever evaluate exp() themselves.
    """
    if not scale > 0:
        raise ValueError(f"output scale must be positive, got {scale}")
    return [int(math.floor(LUT_ONE * math.exp(-scale * d) + 0.5)) for d in range(LUT_SIZE)]


def threshold_q15(tau: float | str) -> int:
    """tau to Q15: round half up on tau's decimal value, clamped to [0, 32768]."""
    exact = Fraction(str(tau))
    if exact < 0:
        raise ValueError(f"threshold must be >= 0, got {tau}")
    return min(Q15_ONE, int(math.floor(exact * Q15_ONE + Fraction(1, 2))))


def _as_logits(logits: np.ndarray) -> np.ndarray:
    logits = np.asarray(logits)
    if logits.dtype != np.int8:
        raise TypeError(f"logits must be int8, got {logits.dtype}")
    return logits.astype(np.int64)


def softmax_q15(logits: np.ndarray, lut: list[int] | np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Q15 probabilities (N, L) and the sums S (N,) of int8 logits (N, L)."""
    x = _as_logits(logits)
    table = np.asarray(lut, dtype=np.int64)
    e = table[x.max(axis=-1, keepdims=True) - x]
    sums = e.sum(axis=-1)
    return (e << 15) // sums[..., np.newaxis], sums


def argmax_lowest(values: np.ndarray) -> np.ndarray:
    """Index of the largest value per row; numpy's argmax already picks the first on ties."""
    return np.argmax(values, axis=-1)


def exit_confidence_q15(logits: np.ndarray, lut) -> np.ndarray:
    """floor(2^31 / S): the Q15 probability of the exit's top class."""
    _, sums = softmax_q15(logits, lut)
    return (1 << 31) // sums


def takes_exit(confidence_q15: np.ndarray, tau_q15: int) -> np.ndarray:
    """The device answers from the early exit iff tau_q15 < 1.0 and confidence >= tau_q15."""
    if tau_q15 >= Q15_ONE:
        return np.zeros(np.shape(confidence_q15), dtype=bool)
    return np.asarray(confidence_q15) >= tau_q15


@dataclass(frozen=True)
class Ensemble:
    """The K-head ensemble per sample."""

    summed_q15: np.ndarray  # (N, L): P_c = sum over heads of Q15 probabilities
    predicted: np.ndarray  # (N,)
    confidence_q15: np.ndarray  # (N,): floor(P_max / K)

    def probabilities(self, heads: int) -> np.ndarray:
        return self.summed_q15 / float(heads * Q15_ONE)


def ensemble(head_logits: list[np.ndarray], luts: list) -> Ensemble:
    if not head_logits or len(head_logits) != len(luts):
        raise ValueError("need one lookup table per head, and at least one head")
    summed = sum(softmax_q15(logits, lut)[0] for logits, lut in zip(head_logits, luts))
    predicted = argmax_lowest(summed)
    top = np.take_along_axis(summed, predicted[..., np.newaxis], axis=-1)[..., 0]
    return Ensemble(summed, predicted, top // len(head_logits))


@dataclass(frozen=True)
class CascadeDecisions:
    """What the device answers at one threshold, per sample."""

    exited: np.ndarray  # (N,) bool
    predicted: np.ndarray  # (N,)
    confidence_q15: np.ndarray  # (N,)


def cascade(exit_logits: np.ndarray, exit_lut, heads: Ensemble, tau_q15: int) -> CascadeDecisions:
    exit_confidence = exit_confidence_q15(exit_logits, exit_lut)
    exited = takes_exit(exit_confidence, tau_q15)
    predicted = np.where(exited, argmax_lowest(_as_logits(exit_logits)), heads.predicted)
    confidence = np.where(exited, exit_confidence, heads.confidence_q15)
    return CascadeDecisions(exited, predicted, confidence)
