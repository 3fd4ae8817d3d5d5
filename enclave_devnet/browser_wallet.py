"""A wallet for driving the gateway's wallet page in a headless browser (tests and
bench): an EIP-1193 provider injected into the page whose calls land in Python,
where they are signed with a real dev key or forwarded to the node."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from eth_account import Account
from web3 import Web3

from enclave_devnet.agents import dev_key

CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]

# Injected before the page's own scripts, like a wallet extension's content script.
PROVIDER = """
window.ethereum = {
  async request({ method, params }) {
    const reply = await window.__wallet(method, params || []);
    if (reply.error) {
      const error = new Error(reply.error.message);
      error.code = reply.error.code;
      throw error;
    }
    return reply.result;
  },
  on() {},
};
"""


@dataclass
class InjectedWallet:
    """The page's wallet: expose it as ``window.__wallet`` and add ``PROVIDER``
    as an init script. Signs with Anvil dev account ``index``'s key, forwards
    transactions and receipts to the node, refuses the methods in ``refuse``."""

    w3: Web3
    index: int
    chain_id: int
    refuse: set[str] = field(default_factory=set)
    known_chains: set[int] = field(default_factory=set)  # besides its own chain_id
    added: list[dict[str, Any]] = field(default_factory=list)
    calls: list[tuple[str, list[Any]]] = field(default_factory=list)
    signed: list[dict[str, Any]] = field(default_factory=list)

    @property
    def address(self) -> str:
        return str(self.w3.eth.accounts[self.index])

    def __post_init__(self) -> None:
        self.known_chains.add(self.chain_id)

    def __call__(self, method: str, params: list[Any]) -> dict[str, Any]:
        self.calls.append((method, params))
        if method in self.refuse:
            return {"error": {"code": 4001, "message": "User rejected the request."}}
        if method in ("eth_requestAccounts", "eth_accounts"):
            return {"result": [self.address.lower()]}
        if method == "eth_chainId":
            return {"result": hex(self.chain_id)}
        if method == "wallet_switchEthereumChain":
            wanted = int(params[0]["chainId"], 16)
            if wanted not in self.known_chains:
                return {"error": {"code": 4902, "message": f"Unrecognized chain ID {params[0]['chainId']}."}}
            self.chain_id = wanted
            return {"result": None}
        if method == "wallet_addEthereumChain":  # EIP-3085: add, then switch to it
            self.added.append(params[0])
            self.chain_id = int(params[0]["chainId"], 16)
            self.known_chains.add(self.chain_id)
            return {"result": None}
        if method == "eth_signTypedData_v4":
            if params[0].lower() != self.address.lower():
                return {"error": {"code": 4100, "message": f"not this wallet's account: {params[0]}"}}
            typed = json.loads(params[1])
            self.signed.append(typed)
            signature = Account.sign_typed_data(dev_key(self.index), full_message=typed).signature
            return {"result": "0x" + bytes(signature).hex()}
        if method in ("eth_sendTransaction", "eth_getTransactionReceipt"):
            reply = self.w3.provider.make_request(method, params)  # type: ignore[arg-type]
            return {"result": reply.get("result")} if "error" not in reply else {"error": reply["error"]}
        return {"error": {"code": 4200, "message": f"unsupported method {method}"}}
