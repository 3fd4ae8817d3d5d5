"""Intel DCAP quote verification (SGX v3 and v4, TDX v4 and v5), following Intel's
procedure step by step; each step names itself when it fails.

1. Parse the quote strictly (``dcap_quote``).
2. Quote signature: ECDSA P-256 / SHA-256 over header || body by the attestation key.
3. PCK chain: exactly [PCK leaf, PCK Platform or Processor CA, Intel SGX Root CA] in
   canonical PEM; the root pinned by the SHA-256 of its DER; each certificate issued
   by the next and valid at the verification time.
4. QE report signature by the PCK leaf key, and the QE's REPORTDATA binding the
   attestation key: SHA-256(attestation key || QE authentication data) || 32 zeros.
5. Revocation: the Root CA CRL and the PCK CA's CRL, each signed by its issuer and
   current, list neither the PCK CA nor the leaf.
6. Collateral: the TCB signing certificate chains to the pinned root, is current and
   not revoked; TCB Info (for the leaf's FMSPC and PCE id, ``SGX`` or ``TDX``) and QE
   Identity (``QE`` or ``TD_QE``) verify under it and are current.
7. TCB: QE identity and status, the platform's TCB level, the TDX module's identity
   and status, converged into one status (``dcap_tcb``). A revoked or unrecognised
   TCB is refused here; whether OutOfDate and the like are acceptable is policy.

The registry measurement is SHA-256 over a domain and MRENCLAVE || MRSIGNER (SGX) or
MRTD || RTMR0..3 (TDX). What stays trusted: the pinned Intel root, and that the
collateral given is Intel's latest (an older, still-current TCB Info cannot be told
from the newest one without asking Intel's PCS).
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Callable
from datetime import UTC, datetime

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec

from enclave_agent.tee._pki import (
    check_crl,
    check_issued_by,
    check_not_revoked,
    check_valid_at,
    der_of,
    load_pem_chain,
    name_of,
    p256_key,
    utc,
    verify_raw_ecdsa,
)
from enclave_agent.tee.dcap_collateral import Collateral, DcapCollateralError, SignedJson
from enclave_agent.tee.dcap_pck import DcapCertificateError, PckTcb, pck_tcb
from enclave_agent.tee.dcap_quote import DcapError, DcapQuote, EnclaveReport, TdReport, parse_quote
from enclave_agent.tee.dcap_tcb import (
    DcapTcbError,
    TcbResult,
    converge,
    platform_tcb,
    qe_identity_status,
    tdx_module_status,
)
from enclave_agent.tee.evidence import VerifiedEvidence, evidence_hash

logger = logging.getLogger(__name__)

PLATFORM = "intel-dcap"
# DER SHA-256 of Intel's "Intel SGX Root CA" (Intel_SGX_Provisioning_Certification_RootCA.cer).
INTEL_SGX_ROOT_CA_SHA256 = bytes.fromhex("44a0196b2b99f889b8e149e95b807a350e7424964399e885a7cbb8ccfab674d3")
TCB_SIGNING_CN = "Intel SGX TCB Signing"
_SGX_DOMAIN = b"enclave-share/sgx-measurement/v1\0"
_TDX_DOMAIN = b"enclave-share/tdx-measurement/v1\0"

__all__ = [
    "INTEL_SGX_ROOT_CA_SHA256",
    "DcapCertificateError",
    "DcapCollateralError",
    "DcapError",
    "DcapSignatureError",
    "DcapTcbError",
    "DcapVerifier",
    "sgx_measurement",
    "tdx_measurement",
]


class DcapSignatureError(DcapError):
    """A quote, QE report or collateral signature does not verify, or the QE report
    does not bind the attestation key."""


def sgx_measurement(report: EnclaveReport) -> bytes:
    return hashlib.sha256(_SGX_DOMAIN + report.mrenclave + report.mrsigner).digest()


def tdx_measurement(report: TdReport) -> bytes:
    return hashlib.sha256(_TDX_DOMAIN + report.mrtd + b"".join(report.rtmr(i) for i in range(4))).digest()


def check_quote_signatures(quote: DcapQuote, leaf: x509.Certificate) -> None:
    """Steps 2 and 4: the quote, the QE report and the attestation-key binding."""
    key = p256_key(quote.attestation_key, "DCAP quote attestation key", DcapSignatureError)
    if not verify_raw_ecdsa(key, quote.signature, quote.signed, hashes.SHA256()):
        raise DcapSignatureError("DCAP quote signature does not verify with its attestation key")
    pck_key = leaf.public_key()
    if not isinstance(pck_key, ec.EllipticCurvePublicKey) or not isinstance(pck_key.curve, ec.SECP256R1):
        raise DcapSignatureError("DCAP PCK leaf key is not ECDSA P-256")
    if not verify_raw_ecdsa(pck_key, quote.qe_report_signature, quote.qe_report.raw, hashes.SHA256()):
        raise DcapSignatureError("DCAP QE report signature does not verify with the PCK leaf key")
    expected = hashlib.sha256(quote.attestation_key + quote.qe_auth_data).digest() + bytes(32)
    if quote.qe_report.report_data != expected:
        raise DcapSignatureError("DCAP QE report data does not bind the attestation key")


def _newest_crl(collateral: Collateral, issuer: x509.Certificate, at: int) -> x509.CertificateRevocationList:
    failures = []
    for crl, source in sorted(collateral.crls, key=lambda item: item[0].last_update_utc, reverse=True):
        if crl.issuer != issuer.subject:
            continue
        try:
            check_crl(crl, issuer, at, f"CRL {source}", DcapCollateralError)
        except DcapCollateralError as exc:
            failures.append(str(exc))
            continue
        return crl
    raise DcapCollateralError(
        f"no current CRL of {name_of(issuer)} in the collateral"
        + (f" ({'; '.join(failures)})" if failures else "")
    )


class DcapVerifier:
    """``EvidenceVerifier`` for Intel SGX and TDX DCAP quotes against ``collateral``."""

    platform = PLATFORM
    self_dated = False

    def __init__(self, collateral: Collateral, *, root_sha256: bytes = INTEL_SGX_ROOT_CA_SHA256) -> None:
        self.collateral = collateral
        self.root_sha256 = root_sha256

    def verify(self, evidence: bytes, *, at: int | None = None) -> VerifiedEvidence:
        """Verify a quote as of ``at`` (default now: a quote carries no time of its own)."""
        quote = parse_quote(evidence)
        at = int(time.time()) if at is None else int(at)
        leaf, ca, root = self._pck_chain(quote, at)
        check_quote_signatures(quote, leaf)
        root_crl = _newest_crl(self.collateral, root, at)
        check_not_revoked(root_crl, ca, "DCAP PCK CA", DcapCertificateError)
        check_not_revoked(_newest_crl(self.collateral, ca, at), leaf, "DCAP PCK leaf", DcapCertificateError)
        signing = self._tcb_signing(root, root_crl, at)
        pck = pck_tcb(leaf)
        tee = "TDX" if quote.is_tdx else "SGX"
        tcb_info = self._signed(
            "tcbInfo", signing, at, f"{tee} TCB Info for FMSPC {pck.fmspc.hex()}", _tcb_info_for(tee, pck)
        )
        qe_id = "TD_QE" if quote.is_tdx else "QE"
        identity = self._signed(
            "enclaveIdentity", signing, at, f"{qe_id} Identity", lambda body: body.get("id") == qe_id
        )
        qe_status = qe_identity_status(identity.body, quote.qe_report, qe_id)
        body = quote.body
        tee_svn = body.tee_tcb_svn if isinstance(body, TdReport) else None
        platform = platform_tcb(tcb_info.body, pck, tee_svn, quote_version=quote.version)
        statuses: dict[str, TcbResult] = {"platform": platform, "qe": qe_status}
        if isinstance(body, TdReport):
            statuses["tdx_module"] = tdx_module_status(tcb_info.body, body)
        final = converge(platform, [s for name, s in statuses.items() if name != "platform"])
        if final.status == "Revoked":
            raise DcapTcbError(f"DCAP TCB status is Revoked ({', '.join(final.advisories) or 'no advisory'})")
        verified = _verified(quote, evidence, pck, final, statuses, (tcb_info, identity), at)
        logger.info(
            "DCAP quote verified: %s FMSPC=%s measurement=0x%s tcb=%s debug=%s",
            verified.platform,
            pck.fmspc.hex(),
            verified.measurement.hex(),
            final.status,
            verified.debug,
        )
        return verified

    def _pck_chain(
        self, quote: DcapQuote, at: int
    ) -> tuple[x509.Certificate, x509.Certificate, x509.Certificate]:
        chain = load_pem_chain(quote.pck_chain_pem, "DCAP PCK chain", DcapCertificateError)
        if len(chain) != 3:
            raise DcapCertificateError(f"DCAP PCK chain has {len(chain)} certificates, expected 3")
        leaf, ca, root = chain
        digest = hashlib.sha256(der_of(root)).digest()
        if digest != self.root_sha256:
            raise DcapCertificateError(
                f"DCAP PCK chain root is not the pinned Intel SGX Root CA (SHA-256 {digest.hex()})"
            )
        for child, issuer, what in ((root, root, "root"), (ca, root, "PCK CA"), (leaf, ca, "PCK leaf")):
            check_issued_by(child, issuer, f"DCAP {what}", DcapCertificateError)
            check_valid_at(child, at, f"DCAP {what}", DcapCertificateError)
        return leaf, ca, root

    def _tcb_signing(
        self, root: x509.Certificate, root_crl: x509.CertificateRevocationList, at: int
    ) -> list[x509.Certificate]:
        signers: list[x509.Certificate] = []
        problems: list[str] = []
        for cert, source in self.collateral.certificates:
            if name_of(cert) != TCB_SIGNING_CN:
                continue
            try:
                check_issued_by(cert, root, f"TCB signing certificate {source}", DcapCollateralError)
                check_valid_at(cert, at, f"TCB signing certificate {source}", DcapCollateralError)
                check_not_revoked(root_crl, cert, "TCB signing certificate", DcapCollateralError)
            except DcapCollateralError as exc:
                problems.append(str(exc))
                continue
            if all(der_of(cert) != der_of(s) for s in signers):
                signers.append(cert)
        if not signers:
            raise DcapCollateralError(
                "no valid Intel SGX TCB Signing certificate in the collateral"
                + (f" ({'; '.join(problems)})" if problems else "")
            )
        return signers

    def _signed(
        self,
        kind: str,
        signers: list[x509.Certificate],
        at: int,
        what: str,
        wanted: Callable[[dict[str, object]], bool],
    ) -> SignedJson:
        """The newest current ``kind`` document that ``wanted`` accepts and a TCB signer signed."""
        when = datetime.fromtimestamp(at, UTC)
        candidates = [doc for doc in self.collateral.documents if doc.kind == kind and wanted(doc.body)]
        if not candidates:
            raise DcapCollateralError(f"no {what} in the collateral")
        current = sorted(
            (doc for doc in candidates if doc.issue_date <= when <= doc.next_update),
            key=lambda doc: doc.issue_date,
            reverse=True,
        )
        if not current:
            windows = ", ".join(
                f"{d.issue_date.isoformat()}..{d.next_update.isoformat()}" for d in candidates
            )
            raise DcapCollateralError(f"no {what} is current at {utc(at).isoformat()} (have {windows})")
        for doc in current:
            for signer in signers:
                key = signer.public_key()
                if isinstance(key, ec.EllipticCurvePublicKey) and verify_raw_ecdsa(
                    key, doc.signature, doc.signed, hashes.SHA256()
                ):
                    return doc
        raise DcapSignatureError(
            f"{what} signature does not verify with the Intel TCB signing key ({current[0].source})"
        )


def _tcb_info_for(tee: str, pck: PckTcb) -> Callable[[dict[str, object]], bool]:
    def wanted(body: dict[str, object]) -> bool:
        # TCB Info v2 has no id: it is always SGX.
        return (
            str(body.get("id", "SGX")) == tee
            and str(body.get("fmspc", "")).lower() == pck.fmspc.hex()
            and str(body.get("pceId", "")).lower() == pck.pce_id.hex()
            and (tee == "SGX" or int(str(body.get("version", 0))) >= 3)
        )

    return wanted


def _verified(
    quote: DcapQuote,
    evidence: bytes,
    pck: PckTcb,
    final: TcbResult,
    statuses: dict[str, TcbResult],
    documents: tuple[SignedJson, SignedJson],
    at: int,
) -> VerifiedEvidence:
    body = quote.body
    measurements: dict[str, bytes]
    if isinstance(body, TdReport):
        platform, measurement = "intel-tdx", tdx_measurement(body)
        measurements = {"MRTD": body.mrtd, **{f"RTMR{i}": body.rtmr(i) for i in range(4)}}
        measurements |= {
            "MRSEAM": body.mrseam,
            "MRCONFIGID": body.mrconfigid,
            "MROWNER": body.mrowner,
            "MROWNERCONFIG": body.mrownerconfig,
            "TDATTRIBUTES": body.td_attributes,
            "XFAM": body.xfam,
        }
        if body.mrservicetd is not None:
            measurements["MRSERVICETD"] = body.mrservicetd
        extra: dict[str, object] = {"tee_tcb_svn": body.tee_tcb_svn.hex()}
    else:
        platform, measurement = "intel-sgx", sgx_measurement(body)
        measurements = {"MRENCLAVE": body.mrenclave, "MRSIGNER": body.mrsigner, "ATTRIBUTES": body.attributes}
        extra = {"isvprodid": body.isvprodid, "isvsvn": body.isvsvn}
    tcb_info, identity = documents
    return VerifiedEvidence(
        platform=platform,
        measurement=measurement,
        platform_measurements=measurements,
        timestamp=None,
        debug=body.debug,
        report_data=body.report_data,
        nonce=body.report_data[32:],
        identity=f"FMSPC {pck.fmspc.hex()}",
        evidence_hash=evidence_hash(evidence),
        tcb_status=final.status,
        advisories=final.advisories,
        verified_at=at,
        details={
            "quote_version": quote.version,
            "fmspc": pck.fmspc.hex(),
            "tcb_date": final.date,
            **{f"{name}_status": result.status for name, result in statuses.items()},
            "tcb_info": f"{tcb_info.source} (issued {tcb_info.body.get('issueDate')})",
            "qe_identity": f"{identity.source} (issued {identity.body.get('issueDate')})",
            "verified_at": utc(at).isoformat(),
            **extra,
        },
    )
