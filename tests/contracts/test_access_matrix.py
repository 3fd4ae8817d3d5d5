"""The access-control matrix: every role against every state-changing function.

Roles: governor, coordinator, client, provider enclave, gateway enclave, operator (of the
first provider: an admitted organisation) and outsider (never admitted). Each case
prepares a state in which the call would succeed for an authorised caller, then checks
the caller is accepted, or refused with the exact error while nothing changes.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest
from brownie import accounts
from eth_account import Account
from eth_utils import keccak
from helpers import (
    ADDITIVE,
    COORDINATOR_ROLE,
    GATEWAY,
    GOVERNOR_ROLE,
    INTERMEDIATE,
    MEASUREMENT,
    OTHER_MEASUREMENT,
    PROVIDER,
    RING_2_64,
    SEEDED,
    SHARED_MODEL,
    TAG,
    Consortium,
    bits,
    now,
    rejects,
    share_commitment,
    travel_to,
)

ROLES = ["governor", "coordinator", "client", "provider", "gateway", "operator", "outsider"]
ANYONE = frozenset(ROLES)
FEE = 10**15


@dataclass
class Stage:
    w: Consortium
    client: Any
    model_id: int
    request_id: int
    posting_round: int
    intermediate_round: int
    recovery_round: int = 0

    def account(self, role: str) -> Any:
        return {
            "governor": self.w.governor,
            "coordinator": self.w.coordinator,
            "client": self.client,
            "provider": self.w.providers[0].account,
            "gateway": self.w.gateways[0].account,
            "operator": self.w.providers[0].operator,
            "outsider": accounts[3],
        }[role]


@pytest.fixture(scope="module")
def _stage(_world, client):
    w = _world
    completed = w.completed_round()
    model_id = w.register_model(completed, fee=FEE)
    w.admit_client(client, quota=5, deposit=10**17)
    request_id, _ = w.submit(model_id, client)
    w.gateway.postPartial(request_id, b"partial", {"from": w.providers[1].account})
    intermediate_round = w.completed_round(kind=INTERMEDIATE)
    posting_round, _ = w.open_round()
    w.post(posting_round, w.providers[1])
    return w, model_id, request_id, posting_round, intermediate_round


@pytest.fixture
def stage(_stage, client):
    w, model_id, request_id, posting_round, intermediate_round = _stage
    return Stage(w.clone(), client, model_id, request_id, posting_round, intermediate_round)


# ------------------------------------------------------------------ the cases
# Each case: (allowed roles, prepare(stage) -> call(caller), expected error(stage, caller)).


def _governor_error(s, caller):
    return ("AccessControlUnauthorizedAccount", caller, GOVERNOR_ROLE)


def _prep_register(s):
    _, quote, signature, possession = s.w.offer(PROVIDER, s.w.providers[0].operator)
    return lambda caller: s.w.registry.register(quote.as_tuple(), signature, possession, {"from": caller})


def _prep_register_with_evidence(s):
    keys = s.w.trust_verifiers(1)
    _, quote, claim, signatures, possession = s.w.evidence_offer(
        PROVIDER, s.w.providers[0].operator, b"evidence", keys
    )
    return lambda caller: s.w.registry.registerWithEvidence(
        quote.as_tuple(), claim.as_tuple(), signatures, possession, b"evidence", {"from": caller}
    )


def _prep_verifier_threshold(s):
    s.w.trust_verifiers(2)
    return lambda caller: s.w.registry.setVerifierThreshold(2, {"from": caller})


def _prep_suspend_or_reinstate(fn):
    def prepare(s):
        operator, _ = s.w.admit(accounts[9], name="ninth")
        if fn == "reinstateOrganisation":
            s.w.registry.suspendOrganisation(operator, {"from": s.w.governor})
        return lambda caller: getattr(s.w.registry, fn)(operator, {"from": caller})

    return prepare


def _prep_expire(s):
    """A newcomer joins and never posts its digest; everyone else does; the deadline passes."""
    s.w.register(PROVIDER, operator=accounts[8])
    s.w.sync(s.w.members[:-1])
    travel_to(int(s.w.registry.syncDeadline()) + 1)
    return lambda caller: s.w.registry.expireUnsynchronised({"from": caller})


def _prep_submit(s):
    request = s.w.request(s.model_id, s.client)
    signature = s.w.sign_request(request, s.client)
    return lambda caller: s.w.gateway.submitRequest(request.as_tuple(), signature, b"q", {"from": caller})


def _prep_digest(s):
    s.w.register(PROVIDER, operator=accounts[8])
    epoch, digest = int(s.w.registry.epoch()), s.w.expected_digest()
    return lambda caller: s.w.registry.postMembershipDigest(epoch, digest, {"from": caller})


def _prep_unpause(s):
    s.w.registry.pause({"from": s.w.governor})
    return lambda caller: s.w.registry.unpause({"from": caller})


def _prep_open(s):
    start = now()
    spec, policy = (4, 16, ADDITIVE, SEEDED, RING_2_64, 0), (SHARED_MODEL, 0)
    return lambda caller: s.w.exchange.openRound(
        TAG, spec, 3, start + 500, start + 900, policy, {"from": caller}
    )


def _prep_post(s):
    c = share_commitment([b"shares"])
    table = s.w.key_table(s.posting_round, s.w.providers[0].address)
    return lambda caller: s.w.exchange.postShares(
        s.posting_round, 0, 1, c, table, b"shares", {"from": caller}
    )


def _prep_complain(s):
    s.w.post_all(s.posting_round, [s.w.providers[0], s.w.providers[2]])
    sender, accuser = s.w.providers[1].address, s.w.providers[0].address
    key = s.w.posting_key(s.posting_round, sender, accuser)
    table = s.w.key_table(s.posting_round, sender)
    return lambda caller: s.w.exchange.complain(s.posting_round, sender, key, table, {"from": caller})


def _prep_judge(s):
    s.w.post_all(s.posting_round, [s.w.providers[0], s.w.providers[2]])
    s.w.complain(s.posting_round, s.w.providers[1], s.w.providers[2])
    return lambda caller: s.w.exchange.judgeComplaint(s.posting_round, True, {"from": caller})


def _prep_fuse(s):
    s.w.post_all(s.posting_round, [s.w.providers[0], s.w.providers[2]])
    return lambda caller: s.w.exchange.postFused(
        s.posting_round, keccak(b"f"), bits(0, 1, 2), {"from": caller}
    )


def _prep_close(s):
    travel_to(int(s.w.exchange.roundInfo(s.posting_round)[4]) + 1)
    return lambda caller: s.w.exchange.closePosting(s.posting_round, {"from": caller})


def _prep_finalize(s):
    travel_to(int(s.w.exchange.roundInfo(s.posting_round)[5]) + 1)
    return lambda caller: s.w.exchange.finalize(s.posting_round, {"from": caller})


def _prep_recover(s):
    """A fourth provider joins, posts and never fuses in a 3-of-4 additive round."""
    s.w.register(PROVIDER, operator=accounts[8])
    s.w.sync()
    rid, _ = s.w.open_round(threshold=3)
    s.w.post_all(rid)
    p = s.w.providers
    s.w.fuse_all(rid, p[:3])
    travel_to(int(s.w.exchange.roundInfo(rid)[5]) + 1)
    s.w.exchange.finalize(rid, {"from": accounts[3]})
    s.recovery_round = rid
    me, absent = p[0].address, p[3].address
    args = (
        [s.w.posting_key(rid, me, absent)],
        [s.w.posting_key(rid, absent, me)],
        s.w.key_table(rid, me),
        [s.w.key_table(rid, absent)],
    )
    return lambda caller: s.w.exchange.recoverAbsent(rid, *args, {"from": caller})


def _prep_withdraw_fees(s):
    s.w.complete(s.request_id)
    return lambda caller: s.w.gateway.withdrawFees(caller, {"from": caller})


def _prep_refund(s):
    travel_to(int(s.w.gateway.requestInfo(s.request_id)[4]) + 1)
    return lambda caller: s.w.gateway.refundExpired(s.request_id, {"from": caller})


def _simple(fn: Callable[[Stage, Any], Any]) -> Callable[[Stage], Callable[[Any], Any]]:
    return lambda s: lambda caller: fn(s, caller)


CASES: dict[str, tuple[frozenset[str], Callable[..., Any], Callable[..., tuple[Any, ...]]]] = {
    # ConsortiumRegistry
    "registry.approveMeasurement": (
        frozenset({"governor"}),
        _simple(lambda s, c: s.w.registry.approveMeasurement(GATEWAY, OTHER_MEASUREMENT, {"from": c})),
        _governor_error,
    ),
    "registry.revokeMeasurement": (
        frozenset({"governor"}),
        _simple(lambda s, c: s.w.registry.revokeMeasurement(GATEWAY, MEASUREMENT, {"from": c})),
        _governor_error,
    ),
    "registry.setAttestationSigner": (
        frozenset({"governor"}),
        _simple(
            lambda s, c: s.w.registry.setAttestationSigner(
                Account.from_key(keccak(b"second")).address, True, {"from": c}
            )
        ),
        _governor_error,
    ),
    "registry.pause": (
        frozenset({"governor"}),
        _simple(lambda s, c: s.w.registry.pause({"from": c})),
        _governor_error,
    ),
    "registry.unpause": (frozenset({"governor"}), _prep_unpause, _governor_error),
    "registry.grantRole": (
        frozenset({"governor"}),
        _simple(lambda s, c: s.w.registry.grantRole(GOVERNOR_ROLE, accounts[9], {"from": c})),
        lambda s, c: ("AccessControlUnauthorizedAccount", c, b"\x00" * 32),
    ),
    "registry.admitOrganisation": (
        frozenset({"governor"}),
        _simple(lambda s, c: s.w.registry.admitOrganisation(accounts[9], "ninth", 2, 1, {"from": c})),
        _governor_error,
    ),
    "registry.suspendOrganisation": (
        frozenset({"governor"}),
        _prep_suspend_or_reinstate("suspendOrganisation"),
        _governor_error,
    ),
    "registry.reinstateOrganisation": (
        frozenset({"governor"}),
        _prep_suspend_or_reinstate("reinstateOrganisation"),
        _governor_error,
    ),
    "registry.setRoleLimit": (
        frozenset({"governor"}),
        _simple(lambda s, c: s.w.registry.setRoleLimit(PROVIDER, 8, {"from": c})),
        _governor_error,
    ),
    "registry.setSyncPolicy": (
        frozenset({"governor"}),
        _simple(lambda s, c: s.w.registry.setSyncPolicy(300, 3600, {"from": c})),
        _governor_error,
    ),
    "registry.expireUnsynchronised": (ANYONE, _prep_expire, lambda s, c: ()),
    "registry.register": (
        frozenset({"operator"}),
        _prep_register,
        lambda s, c: ("RegistryNotOperator", c, s.w.providers[0].operator),
    ),
    "registry.registerWithEvidence": (
        frozenset({"operator"}),
        _prep_register_with_evidence,
        lambda s, c: ("RegistryNotOperator", c, s.w.providers[0].operator),
    ),
    "registry.setEvidenceVerifier": (
        frozenset({"governor"}),
        _simple(
            lambda s, c: s.w.registry.setEvidenceVerifier(
                Account.from_key(keccak(b"verifier")).address, True, {"from": c}
            )
        ),
        _governor_error,
    ),
    "registry.setVerifierThreshold": (frozenset({"governor"}), _prep_verifier_threshold, _governor_error),
    "registry.revoke": (
        frozenset({"governor", "operator", "provider"}),
        _simple(lambda s, c: s.w.registry.revoke(s.w.providers[0].address, {"from": c})),
        lambda s, c: ("RegistryRevokeUnauthorized", c, s.w.providers[0].address),
    ),
    "registry.postMembershipDigest": (
        frozenset({"provider", "gateway"}),
        _prep_digest,
        lambda s, c: ("RegistryNotActiveMember", c),
    ),
    # ShareExchange
    "exchange.openRound": (
        frozenset({"coordinator"}),
        _prep_open,
        lambda s, c: ("AccessControlUnauthorizedAccount", c, COORDINATOR_ROLE),
    ),
    "exchange.grantRole(COORDINATOR)": (
        frozenset({"governor"}),
        _simple(lambda s, c: s.w.exchange.grantRole(COORDINATOR_ROLE, accounts[9], {"from": c})),
        _governor_error,
    ),
    "exchange.postShares": (
        frozenset({"provider"}),
        _prep_post,
        lambda s, c: ("RoundNotParticipant", s.posting_round, c),
    ),
    "exchange.setContributorFloor": (
        frozenset({"governor"}),
        _simple(lambda s, c: s.w.exchange.setContributorFloor(4, {"from": c})),
        _governor_error,
    ),
    "exchange.complain": (
        frozenset({"provider"}),
        _prep_complain,
        lambda s, c: ("RoundNotParticipant", s.posting_round, c),
    ),
    "exchange.judgeComplaint": (
        frozenset({"provider"}),
        _prep_judge,
        lambda s, c: ("RoundNotParticipant", s.posting_round, c),
    ),
    "exchange.reportMisbehaviour": (
        frozenset({"provider", "gateway"}),
        _simple(
            lambda s, c: s.w.exchange.reportMisbehaviour(
                s.intermediate_round, s.w.providers[1].address, 1, b"evidence", {"from": c}
            )
        ),
        lambda s, c: ("RoundNotParticipant", s.intermediate_round, c),
    ),
    "exchange.postFused": (
        frozenset({"provider"}),
        _prep_fuse,
        lambda s, c: ("RoundNotParticipant", s.posting_round, c),
    ),
    "exchange.revealFused": (
        frozenset({"provider"}),
        _simple(lambda s, c: s.w.exchange.revealFused(s.intermediate_round, b"sealed", {"from": c})),
        lambda s, c: ("RoundNotParticipant", s.intermediate_round, c),
    ),
    "exchange.recoverAbsent": (
        frozenset({"provider"}),
        _prep_recover,
        lambda s, c: ("RoundNotParticipant", s.recovery_round, c),
    ),
    "exchange.closePosting": (ANYONE, _prep_close, lambda s, c: ()),
    "exchange.finalize": (ANYONE, _prep_finalize, lambda s, c: ()),
    # InferenceGateway
    "gateway.registerModel": (
        frozenset({"governor"}),
        _simple(lambda s, c: s.w.gateway.registerModel(1, "m", "{}", 0, {"from": c})),
        _governor_error,
    ),
    "gateway.retireModel": (
        frozenset({"governor"}),
        _simple(lambda s, c: s.w.gateway.retireModel(s.model_id, {"from": c})),
        _governor_error,
    ),
    "gateway.setClientAccess": (
        frozenset({"governor"}),
        _simple(lambda s, c: s.w.gateway.setClientAccess(accounts[9], 4, {"from": c})),
        _governor_error,
    ),
    "gateway.setRequestTtl": (
        frozenset({"governor"}),
        _simple(lambda s, c: s.w.gateway.setRequestTtl(300, {"from": c})),
        _governor_error,
    ),
    "gateway.withdrawFees": (frozenset({"governor"}), _prep_withdraw_fees, _governor_error),
    "gateway.submitRequest": (
        frozenset({"gateway"}),
        _prep_submit,
        lambda s, c: ("InferenceNotGateway", c),
    ),
    "gateway.postPartial": (
        frozenset({"provider"}),
        _simple(lambda s, c: s.w.gateway.postPartial(s.request_id, b"partial", {"from": c})),
        lambda s, c: ("InferenceNotShareholder", s.request_id, c),
    ),
    "gateway.postPartials": (
        frozenset({"provider"}),
        _simple(lambda s, c: s.w.gateway.postPartials([s.request_id], [b"partial"], {"from": c})),
        lambda s, c: ("InferenceNotShareholder", s.request_id, c),
    ),
    "gateway.publishModelRange": (
        frozenset({"provider"}),
        _simple(lambda s, c: s.w.gateway.publishModelRange(s.model_id, '{"version":1}', {"from": c})),
        lambda s, c: ("InferenceNotModelHolder", s.model_id, c),
    ),
    "gateway.completeRequest": (
        frozenset({"gateway"}),
        _simple(lambda s, c: s.w.gateway.completeRequest(s.request_id, keccak(b"r"), {"from": c})),
        lambda s, c: ("InferenceWrongGateway", s.request_id, c, s.w.gateways[0].address),
    ),
    "gateway.completeRequests": (
        frozenset({"gateway"}),
        _simple(lambda s, c: s.w.gateway.completeRequests([s.request_id], [keccak(b"r")], {"from": c})),
        lambda s, c: ("InferenceNotGateway", c),
    ),
    "gateway.refundExpired": (ANYONE, _prep_refund, lambda s, c: ()),
    "gateway.deposit": (
        ANYONE,
        _simple(lambda s, c: s.w.gateway.deposit({"from": c, "value": 5})),
        lambda s, c: (),
    ),
}


@pytest.mark.parametrize("role", ROLES)
@pytest.mark.parametrize("function", list(CASES))
def test_access(stage, function, role):
    allowed, prepare, error = CASES[function]
    call = prepare(stage)
    caller = stage.account(role)
    if role in allowed:
        tx = call(caller)
        assert tx.status == 1
    else:
        name, *args = error(stage, caller)
        with rejects(name, *args, world=stage.w):
            call(caller)


def test_matrix_covers_every_state_changing_function():
    """A new external function must get a row in the matrix."""
    from brownie import ConsortiumRegistry, InferenceGateway, ShareExchange

    covered = {name.split(".")[1].split("(")[0] for name in CASES}
    exempt = {"renounceRole", "revokeRole", "grantRole", "withdraw"}  # OpenZeppelin role admin; own funds
    for container in (ConsortiumRegistry, ShareExchange, InferenceGateway):
        for item in container.abi:
            if item["type"] == "function" and item["stateMutability"] in ("nonpayable", "payable"):
                assert item["name"] in covered | exempt, (
                    f"{container._name}.{item['name']} missing from the matrix"
                )
