"""Verify any supported evidence file and judge it: the engine of ``enclave-agent
verify-evidence``.

An evidence file is either raw evidence (a Nitro COSE document, binary or base64; a
DCAP quote or an SNP report, binary or hex), whose type ``detect_type`` recognises,
or an evidence bundle: JSON ``{"type": ..., "evidence": "<base64>", "claims":
{"enclave", "x25519Key", "chainId", "registry"}, "challenge": "0x<32 bytes>"}``, which
is what a hardware backend produces (``enclave_agent.tee.hardware``) and what names
the keys the evidence is meant to bind.
"""

from __future__ import annotations

import base64
import binascii
import json
import struct
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from enclave_agent.errors import AttestationError, ConfigError
from enclave_agent.tee.binding import BindingClaims, BindingError, split_report_data
from enclave_agent.tee.evidence import EvidenceVerifier, VerifiedEvidence
from enclave_agent.tee.policy import Policy, Refusal, Verdict

TYPES = ("aws-nitro", "intel-sgx", "intel-tdx", "amd-sev-snp")
MAX_EVIDENCE_FILE = 256 * 1024


@dataclass(frozen=True)
class EvidenceFile:
    evidence_type: str
    evidence: bytes
    claims: BindingClaims | None = None
    challenge: bytes | None = None


def _text_bytes(data: bytes) -> bytes | None:
    """``data`` decoded from hex or base64 text, or None if it is not such text."""
    try:
        text = data.decode("ascii").strip()
    except UnicodeDecodeError:
        return None
    if not text:
        return None
    try:
        return bytes.fromhex(text)
    except ValueError:
        pass
    try:
        return base64.b64decode("".join(text.split()), validate=True)
    except (binascii.Error, ValueError):
        return None


def _raw_type(data: bytes) -> str | None:
    if data[:1] in (b"\x84", b"\xd2"):  # CBOR array of 4, or tag 18 (COSE_Sign1)
        return "aws-nitro"
    if len(data) >= 8:
        version, key_type, tee = struct.unpack_from("<HHI", data)
        if version in (3, 4, 5) and key_type == 2 and tee in (0, 0x81):
            return "intel-tdx" if tee == 0x81 else "intel-sgx"
    if len(data) == 0x4A0 and struct.unpack_from("<I", data)[0] in (2, 3):
        return "amd-sev-snp"
    return None


def detect_type(data: bytes) -> tuple[str, bytes]:
    """(evidence type, raw bytes) of raw evidence, decoding hex or base64 text."""
    for candidate in (bytes(data), _text_bytes(bytes(data))):
        if candidate:
            found = _raw_type(candidate)
            if found is not None:
                return found, candidate
    raise ConfigError(
        "cannot tell the evidence type: give --type (aws-nitro, intel-sgx, intel-tdx, amd-sev-snp)"
    )


def _bundle(parsed: dict[str, Any], source: str) -> EvidenceFile:
    evidence_type = parsed.get("type")
    if evidence_type not in TYPES:
        raise ConfigError(f"{source}: type: expected one of {', '.join(TYPES)}")
    try:
        evidence = base64.b64decode(str(parsed.get("evidence", "")), validate=True)
    except (binascii.Error, ValueError):
        evidence = b""
    if not evidence:
        raise ConfigError(f"{source}: evidence: expected base64 evidence bytes")
    claims = None
    if parsed.get("claims") is not None:
        try:
            claims = BindingClaims.from_json(parsed["claims"])
        except BindingError as exc:
            raise ConfigError(f"{source}: claims: {exc}") from None
    return EvidenceFile(
        evidence_type, evidence, claims, parse_challenge(parsed.get("challenge"), f"{source}: challenge")
    )


def parse_challenge(value: Any, what: str) -> bytes | None:
    return None if value is None else hex32(value, what)


def hex32(value: object, what: str) -> bytes:
    """32 bytes from hex text (optionally 0x-prefixed): a challenge or a pinned SHA-256;
    ``ConfigError`` naming ``what`` and the value otherwise."""
    try:
        raw = bytes.fromhex(str(value).removeprefix("0x"))
    except ValueError:
        raw = b""
    if len(raw) != 32:
        raise ConfigError(f"{what}: expected 32 bytes of hex, got {value!r}")
    return raw


def read_evidence_file(path: Path, evidence_type: str = "auto") -> EvidenceFile:
    """An evidence file or bundle (see module doc); ``ConfigError`` naming the file."""
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read evidence: {exc.strerror}") from None
    if len(data) > MAX_EVIDENCE_FILE:
        raise ConfigError(f"{path}: {len(data)} bytes, over {MAX_EVIDENCE_FILE}")
    if data.lstrip().startswith(b"{"):
        try:
            parsed = json.loads(data)
        except ValueError as exc:
            raise ConfigError(f"{path}: not a JSON evidence bundle ({exc})") from None
        bundle = _bundle(parsed, str(path))
        if evidence_type not in ("auto", bundle.evidence_type):
            raise ConfigError(
                f"{path}: the bundle holds {bundle.evidence_type} evidence, not {evidence_type}"
            )
        return bundle
    if evidence_type == "auto":
        return EvidenceFile(*detect_type(data))
    if evidence_type not in TYPES:
        raise ConfigError(f"--type: expected auto or one of {', '.join(TYPES)}")
    raw = data if _raw_type(data) else (_text_bytes(data) or data)
    return EvidenceFile(evidence_type, raw)


def verifier_for(evidence_type: str, collateral: Path | None) -> EvidenceVerifier:
    """The verifier of ``evidence_type``, with collateral from ``collateral`` (DCAP:
    TCB Info, QE Identity, CRLs, TCB signing certificate; SNP: VCEK, ASK and ARK)."""
    if evidence_type == "aws-nitro":
        from enclave_agent.tee.nitro import NitroVerifier

        return NitroVerifier()
    if collateral is None:
        raise ConfigError(f"{evidence_type} evidence needs --collateral DIR")
    if evidence_type in ("intel-sgx", "intel-tdx"):
        return dcap_verifier(collateral, "--collateral")
    return snp_verifier(collateral, "--collateral")


def _collateral_dir(directory: Path, what: str) -> Path:
    if not Path(directory).is_dir():
        raise ConfigError(f"{what}: {directory} is not a directory")
    return Path(directory)


def dcap_verifier(directory: Path, what: str) -> EvidenceVerifier:
    """A DCAP verifier (SGX and TDX quotes) over every collateral file under ``directory``."""
    from enclave_agent.tee.dcap import DcapVerifier
    from enclave_agent.tee.dcap_collateral import Collateral

    return DcapVerifier(Collateral.from_dir(_collateral_dir(directory, what)))


def snp_verifier(
    directory: Path, what: str, ark_sha256: Mapping[str, bytes] | None = None
) -> EvidenceVerifier:
    """An SNP verifier over every certificate file under ``directory`` (VCEKs, AMD's
    ASK/ARK chains), pinning ``ark_sha256`` per product family (default AMD's ARKs)."""
    from enclave_agent.tee.sevsnp import SnpVerifier

    root = _collateral_dir(directory, what)
    files = sorted(p for p in root.rglob("*") if p.suffix in (".der", ".pem", ".crt", ".cer"))
    if not files:
        raise ConfigError(f"{what}: {directory} holds no certificate (.der, .pem, .crt, .cer)")
    return SnpVerifier.from_paths(files, ark_sha256=None if ark_sha256 is None else dict(ark_sha256))


def verified_json(verified: VerifiedEvidence, claims: BindingClaims | None) -> dict[str, object]:
    """What the verifier vouches for, as JSON (hex strings, ``0x``-prefixed)."""
    try:
        binding, challenge = split_report_data(verified.report_data)
    except BindingError:
        binding, challenge = None, None
    return {
        "type": verified.platform,
        "measurement": "0x" + verified.measurement.hex(),
        "platformMeasurements": {k: v.hex() for k, v in verified.platform_measurements.items()},
        "debug": verified.debug,
        "tcbStatus": verified.tcb_status,
        "advisories": list(verified.advisories),
        "tcb": dict(verified.tcb),
        "timestamp": verified.timestamp,
        "verifiedAt": verified.verified_at,
        "identity": verified.identity,
        "boundKeys": {
            "reportData": None if verified.report_data is None else verified.report_data.hex(),
            "binding": None if binding is None else "0x" + binding.hex(),
            "challenge": None if challenge is None else "0x" + challenge.hex(),
            "claims": None if claims is None else claims.to_json(),
            "claimsBound": None if claims is None or binding is None else binding == claims.digest(),
        },
        "record": verified.record().to_json(),
        "details": {
            k: v if isinstance(v, str | int | float | bool) or v is None else str(v)
            for k, v in verified.details.items()
        },
    }


def judge(
    evidence_file: EvidenceFile,
    verifier: EvidenceVerifier,
    *,
    at: int | None,
    now: int,
    policy: Policy | None,
    role: str,
    challenge: bytes | None = None,
) -> tuple[str, dict[str, object]]:
    """(verdict, report). Verdicts: ``invalid`` (a verification step failed),
    ``verified`` (no policy given), ``accepted`` or ``refused`` (by the policy)."""
    try:
        verified = verifier.verify(evidence_file.evidence, at=at)
    except AttestationError as exc:
        reason = Refusal("verification", type(exc).__name__, str(exc))
        return "invalid", {
            "verdict": "invalid",
            "type": evidence_file.evidence_type,
            "reasons": [reason.to_json()],
        }
    report = {"verdict": "", **verified_json(verified, evidence_file.claims)}
    if policy is None:
        report["verdict"] = "verified"
        report["reasons"] = []
        report["note"] = "no --policy: measurement, debug, TCB, freshness and binding were not judged"
        return "verified", report
    verdict: Verdict = policy.evaluate(
        verified,
        role=role,
        claims=evidence_file.claims,
        now=now,
        challenge=challenge if challenge is not None else evidence_file.challenge,
    )
    report["verdict"] = "accepted" if verdict.accepted else "refused"
    report["reasons"] = [r.to_json() for r in verdict.refusals]
    report["policy"] = policy.source
    report["role"] = role
    return str(report["verdict"]), report
