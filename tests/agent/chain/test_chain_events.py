"""decode_logs over real logs: every kind of argument comes out as plain values."""

from __future__ import annotations

import json
import os

import pytest
from web3 import Web3

from enclave_agent.chain import ChainEvent, decode_logs
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
