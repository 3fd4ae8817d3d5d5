"""A provider's partial results: a score or a column statistic computed on its share.

A federated logistic-regression model is the aggregate vector
``A = [sum n_i w_i (f values), sum n_i b_i, sum n_i]`` held as shares (additive
over Z/2^64 or Shamir over GF(2^61 - 1)) at the round's ``frac_bits`` F. For a
standardised query z encoded as words ``q = round(z * 2^g)`` (the query's own
fraction bits g, published with the model's input range), each holder j computes
from its share A_j

    numerator_j   = sum_k A_j[k] * q[k] + A_j[f] * 2^g      (scale 2^(F + g))
    denominator_j = A_j[f + 1]                             (scale 2^F)

which is linear in the share, so the gateway combines the partials exactly like
shares (``enclave_agent.gateway.scoring``) and gets ``numerator / denominator =
w . z + b`` of the averaged model, never A. The numerator is the true integer only
inside the centred range of the modulus: ``query_words`` checks the words against
``enclave_agent.crypto.ranges`` first.

A column statistic over the column-stats aggregate ``[sums (f), sums of squares
(f), count]`` is the triple ``(A[k], A[f + k], A[2f])`` for column k.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from enclave_agent.crypto.ranges import check_query_words
from enclave_agent.errors import FixedPointRangeError, ProtocolError

__all__ = ["partial_score", "partial_statistic", "query_words"]


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
