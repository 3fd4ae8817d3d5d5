"""Inference queries and partial results as they travel through the chain.

The gateway records one request per query (a statistic, or up to
``rows_per_request`` rows to score); its event carries the query encrypted
for every shareholder (``epoch || entries``: one AEAD ciphertext per provider under
the pairwise key of that epoch). Each provider answers with its partial result
encrypted for the gateway. Associated data binds chain, gateway contract, both
parties and the request (its digest for the query, its id for the answer).
"""

from __future__ import annotations

import json
import struct
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from enclave_agent.crypto import aead, posting
from enclave_agent.errors import ProtocolError

KIND_SCORE = "score"
KIND_STATISTIC = "statistic"
_EPOCH = struct.Struct(">Q")


MAX_ROWS = 256  # InferenceGateway.MAX_ROWS
QUERY_BYTES_BUDGET = 96 * 1024  # of a request's encrypted queries: under the 128 KiB mempool limit
_SCORE = struct.Struct(">BHH")  # kind 1, rows, features; then rows x features float64
_STATISTIC = struct.Struct(">BH")  # kind 2, column


@dataclass(frozen=True)
class Query:
    """What a request asks every shareholder: rows to score, or a column statistic."""

    kind: str
    rows: tuple[tuple[float, ...], ...] = ()
    column: int = -1

    @property
    def row_count(self) -> int:
        return len(self.rows) if self.kind == KIND_SCORE else 1

    def split(self, size: int) -> list[Query]:
        """Requests of at most ``size`` rows (a statistic stays whole)."""
        if self.kind != KIND_SCORE:
            return [self]
        return [Query(KIND_SCORE, rows=self.rows[i : i + size]) for i in range(0, len(self.rows), size)]

    def to_bytes(self) -> bytes:
        if self.kind == KIND_STATISTIC:
            return _STATISTIC.pack(2, self.column)
        width = len(self.rows[0]) if self.rows else 0
        if not 1 <= len(self.rows) <= MAX_ROWS or width == 0 or any(len(r) != width for r in self.rows):
            raise ProtocolError(f"a score query needs 1..{MAX_ROWS} rows of one non-zero width")
        values = np.asarray(self.rows, dtype=">f8")
        if not np.all(np.isfinite(values)):
            raise ProtocolError("a score query holds finite numbers only")
        return _SCORE.pack(1, len(self.rows), width) + values.tobytes()

    @classmethod
    def from_bytes(cls, raw: bytes) -> Query:
        if raw[:1] == b"\x02" and len(raw) == _STATISTIC.size:
            return cls(KIND_STATISTIC, column=_STATISTIC.unpack(raw)[1])
        if raw[:1] == b"\x01" and len(raw) >= _SCORE.size:
            _, rows, width = _SCORE.unpack_from(raw)
            body = raw[_SCORE.size :]
            if 1 <= rows <= MAX_ROWS and width > 0 and len(body) == 8 * rows * width:
                values = np.frombuffer(body, dtype=">f8").reshape(rows, width)
                if np.all(np.isfinite(values)):
                    return cls(KIND_SCORE, rows=tuple(tuple(map(float, row)) for row in values))
        raise ProtocolError("malformed query")


def rows_per_request(features: int, holders: int) -> int:
    """How many rows one request carries so that its encrypted queries (one copy per
    holder: a float64 per feature, plus per-copy framing) stay within the budget."""
    framing = 256 + holders * 128  # epoch, entry headers, AEAD nonce and tag
    return max(1, min(MAX_ROWS, (QUERY_BYTES_BUDGET - framing) // (8 * features * holders)))


def query_ad(chain_id: int, gateway_contract: str, digest: bytes, gateway: str, provider: str) -> bytes:
    return aead.share_ad(chain_id, gateway_contract, 0, gateway, provider, purpose="query:" + digest.hex())


def partial_ad(chain_id: int, gateway_contract: str, request_id: int, provider: str, gateway: str) -> bytes:
    return aead.share_ad(chain_id, gateway_contract, request_id, provider, gateway, purpose="partial")


def result_ad(request_id: int, row: int) -> bytes:
    """Associated data of one row's result sealed end to end for the client."""
    return f"enclave-share/result/v2/{request_id}/{row}".encode()


def encode_query_payload(epoch: int, entries: Sequence[tuple[str, bytes]]) -> bytes:
    return _EPOCH.pack(epoch) + posting.encode_entries(entries)


def query_entry(payload: bytes, recipient: str) -> tuple[int, bytes | None]:
    """(epoch, the query ciphertext for ``recipient`` or None) of a query payload."""
    if len(payload) < _EPOCH.size:
        raise ProtocolError("query payload too short")
    (epoch,) = _EPOCH.unpack_from(payload)
    return epoch, posting.find_entry(memoryview(payload)[_EPOCH.size :], recipient)


def decode_query_payload(payload: bytes) -> tuple[int, dict[str, bytes]]:
    if len(payload) < _EPOCH.size:
        raise ProtocolError("query payload too short")
    (epoch,) = _EPOCH.unpack_from(payload)
    return epoch, dict(posting.decode_entries(payload[_EPOCH.size :]))


def encode_partial(values: Sequence[int]) -> bytes:
    if not all(0 <= v < 2**64 for v in values):
        raise ProtocolError("partial value out of range")
    return b"".join(v.to_bytes(8, "big") for v in values)


def decode_partial(raw: bytes, width: int) -> list[int]:
    if len(raw) != 8 * width:
        raise ProtocolError(f"partial result has {len(raw)} bytes, expected {8 * width}")
    return [int.from_bytes(raw[i : i + 8], "big") for i in range(0, len(raw), 8)]


def partial_width(kind: str, rows: int = 1) -> int:
    """Values in a partial result: (numerator, count) per scored row, or (sum, sum of
    squares, count) for a statistic."""
    return 2 * rows if kind == KIND_SCORE else 3


def statistic_metadata(
    features: Sequence[str], units: Mapping[str, str] | None = None, description: str = ""
) -> str:
    """Public description of a column-statistics aggregate ([sums, sums of squares, count]),
    optionally with each column's unit and a description (for the model card)."""
    data: dict[str, Any] = {"version": 1, "kind": "column-stats", "features": list(features)}
    if units:
        unknown = sorted(set(units) - set(features))
        if unknown:
            raise ProtocolError(f"units name an unknown column '{unknown[0]}'")
        data["units"] = dict(units)
    if description:
        data["description"] = description
    return json.dumps(data, separators=(",", ":"))


def parse_metadata(text: str) -> Mapping[str, Any]:
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise ProtocolError("model metadata is not JSON") from exc
    if not isinstance(data, dict) or not isinstance(data.get("features"), list):
        raise ProtocolError("model metadata lacks a feature list")
    return data
