"""TxSender against a real Anvil: estimate-first, local signing, nonces, retries."""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from web3 import Web3

from enclave_agent.chain import TxSender, connect, error_class, explain_failure
from enclave_agent.chain.sender import GAS_MARGIN
from enclave_agent.errors import ChainError, ContractRevert, InsufficientFunds
from enclave_agent.store import Store
from tests.agent.chain.chainkit import PROVIDER, Deployment, funded_account
from tests.agent.chain.faultproxy import FaultProxy
from tests.support.anvil import AnvilProcess


@pytest.fixture(scope="module")
def deployment(anvil_node: AnvilProcess) -> Deployment:
    return Deployment(anvil_node)


@pytest.fixture
def manual_mining(anvil_node: AnvilProcess) -> Iterator[None]:
    anvil_node.rpc("evm_setAutomine", False)
    try:
        yield
    finally:
        anvil_node.rpc("evm_setAutomine", True)
        anvil_node.mine()


def test_what_was_stored_is_flushed_after_the_pending_record_and_before_the_node_sees_the_tx(
    deployment: Deployment, tmp_path: Path
) -> None:
    """The store flushes its log once per transaction, between recording it as pending
    and sending it: a share sealed before a posting is on disk before the posting."""
    store = Store(tmp_path / "s.sqlite3")
    sender = TxSender(deployment.w3, deployment.governor, deployment.decoder, store=store)
    order: list[str] = []
    real_sync, real_send = store.sync, sender._send_raw

    def sync() -> None:
        order.append("sync with " + ",".join(t["status"] for t in store.txs()))
        real_sync()

    def send_raw(raw: bytes) -> None:
        order.append("send")
        real_send(raw)

    store.sync = sync  # type: ignore[method-assign]
    sender._send_raw = send_raw  # type: ignore[method-assign]
    store.put_blob("round/1/kept", b"sealed")
    sender.send(approve(deployment), label="approve")
    assert order == ["sync with pending", "send"]


def approve(deployment: Deployment, measurement: bytes | None = None):  # type: ignore[no-untyped-def]
    return deployment.contracts.registry.functions.approveMeasurement(PROVIDER, measurement or os.urandom(32))


def mine_when_pending(node: AnvilProcess, count: int, timeout: float = 10) -> threading.Thread:
    """Mine one block as soon as ``count`` transactions wait in the pool."""

    def run() -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if int(node.rpc("txpool_status")["pending"], 16) >= count:
                node.mine()
                return
            time.sleep(0.02)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


def test_send_changes_state_records_and_logs(
    deployment: Deployment, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    w3 = deployment.w3
    store = Store(tmp_path / "s.sqlite3")
    sender = TxSender(w3, deployment.governor, deployment.decoder, store=store)
    measurement = os.urandom(32)
    fn = approve(deployment, measurement)
    calldata = fn._encode_transaction_data()
    with caplog.at_level(logging.INFO, logger="enclave_agent.chain.sender"):
        receipt = sender.send(fn, label="approve-provider")
    assert receipt["status"] == 1
    assert deployment.contracts.registry.functions.isApproved(PROVIDER, measurement).call()
    tx_hash = receipt["transactionHash"].to_0x_hex()
    assert [(t["label"], t["tx_hash"], t["status"]) for t in store.txs()] == [
        ("approve-provider", tx_hash, "mined")
    ]
    lines = [r.getMessage() for r in caplog.records if r.name == "enclave_agent.chain.sender"]
    assert len(lines) == 1
    assert (
        "approve-provider" in lines[0]
        and tx_hash in lines[0]
        and f"gas_used={receipt['gasUsed']}" in lines[0]
    )
    assert all(
        calldata[10:] not in r.getMessage() and measurement.hex() not in r.getMessage()
        for r in caplog.records
    )
    # Signed locally as EIP-1559 with a gas limit from the estimate plus buffer.
    tx = w3.eth.get_transaction(receipt["transactionHash"])
    assert tx["type"] == 2
    assert tx["from"] == deployment.governor.address
    assert tx["maxFeePerGas"] >= w3.eth.get_block(receipt["blockNumber"])["baseFeePerGas"]
    assert receipt["gasUsed"] < tx["gas"] <= int(receipt["gasUsed"] * 1.5) + GAS_MARGIN + 30_000


def test_rejected_call_raises_before_sending_and_costs_nothing(
    deployment: Deployment, anvil_node: AnvilProcess, tmp_path: Path
) -> None:
    w3 = deployment.w3
    stranger = funded_account(anvil_node)
    store = Store(tmp_path / "s.sqlite3")
    sender = TxSender(w3, stranger, deployment.decoder, store=store)
    balance, head = w3.eth.get_balance(stranger.address), w3.eth.block_number
    with pytest.raises(error_class("AccessControlUnauthorizedAccount")) as info:
        sender.send(approve(deployment), label="not-governor")
    assert info.value.error_args["account"] == stranger.address
    assert info.value.error_args["neededRole"] == "0x" + Web3.keccak(text="GOVERNOR_ROLE").hex().removeprefix(
        "0x"
    )
    assert str(info.value).startswith("not-governor: AccessControlUnauthorizedAccount(")
    assert w3.eth.get_transaction_count(stranger.address, "pending") == 0
    assert w3.eth.get_balance(stranger.address) == balance
    assert w3.eth.block_number == head
    assert store.txs() == []


def test_revert_in_the_block_is_decoded(
    deployment: Deployment, anvil_node: AnvilProcess, manual_mining: None, tmp_path: Path
) -> None:
    """Passes the estimate, loses the race in the block: the receipt's revert is decoded."""
    w3 = deployment.w3
    sender = deployment.gov_tx
    store = Store(tmp_path / "s.sqlite3")
    sender.store = store
    measurement = os.urandom(32)
    fees = sender._fees

    def competitor_arrives_after_the_estimate() -> dict[str, int]:
        # A competing transaction for the same measurement reaches the pool between our
        # estimate (against the pending block) and our send, with a higher tip.
        first = approve(deployment, measurement).build_transaction(
            {
                "from": deployment.governor.address,
                "nonce": w3.eth.get_transaction_count(deployment.governor.address, "pending"),
                "gas": 200_000,
                "maxFeePerGas": 10**11,
                "maxPriorityFeePerGas": 10**10,
                "chainId": 31337,
            }
        )
        w3.eth.send_raw_transaction(deployment.governor.sign_transaction(first).raw_transaction)
        sender.resync_nonce()
        return fees()

    sender._fees = competitor_arrives_after_the_estimate  # type: ignore[method-assign]
    miner = mine_when_pending(anvil_node, 2)
    try:
        with pytest.raises(error_class("RegistryMeasurementAlreadyApproved")) as info:
            sender.send(approve(deployment, measurement), label="approve-late")
    finally:
        sender.store = None
        sender._fees = fees  # type: ignore[method-assign]
    miner.join()
    assert info.value.error_args == {"role": PROVIDER, "measurement": "0x" + measurement.hex()}
    (record,) = store.txs()
    assert record["status"] == "reverted"
    assert w3.eth.get_transaction_receipt(record["tx_hash"])["status"] == 0


def test_explain_failure_replays_without_a_tracer_and_spots_out_of_gas(deployment: Deployment) -> None:
    w3 = deployment.w3
    unlocked = w3.eth.accounts[0]
    registry = deployment.contracts.registry
    deployment.gov_tx.send(
        registry.functions.grantRole(Web3.keccak(text="GOVERNOR_ROLE"), unlocked), label="grant"
    )
    measurement = os.urandom(32)
    for _ in range(2):  # explicit gas skips the estimate: the second one reverts on chain
        tx_hash = registry.functions.approveMeasurement(PROVIDER, measurement).transact(
            {"from": unlocked, "gas": 200_000}
        )
    receipt = w3.eth.wait_for_transaction_receipt(tx_hash)
    assert receipt["status"] == 0
    for trace in (True, False):
        error = explain_failure(w3, deployment.decoder, receipt, label="dup", trace=trace)
        assert type(error) is error_class("RegistryMeasurementAlreadyApproved")
    starved = registry.functions.approveMeasurement(PROVIDER, os.urandom(32)).transact(
        {"from": unlocked, "gas": 23_000}
    )
    receipt = w3.eth.wait_for_transaction_receipt(starved)
    for trace in (True, False):
        error = explain_failure(w3, deployment.decoder, receipt, label="starved", trace=trace)
        assert not isinstance(error, ContractRevert)
        assert "ran out of gas" in str(error)


def test_stale_local_nonce_is_resynchronised(deployment: Deployment, anvil_node: AnvilProcess) -> None:
    account = funded_account(anvil_node)
    w3 = deployment.w3
    a = TxSender(w3, account, deployment.decoder)
    b = TxSender(w3, account, deployment.decoder)  # e.g. a restarted process with the same key
    target = funded_account(anvil_node).address
    a.transfer(target, 1, label="a1")
    b.transfer(target, 2, label="b1")
    b.transfer(target, 3, label="b2")
    receipt = a.transfer(target, 4, label="a2")  # a's local nonce (1) is taken: resync to 3
    assert receipt["status"] == 1
    assert w3.eth.get_transaction(receipt["transactionHash"])["nonce"] == 3
    assert w3.eth.get_transaction_count(account.address) == 4
    assert w3.eth.get_balance(target) == 100 * 10**18 + 10


def test_transfer_moves_value(deployment: Deployment, anvil_node: AnvilProcess) -> None:
    sender = TxSender(deployment.w3, funded_account(anvil_node), deployment.decoder)
    target = funded_account(anvil_node, ether=0).address
    receipt = sender.transfer(target, 12345, label="fund-enclave")
    assert receipt["status"] == 1
    assert deployment.w3.eth.get_balance(target) == 12345


def test_an_account_that_cannot_pay_gets_insufficient_funds_and_sends_nothing(
    deployment: Deployment, anvil_node: AnvilProcess
) -> None:
    broke = funded_account(anvil_node, ether=0)
    sender = TxSender(deployment.w3, broke, deployment.decoder)
    target = funded_account(anvil_node, ether=0).address
    with pytest.raises(InsufficientFunds, match=f"fund-enclave: {broke.address} cannot pay"):
        sender.transfer(target, 1, label="fund-enclave")
    assert deployment.w3.eth.get_transaction_count(broke.address) == 0


def test_concurrent_sends_share_one_nonce_sequence(deployment: Deployment, anvil_node: AnvilProcess) -> None:
    account = funded_account(anvil_node)
    sender = TxSender(deployment.w3, account, deployment.decoder)
    target = funded_account(anvil_node).address
    receipts = []
    errors: list[BaseException] = []

    def work() -> None:
        try:
            for _ in range(4):
                receipts.append(sender.transfer(target, 1, label="parallel"))
        except BaseException as exc:  # surfaced below
            errors.append(exc)

    threads = [threading.Thread(target=work) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    nonces = sorted(deployment.w3.eth.get_transaction(r["transactionHash"])["nonce"] for r in receipts)
    assert nonces == list(range(12))


def test_call_decodes_reverts(deployment: Deployment, anvil_node: AnvilProcess) -> None:
    stranger = funded_account(anvil_node)
    sender = TxSender(deployment.w3, stranger, deployment.decoder)
    registry = deployment.contracts.registry.functions
    assert sender.call(registry.isTrustedSigner(deployment.signer.address)) is True
    with pytest.raises(error_class("AccessControlUnauthorizedAccount")) as info:
        sender.call(registry.pause())
    assert info.value.error_args["account"] == stranger.address
    with pytest.raises(error_class("RegistryNotActiveMember")):
        sender.call(registry.postMembershipDigest(0, b"\x00" * 32))


def test_lost_response_is_resent_byte_for_byte_not_twice(
    deployment: Deployment, anvil_node: AnvilProcess
) -> None:
    """The node got the transaction but the answer was lost: the retry must not pay twice."""
    account = funded_account(anvil_node)
    target = funded_account(anvil_node, ether=0).address
    with FaultProxy(anvil_node.url) as proxy:
        w3 = Web3(Web3.HTTPProvider(proxy.url))
        sender = TxSender(w3, account, deployment.decoder, backoff=0.01)
        proxy.inject("eth_sendRawTransaction", "drop_response")
        receipt = sender.transfer(target, 777, label="flaky")
        assert proxy.seen["eth_sendRawTransaction"] == 2
        proxy.inject("eth_sendRawTransaction", "drop_request", "http503")
        sender.transfer(target, 1, label="flaky-2")
        assert proxy.seen["eth_sendRawTransaction"] == 5
    assert receipt["status"] == 1
    assert deployment.w3.eth.get_transaction_count(account.address) == 2
    assert deployment.w3.eth.get_balance(target) == 778


def test_unreachable_node_gives_up_with_a_chain_error(
    deployment: Deployment, anvil_node: AnvilProcess, tmp_path: Path
) -> None:
    account = funded_account(anvil_node)
    store = Store(tmp_path / "s.sqlite3")
    with FaultProxy(anvil_node.url) as proxy:
        w3 = Web3(Web3.HTTPProvider(proxy.url))
        sender = TxSender(w3, account, deployment.decoder, store=store, max_retries=2, backoff=0.01)
        proxy.inject("eth_sendRawTransaction", *["drop_request"] * 3)
        with pytest.raises(ChainError, match="unreachable after 3 attempts"):
            sender.transfer(account.address, 1, label="doomed")
        assert [t["status"] for t in store.txs()] == ["unknown"]
        # Nothing was sent; the next transaction takes the same nonce.
        receipt = sender.transfer(account.address, 1, label="after")
    assert deployment.w3.eth.get_transaction(receipt["transactionHash"])["nonce"] == 0


def test_receipt_timeout_says_the_transaction_may_still_land(
    deployment: Deployment, anvil_node: AnvilProcess, manual_mining: None, tmp_path: Path
) -> None:
    account = funded_account(anvil_node)
    store = Store(tmp_path / "s.sqlite3")
    sender = TxSender(deployment.w3, account, deployment.decoder, store=store, receipt_timeout=0.3)
    with pytest.raises(ChainError, match="not mined within 0.3s"):
        sender.transfer(account.address, 1, label="slow")
    (record,) = store.txs()
    assert record["status"] == "timeout"
    anvil_node.mine()
    assert deployment.w3.eth.get_transaction_receipt(record["tx_hash"])["status"] == 1


def test_a_contract_call_costs_three_requests_and_a_read_one(
    deployment: Deployment, anvil_node: AnvilProcess
) -> None:
    """An estimate, the signed bytes, the receipt: no chain-id lookups (web3's validation
    asked before every estimate and eth_call) and no fee requests while they are fresh."""
    with FaultProxy(anvil_node.url) as proxy:
        w3 = connect(proxy.url)
        registry = w3.eth.contract(
            address=deployment.contracts.registry.address, abi=deployment.contracts.registry.abi
        )
        sender = TxSender(w3, deployment.governor, deployment.decoder)
        first = os.urandom(32)
        sender.send(registry.functions.approveMeasurement(PROVIDER, first), label="first")
        proxy.seen.clear()
        for _ in range(3):
            sender.send(registry.functions.approveMeasurement(PROVIDER, os.urandom(32)), label="next")
        assert dict(proxy.seen) == {
            "eth_estimateGas": 3,
            "eth_sendRawTransaction": 3,
            "eth_getTransactionReceipt": 3,
        }
        proxy.seen.clear()
        assert registry.functions.isApproved(PROVIDER, first).call()
        assert dict(proxy.seen) == {"eth_call": 1}
    deployment.gov_tx.resync_nonce()


def test_a_base_fee_spike_refuses_one_send_then_fees_are_asked_again(
    deployment: Deployment, anvil_node: AnvilProcess, tmp_path: Path
) -> None:
    account = funded_account(anvil_node, ether=100)
    store = Store(tmp_path / "s.sqlite3")
    sender = TxSender(deployment.w3, account, deployment.decoder, store=store)
    sender.transfer(account.address, 1, label="fees-cached")
    cached = sender._fees_cache
    assert cached is not None
    spike = 100 * cached[1]["maxFeePerGas"]  # far above the cached headroom
    anvil_node.rpc("anvil_setNextBlockBaseFeePerGas", hex(spike))
    with pytest.raises(ChainError, match="node refused the transaction"):
        sender.transfer(account.address, 1, label="stale-fees")
    assert sender._fees_cache is None
    anvil_node.mine()  # the spiked block: fees read now see it (a cached read would be refused again)
    receipt = sender.transfer(account.address, 1, label="fresh-fees")
    assert receipt["status"] == 1
    assert deployment.w3.eth.get_transaction(receipt["transactionHash"])["maxFeePerGas"] >= spike
    assert [t["status"] for t in store.txs()] == ["mined", "failed", "mined"]


def test_a_receipt_is_polled_soon_then_less_and_less_often(
    deployment: Deployment, anvil_node: AnvilProcess, manual_mining: None
) -> None:
    """Asked at once and then after 2, 4, 8 ... ms up to 0.1 s: a block mined 0.5 s later
    is found within about 0.1 s of it, and the node is asked about ten times, not 250."""
    account = funded_account(anvil_node)
    with FaultProxy(anvil_node.url) as proxy:
        sender = TxSender(connect(proxy.url), account, deployment.decoder)
        timer = threading.Timer(0.5, anvil_node.mine)
        timer.start()
        started = time.monotonic()
        receipt = sender.transfer(account.address, 1, label="late")
        waited = time.monotonic() - started
        timer.join()
        polls = proxy.seen["eth_getTransactionReceipt"]
    assert receipt["status"] == 1
    assert 0.5 <= waited < 2.0
    assert 5 <= polls <= 20
