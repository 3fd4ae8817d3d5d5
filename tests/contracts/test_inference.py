"""InferenceGateway: models, client access and funds, and the request lifecycle."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
from brownie import accounts, chain, web3
from eth_utils import keccak
from helpers import (
    CLIENT_ROLE,
    GATEWAY,
    GOVERNOR_ROLE,
    INTERMEDIATE,
    PROVIDER,
    SHAMIR,
    SHARED_MODEL,
    STATISTIC,
    ClientRequest,
    Consortium,
    RequestState,
    RoundState,
    assert_events,
    key_of,
    next_block_at,
    norm,
    now,
    rejects,
    sign_request,
    state_bit,
    travel_to,
)

FEE = 10**15
DEPOSIT = 10**17
QUOTA = 3
METADATA = '{"link":"logistic"}'


@dataclass
class Served:
    """A synchronised consortium with a completed round, a model on it and an admitted client."""

    w: Consortium
    round_id: int
    model_id: int
    client: object

    @property
    def gw(self):
        return self.w.gateway

    @property
    def gateway_enclave(self):
        return self.w.gateways[0]

    def submit(self, client=None, rows=1, **kwargs):
        return self.w.submit(self.model_id, client or self.client, rows=rows, **kwargs)

    def signed(self, client=None, rows=1, **changes):
        """A request of this model signed by the client, not yet submitted: (request, signature)."""
        request = self.w.request(self.model_id, client or self.client, rows=rows, **changes)
        return request, self.w.sign_request(request, client or self.client)


@pytest.fixture(scope="module")
def _served(_world, client):
    round_id = _world.completed_round()
    model_id = _world.register_model(round_id, fee=FEE)
    _world.admit_client(client, quota=QUOTA, deposit=DEPOSIT)
    return _world, round_id, model_id


@pytest.fixture
def served(_served, client):
    w, round_id, model_id = _served
    return Served(w.clone(), round_id, model_id, client)


def request_deadline(s, request_id):
    return int(s.gw.requestInfo(request_id)[4])


def role_account(s, role):
    w = s.w
    return {
        "governor": w.governor,
        "coordinator": w.coordinator,
        "client": s.client,
        "provider": w.providers[0].account,
        "gateway": w.gateways[0].account,
        "operator": w.providers[0].operator,
        "outsider": accounts[3],
    }[role]


NON_GOVERNORS = ["coordinator", "client", "provider", "gateway", "operator", "outsider"]

# ------------------------------------------------------------------ publishModelRange

RANGE = '{"version":1,"bounds":[5.0]}'


def test_holders_publish_a_models_input_range(served):
    s = served
    for p in s.w.providers:
        tx = s.gw.publishModelRange(s.model_id, RANGE, {"from": p.account})
        assert_events(
            tx, ("ModelRangePublished", {"modelId": s.model_id, "provider": p.address, "range": RANGE})
        )


@pytest.mark.parametrize("role", ["governor", "coordinator", "client", "gateway", "operator", "outsider"])
def test_range_by_a_non_holder(served, role):
    s = served
    caller = role_account(s, role)
    with rejects("InferenceNotModelHolder", s.model_id, caller, world=s.w):
        s.gw.publishModelRange(s.model_id, RANGE, {"from": caller})


def test_range_by_a_provider_joined_later_or_revoked(served):
    s = served
    newcomer, _ = s.w.register(PROVIDER, operator=accounts[8])
    with rejects("InferenceNotModelHolder", s.model_id, newcomer.address, world=s.w):
        s.gw.publishModelRange(s.model_id, RANGE, {"from": newcomer.account})
    p = s.w.providers[1]
    s.w.registry.revoke(p.address, {"from": p.operator})
    with rejects("InferenceNotModelHolder", s.model_id, p.address, world=s.w):
        s.gw.publishModelRange(s.model_id, RANGE, {"from": p.account})


def test_range_of_an_unknown_or_retired_model(served):
    s = served
    p = s.w.providers[0]
    with rejects("InferenceUnknownModel", 99, world=s.w):
        s.gw.publishModelRange(99, RANGE, {"from": p.account})
    s.gw.retireModel(s.model_id, {"from": s.w.governor})
    with rejects("InferenceUnknownModel", s.model_id, world=s.w):
        s.gw.publishModelRange(s.model_id, RANGE, {"from": p.account})


def test_range_while_registry_paused(served):
    s = served
    s.w.registry.pause({"from": s.w.governor})
    with rejects("InferenceRegistryPaused", world=s.w):
        s.gw.publishModelRange(s.model_id, RANGE, {"from": s.w.providers[0].account})


# ------------------------------------------------------------------ registerModel / retireModel


def test_register_model_on_completed_round(served):
    s = served
    tx = s.gw.registerModel(s.round_id, "churn", METADATA, 7, {"from": s.w.governor})
    assert tx.return_value == 2
    assert_events(
        tx,
        (
            "ModelRegistered",
            {
                "modelId": 2,
                "roundId": s.round_id,
                "kind": SHARED_MODEL,
                "fee": 7,
                "name": "churn",
                "metadata": METADATA,
            },
        ),
    )
    assert norm(s.gw.modelInfo(2)) == norm((s.round_id, SHARED_MODEL, 7, True, keccak(text=METADATA)))
    assert s.gw.modelCount() == 2


def test_register_statistic_takes_the_rounds_kind(served):
    s = served
    rid = s.w.completed_round(kind=STATISTIC, min_contributors=3)
    tx = s.gw.registerModel(rid, "income-sum", "{}", 0, {"from": s.w.governor})
    assert tx.events["ModelRegistered"]["kind"] == STATISTIC
    assert s.gw.modelInfo(tx.return_value)[1] == STATISTIC


def test_register_model_on_unfinished_rounds(served):
    s = served
    w = s.w
    posting, _ = w.open_round()
    with rejects("InferenceRoundNotCompleted", posting, RoundState.POSTING, world=w):
        s.gw.registerModel(posting, "m", "{}", 0, {"from": w.governor})
    fusing, _ = w.open_round()
    w.post_all(fusing)
    with rejects("InferenceRoundNotCompleted", fusing, RoundState.FUSING, world=w):
        s.gw.registerModel(fusing, "m", "{}", 0, {"from": w.governor})
    with rejects("InferenceRoundNotCompleted", 42, RoundState.NONE, world=w):
        s.gw.registerModel(42, "m", "{}", 0, {"from": w.governor})
    deadline = int(w.exchange.roundInfo(fusing)[5])
    travel_to(deadline + 1)
    with rejects("InferenceRoundNotCompleted", fusing, RoundState.EXPIRED, world=w):
        s.gw.registerModel(fusing, "m", "{}", 0, {"from": w.governor})
    w.exchange.finalize(fusing, {"from": accounts[3]})
    with rejects("InferenceRoundNotCompleted", fusing, RoundState.ABORTED, world=w):
        s.gw.registerModel(fusing, "m", "{}", 0, {"from": w.governor})


def test_register_model_on_intermediate_round(served):
    """An Intermediate aggregate is revealed to the enclaves only; it cannot back a model."""
    s = served
    rid = s.w.completed_round(kind=INTERMEDIATE)
    with rejects("InferenceRoundNotServable", rid, INTERMEDIATE, world=s.w):
        s.gw.registerModel(rid, "m", "{}", 0, {"from": s.w.governor})


def test_retire_model(served):
    s = served
    tx = s.gw.retireModel(s.model_id, {"from": s.w.governor})
    assert_events(tx, ("ModelRetired", {"modelId": s.model_id}))
    assert s.gw.modelInfo(s.model_id)[3] is False
    with rejects("InferenceUnknownModel", s.model_id, world=s.w):
        s.gw.retireModel(s.model_id, {"from": s.w.governor})
    with rejects("InferenceUnknownModel", s.model_id, world=s.w):
        s.submit()


def test_retire_unknown_model(served):
    with rejects("InferenceUnknownModel", 9, world=served.w):
        served.gw.retireModel(9, {"from": served.w.governor})


def test_pending_request_survives_retirement(served):
    s = served
    rid, _ = s.submit()
    s.gw.retireModel(s.model_id, {"from": s.w.governor})
    s.gw.postPartial(rid, b"partial", {"from": s.w.providers[0].account})
    tx = s.gw.completeRequest(rid, keccak(b"result"), {"from": s.gateway_enclave.account})
    assert tx.status == 1


# ------------------------------------------------------------------ client access


def test_grant_client_access(served):
    s = served
    new = accounts[8]
    tx = s.gw.setClientAccess(new, 2, {"from": s.w.governor})
    assert_events(
        tx,
        ("RoleGranted", {"role": CLIENT_ROLE, "account": new, "sender": s.w.governor}),
        ("ClientAccessSet", {"client": new, "quota": 2}),
    )
    assert s.gw.hasRole(CLIENT_ROLE, new)
    assert norm(s.gw.quotaOf(new)) == (2, 0)


def test_change_quota_of_existing_client(served):
    s = served
    s.submit()
    tx = s.gw.setClientAccess(s.client, 10, {"from": s.w.governor})
    assert_events(tx, ("ClientAccessSet", {"client": s.client, "quota": 10}))
    assert norm(s.gw.quotaOf(s.client)) == (10, 1)


def test_revoke_client_access(served):
    s = served
    tx = s.gw.setClientAccess(s.client, 0, {"from": s.w.governor})
    assert_events(
        tx,
        ("RoleRevoked", {"role": CLIENT_ROLE, "account": s.client, "sender": s.w.governor}),
        ("ClientAccessSet", {"client": s.client, "quota": 0}),
    )
    assert not s.gw.hasRole(CLIENT_ROLE, s.client)
    with rejects("InferenceClientNotAuthorised", s.client, world=s.w):
        s.submit()


def test_zero_quota_for_a_stranger_only_records_it(served):
    s = served
    tx = s.gw.setClientAccess(accounts[8], 0, {"from": s.w.governor})
    assert_events(tx, ("ClientAccessSet", {"client": accounts[8], "quota": 0}))


# ------------------------------------------------------------------ request TTL


@pytest.mark.parametrize(("ttl", "ok"), [(10, True), (86400, True), (9, False), (0, False), (86401, False)])
def test_request_ttl_bounds(served, ttl, ok):
    s = served
    if ok:
        tx = s.gw.setRequestTtl(ttl, {"from": s.w.governor})
        assert len(tx.events) == 1 and tx.events["RequestTtlSet"]["ttl"] == ttl
        assert s.gw.requestTtl() == ttl
        rid, tx = s.submit()
        assert request_deadline(s, rid) == tx.timestamp + ttl
    else:
        with rejects("InferenceInvalidTtl", ttl, world=s.w):
            s.gw.setRequestTtl(ttl, {"from": s.w.governor})


def test_default_ttl(served):
    assert served.gw.requestTtl() == 120
    assert served.gw.MIN_TTL() == 10 and served.gw.MAX_TTL() == 86400


# ------------------------------------------------------------------ governance access


@pytest.mark.parametrize("role", NON_GOVERNORS)
def test_gateway_governance_needs_the_governor_role(served, role):
    s = served
    caller = role_account(s, role)
    calls = [
        lambda: s.gw.registerModel(s.round_id, "m", "{}", 0, {"from": caller}),
        lambda: s.gw.retireModel(s.model_id, {"from": caller}),
        lambda: s.gw.setClientAccess(caller, 100, {"from": caller}),
        lambda: s.gw.setRequestTtl(60, {"from": caller}),
        lambda: s.gw.withdrawFees(caller, {"from": caller}),
        lambda: s.gw.grantRole(CLIENT_ROLE, accounts[9], {"from": caller}),
    ]
    for call in calls:
        with rejects("AccessControlUnauthorizedAccount", caller, GOVERNOR_ROLE, world=s.w):
            call()


# ------------------------------------------------------------------ deposit / withdraw / withdrawFees


def test_deposit_and_withdraw(served):
    s = served
    payer = accounts[8]
    gw_before = web3.eth.get_balance(s.gw.address)
    payer_before = payer.balance()
    tx = s.gw.deposit({"from": payer, "value": 500})
    assert_events(tx, ("BalanceChanged", {"client": payer, "balance": 500}))
    tx = s.gw.deposit({"from": payer, "value": 250})
    assert_events(tx, ("BalanceChanged", {"client": payer, "balance": 750}))
    assert s.gw.balanceOf(payer) == 750
    assert web3.eth.get_balance(s.gw.address) == gw_before + 750
    tx = s.gw.withdraw(700, {"from": payer})
    assert_events(tx, ("BalanceChanged", {"client": payer, "balance": 50}))
    assert s.gw.balanceOf(payer) == 50
    assert payer.balance() == payer_before - 50  # gas price is zero on the test chain
    assert web3.eth.get_balance(s.gw.address) == gw_before + 50


def test_withdraw_more_than_the_balance(served):
    s = served
    with rejects("InferenceInsufficientBalance", s.client, DEPOSIT, DEPOSIT + 1, world=s.w):
        s.gw.withdraw(DEPOSIT + 1, {"from": s.client})
    with rejects("InferenceInsufficientBalance", accounts[3], 0, 1, world=s.w):
        s.gw.withdraw(1, {"from": accounts[3]})


def test_withdraw_to_an_account_refusing_ether(served):
    """A contract without a receive function deposits, then cannot take the ether back."""
    s = served
    refuser = accounts.at(s.w.exchange.address, force=True)
    web3.provider.make_request("anvil_setBalance", [s.w.exchange.address, hex(10**18)])
    s.gw.deposit({"from": refuser, "value": 1000})
    s.w.known.append(s.w.exchange.address)
    with rejects("InferenceTransferFailed", s.w.exchange.address, 400, world=s.w):
        s.gw.withdraw(400, {"from": refuser})


def test_withdraw_fees(served):
    s = served
    for _ in range(2):
        rid, _ = s.submit()
        s.w.complete(rid)
    assert s.gw.collectedFees() == 2 * FEE
    treasury = accounts[9]
    before = treasury.balance()
    tx = s.gw.withdrawFees(treasury, {"from": s.w.governor})
    assert len(tx.events) == 1
    assert dict(tx.events["FeesWithdrawn"]) == {"to": treasury, "amount": 2 * FEE}
    assert treasury.balance() == before + 2 * FEE
    assert s.gw.collectedFees() == 0
    # Client deposits are untouched.
    assert web3.eth.get_balance(s.gw.address) == s.gw.balanceOf(s.client)


def test_withdraw_fees_to_an_account_refusing_ether(served):
    s = served
    rid, _ = s.submit()
    s.w.complete(rid)
    with rejects("InferenceTransferFailed", s.w.exchange.address, FEE, world=s.w):
        s.gw.withdrawFees(s.w.exchange.address, {"from": s.w.governor})


# ------------------------------------------------------------------ submitRequest


def test_submit_request(served):
    s = served
    query = b"\x07" * 96
    request = ClientRequest(
        s.client.address, s.model_id, 1, keccak(b"the plaintext query"), 7, now() + 600, FEE
    )
    signature, digest = sign_request(key_of(s.client), request, chain.id, s.gw.address)
    assert bytes(s.gw.requestDigest(request.as_tuple())) == digest
    tx = s.gw.submitRequest(request.as_tuple(), signature, query, {"from": s.gateway_enclave.account})
    deadline = tx.timestamp + 120
    assert tx.return_value == 1
    assert_events(
        tx,
        (
            "RequestSubmitted",
            {
                "requestId": 1,
                "modelId": s.model_id,
                "client": s.client,
                "gateway": s.gateway_enclave.address,
                "requestDigest": digest,
                "inputHash": keccak(b"the plaintext query"),
                "deadline": deadline,
                "fee": FEE,
                "rows": 1,
                "encryptedQuery": query,
            },
        ),
    )
    assert s.gw.state(1) == RequestState.PENDING
    assert norm(s.gw.requestInfo(1)) == norm(
        (s.model_id, s.client, s.gateway_enclave.address, FEE, deadline, 0)
    )
    assert s.gw.balanceOf(s.client) == DEPOSIT - FEE
    assert norm(s.gw.quotaOf(s.client)) == (QUOTA, 1)
    assert s.gw.requestCount() == 1
    assert s.gw.collectedFees() == 0  # the fee is held until the request completes


def test_submit_free_model_without_deposit(served):
    s = served
    free = s.w.register_model(s.round_id, fee=0)
    poor = accounts[8]
    s.gw.setClientAccess(poor, 1, {"from": s.w.governor})
    rid, tx = s.w.submit(free, poor)
    assert tx.events["RequestSubmitted"]["fee"] == 0


@pytest.mark.parametrize("role", ["governor", "coordinator", "client", "provider", "operator", "outsider"])
def test_submit_by_non_gateway(served, role):
    s = served
    caller = role_account(s, role)
    request, signature = s.signed()
    with rejects("InferenceNotGateway", caller, world=s.w):
        s.gw.submitRequest(request.as_tuple(), signature, b"q", {"from": caller})


def test_submit_by_revoked_gateway(served):
    s = served
    gw_enclave = s.gateway_enclave
    s.w.registry.revoke(gw_enclave.address, {"from": s.w.governor})
    request, signature = s.signed()
    with rejects("InferenceNotGateway", gw_enclave.address, world=s.w):
        s.gw.submitRequest(request.as_tuple(), signature, b"q", {"from": gw_enclave.account})


def test_submit_for_unknown_model(served):
    s = served
    for model in (0, 5):
        with rejects("InferenceUnknownModel", model, world=s.w):
            s.w.submit(model, s.client)


def test_submit_for_unauthorised_client(served):
    s = served
    stranger = accounts[3]
    s.gw.deposit({"from": stranger, "value": DEPOSIT})
    with rejects("InferenceClientNotAuthorised", stranger, world=s.w):
        s.submit(client=stranger)


def test_client_role_without_quota_is_exhausted(served):
    """A client granted the role directly, not through setClientAccess, has no quota."""
    s = served
    direct = accounts[8]
    s.gw.grantRole(CLIENT_ROLE, direct, {"from": s.w.governor})
    s.gw.deposit({"from": direct, "value": DEPOSIT})
    with rejects("InferenceQuotaExhausted", direct, 0, 0, world=s.w):
        s.submit(client=direct)


def test_quota_exhausted(served):
    s = served
    for _ in range(QUOTA):
        s.submit()
    with rejects("InferenceQuotaExhausted", s.client, QUOTA, QUOTA, world=s.w):
        s.submit()


def test_a_request_of_several_rows_pays_and_counts_each_row(served):
    s = served
    rid, tx = s.submit(rows=QUOTA)
    assert tx.events["RequestSubmitted"]["rows"] == QUOTA
    assert tx.events["RequestSubmitted"]["fee"] == FEE * QUOTA
    assert norm(s.gw.requestInfo(rid))[3] == FEE * QUOTA
    assert s.gw.balanceOf(s.client) == DEPOSIT - FEE * QUOTA
    assert norm(s.gw.quotaOf(s.client)) == (QUOTA, QUOTA)


def test_rows_beyond_the_remaining_quota_are_refused_whole(served):
    s = served
    s.submit()
    with rejects("InferenceQuotaExhausted", s.client, 1, QUOTA, world=s.w):
        s.submit(rows=QUOTA)
    assert s.submit(rows=QUOTA - 1)[1].status == 1


def test_a_fee_for_every_row(served):
    s = served
    s.gw.withdraw(DEPOSIT - 2 * FEE, {"from": s.client})
    with rejects("InferenceFeeUnpaid", s.client, 2 * FEE, 3 * FEE, world=s.w):
        s.submit(rows=3)


@pytest.mark.parametrize("rows", [0, 257])
def test_row_count_outside_1_to_max_rows(served, rows):
    s = served
    assert s.gw.MAX_ROWS() == 256
    with rejects("InferenceInvalidRows", s.model_id, rows, 256, world=s.w):
        s.submit(rows=rows)


def test_fee_unpaid(served):
    s = served
    s.gw.withdraw(DEPOSIT - FEE + 1, {"from": s.client})
    with rejects("InferenceFeeUnpaid", s.client, FEE - 1, FEE, world=s.w):
        s.submit()
    s.gw.deposit({"from": s.client, "value": 1})
    assert s.submit()[1].status == 1


def test_replayed_request_digest(served):
    s = served
    request, signature = s.signed()
    s.submit(request=request, signature=signature)
    digest = bytes(s.gw.requestDigest(request.as_tuple()))
    with rejects("InferenceRequestReplayed", digest, world=s.w):
        s.submit(request=request, signature=signature)
    # A new nonce is a new request the client consents to.
    assert s.submit(request=request.but(nonce=request.nonce + 1))[1].status == 1


def test_submit_while_registry_paused(served):
    s = served
    s.w.registry.pause({"from": s.w.governor})
    with rejects("InferenceRegistryPaused", world=s.w):
        s.submit()


def _statistic(s, minimum):
    """A completed Shamir 2-of-3 statistic round (every provider contributed)."""
    w = s.w
    rid, _ = w.open_round(scheme=SHAMIR, threshold=2, kind=STATISTIC, min_contributors=minimum)
    w.post_all(rid)
    w.fuse_all(rid)
    assert w.exchange.state(rid) == RoundState.COMPLETED
    return w.register_model(rid, fee=FEE, name="sum")


def test_a_statistic_never_rests_on_fewer_contributors_than_its_minimum(served):
    """The round's floor includes the output policy's minimum: a statistic round with two
    contributors of three never completes, so no statistic can be registered on it, and
    the gateway's own check (InferenceTooFewContributors) stays a second line."""
    w = served.w
    rid, _ = w.open_round(scheme=SHAMIR, threshold=2, kind=STATISTIC, min_contributors=3)
    assert w.exchange.roundGuards(rid)[0] == 3
    w.post_all(rid, w.providers[:2])
    travel_to(int(w.exchange.roundInfo(rid)[4]) + 1)
    w.exchange.closePosting(rid, {"from": accounts[3]})
    assert w.exchange.state(rid) == RoundState.ABORTED
    with rejects("InferenceRoundNotCompleted", rid, RoundState.ABORTED, world=w):
        w.gateway.registerModel(rid, "sum", "{}", FEE, {"from": w.governor})


def test_a_statistic_request_is_one_row(served):
    s = served
    model = _statistic(s, minimum=2)
    with rejects("InferenceInvalidRows", model, 2, 1, world=s.w):
        s.w.submit(model, s.client, rows=2)


def test_statistic_with_enough_contributors(served):
    s = served
    model = _statistic(s, minimum=3)
    rid, tx = s.w.submit(model, s.client)
    assert tx.status == 1 and s.gw.state(rid) == RequestState.PENDING


# ------------------------------------------------------------------ postPartial


def test_post_partials(served):
    s = served
    rid, _ = s.submit()
    for i, p in enumerate(s.w.providers):
        ciphertext = keccak(p.address.encode()) * 2
        tx = s.gw.postPartial(rid, ciphertext, {"from": p.account})
        assert_events(
            tx, ("PartialPosted", {"requestId": rid, "provider": p.address, "ciphertext": ciphertext})
        )
        assert s.gw.requestInfo(rid)[5] == i + 1


def test_partial_twice(served):
    s = served
    rid, _ = s.submit()
    p = s.w.providers[0]
    s.gw.postPartial(rid, b"a", {"from": p.account})
    with rejects("InferencePartialAlreadyPosted", rid, p.address, world=s.w):
        s.gw.postPartial(rid, b"b", {"from": p.account})


@pytest.mark.parametrize("role", ["governor", "coordinator", "client", "gateway", "operator", "outsider"])
def test_partial_by_non_shareholder(served, role):
    s = served
    rid, _ = s.submit()
    caller = role_account(s, role)
    with rejects("InferenceNotShareholder", rid, caller, world=s.w):
        s.gw.postPartial(rid, b"p", {"from": caller})


def test_partial_by_revoked_holder(served):
    s = served
    rid, _ = s.submit()
    p = s.w.providers[1]
    s.w.registry.revoke(p.address, {"from": p.operator})
    with rejects("InferenceNotShareholder", rid, p.address, world=s.w):
        s.gw.postPartial(rid, b"p", {"from": p.account})


def test_partial_by_provider_not_holding_this_model(served):
    """Shamir round finalised with holders {0, 2}: provider 1 holds nothing of it."""
    s = served
    w = s.w
    round_id, _ = w.open_round(scheme=SHAMIR, threshold=2)
    w.post_all(round_id)
    w.fuse_all(round_id, [w.providers[0], w.providers[2]])
    travel_to(int(w.exchange.roundInfo(round_id)[5]) + 1)
    w.exchange.finalize(round_id, {"from": accounts[3]})
    model = w.register_model(round_id, fee=FEE)
    rid, _ = w.submit(model, s.client)
    with rejects("InferenceNotShareholder", rid, w.providers[1].address, world=w):
        s.gw.postPartial(rid, b"p", {"from": w.providers[1].account})
    assert s.gw.postPartial(rid, b"p", {"from": w.providers[2].account}).status == 1


def test_partial_by_provider_joined_later(served):
    s = served
    rid, _ = s.submit()
    newcomer, _ = s.w.register(PROVIDER, operator=accounts[8])
    with rejects("InferenceNotShareholder", rid, newcomer.address, world=s.w):
        s.gw.postPartial(rid, b"p", {"from": newcomer.account})


def test_partial_while_registry_paused(served):
    s = served
    rid, _ = s.submit()
    s.w.registry.pause({"from": s.w.governor})
    with rejects("InferenceRegistryPaused", world=s.w):
        s.gw.postPartial(rid, b"p", {"from": s.w.providers[0].account})


def test_partial_on_unknown_completed_and_expired_requests(served):
    s = served
    p = s.w.providers[0]
    pending = state_bit(RequestState.PENDING)
    with rejects("InferenceUnexpectedState", 4, RequestState.NONE, pending, world=s.w):
        s.gw.postPartial(4, b"p", {"from": p.account})
    done, _ = s.submit()
    s.w.complete(done, provider=1)
    with rejects("InferenceUnexpectedState", done, RequestState.COMPLETED, pending, world=s.w):
        s.gw.postPartial(done, b"p", {"from": p.account})
    late, _ = s.submit()
    travel_to(request_deadline(s, late) + 1)
    with rejects("InferenceUnexpectedState", late, RequestState.EXPIRED, pending, world=s.w):
        s.gw.postPartial(late, b"p", {"from": p.account})
    s.gw.refundExpired(late, {"from": accounts[3]})
    with rejects("InferenceUnexpectedState", late, RequestState.REFUNDED, pending, world=s.w):
        s.gw.postPartial(late, b"p", {"from": p.account})


# ------------------------------------------------------------------ postPartials (a batch)


def test_a_batch_posts_every_pending_request_in_one_transaction(served):
    s = served
    p = s.w.providers[0]
    ids = [s.submit()[0] for _ in range(3)]
    ciphertexts = [keccak(bytes([i])) * 2 for i in range(3)]
    tx = s.gw.postPartials(ids, ciphertexts, {"from": p.account})
    assert tx.return_value == 3
    assert_events(
        tx,
        *[
            ("PartialPosted", {"requestId": rid, "provider": p.address, "ciphertext": c})
            for rid, c in zip(ids, ciphertexts, strict=True)
        ],
    )
    assert [s.gw.requestInfo(rid)[5] for rid in ids] == [1, 1, 1]


def test_a_batch_skips_requests_answered_completed_or_expired(served):
    """A batch races expiry and its own retries: what is no longer pending, or already
    answered by this provider, is skipped; the rest is posted."""
    s = served
    p = s.w.providers[0]
    s.gw.setClientAccess(s.client, 10, {"from": s.w.governor})
    late, _ = s.submit()
    travel_to(request_deadline(s, late) + 1)
    answered, _ = s.submit()
    s.gw.postPartial(answered, b"a", {"from": p.account})
    done, _ = s.submit()
    s.w.complete(done, provider=1)
    fresh, _ = s.submit()
    tx = s.gw.postPartials([answered, done, late, 99, fresh], [b"x"] * 5, {"from": p.account})
    assert tx.return_value == 1
    assert_events(tx, ("PartialPosted", {"requestId": fresh, "provider": p.address, "ciphertext": b"x"}))
    assert s.gw.requestInfo(answered)[5] == 1 and s.gw.requestInfo(fresh)[5] == 1


def test_a_batch_by_a_non_shareholder_or_while_paused_reverts_whole(served):
    s = served
    first, _ = s.submit()
    second, _ = s.submit()
    newcomer, _ = s.w.register(PROVIDER, operator=accounts[8])
    with rejects("InferenceNotShareholder", first, newcomer.address, world=s.w):
        s.gw.postPartials([first, second], [b"p", b"q"], {"from": newcomer.account})
    assert s.gw.requestInfo(first)[5] == 0 and s.gw.requestInfo(second)[5] == 0
    s.w.registry.pause({"from": s.w.governor})
    with rejects("InferenceRegistryPaused", world=s.w):
        s.gw.postPartials([first], [b"p"], {"from": s.w.providers[0].account})


@pytest.mark.parametrize(("ids", "ciphertexts"), [(0, 0), (2, 1), (1, 2)])
def test_a_batch_needs_one_ciphertext_per_request(served, ids, ciphertexts):
    s = served
    rid, _ = s.submit()
    with rejects("InferenceInvalidBatch", ids, ciphertexts, world=s.w):
        s.gw.postPartials([rid] * ids, [b"p"] * ciphertexts, {"from": s.w.providers[0].account})


def test_a_batch_costs_less_per_request_than_single_posts(served):
    s = served
    p = s.w.providers[0]
    s.gw.setClientAccess(s.client, 10, {"from": s.w.governor})
    singles = [s.gw.postPartial(s.submit()[0], b"c" * 64, {"from": p.account}).gas_used for _ in range(4)]
    batch = s.gw.postPartials([s.submit()[0] for _ in range(4)], [b"c" * 64] * 4, {"from": p.account})
    assert batch.gas_used < sum(singles) - 3 * 20_000  # one transaction's base cost, not four


# ------------------------------------------------------------------ completeRequest


def test_complete_request(served):
    s = served
    rid, _ = s.submit()
    for p in s.w.providers[:2]:
        s.gw.postPartial(rid, b"p", {"from": p.account})
    result = keccak(b"result commitment")
    tx = s.gw.completeRequest(rid, result, {"from": s.gateway_enclave.account})
    assert_events(tx, ("RequestCompleted", {"requestId": rid, "resultCommitment": result, "partials": 2}))
    assert s.gw.state(rid) == RequestState.COMPLETED
    assert s.gw.collectedFees() == FEE
    assert s.gw.balanceOf(s.client) == DEPOSIT - FEE
    assert norm(s.gw.quotaOf(s.client)) == (QUOTA, 1)


def test_complete_without_partials(served):
    s = served
    rid, _ = s.submit()
    with rejects("InferenceNoPartials", rid, world=s.w):
        s.gw.completeRequest(rid, keccak(b"r"), {"from": s.gateway_enclave.account})
    # The caller is checked first: a stranger learns nothing about the partials.
    with rejects("InferenceWrongGateway", rid, accounts[3], s.gateway_enclave.address, world=s.w):
        s.gw.completeRequest(rid, keccak(b"r"), {"from": accounts[3]})


# ------------------------------------------------------------------ completeRequests (a batch)


def answered_requests(s, count: int) -> list[int]:
    """``count`` requests of the client, each with one provider's partial."""
    s.gw.setClientAccess(s.client, 10, {"from": s.w.governor})
    ids = [s.submit()[0] for _ in range(count)]
    for rid in ids:
        s.gw.postPartial(rid, b"p", {"from": s.w.providers[0].account})
    return ids


def test_a_completion_batch_completes_every_answered_request(served):
    s = served
    ids = answered_requests(s, 3)
    commitments = [keccak(bytes([i])) for i in range(3)]
    tx = s.gw.completeRequests(ids, commitments, {"from": s.gateway_enclave.account})
    assert tx.return_value == 3
    assert_events(
        tx,
        *[
            ("RequestCompleted", {"requestId": rid, "resultCommitment": c, "partials": 1})
            for rid, c in zip(ids, commitments, strict=True)
        ],
    )
    assert [s.gw.state(rid) for rid in ids] == [RequestState.COMPLETED] * 3
    assert s.gw.collectedFees() == 3 * FEE


def test_a_completion_batch_skips_completed_and_expired_requests(served):
    """A batch races expiry and its own retries: what is no longer pending is skipped,
    and its fee stays where it was (refundable, or collected once)."""
    s = served
    s.gw.setClientAccess(s.client, 10, {"from": s.w.governor})
    late, _ = s.submit()
    s.gw.postPartial(late, b"p", {"from": s.w.providers[0].account})
    travel_to(request_deadline(s, late) + 1)
    done, _ = s.submit()
    s.w.complete(done)
    fresh, _ = s.submit()
    s.gw.postPartial(fresh, b"p", {"from": s.w.providers[0].account})
    tx = s.gw.completeRequests(
        [done, late, 99, fresh], [keccak(b"r")] * 4, {"from": s.gateway_enclave.account}
    )
    assert tx.return_value == 1
    assert_events(
        tx, ("RequestCompleted", {"requestId": fresh, "resultCommitment": keccak(b"r"), "partials": 1})
    )
    assert s.gw.state(late) == RequestState.EXPIRED and s.gw.collectedFees() == 2 * FEE


def test_a_completion_batch_with_an_unanswered_request_reverts_whole(served):
    s = served
    s.gw.setClientAccess(s.client, 10, {"from": s.w.governor})
    answered, _ = s.submit()
    s.gw.postPartial(answered, b"p", {"from": s.w.providers[0].account})
    unanswered, _ = s.submit()
    with rejects("InferenceNoPartials", unanswered, world=s.w):
        s.gw.completeRequests([answered, unanswered], [keccak(b"r")] * 2, {"from": s.gateway_enclave.account})
    assert s.gw.state(answered) == RequestState.PENDING and s.gw.collectedFees() == 0


@pytest.mark.parametrize(("ids", "commitments"), [(0, 0), (2, 1), (1, 2)])
def test_a_completion_batch_needs_one_commitment_per_request(served, ids, commitments):
    s = served
    rid, _ = s.submit()
    with rejects("InferenceInvalidBatch", ids, commitments, world=s.w):
        s.gw.completeRequests([rid] * ids, [keccak(b"r")] * commitments, {"from": s.gateway_enclave.account})


def test_a_completion_batch_costs_less_per_request_than_single_completions(served):
    s = served
    ids = answered_requests(s, 8)
    singles = [
        s.gw.completeRequest(rid, keccak(b"r"), {"from": s.gateway_enclave.account}).gas_used
        for rid in ids[:4]
    ]
    batch = s.gw.completeRequests(ids[4:], [keccak(b"r")] * 4, {"from": s.gateway_enclave.account})
    assert batch.gas_used < sum(singles) - 3 * 20_000  # one transaction's base cost, not four
    print(f"completeRequest {singles[0]:,} gas; completeRequests of 4: {batch.gas_used:,}")


def test_complete_and_refund_work_while_paused(served):
    """Pausing stops new requests and partials, never the settlement of fees."""
    s = served
    done, _ = s.submit()
    late, _ = s.submit()
    s.gw.postPartial(done, b"p", {"from": s.w.providers[0].account})
    s.w.registry.pause({"from": s.w.governor})
    assert s.gw.completeRequest(done, keccak(b"r"), {"from": s.gateway_enclave.account}).status == 1
    travel_to(request_deadline(s, late) + 1)
    assert s.gw.refundExpired(late, {"from": accounts[3]}).status == 1


def test_complete_at_the_deadline_is_accepted(served):
    s = served
    rid, _ = s.submit()
    s.gw.postPartial(rid, b"p", {"from": s.w.providers[0].account})
    next_block_at(request_deadline(s, rid))
    assert s.gw.completeRequest(rid, keccak(b"r"), {"from": s.gateway_enclave.account}).status == 1


@pytest.mark.parametrize("role", ["governor", "coordinator", "client", "provider", "operator", "outsider"])
def test_complete_by_wrong_account(served, role):
    s = served
    rid, _ = s.submit()
    caller = role_account(s, role)
    with rejects("InferenceWrongGateway", rid, caller, s.gateway_enclave.address, world=s.w):
        s.gw.completeRequest(rid, keccak(b"r"), {"from": caller})


def test_complete_by_another_attested_gateway(served):
    s = served
    rid, _ = s.submit()
    second, _ = s.w.register(GATEWAY, operator=accounts[8])
    s.w.sync()
    with rejects("InferenceWrongGateway", rid, second.address, s.gateway_enclave.address, world=s.w):
        s.gw.completeRequest(rid, keccak(b"r"), {"from": second.account})


def test_complete_by_a_revoked_gateway(served):
    s = served
    rid, _ = s.submit()
    s.gw.postPartial(rid, b"p", {"from": s.w.providers[0].account})
    s.w.registry.revoke(s.gateway_enclave.address, {"from": s.w.governor})
    with rejects("InferenceNotGateway", s.gateway_enclave.address, world=s.w):
        s.gw.completeRequest(rid, keccak(b"r"), {"from": s.gateway_enclave.account})


def test_complete_twice_or_late(served):
    s = served
    pending = state_bit(RequestState.PENDING)
    rid, _ = s.submit()
    s.w.complete(rid)
    with rejects("InferenceUnexpectedState", rid, RequestState.COMPLETED, pending, world=s.w):
        s.gw.completeRequest(rid, keccak(b"r"), {"from": s.gateway_enclave.account})
    late, _ = s.submit()
    s.gw.postPartial(late, b"p", {"from": s.w.providers[0].account})
    travel_to(request_deadline(s, late) + 1)
    with rejects("InferenceUnexpectedState", late, RequestState.EXPIRED, pending, world=s.w):
        s.gw.completeRequest(late, keccak(b"r"), {"from": s.gateway_enclave.account})
    with rejects("InferenceUnexpectedState", 77, RequestState.NONE, pending, world=s.w):
        s.gw.completeRequest(77, keccak(b"r"), {"from": s.gateway_enclave.account})


# ------------------------------------------------------------------ refundExpired


def test_refunding_a_request_of_several_rows_returns_every_row(served):
    s = served
    rid, _ = s.submit(rows=QUOTA)
    travel_to(request_deadline(s, rid) + 1)
    tx = s.gw.refundExpired(rid, {"from": accounts[3]})
    assert_events(tx, ("RequestRefunded", {"requestId": rid, "client": s.client, "fee": FEE * QUOTA}))
    assert s.gw.balanceOf(s.client) == DEPOSIT
    assert norm(s.gw.quotaOf(s.client)) == (QUOTA, 0)


def test_refund_expired_request(served):
    s = served
    rid, _ = s.submit()
    deadline = request_deadline(s, rid)
    travel_to(deadline)
    assert s.gw.state(rid) == RequestState.PENDING
    travel_to(deadline + 1)
    assert s.gw.state(rid) == RequestState.EXPIRED
    tx = s.gw.refundExpired(rid, {"from": accounts[3]})
    assert_events(tx, ("RequestRefunded", {"requestId": rid, "client": s.client, "fee": FEE}))
    assert s.gw.state(rid) == RequestState.REFUNDED
    assert s.gw.balanceOf(s.client) == DEPOSIT
    assert norm(s.gw.quotaOf(s.client)) == (QUOTA, 0)
    assert s.gw.collectedFees() == 0


def test_refund_restores_quota(served):
    s = served
    s.gw.setClientAccess(s.client, 1, {"from": s.w.governor})
    rid, _ = s.submit()
    with rejects("InferenceQuotaExhausted", s.client, 1, 1, world=s.w):
        s.submit()
    travel_to(request_deadline(s, rid) + 1)
    s.gw.refundExpired(rid, {"from": s.client})
    assert s.submit()[1].status == 1


def test_refund_refusals(served):
    s = served
    expired = state_bit(RequestState.EXPIRED)
    rid, _ = s.submit()
    with rejects("InferenceUnexpectedState", rid, RequestState.PENDING, expired, world=s.w):
        s.gw.refundExpired(rid, {"from": accounts[3]})
    done, _ = s.submit()
    s.w.complete(done, provider=1)
    travel_to(request_deadline(s, rid) + 1)
    with rejects("InferenceUnexpectedState", done, RequestState.COMPLETED, expired, world=s.w):
        s.gw.refundExpired(done, {"from": accounts[3]})
    s.gw.refundExpired(rid, {"from": accounts[3]})
    with rejects("InferenceUnexpectedState", rid, RequestState.REFUNDED, expired, world=s.w):
        s.gw.refundExpired(rid, {"from": accounts[3]})
    with rejects("InferenceUnexpectedState", 50, RequestState.NONE, expired, world=s.w):
        s.gw.refundExpired(50, {"from": accounts[3]})


def test_request_ids_and_deadlines(served):
    s = served
    first, tx1 = s.submit()
    s.gw.setRequestTtl(600, {"from": s.w.governor})
    second, tx2 = s.submit()
    assert (first, second) == (1, 2)
    assert request_deadline(s, first) == tx1.timestamp + 120
    assert request_deadline(s, second) == tx2.timestamp + 600
    assert now() >= tx2.timestamp
