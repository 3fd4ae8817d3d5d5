"""Vectorised arithmetic on numpy ``uint64`` arrays modulo one of two moduli.

``RING64`` (2**64) is the ring of additive sharing: uint64 wrap-around *is* the
reduction, so addition and multiplication cost one numpy operation each.

``PRIME61`` (2**61 - 1) is the field of Shamir sharing. Shamir needs a field
(division for Lagrange coefficients); a Mersenne prime is the one that fits uint64
arithmetic without Python ints: ``2**61 = 1 (mod p)``, so a 64-bit value folds into
the field with a shift, a mask and an add, elements leave three spare bits so sums
of a few elements never overflow, and a product splits into 32-bit limbs whose
partial products stay below 2**64. Its ~60.9 bits are close to the ring's range, so
fixed-point encodings carry almost the same precision under both schemes.

Hot paths use no ``%``, no ``where=`` and no Python ints per element: reduction is
done with shifts, masks and arithmetic on comparison results. Inputs must already
be reduced (elements < modulus); ``check_elements`` validates that at trust
boundaries (decoded messages), not on every operation.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

from enclave_agent.errors import CryptoError

__all__ = [
    "PRIME61",
    "RING64",
    "SUPPORTED_MODULI",
    "Elements",
    "add",
    "as_elements",
    "check_elements",
    "check_modulus",
    "is_field",
    "mul",
    "mul_scalar",
    "neg",
    "reduce_int",
    "sub",
    "sum_arrays",
]

logger = logging.getLogger(__name__)

RING64 = 2**64
PRIME61 = 2**61 - 1
SUPPORTED_MODULI = (RING64, PRIME61)

Elements = npt.NDArray[np.uint64]

_P = np.uint64(PRIME61)
_SHIFT61 = np.uint64(61)
_SHIFT32 = np.uint64(32)
_SHIFT29 = np.uint64(29)
_MASK32 = np.uint64(2**32 - 1)
_MASK29 = np.uint64(2**29 - 1)
_EIGHT = np.uint64(8)
# Seven reduced field elements sum to at most 7 * (2**61 - 2) < 2**64.
_FIELD_SUM_BATCH = 7


def check_modulus(m: int | np.integer[Any]) -> int:
    """Return ``m`` as an int if it is a supported modulus, else raise CryptoError."""
    if isinstance(m, bool) or not isinstance(m, int | np.integer) or int(m) not in SUPPORTED_MODULI:
        raise CryptoError(f"unsupported modulus {m!r}: expected 2**64 (RING64) or 2**61 - 1 (PRIME61)")
    return int(m)


def is_field(m: int) -> bool:
    """True for the prime field (Shamir), False for the ring."""
    return check_modulus(m) == PRIME61


def as_elements(a: Any) -> Elements:
    """View ``a`` as a uint64 array; refuse any other dtype (no silent casts of secrets)."""
    arr = np.asarray(a)
    if arr.dtype != np.uint64:
        raise CryptoError(f"elements must have dtype uint64, got {arr.dtype}")
    return arr


def check_elements(a: Any, m: int) -> Elements:
    """Return ``a`` as uint64 elements after checking every element is below ``m``."""
    m = check_modulus(m)
    arr = as_elements(a)
    if m == PRIME61 and arr.size and bool((arr >= _P).any()):
        raise CryptoError("element out of range for modulus 2**61 - 1")
    return arr


def _reduce_small(s: Elements) -> Elements:
    """Reduce values < 2 * PRIME61 into [0, PRIME61) with one conditional subtract."""
    s -= (s >= _P).astype(np.uint64) * _P
    return s


def _fold(s: Elements) -> Elements:
    """Reduce any uint64 into [0, PRIME61): 2**61 = 1 (mod p) folds the top three bits."""
    s = (s & _P) + (s >> _SHIFT61)  # < 2**61 + 8
    return _reduce_small(s)


def add(a: Any, b: Any, m: int) -> Elements:
    """``a + b mod m`` elementwise."""
    m = check_modulus(m)
    x, y = as_elements(a), as_elements(b)
    s: Elements = np.add(x, y)
    if m == RING64:
        return s
    return _reduce_small(np.asarray(s))


def sub(a: Any, b: Any, m: int) -> Elements:
    """``a - b mod m`` elementwise."""
    m = check_modulus(m)
    x, y = as_elements(a), as_elements(b)
    if m == RING64:
        return np.asarray(np.subtract(x, y))
    # b < p, so p - b is in [1, p] and a + (p - b) < 2p.
    return _reduce_small(np.asarray(np.add(x, np.subtract(_P, y))))


def neg(a: Any, m: int) -> Elements:
    """``-a mod m`` elementwise."""
    m = check_modulus(m)
    x = as_elements(a)
    if m == RING64:
        return np.asarray(np.negative(x))
    return _reduce_small(np.asarray(np.subtract(_P, x)))


def _mulmod_p(x: Elements, y: Elements) -> Elements:
    """Exact ``x * y mod (2**61 - 1)`` for operands < 2**61 using 32-bit limbs.

    With x = xh * 2**32 + xl (xh < 2**29, xl < 2**32) and the same for y:
        x * y = hh * 2**64 + cross * 2**32 + ll,  hh < 2**58, cross < 2**62, ll < 2**64
    and mod p:  2**64 = 8, and cross * 2**32 = (cross >> 29) * 2**61 + (cross & (2**29-1)) * 2**32
    = (cross >> 29) + (cross & (2**29-1)) << 32. Every term is < 2**61 + small, so the
    sum stays below 2**63 before the final fold.
    """
    xh, xl = x >> _SHIFT32, x & _MASK32
    yh, yl = y >> _SHIFT32, y & _MASK32
    ll = xl * yl
    cross = xh * yl + xl * yh
    s = (xh * yh) * _EIGHT
    s += cross >> _SHIFT29
    s += (cross & _MASK29) << _SHIFT32
    s += ll & _P
    s += ll >> _SHIFT61
    return _fold(np.asarray(s))


def mul(a: Any, b: Any, m: int) -> Elements:
    """``a * b mod m`` elementwise (broadcasting like numpy)."""
    m = check_modulus(m)
    x, y = as_elements(a), as_elements(b)
    if m == RING64:
        return np.asarray(np.multiply(x, y))
    return _mulmod_p(x, y)


def mul_scalar(a: Any, k: int, m: int) -> Elements:
    """``a * k mod m`` for a Python int ``k`` (any sign or size)."""
    m = check_modulus(m)
    x = as_elements(a)
    kk = np.asarray(np.uint64(int(k) % m))
    if m == RING64:
        return np.asarray(np.multiply(x, kk))
    return _mulmod_p(x, kk)


def sum_arrays(arrays: Sequence[Any], m: int) -> Elements:
    """Sum of equally shaped element arrays mod ``m``."""
    m = check_modulus(m)
    if len(arrays) == 0:
        raise CryptoError("cannot sum an empty list of arrays")
    items = [as_elements(a) for a in arrays]
    shape = items[0].shape
    if any(a.shape != shape for a in items):
        raise CryptoError("arrays to sum differ in shape")
    acc = np.array(items[0], dtype=np.uint64, copy=True)
    if m == RING64:
        for a in items[1:]:
            np.add(acc, a, out=acc)
        return acc
    pending = 1
    for a in items[1:]:
        np.add(acc, a, out=acc)
        pending += 1
        if pending == _FIELD_SUM_BATCH:
            acc = _fold(acc)
            pending = 1
    return _fold(acc) if pending > 1 else acc


def reduce_int(x: int, m: int) -> int:
    """Reduce a Python int (possibly negative) into [0, m)."""
    return int(x) % check_modulus(m)
