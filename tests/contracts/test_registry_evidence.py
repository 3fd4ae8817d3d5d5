"""Registration with hardware evidence: the evidence-verifier role, its m-of-n threshold,
`registerWithEvidence` (every refusal with its exact error, nothing changed), the
recorded claim and the event that carries the evidence bytes, and its gas with a real
AWS Nitro attestation document (tests/agent/tee/data/aws-nitro; the contract only
hashes the bytes, the verifiers and peers verify them)."""

from __future__ import annotations

from pathlib import Path

import pytest
from brownie import accounts, chain, web3
from eth_account import Account
from eth_utils import keccak
from helpers import (
    EVIDENCE_TYPE_STRING,
    GATEWAY,
    NITRO,
    OTHER_MEASUREMENT,
    POLICY_HASH,
    PROVIDER,
    SIGNER_KEY,
    VERIFIER_KEYS,
    EvidenceClaim,
    Quote,
    assert_events,
    membership_digest,
    next_block_at,
    now,
    quote_typed_data,
    rejects,
    sign_verified_evidence,
    typed_data_digest,
    verified_evidence_typed_data,
)
from web3.logs import DISCARD

NITRO_DOCUMENT = (
    Path(__file__).resolve().parents[1]
    / "agent"
    / "tee"
    / "data"
    / "aws-nitro"
    / "anchorage_2022-11-09_eu-west-1.cose"
).read_bytes()
ZERO_CLAIM = (0, b"\x00" * 32, b"\x00" * 32)


def address(key: bytes) -> str:
    return str(Account.from_key(key).address)


@pytest.fixture
def w(world):
    return world


# ------------------------------------------------------------------ verifier role


def test_set_evidence_verifier_and_threshold(w):
    reg, gov = w.registry, {"from": w.governor}
    assert (reg.verifierCount(), reg.verifierThreshold()) == (0, 1)
    first, second = address(VERIFIER_KEYS[0]), address(VERIFIER_KEYS[1])
    tx = reg.setEvidenceVerifier(first, True, gov)
    assert_events(tx, ("EvidenceVerifierSet", {"verifier": first, "trusted": True, "verifierCount": 1}))
    reg.setEvidenceVerifier(second, True, gov)
    assert reg.isEvidenceVerifier(first) and reg.isEvidenceVerifier(second) and reg.verifierCount() == 2
    # A verifier is not an attestation signer, nor the other way round.
    assert not reg.isTrustedSigner(first) and not reg.isEvidenceVerifier(w.signer)
    tx = reg.setVerifierThreshold(2, gov)
    assert_events(tx, ("VerifierThresholdSet", {"threshold": 2}))
    assert reg.verifierThreshold() == 2
    reg.setVerifierThreshold(1, gov)
    tx = reg.setEvidenceVerifier(second, False, gov)
    assert_events(tx, ("EvidenceVerifierSet", {"verifier": second, "trusted": False, "verifierCount": 1}))
    # The last verifier may go (evidence registration then waits for a new one).
    reg.setEvidenceVerifier(first, False, gov)
    assert reg.verifierCount() == 0 and reg.verifierThreshold() == 1


def test_set_evidence_verifier_refusals(w):
    reg, gov = w.registry, {"from": w.governor}
    first = address(VERIFIER_KEYS[0])
    with rejects("RegistryVerifierUnchanged", first, False, world=w):
        reg.setEvidenceVerifier(first, False, gov)
    w.trust_verifiers(2, threshold=2)
    with rejects("RegistryVerifierUnchanged", first, True, world=w):
        reg.setEvidenceVerifier(first, True, gov)
    # Removing one would leave 1 verifier under a threshold of 2.
    with rejects("RegistryInvalidVerifierThreshold", 2, 1, world=w):
        reg.setEvidenceVerifier(first, False, gov)


@pytest.mark.parametrize("threshold", [0, 3])
def test_set_verifier_threshold_refusals(w, threshold):
    w.trust_verifiers(2)
    with rejects("RegistryInvalidVerifierThreshold", threshold, 2, world=w):
        w.registry.setVerifierThreshold(threshold, {"from": w.governor})


def test_threshold_needs_verifiers(w):
    with rejects("RegistryInvalidVerifierThreshold", 1, 0, world=w):
        w.registry.setVerifierThreshold(1, {"from": w.governor})


# ------------------------------------------------------------------ the digest


def test_verified_evidence_digest_matches_eip712(w):
    reg = w.registry
    assert bytes(reg.VERIFIED_EVIDENCE_TYPEHASH()) == keccak(text=EVIDENCE_TYPE_STRING)
    quote = w.quote(PROVIDER, accounts[9].address, accounts[4].address)
    claim = EvidenceClaim(NITRO, keccak(NITRO_DOCUMENT), POLICY_HASH)
    quote_digest = typed_data_digest(quote_typed_data(quote, chain.id, reg.address))
    expected = typed_data_digest(verified_evidence_typed_data(quote_digest, claim, chain.id, reg.address))
    assert bytes(reg.verifiedEvidenceDigest(quote.as_tuple(), claim.as_tuple())) == expected


# ------------------------------------------------------------------ registerWithEvidence


def test_register_with_evidence(w):
    keys = w.trust_verifiers(2)
    epoch = int(w.registry.epoch())
    member, tx = w.register_with_evidence(PROVIDER, NITRO_DOCUMENT, keys[:1])
    claim = (NITRO, keccak(NITRO_DOCUMENT), POLICY_HASH)
    events = [(e.name, dict(e)) for e in tx.events]
    assert [name for name, _ in events] == ["EvidenceRecorded", "MemberRegistered", "EpochStarted"]
    recorded = events[0][1]
    assert recorded["enclave"] == member.address and recorded["evidenceType"] == NITRO
    assert bytes(recorded["evidenceHash"]) == claim[1] and bytes(recorded["policyHash"]) == POLICY_HASH
    assert list(recorded["verifiers"]) == [address(keys[0])]
    assert bytes(recorded["evidence"]) == NITRO_DOCUMENT
    # Brownie shows empty bytes as 0x00: read the log with web3 to see it is empty.
    receipt = web3.eth.get_transaction_receipt(tx.txid)
    contract = web3.eth.contract(address=w.registry.address, abi=w.registry.abi)
    (registered,) = contract.events.MemberRegistered().process_receipt(receipt, errors=DISCARD)
    assert registered["args"]["enclave"] == member.address and registered["args"]["signature"] == b""
    assert registered["args"]["epoch"] == epoch + 1
    evidence = w.registry.evidenceOf(member.address)
    assert (evidence[0], bytes(evidence[1]), bytes(evidence[2])) == claim
    m = w.registry.member(member.address)
    assert m[1] and bytes(m[3]) == member.measurement and bytes(m[4]) == member.x25519
    assert bytes(w.registry.membershipDigest()) == membership_digest(
        chain.id, w.registry.address, epoch + 1, w.members
    )
    # Simulated members carry no evidence claim.
    assert tuple(w.registry.evidenceOf(w.members[0].address)) == (0, "0x" + "00" * 32, "0x" + "00" * 32)


def test_register_with_evidence_m_of_n_and_funding(w):
    keys = w.trust_verifiers(3, threshold=2)
    member, tx = w.register_with_evidence(PROVIDER, NITRO_DOCUMENT, keys[:2])
    assert len(tx.events["EvidenceRecorded"]["verifiers"]) == 2
    # More than the threshold is fine; value is forwarded to the enclave.
    operator = accounts[5]
    enclave, quote, claim, signatures, possession = w.evidence_offer(GATEWAY, operator, b"\x01" * 100, keys)
    balance = enclave.balance()
    w.registry.registerWithEvidence(
        quote.as_tuple(),
        claim.as_tuple(),
        signatures,
        possession,
        b"\x01" * 100,
        {"from": operator, "value": 7},
    )
    assert enclave.balance() == balance + 7
    assert len(signatures) == 3


def test_later_simulated_registration_hides_the_old_claim(w):
    keys = w.trust_verifiers(1)
    member, _ = w.register_with_evidence(PROVIDER, NITRO_DOCUMENT, keys)
    w.registry.revoke(member.address, {"from": member.operator})
    w.forget(member.address)
    assert w.registry.evidenceOf(member.address)[0] == NITRO  # still the record of its last registration
    _, quote, signature, possession = w.offer(PROVIDER, accounts[4], enclave=member.account)
    w.registry.register(quote.as_tuple(), signature, possession, {"from": accounts[4]})
    assert w.registry.evidenceOf(member.address)[0] == 0


def _offer(w, keys, evidence=NITRO_DOCUMENT, operator=None, **changes):
    operator = operator or accounts[4]
    enclave, quote, claim, signatures, possession = w.evidence_offer(
        PROVIDER, operator, evidence, keys, **changes
    )
    return operator, enclave, quote, claim, signatures, possession


def _send(w, operator, quote: Quote, claim, signatures, possession, evidence=NITRO_DOCUMENT, sender=None):
    return w.registry.registerWithEvidence(
        quote.as_tuple(),
        claim.as_tuple() if isinstance(claim, EvidenceClaim) else claim,
        signatures,
        possession,
        evidence,
        {"from": sender or operator},
    )


@pytest.mark.parametrize("evidence_type", [0, 1])
def test_refuses_non_hardware_types(w, evidence_type):
    keys = w.trust_verifiers(1)
    operator, _, quote, _, _, possession = _offer(w, keys)
    claim = EvidenceClaim(evidence_type, keccak(NITRO_DOCUMENT), POLICY_HASH)
    signatures = sign_verified_evidence(keys, quote, claim, chain.id, w.registry.address)
    with rejects("RegistryInvalidEvidenceType", evidence_type, world=w):
        _send(w, operator, quote, claim, signatures, possession)


def test_refuses_evidence_that_does_not_hash_to_the_claim(w):
    keys = w.trust_verifiers(1)
    operator, _, quote, claim, signatures, possession = _offer(w, keys)
    flipped = bytes([NITRO_DOCUMENT[0] ^ 1]) + NITRO_DOCUMENT[1:]
    with rejects("RegistryEvidenceHashMismatch", claim.evidenceHash, keccak(flipped), world=w):
        _send(w, operator, quote, claim, signatures, possession, evidence=flipped)


def test_refuses_too_few_verifier_signatures(w):
    keys = w.trust_verifiers(3, threshold=2)
    operator, _, quote, claim, signatures, possession = _offer(w, keys[:1])
    with rejects("RegistryTooFewVerifierSignatures", 1, 2, world=w):
        _send(w, operator, quote, claim, signatures, possession)
    with rejects("RegistryTooFewVerifierSignatures", 0, 2, world=w):
        _send(w, operator, quote, claim, [], possession)


def test_refuses_an_attestation_signer_as_verifier(w):
    """The simulated attestation signer is trusted for quotes, not for evidence."""
    w.trust_verifiers(1)
    operator, _, quote, claim, signatures, possession = _offer(w, [SIGNER_KEY])
    with rejects("RegistryUntrustedVerifier", w.signer, world=w):
        _send(w, operator, quote, claim, signatures, possession)


def test_refuses_signatures_over_another_claim(w):
    keys = w.trust_verifiers(1)
    operator, _, quote, claim, signatures, possession = _offer(w, keys)
    other = EvidenceClaim(claim.evidenceType, claim.evidenceHash, keccak(b"a laxer policy"))
    digest = bytes(w.registry.verifiedEvidenceDigest(quote.as_tuple(), other.as_tuple()))
    recovered = Account._recover_hash(digest, signature=signatures[0])
    with rejects("RegistryUntrustedVerifier", recovered, world=w):
        _send(w, operator, quote, other, signatures, possession)


def test_refuses_duplicate_and_unsorted_verifiers(w):
    keys = w.trust_verifiers(2, threshold=2)
    operator, _, quote, claim, signatures, possession = _offer(w, keys)
    low, high = sorted((address(k) for k in keys), key=lambda a: int(a, 16))
    with rejects("RegistryVerifiersNotAscending", low, low, world=w):
        _send(w, operator, quote, claim, [signatures[0], signatures[0]], possession)
    with rejects("RegistryVerifiersNotAscending", high, low, world=w):
        _send(w, operator, quote, claim, list(reversed(signatures)), possession)


def test_refuses_evidence_for_another_measurement(w):
    """Verifiers signed, but the measurement the evidence proves is not approved for the role."""
    keys = w.trust_verifiers(1)
    operator, _, quote, claim, signatures, possession = _offer(w, keys, measurement=OTHER_MEASUREMENT)
    with rejects("RegistryMeasurementNotApproved", PROVIDER, OTHER_MEASUREMENT, world=w):
        _send(w, operator, quote, claim, signatures, possession)
    # Approved but unlike the active providers' measurement.
    w.registry.approveMeasurement(PROVIDER, OTHER_MEASUREMENT, {"from": w.governor})
    with rejects(
        "RegistryMeasurementMismatch", PROVIDER, w.members[0].measurement, OTHER_MEASUREMENT, world=w
    ):
        _send(w, operator, quote, claim, signatures, possession)


def test_quote_checks_are_those_of_register(w):
    keys = w.trust_verifiers(1)
    operator, enclave, quote, claim, signatures, possession = _offer(w, keys)
    with rejects("RegistryNotOperator", accounts[5].address, operator.address, world=w):
        _send(w, operator, quote, claim, signatures, possession, sender=accounts[5])
    stranger = w.possess(quote, accounts[9])
    with rejects("RegistryPossessionNotProven", enclave.address, accounts[9].address, world=w):
        _send(w, operator, quote, claim, signatures, stranger)
    t = now() + 50
    operator, _, expired, claim, signatures, possession = _offer(w, keys, expiry=t - 1)
    next_block_at(t)
    with rejects("RegistryQuoteExpired", t - 1, t, world=w):
        _send(w, operator, expired, claim, signatures, possession)
    # A quote registered once cannot register again (nonce), whichever path.
    operator, _, quote, claim, signatures, possession = _offer(w, keys)
    _send(w, operator, quote, claim, signatures, possession)
    with rejects("RegistryNonceUsed", quote.nonce, world=None):
        _send(w, operator, quote, claim, signatures, possession)


def test_refused_while_paused(w):
    keys = w.trust_verifiers(1)
    operator, _, quote, claim, signatures, possession = _offer(w, keys)
    w.registry.pause({"from": w.governor})
    with rejects("EnforcedPause", world=w):
        _send(w, operator, quote, claim, signatures, possession)


# ------------------------------------------------------------------ gas


def test_gas_with_a_real_nitro_document(world, capsys):
    """registerWithEvidence with a 4.5 KB AWS Nitro document and m = 1, 2, 3 verifiers
    (the table in docs/evidence.md)."""
    assert 4_000 < len(NITRO_DOCUMENT) < 5_000
    keys = world.trust_verifiers(3)

    def from_here(register):
        """Gas of `register()` from this same state (so only m differs), then undo it."""
        chain.snapshot()
        try:
            return register()[1].gas_used
        finally:
            chain.revert()

    rows = []
    for m in (1, 2, 3):
        world.registry.setVerifierThreshold(m, {"from": world.governor})
        rows.append(
            (m, from_here(lambda m=m: world.register_with_evidence(PROVIDER, NITRO_DOCUMENT, keys[:m])))
        )
    simulated = from_here(lambda: world.register(PROVIDER))
    with capsys.disabled():
        print(f"\nregisterWithEvidence, {len(NITRO_DOCUMENT)}-byte Nitro document:")
        for m, gas in rows:
            print(f"  m = {m}: {gas:,} gas")
        print(f"  register (simulated quote): {simulated:,} gas")
    gas = dict(rows)
    assert gas[1] < gas[2] < gas[3] < 600_000
    # Each further verifier: one ecrecover, one storage read and one address in the event.
    assert 3_000 < gas[3] - gas[2] < 15_000
