"""AWS Nitro Enclaves attestation documents (COSE_Sign1 over CBOR, ES384).

Verification follows AWS's procedure: decode, check the document's fields, pin the
AWS Nitro Root-G1 by its SHA-256, check the certificate chain (each certificate
issued by the previous one and valid at the verification time), then the COSE
signature with the leaf key. The verification time defaults to the document's own
timestamp: leaf certificates live about three hours, so freshness is a separate
policy check (``issue_from_evidence`` of the simulated attestation service in
``enclave_devnet``, or the evidence verifier service), not a chain check.
CRLs are not checked (AWS's own flow does not either).

The registry's 32-byte measurement for a Nitro enclave is ``nitro_measurement``:
SHA-256 over PCR0 || PCR1 || PCR2 (enclave image, kernel, application).
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Any

import cbor2
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature
from cryptography.x509 import (
    BasicConstraints,
    Certificate,
    ExtensionNotFound,
    load_der_x509_certificate,
)

from enclave_agent.errors import AttestationError
from enclave_agent.tee._pki import MALFORMED_CERTIFICATE, name_of, parsed
from enclave_agent.tee.evidence import VerifiedEvidence, evidence_hash

logger = logging.getLogger(__name__)

PLATFORM = "aws-nitro"
# DER SHA-256 of the AWS Nitro Enclaves Root-G1 certificate, as AWS publishes it.
AWS_NITRO_ROOT_G1_SHA256 = bytes.fromhex("641a0321a3e244efe456463195d606317ed7cdcc3c1756e09893f3c68f79bb5b")
MAX_DOCUMENT_SIZE = 16 * 1024  # real documents are ~4.5 KB; bounds the CBOR decoder's work
_ES384_HEADER = {1: -35}
_COSE_SIGN1_TAG = 18
_MEASUREMENT_DOMAIN = b"enclave-share/nitro-measurement/v1\0"


# 10000-01-01T00:00:00Z in milliseconds: later timestamps are not dates Python can hold.
MAX_TIMESTAMP_MS = 253_402_300_800_000


class NitroDocumentError(AttestationError):
    """A Nitro attestation document is malformed or fails a verification step."""


def nitro_measurement(pcrs: Mapping[int, bytes]) -> bytes:
    """The registry measurement of a Nitro enclave image: SHA-256 over PCR0..2."""
    return hashlib.sha256(_MEASUREMENT_DOMAIN + pcrs[0] + pcrs[1] + pcrs[2]).digest()


def _decode(data: bytes, what: str) -> Any:
    try:
        return cbor2.loads(data)
    except (cbor2.CBORError, ValueError, EOFError, RecursionError) as exc:
        raise NitroDocumentError(f"Nitro attestation document: {what} is not valid CBOR ({exc})") from None


def _split_cose(data: bytes) -> tuple[bytes, bytes, bytes]:
    """(protected header bytes, payload, signature) of a COSE_Sign1 structure."""
    if len(data) > MAX_DOCUMENT_SIZE:
        raise NitroDocumentError(f"Nitro attestation document is {len(data)} bytes, over {MAX_DOCUMENT_SIZE}")
    cose = _decode(data, "COSE_Sign1")
    if isinstance(cose, cbor2.CBORTag) and cose.tag == _COSE_SIGN1_TAG:
        cose = cose.value
    if not (isinstance(cose, list) and len(cose) == 4):
        raise NitroDocumentError("Nitro attestation document is not a 4-element COSE_Sign1 array")
    protected, unprotected, payload, signature = cose
    if not (isinstance(protected, bytes) and isinstance(payload, bytes) and isinstance(signature, bytes)):
        raise NitroDocumentError("Nitro attestation document: COSE_Sign1 members have the wrong types")
    if not isinstance(unprotected, dict):
        raise NitroDocumentError("Nitro attestation document: unprotected header is not a map")
    if _decode(protected, "protected header") != _ES384_HEADER:
        raise NitroDocumentError("Nitro attestation document: protected header is not {alg: ES384}")
    if len(signature) != 96:
        raise NitroDocumentError(
            f"Nitro attestation document: ES384 signature is {len(signature)} bytes, not 96"
        )
    return protected, payload, signature


def _optional_bytes(doc: Mapping[str, Any], key: str, low: int, high: int) -> bytes | None:
    value = doc.get(key)
    if value is None:
        return None
    if not isinstance(value, bytes) or not low <= len(value) <= high:
        raise NitroDocumentError(f"Nitro attestation document: {key} must be {low}..{high} bytes or null")
    return value


def _check_payload(doc: Any) -> dict[str, Any]:
    """The document fields, type- and size-checked as in AWS's procedure (section 3.2)."""
    if not isinstance(doc, dict):
        raise NitroDocumentError("Nitro attestation document: payload is not a map")
    module_id, digest, timestamp = doc.get("module_id"), doc.get("digest"), doc.get("timestamp")
    if not isinstance(module_id, str) or not module_id:
        raise NitroDocumentError("Nitro attestation document: module_id is missing or empty")
    if digest != "SHA384":
        raise NitroDocumentError(f"Nitro attestation document: digest is {digest!r}, expected 'SHA384'")
    if isinstance(timestamp, bool) or not isinstance(timestamp, int) or not 0 < timestamp < MAX_TIMESTAMP_MS:
        raise NitroDocumentError(
            "Nitro attestation document: timestamp is missing or outside 1970..9999 (milliseconds)"
        )
    pcrs = doc.get("pcrs")
    if not isinstance(pcrs, dict) or not 1 <= len(pcrs) <= 32:
        raise NitroDocumentError("Nitro attestation document: pcrs must be a map of 1..32 entries")
    for index, value in pcrs.items():
        if not (
            isinstance(index, int)
            and 0 <= index < 32
            and isinstance(value, bytes)
            and len(value) in (32, 48, 64)
        ):
            raise NitroDocumentError(f"Nitro attestation document: PCR entry {index!r} is malformed")
    if any(i not in pcrs for i in (0, 1, 2)):
        raise NitroDocumentError("Nitro attestation document: PCR0, PCR1 and PCR2 are required")
    certificate, cabundle = doc.get("certificate"), doc.get("cabundle")
    if not isinstance(certificate, bytes) or not 1 <= len(certificate) <= 1024:
        raise NitroDocumentError("Nitro attestation document: certificate must be 1..1024 bytes")
    if (
        not isinstance(cabundle, list)
        or not cabundle
        or not all(isinstance(c, bytes) and 1 <= len(c) <= 1024 for c in cabundle)
    ):
        raise NitroDocumentError(
            "Nitro attestation document: cabundle must be a non-empty list of 1..1024-byte certs"
        )
    return {
        "module_id": module_id,
        "timestamp": timestamp,
        "pcrs": dict(pcrs),
        "certificate": certificate,
        "cabundle": list(cabundle),
        "public_key": _optional_bytes(doc, "public_key", 1, 1024),
        "user_data": _optional_bytes(doc, "user_data", 0, 512),
        "nonce": _optional_bytes(doc, "nonce", 0, 512),
    }


def _is_ca(cert: Certificate) -> bool:
    try:
        return bool(cert.extensions.get_extension_for_class(BasicConstraints).value.ca)
    except ExtensionNotFound:
        return False


def _check_chain(
    cabundle: list[bytes], leaf_der: bytes, roots_sha256: frozenset[bytes], at: datetime
) -> Certificate:
    """Pin the root, walk root -> leaf, check validity at ``at``; return the leaf."""
    if hashlib.sha256(cabundle[0]).digest() not in roots_sha256:
        raise NitroDocumentError(
            "Nitro attestation document: cabundle[0] is not the pinned AWS Nitro root "
            f"(SHA-256 {hashlib.sha256(cabundle[0]).hexdigest()})"
        )
    try:
        chain = [parsed(load_der_x509_certificate(der)) for der in [*cabundle, leaf_der]]
    except MALFORMED_CERTIFICATE as exc:
        raise NitroDocumentError(
            f"Nitro attestation document: a certificate does not parse ({exc})"
        ) from None
    for position, cert in enumerate(chain):
        name = "leaf" if position == len(chain) - 1 else f"cabundle[{position}]"
        if position > 0:
            try:
                cert.verify_directly_issued_by(chain[position - 1])
            except (ValueError, TypeError, InvalidSignature):
                raise NitroDocumentError(
                    f"Nitro attestation document: {name} ({name_of(cert)}) "
                    "is not issued by the certificate before it"
                ) from None
        if not cert.not_valid_before_utc <= at <= cert.not_valid_after_utc:
            raise NitroDocumentError(
                f"Nitro attestation document: {name} ({name_of(cert)}) is not valid at "
                f"{at.isoformat()} (valid {cert.not_valid_before_utc.isoformat()} .. "
                f"{cert.not_valid_after_utc.isoformat()})"
            )
        if _is_ca(cert) != (name != "leaf"):
            raise NitroDocumentError(f"Nitro attestation document: {name} has the wrong CA flag")
    return chain[-1]


def _check_signature(leaf: Certificate, protected: bytes, payload: bytes, signature: bytes) -> None:
    key = leaf.public_key()
    if not isinstance(key, ec.EllipticCurvePublicKey) or not isinstance(key.curve, ec.SECP384R1):
        raise NitroDocumentError("Nitro attestation document: leaf key is not ECDSA P-384")
    # COSE Sig_structure over the original protected bytes (never re-encoded).
    to_be_signed = cbor2.dumps(["Signature1", protected, b"", payload])
    der = encode_dss_signature(int.from_bytes(signature[:48], "big"), int.from_bytes(signature[48:], "big"))
    try:
        key.verify(der, to_be_signed, ec.ECDSA(hashes.SHA384()))
    except InvalidSignature:
        raise NitroDocumentError("Nitro attestation document: COSE signature does not verify") from None


class NitroVerifier:
    """``EvidenceVerifier`` for AWS Nitro Enclaves attestation documents."""

    platform = PLATFORM
    self_dated = True

    def __init__(
        self, *, root_sha256: bytes = AWS_NITRO_ROOT_G1_SHA256, also_trust: Iterable[bytes] = ()
    ) -> None:
        """Pin ``root_sha256`` (default AWS's), and any ``also_trust`` roots (a test CA
        alongside AWS's, in tests of a mixed consortium)."""
        self.root_sha256 = root_sha256
        self.roots_sha256 = frozenset({bytes(root_sha256), *(bytes(r) for r in also_trust)})

    def verify(self, evidence: bytes, *, at: int | None = None) -> VerifiedEvidence:
        protected, payload, signature = _split_cose(bytes(evidence))
        doc = _check_payload(_decode(payload, "payload"))
        when = datetime.fromtimestamp(doc["timestamp"] / 1000 if at is None else at, UTC)
        leaf = _check_chain(doc["cabundle"], doc["certificate"], self.roots_sha256, when)
        _check_signature(leaf, protected, payload, signature)
        pcrs: dict[int, bytes] = doc["pcrs"]
        # AWS zeroes PCR0..2 (the image measurements) for enclaves in debug mode.
        debug = not any(pcrs[0])
        verified = VerifiedEvidence(
            platform=PLATFORM,
            measurement=nitro_measurement(pcrs),
            platform_measurements={f"PCR{i}": pcrs[i] for i in sorted(pcrs)},
            timestamp=doc["timestamp"] // 1000,
            debug=debug,
            report_data=doc["user_data"],
            nonce=doc["nonce"],
            public_key=doc["public_key"],
            identity=doc["module_id"],
            details={"timestamp_ms": doc["timestamp"], "verified_at": when.isoformat()},
            evidence_hash=evidence_hash(evidence),
            verified_at=int(when.timestamp()),
        )
        logger.info(
            "Nitro attestation document verified: module=%s measurement=0x%s debug=%s",
            verified.identity,
            verified.measurement.hex(),
            debug,
        )
        return verified
