"""connect() and Contracts against a real Anvil."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
from web3 import Web3

from enclave_agent.chain import Contracts, connect, redact_url, write_manifest
from enclave_agent.chain.manifest import read_abi
from enclave_agent.errors import ChainError, ConfigError
from tests.agent.chain.chainkit import ABI_DIR, Deployment
from tests.support.anvil import AnvilProcess, free_port


@pytest.fixture(scope="module")
def deployment(anvil_node: AnvilProcess) -> Deployment:
    return Deployment(anvil_node)


def test_connect_answers_with_the_chain(anvil_node: AnvilProcess) -> None:
    w3 = connect(anvil_node.url, timeout=5)
    assert w3.eth.chain_id == 31337
    assert w3.eth.get_block("latest")["number"] >= 0


def test_connect_to_a_dead_endpoint_names_it() -> None:
    url = f"http://127.0.0.1:{free_port()}"
    with pytest.raises(ChainError, match=f"JSON-RPC endpoint {url} does not answer"):
        connect(url, timeout=2)


def test_connect_never_shows_credentials_in_the_message() -> None:
    url = f"http://user:hunter2@127.0.0.1:{free_port()}/v3/0123456789abcdef0123456789abcdef?apikey=s3cret"
    with pytest.raises(ChainError) as info:
        connect(url, timeout=2)
    message = str(info.value)
    assert "127.0.0.1" in message
    for secret in ("hunter2", "user", "0123456789abcdef0123456789abcdef", "s3cret"):
        assert secret not in message


def test_redact_url_keeps_plain_urls() -> None:
    assert redact_url("http://127.0.0.1:8545") == "http://127.0.0.1:8545"
    assert redact_url("https://rpc.example.org/chain/7") == "https://rpc.example.org/chain/7"
    assert redact_url("https://x.io/v3/abcdefghijklmnopqrstuvwxyz") == "https://x.io/v3/***"


def test_contracts_bind_the_manifest_addresses(deployment: Deployment) -> None:
    c = Contracts(deployment.w3, deployment.manifest)
    m = deployment.manifest.contracts
    assert c.registry.address == m["ConsortiumRegistry"]
    assert c.exchange.address == m["ShareExchange"]
    assert c.gateway.address == m["InferenceGateway"]
    assert c.by_address == {
        c.registry.address: c.registry,
        c.exchange.address: c.exchange,
        c.gateway.address: c.gateway,
    }
    assert c.addresses == [c.registry.address, c.exchange.address, c.gateway.address]
    assert c.name_of(c.exchange.address.lower()) == "ShareExchange"
    assert c.name_of("0x" + "00" * 20) is None
    assert c.registry.functions.epoch().call() == 0
    assert any(e.get("name") == "RoundOpened" for e in c.abis()["ShareExchange"])
    c.check_deployment()


def test_from_manifest_path_connects_to_the_manifest_url(deployment: Deployment, tmp_path: Path) -> None:
    path = tmp_path / "m.json"
    write_manifest(deployment.manifest, path)
    c = Contracts.from_manifest_path(path)
    assert c.w3.eth.chain_id == 31337
    assert c.gateway.functions.requestTtl().call() == 120


def test_check_deployment_catches_wrong_chain_and_missing_code(deployment: Deployment) -> None:
    wrong_chain = dataclasses.replace(deployment.manifest, chain_id=1)
    with pytest.raises(ChainError, match="node is on chain 31337"):
        Contracts(deployment.w3, wrong_chain).check_deployment()
    empty = "0x" + "11" * 20
    no_code = dataclasses.replace(
        deployment.manifest,
        contracts={**deployment.manifest.contracts, "ShareExchange": Web3.to_checksum_address(empty)},
    )
    with pytest.raises(ChainError, match="no contract code for ShareExchange"):
        Contracts(deployment.w3, no_code).check_deployment()


def test_bad_manifest_entries_are_config_errors(deployment: Deployment, tmp_path: Path) -> None:
    bad = dataclasses.replace(
        deployment.manifest, contracts={**deployment.manifest.contracts, "InferenceGateway": "0x12"}
    )
    with pytest.raises(ConfigError, match="InferenceGateway"):
        Contracts(deployment.w3, bad)
    abi_dir = tmp_path / "abis"
    abi_dir.mkdir()
    (abi_dir / "ConsortiumRegistry.json").write_text(json.dumps({"no": "abi"}))
    with pytest.raises(ConfigError, match="ABI of ConsortiumRegistry"):
        Contracts(deployment.w3, dataclasses.replace(deployment.manifest, abi_dir=str(abi_dir)))


@pytest.mark.parametrize("name", ["ConsortiumRegistry", "ShareExchange", "InferenceGateway"])
def test_an_artifact_abi_is_read_without_the_rest_and_equals_the_whole_parse(name: str) -> None:
    path = ABI_DIR / f"{name}.json"
    whole = json.loads(path.read_text())
    assert read_abi(path) == whole["abi"] and len(whole) > 5  # an artifact with much more than its ABI


def test_an_abi_file_is_read_whatever_its_key_order_and_again_when_it_changes(tmp_path: Path) -> None:
    abi = json.loads((ABI_DIR / "ShareExchange.json").read_text())["abi"]
    path = tmp_path / "X.json"
    path.write_text(json.dumps({"bytecode": "0x00", "abi": abi[:3]}))  # abi not first
    assert read_abi(path) == abi[:3]
    mine = read_abi(path)
    mine.clear()  # the caller's copy: the next reader is not affected
    assert read_abi(path) == abi[:3]
    path.write_text(json.dumps({"abi": abi[:5], "bytecode": "0x00"}))
    assert read_abi(path) == abi[:5]
    path.write_text('{"abi": [{"type": "event"')  # truncated
    with pytest.raises(ValueError):
        read_abi(path)
    path.write_text('{"abi": {"not": "a list"}}')
    with pytest.raises(TypeError, match="not a list"):
        read_abi(path)
