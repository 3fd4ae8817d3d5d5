"""The input range a secret-shared logistic model answers exactly, in the query's
own units, as the providers' enclaves publish it.

Inside the enclaves a query row x becomes ``z = (x - mean) / std`` (joint scaling)
and then the words ``round(z * 2**g)`` that are scored on the shares
(``enclave_agent.crypto.ranges`` bounds those words). Here that bound becomes one
magnitude per feature: ``|x_k| <= bound_k`` implies ``|z_k| <= standardised_bound``
because ``|x_k - mean_k| <= |x_k| + |mean_k|``, so

    bound_k = nice_floor((standardised_bound * std_k - |mean_k|) * (1 - SAFETY))

(``SAFETY`` covers float64 rounding of the standardisation). ``nice_floor`` rounds
down to 1, 2 or 5 times a power of ten: a client reads a plain number, and the
published bounds say little about the joint scaling (a feature's bound moves only
when its ``Z * std - |mean|`` crosses such a step). A feature whose mean lies more
than ``standardised_bound`` standard deviations from zero gets bound 0, which admits
no value (not even 0, which would be that far from the mean): the model answers no
row; such a column should be centred in the data.

``InputRange`` is what travels on chain (``ModelRangePublished``) and what
``GET /v1/models`` shows: no weight, mean or std, only the bounds, the query's
fraction bits (the gateway needs them to read the score), the standardised bound and
the public assumptions (a power of two at or above the row count, the L1 bound of the
weights).
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from enclave_agent.crypto.ranges import model_magnitude, query_bits, query_value_bound, query_word_bound
from enclave_agent.errors import ProtocolError

__all__ = ["RANGE_VERSION", "SAFETY", "InputRange", "nice_floor", "score_range"]

RANGE_VERSION = 1
SAFETY = 2.0**-20


def nice_floor(x: float) -> float:
    """Largest number of the form {1, 2, 5} * 10**e not above ``x`` (0.0 for x <= 0)."""
    if not math.isfinite(x):
        raise ValueError("nice_floor needs a finite number")
    if x <= 0:
        return 0.0
    exponent = math.floor(math.log10(x))
    for e in (exponent + 1, exponent, exponent - 1):  # log10 may be off by one near powers of ten
        for mantissa in (5, 2, 1):
            value = float(f"{mantissa}e{e}")
            if value <= x:
                return value
    return 0.0  # pragma: no cover - log10 is never off by two


@dataclass(frozen=True)
class InputRange:
    """Per-feature magnitudes a score model answers exactly, and how its queries are encoded."""

    features: tuple[str, ...]
    bounds: tuple[float, ...]
    query_bits: int
    word_bound: int
    standardised_bound: float
    count_bound: int
    weight_bound: float

    def __post_init__(self) -> None:
        if len(self.features) != len(self.bounds) or not self.features:
            raise ProtocolError("an input range needs one bound per feature")
        if not all(math.isfinite(b) and b >= 0 for b in self.bounds):
            raise ProtocolError("input bounds must be finite and not negative")
        if not (
            0 <= self.query_bits <= 62
            and self.word_bound >= 2**self.query_bits
            and self.count_bound >= 1
            and self.weight_bound > 0
        ):
            raise ProtocolError("input range has invalid encoding parameters")

    def violation(self, row: Sequence[float]) -> int | None:
        """Index of the first feature of ``row`` beyond its bound (NaN counts as beyond;
        a bound of 0 admits no value at all, see the module docstring)."""
        for k, (value, bound) in enumerate(zip(row, self.bounds, strict=True)):
            if bound == 0 or not abs(value) <= bound:
                return k
        return None

    def to_json(self) -> str:
        return json.dumps(
            {
                "version": RANGE_VERSION,
                "features": list(self.features),
                "bounds": list(self.bounds),
                "query_bits": self.query_bits,
                "word_bound": self.word_bound,
                "standardised_bound": self.standardised_bound,
                "count_bound": self.count_bound,
                "weight_bound": self.weight_bound,
            },
            separators=(",", ":"),
        )

    def public(self) -> dict[str, Any]:
        """The range as ``GET /v1/models`` shows it."""
        return {
            "bounds": dict(zip(self.features, self.bounds, strict=True)),
            "standardised_bound": self.standardised_bound,
            "query_frac_bits": self.query_bits,
            "count_bound": self.count_bound,
            "weight_l1_bound": self.weight_bound,
        }

    @classmethod
    def from_json(cls, text: str) -> InputRange:
        try:
            data = json.loads(text)
            if not isinstance(data, dict) or data.get("version") != RANGE_VERSION:
                raise ProtocolError(f"an input range must be a version {RANGE_VERSION} object")
            features = data["features"]
            bounds = data["bounds"]
            if not isinstance(features, list) or not all(isinstance(f, str) for f in features):
                raise ProtocolError("input range features must be strings")
            if not isinstance(bounds, list) or not all(
                isinstance(b, int | float) and not isinstance(b, bool) for b in bounds
            ):
                raise ProtocolError("input range bounds must be numbers")
            ints = (data["query_bits"], data["word_bound"], data["count_bound"])
            if not all(isinstance(v, int) and not isinstance(v, bool) for v in ints):
                raise ProtocolError("input range encoding parameters must be integers")
            return cls(
                features=tuple(features),
                bounds=tuple(float(b) for b in bounds),
                query_bits=int(data["query_bits"]),
                word_bound=int(data["word_bound"]),
                standardised_bound=float(data["standardised_bound"]),
                count_bound=int(data["count_bound"]),
                weight_bound=float(data["weight_bound"]),
            )
        except (ValueError, KeyError, TypeError) as exc:
            raise ProtocolError("malformed input range") from exc

    @staticmethod
    def agreed(ranges: Iterable[InputRange]) -> InputRange:
        """What every publisher guarantees: the smallest bound per feature. The
        encoding (fraction bits, assumptions, features) must be the same in all."""
        items = list(ranges)
        if not items:
            raise ProtocolError("no input range to agree on")
        first = items[0]

        def encoding(r: InputRange) -> tuple[Any, ...]:
            return (r.features, r.query_bits, r.word_bound, r.count_bound, r.weight_bound)

        if any(encoding(r) != encoding(first) for r in items):
            raise ProtocolError("the providers published input ranges with different encodings")
        bounds = tuple(min(r.bounds[k] for r in items) for k in range(len(first.features)))
        z = min(r.standardised_bound for r in items)
        return InputRange(
            first.features,
            bounds,
            first.query_bits,
            first.word_bound,
            z,
            first.count_bound,
            first.weight_bound,
        )


def score_range(
    features: Sequence[str],
    mean: np.ndarray,
    std: np.ndarray,
    *,
    count: int,
    frac_bits: int,
    modulus: int,
    contributors: int,
    weight_bound: float,
) -> InputRange:
    """The input range of a model over ``features`` scaled with the joint (mean, std)
    of ``count`` rows, held in a round of ``frac_bits``/``modulus`` with
    ``contributors`` contributions whose weights obey ``|w|_1 + |b| <= weight_bound``.

    Raises FixedPointRangeError when the round's encoding leaves no room for a query.
    """
    f = len(features)
    mean = np.asarray(mean, dtype=np.float64).reshape(-1)
    std = np.asarray(std, dtype=np.float64).reshape(-1)
    if mean.shape != (f,) or std.shape != (f,):
        raise ProtocolError(f"scaling of length {mean.shape[0]} for {f} features")
    count_bound = 1 << max(int(count) - 1, 0).bit_length()  # a power of two >= count
    magnitude = model_magnitude(
        count_bound=count_bound,
        weight_bound=weight_bound,
        frac_bits=frac_bits,
        contributors=contributors,
        elements=f + 1,
    )
    word_bound = query_word_bound(modulus, magnitude)
    bits = query_bits(word_bound)
    z = query_value_bound(word_bound, bits)
    scale = np.where(std == 0.0, 1.0, std)  # as standardise() does
    bounds = tuple(
        nice_floor(float((z * s - abs(m)) * (1.0 - SAFETY))) for m, s in zip(mean, scale, strict=True)
    )
    return InputRange(
        tuple(str(n) for n in features), bounds, bits, word_bound, z, count_bound, float(weight_bound)
    )
