"""The protocol's parts driven step by step in this one process, through the
``Wiring`` seam: three providers and a gateway share one node connection, each with
its own sealed store and a sender that records what it sends. The chain is a real
Anvil running the real contracts (no fake can judge a protocol better); what the seam
removes is the processes, the polling and the sleeps, so every assertion below is
about one step of one agent, and the whole file runs in seconds.

Onboarding (attest, verify every member, synchronise keys), a round from posting to
the fused shares, a restart that must send nothing, and the responder answering a
gateway's recorded request; plus what an agent does when the wiring is not its own.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from eth_account import Account
from eth_account.signers.local import LocalAccount
from in_process import senders, step_until, wiring

from enclave_agent.chain import ErrorDecoder, TxSender
from enclave_agent.config import load_config
from enclave_agent.crypto.fixed_point import decode
from enclave_agent.errors import ConfigError
from enclave_agent.gateway import auth
from enclave_agent.gateway.service import GatewayAgent
from enclave_agent.operator import clients
from enclave_agent.operator.models import STATS_TAG, register_statistic
from enclave_agent.protocol import queries, records
from enclave_agent.protocol.agent import Agent, MemberAgent
from enclave_agent.protocol.context import Wiring
from enclave_agent.protocol.health import health_report
from enclave_agent.protocol.onboarding import DIGEST_SETTLE_SECONDS
from enclave_agent.protocol.records import ModelRecord, Posting
from enclave_agent.protocol.stages import Stage
from enclave_devnet import Consortium, dev_key, start_consortium
from enclave_devnet.consortium import COMPLETED

FRAC = 16
# One column per provider: its sum, sum of squares and row count (a column-stats round).
ROWS = [np.array([1.5, -2.0, 4.0]), np.array([0.25, 3.0]), np.array([-1.0, 2.5, 2.5, 0.5])]
STATS = [np.array([r.sum(), (r**2).sum(), float(r.size)]) for r in ROWS]
CLIENT_INDEX = 9


@pytest.fixture(scope="module")
def consortium(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Consortium]:
    with start_consortium(tmp_path_factory.mktemp("in-process")) as c:
        for i, stats in enumerate(STATS):
            c.add_agent(f"provider-{i}", i + 1, {STATS_TAG: list(stats)}, start=False)
        gateway = '[gateway]\nhost = "127.0.0.1"\nport = 0\n'  # served by no one here: calls are the test's
        c.add_agent("gateway", len(STATS) + 1, role="gateway", extra=gateway, start=False)
        yield c


@pytest.fixture(scope="module")
def members(consortium: Consortium) -> list[MemberAgent]:
    providers: list[MemberAgent] = [
        Agent(
            load_config(consortium.agents[f"provider-{i}"].config), wiring(consortium, f"provider-{i}", i + 1)
        )
        for i in range(len(STATS))
    ]
    gateway = GatewayAgent(
        load_config(consortium.agents["gateway"].config), wiring(consortium, "gateway", len(STATS) + 1)
    )
    return [*providers, gateway]


def test_members_attest_verify_each_other_and_synchronise(
    consortium: Consortium, members: list[MemberAgent]
) -> None:
    registry = consortium.registry.functions
    started = time.monotonic()
    step_until(
        members, lambda: all(m.stage == Stage.SYNCHRONISED for m in members), "synchronised", limit=400
    )
    # Register, verify, derive keys, post the digest once the last registration's epoch
    # has stood DIGEST_SETTLE_SECONDS: a handful of steps after that.
    assert time.monotonic() - started < DIGEST_SETTLE_SECONDS + 3
    assert registry.isSynchronised().call()
    everyone = sorted(m.address for m in members)
    for member in members:
        assert sorted(r.enclave for r in member.view.members) == everyone
        assert member.view.synchronised_epoch == member.view.epoch
        keys = member.epoch_keys(member.view.epoch)
        assert sorted(keys) == sorted(a for a in everyone if a != member.address)
    # Every pair derived the same key, from its own side.
    a, b = members[0], members[3]
    assert a.epoch_keys(a.view.epoch)[b.address] == b.epoch_keys(b.view.epoch)[a.address]
    for sender in senders(members):  # each posted its digest of the epoch, once
        assert sender.labels.count(f"digest-{a.view.epoch}") == 1


def test_a_round_fuses_shares_that_add_up_to_the_inputs(
    consortium: Consortium, members: list[MemberAgent]
) -> None:
    round_id = consortium.open_round(STATS_TAG, 3, output="statistic")
    step_until(members, lambda: consortium.round_state(round_id) == COMPLETED, f"round {round_id}")
    providers = members[:3]
    shares = [p.fused_share(round_id) for p in providers]
    assert all(s is not None for s in shares)
    assert members[3].fused_share(round_id) is None  # the gateway holds no share
    total = np.zeros(3, dtype=np.uint64)
    for share in shares:
        total = total + share  # type: ignore[operator]
    doc = providers[0].round_doc(round_id)
    assert doc is not None
    assert np.allclose(decode(total, FRAC, doc.modulus), np.sum(STATS, axis=0), atol=3 * 2.0**-FRAC)
    # Each posted exactly the share set it had stored before posting (what a restart re-posts).
    for provider in providers:
        posting = records.load(provider.store, Posting, f"round/{round_id}/posting")
        assert posting is not None
        posted = [
            e
            for e in consortium.round_events(round_id, "SharesPosted")
            if e["args"]["sender"] == provider.address
        ]
        assert len(posted) == len(posting.chunks)
    for provider in providers:  # a seeded share is kept as its 33-byte message until fused
        others = [p.address for p in providers if p is not provider]
        assert [len(provider.unseal_get(f"round/{round_id}/recv/{o}") or b"") for o in others] == [33, 33]
    for share in shares:  # no single share is the sum (or any input) in the clear
        assert not np.allclose(decode(share, FRAC, doc.modulus), np.sum(STATS, axis=0), atol=1)  # type: ignore[arg-type]


def test_restarted_agents_send_nothing_they_sent_before(
    consortium: Consortium, members: list[MemberAgent]
) -> None:
    """A new agent on the same state (a restart) re-reads the chain and finds nothing
    missing: not one transaction."""
    restarted: list[MemberAgent] = []
    for i, old in enumerate(members[:3]):
        old.store.close()
        restarted.append(
            Agent(
                load_config(consortium.agents[f"provider-{i}"].config),
                wiring(consortium, f"provider-{i}", i + 1),
            )
        )
    for _ in range(3):
        for agent in restarted:
            agent.step()
    assert [s.labels for s in senders(restarted)] == [[], [], []]
    members[:3] = restarted


def ask_mean(gateway: GatewayAgent, model: ModelRecord, client: LocalAccount) -> int:
    """The client's signed request for the statistic of column 0, recorded by the gateway."""
    query = queries.Query(queries.KIND_STATISTIC, column=0)
    signed = auth.custody_request(
        client,
        chain_id=gateway.chain_id,
        gateway_contract=gateway.gateway_address,
        model_id=model.id,
        query=query,
        fee=model.fee,
        now=gateway.chain_now(),
    )
    return gateway.requests.submit(model, signed, query)


def test_providers_answer_a_recorded_request_and_the_gateway_completes_it(
    consortium: Consortium, members: list[MemberAgent]
) -> None:
    round_id = max(int(k.split("/")[1]) for k in members[0].store.keys("round/") if k.count("/") == 1)
    governance = consortium.session()
    model_id = register_statistic(governance, round_id, "stats", ["x"])
    client = Account.from_key(dev_key(CLIENT_INDEX))
    clients.set_access(governance, client.address, 10)
    gateway = members[3]
    assert isinstance(gateway, GatewayAgent)
    step_until(members, lambda: gateway.model(model_id) is not None, "the model in the gateway's catalog")
    model = gateway.model(model_id)
    assert model is not None
    order: list[str] = []
    real_sync, real_resolve = gateway.store.sync, gateway.completions.resolve
    answers = lambda: [k for k in gateway.store.blob_keys("request/") if k.endswith("/result")]  # noqa: E731
    before = answers()
    gateway.store.sync = (  # type: ignore[method-assign]
        lambda: order.append(f"sync, {len(answers()) - len(before)} new answer(s)") or real_sync()  # type: ignore[func-returns-value]
    )
    gateway.completions.resolve = (  # type: ignore[method-assign]
        lambda rid, res: order.append(f"resolve {rid}") or real_resolve(rid, res)  # type: ignore[func-returns-value]
    )
    try:
        request_id = ask_mean(gateway, model, client)
        step_until(members, lambda: gateway.requests.settled(request_id)[0], f"request {request_id}")
    finally:
        del gateway.store.sync, gateway.completions.resolve
    # The answer is stored and flushed to disk before the call waiting for it sees it.
    assert order[-2:] == ["sync, 1 new answer(s)", f"resolve {request_id}"]
    closed, results = gateway.requests.settled(request_id)
    assert closed and results is not None and len(results) == 1
    every_row = np.concatenate(ROWS)
    assert results[0]["count"] == pytest.approx(every_row.size)
    assert results[0]["mean"] == pytest.approx(every_row.mean(), abs=1e-3)
    assert results[0]["std"] == pytest.approx(every_row.std(), abs=1e-3)
    record = gateway.requests.request(request_id)
    assert record is not None and record.status == "completed"
    # Each provider answered once (postPartials), the gateway completed once.
    for provider in members[:3]:
        assert provider.enclave_tx.labels.count(f"partial-{request_id}") == 1  # type: ignore[attr-defined]
    assert gateway.enclave_tx.labels.count(f"complete-{request_id}") == 1  # type: ignore[attr-defined]


def test_a_request_answered_only_after_its_deadline_is_refunded_not_completed(
    consortium: Consortium, members: list[MemberAgent]
) -> None:
    """The gateway completes a ready request without asking the chain's time; when the
    contract skips it as expired, the gateway refunds the client at once."""
    gateway = members[3]
    assert isinstance(gateway, GatewayAgent)
    model = max((m for m in (gateway.model(i) for i in range(1, 20)) if m is not None), key=lambda m: m.id)
    client = Account.from_key(dev_key(CLIENT_INDEX))
    request_id = ask_mean(gateway, model, client)
    record = gateway.requests.request(request_id)
    assert record is not None
    for provider in members[:3]:  # every provider answers; the gateway has not stepped
        step_until([provider], lambda p=provider: f"partial-{request_id}" in p.enclave_tx.labels, "a partial")  # type: ignore[attr-defined]
    consortium.advance_time(record.deadline - gateway.chain_now() + 10)
    step_until([gateway], lambda: gateway.requests.settled(request_id)[0], f"request {request_id} settled")
    closed, results = gateway.requests.settled(request_id)
    assert closed and results is None
    settled = gateway.requests.request(request_id)
    assert settled is not None and settled.status == "refunded"
    gateway_contract = consortium.contracts.gateway.functions
    assert gateway_contract.state(request_id).call() == 4  # Refunded
    labels = gateway.enclave_tx.labels  # type: ignore[attr-defined]
    assert labels.count(f"complete-{request_id}") == 1 and labels.count(f"refund-{request_id}") == 1


def test_health_reports_the_block_processed_even_before_it_is_written(
    consortium: Consortium, members: list[MemberAgent]
) -> None:
    """Blocks without events move the checkpoint in memory: /healthz and the block-lag
    metric must not say the agent lags while it keeps up."""
    provider = members[0]
    provider.step()
    provider.follower.flush()
    written = provider.store.get_checkpoint("main")
    consortium.anvil.mine(3)
    provider.step()
    head = consortium.w3.eth.block_number
    assert provider.store.get_checkpoint("main") == written < head  # not yet on disk
    assert health_report(provider)[1]["last_block"] == provider.processed_block() == head


def test_wiring_that_signs_as_another_enclave_is_refused(consortium: Consortium, tmp_path: Path) -> None:
    """An agent never runs on a sender that signs with another key than its enclave's:
    its transactions would claim another member's identity (or fail only later)."""
    parts = wiring(consortium, "provider-0", 1)
    stranger = Account.create()
    wrong = Wiring(
        **(
            vars(parts)
            | {
                "enclave_tx": TxSender(
                    consortium.w3, stranger, ErrorDecoder.from_manifest(consortium.manifest)
                )
            }
        )
    )
    with pytest.raises(ConfigError, match=f"signs as {stranger.address}"):
        Agent(load_config(consortium.agents["provider-0"].config), wrong)
    parts.store.close()
