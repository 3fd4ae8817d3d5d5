"""Inference queries and partial results as they travel through the chain.

The gateway records one request per query; its event carries the query encrypted
for every shareholder (``epoch || entries``: one AEAD ciphertext per provider under
the pairwise key of that epoch). Each provider answers with its partial result
encrypted for the gateway. Associated data binds chain, gateway contract, both
parties and the request (its digest for the query, its id for the answer).
"""

from __future__ import annotations

import json
import math
import struct
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from enclave_agent.crypto import aead, posting
from enclave_agent.errors import ProtocolError

KIND_SCORE = "score"
KIND_STATISTIC = "statistic"
_EPOCH = struct.Struct(">Q")


@dataclass(frozen=True)
class Query:
    kind: str
    x: tuple[float, ...] = ()
    column: int = -1

    def to_bytes(self) -> bytes:
        body: dict[str, Any] = {"kind": self.kind}
        if self.kind == KIND_SCORE:
            body["x"] = list(self.x)
        else:
            body["column"] = self.column
        return json.dumps(body, separators=(",", ":"), allow_nan=False).encode()

    @classmethod
    def from_bytes(cls, raw: bytes) -> Query:
        try:
            body = json.loads(raw)
            kind = body["kind"]
            if kind == KIND_SCORE:
                x = tuple(float(v) for v in body["x"])
                if not all(math.isfinite(v) for v in x):
                    raise ValueError("non-finite feature")
                return cls(kind, x=x)
            if kind == KIND_STATISTIC:
                column = body["column"]
                if not isinstance(column, int) or isinstance(column, bool):
                    raise ValueError("column")
                return cls(kind, column=column)
        except (ValueError, KeyError, TypeError) as exc:
            raise ProtocolError("malformed query") from exc
        raise ProtocolError("unknown query kind")


def query_ad(chain_id: int, gateway_contract: str, digest: bytes, gateway: str, provider: str) -> bytes:
    return aead.share_ad(chain_id, gateway_contract, 0, gateway, provider, purpose="query:" + digest.hex())


def partial_ad(chain_id: int, gateway_contract: str, request_id: int, provider: str, gateway: str) -> bytes:
    return aead.share_ad(chain_id, gateway_contract, request_id, provider, gateway, purpose="partial")


def result_ad(request_id: int) -> bytes:
    """Associated data of a result sealed end to end for the client."""
    return b"enclave-share/result/v1/" + str(request_id).encode()


def encode_query_payload(epoch: int, entries: Sequence[tuple[str, bytes]]) -> bytes:
    return _EPOCH.pack(epoch) + posting.encode_entries(entries)


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


def partial_width(kind: str) -> int:
    return 2 if kind == KIND_SCORE else 3


def statistic_metadata(features: Sequence[str]) -> str:
    """Public description of a column-statistics aggregate ([sums, sums of squares, count])."""
    return json.dumps(
        {"version": 1, "kind": "column-stats", "features": list(features)}, separators=(",", ":")
    )


def parse_metadata(text: str) -> Mapping[str, Any]:
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise ProtocolError("model metadata is not JSON") from exc
    if not isinstance(data, dict) or not isinstance(data.get("features"), list):
        raise ProtocolError("model metadata lacks a feature list")
    return data
