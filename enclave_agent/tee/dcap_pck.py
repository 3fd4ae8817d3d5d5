"""The Intel SGX extension of a PCK certificate (OID 1.2.840.113741.1.13.1): FMSPC,
PCE id and the platform's TCB (16 component SVNs, PCESVN, CPUSVN).

``cryptography`` leaves this extension undecoded, and its one-off shape (a SEQUENCE
of (OID, value) pairs, the TCB nested once more) does not justify a dependency, so the
strict DER reader of ``enclave_agent.tee._der`` walks it.
"""

from __future__ import annotations

from dataclasses import dataclass

from cryptography import x509

from enclave_agent.tee._der import TAG_INTEGER, TAG_OCTETS, TAG_OID, TAG_SEQUENCE, der_items, der_uint
from enclave_agent.tee.dcap_quote import DcapError

SGX_EXTENSION_OID = x509.ObjectIdentifier("1.2.840.113741.1.13.1")
_SGX_PREFIX = bytes.fromhex("2a864886f84d010d01")  # DER contents of 1.2.840.113741.1.13.1
_OID_TCB, _OID_PCEID, _OID_FMSPC = _SGX_PREFIX + b"\x02", _SGX_PREFIX + b"\x03", _SGX_PREFIX + b"\x04"
_WHAT = "PCK SGX extension"


class DcapCertificateError(DcapError):
    """A PCK or collateral certificate is malformed, untrusted, expired or revoked."""


@dataclass(frozen=True)
class PckTcb:
    """What a PCK certificate says about its platform."""

    fmspc: bytes
    pce_id: bytes
    cpusvn: bytes
    components: tuple[int, ...]  # 16 SGX TCB component SVNs
    pcesvn: int


def _pairs(contents: bytes) -> dict[bytes, tuple[int, bytes]]:
    """OID -> (tag, contents) of a SEQUENCE OF SEQUENCE { OID, value }."""
    pairs: dict[bytes, tuple[int, bytes]] = {}
    for tag, inner in der_items(contents, _WHAT, DcapCertificateError):
        members = der_items(inner, _WHAT, DcapCertificateError)
        if tag != TAG_SEQUENCE or len(members) != 2 or members[0][0] != TAG_OID:
            raise DcapCertificateError("PCK SGX extension: an entry is not a SEQUENCE { OID, value }")
        if members[0][1] in pairs:
            raise DcapCertificateError("PCK SGX extension: an OID appears twice")
        pairs[members[0][1]] = members[1]
    return pairs


def _field(pairs: dict[bytes, tuple[int, bytes]], oid: bytes, tag: int, name: str) -> bytes:
    if oid not in pairs or pairs[oid][0] != tag:
        raise DcapCertificateError(f"PCK SGX extension: {name} is missing or has the wrong type")
    return pairs[oid][1]


def _svn(pairs: dict[bytes, tuple[int, bytes]], oid: bytes, name: str) -> int:
    value = der_uint(_field(pairs, oid, TAG_INTEGER, name), f"{_WHAT}: {name}", DcapCertificateError)
    if value > 0xFFFF:
        raise DcapCertificateError(f"PCK SGX extension: {name} is not an SVN ({value})")
    return value


def parse_sgx_extension(value: bytes) -> PckTcb:
    """Decode the DER value of the SGX extension."""
    items = der_items(bytes(value), _WHAT, DcapCertificateError)
    if len(items) != 1 or items[0][0] != TAG_SEQUENCE:
        raise DcapCertificateError("PCK SGX extension is not one SEQUENCE")
    top = _pairs(items[0][1])
    tcb = _pairs(_field(top, _OID_TCB, TAG_SEQUENCE, "TCB"))
    components = tuple(_svn(tcb, _OID_TCB + bytes([i]), f"TCB component {i}") for i in range(1, 17))
    fmspc = _field(top, _OID_FMSPC, TAG_OCTETS, "FMSPC")
    pce_id = _field(top, _OID_PCEID, TAG_OCTETS, "PCE id")
    cpusvn = _field(tcb, _OID_TCB + b"\x12", TAG_OCTETS, "CPUSVN")
    if len(fmspc) != 6 or len(pce_id) != 2 or len(cpusvn) != 16:
        raise DcapCertificateError("PCK SGX extension: FMSPC, PCE id or CPUSVN has the wrong length")
    return PckTcb(
        fmspc=fmspc,
        pce_id=pce_id,
        cpusvn=cpusvn,
        components=components,
        pcesvn=_svn(tcb, _OID_TCB + b"\x11", "PCESVN"),
    )


def pck_tcb(cert: x509.Certificate) -> PckTcb:
    """The SGX extension of a PCK leaf certificate."""
    try:
        extension = cert.extensions.get_extension_for_oid(SGX_EXTENSION_OID).value
    except x509.ExtensionNotFound:
        raise DcapCertificateError("PCK certificate has no SGX extension") from None
    if not isinstance(extension, x509.UnrecognizedExtension):
        raise DcapCertificateError("PCK certificate's SGX extension was decoded unexpectedly")
    return parse_sgx_extension(extension.value)
