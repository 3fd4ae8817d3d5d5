"""AWS Nitro attestation documents: real samples (data/aws-nitro, provenance in its
README) verified as of their own timestamps, negative cases, and quotes issued from
evidence made under a test root."""

from __future__ import annotations

import base64
import hashlib
import os
import time
from pathlib import Path

import cbor2
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from eth_utils import to_checksum_address

from enclave_agent.errors import AttestationError
from enclave_agent.tee.backend import new_secp256k1_key
from enclave_agent.tee.evidence import EvidenceVerifier, evidence_binding
from enclave_agent.tee.nitro import (
    AWS_NITRO_ROOT_G1_SHA256,
    NitroDocumentError,
    NitroVerifier,
    nitro_measurement,
)
from enclave_agent.tee.quote import ROLE_PROVIDER, verify_quote
from enclave_devnet.attestation_service import AttestationService
from tests.support.nitro_documents import DocumentSigner

SAMPLES = Path(__file__).parent / "data" / "aws-nitro"
REGISTRY = "0x5FbDB2315678afecb367f032d93F642f64180aa3"
CHAIN_ID = 31337


def sample(name: str) -> bytes:
    data = (SAMPLES / name).read_bytes()
    return base64.b64decode(data.strip()) if name.endswith(".b64") else data


# file, module_id, timestamp (ms), PCR0 hex prefix, debug, (len user_data, len nonce, len public_key)
ACCEPTED = [
    (
        "base_2026-01-03_us-east-1.cose",
        "i-0368fa67e156d6d23-enc019b8596b1a9dad6",
        1767472867402,
        "4b8d4cf2a99e05ce",
        False,
        (20, None, None),
    ),
    (
        "evervault_2022-10-13_prod.cose",
        "i-020b6af9246d90e92-enc0183d09086c24190",
        1665651482136,
        "f4d48b81a460c991",
        False,
        (None, 256, None),
    ),
    (
        "evervault_2022-10-12_debug.cose",
        "i-03ad7cdb817437eeb-enc0183cc7569b3f6e1",
        1665582606081,
        "0" * 16,
        True,
        (13, None, 19),
    ),
    (
        "evervault_2023-09-18_debug.b64",
        "i-0918f6c55e3b61d89-enc018aa8b8e2285d13",
        1695049410860,
        "0" * 16,
        True,
        (91, 256, None),
    ),
    (
        "anchorage_2022-11-09_eu-west-1.cose",
        "i-04fd167167daacf3b-enc01845e97d0b3eb4e",
        1668034320696,
        "22f9e1c949208da5",
        False,
        (32, 32, None),
    ),
    (
        "anchorage_turnkey_2025-05-05.b64",
        "i-03e84b4579485e17c-enc01968c5a918a9a5f",
        1746487652119,
        "c853a6ace72694c9",
        False,
        (32, None, 130),
    ),
    (
        "eternis_2024-09-09_debug.b64",
        "i-0bbf1bfe232b8c2ce-enc0191ba35c9d1b77a",
        1725911352400,
        "0" * 16,
        True,
        (68, 20, 5),
    ),
]


def length(value: bytes | None) -> int | None:
    return None if value is None else len(value)


def test_root_pin_is_the_published_fingerprint() -> None:
    root = x509.load_pem_x509_certificate((SAMPLES / "aws_nitro_root_g1.pem").read_bytes())
    assert hashlib.sha256(root.public_bytes(serialization.Encoding.DER)).digest() == AWS_NITRO_ROOT_G1_SHA256


@pytest.mark.parametrize(("name", "module_id", "timestamp_ms", "pcr0", "debug", "sizes"), ACCEPTED)
def test_real_documents_verify_at_their_own_time(
    name: str, module_id: str, timestamp_ms: int, pcr0: str, debug: bool, sizes: tuple[int | None, ...]
) -> None:
    verifier: EvidenceVerifier = NitroVerifier()
    evidence = verifier.verify(sample(name))
    assert evidence.platform == "aws-nitro"
    assert evidence.identity == module_id
    assert evidence.timestamp == timestamp_ms // 1000
    assert evidence.platform_measurements["PCR0"].hex().startswith(pcr0)
    assert len(evidence.platform_measurements) == 16
    assert evidence.debug is debug
    assert (length(evidence.report_data), length(evidence.nonce), length(evidence.public_key)) == sizes
    pcrs = evidence.platform_measurements
    expected = hashlib.sha256(
        b"enclave-share/nitro-measurement/v1\0" + pcrs["PCR0"] + pcrs["PCR1"] + pcrs["PCR2"]
    ).digest()
    assert evidence.measurement == expected


def test_expected_values_of_one_document_in_full() -> None:
    evidence = NitroVerifier().verify(sample("anchorage_2022-11-09_eu-west-1.cose"))
    assert evidence.platform_measurements["PCR1"].hex() == (
        "bcdf05fefccaa8e55bf2c8d6dee9e79bbff31e34bf28a99aa19e6b29c37ee80b214a414b7607236edf26fcb78654e63f"
    )
    assert evidence.nonce == bytes.fromhex("c678c86135de539d183acff58886d98dfb9823041af9f934bf909ac0f8d96245")
    assert evidence.report_data == bytes.fromhex(
        "7c37108079b3e8a36d8a7970de1d6d4ff1461e0e35d9557c4d789df5e0576620"
    )
    assert evidence.platform_measurements["PCR3"] == bytes(48)


def test_bad_signature_is_refused() -> None:
    with pytest.raises(NitroDocumentError, match="COSE signature does not verify"):
        NitroVerifier().verify(sample("eternis_2024-07-23_bad-signature.b64"))


def test_malformed_document_is_refused() -> None:
    with pytest.raises(NitroDocumentError, match="not valid CBOR"):
        NitroVerifier().verify(sample("base_2026-01-03_as-published.b64"))
    good = sample("evervault_2022-10-13_prod.cose")
    with pytest.raises(NitroDocumentError, match="not valid CBOR"):
        NitroVerifier().verify(good[:-10])
    with pytest.raises(NitroDocumentError, match="over 16384"):
        NitroVerifier().verify(good * 4)
    with pytest.raises(NitroDocumentError, match="4-element COSE_Sign1"):
        NitroVerifier().verify(cbor2.dumps([1, 2, 3]))


def test_expired_chain_is_refused() -> None:
    # The base document's regional CA expired on 2026-01-20.
    with pytest.raises(NitroDocumentError, match=r"cabundle\[1\] .* is not valid at 2026-01-21"):
        NitroVerifier().verify(sample("base_2026-01-03_us-east-1.cose"), at=1768953600)
    # Leaf certificates live ~3 hours: four hours later only the leaf has expired.
    with pytest.raises(NitroDocumentError, match=r"leaf \(.*\) is not valid at 2022-10-13T12:58:02"):
        NitroVerifier().verify(sample("evervault_2022-10-13_prod.cose"), at=1665651482 + 4 * 3600)
    with pytest.raises(NitroDocumentError, match="is not valid at"):
        NitroVerifier().verify(sample("evervault_2022-10-13_prod.cose"), at=int(time.time()))


def test_other_root_is_refused() -> None:
    with pytest.raises(NitroDocumentError, match="not the pinned AWS Nitro root"):
        NitroVerifier(root_sha256=bytes(32)).verify(sample("evervault_2022-10-13_prod.cose"))


def _recode(data: bytes, **changes: object) -> bytes:
    """The document with payload fields replaced, keeping the original signature."""
    protected, unprotected, payload, signature = cbor2.loads(data)
    doc = cbor2.loads(payload)
    doc.update(changes)
    return cbor2.dumps([protected, unprotected, cbor2.dumps(doc), signature])


def test_tampered_payload_is_refused() -> None:
    data = sample("anchorage_2022-11-09_eu-west-1.cose")
    pcrs = cbor2.loads(cbor2.loads(data)[2])["pcrs"]
    with pytest.raises(NitroDocumentError, match="COSE signature does not verify"):
        NitroVerifier().verify(_recode(data, pcrs={**pcrs, 0: os.urandom(48)}))
    with pytest.raises(NitroDocumentError, match="COSE signature does not verify"):
        NitroVerifier().verify(_recode(data, user_data=b"\x00" * 32))


def test_leaf_from_another_document_is_refused() -> None:
    data = sample("anchorage_2022-11-09_eu-west-1.cose")
    other_leaf = cbor2.loads(cbor2.loads(sample("evervault_2022-10-13_prod.cose"))[2])["certificate"]
    with pytest.raises(NitroDocumentError, match="leaf .* is not issued by"):
        NitroVerifier().verify(_recode(data, certificate=other_leaf))


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"digest": "SHA256"}, "digest is 'SHA256'"),
        ({"module_id": ""}, "module_id is missing"),
        ({"timestamp": 0}, "timestamp"),
        ({"pcrs": {}}, "pcrs must be a map"),
        ({"user_data": b"x" * 513}, "user_data must be 0..512 bytes"),
        ({"cabundle": []}, "cabundle must be a non-empty list"),
    ],
)
def test_malformed_fields_are_named(changes: dict[str, object], message: str) -> None:
    with pytest.raises(NitroDocumentError, match=message):
        NitroVerifier().verify(_recode(sample("anchorage_2022-11-09_eu-west-1.cose"), **changes))


# ---------------------------------------------------------------------- evidence -> quote


@pytest.fixture(scope="module")
def signer_root() -> DocumentSigner:
    return DocumentSigner()


@pytest.fixture
def target() -> dict[str, object]:
    return {
        "role": ROLE_PROVIDER,
        "operator": to_checksum_address(os.urandom(20)),
        "enclave": to_checksum_address(os.urandom(20)),
        "x25519_key": os.urandom(32),
        "chain_id": CHAIN_ID,
        "registry": REGISTRY,
    }


def binding(target: dict[str, object]) -> bytes:
    return evidence_binding(
        enclave=target["enclave"],  # type: ignore[arg-type]
        x25519_key=target["x25519_key"],  # type: ignore[arg-type]
        chain_id=CHAIN_ID,
        registry=REGISTRY,
    )


def test_forged_chain_fails_the_aws_pin(signer_root: DocumentSigner) -> None:
    document = signer_root.document(pcr0=b"\x07" * 48, user_data=b"")
    with pytest.raises(NitroDocumentError, match="not the pinned AWS Nitro root"):
        NitroVerifier().verify(document)
    # Everything else about it is well formed: under its own root it verifies.
    assert NitroVerifier(root_sha256=signer_root.sha256).verify(document).debug is False


def test_leaf_that_claims_to_be_a_ca_is_refused() -> None:
    signer = DocumentSigner(leaf_ca=True)
    with pytest.raises(NitroDocumentError, match="leaf has the wrong CA flag"):
        NitroVerifier(root_sha256=signer.sha256).verify(signer.document(pcr0=b"\x07" * 48, user_data=b""))


def test_quote_from_bound_evidence(signer_root: DocumentSigner, target: dict[str, object]) -> None:
    service = AttestationService(new_secp256k1_key())
    verifier = NitroVerifier(root_sha256=signer_root.sha256)
    challenge = os.urandom(32)
    document = signer_root.document(pcr0=b"\x07" * 48, user_data=binding(target), nonce=challenge)
    quote, signature = service.issue_from_evidence(verifier, document, **target, expected_nonce=challenge)  # type: ignore[arg-type]
    expected = nitro_measurement({0: b"\x07" * 48, 1: b"\x01" * 48, 2: b"\x02" * 48})
    assert quote.measurement == expected
    assert (quote.enclave, quote.x25519_key) == (target["enclave"], target["x25519_key"])
    verify_quote(
        quote,
        signature,
        trusted_signers=[service.signer_address],
        approved_measurements=[expected],
        expected_measurement=expected,
        chain_id=CHAIN_ID,
        registry=REGISTRY,
        now=int(time.time()),
        expected_role=ROLE_PROVIDER,
    )
    with pytest.raises(AttestationError, match="nonce does not match the challenge"):
        service.issue_from_evidence(verifier, document, **target, expected_nonce=os.urandom(32))  # type: ignore[arg-type]


def test_evidence_for_another_enclave_is_refused(
    signer_root: DocumentSigner, target: dict[str, object]
) -> None:
    service = AttestationService(new_secp256k1_key())
    verifier = NitroVerifier(root_sha256=signer_root.sha256)
    document = signer_root.document(pcr0=b"\x07" * 48, user_data=binding(target))
    thief = {**target, "enclave": to_checksum_address(os.urandom(20))}
    with pytest.raises(AttestationError, match=f"does not bind enclave {thief['enclave']}"):
        service.issue_from_evidence(verifier, document, **thief)  # type: ignore[arg-type]
    other_key = {**target, "x25519_key": os.urandom(32)}
    with pytest.raises(AttestationError, match="does not bind"):
        service.issue_from_evidence(verifier, document, **other_key)  # type: ignore[arg-type]


def test_real_evidence_policy(target: dict[str, object]) -> None:
    service = AttestationService(new_secp256k1_key())
    debug_doc = sample("evervault_2022-10-12_debug.cose")
    with pytest.raises(AttestationError, match="debug-mode enclave"):
        service.issue_from_evidence(NitroVerifier(), debug_doc, **target, now=1665582606)  # type: ignore[arg-type]
    prod = sample("anchorage_2022-11-09_eu-west-1.cose")
    with pytest.raises(AttestationError, match=r"produced at 1668034320, not within 600s before now"):
        service.issue_from_evidence(NitroVerifier(), prod, **target)  # type: ignore[arg-type]
    # Fresh and production, but its user_data was made for someone else's protocol.
    with pytest.raises(AttestationError, match="report data does not bind enclave"):
        service.issue_from_evidence(NitroVerifier(), prod, **target, now=1668034400)  # type: ignore[arg-type]
