"""Decoded contract events: the agents' API to the chain."""

from __future__ import annotations

import logging
import weakref
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, cast

from hexbytes import HexBytes
from web3 import Web3
from web3.types import LogReceipt

from enclave_agent.chain.client import Contracts

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


def _plain(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, HexBytes | bytearray):
        return bytes(value)
    if isinstance(value, list | tuple):
        return tuple(_plain(v) for v in value)
    return value


# (address, topic0) -> (contract name, event name), built once per Contracts.
_indexes: weakref.WeakKeyDictionary[Contracts, dict[tuple[str, bytes], tuple[str, str]]] = (
    weakref.WeakKeyDictionary()
)


def _index(contracts: Contracts) -> dict[tuple[str, bytes], tuple[str, str]]:
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
                index[(address, topic0)] = (name, str(entry["name"]))
        _indexes[contracts] = index
    return index


def _canonical(param: Mapping[str, Any]) -> str:
    typ = str(param["type"])
    if typ.startswith("tuple"):
        inner = ",".join(_canonical(c) for c in param.get("components", ()))
        return f"({inner}){typ[len('tuple') :]}"
    return typ


def decode_logs(contracts: Contracts, logs: Iterable[LogReceipt | Mapping[str, Any]]) -> list[ChainEvent]:
    """Decode the logs of our three contracts; others and unknown topics are skipped."""
    index = _index(contracts)
    events: list[ChainEvent] = []
    for entry in logs:
        topics = entry.get("topics") or []
        if not topics:
            continue
        address = Web3.to_checksum_address(entry["address"])
        known = index.get((address, bytes(topics[0])))
        if known is None:
            log.debug("skipping log with unknown topic at %s", address)
            continue
        contract_name, event_name = known
        event = contracts.by_address[address].events[event_name]()
        data = event.process_log(cast(LogReceipt, entry))
        events.append(
            ChainEvent(
                contract=contract_name,
                name=event_name,
                args=_plain(data["args"]),
                block_number=int(data["blockNumber"]),
                tx_hash="0x" + bytes(data["transactionHash"]).hex(),
                log_index=int(data["logIndex"]),
                block_hash=bytes(data["blockHash"]).hex(),
            )
        )
    return events
