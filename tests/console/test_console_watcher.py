"""The console's watcher against a real Anvil and the deployed contracts: events
with their block time, a batch limit that catches up over several
reads, and a replaced history (evm_revert, then other blocks at the same heights)
that rebuilds the view instead of keeping events that are gone."""

from __future__ import annotations

from eth_account import Account

from enclave_console import Watcher
from tests.agent.chain.chainkit import Deployment
from tests.support.anvil import AnvilProcess


def _admit(d: Deployment, name: str) -> tuple[str, int]:
    operator = Account.create().address
    receipt = d.gov_tx.send(
        d.contracts.registry.functions.admitOrganisation(operator, name, 2, 1), label=name
    )
    timestamp = int(d.w3.eth.get_block(receipt["blockNumber"])["timestamp"])
    return operator, timestamp


def _organisations(w: Watcher) -> dict[str, str]:
    return {o["operator"]: o["name"] for o in w.snapshot()["organisations"]}


def test_events_carry_their_time_and_a_replaced_history_is_read_again(anvil_node: AnvilProcess) -> None:
    d = Deployment(anvil_node)
    w = Watcher(d.manifest, batch_blocks=2)
    bank, bank_time = _admit(d, "Bank A")
    for _ in range(5):
        anvil_node.rpc("evm_mine")
    # Two blocks per read: several reads catch up, each one says whether it is behind.
    reads = 0
    w.step()
    reads += 1
    while w.behind:
        w.step()
        reads += 1
    assert reads >= 3
    head = d.w3.eth.block_number
    snap = w.snapshot()
    assert snap["chain"]["reachable"] and snap["chain"]["synced_to"] == head == snap["head"]["block"]
    assert _organisations(w) == {bank: "Bank A"}
    admitted = next(a for a in snap["activity"] if a["text"] == "organisation Bank A admitted")
    assert admitted["time"] == bank_time

    snapshot_id = anvil_node.rpc("evm_snapshot")
    insurer, _ = _admit(d, "Insurer B")
    w.step()
    assert _organisations(w) == {bank: "Bank A", insurer: "Insurer B"}
    version = w.version

    # Another history from the snapshot on: the block read last now has another hash.
    assert anvil_node.rpc("evm_revert", snapshot_id) is True
    d.gov_tx = d.sender(d.governor)  # its nonce counted the reverted transaction
    hospital, _ = _admit(d, "Hospital C")
    while True:
        w.step()
        if not w.behind:
            break
    assert _organisations(w) == {bank: "Bank A", hospital: "Hospital C"}
    assert w.version > version
    texts = [a["text"] for a in w.snapshot()["activity"]]
    assert "organisation Insurer B admitted" not in texts and "organisation Hospital C admitted" in texts
