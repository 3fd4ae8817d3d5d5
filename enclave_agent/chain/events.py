"""Decoded contract events: the agents' API to the chain."""

from __future__ import annotations

import logging
import weakref
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from eth_abi.abi import decode
from eth_abi.exceptions import DecodingError
from hexbytes import HexBytes
from web3 import Web3
from web3.types import LogReceipt

from enclave_agent.chain.client import Contracts
from enclave_agent.errors import ChainError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ChainEvent:
    """One decoded log. ``args`` holds plain values: dicts for structs, tuples for
    arrays, ``bytes`` for bytesN/bytes, checksummed strings for addresses."""

    contract: str
    name: str
    args: dict[str, Any]
    block_number: int
    tx_hash: str
    log_index: int
    block_hash: str = ""  # hex without 0x; what a reorganisation would change

    @property
    def event_id(self) -> str:
        """Unique per log on one chain history: ``<tx hash>:<log index>``."""
        return f"{self.tx_hash}:{self.log_index}"

    def __hash__(self) -> int:  # args holds dicts; identity is the log position
        return hash(self.event_id)


# A converter turns what eth_abi decodes into the plain value ``ChainEvent.args`` holds.
Converter = Callable[[Any], Any]


def _identity(value: Any) -> Any:
    return value


@lru_cache(maxsize=4096)
def _checksum(address: str) -> str:
    return str(Web3.to_checksum_address(address))


def _converter(param: Mapping[str, Any]) -> Converter:
    """How to make a decoded value of ``param`` plain (as web3 would name and format it)."""
    typ = str(param["type"])
    if typ.endswith("]"):  # an array: convert each element as the type without its last [..]
        element = _converter({**param, "type": typ[: typ.rindex("[")]})
        return lambda values: tuple(element(v) for v in values)
    if typ == "tuple":
        fields = [(str(c["name"]), _converter(c)) for c in param.get("components", ())]
        return lambda values: {name: convert(v) for (name, convert), v in zip(fields, values, strict=True)}
    if typ == "address":
        return _checksum
    if typ.startswith("bytes"):
        return bytes
    return _identity


def _is_dynamic(param: Mapping[str, Any]) -> bool:
    typ = str(param["type"])
    return typ in ("string", "bytes") or typ.endswith("]") or typ.startswith("tuple")


@dataclass(frozen=True)
class _EventCodec:
    """One event's layout: which arguments are topics, which are data, and their converters."""

    contract: str
    name: str
    indexed: tuple[tuple[str, str, Converter], ...]  # (name, abi type or "" for a hashed topic, converter)
    data_names: tuple[str, ...]
    data_types: tuple[str, ...]
    data_converters: tuple[Converter, ...]

    @classmethod
    def of(cls, contract: str, entry: Mapping[str, Any]) -> _EventCodec:
        inputs = list(entry.get("inputs", ()))
        # A dynamic indexed argument is only its keccak hash in the topic: kept as bytes.
        indexed = tuple(
            (str(i["name"]), "", bytes) if _is_dynamic(i) else (str(i["name"]), _canonical(i), _converter(i))
            for i in inputs
            if i.get("indexed")
        )
        data = [i for i in inputs if not i.get("indexed")]
        return cls(
            contract,
            str(entry["name"]),
            indexed,
            tuple(str(i["name"]) for i in data),
            tuple(_canonical(i) for i in data),
            tuple(_converter(i) for i in data),
        )

    def args(self, topics: Sequence[bytes], data: bytes) -> dict[str, Any]:
        if len(topics) != len(self.indexed):
            raise ValueError(f"{len(topics)} indexed topics, the event has {len(self.indexed)}")
        out: dict[str, Any] = {}
        for (name, typ, convert), topic in zip(self.indexed, topics, strict=True):
            out[name] = convert(topic if not typ else decode([typ], topic)[0])
        values = decode(self.data_types, data)
        for name, convert, value in zip(self.data_names, self.data_converters, values, strict=True):
            out[name] = convert(value)
        return out


# (address, topic0) -> the event's codec, built once per Contracts.
_Index = dict[tuple[str, bytes], "_EventCodec"]
_indexes: weakref.WeakKeyDictionary[Contracts, _Index] = weakref.WeakKeyDictionary()


def _index(contracts: Contracts) -> _Index:
    index = _indexes.get(contracts)
    if index is None:
        index = {}
        for name, abi in contracts.abis().items():
            address = contracts.by_name[name].address
            for entry in abi:
                if entry.get("type") != "event" or entry.get("anonymous"):
                    continue
                types = ",".join(_canonical(i) for i in entry.get("inputs", ()))
                topic0 = bytes(Web3.keccak(text=f"{entry['name']}({types})"))
                index[(address, topic0)] = _EventCodec.of(name, entry)
        _indexes[contracts] = index
    return index


def _canonical(param: Mapping[str, Any]) -> str:
    typ = str(param["type"])
    if typ.startswith("tuple"):
        inner = ",".join(_canonical(c) for c in param.get("components", ()))
        return f"({inner}){typ[len('tuple') :]}"
    return typ


def _bytes(value: Any) -> bytes:
    """A log field as bytes: a JSON-RPC hex string, or web3's HexBytes."""
    return bytes(HexBytes(value))


def _int(value: Any) -> int:
    """A log field as an int: a JSON-RPC hex quantity, or web3's int."""
    return int(value, 16) if isinstance(value, str) else int(value)


def decode_logs(contracts: Contracts, logs: Iterable[LogReceipt | Mapping[str, Any]]) -> list[ChainEvent]:
    """Decode the logs of our three contracts; others and unknown topics are skipped.

    ``logs`` are as ``eth_getLogs`` returns them, raw (hex strings) or formatted by web3.
    A log of ours that does not decode is a ChainError: the node sent something our
    contracts cannot have emitted."""
    index = _index(contracts)
    events: list[ChainEvent] = []
    for entry in logs:
        topics = [_bytes(t) for t in entry.get("topics") or ()]
        if not topics:
            continue
        address = _checksum(str(entry["address"]))
        codec = index.get((address, topics[0]))
        if codec is None:
            log.debug("skipping log with unknown topic at %s", address)
            continue
        block_number, log_index = _int(entry["blockNumber"]), _int(entry["logIndex"])
        try:
            args = codec.args(topics[1:], _bytes(entry["data"]))
        except (ValueError, DecodingError) as exc:
            raise ChainError(
                f"log {log_index} of block {block_number} is not a valid {codec.contract}.{codec.name}: {exc}"
            ) from exc
        events.append(
            ChainEvent(
                contract=codec.contract,
                name=codec.name,
                args=args,
                block_number=block_number,
                tx_hash="0x" + _bytes(entry["transactionHash"]).hex(),
                log_index=log_index,
                block_hash=_bytes(entry["blockHash"]).hex(),
            )
        )
    return events
