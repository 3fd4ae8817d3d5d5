"""The evidence verifier service: it signs EIP-712 VerifiedEvidence only for evidence
that verifies, satisfies its policy, binds the quote's keys and consortium and proves
the quote's measurement; every refusal names its rule and value; the digest it signs
is the registry's.

Accepted evidence here is a Nitro-format document made under a test CA chain
(``tests/support/nitro_documents.py``, verifier pinned to that root): the recorded
AWS samples cannot be bound to fresh keys. A recorded AWS sample is used for the
binding refusal, verified under the real AWS root."""

from __future__ import annotations

import asyncio
import json
import os
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from eth_utils import keccak, to_checksum_address

from enclave_agent.cli import build_parser
from enclave_agent.errors import AttestationError
from enclave_agent.tee.backend import new_secp256k1_key
from enclave_agent.tee.binding import evidence_binding
from enclave_agent.tee.evidence import EvidenceType
from enclave_agent.tee.nitro import NitroVerifier, nitro_measurement
from enclave_agent.tee.policy import EvidenceRefused, Policy, TypeRule
from enclave_agent.tee.quote import ROLE_PROVIDER, Quote
from enclave_agent.tee.verified_evidence import (
    EvidenceClaim,
    by_signer,
    policy_hash,
    recover_verifier,
    sign_verified_evidence,
    verified_evidence_digest,
)
from enclave_agent.tee.verifier_service import (
    EvidenceRefusedByVerifier,
    EvidenceVerifierService,
    build_app,
    request_verification,
)
from tests.support.nitro_documents import TEST_PCRS, DocumentSigner
from tests.support.tee_samples import nitro_sample

REGISTRY = "0x5FbDB2315678afecb367f032d93F642f64180aa3"
CHAIN_ID = 31337
PCR0 = b"\x07" * 48
POLICY_FILE = b"version = 1\n# the test policy's bytes\n"
MEASUREMENT = nitro_measurement({0: PCR0, **TEST_PCRS})


def policy() -> Policy:
    entry = {"PCR0": PCR0, "PCR1": TEST_PCRS[1], "PCR2": TEST_PCRS[2]}
    return Policy({"provider": {"aws-nitro": TypeRule(approved=(entry,))}}, source="test")


@pytest.fixture(scope="module")
def signer() -> DocumentSigner:
    return DocumentSigner()


@pytest.fixture
def service(signer: DocumentSigner) -> EvidenceVerifierService:
    return EvidenceVerifierService(
        new_secp256k1_key(),
        policy=policy(),
        policy_bytes=POLICY_FILE,
        verifiers={"aws-nitro": NitroVerifier(root_sha256=signer.sha256)},
    )


def quote(registry: str = REGISTRY, chain_id: int = CHAIN_ID, **changes: Any) -> Quote:
    fields: dict[str, Any] = {
        "role": ROLE_PROVIDER,
        "measurement": MEASUREMENT,
        "operator": to_checksum_address(os.urandom(20)),
        "enclave": to_checksum_address(os.urandom(20)),
        "x25519_key": os.urandom(32),
        "chain_id": chain_id,
        "registry": registry,
        "nonce": os.urandom(32),
        "expiry": int(time.time()) + 3600,
    }
    fields.update(changes)
    return Quote(**fields)


def bound_document(signer: DocumentSigner, q: Quote, pcr0: bytes = PCR0) -> bytes:
    binding = evidence_binding(
        enclave=q.enclave, x25519_key=q.x25519_key, chain_id=q.chain_id, registry=q.registry
    )
    return signer.document(pcr0=pcr0, user_data=binding)


def test_digest_is_the_registrys(registry: Any) -> None:
    q = quote(registry=registry.address)
    claim = EvidenceClaim(EvidenceType.AWS_NITRO, keccak(b"evidence"), policy_hash(POLICY_FILE))
    on_chain = registry.functions.verifiedEvidenceDigest(q.as_tuple(), claim.as_tuple()).call()
    assert bytes(on_chain) == verified_evidence_digest(q, claim)


def test_accepted_evidence_is_signed(service: EvidenceVerifierService, signer: DocumentSigner) -> None:
    q = quote()
    document = bound_document(signer, q)
    claim, signature = service.verify_and_sign(q, "aws-nitro", document)
    assert claim == EvidenceClaim(EvidenceType.AWS_NITRO, keccak(document), keccak(POLICY_FILE))
    assert recover_verifier(q, claim, signature) == service.address


def rules(exc: pytest.ExceptionInfo[EvidenceRefused]) -> dict[str, str]:
    return {r.rule: r.value for r in exc.value.verdict.refusals}


def test_evidence_bound_to_other_keys_is_refused(
    service: EvidenceVerifierService, signer: DocumentSigner
) -> None:
    q = quote()
    document = bound_document(signer, q)
    thief = quote(measurement=MEASUREMENT)
    with pytest.raises(EvidenceRefused) as refused:
        service.verify_and_sign(thief, "aws-nitro", document)
    assert set(rules(refused)) == {"binding"}
    assert thief.enclave in str(refused.value)


def test_evidence_for_another_measurement_is_refused(
    service: EvidenceVerifierService, signer: DocumentSigner
) -> None:
    q = quote()
    other = bound_document(signer, q, pcr0=b"\x09" * 48)
    with pytest.raises(EvidenceRefused) as refused:
        service.verify_and_sign(q, "aws-nitro", other)
    found = rules(refused)
    assert set(found) == {"measurement", "quote"}
    assert ("09" * 48) in found["measurement"]
    assert found["quote"] == "0x" + MEASUREMENT.hex()


def test_real_aws_sample_is_refused_naming_binding_and_age(signer: DocumentSigner) -> None:
    """A genuine AWS document (real root) verifies, but binds someone else's data and is old."""
    service = EvidenceVerifierService(
        new_secp256k1_key(),
        policy=policy(),
        policy_bytes=POLICY_FILE,
        verifiers={"aws-nitro": NitroVerifier()},
    )
    document = nitro_sample("anchorage_2022-11-09_eu-west-1.cose")
    with pytest.raises(EvidenceRefused) as refused:
        service.verify_and_sign(quote(), "aws-nitro", document)
    assert {"binding", "max_age", "measurement"} <= set(rules(refused))


def test_unverifiable_and_unknown_evidence_is_refused(service: EvidenceVerifierService) -> None:
    aws_pinned = EvidenceVerifierService(
        new_secp256k1_key(),
        policy=policy(),
        policy_bytes=POLICY_FILE,
        verifiers={"aws-nitro": NitroVerifier()},
    )
    q = quote()
    with pytest.raises(EvidenceRefused) as refused:
        aws_pinned.verify_and_sign(q, "aws-nitro", bound_document(DocumentSigner(), q))
    assert rules(refused) == {"verification": "NitroDocumentError"}
    assert "not the pinned AWS Nitro root" in str(refused.value)
    with pytest.raises(EvidenceRefused) as refused:
        service.verify_and_sign(q, "intel-tdx", b"\x04\x00")
    assert rules(refused) == {"type": "intel-tdx"}


def test_expired_quote_is_refused(service: EvidenceVerifierService, signer: DocumentSigner) -> None:
    q = quote(expiry=int(time.time()) - 10)
    with pytest.raises(EvidenceRefused) as refused:
        service.verify_and_sign(q, "aws-nitro", bound_document(signer, q))
    assert rules(refused) == {"quote": f"expiry={q.expiry}"}


def test_signatures_in_registry_order() -> None:
    q = quote()
    claim = EvidenceClaim(EvidenceType.AWS_NITRO, keccak(b"e"), keccak(b"p"))
    keys = [new_secp256k1_key() for _ in range(4)]
    signatures = [sign_verified_evidence(q, claim, k) for k in keys]
    ordered = by_signer(q, claim, [*signatures, signatures[0]])
    signers = [int(recover_verifier(q, claim, s), 16) for s in ordered]
    assert signers == sorted(signers) and len(ordered) == 4


# ------------------------------------------------------------------ HTTP


@pytest.fixture
def server(service: EvidenceVerifierService) -> Iterator[str]:
    loop = asyncio.new_event_loop()
    runner = web.AppRunner(build_app(service))
    loop.run_until_complete(runner.setup())
    loop.run_until_complete(web.TCPSite(runner, "127.0.0.1", 0).start())
    port = runner.addresses[0][1]
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        asyncio.run_coroutine_threadsafe(runner.cleanup(), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        loop.close()


def call(url: str, path: str, payload: bytes | None = None) -> tuple[int, Any]:
    request = urllib.request.Request(
        url + path,
        data=payload,
        headers={"Content-Type": "application/json"},
        method="POST" if payload else "GET",
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def test_http_round_trip(service: EvidenceVerifierService, signer: DocumentSigner, server: str) -> None:
    q = quote()
    document = bound_document(signer, q)
    claim, signature, verifier = request_verification(server, q, "aws-nitro", document)
    assert verifier == service.address and recover_verifier(q, claim, signature) == verifier
    status, identity = call(server, "/v1/verifier")
    assert status == 200 and identity["verifier"] == service.address
    assert identity["policyHash"] == "0x" + keccak(POLICY_FILE).hex()
    assert identity["nitroRootsSha256"] == [signer.sha256.hex()]
    assert call(server, "/healthz")[1]["status"] == "ok"


def test_http_refusal_is_422_with_every_reason(signer: DocumentSigner, server: str) -> None:
    q = quote()
    document = bound_document(signer, q, pcr0=b"\x09" * 48)
    with pytest.raises(EvidenceRefusedByVerifier) as refused:
        request_verification(server, q, "aws-nitro", document)
    assert {r["rule"] for r in refused.value.reasons} == {"measurement", "quote"}
    assert isinstance(refused.value, AttestationError)


@pytest.mark.parametrize(
    "payload",
    [
        b"{not json",
        b"[]",
        json.dumps({"quote": {}, "evidenceType": "aws-nitro", "evidence": "AA=="}).encode(),
    ],
)
def test_http_malformed_request_is_400(server: str, payload: bytes) -> None:
    status, reply = call(server, "/v1/verify", payload)
    assert status == 400 and reply["error"]


def test_cli_subcommand(tmp_path: Path) -> None:
    args = build_parser().parse_args(
        [
            "evidence-verifier",
            "--key",
            str(tmp_path / "k"),
            "--policy",
            str(tmp_path / "p.toml"),
            "--port",
            "0",
        ]
    )
    assert (args.port, args.nitro_root_sha256) == (0, None)
    assert args.func.__module__ == "enclave_agent.tee.verifier_cli"
