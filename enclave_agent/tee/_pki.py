"""X.509 and ECDSA helpers shared by the DCAP and SEV-SNP verifiers: small pure
functions over ``cryptography``, each raising the caller's own error class so that
every message names the verifier, the certificate and the failed check."""

from __future__ import annotations

import warnings
from datetime import UTC, datetime
from typing import Literal

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.utils import CryptographyDeprecationWarning

from enclave_agent.errors import AttestationError
from enclave_agent.tee._der import TAG_BIT_STRING, TAG_SEQUENCE, der_items, der_single


def utc(at: int) -> datetime:
    return datetime.fromtimestamp(at, UTC)


def name_of(cert: x509.Certificate) -> str:
    """The certificate's common name for messages (its subject is parsed lazily, so a
    tampered one may not parse: that must not escape as another exception)."""
    try:
        common_names = cert.subject.get_attributes_for_oid(x509.NameOID.COMMON_NAME)
        return str(common_names[0].value) if common_names else cert.subject.rfc4514_string()
    except ValueError:
        return "<unparsable subject>"


# What a malformed certificate raises from ``cryptography``, at load or at first use.
MALFORMED_CERTIFICATE = (
    ValueError,
    TypeError,
    x509.InvalidVersion,
    x509.DuplicateExtension,
    x509.UnsupportedGeneralNameType,
)


def parsed(cert: x509.Certificate) -> x509.Certificate:
    """``cert`` with every field the verifiers read parsed now: ``cryptography`` parses
    names, validity and extensions lazily, so a tampered field would otherwise fail
    later, in the middle of a check, as some other exception."""
    _ = (cert.subject.rfc4514_string(), cert.issuer.rfc4514_string(), cert.serial_number)
    _ = (cert.not_valid_before_utc, cert.not_valid_after_utc, list(cert.extensions))
    # The one part of a certificate no signature covers is its own signature's wrapper:
    # a BIT STRING whose unused-bits count cryptography ignores. Only 0 is DER.
    try:
        outer = der_single(cert.public_bytes(Encoding.DER), TAG_SEQUENCE, "certificate", AttestationError)
        items = der_items(outer, "certificate", AttestationError)
    except AttestationError as exc:
        raise ValueError(str(exc)) from None
    if len(items) != 3 or items[2][0] != TAG_BIT_STRING or items[2][1][:1] != b"\0":
        raise ValueError("the certificate's signature is not a BIT STRING without unused bits")
    return cert


def load_der_certificate(data: bytes, what: str, error: type[AttestationError]) -> x509.Certificate:
    """A DER certificate. AMD's VCEKs have serial number 0, which RFC 5280 forbids and
    ``cryptography`` still loads with a deprecation warning: that warning is expected."""
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings(
                "ignore", message="Parsed a serial number", category=CryptographyDeprecationWarning
            )
            return parsed(x509.load_der_x509_certificate(bytes(data)))
    except MALFORMED_CERTIFICATE as exc:
        raise error(f"{what} is not a DER X.509 certificate ({exc})") from None


def load_pem_chain(data: bytes, what: str, error: type[AttestationError]) -> list[x509.Certificate]:
    """The certificates of a PEM chain that must be exactly their canonical PEM
    encoding (optionally NUL-terminated): no byte of it goes unchecked."""
    text = bytes(data).rstrip(b"\0")
    try:
        certs = [parsed(cert) for cert in x509.load_pem_x509_certificates(text)]
    except MALFORMED_CERTIFICATE as exc:
        raise error(f"{what} is not a PEM certificate chain ({exc})") from None
    if b"".join(cert.public_bytes(Encoding.PEM) for cert in certs) != text:
        raise error(f"{what} holds bytes outside its certificates' canonical PEM encoding")
    return certs


def der_of(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(Encoding.DER)


def check_issued_by(
    child: x509.Certificate, issuer: x509.Certificate, what: str, error: type[AttestationError]
) -> None:
    """``child``'s issuer name is ``issuer``'s subject and its signature verifies."""
    try:
        child.verify_directly_issued_by(issuer)
    except (ValueError, TypeError, InvalidSignature, UnsupportedAlgorithm) as exc:
        raise error(
            f"{what} ({name_of(child)}) is not issued by {name_of(issuer)}: {exc or 'bad signature'}"
        ) from None


def check_valid_at(cert: x509.Certificate, at: int, what: str, error: type[AttestationError]) -> None:
    when = utc(at)
    if not cert.not_valid_before_utc <= when <= cert.not_valid_after_utc:
        raise error(
            f"{what} ({name_of(cert)}) is not valid at {when.isoformat()} (valid "
            f"{cert.not_valid_before_utc.isoformat()} .. {cert.not_valid_after_utc.isoformat()})"
        )


def check_crl(
    crl: x509.CertificateRevocationList,
    issuer: x509.Certificate,
    at: int,
    what: str,
    error: type[AttestationError],
) -> None:
    """``crl`` is signed by ``issuer`` and current at ``at``."""
    if crl.issuer != issuer.subject:
        raise error(f"{what} is issued by {crl.issuer.rfc4514_string()}, not {name_of(issuer)}")
    try:
        valid = crl.is_signature_valid(issuer.public_key())  # type: ignore[arg-type]
    except (TypeError, UnsupportedAlgorithm):
        valid = False
    if not valid:
        raise error(f"{what} signature does not verify with {name_of(issuer)}'s key")
    when = utc(at)
    next_update = crl.next_update_utc
    if not (crl.last_update_utc <= when and next_update is not None and when <= next_update):
        raise error(
            f"{what} is not current at {when.isoformat()} (this update {crl.last_update_utc.isoformat()}, "
            f"next update {next_update.isoformat() if next_update else 'none'})"
        )


def check_not_revoked(
    crl: x509.CertificateRevocationList, cert: x509.Certificate, what: str, error: type[AttestationError]
) -> None:
    revoked = crl.get_revoked_certificate_by_serial_number(cert.serial_number)
    if revoked is not None:
        raise error(
            f"{what} ({name_of(cert)}, serial {cert.serial_number:#x}) was revoked on "
            f"{revoked.revocation_date_utc.isoformat()}"
        )


def p256_key(xy: bytes, what: str, error: type[AttestationError]) -> ec.EllipticCurvePublicKey:
    """An uncompressed P-256 public key from its 64-byte x || y."""
    try:
        return ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), b"\x04" + bytes(xy))
    except ValueError:
        raise error(f"{what} is not a point on P-256") from None


def verify_raw_ecdsa(
    key: ec.EllipticCurvePublicKey,
    signature: bytes,
    message: bytes,
    algorithm: hashes.HashAlgorithm,
    *,
    byteorder: Literal["big", "little"] = "big",
) -> bool:
    """ECDSA over ``message`` with a raw r || s signature (two equal halves)."""
    half = len(signature) // 2
    r = int.from_bytes(signature[:half], byteorder)
    s = int.from_bytes(signature[half:], byteorder)
    if r == 0 or s == 0:
        return False
    try:
        key.verify(encode_dss_signature(r, s), bytes(message), ec.ECDSA(algorithm))
    except InvalidSignature:
        return False
    return True
