"""Range analysis of the shared linear score: the word bound is safe, tight, and
spent on query fraction bits as documented."""

from __future__ import annotations

from fractions import Fraction

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from enclave_agent.crypto import ranges
from enclave_agent.crypto.field import PRIME61, RING64
from enclave_agent.errors import CryptoError, FixedPointRangeError

MODULI = [RING64, PRIME61]


def _centred(value: int, m: int) -> int:
    value %= m
    return value - m if value > (m - 1) // 2 else value


def test_half_range_is_what_the_centred_lift_returns_unchanged() -> None:
    assert ranges.half_range(PRIME61) == 2**60 - 1
    assert ranges.half_range(RING64) == 2**63 - 1
    for m in MODULI:
        h = ranges.half_range(m)
        assert _centred(h, m) == h and _centred(-h, m) == -h and _centred(h + 1, m) != h + 1


def test_model_magnitude_is_count_times_weight_plus_rounding() -> None:
    # 512 rows, |w|_1 + |b| <= 64, 20 bits: 2**9 * 2**6 * 2**20; 3 contributors x 31 values round by 1/2.
    got = ranges.model_magnitude(
        count_bound=512, weight_bound=64.0, frac_bits=20, contributors=3, elements=31
    )
    assert got == 2**35 + 47
    # A fractional weight bound rounds up.
    assert (
        ranges.model_magnitude(count_bound=3, weight_bound=0.5, frac_bits=0, contributors=1, elements=1) == 3
    )


@pytest.mark.parametrize(
    "kwargs",
    [
        {"count_bound": 0},
        {"count_bound": True},
        {"weight_bound": 0.0},
        {"frac_bits": 63},
        {"contributors": 0},
        {"elements": 0},
    ],
)
def test_model_magnitude_refuses_nonsense(kwargs: dict[str, object]) -> None:
    base: dict[str, object] = {
        "count_bound": 8,
        "weight_bound": 1.0,
        "frac_bits": 8,
        "contributors": 2,
        "elements": 3,
    }
    with pytest.raises(CryptoError):
        ranges.model_magnitude(**(base | kwargs))  # type: ignore[arg-type]


@pytest.mark.parametrize("m", MODULI)
def test_word_bound_is_safe_and_tight_for_the_worst_model(m: int) -> None:
    """A model whose whole magnitude sits on one feature: words up to the bound come
    back exactly, one more wraps (so the bound is the largest safe one)."""

    @settings(max_examples=200, deadline=None)
    @given(st.integers(1, 2**40), st.sampled_from([1, -1]))
    def check(magnitude: int, sign: int) -> None:
        q_max = ranges.query_word_bound(m, magnitude)
        assert _centred(sign * magnitude * q_max % m, m) == sign * magnitude * q_max
        beyond = magnitude * (q_max + 1)  # positive: the ring's extra negative number does not help
        assert _centred(beyond % m, m) != beyond

    check()


def test_query_bits_leave_the_range_and_spend_the_rest_on_precision() -> None:
    assert ranges.query_bits(2**25 - 1) == 24 - ranges.RANGE_BITS
    assert ranges.query_bits(2**25) == 25 - ranges.RANGE_BITS
    assert ranges.query_bits(2**80) == ranges.MAX_QUERY_BITS
    assert ranges.query_bits(2**5) == 0  # too little room: no fraction bits, a smaller range
    with pytest.raises(FixedPointRangeError, match="no room for a query"):
        ranges.query_bits(1)


@settings(max_examples=300, deadline=None)
@given(st.integers(2, 2**70), st.floats(0, 1))
def test_value_bound_words_stay_within_the_word_bound(word_bound: int, fraction: float) -> None:
    bits = ranges.query_bits(word_bound)
    z = ranges.query_value_bound(word_bound, bits)
    assert Fraction(z) * 2**bits + Fraction(1, 2) <= word_bound
    for value in (z, -z, z * fraction):
        assert abs(round(Fraction(value) * 2**bits)) <= word_bound
    if bits < ranges.MAX_QUERY_BITS and word_bound >= 2**ranges.RANGE_BITS:
        assert z >= 2**ranges.RANGE_BITS - 1


def test_value_bound_needs_room_for_the_bias() -> None:
    with pytest.raises(CryptoError):
        ranges.query_value_bound(7, 3)


def test_check_query_words_names_the_index_and_bound_not_the_value() -> None:
    ranges.check_query_words([5, -5, 0], 2, 5)
    with pytest.raises(FixedPointRangeError) as info:
        ranges.check_query_words([5, -123456789, 0], 2, 5)
    assert "index 1" in str(info.value) and "+-5" in str(info.value)
    assert "123456789" not in str(info.value)
    with pytest.raises(FixedPointRangeError, match="bias"):
        ranges.check_query_words([0], 3, 7)
