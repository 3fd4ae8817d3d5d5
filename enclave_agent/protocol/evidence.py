"""Hardware evidence in onboarding: a member on a hardware TEE registers through the
consortium's evidence verifiers (``register_with_evidence``), and every peer
re-verifies the raw evidence of such a member itself (``verify_member_evidence``)
from the ``EvidenceRecorded`` event, with its own verifiers, its own policy and the
key binding to that member's on-chain enclave address and X25519 key. It does not
trust the verifiers' signatures any more than it trusts the contract.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Collection, Mapping
from dataclasses import dataclass

from eth_utils.address import to_checksum_address

from enclave_agent.config import EvidenceConfig
from enclave_agent.errors import AttestationError, ConfigError
from enclave_agent.protocol.membership import MemberRecord
from enclave_agent.tee.anchor import BlockTime, challenge_time
from enclave_agent.tee.binding import BindingClaims
from enclave_agent.tee.evidence import (
    EvidenceType,
    EvidenceTypeError,
    EvidenceVerifier,
    evidence_hash,
    verify_presented,
)
from enclave_agent.tee.policy import Policy
from enclave_agent.tee.quote import (
    ROLE_NAMES,
    MeasurementNotApprovedError,
    Quote,
    QuoteBindingError,
    QuoteExpiredError,
    QuoteRoleError,
    sign_possession,
    verify_possession,
)
from enclave_agent.tee.verified_evidence import EvidenceClaim, by_signer

log = logging.getLogger(__name__)

QUOTE_TTL = 3600


class PeerEvidenceRefused(AttestationError):
    """A member's hardware evidence fails this agent's own re-verification."""


@dataclass(frozen=True)
class EvidenceJudge:
    """What a peer re-verifies hardware evidence with: its platform verifiers and
    its own policy (None: it cannot accept any hardware member)."""

    verifiers: Mapping[str, EvidenceVerifier]
    policy: Policy | None

    @classmethod
    def from_config(cls, config: EvidenceConfig) -> EvidenceJudge:
        from enclave_agent.tee.policy_file import load_policy
        from enclave_agent.tee.verifier_service import parse_ark_pins, parse_roots, verifiers_for

        roots = parse_roots(config.nitro_roots_sha256 or None, "evidence.nitro_root_sha256")
        policy = load_policy(config.policy) if config.policy is not None else None
        verifiers = verifiers_for(
            roots,
            dcap_collateral=config.dcap_collateral,
            snp_collateral=config.snp_collateral,
            amd_ark_sha256=parse_ark_pins(dict(config.amd_ark_sha256), "evidence.amd_ark_sha256"),
        )
        return cls(verifiers, policy)


def verify_member_evidence(
    member: MemberRecord,
    judge: EvidenceJudge,
    *,
    approved_measurements: Collection[bytes],
    chain_id: int,
    registry: str,
    now: int,
    block_time: BlockTime | None = None,
) -> None:
    """Re-verify a hardware member as the registry admitted it, but from the evidence
    itself: the quote (possession, role, consortium, expiry at admission, approved
    measurement) and the evidence (platform verification, this agent's policy for the
    member's role, binding to the member's enclave address and X25519 key, and the
    measurement it proves being the quote's). Evidence that signs no time is fresh when
    its challenge is a block of this chain (``block_time``, ``enclave_agent.tee.anchor``)
    no older than the policy's ``max_age`` at admission. Raises ``AttestationError``
    naming why."""
    quote = member.quote
    who = f"hardware member {member.enclave}"
    verify_possession(quote, member.possession)
    if quote.role != member.role:
        raise QuoteRoleError(f"{who}: quote for role {quote.role_name}, registered as {member.role}")
    if quote.chain_id != chain_id or quote.registry != to_checksum_address(registry):
        raise QuoteBindingError(f"{who}: quote bound to chain {quote.chain_id} registry {quote.registry}")
    if quote.expiry < now:
        raise QuoteExpiredError(f"{who}: quote expired at {quote.expiry}, admitted at {now}")
    if quote.measurement not in {bytes(m) for m in approved_measurements}:
        raise MeasurementNotApprovedError(f"{who}: measurement 0x{quote.measurement.hex()} is not approved")
    try:
        label = EvidenceType(member.evidence_type).label
    except ValueError:
        raise PeerEvidenceRefused(f"{who}: unknown evidence type {member.evidence_type}") from None
    if label not in judge.verifiers:
        raise PeerEvidenceRefused(f"{who}: this agent verifies no {label} evidence")
    if judge.policy is None:
        raise PeerEvidenceRefused(f"{who}: this agent has no evidence policy ([evidence] policy)")
    try:
        verified = verify_presented(judge.verifiers, label, member.evidence, now=now)
    except EvidenceTypeError as exc:
        raise PeerEvidenceRefused(f"{who}: {exc}") from None
    claims = BindingClaims(
        enclave=member.enclave, x25519_key=quote.x25519_key, chain_id=chain_id, registry=registry
    )
    anchored = challenge_time(verified, block_time)
    verdict = judge.policy.evaluate(
        verified,
        role=ROLE_NAMES[member.role],
        claims=claims,
        now=now,
        challenge=None if anchored is None else verified.nonce,
        challenge_time=anchored,
    )
    reasons = [str(r) for r in verdict.refusals]
    if verified.measurement != quote.measurement:
        reasons.append(
            f"quote: the evidence proves measurement 0x{verified.measurement.hex()}, "
            f"the quote names 0x{quote.measurement.hex()}"
        )
    if reasons:
        raise PeerEvidenceRefused(f"{who}: {label} evidence refused: " + "; ".join(reasons))
    log.info(
        "%s: %s evidence re-verified (measurement 0x%s, binding to its keys checked)",
        who,
        label,
        quote.measurement.hex()[:16],
    )


@dataclass(frozen=True)
class EvidenceRegistration:
    """What ``registerWithEvidence`` takes, made and checked by ``prepare_registration``."""

    quote: Quote
    claim: EvidenceClaim
    signatures: list[bytes]
    possession: bytes
    evidence: bytes

    def arguments(self) -> tuple[object, ...]:
        return (self.quote.as_tuple(), self.claim.as_tuple(), self.signatures, self.possession, self.evidence)


def prepare_registration(
    *,
    tee: object,
    judge: EvidenceJudge,
    verifier_urls: Collection[str],
    role: int,
    operator: str,
    signing_key: bytes,
    x25519_key: bytes,
    enclave: str,
    chain_id: int,
    registry: str,
    challenge: bytes,
) -> EvidenceRegistration:
    """Evidence from this enclave's device bound to its keys and the consortium, the
    measurement it proves (checked here with this agent's own verifier first), a quote
    for it, and every configured verifier's signature over the claim. ``challenge`` is
    the hash of a recent block (``enclave_agent.tee.anchor``): it dates the evidence."""
    from enclave_agent.tee.hardware import HardwareTee
    from enclave_agent.tee.verifier_service import request_verification

    if not isinstance(tee, HardwareTee):
        raise ConfigError("registration with evidence needs a hardware TEE backend")
    claims = BindingClaims(enclave=enclave, x25519_key=x25519_key, chain_id=chain_id, registry=registry)
    evidence = tee.raw_evidence(claims.report_data(challenge))
    if tee.name not in judge.verifiers:
        raise ConfigError(f"no {tee.name} verifier to read this enclave's own evidence ([evidence])")
    measurement = verify_presented(judge.verifiers, tee.name, evidence, now=int(time.time())).measurement
    quote = Quote(
        role=role,
        measurement=measurement,
        operator=to_checksum_address(operator),
        enclave=enclave,
        x25519_key=x25519_key,
        chain_id=chain_id,
        registry=to_checksum_address(registry),
        nonce=os.urandom(32),
        expiry=int(time.time()) + QUOTE_TTL,
    )
    signed: list[bytes] = []
    claim: EvidenceClaim | None = None
    for url in verifier_urls:
        got, signature, address = request_verification(url, quote, tee.name, evidence)
        if claim is not None and got != claim:
            raise AttestationError(
                f"evidence verifier {address} at {url} signs another policy than the others"
            )
        claim = got
        signed.append(signature)
    if claim is None:
        raise ConfigError("no evidence verifiers configured ([evidence] verifier_urls)")
    assert claim.evidence_hash == evidence_hash(evidence)
    return EvidenceRegistration(
        quote, claim, by_signer(quote, claim, signed), sign_possession(quote, signing_key), evidence
    )
