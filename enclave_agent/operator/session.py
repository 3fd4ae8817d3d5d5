"""One operator's view of a deployment: the manifest's contracts, an optional sender
(governance, coordinator or client key) and the names the registry knows."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from eth_utils.address import is_address, to_checksum_address
from web3.contract.contract import ContractFunction
from web3.types import TxReceipt

from enclave_agent.chain import Contracts, ErrorDecoder, TxSender, connect
from enclave_agent.chain.manifest import load_manifest
from enclave_agent.chain.names import NameBook
from enclave_agent.config import load_account
from enclave_agent.errors import ConfigError


class Sender(Protocol):
    """Sends a contract call and returns its receipt (``TxSender``, or an unlocked dev
    account in the local consortium); reverts raise the decoded ``ContractRevert``."""

    @property
    def address(self) -> str: ...

    def send(self, fn: ContractFunction, *, label: str, value: int = 0) -> TxReceipt: ...


def address_arg(text: str, what: str) -> str:
    """A checksummed address from the command line; ConfigError naming ``what`` if not one."""
    if not is_address(text):
        raise ConfigError(f"{what} must be an address (0x + 40 hex), got {text!r}")
    return str(to_checksum_address(text))


@dataclass
class Session:
    """The contracts of one manifest, the chain's deployment block and, with a key file,
    a sender for the transactions an operator command makes."""

    contracts: Contracts
    deployed_block: int
    sender: Sender | None = None
    names: NameBook = field(init=False)

    def __post_init__(self) -> None:
        self.names = NameBook(self.contracts)

    @classmethod
    def open(
        cls, manifest_path: Path, key_file: Path | None, rpc_url: str | None = None, *, what: str = "key"
    ) -> Session:
        """Every input (manifest, key file) is checked before the chain is asked anything."""
        manifest = load_manifest(manifest_path)
        account = load_account(key_file, what) if key_file is not None else None
        w3 = connect(rpc_url or manifest.rpc_url)
        sender = TxSender(w3, account, ErrorDecoder.from_manifest(manifest)) if account else None
        return cls(Contracts(w3, manifest), manifest.deployed_block, sender)

    def send(self, fn: ContractFunction, *, label: str, value: int = 0) -> TxReceipt:
        if self.sender is None:
            raise ConfigError(f"{label} changes the chain: give --key-file")
        return self.sender.send(fn, label=label, value=value)

    def chain_time(self) -> int:
        return int(self.contracts.w3.eth.get_block("latest")["timestamp"])
