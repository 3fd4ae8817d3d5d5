"""EventFollower against a real Anvil: order, exactly-once, confirmations, batches, the
block the subscription announced, and a node that answers what it was not asked."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest
from web3 import Web3

from enclave_agent.chain import ChainEvent, EventFollower, decode_logs
from enclave_agent.chain.heads import Head
from enclave_agent.errors import ChainError
from enclave_agent.store import Store
from tests.agent.chain.chainkit import ABI_DIR, PROVIDER, Deployment
from tests.agent.chain.faultproxy import FaultProxy
from tests.support.anvil import AnvilProcess


@pytest.fixture(scope="module")
def d(anvil_node: AnvilProcess) -> Deployment:
    return Deployment(anvil_node)


def emit(d: Deployment, n: int) -> list[bytes]:
    """n MeasurementApproved events, one block each; returns the measurements in order."""
    measurements = [os.urandom(32) for _ in range(n)]
    for m in measurements:
        d.gov_tx.send(d.contracts.registry.functions.approveMeasurement(PROVIDER, m), label="approve")
    return measurements


def follower(d: Deployment, store: Store, **kwargs: object) -> EventFollower:
    kwargs.setdefault("start_block", d.w3.eth.block_number + 1)
    return EventFollower(d.w3, d.contracts, store, **kwargs)  # type: ignore[arg-type]


class Recorder:
    def __init__(self, store: Store | None = None, fail_on: bytes | None = None) -> None:
        self.events: list[ChainEvent] = []
        self.store = store
        self.fail_on = fail_on

    def __call__(self, event: ChainEvent) -> None:
        if self.store is not None:  # a handler's own writes share the event's transaction
            self.store.put_json(f"seen/{event.event_id}", event.name)
        if self.fail_on is not None and event.args.get("measurement") == self.fail_on:
            raise RuntimeError("handler failed")
        self.events.append(event)

    @property
    def measurements(self) -> list[bytes]:
        return [e.args["measurement"] for e in self.events]


def test_sees_the_whole_deployment_history_in_order(d: Deployment, tmp_path: Path) -> None:
    store = Store(tmp_path / "a.sqlite3")
    f = EventFollower(d.w3, d.contracts, store, start_block=d.manifest.deployed_block)
    rec = Recorder()
    handled = f.process(rec)
    logs = d.w3.eth.get_logs(
        {"fromBlock": d.manifest.deployed_block, "toBlock": "latest", "address": d.contracts.addresses}
    )
    expected = decode_logs(d.contracts, logs)
    assert handled == len(expected) == len(rec.events) > 5
    assert rec.events == expected
    assert [e.block_number for e in rec.events] == sorted(e.block_number for e in rec.events)
    assert {e.contract for e in rec.events} == {"ConsortiumRegistry", "ShareExchange", "InferenceGateway"}
    assert f.checkpoint == d.w3.eth.block_number
    assert f.poll() == []


def test_new_events_arrive_in_order_and_only_once(d: Deployment, tmp_path: Path) -> None:
    store = Store(tmp_path / "a.sqlite3")
    f = follower(d, store)
    sent = emit(d, 3)
    rec = Recorder()
    assert f.process(rec) == 3
    assert rec.measurements == sent
    assert f.process(rec) == 0
    more = emit(d, 2)
    assert f.process(rec) == 2
    assert rec.measurements == sent + more
    assert all(store.is_processed(e.event_id) for e in rec.events)


def test_restart_on_the_same_file_delivers_nothing_twice(d: Deployment, tmp_path: Path) -> None:
    path = tmp_path / "agent.sqlite3"
    start = d.w3.eth.block_number + 1
    first = emit(d, 2)
    rec = Recorder()
    store = Store(path)
    assert EventFollower(d.w3, d.contracts, store, start_block=start).process(rec) == 2
    store.close()
    later = emit(d, 1)
    reopened = Store(path)
    restarted = EventFollower(d.w3, d.contracts, reopened, start_block=start)
    assert restarted.process(rec) == 1
    assert rec.measurements == first + later
    # Even a replay from an older checkpoint skips what was committed.
    reopened.set_checkpoint("main", start - 1)
    assert restarted.poll() == []
    assert restarted.process(rec) == 0
    assert restarted.checkpoint == d.w3.eth.block_number


def test_confirmations_hide_the_newest_blocks(
    d: Deployment, anvil_node: AnvilProcess, tmp_path: Path
) -> None:
    store = Store(tmp_path / "a.sqlite3")
    f = follower(d, store, confirmations=2)
    sent = emit(d, 3)  # three blocks: only the first has two blocks on top
    rec = Recorder()
    assert f.process(rec) == 1
    assert rec.measurements == sent[:1]
    assert f.checkpoint == d.w3.eth.block_number - 2
    anvil_node.mine(1)
    assert f.process(rec) == 1
    anvil_node.mine(1)
    assert f.process(rec) == 1
    assert rec.measurements == sent


def test_handler_failure_rolls_back_and_is_redelivered(d: Deployment, tmp_path: Path) -> None:
    path = tmp_path / "a.sqlite3"
    store = Store(path)
    f = follower(d, store)
    sent = emit(d, 3)
    failing = Recorder(store, fail_on=sent[1])
    with pytest.raises(RuntimeError, match="handler failed"):
        f.process(failing)
    assert failing.measurements == sent[:1]
    first_id = failing.events[0].event_id
    assert store.is_processed(first_id) and store.get_json(f"seen/{first_id}") == "MeasurementApproved"
    assert len(store.keys("seen/")) == 1  # the failed event's handler write was rolled back
    assert f.checkpoint == failing.events[0].block_number
    # A restarted agent gets the failed event again, and the first one not at all.
    store.close()
    restarted = Store(path)
    ok = Recorder(restarted)
    assert follower(d, restarted, start_block=0).process(ok) == 2
    assert ok.measurements == sent[1:]
    assert len(restarted.keys("seen/")) == 3


def test_failure_inside_a_block_redelivers_only_the_rest_of_it(
    d: Deployment, anvil_node: AnvilProcess, tmp_path: Path
) -> None:
    store = Store(tmp_path / "a.sqlite3")
    f = follower(d, store)
    measurements = [os.urandom(32) for _ in range(3)]
    gov = d.governor
    nonce = d.w3.eth.get_transaction_count(gov.address, "pending")
    anvil_node.rpc("evm_setAutomine", False)
    try:
        for i, m in enumerate(measurements):
            tx = d.contracts.registry.functions.approveMeasurement(PROVIDER, m).build_transaction(
                {
                    "from": gov.address,
                    "nonce": nonce + i,
                    "gas": 200_000,
                    "maxFeePerGas": 10**11,
                    "maxPriorityFeePerGas": 10**9,
                    "chainId": 31337,
                }
            )
            d.w3.eth.send_raw_transaction(gov.sign_transaction(tx).raw_transaction)
        anvil_node.mine()
    finally:
        anvil_node.rpc("evm_setAutomine", True)
    d.gov_tx.resync_nonce()
    failing = Recorder(fail_on=measurements[1])
    with pytest.raises(RuntimeError):
        f.process(failing)
    block = failing.events[0].block_number
    assert f.checkpoint is None or f.checkpoint < block  # the block is not fully processed
    rec = Recorder()
    assert f.process(rec) == 2
    assert rec.measurements == measurements[1:]
    assert {e.block_number for e in rec.events} == {block}
    assert f.checkpoint == d.w3.eth.block_number


@pytest.mark.parametrize("batch", [1, 2, 3])
def test_batches_smaller_than_the_range_see_the_same_events(
    d: Deployment, tmp_path: Path, batch: int
) -> None:
    start = d.w3.eth.block_number + 1
    sent = emit(d, 5)
    big = Recorder()
    EventFollower(d.w3, d.contracts, Store(tmp_path / "big.sqlite3"), start_block=start).process(big)
    small = Recorder()
    f = EventFollower(
        d.w3, d.contracts, Store(tmp_path / "small.sqlite3"), start_block=start, batch_blocks=batch
    )
    assert f.process(small) == 5
    assert small.events == big.events
    assert small.measurements == sent


def test_start_block_skips_older_history_and_empty_blocks_advance(
    d: Deployment, anvil_node: AnvilProcess, tmp_path: Path
) -> None:
    emit(d, 1)
    store = Store(tmp_path / "a.sqlite3")
    f = follower(d, store)
    assert f.process(Recorder()) == 0
    anvil_node.mine(3)
    assert f.process(Recorder()) == 0
    assert f.checkpoint == d.w3.eth.block_number


def test_a_refused_log_range_is_split(d: Deployment, anvil_node: AnvilProcess, tmp_path: Path) -> None:
    start = d.w3.eth.block_number + 1
    sent = emit(d, 4)
    with FaultProxy(anvil_node.url) as proxy:
        w3 = Web3(Web3.HTTPProvider(proxy.url))
        f = EventFollower(w3, d.contracts, Store(tmp_path / "a.sqlite3"), start_block=start)
        proxy.inject("eth_getLogs", "rpc_error")
        rec = Recorder()
        assert f.process(rec) == 4
        assert proxy.seen["eth_getLogs"] == 3  # refused once, then two halves
    assert rec.measurements == sent


def test_invalid_settings_are_refused(d: Deployment, tmp_path: Path) -> None:
    store = Store(tmp_path / "a.sqlite3")
    with pytest.raises(ValueError):
        EventFollower(d.w3, d.contracts, store, batch_blocks=0)
    with pytest.raises(ValueError):
        EventFollower(d.w3, d.contracts, store, confirmations=-1)


# -- a block announced by the subscription (chain.heads.Head) -----------------------------


def announced(d: Deployment, number: int | None = None) -> Head:
    """The head the newHeads subscription would announce for block ``number`` (the latest)."""
    block = d.w3.eth.get_block("latest" if number is None else number)
    return Head(int(block["number"]), "0x" + bytes(block["hash"]).hex(), bytes(block["logsBloom"]))


def test_an_announced_block_without_our_logs_costs_no_request(
    d: Deployment, anvil_node: AnvilProcess, tmp_path: Path
) -> None:
    with FaultProxy(anvil_node.url) as proxy:
        w3 = Web3(Web3.HTTPProvider(proxy.url))
        f = EventFollower(
            w3, d.contracts, Store(tmp_path / "a.sqlite3"), start_block=d.w3.eth.block_number + 1
        )
        anvil_node.mine(1)  # an empty block
        empty = announced(d)
        assert not f.may_hold_ours(empty)
        assert f.process(Recorder(), empty) == 0
        assert dict(proxy.seen) == {}  # neither eth_blockNumber nor eth_getLogs
        assert f.skipped == 1 and f.checkpoint == empty.number
        sent = emit(d, 1)  # a block with one of our events: its logs, by its hash, and nothing else
        ours = announced(d)
        assert f.may_hold_ours(ours)
        rec = Recorder()
        assert f.process(rec, ours) == 1
        assert rec.measurements == sent
        assert dict(proxy.seen) == {"eth_getLogs": 1}
        assert f.checkpoint == ours.number


def test_a_block_of_another_contract_is_skipped_by_its_bloom(d: Deployment, tmp_path: Path) -> None:
    artifact = json.loads((ABI_DIR / "ConsortiumRegistry.json").read_text())
    factory = d.w3.eth.contract(abi=artifact["abi"], bytecode=artifact["bytecode"])
    receipt = d.gov_tx.send(factory.constructor(d.governor.address), label="foreign")
    foreign = d.w3.eth.contract(address=receipt["contractAddress"], abi=artifact["abi"])
    f = follower(d, Store(tmp_path / "a.sqlite3"))
    # The very event our registry emits, from a registry that is not ours.
    d.gov_tx.send(foreign.functions.approveMeasurement(PROVIDER, os.urandom(32)), label="foreign-approve")
    head = announced(d)
    assert int.from_bytes(head.bloom, "big") != 0  # the block has logs, none of ours
    assert f.process(Recorder(), head) == 0
    assert f.skipped == 1


def test_a_head_the_node_does_not_know_is_read_by_range(
    d: Deployment, anvil_node: AnvilProcess, tmp_path: Path
) -> None:
    """A node behind a balancer may announce a block its HTTP side has not seen: the
    follower must not take "no logs" for an answer, and reads by range instead."""
    sent = emit(d, 1)
    real = announced(d)
    unknown = Head(real.number, "0x" + os.urandom(32).hex(), real.bloom)
    with FaultProxy(anvil_node.url) as proxy:
        w3 = Web3(Web3.HTTPProvider(proxy.url))
        f = EventFollower(w3, d.contracts, Store(tmp_path / "a.sqlite3"), start_block=real.number)
        rec = Recorder()
        assert f.process(rec, unknown) == 1
        assert proxy.seen["eth_getLogs"] == 2 and proxy.seen["eth_blockNumber"] == 1
    assert rec.measurements == sent


def test_blocks_after_the_announced_one_wait_for_their_own_head_or_a_poll(
    d: Deployment, anvil_node: AnvilProcess, tmp_path: Path
) -> None:
    start = d.w3.eth.block_number + 1
    first = emit(d, 1)
    head = announced(d)
    later = emit(d, 2)  # two more blocks before the step
    with FaultProxy(anvil_node.url) as proxy:
        w3 = Web3(Web3.HTTPProvider(proxy.url))
        f = EventFollower(w3, d.contracts, Store(tmp_path / "a.sqlite3"), start_block=start)
        rec = Recorder()
        assert f.process(rec, head) == 1  # exactly the announced block
        assert rec.measurements == first and f.checkpoint == head.number
        assert f.process(rec, head) == 2  # the same head again is stale: the rest read by range
        assert rec.measurements == first + later
        assert proxy.seen["eth_blockNumber"] == 1
        assert f.process(rec) == 0  # and a poll without a head as before
        assert f.checkpoint == d.w3.eth.block_number


def test_confirmations_ignore_the_announced_block(d: Deployment, tmp_path: Path) -> None:
    f = follower(d, Store(tmp_path / "a.sqlite3"), confirmations=1)
    sent = emit(d, 2)
    rec = Recorder()
    assert f.process(rec, announced(d)) == 1  # the announced block is not deep enough yet
    assert rec.measurements == sent[:1]
    assert f.checkpoint == d.w3.eth.block_number - 1


@pytest.mark.parametrize(
    "lie",
    [
        lambda logs: [{**log, "blockNumber": hex(int(log["blockNumber"], 16) - 1)} for log in logs],
        lambda logs: [{**log, "removed": True} for log in logs],
        lambda logs: {"not": "a list"},
        lambda logs: [{**log, "blockNumber": None} for log in logs],
    ],
)
def test_a_node_that_answers_logs_it_was_not_asked_for_is_refused(
    d: Deployment, anvil_node: AnvilProcess, tmp_path: Path, lie: Any
) -> None:
    start = d.w3.eth.block_number + 1
    emit(d, 1)
    with FaultProxy(anvil_node.url) as proxy:
        proxy.rewrite["eth_getLogs"] = lie
        w3 = Web3(Web3.HTTPProvider(proxy.url))
        store = Store(tmp_path / "a.sqlite3")
        f = EventFollower(w3, d.contracts, store, start_block=start)
        rec = Recorder()
        with pytest.raises(ChainError, match="eth_getLogs for blocks"):
            f.process(rec)
    assert rec.events == [] and f.checkpoint is None and store.get_checkpoint("main") is None


def test_blocks_without_events_are_checkpointed_in_memory_then_written(
    d: Deployment, anvil_node: AnvilProcess, tmp_path: Path
) -> None:
    path = tmp_path / "a.sqlite3"
    store = Store(path)
    now = [0.0]
    f = follower(d, store, persist_seconds=10, clock=lambda: now[0])
    anvil_node.mine(3)
    assert f.process(Recorder()) == 0
    assert f.checkpoint == d.w3.eth.block_number
    assert store.get_checkpoint("main") is None  # not worth a disk flush yet
    now[0] = 11.0
    anvil_node.mine(1)
    f.process(Recorder())
    assert store.get_checkpoint("main") == d.w3.eth.block_number  # written once the interval passed
    anvil_node.mine(2)
    f.process(Recorder())
    assert store.get_checkpoint("main") == d.w3.eth.block_number - 2
    f.flush()  # what the agent does when it stops
    assert store.get_checkpoint("main") == d.w3.eth.block_number


def test_a_crash_before_the_checkpoint_is_written_rescans_and_delivers_nothing_twice(
    d: Deployment, anvil_node: AnvilProcess, tmp_path: Path
) -> None:
    path = tmp_path / "a.sqlite3"
    start = d.w3.eth.block_number + 1
    store = Store(path)
    f = EventFollower(d.w3, d.contracts, store, start_block=start, persist_seconds=3600)
    sent = emit(d, 1)
    rec = Recorder()
    assert f.process(rec) == 1
    anvil_node.mine(5)
    assert f.process(rec) == 0
    store.close()  # killed: the five empty blocks' checkpoint was only in memory
    reopened = Store(path)
    assert reopened.get_checkpoint("main") == rec.events[0].block_number
    restarted = EventFollower(d.w3, d.contracts, reopened, start_block=start)
    assert restarted.process(rec) == 0
    assert rec.measurements == sent
    assert restarted.checkpoint == d.w3.eth.block_number
