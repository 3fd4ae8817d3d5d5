"""The gateway's side of scores and column statistics computed on shares: combining
the providers' partial results and reading the answer from them.

Each holder's partial (``enclave_agent.protocol.partials``) is linear in its share of
the model's aggregate, so the partials combine exactly like shares into a score's
numerator (at scale 2^(F + g)) and denominator (the sample count, at 2^F), or a
column's sum, sum of squares and count (at 2^F), F being the round's ``frac_bits``
and g the query's. The gateway learns the score and the total sample count, never
the aggregate.

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
from enclave_agent.crypto.reed_solomon import UncorrectableSharesError, robust_reconstruct
from enclave_agent.errors import CryptoError, ProtocolError

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
