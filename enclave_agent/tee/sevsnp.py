"""AMD SEV-SNP attestation reports (report version 2 and 3; Milan and Genoa).

Verification, each step naming itself when it fails:

1. Parse the 1184-byte report (little-endian; AMD SEV-SNP ABI, ATTESTATION_REPORT).
   The signature algorithm must be 1 (ECDSA P-384 with SHA-384) and the unused
   bytes of the signature field zero, so no byte of a report goes unchecked.
2. Chain: an ARK pinned by the SHA-256 of its DER (self-signed), the ASK issued by
   it and the VCEK issued by the ASK, all RSASSA-PSS / SHA-384 (salt 48), each valid
   at the verification time; the VCEK's product is the ARK's family.
3. The VCEK is this chip's at this TCB: its hwID equals CHIP_ID and its SPL
   extensions equal REPORTED_TCB (bootloader, TEE, SNP, microcode).
4. The report's ECDSA P-384 signature over bytes 0..0x2A0 by the VCEK.

The VCEK and the ASK/ARK come as collateral (AMD's KDS serves them; the guest's
extended report carries them too). What stays trusted: the pinned ARKs, and that no
ASK or VCEK was revoked (AMD's CRLs are not checked: no sample CRL exists here).
Turin reports (another TCB layout) are refused until a sample exists.
"""

from __future__ import annotations

import hashlib
import logging
import struct
import time
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa

from enclave_agent.errors import AttestationError
from enclave_agent.tee._der import TAG_IA5STRING, TAG_INTEGER, der_single, der_uint
from enclave_agent.tee._pki import (
    MALFORMED_CERTIFICATE,
    check_valid_at,
    der_of,
    load_der_certificate,
    name_of,
    parsed,
    utc,
    verify_raw_ecdsa,
)
from enclave_agent.tee.evidence import VerifiedEvidence, evidence_hash

logger = logging.getLogger(__name__)

PLATFORM = "amd-sev-snp"
REPORT_SIZE = 0x4A0
SIGNED_SIZE = 0x2A0
POLICY_DEBUG = 1 << 19
# DER SHA-256 of AMD's self-signed ARKs (the KDS cert_chain of each product).
AMD_ARK_SHA256 = {
    "Milan": bytes.fromhex("69d063b45344d26a2e94e1f4210de49ef555308287d4c174445c95639a540bcd"),
    "Genoa": bytes.fromhex("4c6598d19c18719c5dfd4a7d335f674e5bfe1d8f800cea2cf270c10d103db2f1"),
    "Turin": bytes.fromhex("1f084161a44bb6d93778a904877d4819cafa5d05ef4193b2ded9dd9c73dd3f6a"),
}
_REPORT_FAMILIES = ("Milan", "Genoa")
_AMD_OID = "1.3.6.1.4.1.3704.1"
_SPL_OIDS = {"bootloader": ".3.1", "tee": ".3.2", "snp": ".3.3", "microcode": ".3.8"}
_MEASUREMENT_DOMAIN = b"enclave-share/snp-measurement/v1\0"


class SnpError(AttestationError):
    """AMD SEV-SNP evidence does not verify (root of the SNP errors)."""


class SnpReportFormatError(SnpError, ValueError):
    """An SNP report is malformed: wrong size, version, algorithm or padding."""


class SnpCertificateError(SnpError):
    """The ARK, ASK or VCEK is missing, untrusted, expired or not issued by its parent."""


class SnpTcbMismatchError(SnpError):
    """The VCEK is another chip's, or for another TCB than the report states."""


class SnpSignatureError(SnpError):
    """The report's signature does not verify with the VCEK."""


@dataclass(frozen=True)
class SnpReport:
    raw: bytes

    def _u32(self, offset: int) -> int:
        return int(struct.unpack_from("<I", self.raw, offset)[0])

    def _u64(self, offset: int) -> int:
        return int(struct.unpack_from("<Q", self.raw, offset)[0])

    @property
    def version(self) -> int:
        return self._u32(0x00)

    @property
    def guest_svn(self) -> int:
        return self._u32(0x04)

    @property
    def policy(self) -> int:
        return self._u64(0x08)

    @property
    def vmpl(self) -> int:
        return self._u32(0x30)

    @property
    def signature_algo(self) -> int:
        return self._u32(0x34)

    @property
    def platform_info(self) -> int:
        return self._u64(0x40)

    @property
    def family_id(self) -> bytes:
        return self.raw[0x10:0x20]

    @property
    def image_id(self) -> bytes:
        return self.raw[0x20:0x30]

    @property
    def report_data(self) -> bytes:
        return self.raw[0x50:0x90]

    @property
    def measurement(self) -> bytes:
        return self.raw[0x90:0xC0]

    @property
    def host_data(self) -> bytes:
        return self.raw[0xC0:0xE0]

    @property
    def id_key_digest(self) -> bytes:
        return self.raw[0xE0:0x110]

    @property
    def author_key_digest(self) -> bytes:
        return self.raw[0x110:0x140]

    @property
    def reported_tcb(self) -> bytes:
        return self.raw[0x180:0x188]

    @property
    def chip_id(self) -> bytes:
        return self.raw[0x1A0:0x1E0]

    @property
    def signature(self) -> bytes:
        """r || s, each 72 bytes little-endian."""
        return self.raw[0x2A0:0x330]

    @property
    def debug(self) -> bool:
        return bool(self.policy & POLICY_DEBUG)

    def tcb(self) -> dict[str, int]:
        """REPORTED_TCB of a Milan or Genoa chip: [0] bootloader, [1] TEE, [6] SNP, [7] microcode."""
        tcb = self.reported_tcb
        return {"bootloader": tcb[0], "tee": tcb[1], "snp": tcb[6], "microcode": tcb[7]}


def parse_report(data: bytes) -> SnpReport:
    """A raw report, or its hex text; ``SnpReportFormatError`` naming the problem."""
    data = bytes(data)
    if len(data) == 2 * REPORT_SIZE or (len(data) > 2 * REPORT_SIZE and not data[2 * REPORT_SIZE :].strip()):
        try:
            data = bytes.fromhex(data.decode("ascii").strip())
        except (UnicodeDecodeError, ValueError):
            raise SnpReportFormatError("SNP report text is not hex") from None
    if len(data) != REPORT_SIZE:
        raise SnpReportFormatError(f"SNP report is {len(data)} bytes, not {REPORT_SIZE}")
    report = SnpReport(data)
    if report.version not in (2, 3):
        raise SnpReportFormatError(f"SNP report version {report.version} is not supported (2 or 3)")
    if report.signature_algo != 1:
        raise SnpReportFormatError(
            f"SNP report signature algorithm {report.signature_algo}, expected 1 (P-384)"
        )
    if any(data[0x330:]):
        raise SnpReportFormatError("SNP report: the unused bytes of the signature field are not zero")
    return report


def snp_measurement(report: SnpReport) -> bytes:
    return hashlib.sha256(_MEASUREMENT_DOMAIN + report.measurement).digest()


def check_pss_issued_by(child: x509.Certificate, issuer: x509.Certificate, what: str) -> None:
    """``child`` names ``issuer`` and carries its RSASSA-PSS SHA-384 signature."""
    key = issuer.public_key()
    if child.issuer != issuer.subject or not isinstance(key, rsa.RSAPublicKey):
        raise SnpCertificateError(f"SNP {what} ({name_of(child)}) is not issued by {name_of(issuer)}")
    try:
        key.verify(
            child.signature,
            child.tbs_certificate_bytes,
            padding.PSS(mgf=padding.MGF1(hashes.SHA384()), salt_length=48),
            hashes.SHA384(),
        )
    except (InvalidSignature, UnsupportedAlgorithm, ValueError):
        raise SnpCertificateError(
            f"SNP {what} ({name_of(child)}) signature does not verify with {name_of(issuer)}'s key"
        ) from None


def _extension(cert: x509.Certificate, suffix: str) -> bytes:
    try:
        value = cert.extensions.get_extension_for_oid(x509.ObjectIdentifier(_AMD_OID + suffix)).value
    except x509.ExtensionNotFound:
        raise SnpTcbMismatchError(f"VCEK has no extension {_AMD_OID + suffix}") from None
    if not isinstance(value, x509.UnrecognizedExtension):
        raise SnpTcbMismatchError(f"VCEK extension {_AMD_OID + suffix} was decoded unexpectedly")
    return value.value


def vcek_identity(vcek: x509.Certificate) -> tuple[str, bytes, dict[str, int]]:
    """(productName, hwID, SPLs) of a VCEK."""
    product = der_single(_extension(vcek, ".2"), TAG_IA5STRING, "VCEK productName", SnpTcbMismatchError)
    hwid = _extension(vcek, ".4")  # the raw chip id (64 bytes Milan/Genoa, 8 Turin), not DER-wrapped
    spls = {
        name: der_uint(
            der_single(_extension(vcek, suffix), TAG_INTEGER, f"VCEK {name} SPL", SnpTcbMismatchError),
            f"VCEK {name} SPL",
            SnpTcbMismatchError,
        )
        for name, suffix in _SPL_OIDS.items()
    }
    return product.decode("ascii", "replace"), hwid, spls


def check_vcek_matches(vcek: x509.Certificate, report: SnpReport) -> str:
    """The VCEK is the report's chip's at the report's TCB; returns the product name."""
    product, hwid, spls = vcek_identity(vcek)
    if not any(report.chip_id):
        raise SnpTcbMismatchError("SNP report CHIP_ID is masked (zero): the VCEK cannot be tied to the chip")
    if hwid != report.chip_id:
        raise SnpTcbMismatchError(
            f"VCEK hwID {hwid.hex()[:16]}... is not the report's CHIP_ID {report.chip_id.hex()[:16]}..."
        )
    reported = report.tcb()
    if spls != reported:
        raise SnpTcbMismatchError(f"VCEK SPLs {spls} are not the report's REPORTED_TCB {reported}")
    return product


class SnpVerifier:
    """``EvidenceVerifier`` for AMD SEV-SNP reports against VCEK/ASK/ARK certificates."""

    platform = PLATFORM
    self_dated = False

    def __init__(
        self, certificates: list[x509.Certificate], *, ark_sha256: dict[str, bytes] | None = None
    ) -> None:
        self.certificates = list(certificates)
        self.ark_sha256 = dict(AMD_ARK_SHA256 if ark_sha256 is None else ark_sha256)

    @classmethod
    def from_paths(cls, paths: list[Path], *, ark_sha256: dict[str, bytes] | None = None) -> SnpVerifier:
        """Certificates from DER or PEM files (VCEKs, ``ask_ark_*.pem`` chains)."""
        certificates: list[x509.Certificate] = []
        for path in paths:
            data = Path(path).read_bytes()
            if b"-----BEGIN CERTIFICATE-----" in data:
                try:
                    certificates.extend(parsed(cert) for cert in x509.load_pem_x509_certificates(data))
                except MALFORMED_CERTIFICATE as exc:
                    raise SnpCertificateError(f"SNP certificates {path} do not parse ({exc})") from None
            else:
                certificates.append(
                    load_der_certificate(data, f"SNP certificate {path}", SnpCertificateError)
                )
        return cls(certificates, ark_sha256=ark_sha256)

    def verify(self, evidence: bytes, *, at: int | None = None) -> VerifiedEvidence:
        """Verify a report as of ``at`` (default now: a report carries no time of its own)."""
        report = parse_report(evidence)
        at = int(time.time()) if at is None else int(at)
        vcek, family = self._vcek_for(report, at)
        key = vcek.public_key()
        if not isinstance(key, ec.EllipticCurvePublicKey) or not isinstance(key.curve, ec.SECP384R1):
            raise SnpCertificateError("VCEK key is not ECDSA P-384")
        if not verify_raw_ecdsa(
            key, report.signature, report.raw[:SIGNED_SIZE], hashes.SHA384(), byteorder="little"
        ):
            raise SnpSignatureError("SNP report signature does not verify with the VCEK")
        verified = VerifiedEvidence(
            platform=PLATFORM,
            measurement=snp_measurement(report),
            platform_measurements={
                "MEASUREMENT": report.measurement,
                "HOST_DATA": report.host_data,
                "ID_KEY_DIGEST": report.id_key_digest,
                "AUTHOR_KEY_DIGEST": report.author_key_digest,
                "FAMILY_ID": report.family_id,
                "IMAGE_ID": report.image_id,
            },
            timestamp=None,
            debug=report.debug,
            report_data=report.report_data,
            nonce=report.report_data[32:],
            identity=f"{family} chip {report.chip_id.hex()[:16]}",
            evidence_hash=evidence_hash(report.raw),
            tcb=report.tcb(),
            verified_at=at,
            details={
                "report_version": report.version,
                "policy": f"{report.policy:#x}",
                "vmpl": report.vmpl,
                "guest_svn": report.guest_svn,
                "chip_id": report.chip_id.hex(),
                "verified_at": utc(at).isoformat(),
            },
        )
        logger.info(
            "SNP report verified: %s measurement=0x%s tcb=%s debug=%s",
            verified.identity,
            verified.measurement.hex(),
            verified.tcb,
            verified.debug,
        )
        return verified

    def _arks(self, at: int) -> dict[str, x509.Certificate]:
        arks = {}
        for cert in self.certificates:
            for family, digest in self.ark_sha256.items():
                if hashlib.sha256(der_of(cert)).digest() == digest:
                    check_pss_issued_by(cert, cert, f"ARK-{family}")
                    check_valid_at(cert, at, f"SNP ARK-{family}", SnpCertificateError)
                    arks[family] = cert
        if not arks:
            raise SnpCertificateError("no pinned AMD ARK among the SNP certificates")
        return arks

    def _vcek_for(self, report: SnpReport, at: int) -> tuple[x509.Certificate, str]:
        """The VCEK for this chip and TCB, chained through an ASK to a pinned ARK."""
        arks = self._arks(at)
        problems: list[str] = []
        for vcek in self.certificates:
            if name_of(vcek) != "SEV-VCEK":
                continue
            try:
                product = check_vcek_matches(vcek, report)
            except SnpTcbMismatchError as exc:
                problems.append(str(exc))
                continue
            family = product.split("-")[0]
            if family not in arks or family not in _REPORT_FAMILIES:
                raise SnpCertificateError(f"VCEK product {product!r} has no pinned ARK or report layout here")
            ark = arks[family]
            asks = [c for c in self.certificates if c.subject == vcek.issuer and c.issuer == ark.subject]
            if not asks:
                raise SnpCertificateError(
                    f"no ASK for {product} issued by ARK-{family} among the certificates"
                )
            ask = asks[0]
            check_pss_issued_by(ask, ark, "ASK")
            check_pss_issued_by(vcek, ask, "VCEK")
            for cert, what in ((ask, "ASK"), (vcek, "VCEK")):
                check_valid_at(cert, at, f"SNP {what}", SnpCertificateError)
            return vcek, family
        raise SnpTcbMismatchError(
            "no VCEK for this report's chip and TCB" + (f" ({'; '.join(problems)})" if problems else "")
        )
