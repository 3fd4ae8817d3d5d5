"""Intel DCAP collateral: TCB Info and QE Identity (Intel-signed JSON), CRLs and the
TCB signing certificate, loaded from files as Intel's PCS/PCCS serve them, and the
choice of the items that apply to one quote at one time.

A collateral directory may hold any mix of:

- ``{"tcbInfo": {...}, "signature": "<hex r||s>"}`` and
  ``{"enclaveIdentity": {...}, "signature": ...}`` (the PCS wire format; the signature
  covers the exact bytes of the inner object, sliced from the file, never re-encoded);
- a bundle with ``tcb_info``/``tcb_info_signature``, ``qe_identity``/
  ``qe_identity_signature``, ``root_ca_crl``/``pck_crl`` (hex DER) and issuer chains
  (PEM), as ``dcap-qvl`` and PCCS clients store it;
- CRLs (DER or PEM) and certificates (DER or PEM: the TCB signing certificate);
- other JSON Intel publishes (TCB evaluation data numbers), which is skipped.

Nothing here is trusted for being present: every item is checked against the pinned
Intel root by ``enclave_agent.tee.dcap``. Among items that pass, the one current at
the verification time with the latest issue date is used.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from cryptography import x509

from enclave_agent.tee._pki import MALFORMED_CERTIFICATE, parsed
from enclave_agent.tee.dcap_quote import DcapError

MAX_COLLATERAL_FILE = 1024 * 1024


class DcapCollateralError(DcapError):
    """DCAP collateral is missing, malformed, badly signed or not current."""


@dataclass(frozen=True)
class SignedJson:
    """An Intel-signed JSON object: the exact signed bytes, what they parse to, the signature."""

    kind: str  # "tcbInfo" or "enclaveIdentity"
    signed: bytes
    body: dict[str, Any]
    signature: bytes
    source: str

    def date(self, key: str) -> datetime:
        value = self.body.get(key)
        try:
            return datetime.fromisoformat(str(value))
        except ValueError:
            raise DcapCollateralError(f"{self.source}: {self.kind}.{key} is not a date ({value!r})") from None

    @property
    def issue_date(self) -> datetime:
        return self.date("issueDate")

    @property
    def next_update(self) -> datetime:
        return self.date("nextUpdate")


def signed_member(text: str, key: str) -> tuple[str, str]:
    """(raw text of the top-level member ``key``, the ``signature`` member's value) of a
    JSON object, sliced from the text as it is (Intel signs the exact bytes)."""
    decoder = json.JSONDecoder()
    position, members = 0, {}
    text = text.strip()
    if not text.startswith("{"):
        raise ValueError("not a JSON object")
    position = 1
    while True:
        while text[position].isspace():
            position += 1
        if text[position] == "}":
            break
        name, position = decoder.raw_decode(text, position)
        while text[position].isspace():
            position += 1
        if text[position] != ":":
            raise ValueError("expected ':'")
        position += 1
        while text[position].isspace():
            position += 1
        start = position
        _, position = decoder.raw_decode(text, position)
        members[name] = text[start:position]
        while text[position].isspace():
            position += 1
        if text[position] == ",":
            position += 1
        elif text[position] != "}":
            raise ValueError("expected ',' or '}'")
    if key not in members or "signature" not in members:
        raise ValueError(f"no {key!r} and 'signature' members")
    return members[key], json.loads(members["signature"])


def _signed_json(kind: str, signed: str, signature: Any, source: str) -> SignedJson:
    body = json.loads(signed)
    if not isinstance(body, dict):
        raise DcapCollateralError(f"{source}: {kind} is not a JSON object")
    try:
        raw_signature = bytes.fromhex(signature) if isinstance(signature, str) else b""
    except ValueError:
        raw_signature = b""
    if len(raw_signature) != 64:
        raise DcapCollateralError(f"{source}: {kind} signature is not 64 bytes of hex")
    return SignedJson(kind, signed.encode(), body, raw_signature, source)


@dataclass
class Collateral:
    """Every collateral item found; ``enclave_agent.tee.dcap`` checks and picks."""

    documents: list[SignedJson] = field(default_factory=list)
    crls: list[tuple[x509.CertificateRevocationList, str]] = field(default_factory=list)
    certificates: list[tuple[x509.Certificate, str]] = field(default_factory=list)

    @classmethod
    def from_paths(cls, paths: list[Path]) -> Collateral:
        collateral = cls()
        for path in paths:
            collateral.add_file(Path(path))
        return collateral

    @classmethod
    def from_dir(cls, directory: Path) -> Collateral:
        directory = Path(directory)
        if not directory.is_dir():
            raise DcapCollateralError(f"collateral directory {directory} does not exist")
        return cls.from_paths(sorted(p for p in directory.rglob("*") if p.is_file() and p.suffix != ".md"))

    def add_file(self, path: Path) -> None:
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise DcapCollateralError(f"collateral file {path} cannot be read: {exc.strerror}") from None
        if len(data) > MAX_COLLATERAL_FILE:
            raise DcapCollateralError(f"collateral file {path} is over {MAX_COLLATERAL_FILE} bytes")
        if data.lstrip().startswith(b"{"):
            self._add_json(data, str(path))
        elif not self._add_crl(data, str(path)) and not self._add_certificates(data, str(path)):
            raise DcapCollateralError(f"collateral file {path} is neither JSON, a CRL nor a certificate")

    def _add_json(self, data: bytes, source: str) -> None:
        try:
            text = data.decode()
            parsed = json.loads(text)
        except ValueError as exc:
            raise DcapCollateralError(f"{source}: not valid JSON ({exc})") from None
        if not isinstance(parsed, dict):
            raise DcapCollateralError(f"{source}: not a JSON object")
        if "tcb_info" in parsed and "qe_identity" in parsed:
            self._add_bundle(parsed, source)
            return
        for kind in ("tcbInfo", "enclaveIdentity"):
            if kind in parsed:
                try:
                    signed, signature = signed_member(text, kind)
                except (ValueError, IndexError) as exc:
                    raise DcapCollateralError(f"{source}: cannot slice the signed {kind} ({exc})") from None
                self.documents.append(_signed_json(kind, signed, signature, source))
                return
        if "tcbEvaluationDataNumbers" not in parsed:
            raise DcapCollateralError(
                f"{source}: JSON is neither TCB Info, QE Identity nor a collateral bundle"
            )

    def _add_bundle(self, bundle: dict[str, Any], source: str) -> None:
        for kind, key in (("tcbInfo", "tcb_info"), ("enclaveIdentity", "qe_identity")):
            if not isinstance(bundle.get(key), str):
                raise DcapCollateralError(f"{source}: bundle member {key} is not a string")
            self.documents.append(
                _signed_json(kind, bundle[key], bundle.get(f"{key}_signature"), f"{source}:{key}")
            )
        for key in ("root_ca_crl", "pck_crl"):
            value = bundle.get(key)
            try:
                der = bytes.fromhex(value) if isinstance(value, str) else b""
            except ValueError:
                der = b""
            if not self._add_crl(der, f"{source}:{key}"):
                raise DcapCollateralError(f"{source}: bundle member {key} is not a hex DER CRL")
        for key in ("tcb_info_issuer_chain", "qe_identity_issuer_chain", "pck_crl_issuer_chain"):
            value = bundle.get(key)
            if isinstance(value, str):
                self._add_certificates(value.encode(), f"{source}:{key}")

    def _add_crl(self, data: bytes, source: str) -> bool:
        for loader in (x509.load_der_x509_crl, x509.load_pem_x509_crl):
            try:
                self.crls.append((loader(data), source))
                return True
            except ValueError:
                continue
        return False

    def _add_certificates(self, data: bytes, source: str) -> bool:
        try:
            certs = [parsed(x509.load_der_x509_certificate(data))]
        except MALFORMED_CERTIFICATE:
            try:
                certs = [parsed(cert) for cert in x509.load_pem_x509_certificates(data)]
            except MALFORMED_CERTIFICATE:
                return False
        self.certificates.extend((cert, source) for cert in certs)
        return True
