"""ConsortiumRegistry: organisations admitted by governance, proof of possession, funding
forwarded to the enclave, and per-role member limits."""

from __future__ import annotations

import pytest
from brownie import accounts, chain, web3
from eth_account import Account
from eth_utils import keccak
from helpers import (
    BOTH_ROLES,
    GATEWAY,
    GENEROUS,
    MAX_ROLE_LIMIT,
    POSSESSION_TYPE_STRING,
    PROVIDER,
    ROLE_NONE,
    SYNC_WINDOW,
    OrgStatus,
    Reason,
    admitted_operators,
    assert_events,
    events_of,
    key_of,
    norm,
    rejects,
    role_bits,
    sign_possession,
)

ZERO_ADDRESS = "0x" + "00" * 20
SECP256K1_N = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141


def _register(c, operator, role=PROVIDER, value=0, **changes):
    """Submit a fresh, fully valid offer from `operator`: (enclave account, tx)."""
    enclave, quote, signature, possession = c.offer(role, operator, **changes)
    tx = c.registry.register(quote.as_tuple(), signature, possession, {"from": operator, "value": value})
    return enclave, tx


# ------------------------------------------------------------------ admitOrganisation


def test_deploy_admits_the_test_operators(bare):
    for operator in admitted_operators():
        status, roles, limit, cooling, name = norm(bare.registry.organisation(operator))
        assert (status, roles, limit, cooling) == (OrgStatus.ADMITTED, BOTH_ROLES, GENEROUS, 0)
        assert name.startswith("org-")
    for never in (accounts[0], accounts[1], accounts[2], accounts[3], accounts[9]):
        assert norm(bare.registry.organisation(never)) == (OrgStatus.NONE, 0, 0, 0, "")


@pytest.mark.parametrize("roles", [role_bits(PROVIDER), role_bits(GATEWAY), BOTH_ROLES])
def test_admit_organisation(bare, governor, roles):
    operator = accounts[9]
    tx = bare.registry.admitOrganisation(operator, "Bank Nine", roles, 3, {"from": governor})
    assert_events(
        tx,
        (
            "OrganisationAdmitted",
            {"operator": operator, "name": "Bank Nine", "roles": roles, "maxEnclavesPerRole": 3},
        ),
    )
    assert norm(bare.registry.organisation(operator)) == (OrgStatus.ADMITTED, roles, 3, 0, "Bank Nine")
    for role in (PROVIDER, GATEWAY):
        assert bare.registry.enclaveCount(operator, role) == 0
    assert bare.registry.epoch() == 0  # admission alone changes no membership


@pytest.mark.parametrize(
    ("operator", "name", "roles", "limit"),
    [
        (ZERO_ADDRESS, "zero", BOTH_ROLES, 1),
        ("ninth", "", BOTH_ROLES, 1),
        ("ninth", "no roles", 0, 1),
        ("ninth", "role None", role_bits(ROLE_NONE), 1),
        ("ninth", "None and provider", role_bits(ROLE_NONE, PROVIDER), 1),
        ("ninth", "unknown role 3", 1 << 3, 1),
        ("ninth", "unknown and gateway", (1 << 7) | role_bits(GATEWAY), 1),
        ("ninth", "zero enclaves", BOTH_ROLES, 0),
    ],
)
def test_admit_invalid_organisation(bare, governor, operator, name, roles, limit):
    operator = accounts[9].address if operator == "ninth" else operator
    with rejects("RegistryInvalidOrganisation", operator, roles, limit, world=bare):
        bare.registry.admitOrganisation(operator, name, roles, limit, {"from": governor})


def test_admit_twice_is_refused_even_when_suspended(bare, governor):
    operator = accounts[4]
    with rejects("RegistryOrganisationExists", operator, world=bare):
        bare.registry.admitOrganisation(operator, "again", role_bits(PROVIDER), 1, {"from": governor})
    bare.registry.suspendOrganisation(operator, {"from": governor})
    with rejects("RegistryOrganisationExists", operator, world=bare):
        bare.registry.admitOrganisation(operator, "again", role_bits(PROVIDER), 1, {"from": governor})


@pytest.mark.parametrize("who", ["outsider", "governor", "client", "never admitted"])
def test_an_unadmitted_operator_cannot_register(bare, governor, who):
    """The attestation service would sign a quote for anyone; the registry admits only
    organisations governance admitted."""
    operator = {"outsider": accounts[3], "governor": governor, "client": accounts[2]}.get(who)
    operator = operator or bare.new_account("stranger")
    enclave, quote, signature, possession = bare.offer(PROVIDER, operator)
    with rejects("RegistryOrganisationNotAdmitted", operator, world=bare):
        bare.registry.register(quote.as_tuple(), signature, possession, {"from": operator})
    assert not bare.registry.isActiveMember(enclave, PROVIDER)


@pytest.mark.parametrize(("allowed", "refused"), [(PROVIDER, GATEWAY), (GATEWAY, PROVIDER)])
def test_role_not_allowed(bare, allowed, refused):
    operator, _ = bare.admit(roles=role_bits(allowed), limit=2)
    _, quote, signature, possession = bare.offer(refused, operator)
    with rejects("RegistryRoleNotAllowed", operator, refused, world=bare):
        bare.registry.register(quote.as_tuple(), signature, possession, {"from": operator})
    enclave, tx = _register(bare, operator, allowed)
    assert tx.status == 1 and bare.registry.isActiveMember(enclave, allowed)


def test_enclave_limit_per_role(bare, governor):
    """An organisation limited to one enclave per role runs one provider and one gateway;
    the limit counts active enclaves, so a replacement may register once the first left."""
    operator, _ = bare.admit(limit=1)
    first, _ = _register(bare, operator, PROVIDER)
    assert bare.registry.enclaveCount(operator, PROVIDER) == 1
    _, quote, signature, possession = bare.offer(PROVIDER, operator)
    with rejects("RegistryEnclaveLimit", operator, PROVIDER, 1, world=bare):
        bare.registry.register(quote.as_tuple(), signature, possession, {"from": operator})
    gateway, tx = _register(bare, operator, GATEWAY)
    assert tx.status == 1 and bare.registry.enclaveCount(operator, GATEWAY) == 1
    bare.registry.revoke(first, {"from": operator})
    assert bare.registry.enclaveCount(operator, PROVIDER) == 0
    # The refused offer itself is still fresh (nothing was recorded) and now goes through.
    tx = bare.registry.register(quote.as_tuple(), signature, possession, {"from": operator})
    assert tx.status == 1 and bare.registry.enclaveCount(operator, PROVIDER) == 1


def test_enclave_limit_of_several(bare):
    operator, _ = bare.admit(roles=role_bits(PROVIDER), limit=3)
    for i in range(3):
        _register(bare, operator, PROVIDER)
        assert bare.registry.enclaveCount(operator, PROVIDER) == i + 1
    _, quote, signature, possession = bare.offer(PROVIDER, operator)
    with rejects("RegistryEnclaveLimit", operator, PROVIDER, 3, world=bare):
        bare.registry.register(quote.as_tuple(), signature, possession, {"from": operator})


# ------------------------------------------------------------------ suspendOrganisation


def test_suspension_revokes_the_organisations_enclaves_and_starts_an_epoch(world):
    reg = world.registry
    operator = world.providers[1].operator  # accounts[5]
    second, _ = world.register(GATEWAY, operator=operator)  # epoch 5
    world.sync()
    victims = [m for m in world.members if m.operator == operator]
    assert len(victims) == 2
    tx = reg.suspendOrganisation(operator, {"from": world.governor})
    for m in victims:
        world.forget(m.address)
    digest = world.expected_digest(6)
    assert_events(
        tx,
        *(
            (
                "MemberRevoked",
                {
                    "enclave": m.address,
                    "by": world.governor,
                    "epoch": 6,
                    "reason": Reason.ORGANISATION_SUSPENDED,
                },
            )
            for m in victims  # in registration order
        ),
        ("OrganisationSuspended", {"operator": operator, "revoked": 2}),
        (
            "EpochStarted",
            {
                "epoch": 6,
                "membershipDigest": digest,
                "memberCount": 3,
                "syncDeadline": tx.timestamp + SYNC_WINDOW,
            },
        ),
    )
    assert reg.epoch() == 6 and not reg.isSynchronised() and reg.synchronisedEpoch() == 5
    assert norm(reg.organisation(operator))[0] == OrgStatus.SUSPENDED
    for role in (PROVIDER, GATEWAY):
        assert reg.enclaveCount(operator, role) == 0
    for m in victims:
        assert reg.member(m.address)[1] is False
        with rejects("RegistryNotActiveMember", m.address, world=world):
            reg.postMembershipDigest(6, digest, {"from": m.account})
    assert norm(reg.activeMembers(PROVIDER)) == norm([m.address for m in world.providers])
    assert bytes(reg.membershipDigest()) == digest
    # A suspended operator cannot register, not even the enclaves it ran.
    _, quote, signature, possession = world.offer(PROVIDER, operator, enclave=victims[0].account)
    with rejects("RegistryOrganisationNotAdmitted", operator, world=world):
        reg.register(quote.as_tuple(), signature, possession, {"from": operator})
    world.sync()
    assert reg.synchronisedEpoch() == 6


def test_suspension_without_enclaves_starts_no_epoch(world):
    tx = world.registry.suspendOrganisation(accounts[8], {"from": world.governor})
    assert_events(tx, ("OrganisationSuspended", {"operator": accounts[8], "revoked": 0}))
    assert world.registry.epoch() == 4 and world.registry.isSynchronised()


def test_suspend_refusals(bare, governor):
    with rejects("RegistryOrganisationNotAdmitted", accounts[9], world=bare):
        bare.registry.suspendOrganisation(accounts[9], {"from": governor})
    bare.registry.suspendOrganisation(accounts[4], {"from": governor})
    with rejects("RegistryOrganisationNotAdmitted", accounts[4], world=bare):
        bare.registry.suspendOrganisation(accounts[4], {"from": governor})


# ------------------------------------------------------------------ reinstateOrganisation


def test_reinstated_organisation_registers_again_with_fresh_quotes(world):
    reg = world.registry
    victim = world.providers[0]
    operator = victim.operator
    reg.suspendOrganisation(operator, {"from": world.governor})
    world.forget(victim.address)
    tx = reg.reinstateOrganisation(operator, {"from": world.governor})
    assert_events(tx, ("OrganisationReinstated", {"operator": operator}))
    status, roles, limit, cooling, _ = norm(reg.organisation(operator))
    assert (status, roles, limit, cooling) == (OrgStatus.ADMITTED, BOTH_ROLES, GENEROUS, 0)
    assert reg.epoch() == 5  # reinstating changes no membership
    # Its enclaves stay revoked until they register again.
    assert not reg.isActiveMember(victim.address, PROVIDER)
    again, tx = world.register(PROVIDER, operator=operator, enclave=victim.account)
    assert tx.status == 1 and reg.isActiveMember(victim.address, PROVIDER)
    assert reg.enclaveCount(operator, PROVIDER) == 1


def test_reinstate_refusals(bare, governor):
    for operator in (accounts[4], accounts[9]):  # admitted and not cooling down; never admitted
        with rejects("RegistryOrganisationNotSuspended", operator, world=bare):
            bare.registry.reinstateOrganisation(operator, {"from": governor})


# ------------------------------------------------------------------ proof of possession


def test_possession_digest_matches_eip712_off_chain(bare):
    assert bytes(bare.registry.POSSESSION_TYPEHASH()) == keccak(text=POSSESSION_TYPE_STRING)
    enclave = bare.new_account()
    quote = bare.quote(PROVIDER, enclave.address, accounts[4].address)
    signature, digest = sign_possession(key_of(enclave), quote, chain.id, bare.registry.address)
    assert bytes(bare.registry.possessionDigest(quote.as_tuple())) == digest
    assert Account._recover_hash(digest, signature=signature) == enclave.address
    # Bound to this registry's domain: the same quote elsewhere has another digest.
    _, elsewhere = sign_possession(key_of(enclave), quote, chain.id, accounts[9].address)
    assert elsewhere != digest


@pytest.mark.parametrize("signer", ["operator", "attestation signer", "another enclave"])
def test_possession_by_another_key_is_refused(bare, operators, signer):
    """A quote naming an enclave account the caller does not hold: whoever signs the
    possession instead of that account's key is named in the error."""
    operator = operators[0]
    enclave, quote, signature, _ = bare.offer(PROVIDER, operator)
    key = {
        "operator": key_of(operator),
        "attestation signer": bare.signer_key,
        "another enclave": key_of(bare.new_account()),
    }[signer]
    possession = bare.possess(quote, key)
    with rejects("RegistryPossessionNotProven", enclave, Account.from_key(key).address, world=bare):
        bare.registry.register(quote.as_tuple(), signature, possession, {"from": operator})


def test_possession_is_not_transplantable_to_another_quote(bare, operators):
    """The enclave's possession signature binds its whole quote: a hijacker holding it cannot
    pair it with a quote carrying its own X25519 key (or any other change)."""
    operator = operators[0]
    enclave, genuine, _, possession = bare.offer(PROVIDER, operator)
    hijacked = genuine.but(x25519Key=keccak(b"the hijacker's X25519 key"), nonce=keccak(b"other"))
    signature = bare.sign(hijacked)  # a trusted service signs whatever it is asked
    recovered = Account._recover_hash(
        bytes(bare.registry.possessionDigest(hijacked.as_tuple())), signature=possession
    )
    assert recovered != enclave.address
    with rejects("RegistryPossessionNotProven", enclave, recovered, world=bare):
        bare.registry.register(hijacked.as_tuple(), signature, possession, {"from": operator})


def _high_s(sig: bytes) -> bytes:
    s = int.from_bytes(sig[32:64], "big")
    return sig[:32] + (SECP256K1_N - s).to_bytes(32, "big") + bytes([55 - sig[64]])


@pytest.mark.parametrize(
    "malform",
    ["missing", "truncated", "one byte too long", "v = 29", "malleated high s", "zeros"],
)
def test_missing_or_malformed_possession_is_refused(bare, operators, malform):
    operator = operators[0]
    enclave, quote, signature, good = bare.offer(PROVIDER, operator)
    possession = {
        "missing": b"",
        "truncated": good[:64],
        "one byte too long": good + b"\x00",
        "v = 29": good[:64] + bytes([29]),
        "malleated high s": _high_s(good),
        "zeros": b"\x00" * 65,
    }[malform]
    with rejects("RegistryPossessionNotProven", enclave, ZERO_ADDRESS, world=bare):
        bare.registry.register(quote.as_tuple(), signature, possession, {"from": operator})


def test_possession_travels_in_the_event(bare, operators):
    operator = operators[0]
    enclave, quote, signature, possession = bare.offer(PROVIDER, operator)
    tx = bare.registry.register(quote.as_tuple(), signature, possession, {"from": operator})
    event = tx.events["MemberRegistered"]
    assert bytes(event["possession"]) == possession and bytes(event["signature"]) == signature
    # What a peer re-verifies from the event alone:
    _, digest = sign_possession(key_of(enclave), quote, chain.id, bare.registry.address)
    assert Account._recover_hash(digest, signature=bytes(event["possession"])) == enclave.address


# ------------------------------------------------------------------ funding forwarded


def test_register_forwards_its_value_to_the_enclave(bare, operators):
    """The operator funds the enclave in the registration itself, so the enclave address is
    not revealed by a transfer before it is registered."""
    operator = operators[0]
    enclave = bare.new_account(fund=0)
    assert enclave.balance() == 0
    operator_before = operator.balance()
    registry_before = web3.eth.get_balance(bare.registry.address)
    member, tx = bare.register(PROVIDER, operator=operator, enclave=enclave, value=3 * 10**16)
    assert tx.status == 1
    assert enclave.balance() == 3 * 10**16
    assert operator.balance() == operator_before - 3 * 10**16  # gas price is zero on the test chain
    assert web3.eth.get_balance(bare.registry.address) == registry_before
    # Nothing but the registration and its epoch is emitted for the transfer.
    assert [name for name, _ in events_of(tx)] == ["MemberRegistered", "EpochStarted"]


def test_refused_registration_forwards_nothing(bare, operators):
    operator = operators[0]
    enclave, quote, signature, _ = bare.offer(PROVIDER, operator)
    before = enclave.balance()
    with rejects("RegistryPossessionNotProven", enclave, ZERO_ADDRESS, world=bare):
        bare.registry.register(quote.as_tuple(), signature, b"", {"from": operator, "value": 10**16})
    assert enclave.balance() == before


def test_funding_an_enclave_that_refuses_ether(bare, operators):
    """An enclave account that holds its key but runs code refusing ether (an EIP-7702
    delegation, say): the registration reverts whole instead of keeping the value."""
    operator = operators[0]
    enclave, quote, signature, possession = bare.offer(PROVIDER, operator)
    response = web3.provider.make_request("anvil_setCode", [enclave.address, "0x5f5ffd"])  # revert(0, 0)
    assert "error" not in response
    with rejects("RegistryFundingFailed", enclave, 5, world=bare):
        bare.registry.register(quote.as_tuple(), signature, possession, {"from": operator, "value": 5})
    # Without value nothing is sent, so the same offer registers.
    tx = bare.registry.register(quote.as_tuple(), signature, possession, {"from": operator})
    assert tx.status == 1


# ------------------------------------------------------------------ role limits


def test_default_role_limits(bare):
    assert bare.registry.MAX_ROLE_LIMIT() == MAX_ROLE_LIMIT == 64
    assert bare.registry.roleLimit(PROVIDER) == bare.registry.roleLimit(GATEWAY) == 64
    assert bare.registry.roleLimit(ROLE_NONE) == 0


def test_set_role_limit_and_a_full_role(bare, governor, operators):
    tx = bare.registry.setRoleLimit(GATEWAY, 1, {"from": governor})
    assert_events(tx, ("RoleLimitSet", {"role": GATEWAY, "limit": 1}))
    assert bare.registry.roleLimit(GATEWAY) == 1 and bare.registry.roleLimit(PROVIDER) == 64
    first, _ = bare.register(GATEWAY, operator=operators[0])
    # Another organisation, well within its own limit, still finds the role full.
    _, quote, signature, possession = bare.offer(GATEWAY, operators[1])
    with rejects("RegistryRoleFull", GATEWAY, 1, world=bare):
        bare.registry.register(quote.as_tuple(), signature, possession, {"from": operators[1]})
    assert bare.register(PROVIDER, operator=operators[1])[1].status == 1  # per role
    bare.registry.revoke(first.address, {"from": governor})
    tx = bare.registry.register(quote.as_tuple(), signature, possession, {"from": operators[1]})
    assert tx.status == 1


def test_lowering_the_limit_below_the_active_count_keeps_the_members(world):
    reg = world.registry
    reg.setRoleLimit(PROVIDER, 2, {"from": world.governor})
    assert len(reg.activeMembers(PROVIDER)) == 3 and reg.isSynchronised() and reg.epoch() == 4
    _, quote, signature, possession = world.offer(PROVIDER, accounts[8])
    with rejects("RegistryRoleFull", PROVIDER, 2, world=world):
        reg.register(quote.as_tuple(), signature, possession, {"from": accounts[8]})


@pytest.mark.parametrize(
    ("role", "limit", "error"),
    [
        (PROVIDER, 0, "RegistryInvalidRoleLimit"),
        (GATEWAY, 65, "RegistryInvalidRoleLimit"),
        (PROVIDER, 65535, "RegistryInvalidRoleLimit"),
        (ROLE_NONE, 5, "RegistryInvalidRole"),
    ],
)
def test_invalid_role_limit(bare, governor, role, limit, error):
    args = (role,) if error == "RegistryInvalidRole" else (role, limit)
    with rejects(error, *args, world=bare):
        bare.registry.setRoleLimit(role, limit, {"from": governor})


@pytest.mark.parametrize("limit", [1, 64])
def test_role_limit_edges_are_accepted(bare, governor, limit):
    assert bare.registry.setRoleLimit(PROVIDER, limit, {"from": governor}).status == 1
    assert bare.registry.roleLimit(PROVIDER) == limit
