"""decode_logs over real logs: every kind of argument comes out as plain values."""

from __future__ import annotations

import json
import os
import random
from collections.abc import Mapping
from typing import Any

import pytest
from eth_abi.abi import encode
from hexbytes import HexBytes
from web3 import Web3
from web3.datastructures import AttributeDict

from enclave_agent.chain import ChainEvent, decode_logs
from enclave_agent.errors import ChainError
from tests.agent.chain.chainkit import ABI_DIR, MEASUREMENT, PROVIDER, Deployment
from tests.support.anvil import AnvilProcess


@pytest.fixture(scope="module")
def world(anvil_node: AnvilProcess) -> dict[str, object]:
    """Three registered providers (a round's minimum), a synchronised epoch and one open round."""
    d = Deployment(anvil_node)
    (op1, enc1), (op2, enc2), (_, enc3) = d.register_provider(), d.register_provider(), d.register_provider()
    d.synchronise([enc1, enc2, enc3])
    now = d.w3.eth.get_block("latest")["timestamp"]
    tag = os.urandom(32)
    spec = (4, 16, 0, 1, 2**64, 0)
    receipt = d.gov_tx.send(
        d.contracts.exchange.functions.openRound(tag, spec, 3, now + 600, now + 1200, (0, 2)), label="open"
    )
    logs = d.w3.eth.get_logs(
        {"fromBlock": d.manifest.deployed_block, "toBlock": "latest", "address": d.contracts.addresses}
    )
    return {
        "d": d,
        "enclaves": (enc1, enc2, enc3),
        "operators": (op1, op2),
        "tag": tag,
        "open": receipt,
        "logs": logs,
    }


def events(world: dict[str, object]) -> list[ChainEvent]:
    d = world["d"]
    assert isinstance(d, Deployment)
    return decode_logs(d.contracts, world["logs"])  # type: ignore[arg-type]


def test_all_logs_decode_in_chain_order(world: dict[str, object]) -> None:
    decoded = events(world)
    assert len(decoded) == len(world["logs"])  # type: ignore[arg-type]
    names = [(e.contract, e.name) for e in decoded]
    assert names[0] == ("ConsortiumRegistry", "RoleGranted")  # the registry's constructor
    assert ("ConsortiumRegistry", "MeasurementApproved") in names
    assert ("ConsortiumRegistry", "AttestationSignerSet") in names
    assert names.count(("ConsortiumRegistry", "OrganisationAdmitted")) == 3
    assert names.count(("ConsortiumRegistry", "MemberRegistered")) == 3
    assert names.count(("ConsortiumRegistry", "EpochStarted")) == 3
    assert names.count(("ConsortiumRegistry", "MembershipDigestPosted")) == 3
    assert names[-4:] == [
        ("ConsortiumRegistry", "MembershipDigestPosted"),
        ("ConsortiumRegistry", "MembershipDigestPosted"),
        ("ConsortiumRegistry", "EpochSynchronised"),
        ("ShareExchange", "RoundOpened"),
    ]
    assert all(e.args["matches"] is True for e in decoded if e.name == "MembershipDigestPosted")
    positions = [(e.block_number, e.log_index) for e in decoded]
    assert positions == sorted(positions)


def test_struct_array_and_bytes_arguments(world: dict[str, object]) -> None:
    decoded = events(world)
    enc1, enc2, enc3 = world["enclaves"]  # type: ignore[misc]
    op1, _ = world["operators"]  # type: ignore[misc]
    registered = [e for e in decoded if e.name == "MemberRegistered"]
    first = registered[0].args
    assert first["enclave"] == enc1.address and first["operator"] == op1.address
    assert first["role"] == PROVIDER and first["epoch"] == 1
    quote = first["quote"]
    assert isinstance(quote, dict)
    assert set(quote) == {
        "role",
        "measurement",
        "operator",
        "enclave",
        "x25519Key",
        "chainId",
        "registry",
        "nonce",
        "expiry",
    }
    assert quote["measurement"] == MEASUREMENT and isinstance(quote["measurement"], bytes)
    assert quote["registry"] == world["d"].contracts.registry.address  # type: ignore[attr-defined]
    assert type(first["signature"]) is bytes and len(first["signature"]) == 65
    assert type(first["possession"]) is bytes and len(first["possession"]) == 65
    opened = decoded[-1]
    assert opened.args["participants"] == (enc1.address, enc2.address, enc3.address)
    assert opened.args["spec"] == {
        "length": 4,
        "fracBits": 16,
        "scheme": 0,
        "encoding": 1,
        "modulus": 2**64,
        "maskDegree": 0,
    }
    assert opened.args["policy"] == {"kind": 0, "minContributors": 2}
    assert opened.args["inputTag"] == world["tag"]
    assert opened.args["roundId"] == 1


def test_event_identity(world: dict[str, object]) -> None:
    opened = events(world)[-1]
    receipt = world["open"]
    assert opened.tx_hash == receipt["transactionHash"].to_0x_hex()  # type: ignore[index]
    assert opened.block_number == receipt["blockNumber"]  # type: ignore[index]
    assert opened.event_id == f"{opened.tx_hash}:{opened.log_index}"
    assert len({e.event_id for e in events(world)}) == len(events(world))
    assert opened == events(world)[-1] and hash(opened) == hash(events(world)[-1])
    assert {opened, events(world)[-1]} == {opened}


def test_foreign_and_unknown_logs_are_skipped(world: dict[str, object], anvil_node: AnvilProcess) -> None:
    d = world["d"]
    assert isinstance(d, Deployment)
    # A second registry (not in the manifest) emits the very same event signature.
    artifact = json.loads((ABI_DIR / "ConsortiumRegistry.json").read_text())
    factory = d.w3.eth.contract(abi=artifact["abi"], bytecode=artifact["bytecode"])
    receipt = d.gov_tx.send(factory.constructor(d.governor.address), label="foreign")
    foreign = d.w3.eth.contract(address=receipt["contractAddress"], abi=artifact["abi"])
    tx = d.gov_tx.send(foreign.functions.approveMeasurement(PROVIDER, b"\x01" * 32), label="foreign-approve")
    assert decode_logs(d.contracts, tx["logs"]) == []
    ours = d.gov_tx.send(
        d.contracts.registry.functions.approveMeasurement(PROVIDER, b"\x02" * 32), label="ours"
    )
    odd = dict(ours["logs"][0])
    odd["topics"] = [Web3.keccak(text="NotAnEvent()")] + list(odd["topics"][1:])
    assert decode_logs(d.contracts, [odd, {"topics": [], "address": odd["address"]}]) == []
    (event,) = decode_logs(d.contracts, ours["logs"])
    assert (event.name, event.args) == (
        "MeasurementApproved",
        {"role": PROVIDER, "measurement": b"\x02" * 32},
    )


def _random_value(param: dict[str, Any], rng: random.Random) -> Any:
    typ = str(param["type"])
    if typ.endswith("]"):
        inner = {**param, "type": typ[: typ.rindex("[")]}
        size = typ[typ.rindex("[") + 1 : -1]
        return [_random_value(inner, rng) for _ in range(int(size) if size else rng.randrange(4))]
    if typ == "tuple":
        return tuple(_random_value(c, rng) for c in param["components"])
    if typ == "address":
        return Web3.to_checksum_address(rng.randbytes(20))
    if typ == "bool":
        return rng.random() < 0.5
    if typ == "string":
        return "".join(rng.choice("aZ9 é€𝄞") for _ in range(rng.randrange(40)))
    if typ == "bytes":
        return rng.randbytes(rng.randrange(100))
    if typ.startswith("bytes"):
        return rng.randbytes(int(typ[5:]))
    bits = int(typ.removeprefix("uint") or 256)
    return rng.choice([0, 1, 2**bits - 1, rng.getrandbits(bits)])


def _canonical_type(param: dict[str, Any]) -> str:
    typ = str(param["type"])
    if typ.startswith("tuple"):
        return "(" + ",".join(_canonical_type(c) for c in param["components"]) + ")" + typ[5:]
    return typ


def test_every_event_decodes_as_web3_decodes_it(world: dict[str, object]) -> None:
    """The agent's own decoder against web3's, on every event of every contract with
    random arguments (extremes included), from raw JSON-RPC logs and web3-formatted ones."""
    d = world["d"]
    assert isinstance(d, Deployment)
    rng = random.Random(7)
    checked = 0
    for name, contract in d.contracts.by_name.items():
        for entry in contract.abi:
            if entry.get("type") != "event":
                continue
            inputs = list(entry["inputs"])
            signature = f"{entry['name']}({','.join(_canonical_type(i) for i in inputs)})"
            for case in range(20):
                values = [_random_value(dict(i), rng) for i in inputs]
                indexed = [(i, v) for i, v in zip(inputs, values, strict=True) if i.get("indexed")]
                data = [(i, v) for i, v in zip(inputs, values, strict=True) if not i.get("indexed")]
                topics = [bytes(Web3.keccak(text=signature))] + [
                    encode([_canonical_type(i)], [v]) for i, v in indexed
                ]
                payload = encode([_canonical_type(i) for i, _ in data], [v for _, v in data])
                raw = {
                    "address": contract.address.lower(),
                    "topics": ["0x" + t.hex() for t in topics],
                    "data": "0x" + payload.hex(),
                    "blockNumber": hex(100 + case),
                    "transactionHash": "0x" + rng.randbytes(32).hex(),
                    "transactionIndex": "0x0",
                    "blockHash": "0x" + rng.randbytes(32).hex(),
                    "logIndex": hex(case),
                    "removed": False,
                }
                formatted = _formatted(raw)
                expected = _plain(contract.events[entry["name"]]().process_log(formatted)["args"])
                for log in (raw, formatted):
                    (event,) = decode_logs(d.contracts, [log])
                    assert (event.contract, event.name) == (name, entry["name"])
                    assert event.args == expected
                    assert (event.block_number, event.log_index) == (100 + case, case)
                    assert event.tx_hash == raw["transactionHash"]
                    assert event.block_hash == raw["blockHash"][2:]
                checked += 1
    assert checked >= 20 * 40  # every event of the three contracts


def _formatted(raw: dict[str, Any]) -> AttributeDict[str, Any]:
    """A raw log as web3 formats it (HexBytes, ints, checksummed address)."""
    return AttributeDict(
        {
            **raw,
            "address": Web3.to_checksum_address(raw["address"]),
            "topics": [HexBytes(t) for t in raw["topics"]],
            "data": HexBytes(raw["data"]),
            "blockNumber": int(raw["blockNumber"], 16),
            "transactionHash": HexBytes(raw["transactionHash"]),
            "blockHash": HexBytes(raw["blockHash"]),
            "logIndex": int(raw["logIndex"], 16),
            "transactionIndex": 0,
        }
    )


def _plain(value: Any) -> Any:
    """web3's decoded value as plain Python (the reference the agent's decoder must equal)."""
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, HexBytes | bytearray):
        return bytes(value)
    if isinstance(value, list | tuple):
        return tuple(_plain(v) for v in value)
    return value


@pytest.mark.parametrize(
    "change",
    [
        lambda log: {**log, "data": log["data"][:-2]},  # one byte short
        lambda log: {**log, "topics": log["topics"][:1]},  # an indexed argument missing
        lambda log: {**log, "topics": [*log["topics"], "0x" + "00" * 32]},  # one too many
    ],
)
def test_a_malformed_log_of_ours_is_a_chain_error(world: dict[str, object], change: Any) -> None:
    d = world["d"]
    assert isinstance(d, Deployment)
    query = {
        "fromBlock": hex(d.manifest.deployed_block),
        "toBlock": "latest",
        "address": d.contracts.addresses,
    }
    raw = d.w3.provider.make_request("eth_getLogs", [query])["result"]  # type: ignore[arg-type]
    registered = next(log for log in raw if len(log["topics"]) > 1 and len(log["data"]) > 2)
    with pytest.raises(ChainError, match=r"is not a valid ConsortiumRegistry\."):
        decode_logs(d.contracts, [change(registered)])
