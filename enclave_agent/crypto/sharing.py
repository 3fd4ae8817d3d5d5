"""Additive (n-of-n) and Shamir (t-of-n) secret sharing of element vectors.

Additive: n - 1 shares are uniformly random, the last is ``secret - sum(others)``;
any n - 1 shares are independent of the secret. Works mod RING64 or PRIME61.

Shamir (PRIME61 only; it needs division): share i (0-based) is ``f(i + 1)`` of a
random polynomial of degree t - 1 with ``f(0) = secret``, one polynomial per vector
coordinate, evaluated for all coordinates at once. Any t shares determine f(0) by
Lagrange interpolation; any t - 1 are uniformly random and independent of it.

All randomness comes from ``prg.random_elements`` (AES-CTR keyed by the OS CSPRNG).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from enclave_agent.crypto.field import (
    PRIME61,
    RING64,
    Elements,
    add,
    check_elements,
    check_modulus,
    mul_scalar,
    sub,
    sum_arrays,
)
from enclave_agent.crypto.prg import random_elements
from enclave_agent.errors import CryptoError

__all__ = [
    "additive_split",
    "check_threshold",
    "combine_additive",
    "evaluate_polynomial",
    "interpolate_at",
    "lagrange_coefficients",
    "shamir_reconstruct",
    "shamir_split",
]

logger = logging.getLogger(__name__)

RngBytes = Callable[[int], bytes]


def _is_int(x: object) -> bool:
    return isinstance(x, int | np.integer) and not isinstance(x, bool)


def check_threshold(n: int, t: int) -> None:
    """Raise CryptoError unless 1 <= t <= n and n is a usable number of parties."""
    if not _is_int(n) or not 1 <= int(n) < PRIME61:
        raise CryptoError(f"number of shares n must be a positive int, got {n!r}")
    if not _is_int(t) or not 1 <= int(t) <= int(n):
        raise CryptoError(f"threshold t must be an int in [1, n={n}], got {t!r}")


def _require_field(m: int) -> int:
    m = check_modulus(m)
    if m != PRIME61:
        raise CryptoError("Shamir sharing needs the prime field 2**61 - 1, not the ring 2**64")
    return m


def additive_split(
    secret: Any, n: int, m: int = RING64, *, rng_bytes: RngBytes | None = None
) -> list[Elements]:
    """Split ``secret`` into ``n`` shares whose sum mod ``m`` is the secret."""
    m = check_modulus(m)
    check_threshold(n, 1)
    x = check_elements(secret, m)
    shares = [random_elements(x.size, m, rng_bytes=rng_bytes).reshape(x.shape) for _ in range(int(n) - 1)]
    last = sub(x, sum_arrays(shares, m), m) if shares else np.array(x, dtype=np.uint64, copy=True)
    shares.append(last)
    return shares


def combine_additive(shares: Sequence[Any], m: int = RING64) -> Elements:
    """The secret from all additive shares: their sum mod ``m``."""
    return sum_arrays(shares, m)


def evaluate_polynomial(coefficients: Sequence[Elements], x: int, m: int = PRIME61) -> Elements:
    """``sum_k coefficients[k] * x**k`` per coordinate (Horner), for a scalar point ``x``."""
    m = _require_field(m)
    if not coefficients:
        raise CryptoError("a polynomial needs at least one coefficient")
    acc = np.array(coefficients[-1], dtype=np.uint64, copy=True)
    for c in reversed(coefficients[:-1]):
        acc = add(mul_scalar(acc, x, m), c, m)
    return acc


def shamir_split(
    secret: Any, n: int, t: int, m: int = PRIME61, *, rng_bytes: RngBytes | None = None
) -> list[Elements]:
    """Shares ``f(1), ..., f(n)`` of a random degree ``t - 1`` polynomial with ``f(0) = secret``."""
    m = _require_field(m)
    check_threshold(n, t)
    x = check_elements(secret, m)
    coefficients = [x] + [
        random_elements(x.size, m, rng_bytes=rng_bytes).reshape(x.shape) for _ in range(int(t) - 1)
    ]
    return [evaluate_polynomial(coefficients, i + 1, m) for i in range(int(n))]


def lagrange_coefficients(xs: Sequence[int], m: int = PRIME61, at: int = 0) -> list[int]:
    """Coefficients l_i with ``f(at) = sum_i l_i * f(xs[i])`` for any f of degree < len(xs)."""
    m = _require_field(m)
    if len(xs) == 0:
        raise CryptoError("Lagrange interpolation needs at least one point")
    if not all(_is_int(x) for x in xs):
        raise CryptoError("interpolation points must be ints")
    points = [int(x) % m for x in xs]
    if len(set(points)) != len(points):
        raise CryptoError("interpolation points must be distinct mod p")
    target = int(at) % m
    coefficients = []
    for i, xi in enumerate(points):
        num, den = 1, 1
        for j, xj in enumerate(points):
            if j != i:
                num = num * (target - xj) % m
                den = den * (xi - xj) % m
        coefficients.append(num * pow(den, -1, m) % m)
    return coefficients


def interpolate_at(points: Mapping[int, Any], at: int, m: int = PRIME61) -> Elements:
    """``f(at)`` from the points ``{x: f(x)}`` (x in [0, p - 1]) of a polynomial of degree < len(points)."""
    return _interpolate(points, at, m, lowest_x=0)


def shamir_reconstruct(points: Mapping[int, Any], m: int = PRIME61) -> Elements:
    """The secret ``f(0)`` from ``{x: share}`` with x = participant index + 1 (any t points)."""
    return _interpolate(points, 0, m, lowest_x=1)


def _interpolate(points: Mapping[int, Any], at: int, m: int, lowest_x: int) -> Elements:
    m = _require_field(m)
    if not points:
        raise CryptoError("Shamir interpolation needs at least one point")
    xs = list(points)
    if any(not _is_int(x) or not lowest_x <= int(x) < m for x in xs):
        raise CryptoError(f"x-coordinates must be ints in [{lowest_x}, p - 1]")
    if not _is_int(at):
        raise CryptoError("the interpolation target must be an int")
    ys = [check_elements(points[x], m) for x in xs]
    if any(y.shape != ys[0].shape for y in ys):
        raise CryptoError("shares differ in shape")
    coefficients = lagrange_coefficients(xs, m, at)
    return sum_arrays([mul_scalar(y, c, m) for y, c in zip(ys, coefficients, strict=True)], m)
