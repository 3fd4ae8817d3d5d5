"""Robust reconstruction of Shamir-shared vectors: Reed-Solomon decoding over GF(2^61 - 1).

The shares ``y_i = f(x_i)`` (i = 1..n) of one coordinate, f of degree < k (k = t), are
a Reed-Solomon codeword of length n and dimension k. Every share received is used:

- **check**: the n - k parity checks of the code (the dual code is a generalised RS
  code: ``sum_i v_i x_i^j y_i = 0`` for j < n - k, with ``v_i = 1 / prod_{l != i}(x_i - x_l)``)
  are zero exactly when the shares lie on one polynomial of degree < k. Any wrong
  shares, up to n - k of them, make a syndrome non-zero: with n >= k + 1 one wrong
  share is always detected. The common case (nothing wrong) checks one CSPRNG-random
  linear combination of the coordinates first (a wrong coordinate escapes it with
  probability < n / p ~ 2^-55), then, only if it fails, every coordinate.
- **correct**: with n >= k + 2e, Berlekamp-Welch finds the polynomial that agrees
  with all but at most e shares, and so names the holders whose shares are wrong.
  Between e and n - k wrong shares the damage is detected but not corrected
  (``UncorrectableSharesError``); beyond n - k it may go unseen, as for any code.

Vectorised: syndromes are (n - k) * n vector multiply-adds over all coordinates at
once; Berlekamp-Welch solves its linear system for a batch of coordinates at once
(Gauss-Jordan with per-coordinate pivots, numpy over uint64 with the field's
shift-and-mask reduction). Coordinates whose syndromes vanish skip decoding. A wrong
holder usually spoils many coordinates in the same positions, so the decoder first
decodes one CSPRNG-random linear combination of the failing coordinates (its error
positions are the union of theirs, except with probability < n / p), erases those
positions and re-checks the rest; only if that does not explain them all are the
failing coordinates found (every syndrome) and decoded one by one (still as batches).

Pure functions importing nothing but ``field``, ``prg``, ``sharing`` and ``errors``.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from enclave_agent.crypto.field import PRIME61, Elements, add, check_elements, mul, sub
from enclave_agent.crypto.prg import random_elements
from enclave_agent.crypto.sharing import shamir_reconstruct
from enclave_agent.errors import CryptoError

__all__ = [
    "Decoded",
    "UncorrectableSharesError",
    "berlekamp_welch",
    "correctable_errors",
    "robust_reconstruct",
    "syndromes",
]

logger = logging.getLogger(__name__)

_P = PRIME61
_BW_BATCH = 512  # coordinates per Berlekamp-Welch batch (bounds memory: batch * n * (n + 1) words)
_MATMUL_WORDS = 1 << 17  # words of one block of products in _matmul (1 MiB: stays in cache)


class UncorrectableSharesError(CryptoError):
    """The shares do not lie on one polynomial of degree < k and too many are wrong to
    say which: detected, not corrected. ``suspects`` names the x-coordinates a decoder
    could still single out (empty when it cannot)."""

    def __init__(self, message: str, suspects: Sequence[int] = ()) -> None:
        super().__init__(message)
        self.suspects = tuple(suspects)


@dataclass(frozen=True, eq=False)
class Decoded:
    """The secret f(0) per coordinate and the x-coordinates whose shares were wrong."""

    secret: Elements
    wrong: tuple[int, ...]
    checked: bool  # False when n == k: nothing to check the shares against


def correctable_errors(n: int, k: int) -> int:
    """How many wrong shares of n, degree < k, Berlekamp-Welch corrects: (n - k) // 2."""
    return max(0, (n - k) // 2)


def _inverse(a: Elements) -> Elements:
    """Elementwise inverse mod p (Fermat: a^(p-2)); zero stays zero."""
    result = np.ones_like(a)
    base = a.copy()
    exponent = _P - 2
    while exponent:
        if exponent & 1:
            result = mul(result, base, _P)
        base = mul(base, base, _P)
        exponent >>= 1
    return result


def _check_points(xs: Sequence[int], k: int) -> list[int]:
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise CryptoError(f"the degree bound k must be a positive int, got {k!r}")
    if not all(isinstance(x, int | np.integer) and not isinstance(x, bool) for x in xs):
        raise CryptoError("x-coordinates must be ints")
    points = [int(x) for x in xs]
    if any(not 1 <= x < _P for x in points):
        raise CryptoError("x-coordinates must be ints in [1, p - 1]")
    if len(set(points)) != len(points):
        raise CryptoError("x-coordinates must be distinct")
    if len(points) < k:
        raise CryptoError(f"{len(points)} shares cannot determine a polynomial of degree < {k}")
    return points


def _parity_rows(xs: Sequence[int], k: int) -> list[list[int]]:
    """H[j][i] = v_i * x_i^j for j < n - k (Python ints; n is small)."""
    n = len(xs)
    weights = []
    for i, xi in enumerate(xs):
        den = 1
        for l_, xl in enumerate(xs):
            if l_ != i:
                den = den * (xi - xl) % _P
        weights.append(pow(den, -1, _P))
    return [[weights[i] * pow(xs[i], j, _P) % _P for i in range(n)] for j in range(n - k)]


def _sum_first_axis(a: Elements) -> Elements:
    """Sum mod p over the first axis, by halving (log2 steps, each one numpy add)."""
    while a.shape[0] > 1:
        if a.shape[0] % 2:
            a = np.concatenate([a, np.zeros_like(a[:1])])
        a = add(a[0::2], a[1::2], _P)
    out: Elements = a[0]
    return out


def _matmul(left: Elements, right: Elements) -> Elements:
    """``left @ right`` mod p for (r, n) and (n, d) element matrices, in column blocks."""
    r, n = left.shape
    d = right.shape[1]
    out = np.zeros((r, d), dtype=np.uint64)
    block = max(1, _MATMUL_WORDS // max(1, r * n))
    for start in range(0, d, block):
        products = mul(left[:, :, None], right[None, :, start : start + block], _P)  # (r, n, c)
        out[:, start : start + block] = _sum_first_axis(np.moveaxis(products, 1, 0))
    return out


def syndromes(xs: Sequence[int], values: Any, k: int) -> Elements:
    """The (n - k, d) parity checks of the shares ``values`` (n, d) at ``xs``; all zero
    exactly when every coordinate's shares lie on one polynomial of degree < k."""
    points = _check_points(xs, k)
    y = check_elements(values, _P)
    if y.ndim != 2 or y.shape[0] != len(points):
        raise CryptoError(f"values must have shape (n={len(points)}, d), got {y.shape}")
    rows = _parity_rows(points, k)
    if not rows:
        return np.zeros((0, y.shape[1]), dtype=np.uint64)
    return _matmul(np.array(rows, dtype=np.uint64), y)


def _solve_batch(a: Elements) -> Elements:
    """Gauss-Jordan on a batch of augmented systems ``a`` (B, rows, m + 1) mod p: one
    solution per system (free variables zero). Inconsistent systems give some vector;
    the caller verifies what it decodes."""
    batch, rows, width = a.shape
    m = width - 1
    a = a.copy()
    used = np.zeros((batch, rows), dtype=bool)
    pivot_row = np.full((batch, m), -1, dtype=np.int64)
    for j in range(m):
        candidates = (a[:, :, j] != 0) & ~used
        has = candidates.any(axis=1)
        if not has.any():
            continue
        b = np.nonzero(has)[0]
        r = candidates[b].argmax(axis=1)
        pivot = a[b, r, :]
        if b.size <= 64:  # a few words: Python's pow beats 61 vector squarings
            inverses = np.array([pow(int(v), _P - 2, _P) for v in pivot[:, j]], dtype=np.uint64)
        else:
            inverses = _inverse(pivot[:, j])
        pivot = mul(pivot, inverses[:, None], _P)
        a[b, r, :] = pivot
        factor = a[b, :, j].copy()
        factor[np.arange(b.size), r] = 0
        a[b] = sub(a[b], mul(factor[:, :, None], pivot[:, None, :], _P), _P)
        used[b, r] = True
        pivot_row[b, j] = r
    solution = np.zeros((batch, m), dtype=np.uint64)
    has_pivot = pivot_row >= 0
    bi, ji = np.nonzero(has_pivot)
    solution[bi, ji] = a[bi, pivot_row[bi, ji], m]
    return solution


def _powers(xs: Sequence[int], count: int) -> list[list[int]]:
    return [[pow(x, j, _P) for j in range(count)] for x in xs]


def _evaluate(coefficients: Elements, xs: Sequence[int]) -> Elements:
    """Evaluate polynomials (B, deg + 1), low to high, at ``xs``: (n, B), all points at once."""
    x = np.array(xs, dtype=np.uint64)[:, None]
    acc = np.repeat(coefficients[None, :, -1], len(xs), axis=0)
    for c in range(coefficients.shape[1] - 2, -1, -1):
        acc = add(mul(acc, x, _P), coefficients[None, :, c], _P)
    return acc


def berlekamp_welch(xs: Sequence[int], values: Any, k: int, e: int) -> tuple[Elements, Elements]:
    """Decode a batch of B words ``values`` (n, B) with at most ``e`` errors each.

    Returns ``(coefficients, ok)``: the (B, k) coefficients of the polynomial of
    degree < k agreeing with each word in at least n - e places, and a (B,) bool mask
    that is False where no such polynomial exists (too many errors). Needs
    n >= k + 2e.
    """
    points = _check_points(xs, k)
    n = len(points)
    if isinstance(e, bool) or not isinstance(e, int) or e < 0 or n < k + 2 * e:
        raise CryptoError(f"cannot correct {e!r} errors with n={n} shares of degree < {k}")
    y = check_elements(values, _P)
    if y.ndim != 2 or y.shape[0] != n:
        raise CryptoError(f"values must have shape (n={n}, B), got {y.shape}")
    batch = y.shape[1]
    if e == 0:
        coefficients = _interpolation_coefficients(points[:k], y[:k])
        ok = (_evaluate(coefficients, points) == y).all(axis=0)
        return coefficients, ok
    # Unknowns: Q (k + e coefficients), E's low e coefficients (E monic of degree e).
    # Row i: sum_j q_j x_i^j - y_i sum_{j<e} e_j x_i^j = y_i x_i^e.
    powers = np.array(_powers(points, k + e), dtype=np.uint64)  # (n, k + e)
    m = k + 2 * e
    system = np.zeros((batch, n, m + 1), dtype=np.uint64)
    system[:, :, : k + e] = powers[None, :, :]
    yt = y.T  # (B, n)
    for j in range(e):
        system[:, :, k + e + j] = sub(np.zeros_like(yt), mul(yt, powers[None, :, j], _P), _P)
    x_to_e = np.array([pow(x, e, _P) for x in points], dtype=np.uint64)
    system[:, :, m] = mul(yt, x_to_e[None, :], _P)
    solution = _solve_batch(system)
    q = solution[:, : k + e].copy()
    locator = np.concatenate([solution[:, k + e :], np.ones((batch, 1), dtype=np.uint64)], axis=1)
    # Q / E by long division (E monic): quotient of degree < k, remainder must vanish.
    quotient = np.zeros((batch, k), dtype=np.uint64)
    for degree in range(k + e - 1, e - 1, -1):
        lead = q[:, degree].copy()
        quotient[:, degree - e] = lead
        q[:, degree - e : degree + 1] = sub(
            q[:, degree - e : degree + 1], mul(lead[:, None], locator, _P), _P
        )
    ok = (q[:, :e] == 0).all(axis=1)
    mismatches = (_evaluate(quotient, points) != y).sum(axis=0)
    ok &= mismatches <= e
    return quotient, ok


def _interpolation_coefficients(xs: Sequence[int], y: Elements) -> Elements:
    """Coefficients (B, k) of the polynomials through (xs, y) with y (k, B)."""
    k = len(xs)
    vandermonde = np.array(_powers(xs, k), dtype=np.uint64)
    batch = y.shape[1]
    system = np.zeros((batch, k, k + 1), dtype=np.uint64)
    system[:, :, :k] = vandermonde[None]
    system[:, :, k] = y.T
    return _solve_batch(system)


def robust_reconstruct(points: Mapping[int, Any], k: int, m: int = PRIME61) -> Decoded:
    """The secret f(0) from every share ``{x: share vector}``, checked and corrected.

    Raises ``UncorrectableSharesError`` when the shares are inconsistent and more than
    ``(n - k) // 2`` are wrong (always the case for an inconsistency when n = k + 1).
    """
    if m != PRIME61:
        raise CryptoError("robust reconstruction needs the prime field 2**61 - 1")
    if not points:
        raise CryptoError("no shares to reconstruct from")
    xs = _check_points(sorted(points), k)
    arrays = [check_elements(points[x], _P) for x in xs]
    shape = arrays[0].shape
    if any(a.shape != shape for a in arrays):
        raise CryptoError("shares differ in shape")
    y = np.stack([a.reshape(-1) for a in arrays])  # (n, d)
    n, d = y.shape
    if n == k:
        secret = shamir_reconstruct(dict(zip(xs, arrays, strict=True)), _P)
        return Decoded(secret, (), False)
    # One CSPRNG-random combination of the coordinates first: its syndromes vanish when
    # every coordinate's do, and otherwise vanish only with probability < (n - k) / p
    # (the weights are fresh and secret): n * d multiplications instead of (n - k) * n * d.
    if d > 1 and _consistent(xs, y, k):
        secret = shamir_reconstruct({x: y[i] for i, x in enumerate(xs[:k])}, _P).reshape(shape)
        return Decoded(secret, (), True)
    e = correctable_errors(n, k)
    if e > 0:
        # A wrong holder usually spoils many coordinates in the same places: locate them on
        # one random combination of all coordinates, erase them, check what is left.
        wrong = _erasure_guess(xs, y, k, e)
        if wrong is not None:
            keep = [i for i, x in enumerate(xs) if x not in wrong]
            kept_xs = [xs[i] for i in keep]
            if _consistent(kept_xs, y[keep], k):
                secret = shamir_reconstruct({xs[i]: y[i] for i in keep[:k]}, _P).reshape(shape)
                logger.debug("corrected the shares at x=%s", sorted(wrong))
                return Decoded(secret, tuple(sorted(wrong)), True)
    bad = np.nonzero((syndromes(xs, y, k) != 0).any(axis=0))[0]
    if bad.size == 0:
        secret = shamir_reconstruct({x: y[i] for i, x in enumerate(xs[:k])}, _P).reshape(shape)
        return Decoded(secret, (), True)
    if e == 0:
        raise UncorrectableSharesError(
            f"the {n} shares do not lie on one polynomial of degree < {k} in {bad.size} of {d} "
            f"coordinates; {n} shares cannot say whose share is wrong (needs n >= k + 2)"
        )
    # Different holders are wrong in different coordinates: decode each failing one.
    secret = shamir_reconstruct({x: y[i] for i, x in enumerate(xs[:k])}, _P)
    named: set[int] = set()
    for start in range(0, bad.size, _BW_BATCH):
        cols = bad[start : start + _BW_BATCH]
        coefficients, ok = berlekamp_welch(xs, y[:, cols], k, e)
        if not ok.all():
            raise UncorrectableSharesError(
                f"the {n} shares do not lie on one polynomial of degree < {k} and more than {e} "
                f"are wrong in {int((~ok).sum())} coordinate(s): detected, not corrected"
            )
        secret[cols] = coefficients[:, 0]
        wrong_rows = (_evaluate(coefficients, xs) != y[:, cols]).any(axis=1)
        named |= {xs[int(i)] for i in np.nonzero(wrong_rows)[0]}
    return Decoded(secret.reshape(shape), tuple(sorted(named)), True)


def _consistent(xs: Sequence[int], y: Elements, k: int) -> bool:
    """Whether every coordinate of ``y`` (n, d) lies on a polynomial of degree < k, through
    one CSPRNG-random combination of the coordinates (wrong with probability < n / p)."""
    combined = _matmul(y, random_elements(y.shape[1], _P)[:, None]) if y.shape[1] > 1 else y
    return not syndromes(xs, combined, k).any()


def _erasure_guess(xs: Sequence[int], y_bad: Elements, k: int, e: int) -> set[int] | None:
    """Error positions of one random linear combination of the coordinates."""
    weights = random_elements(y_bad.shape[1], _P)
    combined = _matmul(y_bad, weights[:, None])[:, 0]
    coefficients, ok = berlekamp_welch(xs, combined[:, None], k, e)
    if not ok[0]:
        return None
    fitted = _evaluate(coefficients, xs)[:, 0]
    wrong = {xs[int(i)] for i in np.nonzero(fitted != combined)[0]}
    return wrong or None
