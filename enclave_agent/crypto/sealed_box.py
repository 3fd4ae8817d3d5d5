"""Anonymous sealed box for a client's X25519 key: the gateway encrypts a result
end to end for a client that asked for it (ephemeral X25519 + HKDF-SHA256 +
AES-256-GCM, both public keys bound into the key derivation)."""

from __future__ import annotations

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from enclave_agent.crypto.aead import decrypt, encrypt, public_key_bytes
from enclave_agent.errors import CryptoError

INFO = b"enclave-share/sealed-box/v1"


def _key(shared: bytes, ephemeral_public: bytes, recipient_public: bytes) -> bytes:
    if shared == bytes(32):
        raise CryptoError("X25519 produced an all-zero shared secret")
    return HKDF(hashes.SHA256(), 32, salt=None, info=INFO + ephemeral_public + recipient_public).derive(
        shared
    )


def seal(recipient_public: bytes, plaintext: bytes, associated_data: bytes) -> tuple[bytes, bytes]:
    """Returns (ephemeral public key, ciphertext)."""
    if len(recipient_public) != 32:
        raise CryptoError("recipient X25519 key must be 32 bytes")
    ephemeral = X25519PrivateKey.generate()
    ephemeral_public = public_key_bytes(ephemeral)
    shared = ephemeral.exchange(X25519PublicKey.from_public_bytes(recipient_public))
    return ephemeral_public, encrypt(
        _key(shared, ephemeral_public, recipient_public), plaintext, associated_data
    )


def open_sealed(
    recipient: X25519PrivateKey, ephemeral_public: bytes, ciphertext: bytes, associated_data: bytes
) -> bytes:
    shared = recipient.exchange(X25519PublicKey.from_public_bytes(ephemeral_public))
    key = _key(shared, ephemeral_public, public_key_bytes(recipient))
    return decrypt(key, ciphertext, associated_data)
