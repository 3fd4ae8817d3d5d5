"""ConsortiumRegistry: governance and admission of enclaves from signed quotes."""

from __future__ import annotations

import pytest
from brownie import accounts, chain
from eth_account import Account
from eth_utils import keccak
from helpers import (
    GATEWAY,
    GOVERNOR_ROLE,
    MEASUREMENT,
    OTHER_MEASUREMENT,
    PROVIDER,
    QUOTE_TYPE_STRING,
    ROLE_NONE,
    SYNC_WINDOW,
    ZERO32,
    assert_events,
    membership_digest,
    next_block_at,
    norm,
    now,
    rejects,
    sign_quote,
)

# ------------------------------------------------------------------ EIP-712 and the digest formula


def test_quote_typehash_matches_the_type_string(bare):
    assert bytes(bare.registry.QUOTE_TYPEHASH()) == keccak(text=QUOTE_TYPE_STRING)


def test_quote_digest_matches_eip712_off_chain(bare):
    quote = bare.quote(PROVIDER, accounts[8].address, accounts[4].address)
    _, digest = sign_quote(bare.signer_key, quote, chain.id, bare.registry.address)
    assert bytes(bare.registry.quoteDigest(quote.as_tuple())) == digest


def test_membership_digest_of_empty_registry(bare):
    assert bare.registry.epoch() == 0
    assert bytes(bare.registry.membershipDigest()) == membership_digest(
        chain.id, bare.registry.address, 0, []
    )
    assert not bare.registry.isSynchronised()


# ------------------------------------------------------------------ approveMeasurement


@pytest.mark.parametrize("role", [PROVIDER, GATEWAY])
def test_approve_measurement(bare, governor, role):
    tx = bare.registry.approveMeasurement(role, OTHER_MEASUREMENT, {"from": governor})
    assert_events(tx, ("MeasurementApproved", {"role": role, "measurement": OTHER_MEASUREMENT}))
    assert bare.registry.isApproved(role, OTHER_MEASUREMENT)
    assert not bare.registry.isApproved(3 - role, OTHER_MEASUREMENT)


def test_approve_measurement_twice_is_refused(bare, governor):
    with rejects("RegistryMeasurementAlreadyApproved", PROVIDER, MEASUREMENT, world=bare):
        bare.registry.approveMeasurement(PROVIDER, MEASUREMENT, {"from": governor})


def test_approve_measurement_for_role_none_is_refused(bare, governor):
    with rejects("RegistryInvalidRole", ROLE_NONE, world=bare):
        bare.registry.approveMeasurement(ROLE_NONE, OTHER_MEASUREMENT, {"from": governor})


def test_governance_needs_the_governor_role(bare, coordinator, outsider):
    for caller in (coordinator, outsider):
        with rejects("AccessControlUnauthorizedAccount", caller, GOVERNOR_ROLE, world=bare):
            bare.registry.approveMeasurement(PROVIDER, OTHER_MEASUREMENT, {"from": caller})
        with rejects("AccessControlUnauthorizedAccount", caller, GOVERNOR_ROLE, world=bare):
            bare.registry.revokeMeasurement(PROVIDER, MEASUREMENT, {"from": caller})
        with rejects("AccessControlUnauthorizedAccount", caller, GOVERNOR_ROLE, world=bare):
            bare.registry.setAttestationSigner(caller, True, {"from": caller})
        with rejects("AccessControlUnauthorizedAccount", caller, GOVERNOR_ROLE, world=bare):
            bare.registry.pause({"from": caller})


# ------------------------------------------------------------------ revokeMeasurement


def test_revoke_unused_measurement_starts_no_epoch(bare, governor):
    tx = bare.registry.revokeMeasurement(GATEWAY, MEASUREMENT, {"from": governor})
    assert_events(tx, ("MeasurementRevoked", {"role": GATEWAY, "measurement": MEASUREMENT, "deactivated": 0}))
    assert not bare.registry.isApproved(GATEWAY, MEASUREMENT)
    assert bare.registry.isApproved(PROVIDER, MEASUREMENT)
    assert bare.registry.epoch() == 0


def test_revoke_unapproved_measurement_is_refused(bare, governor):
    with rejects("RegistryMeasurementNotApproved", PROVIDER, OTHER_MEASUREMENT, world=bare):
        bare.registry.revokeMeasurement(PROVIDER, OTHER_MEASUREMENT, {"from": governor})


def test_revoked_measurement_no_longer_admits(bare, governor):
    bare.registry.revokeMeasurement(PROVIDER, MEASUREMENT, {"from": governor})
    quote = bare.quote(PROVIDER, accounts[8].address, accounts[4].address)
    with rejects("RegistryMeasurementNotApproved", PROVIDER, MEASUREMENT, world=bare):
        bare.registry.register(
            quote.as_tuple(), bare.sign(quote), bare.possess(quote, quote.enclave), {"from": accounts[4]}
        )


# ------------------------------------------------------------------ setAttestationSigner


def test_set_attestation_signer(bare, governor):
    other = Account.from_key(keccak(b"second attestation service")).address
    tx = bare.registry.setAttestationSigner(other, True, {"from": governor})
    assert_events(tx, ("AttestationSignerSet", {"signer": other, "trusted": True}))
    assert bare.registry.isTrustedSigner(other)
    tx = bare.registry.setAttestationSigner(other, False, {"from": governor})
    assert_events(tx, ("AttestationSignerSet", {"signer": other, "trusted": False}))
    assert not bare.registry.isTrustedSigner(other)


@pytest.mark.parametrize("trusted", [True, False])
def test_set_attestation_signer_unchanged_is_refused(bare, governor, trusted):
    signer = bare.signer if trusted else accounts[9].address
    with rejects("RegistrySignerUnchanged", signer, trusted, world=bare):
        bare.registry.setAttestationSigner(signer, trusted, {"from": governor})


def test_distrusted_signer_no_longer_admits(bare, governor):
    bare.registry.setAttestationSigner(bare.signer, False, {"from": governor})
    quote = bare.quote(PROVIDER, accounts[8].address, accounts[4].address)
    with rejects("RegistryUntrustedSigner", bare.signer, world=bare):
        bare.registry.register(
            quote.as_tuple(), bare.sign(quote), bare.possess(quote, quote.enclave), {"from": accounts[4]}
        )


# ------------------------------------------------------------------ pause / unpause


def test_pause_and_unpause(bare, governor):
    tx = bare.registry.pause({"from": governor})
    assert_events(tx, ("Paused", {"account": governor}))
    assert bare.registry.paused()
    with rejects("EnforcedPause", world=bare):
        bare.registry.pause({"from": governor})
    tx = bare.registry.unpause({"from": governor})
    assert_events(tx, ("Unpaused", {"account": governor}))
    assert not bare.registry.paused()
    with rejects("ExpectedPause", world=bare):
        bare.registry.unpause({"from": governor})


def test_unpause_needs_the_governor_role(bare, governor, outsider):
    bare.registry.pause({"from": governor})
    with rejects("AccessControlUnauthorizedAccount", outsider, GOVERNOR_ROLE, world=bare):
        bare.registry.unpause({"from": outsider})


def test_paused_registry_refuses_registration(bare, governor):
    bare.registry.pause({"from": governor})
    quote = bare.quote(PROVIDER, accounts[8].address, accounts[4].address)
    with rejects("EnforcedPause", world=bare):
        bare.registry.register(
            quote.as_tuple(), bare.sign(quote), bare.possess(quote, quote.enclave), {"from": accounts[4]}
        )


# ------------------------------------------------------------------ register: success


def test_register_first_provider(bare, operators):
    enclave = bare.new_account()
    operator = operators[0]
    quote = bare.quote(PROVIDER, enclave.address, operator.address)
    signature = bare.sign(quote)
    possession = bare.possess(quote, enclave)
    tx = bare.registry.register(quote.as_tuple(), signature, possession, {"from": operator})

    class M:
        address, role, measurement, x25519 = enclave.address, PROVIDER, quote.measurement, quote.x25519Key

    digest = membership_digest(chain.id, bare.registry.address, 1, [M])
    assert_events(
        tx,
        (
            "MemberRegistered",
            {
                "enclave": enclave,
                "operator": operator,
                "role": PROVIDER,
                "epoch": 1,
                "quote": quote.as_tuple(),
                "signature": signature,
                "possession": possession,
            },
        ),
        (
            "EpochStarted",
            {
                "epoch": 1,
                "membershipDigest": digest,
                "memberCount": 1,
                "syncDeadline": tx.timestamp + SYNC_WINDOW,
            },
        ),
    )
    assert bare.registry.syncDeadline() == tx.timestamp + SYNC_WINDOW
    assert bare.registry.enclaveCount(operator, PROVIDER) == 1
    assert bare.registry.epoch() == 1
    assert bytes(bare.registry.membershipDigest()) == digest
    assert norm(bare.registry.member(enclave)) == norm(
        (PROVIDER, True, operator, quote.measurement, quote.x25519Key, 1)
    )
    assert bare.registry.activeMembers(PROVIDER) == [enclave]
    assert bare.registry.activeMembers(GATEWAY) == []
    assert bare.registry.isActiveMember(enclave, PROVIDER)
    assert not bare.registry.isActiveMember(enclave, GATEWAY)
    assert not bare.registry.isSynchronised()
    assert bare.registry.synchronisedEpoch() == 0


def test_register_consortium_and_synchronise(bare, operators):
    for i in range(3):
        bare.register(PROVIDER, operator=operators[i])
    gw, _ = bare.register(GATEWAY, operator=operators[3])
    assert bare.registry.epoch() == 4
    assert bare.registry.activeMembers(PROVIDER) == [m.address for m in bare.providers]
    assert bare.registry.activeMembers(GATEWAY) == [gw.address]
    assert bytes(bare.registry.membershipDigest()) == bare.expected_digest(4)
    txs = bare.sync()
    digest = bare.expected_digest(4)
    for i, (tx, m) in enumerate(zip(txs, bare.members)):
        expected = [
            ("MembershipDigestPosted", {"epoch": 4, "member": m.account, "digest": digest, "matches": True})
        ]
        if i == len(txs) - 1:
            expected.append(("EpochSynchronised", {"epoch": 4, "membershipDigest": digest}))
        assert_events(tx, *expected)
    assert bare.registry.isSynchronised()
    assert bare.registry.synchronisedEpoch() == 4


def test_quote_expiring_this_very_block_is_accepted(bare, operators):
    enclave = bare.new_account()
    t = now() + 50
    quote = bare.quote(PROVIDER, enclave.address, operators[0].address, expiry=t)
    next_block_at(t)
    tx = bare.registry.register(
        quote.as_tuple(), bare.sign(quote), bare.possess(quote, quote.enclave), {"from": operators[0]}
    )
    assert tx.status == 1 and bare.registry.isActiveMember(enclave, PROVIDER)


def test_one_operator_may_run_several_enclaves(bare, operators):
    a, _ = bare.register(PROVIDER, operator=operators[0])
    b, _ = bare.register(GATEWAY, operator=operators[0])
    assert bare.registry.member(a.address)[2] == operators[0]
    assert bare.registry.member(b.address)[2] == operators[0]


# ------------------------------------------------------------------ register: refusals


def _offer(bare, operator, role=PROVIDER, **changes):
    enclave = changes.pop("enclave", None) or bare.new_account().address
    return bare.quote(role, enclave, operator.address, **changes)


def test_register_by_someone_else_than_the_operator(bare, operators, outsider):
    quote = _offer(bare, operators[0])
    with rejects("RegistryNotOperator", outsider, operators[0], world=bare):
        bare.registry.register(
            quote.as_tuple(), bare.sign(quote), bare.possess(quote, quote.enclave), {"from": outsider}
        )


def test_register_enclave_submitting_its_own_quote_is_refused(bare, operators):
    enclave = bare.new_account()
    quote = bare.quote(PROVIDER, enclave.address, operators[0].address)
    with rejects("RegistryNotOperator", enclave, operators[0], world=bare):
        bare.registry.register(
            quote.as_tuple(), bare.sign(quote), bare.possess(quote, quote.enclave), {"from": enclave}
        )


def test_register_role_none_is_refused(bare, operators):
    quote = _offer(bare, operators[0], role=ROLE_NONE)
    with rejects("RegistryInvalidRole", ROLE_NONE, world=bare):
        bare.registry.register(
            quote.as_tuple(), bare.sign(quote), bare.possess(quote, quote.enclave), {"from": operators[0]}
        )


def test_register_zero_enclave_is_refused(bare, operators):
    quote = _offer(bare, operators[0], enclave="0x" + "00" * 20)
    with rejects("RegistryInvalidEnclave", "0x" + "00" * 20, world=bare):
        bare.registry.register(quote.as_tuple(), bare.sign(quote), b"", {"from": operators[0]})


def test_register_zero_x25519_key_is_refused(bare, operators):
    quote = _offer(bare, operators[0], x25519Key=ZERO32)
    with rejects("RegistryInvalidEnclave", quote.enclave, world=bare):
        bare.registry.register(
            quote.as_tuple(), bare.sign(quote), bare.possess(quote, quote.enclave), {"from": operators[0]}
        )


def test_forged_quote_from_untrusted_signer(bare, operators):
    quote = _offer(bare, operators[0])
    forger = keccak(b"a forger's attestation key")
    with rejects("RegistryUntrustedSigner", Account.from_key(forger).address, world=bare):
        bare.registry.register(
            quote.as_tuple(),
            bare.sign(quote, key=forger),
            bare.possess(quote, quote.enclave),
            {"from": operators[0]},
        )


def test_tampered_quote_recovers_another_signer(bare, operators):
    quote = _offer(bare, operators[0])
    signature = bare.sign(quote)
    tampered = quote.but(measurement=OTHER_MEASUREMENT)
    recovered = Account._recover_hash(
        bytes(bare.registry.quoteDigest(tampered.as_tuple())), signature=signature
    )
    assert recovered != bare.signer
    with rejects("RegistryUntrustedSigner", recovered, world=bare):
        bare.registry.register(
            tampered.as_tuple(), signature, bare.possess(tampered, tampered.enclave), {"from": operators[0]}
        )


def test_malformed_signature_is_refused(bare, operators):
    quote = _offer(bare, operators[0])
    with rejects("ECDSAInvalidSignatureLength", 64, world=bare):
        bare.registry.register(
            quote.as_tuple(),
            bare.sign(quote)[:64],
            bare.possess(quote, quote.enclave),
            {"from": operators[0]},
        )


def test_quote_for_another_chain_id(bare, operators):
    other_chain = chain.id + 1
    quote = _offer(bare, operators[0], chainId=other_chain)
    with rejects("RegistryWrongBinding", other_chain, bare.registry.address, world=bare):
        bare.registry.register(
            quote.as_tuple(), bare.sign(quote), bare.possess(quote, quote.enclave), {"from": operators[0]}
        )


def test_quote_signed_in_another_chains_domain(bare, operators):
    """A genuine quote of another chain: the domain differs, so the signer does not recover."""
    other_chain = chain.id + 1
    quote = _offer(bare, operators[0], chainId=other_chain)
    signature, _ = sign_quote(bare.signer_key, quote, other_chain, bare.registry.address)
    recovered = Account._recover_hash(bytes(bare.registry.quoteDigest(quote.as_tuple())), signature=signature)
    with rejects("RegistryUntrustedSigner", recovered, world=bare):
        bare.registry.register(
            quote.as_tuple(), signature, bare.possess(quote, quote.enclave), {"from": operators[0]}
        )


def test_quote_for_another_registry(bare, operators):
    elsewhere = accounts[9].address
    quote = _offer(bare, operators[0], registry=elsewhere)
    with rejects("RegistryWrongBinding", chain.id, elsewhere, world=bare):
        bare.registry.register(
            quote.as_tuple(), bare.sign(quote), bare.possess(quote, quote.enclave), {"from": operators[0]}
        )


def test_quote_signed_for_another_registry_domain(bare, operators):
    elsewhere = accounts[9].address
    quote = _offer(bare, operators[0], registry=elsewhere)
    signature, _ = sign_quote(bare.signer_key, quote, chain.id, elsewhere)
    recovered = Account._recover_hash(bytes(bare.registry.quoteDigest(quote.as_tuple())), signature=signature)
    with rejects("RegistryUntrustedSigner", recovered, world=bare):
        bare.registry.register(
            quote.as_tuple(), signature, bare.possess(quote, quote.enclave), {"from": operators[0]}
        )


def test_replayed_nonce_is_refused(bare, operators):
    first, _ = bare.register(PROVIDER, operator=operators[0])
    used = keccak(text="nonce-reused")
    enclave = bare.new_account()
    quote = bare.quote(PROVIDER, enclave.address, operators[1].address, nonce=used)
    bare.registry.register(
        quote.as_tuple(), bare.sign(quote), bare.possess(quote, quote.enclave), {"from": operators[1]}
    )
    again = _offer(bare, operators[2], nonce=used)
    with rejects("RegistryNonceUsed", used, world=bare):
        bare.registry.register(
            again.as_tuple(), bare.sign(again), bare.possess(again, again.enclave), {"from": operators[2]}
        )


def test_replayed_quote_after_revocation_is_refused(bare, operators, governor):
    """The exact same signed quote cannot re-admit an enclave once it was revoked."""
    enclave = bare.new_account()
    quote = bare.quote(PROVIDER, enclave.address, operators[0].address)
    signature = bare.sign(quote)
    bare.registry.register(
        quote.as_tuple(), signature, bare.possess(quote, quote.enclave), {"from": operators[0]}
    )
    bare.registry.revoke(enclave, {"from": governor})
    with rejects("RegistryNonceUsed", quote.nonce, world=bare):
        bare.registry.register(
            quote.as_tuple(), signature, bare.possess(quote, quote.enclave), {"from": operators[0]}
        )


def test_expired_quote_is_refused(bare, operators):
    t = now() + 50
    quote = _offer(bare, operators[0], expiry=t - 1)
    next_block_at(t)
    with rejects("RegistryQuoteExpired", t - 1, t, world=bare):
        bare.registry.register(
            quote.as_tuple(), bare.sign(quote), bare.possess(quote, quote.enclave), {"from": operators[0]}
        )


def test_unapproved_measurement_is_refused(bare, operators):
    quote = _offer(bare, operators[0], measurement=OTHER_MEASUREMENT)
    with rejects("RegistryMeasurementNotApproved", PROVIDER, OTHER_MEASUREMENT, world=bare):
        bare.registry.register(
            quote.as_tuple(), bare.sign(quote), bare.possess(quote, quote.enclave), {"from": operators[0]}
        )


def test_measurement_mismatch_within_a_role(bare, operators, governor):
    bare.registry.approveMeasurement(PROVIDER, OTHER_MEASUREMENT, {"from": governor})
    bare.register(PROVIDER, operator=operators[0])
    quote = _offer(bare, operators[1], measurement=OTHER_MEASUREMENT)
    with rejects("RegistryMeasurementMismatch", PROVIDER, MEASUREMENT, OTHER_MEASUREMENT, world=bare):
        bare.registry.register(
            quote.as_tuple(), bare.sign(quote), bare.possess(quote, quote.enclave), {"from": operators[1]}
        )


def test_measurements_are_per_role(bare, operators, governor):
    """Gateway and providers may run different approved measurements."""
    bare.registry.approveMeasurement(GATEWAY, OTHER_MEASUREMENT, {"from": governor})
    bare.register(PROVIDER, operator=operators[0])
    gw, tx = bare.register(GATEWAY, operator=operators[1], measurement=OTHER_MEASUREMENT)
    assert tx.status == 1
    assert bytes(bare.registry.member(gw.address)[3]) == OTHER_MEASUREMENT


def test_measurement_rotation_after_the_role_emptied(bare, operators, governor):
    bare.registry.approveMeasurement(PROVIDER, OTHER_MEASUREMENT, {"from": governor})
    old, _ = bare.register(PROVIDER, operator=operators[0])
    bare.registry.revokeMeasurement(PROVIDER, MEASUREMENT, {"from": governor})
    bare.forget(old.address)
    new, _ = bare.register(PROVIDER, operator=operators[0], measurement=OTHER_MEASUREMENT)
    assert bare.registry.activeMembers(PROVIDER) == [new.address]
    assert bytes(bare.registry.membershipDigest()) == bare.expected_digest()


def test_active_member_cannot_register_twice(bare, operators):
    member, _ = bare.register(PROVIDER, operator=operators[0])
    quote = bare.quote(PROVIDER, member.address, operators[0].address)
    with rejects("RegistryAlreadyMember", member.address, world=bare):
        bare.registry.register(
            quote.as_tuple(), bare.sign(quote), bare.possess(quote, quote.enclave), {"from": operators[0]}
        )


def test_revoked_enclave_may_register_again_with_a_fresh_quote(bare, operators, governor):
    member, _ = bare.register(PROVIDER, operator=operators[0])
    bare.registry.revoke(member.address, {"from": governor})
    bare.forget(member.address)
    again, tx = bare.register(PROVIDER, operator=operators[0], enclave=member.account)
    assert tx.status == 1
    assert bare.registry.member(member.address)[5] == 3  # joined in the third epoch
    assert bytes(bare.registry.membershipDigest()) == bare.expected_digest()


# ------------------------------------------------------------------ malformed signatures and roles

SECP256K1_N = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141


def test_malleated_high_s_signature_is_refused(bare, operators):
    quote = _offer(bare, operators[0])
    sig = bare.sign(quote)
    r, s, v = sig[:32], int.from_bytes(sig[32:64], "big"), sig[64]
    high_s = (SECP256K1_N - s).to_bytes(32, "big")
    with rejects("ECDSAInvalidSignatureS", high_s, world=bare):
        bare.registry.register(
            quote.as_tuple(),
            r + high_s + bytes([55 - v]),
            bare.possess(quote, quote.enclave),
            {"from": operators[0]},
        )


def test_signature_recovering_nobody_is_refused(bare, operators):
    quote = _offer(bare, operators[0])
    sig = bare.sign(quote)
    with rejects("ECDSAInvalidSignature", world=bare):
        bare.registry.register(
            quote.as_tuple(),
            sig[:64] + bytes([29]),
            bare.possess(quote, quote.enclave),
            {"from": operators[0]},
        )


def test_renounce_role_needs_confirmation(bare, governor, outsider):
    for contract in (bare.registry, bare.exchange, bare.gateway):
        with rejects("AccessControlBadConfirmation", world=bare):
            contract.renounceRole(GOVERNOR_ROLE, governor, {"from": outsider})
