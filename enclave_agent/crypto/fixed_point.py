"""Fixed-point encoding of float64 vectors into ring or field elements.

A value ``v`` becomes the signed integer ``round(v * 2**frac_bits)`` (round half to
even), represented modulo ``m``; decoding takes the centred lift (elements above
``(m - 1) / 2`` are negative) and divides by ``2**frac_bits``.

Range: with ``headroom = h`` (how many encoded values may be summed), every encoded
integer must have magnitude below ``bound = floor(floor((m - 1) / 2) / h)``, so a sum
of up to ``h`` of them stays inside the centred range and decodes correctly. Values
at or beyond the bound, and non-finite values, are refused with
``FixedPointRangeError`` (naming the index and the bound, never the value): an
overflow is never wrapped silently.

Tolerance: each decoded value is within ``2**-(frac_bits + 1)`` of its input (one
rounding); a decoded sum of ``k`` encoded values is within ``k * 2**-(frac_bits + 1)``
of the exact sum, since ring/field addition of in-range values is exact. (Decoding
goes through float64, so integers beyond 2**53 add float64's own relative rounding.)
"""

from __future__ import annotations

import logging
import math
from fractions import Fraction
from typing import Any

import numpy as np
import numpy.typing as npt

from enclave_agent.crypto.field import PRIME61, RING64, Elements, check_elements, check_modulus
from enclave_agent.errors import CryptoError, FixedPointRangeError

__all__ = ["MAX_FRAC_BITS", "bound", "decode", "encode", "max_abs_value"]

logger = logging.getLogger(__name__)

MAX_FRAC_BITS = 62


def _check_params(frac_bits: int, modulus: int, headroom: int) -> int:
    m = check_modulus(modulus)
    if isinstance(frac_bits, bool) or not isinstance(frac_bits, int) or not 0 <= frac_bits <= MAX_FRAC_BITS:
        raise CryptoError(f"frac_bits must be an int in [0, {MAX_FRAC_BITS}], got {frac_bits!r}")
    if isinstance(headroom, bool) or not isinstance(headroom, int) or not 1 <= headroom <= (m - 1) // 2:
        raise CryptoError(f"headroom must be an int in [1, (m - 1) // 2], got {headroom!r}")
    return m


def bound(modulus: int, headroom: int = 1) -> int:
    """Exclusive bound on the magnitude of an encoded integer: floor(floor((m-1)/2) / headroom)."""
    m = _check_params(0, modulus, headroom)
    return ((m - 1) // 2) // headroom


def _float_at_least(x: int) -> float:
    """Smallest float64 >= x: for integer-valued floats r, ``r >= result`` iff ``r >= x``."""
    f = float(x)
    if Fraction(f) < x:
        f = math.nextafter(f, math.inf)
    return f


def max_abs_value(frac_bits: int, modulus: int, headroom: int = 1) -> float:
    """Largest float magnitude guaranteed to encode: (bound - 1) / 2**frac_bits, rounded down."""
    _check_params(frac_bits, modulus, headroom)
    exact = Fraction(bound(modulus, headroom) - 1, 2**frac_bits)
    f = float(exact)
    if Fraction(f) > exact:
        f = math.nextafter(f, 0.0)
    return f


def _index(flat: int, shape: tuple[int, ...]) -> int | tuple[int, ...]:
    if len(shape) == 1:
        return flat
    return tuple(int(i) for i in np.unravel_index(flat, shape))


def encode(values: Any, frac_bits: int, modulus: int, headroom: int = 1) -> Elements:
    """Encode real values as ``round(v * 2**frac_bits)`` modulo ``modulus``.

    Raises FixedPointRangeError for a non-finite value or one whose encoded
    magnitude would reach ``bound(modulus, headroom)``.
    """
    m = _check_params(frac_bits, modulus, headroom)
    arr = np.asarray(values)
    if arr.dtype.kind not in "fiu":
        raise CryptoError(f"fixed-point values must be real numbers, got dtype {arr.dtype}")
    v = arr.astype(np.float64, copy=False)
    limit = bound(m, headroom)
    finite = np.isfinite(v)
    if not bool(finite.all()):
        at = _index(int(np.argmin(finite.ravel())), v.shape)
        raise FixedPointRangeError(f"fixed-point value at index {at} is not finite")
    scaled = np.rint(v * float(2**frac_bits))
    over = np.abs(scaled) >= _float_at_least(limit)
    if bool(over.any()):
        at = _index(int(np.argmax(over.ravel())), v.shape)
        raise FixedPointRangeError(
            f"fixed-point value at index {at} is out of range: |value| * 2**{frac_bits} must stay "
            f"below {limit} (|value| <= {max_abs_value(frac_bits, m, headroom)!r} with headroom {headroom})"
        )
    # |scaled| < limit <= 2**63 - 1, so the int64 conversion is exact.
    ints = scaled.astype(np.int64)
    if m == RING64:
        return ints.view(np.uint64)  # two's complement is the residue mod 2**64
    ints += (ints < 0).astype(np.int64) * np.int64(PRIME61)
    return ints.view(np.uint64)


def decode(elements: Any, frac_bits: int, modulus: int) -> npt.NDArray[np.float64]:
    """Centred lift of ``elements`` divided by ``2**frac_bits``."""
    m = _check_params(frac_bits, modulus, 1)
    try:
        x = check_elements(elements, m)
    except CryptoError as exc:
        raise CryptoError(f"cannot decode fixed-point elements: {exc}") from None
    if m == RING64:
        signed = x.view(np.int64)
    else:
        signed = x.astype(np.int64)
        signed -= (x > np.uint64((m - 1) // 2)).astype(np.int64) * np.int64(PRIME61)
    out: npt.NDArray[np.float64] = signed.astype(np.float64) / float(2**frac_bits)
    return out
