"""A peer's own re-verification of a hardware member (``verify_member_evidence``): it
accepts evidence that verifies under its pinned root, satisfies its own policy, binds
the member's on-chain keys and proves the quoted measurement, and refuses otherwise,
naming why. Documents are Nitro-format, signed by a test CA (recorded AWS documents
cannot be bound to fresh keys); the recorded AWS sample shows a binding refusal."""

from __future__ import annotations

import os
import time
from typing import Any

import pytest
from eth_account import Account

from enclave_agent.errors import AttestationError
from enclave_agent.protocol.evidence import EvidenceJudge, PeerEvidenceRefused, verify_member_evidence
from enclave_agent.protocol.membership import MemberRecord
from enclave_agent.tee.binding import evidence_binding
from enclave_agent.tee.evidence import EvidenceType
from enclave_agent.tee.nitro import NitroVerifier, nitro_measurement
from enclave_agent.tee.policy import Policy, TypeRule
from enclave_agent.tee.quote import ROLE_GATEWAY, PossessionError, Quote, sign_possession
from tests.support.nitro_documents import TEST_PCRS, DocumentSigner
from tests.support.tee_samples import nitro_sample

REGISTRY = "0x5FbDB2315678afecb367f032d93F642f64180aa3"
CHAIN_ID = 31337
PCR0 = b"\x07" * 48
MEASUREMENT = nitro_measurement({0: PCR0, **TEST_PCRS})


@pytest.fixture(scope="module")
def ca() -> DocumentSigner:
    return DocumentSigner()


def judge(ca: DocumentSigner, *, policy: bool = True) -> EvidenceJudge:
    entry = {"PCR0": PCR0, "PCR1": TEST_PCRS[1], "PCR2": TEST_PCRS[2]}
    rules = Policy({"gateway": {"aws-nitro": TypeRule(approved=(entry,))}}) if policy else None
    return EvidenceJudge(
        {"aws-nitro": NitroVerifier(root_sha256=ca.sha256, also_trust=[NitroVerifier().root_sha256])}, rules
    )


def member(
    ca: DocumentSigner, *, evidence: bytes | None = None, bind_to: Any = None
) -> tuple[MemberRecord, int]:
    account = Account.create()
    quote = Quote(
        role=ROLE_GATEWAY,
        measurement=MEASUREMENT,
        operator=Account.create().address,
        enclave=account.address,
        x25519_key=os.urandom(32),
        chain_id=CHAIN_ID,
        registry=REGISTRY,
        nonce=os.urandom(32),
        expiry=int(time.time()) + 3600,
    )
    target = bind_to or quote
    binding = evidence_binding(
        enclave=target.enclave, x25519_key=target.x25519_key, chain_id=CHAIN_ID, registry=REGISTRY
    )
    now = int(time.time())
    document = evidence or ca.document(pcr0=PCR0, user_data=binding, timestamp_ms=now * 1000)
    record = MemberRecord(
        enclave=account.address,
        role=ROLE_GATEWAY,
        quote=quote,
        signature=b"",
        possession=sign_possession(quote, bytes(account.key)),
        evidence_type=int(EvidenceType.AWS_NITRO),
        evidence=document,
    )
    return record, now


def check(record: MemberRecord, j: EvidenceJudge, now: int) -> None:
    verify_member_evidence(
        record, j, approved_measurements={MEASUREMENT}, chain_id=CHAIN_ID, registry=REGISTRY, now=now
    )


def test_bound_approved_evidence_is_accepted(ca: DocumentSigner) -> None:
    record, now = member(ca)
    check(record, judge(ca), now)
    assert MemberRecord.from_json(record.to_json()) == record


def test_evidence_bound_to_another_member_is_refused(ca: DocumentSigner) -> None:
    other, _ = member(ca)
    record, now = member(ca, bind_to=other.quote)
    with pytest.raises(
        PeerEvidenceRefused, match=f"hardware member {record.enclave}: aws-nitro evidence refused: binding"
    ):
        check(record, judge(ca), now)


def test_real_aws_document_is_refused_on_binding_and_measurement(ca: DocumentSigner) -> None:
    record, _ = member(ca, evidence=nitro_sample("anchorage_2022-11-09_eu-west-1.cose"))
    with pytest.raises(PeerEvidenceRefused) as refused:
        check(record, judge(ca), 1668034400)
    assert "binding:" in str(refused.value) and "measurement:" in str(refused.value)


def test_without_a_policy_or_with_a_forged_possession_nothing_is_accepted(ca: DocumentSigner) -> None:
    record, now = member(ca)
    with pytest.raises(PeerEvidenceRefused, match="no evidence policy"):
        check(record, judge(ca, policy=False), now)
    forged = MemberRecord(**{**record.__dict__, "possession": sign_possession(record.quote, os.urandom(32))})
    with pytest.raises(PossessionError):
        check(forged, judge(ca), now)
    with pytest.raises(AttestationError, match="not approved"):
        verify_member_evidence(
            record, judge(ca), approved_measurements=set(), chain_id=CHAIN_ID, registry=REGISTRY, now=now
        )
