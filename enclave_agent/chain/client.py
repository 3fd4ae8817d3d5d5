"""Connecting to the chain and binding the deployed contracts from the manifest."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from eth_typing import ChecksumAddress
from web3 import Web3
from web3.contract import Contract
from web3.exceptions import Web3Exception
from web3.middleware import ExtraDataToPOAMiddleware

from enclave_agent.chain.manifest import CONTRACT_NAMES, Manifest, load_manifest
from enclave_agent.chain.transport import LeanHTTPProvider, redact_url
from enclave_agent.errors import ChainError, ConfigError

log = logging.getLogger(__name__)

_UNUSED_MIDDLEWARE = ("validation", "ens_name_to_address")


def connect(rpc_url: str, *, timeout: float = 30) -> Web3:
    """A ``Web3`` over HTTP that answered ``eth_chainId``; ChainError naming the URL if not."""
    w3 = Web3(LeanHTTPProvider(rpc_url, timeout=timeout))
    # PoA networks (QBFT, Clique) carry >32 bytes of extraData; harmless elsewhere.
    w3.middleware_onion.inject(ExtraDataToPOAMiddleware, layer=0)
    # web3's "validation" asks the node's chain id before every eth_call and gas estimate
    # (to check a chainId field we never set): it doubled the requests of each. The
    # agent resolves no ENS names, so nothing it reads is ever looked up as one.
    for name in _UNUSED_MIDDLEWARE:
        w3.middleware_onion.remove(name)
    try:
        chain_id = w3.eth.chain_id
    except (Web3Exception, OSError, ValueError) as exc:
        raise ChainError(
            f"JSON-RPC endpoint {redact_url(rpc_url)} does not answer: {type(exc).__name__}"
        ) from exc
    log.info("connected to %s (chain id %d)", redact_url(rpc_url), chain_id)
    return w3


class Contracts:
    """The three deployed contracts of one manifest, bound to one ``Web3``."""

    registry: Contract
    exchange: Contract
    gateway: Contract

    def __init__(self, w3: Web3, manifest: Manifest) -> None:
        self.w3 = w3
        self.manifest = manifest
        self.by_name: dict[str, Contract] = {}
        for name in CONTRACT_NAMES:
            address = manifest.contracts.get(name)
            if not address or not Web3.is_address(address):
                raise ConfigError(f"deployment manifest has no valid address for {name}: {address!r}")
            self.by_name[name] = w3.eth.contract(
                address=Web3.to_checksum_address(address), abi=manifest.abi(name)
            )
        self.registry = self.by_name["ConsortiumRegistry"]
        self.exchange = self.by_name["ShareExchange"]
        self.gateway = self.by_name["InferenceGateway"]
        self.by_address: dict[str, Contract] = {c.address: c for c in self.by_name.values()}
        self._names: dict[str, str] = {c.address: name for name, c in self.by_name.items()}

    @classmethod
    def from_manifest_path(
        cls, path: Path | str, *, w3: Web3 | None = None, timeout: float = 30
    ) -> Contracts:
        """Load the manifest; connect to its RPC URL unless ``w3`` is given."""
        manifest = load_manifest(Path(path))
        return cls(w3 if w3 is not None else connect(manifest.rpc_url, timeout=timeout), manifest)

    @property
    def addresses(self) -> list[ChecksumAddress]:
        """Checksummed addresses in CONTRACT_NAMES order."""
        return [self.by_name[name].address for name in CONTRACT_NAMES]

    def name_of(self, address: str) -> str | None:
        """The contract name at ``address`` (any case), or None if not one of ours."""
        if not Web3.is_address(address):
            return None
        return self._names.get(Web3.to_checksum_address(address))

    def check_deployment(self) -> None:
        """ChainError unless the node is on the manifest's chain and holds code at every address."""
        chain_id = self.w3.eth.chain_id
        if chain_id != self.manifest.chain_id:
            raise ChainError(
                f"node is on chain {chain_id}, the deployment manifest names chain {self.manifest.chain_id}"
            )
        for name, contract in self.by_name.items():
            if not self.w3.eth.get_code(contract.address):
                raise ChainError(f"no contract code for {name} at {contract.address} on chain {chain_id}")

    def abis(self) -> dict[str, list[dict[str, Any]]]:
        return {name: [dict(entry) for entry in contract.abi] for name, contract in self.by_name.items()}
