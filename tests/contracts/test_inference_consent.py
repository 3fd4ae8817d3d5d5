"""InferenceGateway: a request spends a client's deposit and quota only with the client's own
EIP-712 signature over it (ECDSA for accounts, EIP-1271 for contract wallets).

The adversary is an attested gateway enclave that submits on its own: without a
signature, with a signature by another key, with a signature over another request, a
replayed one, an expired one, or for more than the client agreed to pay. Every refusal
leaves every view unchanged (`rejects(..., world=...)`), and the client's deposit and quota
are checked by name as well.
"""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass

import pytest
from brownie import MockContractWallet, accounts, chain
from eth_account import Account
from eth_utils import keccak
from helpers import (
    REQUEST_TYPE_STRING,
    ClientRequest,
    Consortium,
    RequestState,
    key_of,
    next_block_at,
    norm,
    now,
    rejects,
    request_typed_data,
    sign_request,
    travel_to,
    typed_data_digest,
)

FEE = 10**15
DEPOSIT = 10**17
QUOTA = 5
OWNER_KEY = keccak(b"the contract wallet's owner key")


@dataclass
class Served:
    w: Consortium
    round_id: int
    model_id: int
    client: object

    @property
    def gw(self):
        return self.w.gateway

    def signed(self, client=None, key=None, **changes):
        request = self.w.request(self.model_id, client or self.client, **changes)
        return request, self.w.sign_request(request, key if key is not None else (client or self.client))

    def submit(self, request, signature, query=b"\x01" * 64):
        return self.gw.submitRequest(
            request.as_tuple(), signature, query, {"from": self.w.gateways[0].account}
        )

    def funds(self, client=None):
        client = client or self.client
        return int(self.gw.balanceOf(client)), norm(self.gw.quotaOf(client))

    def digest(self, request):
        """The request's EIP-712 digest, computed off-chain."""
        return typed_data_digest(request_typed_data(request, chain.id, self.gw.address))


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


@contextmanager
def refused(s, name, *args, client=None):
    """`rejects` plus the promise of issue 8 in plain terms: deposit and quota unchanged."""
    before = s.funds(client)
    with rejects(name, *args, world=s.w):
        yield
    assert s.funds(client) == before


# ------------------------------------------------------------------ the signed document


def test_request_typehash_and_digest_match_eip712_off_chain(served):
    s = served
    assert bytes(s.gw.REQUEST_TYPEHASH()) == keccak(text=REQUEST_TYPE_STRING)
    request = ClientRequest(s.client.address, s.model_id, 3, keccak(b"rows"), 42, now() + 60, 3 * FEE)
    signature, digest = sign_request(key_of(s.client), request, chain.id, s.gw.address)
    assert bytes(s.gw.requestDigest(request.as_tuple())) == digest
    assert Account._recover_hash(digest, signature=signature) == s.client.address
    # Every field is signed: changing any one changes the digest.
    for field, value in [
        ("client", accounts[9].address),
        ("modelId", 2),
        ("rows", 4),
        ("inputHash", keccak(b"other rows")),
        ("nonce", 43),
        ("deadline", request.deadline + 1),
        ("maxFee", 3 * FEE + 1),
    ]:
        assert bytes(s.gw.requestDigest(request.but(**{field: value}).as_tuple())) != digest


def test_a_signed_request_is_recorded_and_charged(served):
    s = served
    request, signature = s.signed(rows=2, maxFee=5 * FEE)  # the cap is a cap: the fee is charged
    tx = s.submit(request, signature)
    assert norm(tx.events["RequestSubmitted"]["requestDigest"]) == s.digest(request)
    assert bytes(tx.events["RequestSubmitted"]["inputHash"]) == request.inputHash
    assert tx.events["RequestSubmitted"]["fee"] == 2 * FEE
    assert s.funds() == (DEPOSIT - 2 * FEE, (QUOTA, 2))


# ------------------------------------------------------------------ a gateway acting alone


@pytest.mark.parametrize("signature", ["none", "zeros", "truncated", "v = 29"])
def test_no_valid_signature_is_refused(served, signature):
    s = served
    request, good = s.signed()
    sig = {"none": b"", "zeros": b"\x00" * 65, "truncated": good[:64], "v = 29": good[:64] + bytes([29])}[
        signature
    ]
    with refused(s, "InferenceInvalidClientSignature", s.client, s.digest(request)):
        s.submit(request, sig)


@pytest.mark.parametrize("signer", ["gateway enclave", "gateway operator", "another client", "governor"])
def test_a_signature_by_another_key_is_refused(served, signer):
    s = served
    key = {
        "gateway enclave": s.w.gateways[0].key,
        "gateway operator": key_of(s.w.gateways[0].operator),
        "another client": key_of(accounts[8]),
        "governor": key_of(s.w.governor),
    }[signer]
    request, signature = s.signed(key=key)
    with refused(s, "InferenceInvalidClientSignature", s.client, s.digest(request)):
        s.submit(request, signature)


@pytest.mark.parametrize(
    ("field", "value"),
    [("rows", 5), ("inputHash", keccak(b"the gateway's own query")), ("nonce", 10**9), ("maxFee", 10**18)],
)
def test_a_signature_over_another_request_is_refused(served, field, value):
    """The gateway keeps the client's signature but changes what it is for."""
    s = served
    request, signature = s.signed(maxFee=5 * FEE)
    changed = request.but(**{field: value})
    with refused(s, "InferenceInvalidClientSignature", s.client, s.digest(changed)):
        s.submit(changed, signature)


def test_a_signature_for_another_client_is_refused(served):
    """The client's signature presented as another client's consent (that client pays)."""
    s = served
    other = accounts[8]
    s.w.admit_client(other, quota=QUOTA, deposit=DEPOSIT)
    request, signature = s.signed()
    stolen = request.but(client=other.address)
    with refused(s, "InferenceInvalidClientSignature", other, s.digest(stolen), client=other):
        s.submit(stolen, signature)
    assert s.funds() == (DEPOSIT, (QUOTA, 0))


@pytest.mark.parametrize("domain", ["another chain", "another gateway contract"])
def test_a_signature_in_another_domain_is_refused(served, domain):
    s = served
    request = s.w.request(s.model_id, s.client)
    chain_id, contract = (
        (chain.id + 1, s.gw.address) if domain == "another chain" else (chain.id, accounts[9].address)
    )
    signature, _ = sign_request(key_of(s.client), request, chain_id, contract)
    with refused(s, "InferenceInvalidClientSignature", s.client, s.digest(request)):
        s.submit(request, signature)


def test_a_replayed_signature_is_refused_even_after_a_refund(served):
    s = served
    request, signature = s.signed()
    tx = s.submit(request, signature)
    digest = s.digest(request)
    with refused(s, "InferenceRequestReplayed", digest):
        s.submit(request, signature)
    travel_to(int(s.gw.requestInfo(tx.return_value)[4]) + 1)
    s.gw.refundExpired(tx.return_value, {"from": accounts[3]})
    assert s.funds() == (DEPOSIT, (QUOTA, 0))
    with refused(s, "InferenceRequestReplayed", digest):
        s.submit(request, signature)


def test_an_expired_signature_is_refused(served):
    s = served
    t = now() + 50
    request, signature = s.signed(deadline=t - 1)
    next_block_at(t)
    with refused(s, "InferenceSignatureExpired", t - 1, t):
        s.submit(request, signature)


def test_a_signature_is_good_until_its_deadline(served):
    s = served
    t = now() + 50
    request, signature = s.signed(deadline=t)
    next_block_at(t)
    assert s.submit(request, signature).status == 1


@pytest.mark.parametrize(("rows", "cap"), [(1, 0), (1, FEE - 1), (3, 3 * FEE - 1)])
def test_a_fee_above_the_signed_cap_is_refused(served, rows, cap):
    s = served
    request, signature = s.signed(rows=rows, maxFee=cap)
    with refused(s, "InferenceFeeAboveCap", rows * FEE, cap):
        s.submit(request, signature)


def test_a_signature_does_not_follow_a_request_to_a_dearer_model(served):
    """The gateway moves a signed request to a dearer model: the signature does not cover
    it; and a client's signature for the dearer model with the old price as its cap is
    refused by the cap."""
    s = served
    dearer = s.w.register_model(s.round_id, fee=2 * FEE)
    request, signature = s.signed(maxFee=FEE)
    moved = request.but(modelId=dearer)
    with refused(s, "InferenceInvalidClientSignature", s.client, s.digest(moved)):
        s.submit(moved, signature)
    request, signature = s.signed(maxFee=FEE, modelId=dearer)
    with refused(s, "InferenceFeeAboveCap", 2 * FEE, FEE):
        s.submit(request, signature)


def test_a_valid_signature_does_not_override_access_rules(served):
    """Consent is necessary, not sufficient: role, quota and deposit still apply."""
    s = served
    stranger = accounts[8]
    request, signature = s.signed(client=stranger)
    with refused(s, "InferenceClientNotAuthorised", stranger, client=stranger):
        s.submit(request, signature)
    s.gw.withdraw(DEPOSIT, {"from": s.client})
    request, signature = s.signed()
    with refused(s, "InferenceFeeUnpaid", s.client, 0, FEE):
        s.submit(request, signature)


# ------------------------------------------------------------------ contract wallets (EIP-1271)


@pytest.fixture
def wallet(served):
    s = served
    owner = Account.from_key(OWNER_KEY).address
    w = MockContractWallet.deploy(owner, {"from": accounts[0], "value": DEPOSIT})
    owner_account = accounts.add(OWNER_KEY)
    accounts[0].transfer(owner_account, 10**17, silent=True)
    s.gw.setClientAccess(w, QUOTA, {"from": s.w.governor})
    w.execute(s.gw.address, s.gw.deposit.encode_input(), DEPOSIT, {"from": owner_account})
    s.w.known += [w.address, owner]
    assert s.gw.balanceOf(w) == DEPOSIT
    return w


def test_a_contract_wallet_signs_through_eip1271(served, wallet):
    s = served
    request, signature = s.signed(client=wallet, key=OWNER_KEY, rows=2)
    tx = s.submit(request, signature)
    assert tx.status == 1 and tx.events["RequestSubmitted"]["client"] == wallet.address
    assert s.funds(wallet) == (DEPOSIT - 2 * FEE, (QUOTA, 2))
    assert s.gw.state(tx.return_value) == RequestState.PENDING
    with refused(s, "InferenceRequestReplayed", s.digest(request), client=wallet):
        s.submit(request, signature)


@pytest.mark.parametrize("signer", ["not the owner", "the gateway enclave", "no signature"])
def test_a_contract_wallet_refuses_anyone_but_its_owner(served, wallet, signer):
    s = served
    request = s.w.request(s.model_id, wallet)
    signature = {
        "not the owner": s.w.sign_request(request, keccak(b"someone else")),
        "the gateway enclave": s.w.sign_request(request, s.w.gateways[0].key),
        "no signature": b"",
    }[signer]
    with refused(s, "InferenceInvalidClientSignature", wallet, s.digest(request), client=wallet):
        s.submit(request, signature)


def test_the_wallet_owner_cannot_spend_as_an_eoa_for_the_wallet(served, wallet):
    """The owner's signature counts for the wallet; the owner's own address is not a client."""
    s = served
    owner = Account.from_key(OWNER_KEY).address
    request, signature = s.signed(client=owner, key=OWNER_KEY)
    with refused(s, "InferenceClientNotAuthorised", owner, client=owner):
        s.submit(request, signature)


def test_only_the_owner_moves_the_wallet(served, wallet):
    s = served
    with rejects("MockWalletNotOwner", accounts[3], world=s.w):
        wallet.execute(s.gw.address, s.gw.withdraw.encode_input(1), 0, {"from": accounts[3]})
    owner = accounts.add(OWNER_KEY)
    with rejects("MockWalletCallFailed", s.gw.address, world=s.w):  # more than its deposit
        wallet.execute(s.gw.address, s.gw.withdraw.encode_input(DEPOSIT + 1), 0, {"from": owner})
    wallet.execute(s.gw.address, s.gw.withdraw.encode_input(DEPOSIT), 0, {"from": owner})
    assert s.funds(wallet) == (0, (QUOTA, 0)) and wallet.balance() == DEPOSIT
