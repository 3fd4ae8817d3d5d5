"""Deploy the three contracts with web3.py: the twin of ``scripts/deploy.py``
(Brownie) for the demo and the integration tests, which must not import Brownie.

The governor is either a local key (signed here, through ``TxSender``) or the
address of an account the node keeps unlocked (Anvil's default accounts).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from eth_account.signers.local import LocalAccount
from web3 import Web3
from web3.contract.contract import ContractConstructor, ContractFunction
from web3.exceptions import ContractLogicError
from web3.types import TxReceipt, Wei

from enclave_agent.chain.errors import ErrorDecoder
from enclave_agent.chain.identity import ChainIdentity
from enclave_agent.chain.manifest import CONTRACT_NAMES, Manifest
from enclave_agent.chain.sender import TxSender, explain_failure
from enclave_agent.errors import ChainError, ConfigError
from enclave_agent.onchain import COORDINATOR_ROLE

log = logging.getLogger(__name__)


def load_artifact(abi_dir: Path, name: str) -> dict[str, Any]:
    """The compiled artifact ``{abi, bytecode}`` of ``name`` from ``abi_dir``."""
    path = Path(abi_dir) / f"{name}.json"
    try:
        artifact: dict[str, Any] = json.loads(path.read_text())
        bytecode = str(artifact["bytecode"])
        if not isinstance(artifact["abi"], list):
            raise ValueError("abi is not a list")
    except (OSError, ValueError, KeyError) as exc:
        raise ConfigError(f"cannot read compiled artifact {path}: {exc} (run `make setup`)") from exc
    if not bytecode or bytecode in ("0x", ""):
        raise ConfigError(f"artifact {path} has no bytecode (an interface or abstract contract?)")
    return artifact


class _UnlockedSender:
    """Sends from an account the node signs for (development chains only)."""

    def __init__(self, w3: Web3, address: str, decoder: ErrorDecoder) -> None:
        self.w3 = w3
        self.address = Web3.to_checksum_address(address)
        self.decoder = decoder

    def send(self, fn: ContractFunction | ContractConstructor, *, label: str, value: int = 0) -> TxReceipt:
        try:
            tx_hash = fn.transact({"from": self.address, "value": Wei(value)})
        except ContractLogicError as exc:
            raise self.decoder.from_exception(exc, context=label) from None
        receipt = self.w3.eth.wait_for_transaction_receipt(tx_hash, timeout=60, poll_latency=0.05)
        if receipt["status"] != 1:
            raise explain_failure(self.w3, self.decoder, receipt, label=label)
        log.info("sent %s tx=%s gas_used=%d", label, tx_hash.to_0x_hex(), receipt["gasUsed"])
        return receipt


def deploy_contracts(
    w3: Web3,
    governor: LocalAccount | str,
    *,
    abi_dir: Path,
    measurements: Mapping[int, bytes],
    signers: Sequence[str],
    rpc_url: str,
    coordinator: str | None = None,
) -> Manifest:
    """Deploy registry, exchange and gateway; grant COORDINATOR_ROLE to ``coordinator``
    (default: the governor), approve ``measurements`` (role -> measurement) and trust
    ``signers``. Returns the manifest (``deployed_block`` = the registry's block)."""
    for role, measurement in measurements.items():
        if len(measurement) != 32:
            raise ConfigError(f"measurement for role {role} must be 32 bytes, got {len(measurement)}")
    for signer in signers:
        if not Web3.is_address(signer):
            raise ConfigError(f"attestation signer is not an address: {signer!r}")
    abi_dir = Path(abi_dir).resolve()
    artifacts = {name: load_artifact(abi_dir, name) for name in CONTRACT_NAMES}
    decoder = ErrorDecoder(a["abi"] for a in artifacts.values())
    sender: TxSender | _UnlockedSender = (
        _UnlockedSender(w3, governor, decoder)
        if isinstance(governor, str)
        else TxSender(w3, governor, decoder)
    )
    governor_address = str(sender.address)

    def deploy(name: str, *args: Any) -> tuple[str, int]:
        factory = w3.eth.contract(abi=artifacts[name]["abi"], bytecode=artifacts[name]["bytecode"])
        receipt = sender.send(factory.constructor(*args), label=f"deploy {name}")
        address = receipt["contractAddress"]
        if address is None:
            raise ChainError(f"deploy {name}: receipt has no contract address")
        return str(address), int(receipt["blockNumber"])

    registry_address, deployed_block = deploy("ConsortiumRegistry", governor_address)
    exchange_address, _ = deploy("ShareExchange", registry_address, governor_address)
    gateway_address, _ = deploy("InferenceGateway", registry_address, exchange_address, governor_address)
    registry = w3.eth.contract(
        address=Web3.to_checksum_address(registry_address), abi=artifacts["ConsortiumRegistry"]["abi"]
    )
    exchange = w3.eth.contract(
        address=Web3.to_checksum_address(exchange_address), abi=artifacts["ShareExchange"]["abi"]
    )

    coordinator_address = Web3.to_checksum_address(coordinator or governor_address)
    sender.send(
        exchange.functions.grantRole(COORDINATOR_ROLE, coordinator_address), label="grant coordinator"
    )
    for role, measurement in sorted(measurements.items()):
        sender.send(
            registry.functions.approveMeasurement(role, measurement), label=f"approve measurement role {role}"
        )
    for signer in signers:
        sender.send(
            registry.functions.setAttestationSigner(Web3.to_checksum_address(signer), True),
            label="trust signer",
        )
    identity = ChainIdentity.read(w3, deployed_block)
    manifest = Manifest(
        chain_id=identity.chain_id,
        rpc_url=rpc_url,
        deployed_block=deployed_block,
        genesis_hash=identity.genesis_hash,
        deployed_block_hash=identity.deployed_block_hash,
        governor=governor_address,
        contracts={
            "ConsortiumRegistry": registry_address,
            "ShareExchange": exchange_address,
            "InferenceGateway": gateway_address,
        },
        abi_dir=str(abi_dir),
    )
    log.info(
        "deployed registry %s, exchange %s, gateway %s", registry_address, exchange_address, gateway_address
    )
    return manifest
