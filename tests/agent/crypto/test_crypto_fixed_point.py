"""Fixed-point encoding: round trips within the documented tolerance, exact range checks."""

from __future__ import annotations

import math
import re

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from enclave_agent.crypto import field, fixed_point
from enclave_agent.crypto.field import PRIME61, RING64
from enclave_agent.errors import CryptoError, FixedPointRangeError

MODULI = [RING64, PRIME61]


@pytest.mark.parametrize("m", MODULI)
@pytest.mark.parametrize("frac_bits", [0, 8, 16, 24])
def test_round_trip_within_half_ulp(m: int, frac_bits: int) -> None:
    @settings(max_examples=60, deadline=None)
    @given(st.lists(st.floats(-(2.0**25), 2.0**25, allow_nan=False), min_size=1, max_size=20))
    def check(values: list[float]) -> None:
        v = np.array(values)
        enc = fixed_point.encode(v, frac_bits, m)
        assert enc.dtype == np.uint64
        assert enc.shape == v.shape
        assert all(int(e) < m for e in enc)
        back = fixed_point.decode(enc, frac_bits, m)
        assert back.dtype == np.float64
        assert np.all(np.abs(back - v) <= 2.0 ** -(frac_bits + 1))

    check()


@pytest.mark.parametrize("m", MODULI)
def test_encoding_is_the_signed_integer_mod_m(m: int) -> None:
    enc = fixed_point.encode(np.array([1.5, -1.5, 0.0, -0.0, -1.0, 2.25]), 2, m)
    assert [int(e) for e in enc] == [6, m - 6, 0, 0, m - 4, 9]


def test_rounding_is_half_to_even() -> None:
    enc = fixed_point.encode(np.array([0.5, 1.5, 2.5, -0.5, -2.5, 0.49999]), 0, RING64)
    assert [int(e) for e in enc] == [0, 2, 2, 0, RING64 - 2, 0]


@pytest.mark.parametrize("m", MODULI)
@pytest.mark.parametrize("k", [2, 3, 10])
def test_sum_of_headroom_values_decodes_within_k_half_ulps(m: int, k: int) -> None:
    frac_bits = 16
    limit = fixed_point.max_abs_value(frac_bits, m, headroom=k)
    rng = np.random.default_rng(7)  # test data only; never for shares or keys
    for sign in (1.0, -1.0):
        # All at the extreme of the range: the sum must not wrap around.
        extreme = [np.full(3, sign * limit) for _ in range(k)]
        # ... and once with one ordinary value among them.
        mixed = extreme[:-1] + [rng.uniform(-limit, limit, size=3)]
        for vectors in (extreme, mixed):
            encoded = [fixed_point.encode(v, frac_bits, m, headroom=k) for v in vectors]
            total = fixed_point.decode(field.sum_arrays(encoded, m), frac_bits, m)
            exact = np.sum(vectors, axis=0)
            assert np.all(np.sign(total) == np.sign(exact))
            # float64 itself rounds at these magnitudes: allow its relative error too.
            assert np.all(np.abs(total - exact) <= k * 2.0 ** -(frac_bits + 1) + 1e-15 * np.abs(exact))


def test_sum_tolerance_at_small_magnitudes_is_exactly_k_half_ulps() -> None:
    frac_bits, k = 4, 5
    values = [np.array([0.03125 * (i + 1), -0.09]) for i in range(k)]
    encoded = [fixed_point.encode(v, frac_bits, PRIME61, headroom=k) for v in values]
    total = fixed_point.decode(field.sum_arrays(encoded, PRIME61), frac_bits, PRIME61)
    assert np.all(np.abs(total - np.sum(values, axis=0)) <= k * 2.0 ** -(frac_bits + 1))


@pytest.mark.parametrize("m", MODULI)
@pytest.mark.parametrize("headroom", [1, 2, 2**20])
def test_bound_is_floor_half_range_over_headroom(m: int, headroom: int) -> None:
    assert fixed_point.bound(m, headroom) == ((m - 1) // 2) // headroom


@pytest.mark.parametrize("m", MODULI)
def test_bound_minus_one_encodes_and_bound_is_refused(m: int) -> None:
    # A headroom that makes the bound exactly representable in float64.
    headroom = 2**40
    b = fixed_point.bound(m, headroom)
    for frac_bits in (0, 3):
        scale = 2.0**frac_bits
        ok = np.array([(b - 1) / scale, -(b - 1) / scale])
        enc = fixed_point.encode(ok, frac_bits, m, headroom)
        assert [int(e) for e in enc] == [b - 1, m - (b - 1)]
        for bad in (b / scale, -b / scale, (b + 7) / scale):
            with pytest.raises(FixedPointRangeError, match=f"below {b}"):
                fixed_point.encode(np.array([0.0, bad]), frac_bits, m, headroom)


@pytest.mark.parametrize("m", MODULI)
@pytest.mark.parametrize("frac_bits", [0, 16, 40])
@pytest.mark.parametrize("headroom", [1, 3, 1000])
def test_max_abs_value_encodes_and_double_is_refused(m: int, frac_bits: int, headroom: int) -> None:
    limit = fixed_point.max_abs_value(frac_bits, m, headroom)
    b = fixed_point.bound(m, headroom)
    assert limit > 0
    assert limit * 2.0**frac_bits <= b - 1
    enc = fixed_point.encode(np.array([limit, -limit]), frac_bits, m, headroom)
    assert int(enc[0]) <= b - 1
    assert m - int(enc[1]) <= b - 1
    with pytest.raises(FixedPointRangeError):
        fixed_point.encode(np.array([2 * limit]), frac_bits, m, headroom)


def test_ring_extremes_at_float64_precision() -> None:
    # bound = 2**63 - 1 is not a float64: the comparison must still be exact.
    limit = fixed_point.max_abs_value(0, RING64)
    assert limit == 2.0**63 - 1024  # largest float64 below 2**63 - 1
    enc = fixed_point.encode(np.array([limit, -limit]), 0, RING64)
    assert int(enc[0]) == 2**63 - 1024
    with pytest.raises(FixedPointRangeError):
        fixed_point.encode(np.array([2.0**63]), 0, RING64)
    with pytest.raises(FixedPointRangeError):
        fixed_point.encode(np.array([-(2.0**63)]), 0, RING64)


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
def test_non_finite_values_are_refused_with_their_index(bad: float) -> None:
    with pytest.raises(FixedPointRangeError, match=r"index 2 is not finite"):
        fixed_point.encode(np.array([0.0, 1.0, bad, 3.0]), 16, PRIME61)


def test_out_of_range_message_names_index_and_bound_but_not_the_value() -> None:
    secret = 98765432109.8765
    values = np.array([1.0, 2.0, 3.0, secret])
    with pytest.raises(FixedPointRangeError) as info:
        fixed_point.encode(values, 32, PRIME61)
    msg = str(info.value)
    assert "index 3" in msg
    assert str(fixed_point.bound(PRIME61)) in msg
    for form in (str(secret), repr(secret), f"{secret:e}", f"{secret:g}", "98765432109", "9.87654"):
        assert form not in msg


def test_out_of_range_error_is_a_value_error_and_crypto_error() -> None:
    with pytest.raises(ValueError):
        fixed_point.encode(np.array([1e30]), 16, RING64)
    with pytest.raises(CryptoError):
        fixed_point.encode(np.array([1e30]), 16, RING64)


def test_two_dimensional_index_is_reported_as_a_tuple() -> None:
    values = np.zeros((2, 3))
    values[1, 2] = 1e300
    with pytest.raises(FixedPointRangeError, match=r"index \(1, 2\)"):
        fixed_point.encode(values, 8, RING64)


def test_integer_inputs_are_accepted() -> None:
    enc = fixed_point.encode(np.array([3, -2], dtype=np.int64), 1, PRIME61)
    assert [int(e) for e in enc] == [6, PRIME61 - 4]


@pytest.mark.parametrize("values", [np.array([1 + 2j]), np.array(["1.0"]), np.array([object()])])
def test_non_real_inputs_are_refused(values: np.ndarray) -> None:
    with pytest.raises(CryptoError, match="real numbers"):
        fixed_point.encode(values, 8, RING64)


@pytest.mark.parametrize(
    ("frac_bits", "headroom", "pattern"),
    [
        (-1, 1, "frac_bits"),
        (63, 1, "frac_bits"),
        (1.5, 1, "frac_bits"),
        (True, 1, "frac_bits"),
        (8, 0, "headroom"),
        (8, -3, "headroom"),
        (8, 2**63, "headroom"),
    ],
)
def test_bad_parameters_are_refused(frac_bits: object, headroom: object, pattern: str) -> None:
    with pytest.raises(CryptoError, match=pattern):
        fixed_point.encode(np.array([1.0]), frac_bits, RING64, headroom)  # type: ignore[arg-type]


@pytest.mark.parametrize("m", [2**32, 2**61, 97])
def test_bad_modulus_is_refused(m: int) -> None:
    with pytest.raises(CryptoError, match=re.escape(repr(m))):
        fixed_point.encode(np.array([1.0]), 8, m)
    with pytest.raises(CryptoError, match="unsupported modulus"):
        fixed_point.decode(np.array([1], dtype=np.uint64), 8, m)
    with pytest.raises(CryptoError, match="unsupported modulus"):
        fixed_point.max_abs_value(8, m, 1)


@pytest.mark.parametrize("m", MODULI)
def test_decode_is_the_centred_lift(m: int) -> None:
    half = (m - 1) // 2
    elements = np.array([0, 1, half, half + 1, m - 1], dtype=np.uint64)
    got = fixed_point.decode(elements, 0, m)
    assert got.tolist() == [0.0, 1.0, float(half), float(half + 1 - m), -1.0]
    assert fixed_point.decode(np.array([m - 3], dtype=np.uint64), 1, m).tolist() == [-1.5]


def test_decode_refuses_elements_outside_the_field() -> None:
    with pytest.raises(CryptoError, match="out of range"):
        fixed_point.decode(np.array([PRIME61], dtype=np.uint64), 0, PRIME61)
    with pytest.raises(CryptoError, match="dtype"):
        fixed_point.decode(np.array([1], dtype=np.int64), 0, PRIME61)


def test_empty_vector_round_trips() -> None:
    enc = fixed_point.encode(np.zeros(0), 16, PRIME61)
    assert enc.shape == (0,)
    assert fixed_point.decode(enc, 16, PRIME61).shape == (0,)
