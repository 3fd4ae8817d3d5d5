"""Ring/field arithmetic against Python big-int arithmetic."""

from __future__ import annotations

import itertools
import warnings

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from enclave_agent.crypto import field
from enclave_agent.crypto.field import PRIME61, RING64
from enclave_agent.errors import CryptoError

P = PRIME61
# Values on every limb and fold boundary of the mulmod.
FIELD_EDGES = [0, 1, 2, 3, 7, 8, 2**29 - 1, 2**29, 2**32 - 1, 2**32, 2**32 + 1, 2**60, 2**61 - 3, P - 1]
RING_EDGES = [0, 1, 2, 2**32 - 1, 2**32, 2**63 - 1, 2**63, 2**64 - 2, 2**64 - 1]


def elems(m: int, edges: list[int]) -> st.SearchStrategy[int]:
    return st.one_of(st.sampled_from(edges), st.integers(0, m - 1))


def pairs(m: int, edges: list[int]) -> st.SearchStrategy[list[tuple[int, int]]]:
    return st.lists(st.tuples(elems(m, edges), elems(m, edges)), min_size=1, max_size=40)


def arr(values: list[int]) -> np.ndarray:
    return np.array(values, dtype=np.uint64)


def as_ints(a: np.ndarray) -> list[int]:
    return [int(v) for v in np.asarray(a).ravel()]


CASES = [(RING64, RING_EDGES), (PRIME61, FIELD_EDGES)]


@pytest.mark.parametrize("m", [RING64, PRIME61])
def test_check_modulus_accepts_supported(m: int) -> None:
    assert field.check_modulus(m) == m
    if m < 2**64:
        assert field.check_modulus(np.uint64(m)) == m  # numpy integers are accepted too


@pytest.mark.parametrize("bad", [2**32, 2**61, 2**63, 7, 2**127 - 1, 0, -1, True, 2.0**64, "2**64", None])
def test_check_modulus_rejects_others(bad: object) -> None:
    with pytest.raises(CryptoError, match="unsupported modulus"):
        field.check_modulus(bad)  # type: ignore[arg-type]


def test_is_field() -> None:
    assert field.is_field(PRIME61)
    assert not field.is_field(RING64)


@pytest.mark.parametrize(("m", "edges"), CASES)
def test_edge_pairs_exhaustively(m: int, edges: list[int]) -> None:
    combos = list(itertools.product(edges, repeat=2))
    a, b = arr([x for x, _ in combos]), arr([y for _, y in combos])
    assert as_ints(field.add(a, b, m)) == [(x + y) % m for x, y in combos]
    assert as_ints(field.sub(a, b, m)) == [(x - y) % m for x, y in combos]
    assert as_ints(field.mul(a, b, m)) == [(x * y) % m for x, y in combos]
    assert as_ints(field.neg(a, m)) == [(-x) % m for x, _ in combos]


@pytest.mark.parametrize(("m", "edges"), CASES)
def test_properties_against_big_ints(m: int, edges: list[int]) -> None:
    @settings(max_examples=150, deadline=None)
    @given(pairs(m, edges))
    def check(ps: list[tuple[int, int]]) -> None:
        a, b = arr([x for x, _ in ps]), arr([y for _, y in ps])
        assert as_ints(field.add(a, b, m)) == [(x + y) % m for x, y in ps]
        assert as_ints(field.sub(a, b, m)) == [(x - y) % m for x, y in ps]
        assert as_ints(field.mul(a, b, m)) == [(x * y) % m for x, y in ps]
        assert as_ints(field.neg(a, m)) == [(-x) % m for x, _ in ps]

    check()


@pytest.mark.parametrize(("m", "edges"), CASES)
def test_mul_scalar_against_big_ints(m: int, edges: list[int]) -> None:
    @settings(max_examples=150, deadline=None)
    @given(
        st.lists(elems(m, edges), min_size=1, max_size=30),
        st.one_of(st.sampled_from([0, 1, -1, P, -P, 2**64, 2**64 - 1]), st.integers(-(2**200), 2**200)),
    )
    def check(values: list[int], k: int) -> None:
        assert as_ints(field.mul_scalar(arr(values), k, m)) == [(v * k) % m for v in values]

    check()


@pytest.mark.parametrize(("m", "edges"), CASES)
def test_sum_arrays_against_big_ints(m: int, edges: list[int]) -> None:
    @settings(max_examples=60, deadline=None)
    @given(st.lists(st.lists(elems(m, edges), min_size=4, max_size=4), min_size=1, max_size=25))
    def check(rows: list[list[int]]) -> None:
        got = field.sum_arrays([arr(r) for r in rows], m)
        assert as_ints(got) == [sum(col) % m for col in zip(*rows)]

    check()


def test_field_sum_of_many_maximal_elements_folds_correctly() -> None:
    # 7 is the batch size at which the accumulator is folded: cover around it.
    for count in (1, 6, 7, 8, 13, 14, 15, 50):
        rows = [arr([P - 1, P - 2, 1, 0])] * count
        got = field.sum_arrays(rows, PRIME61)
        assert as_ints(got) == [(count * v) % P for v in (P - 1, P - 2, 1, 0)]
        assert int(got.max()) < P


def test_sum_arrays_does_not_modify_inputs() -> None:
    a = arr([P - 1, 5])
    b = arr([P - 1, 6])
    field.sum_arrays([a, b], PRIME61)
    assert as_ints(a) == [P - 1, 5]
    assert as_ints(b) == [P - 1, 6]


def test_sum_arrays_rejects_empty_and_mismatched() -> None:
    with pytest.raises(CryptoError, match="empty"):
        field.sum_arrays([], RING64)
    with pytest.raises(CryptoError, match="shape"):
        field.sum_arrays([arr([1, 2]), arr([1, 2, 3])], RING64)


@pytest.mark.parametrize("m", [RING64, PRIME61])
def test_field_results_stay_reduced_and_uint64(m: int) -> None:
    a = arr([0, 1, P - 1] if m == PRIME61 else [0, 1, 2**64 - 1])
    for out in (field.add(a, a, m), field.sub(a, a[::-1], m), field.mul(a, a, m), field.neg(a, m)):
        assert out.dtype == np.uint64
        assert out.shape == a.shape
        assert all(v < m for v in as_ints(out))


def test_ring_wraparound_emits_no_warnings() -> None:
    a = arr([2**64 - 1, 2**63])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert as_ints(field.add(a, a, RING64)) == [2**64 - 2, 0]
        assert as_ints(field.mul(a, a, RING64)) == [1, 0]
        assert as_ints(field.neg(a, RING64)) == [1, 2**63]
        assert as_ints(field.sub(arr([0, 0]), a, RING64)) == [1, 2**63]
        # 0-d arrays go through numpy's scalar paths, which warn on overflow.
        zero_d = np.array(2**64 - 1, dtype=np.uint64)
        assert int(field.add(zero_d, zero_d, RING64)) == 2**64 - 2
        assert int(field.mul_scalar(zero_d, 3, RING64)) == (3 * (2**64 - 1)) % 2**64


def test_two_dimensional_and_broadcast_operands() -> None:
    a = np.array([[1, 2], [P - 1, 4]], dtype=np.uint64)
    b = arr([P - 1, 3])
    got = field.mul(a, b, PRIME61)
    assert got.shape == (2, 2)
    assert as_ints(got) == [(1 * (P - 1)) % P, 6, ((P - 1) * (P - 1)) % P, 12]
    assert field.mul_scalar(a, 5, PRIME61).shape == (2, 2)


@pytest.mark.parametrize("dtype", [np.int64, np.uint32, np.float64, object])
def test_non_uint64_operands_are_refused(dtype: type) -> None:
    bad: np.ndarray = np.array([1, 2], dtype=dtype)
    good = arr([1, 2])
    with pytest.raises(CryptoError, match="dtype uint64"):
        field.add(bad, good, RING64)
    with pytest.raises(CryptoError, match="dtype uint64"):
        field.mul(good, bad, PRIME61)


def test_check_elements() -> None:
    assert as_ints(field.check_elements(arr([0, P - 1]), PRIME61)) == [0, P - 1]
    assert as_ints(field.check_elements(arr([P, 2**64 - 1]), RING64)) == [P, 2**64 - 1]
    with pytest.raises(CryptoError, match="out of range"):
        field.check_elements(arr([0, P]), PRIME61)
    assert field.check_elements(np.zeros(0, dtype=np.uint64), PRIME61).size == 0


@pytest.mark.parametrize("m", [RING64, PRIME61])
@pytest.mark.parametrize("x", [0, 1, -1, 2**64, -(2**64) - 5, P, 2**200 + 3, -(2**200)])
def test_reduce_int(m: int, x: int) -> None:
    got = field.reduce_int(x, m)
    assert 0 <= got < m
    assert (got - x) % m == 0


def test_operations_reject_bad_modulus() -> None:
    a = arr([1])
    for fn in (field.add, field.sub, field.mul):
        with pytest.raises(CryptoError, match="unsupported modulus"):
            fn(a, a, 2**32)
    with pytest.raises(CryptoError, match="unsupported modulus"):
        field.neg(a, 2**61)
    with pytest.raises(CryptoError, match="unsupported modulus"):
        field.mul_scalar(a, 3, 17)
    with pytest.raises(CryptoError, match="unsupported modulus"):
        field.reduce_int(3, 2**63)


def test_prime61_is_the_mersenne_prime() -> None:
    assert PRIME61 == 2**61 - 1
    # Deterministic Miller-Rabin with the first 12 prime bases is exact below 3.3e24.
    d, s = P - 1, 0
    while d % 2 == 0:
        d, s = d // 2, s + 1
    for a in (2, 3, 5, 7, 11, 13, 17, 19, 23, 29, 31, 37):
        x = pow(a, d, P)
        assert x in (1, P - 1) or any(pow(x, 2**r, P) == P - 1 for r in range(1, s))
