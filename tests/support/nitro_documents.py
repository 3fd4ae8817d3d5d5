"""Nitro-format attestation documents made under a test CA chain (ES384, P-384 root ->
intermediate -> leaf), for tests that need evidence bound to fresh keys: the recorded
AWS samples cannot be (their ``user_data`` is fixed). A ``NitroVerifier`` pinned to
``DocumentSigner.sha256`` accepts them; one pinned to AWS's root refuses them."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta
from pathlib import Path

import cbor2
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from cryptography.x509.oid import NameOID

TEST_PCRS = {1: b"\x01" * 48, 2: b"\x02" * 48, 3: bytes(48)}


class DocumentSigner:
    """A P-384 root -> intermediate -> leaf chain that signs Nitro-shaped documents."""

    def __init__(self, *, leaf_ca: bool = False) -> None:
        self.now = datetime.now(UTC)
        self.root_key = ec.generate_private_key(ec.SECP384R1())
        self.root = self._cert("test root", self.root_key, self.root_key, ca=True)
        self.inter_key = ec.generate_private_key(ec.SECP384R1())
        self.inter = self._cert(
            "test intermediate", self.inter_key, self.root_key, ca=True, issuer="test root"
        )
        self.leaf_key = ec.generate_private_key(ec.SECP384R1())
        self.leaf = self._cert(
            "test enclave", self.leaf_key, self.inter_key, ca=leaf_ca, issuer="test intermediate"
        )

    @property
    def sha256(self) -> bytes:
        return hashlib.sha256(self.root.public_bytes(serialization.Encoding.DER)).digest()

    def _cert(
        self,
        name: str,
        key: ec.EllipticCurvePrivateKey,
        signer: ec.EllipticCurvePrivateKey,
        *,
        ca: bool,
        issuer: str | None = None,
    ) -> x509.Certificate:
        return (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
            .issuer_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, issuer or name)]))
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(self.now - timedelta(hours=1))
            .not_valid_after(self.now + timedelta(hours=3))
            .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
            .sign(signer, hashes.SHA384())
        )

    def save(self, directory: Path) -> None:
        """Write the chain and the leaf key (PEM) for ``load`` in another process."""
        directory.mkdir(parents=True, exist_ok=True)
        pem = serialization.Encoding.PEM
        for name, cert in (("root", self.root), ("inter", self.inter), ("leaf", self.leaf)):
            (directory / f"{name}.pem").write_bytes(cert.public_bytes(pem))
        (directory / "leaf.key").write_bytes(
            self.leaf_key.private_bytes(pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
        )

    @classmethod
    def load(cls, directory: Path) -> DocumentSigner:
        """A signer of ``save``'s chain (signs documents; cannot issue certificates)."""
        signer = cls.__new__(cls)
        signer.now = datetime.now(UTC)
        signer.root, signer.inter, signer.leaf = (
            x509.load_pem_x509_certificate((directory / f"{name}.pem").read_bytes())
            for name in ("root", "inter", "leaf")
        )
        key = serialization.load_pem_private_key((directory / "leaf.key").read_bytes(), password=None)
        assert isinstance(key, ec.EllipticCurvePrivateKey)
        signer.leaf_key = key
        return signer

    def document(
        self, *, pcr0: bytes, user_data: bytes, nonce: bytes | None = None, timestamp_ms: int | None = None
    ) -> bytes:
        """A COSE_Sign1 document over PCR0 = ``pcr0`` (PCR1..3 from ``TEST_PCRS``),
        ``user_data`` and ``nonce``, timestamped ``timestamp_ms`` (default: when this
        signer was made)."""
        der = serialization.Encoding.DER
        payload = cbor2.dumps(
            {
                "module_id": "i-test-enc0001",
                "digest": "SHA384",
                "timestamp": int(self.now.timestamp() * 1000) if timestamp_ms is None else timestamp_ms,
                "pcrs": {0: pcr0, **TEST_PCRS},
                "certificate": self.leaf.public_bytes(der),
                "cabundle": [self.root.public_bytes(der), self.inter.public_bytes(der)],
                "public_key": None,
                "user_data": user_data,
                "nonce": nonce,
            }
        )
        protected = cbor2.dumps({1: -35})
        der_signature = self.leaf_key.sign(
            cbor2.dumps(["Signature1", protected, b"", payload]), ec.ECDSA(hashes.SHA384())
        )
        r, s = decode_dss_signature(der_signature)
        return cbor2.dumps([protected, {}, payload, r.to_bytes(48, "big") + s.to_bytes(48, "big")])
