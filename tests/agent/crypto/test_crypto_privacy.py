"""The trust model's coalition line: up to n-1 additive (t-1 Shamir) shares say
nothing about the secret. Tested two ways: every coalition's view is consistent
with any other secret, and each share (and each pair a coalition of two holds)
is uniformly distributed whatever the secret."""

from __future__ import annotations

from itertools import combinations

import numpy as np
import pytest

from enclave_agent.crypto.field import PRIME61, RING64, add, sub, sum_arrays
from enclave_agent.crypto.sharing import additive_split, interpolate_at, shamir_reconstruct, shamir_split

D = 4096


def _chi_square_uniform_bytes(values: np.ndarray) -> float:
    """Chi-square statistic of the low byte against uniform (255 degrees of freedom)."""
    counts = np.bincount((values & np.uint64(0xFF)).astype(np.int64), minlength=256)
    expected = values.size / 256
    return float(((counts - expected) ** 2 / expected).sum())


@pytest.mark.parametrize("secret_value", [0, 2**63 - 1])
def test_additive_shares_and_pairs_are_uniform_whatever_the_secret(secret_value: int) -> None:
    secret = np.full(D, secret_value, dtype=np.uint64)
    shares = additive_split(secret, 3, RING64)
    # 99.9th percentile of chi-square(255) is about 330: a leak of the constant
    # secret would concentrate every count in one bucket (statistic ~ 255 * D).
    for share in shares:
        assert _chi_square_uniform_bytes(share) < 400
    for a, b in combinations(shares, 2):
        assert _chi_square_uniform_bytes(a - b) < 400  # uint64 wrap-around difference


@pytest.mark.parametrize("n", [2, 3, 5])
def test_every_additive_coalition_view_fits_any_other_secret(n: int) -> None:
    rng = np.random.default_rng(1)  # test data only; shares come from the CSPRNG
    a = rng.integers(0, 2**63, size=8, dtype=np.uint64)
    b = rng.integers(0, 2**63, size=8, dtype=np.uint64)
    shares = additive_split(a, n, RING64)
    for missing in range(n):
        coalition = [s for i, s in enumerate(shares) if i != missing]
        completion = sub(b, sum_arrays(coalition, RING64), RING64)
        assert np.array_equal(add(sum_arrays(coalition, RING64), completion, RING64), b)


@pytest.mark.parametrize(("n", "t"), [(3, 2), (5, 3), (5, 5)])
def test_every_shamir_coalition_of_t_minus_1_fits_any_other_secret(n: int, t: int) -> None:
    rng = np.random.default_rng(2)
    a = rng.integers(0, PRIME61, size=8, dtype=np.uint64)
    b = rng.integers(0, PRIME61, size=8, dtype=np.uint64)
    shares = shamir_split(a, n, t, PRIME61)
    for coalition in combinations(range(1, n + 1), t - 1):
        points = {x: shares[x - 1] for x in coalition} | {0: b}
        # The unique polynomial of degree t-1 through (0, b) and the coalition's points
        # gives the coalition exactly the shares it holds and reconstructs to b.
        others = [x for x in range(1, n + 1) if x not in coalition][:1]
        fake = {x: interpolate_at(points, x, PRIME61) for x in others}
        view = {x: shares[x - 1] for x in coalition} | fake
        assert np.array_equal(shamir_reconstruct(view, PRIME61), b)


def test_shamir_single_shares_are_uniform_whatever_the_secret() -> None:
    for value in (0, PRIME61 - 1):
        shares = shamir_split(np.full(D, value, dtype=np.uint64), 3, 2, PRIME61)
        for share in shares:
            assert _chi_square_uniform_bytes(share) < 400
