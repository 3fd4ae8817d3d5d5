"""Intel DCAP ECDSA quotes (versions 3, 4 and 5; SGX, TDX 1.0 and TDX 1.5 bodies):
a strict, pure parser. No signature is checked here (``enclave_agent.tee.dcap`` does).

Layout (little-endian integers; Intel's "SGX/TDX ECDSA Quote Library API"):

- header, 48 bytes: version u16, attestation key type u16 (2 = ECDSA-256 P-256),
  TEE type u32 (0 SGX, 0x81 TDX), QE SVN u16, PCE SVN u16, QE vendor id 16 bytes,
  user data 20 bytes;
- body: v3 and v4 SGX: a 384-byte enclave report; v4 TDX: a 584-byte TD report
  (TD10); v5: body type u16 (1 SGX, 2 TD10, 3 TD15) and size u32, then the body
  (TD15 = TD10 + TEE_TCB_SVN2 16 bytes + MRSERVICETD 48 bytes);
- the signed region is header || (v5 body descriptor) || body;
- u32 signature-data length, then the quote signature (r || s, 64 bytes), the
  attestation public key (x || y, 64 bytes) and the certification data: in v3 the
  QE report directly, in v4 and v5 wrapped as certification data type 6. The QE
  report certification holds the QE report (384), its signature (64), the QE
  authentication data (u16 length + bytes) and the PCK chain (type 5, PEM).

Every length must fit exactly; bytes after the signature data must be zero padding
(so that no byte of a quote file is left unchecked).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from enclave_agent.errors import AttestationError

INTEL_QE_VENDOR_ID = bytes.fromhex("939a7233f79c4ca9940a0db3957f0607")
TEE_SGX, TEE_TDX = 0x00000000, 0x00000081
ATT_KEY_ECDSA_P256 = 2
CERT_PCK_CHAIN, CERT_QE_REPORT = 5, 6
BODY_SGX, BODY_TD10, BODY_TD15 = 1, 2, 3
SGX_REPORT_SIZE, TD10_SIZE, TD15_SIZE = 384, 584, 648
_BODY_SIZES = {BODY_SGX: SGX_REPORT_SIZE, BODY_TD10: TD10_SIZE, BODY_TD15: TD15_SIZE}
HEADER_SIZE = 48
MAX_QUOTE_SIZE = 64 * 1024


class DcapError(AttestationError):
    """Intel DCAP evidence does not verify (root of the DCAP errors)."""


class DcapQuoteFormatError(DcapError, ValueError):
    """A DCAP quote is malformed: truncated, a wrong length, type or version."""


@dataclass(frozen=True)
class EnclaveReport:
    """An SGX enclave report (the application's, or the Quoting Enclave's)."""

    raw: bytes

    @property
    def cpusvn(self) -> bytes:
        return self.raw[0:16]

    @property
    def miscselect(self) -> int:
        return int.from_bytes(self.raw[16:20], "little")

    @property
    def attributes(self) -> bytes:
        return self.raw[48:64]

    @property
    def mrenclave(self) -> bytes:
        return self.raw[64:96]

    @property
    def mrsigner(self) -> bytes:
        return self.raw[128:160]

    @property
    def isvprodid(self) -> int:
        return int.from_bytes(self.raw[256:258], "little")

    @property
    def isvsvn(self) -> int:
        return int.from_bytes(self.raw[258:260], "little")

    @property
    def report_data(self) -> bytes:
        return self.raw[320:384]

    @property
    def debug(self) -> bool:
        """ATTRIBUTES.DEBUG (bit 1 of the flags): the enclave's memory is readable."""
        return bool(self.raw[48] & 0x02)


@dataclass(frozen=True)
class TdReport:
    """A TDX TD report (TD10, or TD15 with TEE_TCB_SVN2 and MRSERVICETD)."""

    raw: bytes

    @property
    def tee_tcb_svn(self) -> bytes:
        return self.raw[0:16]

    @property
    def mrseam(self) -> bytes:
        return self.raw[16:64]

    @property
    def mrsignerseam(self) -> bytes:
        return self.raw[64:112]

    @property
    def seam_attributes(self) -> bytes:
        return self.raw[112:120]

    @property
    def td_attributes(self) -> bytes:
        return self.raw[120:128]

    @property
    def xfam(self) -> bytes:
        return self.raw[128:136]

    @property
    def mrtd(self) -> bytes:
        return self.raw[136:184]

    @property
    def mrconfigid(self) -> bytes:
        return self.raw[184:232]

    @property
    def mrowner(self) -> bytes:
        return self.raw[232:280]

    @property
    def mrownerconfig(self) -> bytes:
        return self.raw[280:328]

    @property
    def report_data(self) -> bytes:
        return self.raw[520:584]

    def rtmr(self, index: int) -> bytes:
        return self.raw[328 + 48 * index : 376 + 48 * index]

    @property
    def mrservicetd(self) -> bytes | None:
        return self.raw[600:648] if len(self.raw) == TD15_SIZE else None

    @property
    def debug(self) -> bool:
        """TDATTRIBUTES.DEBUG (bit 0): the host can read and change the TD."""
        return bool(self.raw[120] & 0x01)


@dataclass(frozen=True)
class DcapQuote:
    version: int
    tee_type: int
    body_type: int
    signed: bytes  # header || (v5 descriptor) || body: what the attestation key signs
    body: EnclaveReport | TdReport
    signature: bytes  # r || s, big-endian
    attestation_key: bytes  # x || y
    qe_report: EnclaveReport
    qe_report_signature: bytes
    qe_auth_data: bytes
    pck_chain_pem: bytes

    @property
    def is_tdx(self) -> bool:
        return self.tee_type == TEE_TDX


class _Reader:
    def __init__(self, data: bytes, offset: int, end: int) -> None:
        self.data, self.offset, self.end = data, offset, end

    def take(self, size: int, what: str) -> bytes:
        if size < 0 or self.offset + size > self.end:
            raise DcapQuoteFormatError(
                f"DCAP quote is truncated: {what} needs {size} bytes at offset {self.offset}, "
                f"{self.end - self.offset} left"
            )
        chunk = self.data[self.offset : self.offset + size]
        self.offset += size
        return chunk

    def u16(self, what: str) -> int:
        return int(struct.unpack("<H", self.take(2, what))[0])

    def u32(self, what: str) -> int:
        return int(struct.unpack("<I", self.take(4, what))[0])


def _body(version: int, tee_type: int, reader: _Reader) -> tuple[int, bytes]:
    if version == 5:
        body_type, size = reader.u16("body type"), reader.u32("body size")
        if body_type not in _BODY_SIZES or size != _BODY_SIZES[body_type]:
            raise DcapQuoteFormatError(f"DCAP v5 quote: body type {body_type} with size {size} is unknown")
        if (body_type == BODY_SGX) != (tee_type == TEE_SGX):
            raise DcapQuoteFormatError(
                f"DCAP v5 quote: body type {body_type} does not fit TEE type {tee_type:#x}"
            )
    elif tee_type == TEE_TDX:
        if version != 4:
            raise DcapQuoteFormatError(f"DCAP v{version} quote cannot carry a TDX body")
        body_type = BODY_TD10
    else:
        body_type = BODY_SGX
    return body_type, reader.take(_BODY_SIZES[body_type], "report body")


def _qe_report_certification(reader: _Reader) -> tuple[bytes, bytes, bytes, bytes]:
    qe_report = reader.take(SGX_REPORT_SIZE, "QE report")
    qe_signature = reader.take(64, "QE report signature")
    auth_data = reader.take(reader.u16("QE authentication data length"), "QE authentication data")
    cert_type = reader.u16("PCK certification data type")
    if cert_type != CERT_PCK_CHAIN:
        raise DcapQuoteFormatError(f"DCAP quote: certification data type {cert_type}, expected 5 (PCK chain)")
    chain = reader.take(reader.u32("PCK chain size"), "PCK chain")
    return qe_report, qe_signature, auth_data, chain


def parse_quote(data: bytes) -> DcapQuote:
    """Parse a DCAP ECDSA quote; ``DcapQuoteFormatError`` naming the offending field."""
    data = bytes(data)
    if len(data) > MAX_QUOTE_SIZE:
        raise DcapQuoteFormatError(f"DCAP quote is {len(data)} bytes, over {MAX_QUOTE_SIZE}")
    reader = _Reader(data, 0, len(data))
    version, key_type, tee_type = reader.u16("version"), reader.u16("key type"), reader.u32("TEE type")
    if version not in (3, 4, 5):
        raise DcapQuoteFormatError(f"DCAP quote version {version} is not supported (3, 4 or 5)")
    if key_type != ATT_KEY_ECDSA_P256:
        raise DcapQuoteFormatError(f"DCAP quote attestation key type {key_type}, expected 2 (ECDSA P-256)")
    if tee_type not in (TEE_SGX, TEE_TDX):
        raise DcapQuoteFormatError(f"DCAP quote TEE type {tee_type:#x} is neither SGX (0) nor TDX (0x81)")
    reader.take(4, "QE and PCE SVN")
    if reader.take(16, "QE vendor id") != INTEL_QE_VENDOR_ID:
        raise DcapQuoteFormatError("DCAP quote: QE vendor id is not Intel's")
    reader.take(20, "user data")
    body_type, body = _body(version, tee_type, reader)
    signed = data[: reader.offset]
    signature_size = reader.u32("signature data length")
    end = reader.offset + signature_size
    if end > len(data):
        raise DcapQuoteFormatError(
            f"DCAP quote: signature data of {signature_size} bytes runs past the end ({len(data)} bytes)"
        )
    if any(data[end:]):
        raise DcapQuoteFormatError(
            f"DCAP quote: {len(data) - end} bytes after the signature data are not zero"
        )
    sig = _Reader(data, reader.offset, end)
    signature, key = sig.take(64, "quote signature"), sig.take(64, "attestation key")
    if version == 3:
        qe_report, qe_signature, auth_data, chain = _qe_report_certification(sig)
    else:
        outer_type = sig.u16("certification data type")
        if outer_type != CERT_QE_REPORT:
            raise DcapQuoteFormatError(
                f"DCAP quote: certification data type {outer_type}, expected 6 (QE report)"
            )
        size = sig.u32("certification data size")
        if sig.offset + size != end:
            raise DcapQuoteFormatError(
                "DCAP quote: certification data size does not match the signature data"
            )
        qe_report, qe_signature, auth_data, chain = _qe_report_certification(sig)
    if sig.offset != end:
        raise DcapQuoteFormatError(f"DCAP quote: {end - sig.offset} unparsed bytes inside the signature data")
    return DcapQuote(
        version=version,
        tee_type=tee_type,
        body_type=body_type,
        signed=signed,
        body=EnclaveReport(body) if body_type == BODY_SGX else TdReport(body),
        signature=signature,
        attestation_key=key,
        qe_report=EnclaveReport(qe_report),
        qe_report_signature=qe_signature,
        qe_auth_data=auth_data,
        pck_chain_pem=chain,
    )
