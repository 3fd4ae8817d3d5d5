"""Additive and Shamir sharing: round trips, every threshold subset, edge values, errors."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from enclave_agent.crypto import fixed_point, sharing
from enclave_agent.crypto.field import PRIME61, RING64
from enclave_agent.crypto.prg import random_elements
from enclave_agent.errors import CryptoError

P = PRIME61
MODULI = [RING64, PRIME61]
D = 12


def edge_secrets(m: int) -> dict[str, np.ndarray]:
    b = fixed_point.bound(m)
    encoded = fixed_point.encode(np.array([-1.0, -123.5, 0.0, 7.25]), 16, m)
    return {
        "zero": np.zeros(D, dtype=np.uint64),
        "max": np.full(D, m - 1, dtype=np.uint64),
        "bound-1": np.full(D, b - 1, dtype=np.uint64),
        "negative": np.full(D, m - (b - 1), dtype=np.uint64),
        "encoded": encoded,
        "random": random_elements(D, m),
    }


def ints(a: np.ndarray) -> list[int]:
    return [int(v) for v in a]


# --- additive ------------------------------------------------------------------


@pytest.mark.parametrize("m", MODULI)
@pytest.mark.parametrize("n", [1, 2, 3, 5, 10])
@pytest.mark.parametrize("kind", ["zero", "max", "bound-1", "negative", "encoded", "random"])
def test_additive_round_trip(m: int, n: int, kind: str) -> None:
    secret = edge_secrets(m)[kind]
    shares = sharing.additive_split(secret, n, m)
    assert len(shares) == n
    for s in shares:
        assert s.dtype == np.uint64
        assert s.shape == secret.shape
        assert all(v < m for v in ints(s))
    assert np.array_equal(sharing.combine_additive(shares, m), secret)
    # Against Python big ints as well.
    assert ints(sharing.combine_additive(shares, m)) == [sum(col) % m for col in zip(*map(ints, shares))]


@pytest.mark.parametrize("m", MODULI)
def test_additive_shares_look_random(m: int) -> None:
    secret = np.zeros(64, dtype=np.uint64)
    shares = sharing.additive_split(secret, 3, m)
    for s in shares:
        # A share equal to the secret in many places would leak it.
        assert int((s == secret).sum()) == 0
    assert not np.array_equal(shares[0], shares[1])


@pytest.mark.parametrize("m", MODULI)
def test_additive_missing_share_does_not_reconstruct(m: int) -> None:
    secret = random_elements(D, m)
    shares = sharing.additive_split(secret, 4, m)
    for drop in range(4):
        partial = [s for i, s in enumerate(shares) if i != drop]
        assert int((sharing.combine_additive(partial, m) == secret).sum()) == 0


def test_additive_keeps_the_shape_of_a_matrix() -> None:
    secret = random_elements(6, RING64).reshape(2, 3)
    shares = sharing.additive_split(secret, 3)
    assert all(s.shape == (2, 3) for s in shares)
    assert np.array_equal(sharing.combine_additive(shares), secret)


def test_additive_randomness_can_be_injected() -> None:
    secret = random_elements(D, RING64)
    a = sharing.additive_split(secret, 3, RING64, rng_bytes=lambda n: b"\x07" * n)
    b = sharing.additive_split(secret, 3, RING64, rng_bytes=lambda n: b"\x07" * n)
    assert all(np.array_equal(x, y) for x, y in zip(a, b))


def test_additive_does_not_alias_the_secret() -> None:
    secret = random_elements(D, RING64)
    shares = sharing.additive_split(secret, 1)
    shares[0][0] ^= np.uint64(1)
    assert not np.array_equal(shares[0], secret)


def test_additive_refuses_out_of_range_or_wrong_dtype() -> None:
    with pytest.raises(CryptoError, match="out of range"):
        sharing.additive_split(np.array([P], dtype=np.uint64), 3, PRIME61)
    with pytest.raises(CryptoError, match="dtype uint64"):
        sharing.additive_split(np.array([1, 2], dtype=np.int64), 3)


@pytest.mark.parametrize("n", [0, -1, 2.0, True, None])
def test_additive_bad_n(n: object) -> None:
    with pytest.raises(CryptoError, match="number of shares"):
        sharing.additive_split(np.zeros(2, dtype=np.uint64), n)  # type: ignore[arg-type]


# --- Shamir --------------------------------------------------------------------


@pytest.mark.parametrize("n", [1, 2, 3, 4, 5])
def test_every_threshold_subset_for_small_n(n: int) -> None:
    secret = random_elements(D, P)
    for t in range(1, n + 1):
        shares = sharing.shamir_split(secret, n, t)
        assert len(shares) == n
        for size in range(t, n + 1):
            for subset in itertools.combinations(range(n), size):
                points = {i + 1: shares[i] for i in subset}
                assert np.array_equal(sharing.shamir_reconstruct(points), secret), (n, t, subset)
        if t >= 2:
            for subset in itertools.combinations(range(n), t - 1):
                points = {i + 1: shares[i] for i in subset}
                got = sharing.shamir_reconstruct(points)
                # t - 1 points fix no information: each coordinate matches only by chance (~2**-61).
                assert int((got == secret).sum()) == 0, (n, t, subset)


@pytest.mark.parametrize("kind", ["zero", "max", "bound-1", "negative", "encoded", "random"])
@pytest.mark.parametrize(("n", "t"), [(1, 1), (3, 2), (5, 3), (7, 7), (10, 4)])
def test_shamir_round_trip_edge_values(kind: str, n: int, t: int) -> None:
    secret = edge_secrets(P)[kind]
    shares = sharing.shamir_split(secret, n, t)
    for s in shares:
        assert s.dtype == np.uint64
        assert s.shape == secret.shape
        assert int(s.max()) < P
    first = {i + 1: shares[i] for i in range(t)}
    last = {i + 1: shares[i] for i in range(n - t, n)}
    assert np.array_equal(sharing.shamir_reconstruct(first), secret)
    assert np.array_equal(sharing.shamir_reconstruct(last), secret)


def test_shamir_shares_lie_on_a_polynomial_of_degree_t_minus_1() -> None:
    n, t = 6, 3
    secret = random_elements(D, P)
    shares = sharing.shamir_split(secret, n, t)
    points = {x: shares[x - 1] for x in (1, 2, 3)}
    for x in range(4, n + 1):
        assert np.array_equal(sharing.interpolate_at(points, x), shares[x - 1])


def test_shamir_shares_match_a_big_int_polynomial() -> None:
    coefficients = [random_elements(4, P) for _ in range(3)]
    for x in (0, 1, 2, 9, P - 1):
        got = sharing.evaluate_polynomial(coefficients, x)
        expected = [sum(int(c[i]) * x**k for k, c in enumerate(coefficients)) % P for i in range(4)]
        assert ints(got) == expected


def test_shamir_t_equals_one_gives_the_secret_to_everyone() -> None:
    secret = random_elements(D, P)
    assert all(np.array_equal(s, secret) for s in sharing.shamir_split(secret, 4, 1))


def test_shamir_randomness_can_be_injected() -> None:
    secret = random_elements(D, P)
    a = sharing.shamir_split(secret, 4, 3, rng_bytes=lambda n: b"\x01" * n)
    b = sharing.shamir_split(secret, 4, 3, rng_bytes=lambda n: b"\x01" * n)
    assert all(np.array_equal(x, y) for x, y in zip(a, b))


def test_shamir_property_random_parameters() -> None:
    @settings(max_examples=40, deadline=None)
    @given(st.integers(1, 9).flatmap(lambda n: st.tuples(st.just(n), st.integers(1, n))), st.data())
    def check(nt: tuple[int, int], data: st.DataObject) -> None:
        n, t = nt
        values = data.draw(st.lists(st.integers(0, P - 1), min_size=1, max_size=5))
        secret = np.array(values, dtype=np.uint64)
        shares = sharing.shamir_split(secret, n, t)
        chosen = data.draw(st.lists(st.integers(0, n - 1), min_size=t, max_size=n, unique=True))
        got = sharing.shamir_reconstruct({i + 1: shares[i] for i in chosen})
        assert ints(got) == values

    check()


@pytest.mark.parametrize(
    ("n", "t", "pattern"),
    [
        (0, 1, "number of shares"),
        (3, 0, "threshold"),
        (3, 4, "threshold"),
        (3, -1, "threshold"),
        (2.5, 1, "number of shares"),
        (3, 2.0, "threshold"),
        (True, 1, "number of shares"),
    ],
)
def test_shamir_bad_n_or_t(n: object, t: object, pattern: str) -> None:
    with pytest.raises(CryptoError, match=pattern):
        sharing.shamir_split(np.zeros(2, dtype=np.uint64), n, t)  # type: ignore[arg-type]


def test_shamir_refuses_the_ring() -> None:
    with pytest.raises(CryptoError, match="prime field"):
        sharing.shamir_split(np.zeros(2, dtype=np.uint64), 3, 2, RING64)
    with pytest.raises(CryptoError, match="prime field"):
        sharing.shamir_reconstruct({1: np.zeros(2, dtype=np.uint64)}, RING64)
    with pytest.raises(CryptoError, match="prime field"):
        sharing.lagrange_coefficients([1, 2], RING64)


def test_shamir_refuses_secret_outside_the_field() -> None:
    with pytest.raises(CryptoError, match="out of range"):
        sharing.shamir_split(np.array([0, P], dtype=np.uint64), 3, 2)


# --- Lagrange and reconstruction -------------------------------------------------


def test_lagrange_coefficients_known_values() -> None:
    # f(0) = 3 f(1) - 3 f(2) + f(3) for any quadratic f.
    assert sharing.lagrange_coefficients([1, 2, 3]) == [3, P - 3, 1]
    assert sharing.lagrange_coefficients([5]) == [1]


def test_lagrange_coefficients_reproduce_polynomials() -> None:
    xs = [2, 7, 11, 40]
    coefficients = [123, P - 5, 2**60, 9]

    def f(x: int) -> int:
        return int(sum(c * x**k for k, c in enumerate(coefficients)) % P)

    for at in (0, 1, 3, 7, P - 1):
        lam = sharing.lagrange_coefficients(xs, at=at)
        assert sum(c * f(x) for c, x in zip(lam, xs)) % P == f(at)
    # At a node the coefficients are the indicator of that node.
    assert sharing.lagrange_coefficients(xs, at=11) == [0, 0, 1, 0]
    assert sum(sharing.lagrange_coefficients(xs)) % P == 1


def test_lagrange_coefficients_errors() -> None:
    with pytest.raises(CryptoError, match="distinct"):
        sharing.lagrange_coefficients([1, 2, 1])
    with pytest.raises(CryptoError, match="distinct"):
        sharing.lagrange_coefficients([1, P + 1])
    with pytest.raises(CryptoError, match="at least one"):
        sharing.lagrange_coefficients([])
    with pytest.raises(CryptoError, match="ints"):
        sharing.lagrange_coefficients([1, 2.0])  # type: ignore[list-item]


def test_reconstruct_errors() -> None:
    share = np.zeros(3, dtype=np.uint64)
    with pytest.raises(CryptoError, match="at least one"):
        sharing.shamir_reconstruct({})
    with pytest.raises(CryptoError, match=r"\[1, p - 1\]"):
        sharing.shamir_reconstruct({0: share, 1: share})
    with pytest.raises(CryptoError, match=r"\[1, p - 1\]"):
        sharing.shamir_reconstruct({P: share})
    with pytest.raises(CryptoError, match="shape"):
        sharing.shamir_reconstruct({1: share, 2: np.zeros(4, dtype=np.uint64)})
    with pytest.raises(CryptoError, match="out of range"):
        sharing.shamir_reconstruct({1: np.array([P], dtype=np.uint64)})
    with pytest.raises(CryptoError, match="dtype"):
        sharing.shamir_reconstruct({1: np.array([1], dtype=np.int64)})


def test_interpolate_at_accepts_the_secret_as_a_point() -> None:
    secret = random_elements(D, P)
    shares = sharing.shamir_split(secret, 4, 2)
    points = {0: secret, 1: shares[0]}
    for x in (2, 3, 4):
        assert np.array_equal(sharing.interpolate_at(points, x), shares[x - 1])
