"""Validation of inference requests before anything touches the chain.

Every problem is an ``InvalidRequest`` carrying the HTTP status and the JSON path
of the offending field, e.g. ``features.mean_radius: must be a finite number``.
A score row must also lie within the model's input range (``check_range``): the
magnitudes its providers published, beyond which the fixed-point score could wrap.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey

from enclave_agent.errors import EnclaveAgentError
from enclave_agent.model.ranges import InputRange

MAX_ABS_FEATURE = 1e9


class InvalidRequest(EnclaveAgentError):
    def __init__(self, status: int, field: str, problem: str, **extra: Any) -> None:
        self.status, self.field, self.problem, self.extra = status, field, problem, extra
        super().__init__(f"{field}: {problem}" if field else problem)


@dataclass(frozen=True)
class ScoreRequest:
    rows: list[list[float]]
    batch: bool


@dataclass(frozen=True)
class StatisticRequest:
    column: int
    column_name: str


def _number(value: Any, field: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise InvalidRequest(422, field, "must be a number")
    try:
        number = float(value)
    except OverflowError:  # an integer literal like 10**400
        raise InvalidRequest(422, field, f"must be within +-{MAX_ABS_FEATURE:g}") from None
    if not math.isfinite(number):
        raise InvalidRequest(422, field, "must be a finite number (no NaN or infinity)")
    if abs(number) > MAX_ABS_FEATURE:
        raise InvalidRequest(422, field, f"must be within +-{MAX_ABS_FEATURE:g}")
    return number


def _row_from_mapping(row: Mapping[str, Any], features: Sequence[str], field: str) -> list[float]:
    unknown = sorted(set(row) - set(features))
    if unknown:
        raise InvalidRequest(422, f"{field}.{unknown[0]}", "unknown feature")
    missing = [f for f in features if f not in row]
    if missing:
        raise InvalidRequest(422, f"{field}.{missing[0]}", "missing feature")
    return [_number(row[f], f"{field}.{f}") for f in features]


def _row_from_list(row: Sequence[Any], features: Sequence[str], field: str) -> list[float]:
    if len(row) != len(features):
        raise InvalidRequest(422, field, f"has {len(row)} values, the model has {len(features)} features")
    return [_number(v, f"{field}[{i}]") for i, v in enumerate(row)]


def parse_score_request(body: Mapping[str, Any], features: Sequence[str], max_batch: int) -> ScoreRequest:
    has_features, has_rows = "features" in body, "rows" in body
    if has_features == has_rows:
        raise InvalidRequest(422, "features", "give exactly one of 'features' (one row) or 'rows' (a batch)")
    if has_features:
        row = body["features"]
        if isinstance(row, Mapping):
            return ScoreRequest([_row_from_mapping(row, features, "features")], batch=False)
        if isinstance(row, list):
            return ScoreRequest([_row_from_list(row, features, "features")], batch=False)
        raise InvalidRequest(422, "features", "must be an object of feature name -> number, or a list")
    rows = body["rows"]
    if not isinstance(rows, list) or not rows:
        raise InvalidRequest(422, "rows", "must be a non-empty list")
    if len(rows) > max_batch:
        raise InvalidRequest(413, "rows", f"batch of {len(rows)} rows exceeds the limit of {max_batch}")
    parsed = []
    for i, row in enumerate(rows):
        if isinstance(row, Mapping):
            parsed.append(_row_from_mapping(row, features, f"rows[{i}]"))
        elif isinstance(row, list):
            parsed.append(_row_from_list(row, features, f"rows[{i}]"))
        else:
            raise InvalidRequest(422, f"rows[{i}]", "must be an object or a list")
    return ScoreRequest(parsed, batch=True)


def check_range(body: Mapping[str, Any], score: ScoreRequest, bounds: InputRange | None) -> None:
    """422 naming the first feature outside the model's input range and its bound
    (503 while the providers have not published the range)."""
    if bounds is None:
        raise InvalidRequest(
            503, "model", "the model's providers have not published its input range yet; try again shortly"
        )
    for i, row in enumerate(score.rows):
        k = bounds.violation(row)
        if k is None:
            continue
        name, bound = bounds.features[k], bounds.bounds[k]
        base = f"rows[{i}]" if score.batch else "features"
        sent = body["rows"][i] if score.batch else body["features"]
        field = f"{base}.{name}" if isinstance(sent, Mapping) else f"{base}[{k}]"
        raise InvalidRequest(
            422,
            field,
            f"outside the range this model answers exactly: |{name}| must be at most {bound:g}",
            feature=name,
            bound=bound,
        )


def parse_statistic_request(body: Mapping[str, Any], features: Sequence[str]) -> StatisticRequest:
    statistic = body.get("statistic")
    if not isinstance(statistic, Mapping) or not isinstance(statistic.get("column"), str):
        raise InvalidRequest(422, "statistic.column", "must name a column")
    name = statistic["column"]
    if name not in features:
        raise InvalidRequest(422, "statistic.column", f"unknown column '{name}'")
    return StatisticRequest(features.index(name), name)


def parse_x25519_key(value: Any) -> bytes | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise InvalidRequest(422, "encrypt_to", "must be a 0x-hex X25519 public key")
    try:
        raw = bytes.fromhex(value.removeprefix("0x"))
    except ValueError as exc:
        raise InvalidRequest(422, "encrypt_to", "must be a 0x-hex X25519 public key") from exc
    if len(raw) != 32:
        raise InvalidRequest(422, "encrypt_to", "must be 32 bytes")
    # A low-order point gives an all-zero shared secret, which the key exchange refuses:
    # find out now, before anything is recorded or charged, not when sealing the answer.
    try:
        X25519PrivateKey.generate().exchange(X25519PublicKey.from_public_bytes(raw))
    except ValueError:
        raise InvalidRequest(422, "encrypt_to", "is not a usable X25519 key (a low-order point)") from None
    return raw
