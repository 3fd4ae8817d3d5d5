"""AMD SEV-SNP attestation reports made under a test ARK -> ASK -> VCEK chain (RSA-PSS
SHA-384 certificates, a P-384 VCEK carrying the chip id and TCB extensions AMD's do),
for tests that need SNP evidence bound to fresh keys: the recorded reports cannot be
(their report data is fixed). An ``SnpVerifier`` pinning ``ReportSigner.ark_sha256``
for Milan accepts them; one pinning AMD's ARKs refuses them. Nothing here is AMD's."""

from __future__ import annotations

import hashlib
import struct
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from cryptography.x509.oid import NameOID

from enclave_agent.tee.sevsnp import POLICY_DEBUG, REPORT_SIZE, SIGNED_SIZE

_AMD_OID = "1.3.6.1.4.1.3704.1"
TCB = {"bootloader": 3, "tee": 0, "snp": 14, "microcode": 209}
CHIP_ID = bytes(range(1, 65))
_PSS = padding.PSS(mgf=padding.MGF1(hashes.SHA384()), salt_length=48)
_PEM = serialization.Encoding.PEM


def _der_integer(value: int) -> bytes:
    body = value.to_bytes(max(1, (value.bit_length() + 8) // 8), "big")
    return bytes([0x02, len(body)]) + body


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


class ReportSigner:
    """A test Milan chip: its ARK, ASK and VCEK, and reports signed by the VCEK."""

    family = "Milan"

    def __init__(self, *, chip_id: bytes = CHIP_ID, tcb: dict[str, int] | None = None) -> None:
        self.chip_id, self.tcb = chip_id, dict(TCB if tcb is None else tcb)
        now = datetime.now(UTC)
        self.valid = (now - timedelta(days=1), now + timedelta(days=30))
        self.ark_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.ask_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.vcek_key = ec.generate_private_key(ec.SECP384R1())
        self.ark = self._cert("ARK-Milan", "ARK-Milan", self.ark_key.public_key(), self.ark_key, ca=True)
        self.ask = self._cert("SEV-Milan", "ARK-Milan", self.ask_key.public_key(), self.ark_key, ca=True)
        self.vcek = self._cert("SEV-VCEK", "SEV-Milan", self.vcek_key.public_key(), self.ask_key, vcek=True)

    @property
    def ark_sha256(self) -> bytes:
        return hashlib.sha256(self.ark.public_bytes(serialization.Encoding.DER)).digest()

    def _cert(
        self,
        subject: str,
        issuer: str,
        key: rsa.RSAPublicKey | ec.EllipticCurvePublicKey,
        signer: rsa.RSAPrivateKey,
        *,
        ca: bool = False,
        vcek: bool = False,
    ) -> x509.Certificate:
        builder = (
            x509.CertificateBuilder()
            .subject_name(_name(subject))
            .issuer_name(_name(issuer))
            .public_key(key)
            .serial_number(x509.random_serial_number())
            .not_valid_before(self.valid[0])
            .not_valid_after(self.valid[1])
        )
        if ca:
            builder = builder.add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        if vcek:
            spls = {".3.1": "bootloader", ".3.2": "tee", ".3.3": "snp", ".3.8": "microcode"}
            extensions = {".2": b"\x16\x08Milan-B0", ".4": self.chip_id} | {
                oid: _der_integer(self.tcb[name]) for oid, name in spls.items()
            }
            for suffix, value in extensions.items():
                oid = x509.ObjectIdentifier(_AMD_OID + suffix)
                builder = builder.add_extension(x509.UnrecognizedExtension(oid, value), critical=False)
        return builder.sign(signer, hashes.SHA384(), rsa_padding=_PSS)

    def report(self, report_data: bytes, *, measurement: bytes = b"\x05" * 48, debug: bool = False) -> bytes:
        """A version-2 report over 64 bytes of report data, signed by the VCEK."""
        raw = bytearray(REPORT_SIZE)
        policy = 0x30000 | (POLICY_DEBUG if debug else 0)
        struct.pack_into("<IIQ", raw, 0, 2, 0, policy)
        struct.pack_into("<II", raw, 0x30, 0, 1)  # VMPL 0, signature algorithm 1 (P-384)
        raw[0x50:0x90] = bytes(report_data).ljust(64, b"\0")[:64]
        raw[0x90:0xC0] = measurement
        tcb = bytearray(8)
        tcb[0], tcb[1], tcb[6], tcb[7] = (self.tcb[k] for k in ("bootloader", "tee", "snp", "microcode"))
        raw[0x180:0x188] = tcb
        raw[0x1A0:0x1E0] = self.chip_id
        r, s = decode_dss_signature(self.vcek_key.sign(bytes(raw[:SIGNED_SIZE]), ec.ECDSA(hashes.SHA384())))
        raw[0x2A0:0x2E8] = r.to_bytes(72, "little")
        raw[0x2E8:0x330] = s.to_bytes(72, "little")
        return bytes(raw)

    def save(self, directory: Path) -> Path:
        """Write the collateral a verifier reads (``collateral/vcek.der`` and
        ``collateral/ask_ark.pem``, whose directory is returned) and the VCEK key beside
        it (``vcek.key``, for ``load`` in another process)."""
        collateral = directory / "collateral"
        collateral.mkdir(parents=True, exist_ok=True)
        (collateral / "vcek.der").write_bytes(self.vcek.public_bytes(serialization.Encoding.DER))
        (collateral / "ask_ark.pem").write_bytes(self.ask.public_bytes(_PEM) + self.ark.public_bytes(_PEM))
        (directory / "vcek.key").write_bytes(
            self.vcek_key.private_bytes(_PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
        )
        return collateral

    @classmethod
    def load(cls, directory: Path) -> ReportSigner:
        """A signer of ``save``'s chip (signs reports; cannot issue certificates)."""
        signer = cls.__new__(cls)
        signer.chip_id, signer.tcb = CHIP_ID, dict(TCB)
        collateral = directory / "collateral"
        signer.vcek = x509.load_der_x509_certificate((collateral / "vcek.der").read_bytes())
        ask, ark = x509.load_pem_x509_certificates((collateral / "ask_ark.pem").read_bytes())
        signer.ask, signer.ark = ask, ark
        key = serialization.load_pem_private_key((directory / "vcek.key").read_bytes(), None)
        assert isinstance(key, ec.EllipticCurvePrivateKey)
        signer.vcek_key = key
        return signer
