"""Helpers of the chain tests: funded local accounts, a deployment, signed quotes."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

from eth_account import Account
from eth_account.signers.local import LocalAccount
from web3 import Web3

from enclave_agent.chain import Contracts, ErrorDecoder, Manifest, TxSender, deploy_contracts
from tests.support.anvil import AnvilProcess

REPO = Path(__file__).resolve().parents[3]
ABI_DIR = REPO / "build" / "contracts"
PROVIDER, GATEWAY = 1, 2
MEASUREMENT = bytes.fromhex("aa" * 32)


def funded_account(node: AnvilProcess, ether: int = 100) -> LocalAccount:
    """A fresh key (like an enclave's) with a balance set by the node."""
    account: LocalAccount = Account.create()
    node.rpc("anvil_setBalance", account.address, hex(ether * 10**18))
    return account


class Deployment:
    """The three contracts deployed by a local-key governor, one trusted signer."""

    def __init__(self, node: AnvilProcess) -> None:
        self.node = node
        self.w3 = Web3(Web3.HTTPProvider(node.url))
        self.governor = funded_account(node)
        self.signer: LocalAccount = Account.create()
        self.manifest: Manifest = deploy_contracts(
            self.w3,
            self.governor,
            abi_dir=ABI_DIR,
            measurements={PROVIDER: MEASUREMENT, GATEWAY: MEASUREMENT},
            signers=[self.signer.address],
            rpc_url=node.url,
        )
        self.contracts = Contracts(self.w3, self.manifest)
        self.decoder = ErrorDecoder.from_manifest(self.manifest)
        self.gov_tx = TxSender(self.w3, self.governor, self.decoder)

    def sender(self, account: LocalAccount, **kwargs: Any) -> TxSender:
        return TxSender(self.w3, account, self.decoder, **kwargs)

    def quote(self, operator: str, enclave: str, role: int = PROVIDER, **overrides: Any) -> tuple[Any, ...]:
        fields: dict[str, Any] = {
            "role": role,
            "measurement": MEASUREMENT,
            "operator": operator,
            "enclave": enclave,
            "x25519Key": os.urandom(32),
            "chainId": self.w3.eth.chain_id,
            "registry": self.contracts.registry.address,
            "nonce": os.urandom(32),
            "expiry": int(time.time()) + 3600,
        }
        fields.update(overrides)
        return tuple(fields.values())

    def sign(self, quote: tuple[Any, ...]) -> bytes:
        digest = self.contracts.registry.functions.quoteDigest(quote).call()
        return bytes(Account.unsafe_sign_hash(digest, self.signer.key).signature)

    def possession(self, quote: tuple[Any, ...], enclave: LocalAccount) -> bytes:
        digest = self.contracts.registry.functions.possessionDigest(quote).call()
        return bytes(Account.unsafe_sign_hash(digest, enclave.key).signature)

    def register_provider(self) -> tuple[LocalAccount, LocalAccount]:
        """Admit a fresh organisation and register its provider enclave (the operator
        submits, the enclave proves possession); returns (operator, enclave)."""
        operator = funded_account(self.node)
        enclave = funded_account(self.node)
        self.gov_tx.send(
            self.contracts.registry.functions.admitOrganisation(operator.address, "org", 1 << PROVIDER, 1),
            label="admit",
        )
        quote = self.quote(operator.address, enclave.address)
        self.sender(operator).send(
            self.contracts.registry.functions.register(
                quote, self.sign(quote), self.possession(quote, enclave)
            ),
            label="register",
        )
        return operator, enclave

    def synchronise(self, enclaves: list[LocalAccount]) -> None:
        registry = self.contracts.registry.functions
        epoch = registry.epoch().call()
        digest = registry.membershipDigest().call()
        for enclave in enclaves:
            self.sender(enclave).send(registry.postMembershipDigest(epoch, digest), label="digest")
