"""Range analysis of the secret-shared linear score: which query words cannot wrap.

A linear model is the aggregate of contributions ``v_i = [n_i w_i, n_i b_i, n_i]``,
each encoded as ``round(v_i * 2**F)`` and summed modulo ``m`` (the round's fraction
bits F and modulus). A holder scores query words ``q_k = round(z_k * 2**g)`` (the
query's fraction bits g) as

    numerator = sum_k A[k] * q[k] + A[f] * 2**g          (scale 2**(F + g))

which is linear in the shares, so the combined partials give the numerator modulo
``m``. It is the true integer only while ``|numerator| <= floor((m - 1) / 2)``;
beyond that the centred lift wraps to another number, often of the other sign.

Nobody outside the model's round knows A, but two public facts bound it:

- every contribution's weights obey ``|w_i|_1 + |b_i| <= weight_bound`` (training
  projects onto that L1 ball, so the sample-weighted average obeys it too), and
- the contributors' rows sum to at most ``count_bound``.

Hence ``sum_{k<=f} |A[k]| <= magnitude = ceil(count_bound * weight_bound * 2**F) +
ceil(contributors * (f + 1) / 2)`` (each of the ``contributors`` encodings rounds
each of its f + 1 values by at most 1/2), and by Hoelder

    |numerator| <= magnitude * max(max_k |q[k]|, 2**g).

So every query whose words satisfy ``max_k |q[k]| <= word_bound = floor(half /
magnitude)`` is answered exactly (and ``2**g <= word_bound`` is needed for the bias).
The bound is tight: a model whose whole weight sits on one feature reaches it.

``query_bits`` spends the room: it takes as many fraction bits as leave
``2**range_bits`` standardised units of range (and at most ``max_bits``).

Pure integer arithmetic; imports nothing but ``errors`` and ``field``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from fractions import Fraction

from enclave_agent.crypto.field import check_modulus
from enclave_agent.errors import CryptoError, FixedPointRangeError

__all__ = [
    "MAX_QUERY_BITS",
    "RANGE_BITS",
    "check_query_words",
    "half_range",
    "model_magnitude",
    "query_bits",
    "query_value_bound",
    "query_word_bound",
]

# Standardised units a query may reach: 2**10 = 1024 standard deviations from the
# joint mean; beyond that an input is absurd for any data the model was trained on.
RANGE_BITS = 10
# More query fraction bits than this buy nothing a float64 query can carry.
MAX_QUERY_BITS = 32


def half_range(modulus: int) -> int:
    """Largest magnitude the centred lift of ``modulus`` gives back unchanged."""
    return (check_modulus(modulus) - 1) // 2


def model_magnitude(
    *, count_bound: int, weight_bound: float | Fraction, frac_bits: int, contributors: int, elements: int
) -> int:
    """Upper bound on ``sum |A[k]|`` over the model's ``elements`` weight and bias words
    (module docstring). ``weight_bound`` bounds ``|w|_1 + |b|`` of every contribution."""
    if isinstance(count_bound, bool) or not isinstance(count_bound, int) or count_bound < 1:
        raise CryptoError(f"count_bound must be a positive int, got {count_bound!r}")
    if not (isinstance(frac_bits, int) and 0 <= frac_bits <= 62):
        raise CryptoError(f"frac_bits must be an int in [0, 62], got {frac_bits!r}")
    if not all(isinstance(v, int) and v >= 1 for v in (contributors, elements)):
        raise CryptoError("contributors and elements must be positive ints")
    weight = Fraction(weight_bound)
    if weight <= 0:
        raise CryptoError(f"weight_bound must be positive, got {weight_bound!r}")
    scaled = weight * (count_bound << frac_bits)
    return -(-scaled.numerator // scaled.denominator) + -(-(contributors * elements) // 2)


def query_word_bound(modulus: int, magnitude: int) -> int:
    """Largest ``|q|`` such that ``magnitude * |q|`` still fits the centred range."""
    if magnitude < 1:
        raise CryptoError(f"magnitude must be positive, got {magnitude}")
    return half_range(modulus) // magnitude


def query_bits(word_bound: int, *, range_bits: int = RANGE_BITS, max_bits: int = MAX_QUERY_BITS) -> int:
    """Fraction bits g for the query: ``2**range_bits`` standardised units fit in
    ``word_bound`` when they can, as many bits as remain (at most ``max_bits``).

    Raises FixedPointRangeError when not even the bias (``2**0``) fits: the model's
    aggregate is too large for its modulus to score any query exactly.
    """
    if word_bound < 2:
        raise FixedPointRangeError(
            "the model's aggregate leaves no room for a query: its weights and row count are too "
            "large for the round's modulus and fraction bits"
        )
    top = word_bound.bit_length() - 1  # 2**top <= word_bound
    return max(0, min(max_bits, top - range_bits))


def query_value_bound(word_bound: int, bits: int) -> float:
    """Largest standardised ``|z|`` (a float, rounded down) whose word ``round(z * 2**bits)``
    stays within ``word_bound``: ``|round(v)| <= |v| + 1/2``."""
    if bits < 0 or 2**bits > word_bound:
        raise CryptoError(f"{bits} query fraction bits do not fit a word bound of {word_bound}")
    exact = Fraction(2 * word_bound - 1, 2 ** (bits + 1))
    value = float(exact)
    if Fraction(value) > exact:
        value = math.nextafter(value, 0.0)
    return value


def check_query_words(words: Sequence[int], bits: int, word_bound: int) -> None:
    """Refuse a query whose numerator could wrap: FixedPointRangeError naming the first
    feature index out of range and the bound (never the value)."""
    if 2**bits > word_bound:
        raise FixedPointRangeError(f"the bias word 2**{bits} exceeds the word bound {word_bound}")
    for index, word in enumerate(words):
        if abs(int(word)) > word_bound:
            raise FixedPointRangeError(
                f"query value at index {index} is out of range: its word must stay within "
                f"+-{word_bound} at {bits} fraction bits"
            )
