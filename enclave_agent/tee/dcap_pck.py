"""The Intel SGX extension of a PCK certificate (OID 1.2.840.113741.1.13.1): FMSPC,
PCE id and the platform's TCB (16 component SVNs, PCESVN, CPUSVN).

``cryptography`` leaves this extension undecoded, and its one-off shape (a SEQUENCE
of (OID, value) pairs, the TCB nested once more) does not justify a dependency, so a
strict DER reader walks it: definite lengths only, every length bounded by its
container, no trailing bytes. It parses; it does no cryptography.
"""

from __future__ import annotations

from dataclasses import dataclass

from cryptography import x509

from enclave_agent.tee.dcap_quote import DcapError

SGX_EXTENSION_OID = x509.ObjectIdentifier("1.2.840.113741.1.13.1")
_SGX_PREFIX = bytes.fromhex("2a864886f84d010d01")  # DER contents of 1.2.840.113741.1.13.1
_OID_TCB, _OID_PCEID, _OID_FMSPC = _SGX_PREFIX + b"\x02", _SGX_PREFIX + b"\x03", _SGX_PREFIX + b"\x04"
_TAG_INTEGER, _TAG_OCTETS, _TAG_OID, _TAG_SEQUENCE = 0x02, 0x04, 0x06, 0x30


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


def der_items(data: bytes) -> list[tuple[int, bytes]]:
    """The (tag, contents) of the DER elements that exactly fill ``data``."""
    items, offset = [], 0
    while offset < len(data):
        if offset + 2 > len(data):
            raise DcapCertificateError("PCK SGX extension: truncated DER header")
        tag, length = data[offset], data[offset + 1]
        offset += 2
        if length & 0x80:
            count = length & 0x7F
            if count == 0 or count > 3 or offset + count > len(data):
                raise DcapCertificateError("PCK SGX extension: unsupported or truncated DER length")
            length = int.from_bytes(data[offset : offset + count], "big")
            if length < 0x80 or data[offset] == 0:
                raise DcapCertificateError("PCK SGX extension: non-minimal DER length")
            offset += count
        if offset + length > len(data):
            raise DcapCertificateError("PCK SGX extension: DER element runs past its container")
        items.append((tag, data[offset : offset + length]))
        offset += length
    return items


def _pairs(contents: bytes) -> dict[bytes, tuple[int, bytes]]:
    """OID -> (tag, contents) of a SEQUENCE OF SEQUENCE { OID, value }."""
    pairs: dict[bytes, tuple[int, bytes]] = {}
    for tag, inner in der_items(contents):
        members = der_items(inner)
        if tag != _TAG_SEQUENCE or len(members) != 2 or members[0][0] != _TAG_OID:
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
    contents = _field(pairs, oid, _TAG_INTEGER, name)
    value = int.from_bytes(contents, "big", signed=True) if contents else -1
    if not 0 <= value <= 0xFFFF:
        raise DcapCertificateError(f"PCK SGX extension: {name} is not an SVN ({value})")
    return value


def parse_sgx_extension(value: bytes) -> PckTcb:
    """Decode the DER value of the SGX extension."""
    items = der_items(bytes(value))
    if len(items) != 1 or items[0][0] != _TAG_SEQUENCE:
        raise DcapCertificateError("PCK SGX extension is not one SEQUENCE")
    top = _pairs(items[0][1])
    tcb = _pairs(_field(top, _OID_TCB, _TAG_SEQUENCE, "TCB"))
    components = tuple(_svn(tcb, _OID_TCB + bytes([i]), f"TCB component {i}") for i in range(1, 17))
    fmspc = _field(top, _OID_FMSPC, _TAG_OCTETS, "FMSPC")
    pce_id = _field(top, _OID_PCEID, _TAG_OCTETS, "PCE id")
    cpusvn = _field(tcb, _OID_TCB + b"\x12", _TAG_OCTETS, "CPUSVN")
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
