"""Linear scores and column statistics computed on shares.

A federated logistic-regression model is the aggregate vector
``A = [sum n_i w_i (f values), sum n_i b_i, sum n_i]`` held as shares (additive
over Z/2^64 or Shamir over GF(2^61 - 1)) at the round's ``frac_bits`` F. For a
standardised query z encoded as words ``q = round(z * 2^g)`` (the query's own
fraction bits g, published with the model's input range), each holder j computes
from its share A_j

    numerator_j   = sum_k A_j[k] * q[k] + A_j[f] * 2^g      (scale 2^(F + g))
    denominator_j = A_j[f + 1]                             (scale 2^F)

which is linear in the share, so the gateway combines the partials exactly like
shares and gets ``numerator / denominator = w . z + b`` of the averaged model. The
gateway learns the score and the total sample count, never A. The numerator is the
true integer only inside the centred range of the modulus: the provider checks the
query words against ``enclave_agent.crypto.ranges`` first (``query_words``).

A column statistic over the column-stats aggregate ``[sums (f), sums of squares
(f), count]`` is the triple ``(A[k], A[f + k], A[2f])`` for column k.

Combining (``combine``) uses every partial received. Shamir partials are points of
polynomials of degree t - 1 (one per value), so they are Reed-Solomon decoded: with
t + 1 providers a wrong partial is detected (``InconsistentPartials``: the answer
is refused), with t + 2e providers e wrong partials are corrected and their
providers named. Additive partials have no redundancy: nothing can be checked.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from fractions import Fraction

import numpy as np

from enclave_agent.crypto.field import RING64
from enclave_agent.crypto.ranges import check_query_words
from enclave_agent.crypto.reed_solomon import UncorrectableSharesError, robust_reconstruct
from enclave_agent.errors import CryptoError, FixedPointRangeError, ProtocolError

# An answer's label: 1 when the score (the probability of class 1) is at least this.
LABEL_THRESHOLD = 0.5


class InconsistentPartials(ProtocolError):
    """The providers' partial results do not lie on one polynomial and cannot be
    corrected: the answer is refused rather than given wrong."""


@dataclass(frozen=True)
class Combined:
    total: list[int]
    wrong: tuple[int, ...]  # Shamir x-coordinates (participant index + 1) of wrong partials
    checked: bool  # whether any check was possible (Shamir with more than t partials)


def centred(value: int, modulus: int) -> int:
    """The signed integer a ring/field element stands for."""
    value %= modulus
    return value - modulus if value > (modulus - 1) // 2 else value


def query_words(z: np.ndarray, query_bits: int, word_bound: int) -> list[int]:
    """The signed words ``round(z * 2^query_bits)`` of a standardised row, refused with
    FixedPointRangeError (naming the feature index and the bound, not the value) when
    the numerator could wrap (``enclave_agent.crypto.ranges``)."""
    z = np.asarray(z, dtype=np.float64).reshape(-1)
    if not bool(np.isfinite(z).all()):
        raise FixedPointRangeError("a standardised query value is not finite")
    words = [int(v) for v in np.rint(z * 2.0**query_bits)]
    check_query_words(words, query_bits, word_bound)
    return words


def partial_score(share: np.ndarray, words: Sequence[int], query_bits: int, modulus: int) -> tuple[int, int]:
    """(numerator, denominator) share of w.z + b for one holder from the query's signed
    words (pure Python ints: the vectors are short and products exceed 64 bits)."""
    features = len(words)
    if share.size != features + 2:
        raise ProtocolError(f"model share has {share.size} values, query has {features} features")
    numerator = sum(int(a) * int(b) for a, b in zip(share[:features].tolist(), words, strict=True))
    numerator += int(share[features]) << query_bits
    return numerator % modulus, int(share[features + 1]) % modulus


def partial_statistic(share: np.ndarray, column: int, features: int, modulus: int) -> tuple[int, int, int]:
    """(sum, sum of squares, count) share of one column."""
    if share.size != 2 * features + 1 or not 0 <= column < features:
        raise ProtocolError(f"column {column} is not in a {features}-column statistic")
    return (
        int(share[column]) % modulus,
        int(share[features + column]) % modulus,
        int(share[2 * features]) % modulus,
    )


def combine(
    partials: Mapping[int, Sequence[int]], modulus: int, additive: bool, threshold: int | None = None
) -> Combined:
    """Combine every per-holder partial (keyed by Shamir x = participant index + 1).
    Shamir partials are checked and corrected (``threshold`` = t, default: all)."""
    if not partials:
        raise ProtocolError("no partial results to combine")
    widths = {len(p) for p in partials.values()}
    if len(widths) != 1:
        raise ProtocolError("partial results differ in width")
    width = widths.pop()
    if any(not 0 <= v < modulus for p in partials.values() for v in p):
        raise ProtocolError("a partial result is out of the modulus")
    if additive:
        return Combined([sum(p[i] for p in partials.values()) % modulus for i in range(width)], (), False)
    t = len(partials) if threshold is None else threshold
    points = {x: np.array(p, dtype=np.uint64) for x, p in partials.items()}
    try:
        decoded = robust_reconstruct(points, t, modulus)
    except UncorrectableSharesError as exc:
        raise InconsistentPartials(f"partials of {len(partials)} providers with t={t}: {exc}") from None
    except CryptoError as exc:
        raise ProtocolError(f"partials cannot be combined: {exc}") from None
    return Combined([int(v) for v in decoded.secret], decoded.wrong, decoded.checked)


def score_value(numerator: int, denominator: int, frac_bits: int, query_bits: int, modulus: int) -> float:
    """The model's linear score w.z + b from the combined partials (numerator at scale
    2^(frac_bits + query_bits), denominator at 2^frac_bits)."""
    den = centred(denominator, modulus)
    if den <= 0:
        raise ProtocolError("the model's sample count is not positive")
    return float(Fraction(centred(numerator, modulus), den << query_bits))


def statistic_values(total: Sequence[int], frac_bits: int, modulus: int) -> dict[str, float]:
    column_sum, column_sumsq, count = (centred(v, modulus) / 2.0**frac_bits for v in total)
    if count <= 0:
        raise ProtocolError("the statistic's row count is not positive")
    mean = column_sum / count
    variance = max(column_sumsq / count - mean * mean, 0.0)
    return {"sum": column_sum, "mean": mean, "std": variance**0.5, "count": count}


def sigmoid(x: float) -> float:
    return float(1.0 / (1.0 + np.exp(-np.clip(x, -500, 500))))


def is_additive(modulus: int) -> bool:
    return modulus == RING64
