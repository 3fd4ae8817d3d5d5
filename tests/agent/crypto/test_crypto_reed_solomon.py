"""Reed-Solomon decoding of Shamir shares against a naive reference: every error
pattern up to the correction limit is corrected and named, every pattern up to the
detection limit is detected, and bad input is refused with a clear error."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from enclave_agent.crypto import reed_solomon as rs
from enclave_agent.crypto.field import PRIME61, RING64
from enclave_agent.crypto.prg import random_elements
from enclave_agent.crypto.sharing import lagrange_coefficients, shamir_split
from enclave_agent.errors import CryptoError

P = PRIME61


def naive_decode(xs: list[int], ys: list[int], k: int) -> tuple[int, set[int]] | None:
    """Brute force: the polynomial through some k points that agrees with all but at
    most (n - k) // 2 of them (unique when it exists). Returns (f(0), wrong xs)."""
    n, e = len(xs), (len(xs) - k) // 2
    for subset in itertools.combinations(range(n), k):
        sx = [xs[i] for i in subset]
        values = []
        for x in xs:
            coefficients = lagrange_coefficients(sx, P, at=x)
            values.append(sum(c * ys[i] for c, i in zip(coefficients, subset, strict=True)) % P)
        wrong = {xs[i] for i in range(n) if values[i] != ys[i]}
        if len(wrong) <= e:
            secret = sum(c * ys[i] for c, i in zip(lagrange_coefficients(sx, P), subset, strict=True)) % P
            return secret, wrong
    return None


def shares_of(secret: np.ndarray, n: int, k: int) -> dict[int, np.ndarray]:
    return {i + 1: s for i, s in enumerate(shamir_split(secret, n, k))}


def corrupt(points: dict[int, np.ndarray], wrong: tuple[int, ...], coords: slice = slice(None)) -> None:
    for x in wrong:
        bumped = points[x].copy()
        bumped[coords] = (bumped[coords] + random_elements(bumped[coords].size, P) % np.uint64(P - 1) + 1) % P
        points[x] = bumped


SHAPES = [(3, 1), (4, 2), (5, 2), (5, 3), (6, 2), (7, 3)]


@pytest.mark.parametrize(("n", "k"), SHAPES)
def test_consistent_shares_have_zero_syndromes_and_reconstruct(n: int, k: int) -> None:
    secret = random_elements(9, P)
    points = shares_of(secret, n, k)
    xs = sorted(points)
    assert not rs.syndromes(xs, np.stack([points[x] for x in xs]), k).any()
    decoded = rs.robust_reconstruct(points, k)
    assert np.array_equal(decoded.secret, secret) and decoded.wrong == () and decoded.checked


@pytest.mark.parametrize(("n", "k"), SHAPES)
def test_every_error_pattern_up_to_n_minus_k_is_detected(n: int, k: int) -> None:
    secret = random_elements(4, P)
    clean = shares_of(secret, n, k)
    xs = sorted(clean)
    for weight in range(1, n - k + 1):
        for wrong in itertools.combinations(xs, weight):
            points = dict(clean)
            corrupt(points, wrong, slice(1, 3))
            s = rs.syndromes(xs, np.stack([points[x] for x in xs]), k)
            assert s[:, 1:3].any(axis=0).all() and not s[:, [0, 3]].any(), wrong


@pytest.mark.parametrize(("n", "k"), SHAPES)
def test_every_correctable_pattern_is_corrected_and_named_like_the_reference(n: int, k: int) -> None:
    secret = random_elements(5, P)
    clean = shares_of(secret, n, k)
    xs = sorted(clean)
    e = rs.correctable_errors(n, k)
    assert e == (n - k) // 2
    for weight in range(0, e + 1):
        for wrong in itertools.combinations(xs, weight):
            points = dict(clean)
            corrupt(points, wrong)
            decoded = rs.robust_reconstruct(points, k)
            assert np.array_equal(decoded.secret, secret), wrong
            assert decoded.wrong == wrong
            for c in range(secret.size):
                reference = naive_decode(xs, [int(points[x][c]) for x in xs], k)
                assert reference == (int(secret[c]), set(wrong))


@pytest.mark.parametrize(("n", "k"), [(4, 2), (5, 2), (5, 3), (6, 2), (7, 3)])
def test_beyond_the_correction_limit_is_detected_not_corrected(n: int, k: int) -> None:
    secret = random_elements(6, P)
    clean = shares_of(secret, n, k)
    xs = sorted(clean)
    e = rs.correctable_errors(n, k)
    for weight in range(e + 1, n - k + 1):
        for wrong in itertools.combinations(xs, weight):
            points = dict(clean)
            corrupt(points, wrong)
            assert naive_decode(xs, [int(points[x][0]) for x in xs], k) is None
            with pytest.raises(rs.UncorrectableSharesError, match="detected, not corrected"):
                rs.robust_reconstruct(points, k)


@pytest.mark.parametrize(("n", "k"), [(2, 1), (3, 2), (4, 3)])
def test_one_spare_share_detects_but_cannot_name(n: int, k: int) -> None:
    secret = random_elements(3, P)
    for x in range(1, n + 1):
        points = shares_of(secret, n, k)
        corrupt(points, (x,))
        with pytest.raises(rs.UncorrectableSharesError, match="cannot say whose share is wrong") as info:
            rs.robust_reconstruct(points, k)
        assert info.value.suspects == ()


def test_n_equal_k_is_not_checked() -> None:
    secret = random_elements(3, P)
    points = shares_of(secret, 3, 3)
    decoded = rs.robust_reconstruct(points, 3)
    assert np.array_equal(decoded.secret, secret) and not decoded.checked


def test_different_holders_wrong_in_different_coordinates_are_all_named() -> None:
    """The union of wrong holders (4) exceeds e = 2, but each coordinate has one: the
    random combination cannot explain it, the per-coordinate batch does."""
    secret = random_elements(20, P)
    points = shares_of(secret, 7, 3)
    for x, c in [(1, 0), (2, 1), (3, 2), (4, 3), (4, 7)]:
        points[x] = points[x].copy()
        points[x][c] = (points[x][c] + np.uint64(1)) % np.uint64(P)
    decoded = rs.robust_reconstruct(points, 3)
    assert np.array_equal(decoded.secret, secret)
    assert decoded.wrong == (1, 2, 3, 4)


def test_mixed_batch_reports_which_words_decode() -> None:
    xs = [1, 2, 3, 4, 5]
    secret = random_elements(3, P)
    points = shares_of(secret, 5, 1)  # degree 0: every share equals the secret
    y = np.stack([points[x] for x in xs])
    y[0, 0] = (y[0, 0] + np.uint64(1)) % np.uint64(P)  # one error in word 0: correctable
    y[0:3, 2] = random_elements(3, P)  # three errors in word 2: beyond e = 2
    coefficients, ok = rs.berlekamp_welch(xs, y, 1, 2)
    assert ok.tolist() == [True, True, False]
    assert coefficients[:2, 0].tolist() == secret[:2].tolist()


@settings(max_examples=40, deadline=None)
@given(
    n=st.integers(2, 9),
    data=st.data(),
)
def test_random_patterns_match_the_reference(n: int, data: st.DataObject) -> None:
    k = data.draw(st.integers(1, n))
    e = rs.correctable_errors(n, k)
    weight = data.draw(st.integers(0, e))
    xs = sorted(data.draw(st.lists(st.integers(1, 50), min_size=n, max_size=n, unique=True)))
    wrong = tuple(sorted(data.draw(st.permutations(xs))[:weight]))
    secret = random_elements(2, P)
    coefficients = [secret] + [random_elements(2, P) for _ in range(k - 1)]
    points = {}
    for x in xs:
        value = [sum(int(c[j]) * pow(x, i, P) for i, c in enumerate(coefficients)) % P for j in range(2)]
        points[x] = np.array(value, dtype=np.uint64)
    corrupt(points, wrong)
    decoded = rs.robust_reconstruct(points, k)
    assert np.array_equal(decoded.secret, secret)
    assert decoded.wrong == wrong
    reference = naive_decode(xs, [int(points[x][1]) for x in xs], k)
    assert reference == (int(secret[1]), set(wrong))


def test_a_realistic_size_is_fast_enough() -> None:
    secret = random_elements(2_000, P)
    points = shares_of(secret, 10, 4)
    corrupt(points, (2, 7, 9))
    decoded = rs.robust_reconstruct(points, 4)
    assert np.array_equal(decoded.secret, secret) and decoded.wrong == (2, 7, 9)


def test_inverse() -> None:
    a = random_elements(50, P)
    a[0] = 1
    inv = rs._inverse(a)
    assert [int(x) * int(y) % P for x, y in zip(a, inv, strict=True) if x] == [1] * int((a != 0).sum())


@pytest.mark.parametrize(
    ("points", "k", "message"),
    [
        ({}, 1, "no shares"),
        ({1: np.zeros(2, dtype=np.uint64)}, 2, "cannot determine a polynomial"),
        ({0: np.zeros(2, dtype=np.uint64), 1: np.zeros(2, dtype=np.uint64)}, 1, r"\[1, p - 1\]"),
        ({1: np.zeros(2, dtype=np.uint64), 2: np.zeros(3, dtype=np.uint64)}, 1, "differ in shape"),
        ({1: np.zeros(2, dtype=np.int64)}, 1, "dtype uint64"),
        ({1: np.full(2, P, dtype=np.uint64)}, 1, "out of range"),
        ({1: np.zeros(2, dtype=np.uint64)}, 0, "positive int"),
    ],
)
def test_bad_input_is_refused(points: dict[int, np.ndarray], k: int, message: str) -> None:
    with pytest.raises(CryptoError, match=message):
        rs.robust_reconstruct(points, k)


def test_bad_arguments_of_the_building_blocks() -> None:
    with pytest.raises(CryptoError, match="prime field"):
        rs.robust_reconstruct({1: np.zeros(1, dtype=np.uint64)}, 1, RING64)
    with pytest.raises(CryptoError, match="distinct"):
        rs.syndromes([1, 1], np.zeros((2, 1), dtype=np.uint64), 1)
    with pytest.raises(CryptoError, match="shape"):
        rs.syndromes([1, 2], np.zeros((3, 1), dtype=np.uint64), 1)
    with pytest.raises(CryptoError, match="cannot correct 2 errors"):
        rs.berlekamp_welch([1, 2, 3, 4], np.zeros((4, 1), dtype=np.uint64), 1, 2)
