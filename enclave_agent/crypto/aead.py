"""Pairwise keys (X25519 + HKDF-SHA256) and authenticated encryption (AES-256-GCM).

Key derivation binds everything that makes a key unique to one pair in one
membership epoch of one registry on one chain:

- salt = SHA-256("enclave-share/pairwise-salt/v1" || chain id (32 bytes BE) ||
  registry (20 bytes) || epoch (32 bytes BE));
- info = "enclave-share/pairwise/v1" || (address 20 bytes || X25519 key 32 bytes)
  for both members, sorted by address, so both sides build the same bytes.

Every field has a fixed width, so the encodings are unambiguous. A shared secret of
all zeros (a low-order peer key) is refused.

Encryption: a blob is ``nonce (12 random bytes) || ciphertext || tag (16 bytes)``.
Random 96-bit nonces are safe for far more messages than one pairwise key sees in an
epoch (the usual limit is 2**32 messages per key); keys rotate with every epoch.

Message keys: a share posting's entry and a reveal's entry are not encrypted under
the pairwise key itself but under ``derive_message_key(pairwise, ad)``:
HKDF-SHA256(pairwise key, info = "enclave-share/message-key/v1" || associated data),
one key per (chain, contract, round, sender, recipient, purpose). A complaint reveals
one such key as evidence; by HKDF's pseudo-randomness it opens that one ciphertext
and tells nothing about the pairwise key or any other message key.
"""

from __future__ import annotations

import hashlib
import logging
import secrets
from dataclasses import dataclass

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from enclave_agent.crypto.addresses import address_bytes
from enclave_agent.errors import CryptoError, DecryptionError

__all__ = [
    "KEY_BYTES",
    "NONCE_BYTES",
    "PAIRWISE_INFO",
    "PAIRWISE_SALT_DOMAIN",
    "SHARE_AD_DOMAIN",
    "TAG_BYTES",
    "X25519_KEY_BYTES",
    "PairContext",
    "decrypt",
    "derive_message_key",
    "derive_pairwise_key",
    "encrypt",
    "public_key_bytes",
    "share_ad",
]

logger = logging.getLogger(__name__)

KEY_BYTES = 32
NONCE_BYTES = 12
TAG_BYTES = 16
X25519_KEY_BYTES = 32
PAIRWISE_INFO = b"enclave-share/pairwise/v1"
PAIRWISE_SALT_DOMAIN = b"enclave-share/pairwise-salt/v1"
SHARE_AD_DOMAIN = b"enclave-share/share-ad/v1"
MESSAGE_KEY_INFO = b"enclave-share/message-key/v1"
_UINT256_LIMIT = 2**256


def _uint256(value: int, name: str) -> bytes:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < _UINT256_LIMIT:
        raise CryptoError(f"{name} must be an int in [0, 2**256), got {value!r}")
    return value.to_bytes(32, "big")


@dataclass(frozen=True)
class PairContext:
    """What a pairwise key is bound to besides the two members: chain, registry, epoch."""

    chain_id: int
    registry: str
    epoch: int

    def __post_init__(self) -> None:
        self.salt()  # validate eagerly so a bad context fails where it is built

    def salt(self) -> bytes:
        """The HKDF salt: SHA-256 over the fixed-width chain id, registry and epoch."""
        material = (
            PAIRWISE_SALT_DOMAIN
            + _uint256(self.chain_id, "chain_id")
            + address_bytes(self.registry)
            + _uint256(self.epoch, "epoch")
        )
        return hashlib.sha256(material).digest()


def public_key_bytes(private: X25519PrivateKey) -> bytes:
    """The raw 32-byte X25519 public key of ``private``."""
    return private.public_key().public_bytes_raw()


def derive_pairwise_key(
    own_private: X25519PrivateKey,
    peer_public: bytes,
    own_address: str,
    peer_address: str,
    ctx: PairContext,
) -> bytes:
    """The 32-byte symmetric key this member shares with ``peer_address`` in ``ctx``."""
    if not isinstance(peer_public, bytes | bytearray) or len(peer_public) != X25519_KEY_BYTES:
        raise CryptoError(f"peer X25519 public key must be {X25519_KEY_BYTES} bytes")
    own_addr, peer_addr = address_bytes(own_address), address_bytes(peer_address)
    if own_addr == peer_addr:
        raise CryptoError(f"cannot derive a pairwise key with oneself ({own_address})")
    try:
        shared = own_private.exchange(X25519PublicKey.from_public_bytes(bytes(peer_public)))
    except ValueError:
        # OpenSSL refuses low-order points (an all-zero shared secret).
        raise CryptoError(f"X25519 exchange with {peer_address} failed: low-order public key") from None
    if not any(shared):
        raise CryptoError(f"X25519 exchange with {peer_address} gave an all-zero shared secret")
    members = sorted([(own_addr, public_key_bytes(own_private)), (peer_addr, bytes(peer_public))])
    info = PAIRWISE_INFO + b"".join(addr + pub for addr, pub in members)
    return HKDF(algorithm=hashes.SHA256(), length=KEY_BYTES, salt=ctx.salt(), info=info).derive(shared)


def derive_message_key(pairwise_key: bytes, associated_data: bytes) -> bytes:
    """The key of the one message whose associated data is ``associated_data``."""
    if not isinstance(pairwise_key, bytes | bytearray) or len(pairwise_key) != KEY_BYTES:
        raise CryptoError(f"pairwise key must be {KEY_BYTES} bytes")
    if not isinstance(associated_data, bytes | bytearray) or not associated_data:
        raise CryptoError("a message key needs non-empty associated data")
    return HKDF(
        algorithm=hashes.SHA256(), length=KEY_BYTES, salt=None, info=MESSAGE_KEY_INFO + bytes(associated_data)
    ).derive(bytes(pairwise_key))


def _cipher(key: bytes) -> AESGCM:
    if not isinstance(key, bytes | bytearray) or len(key) != KEY_BYTES:
        raise CryptoError(f"AEAD key must be {KEY_BYTES} bytes")
    return AESGCM(bytes(key))


def encrypt(key: bytes, plaintext: bytes, associated_data: bytes) -> bytes:
    """AES-256-GCM under ``key``: ``nonce || ciphertext || tag``, authenticating ``associated_data``."""
    cipher = _cipher(key)
    nonce = secrets.token_bytes(NONCE_BYTES)
    return nonce + cipher.encrypt(nonce, bytes(plaintext), bytes(associated_data))


def decrypt(key: bytes, blob: bytes, associated_data: bytes) -> bytes:
    """Open a blob from ``encrypt``; DecryptionError if it does not authenticate."""
    cipher = _cipher(key)
    if len(blob) < NONCE_BYTES + TAG_BYTES:
        raise DecryptionError(
            f"ciphertext too short: {len(blob)} bytes, at least {NONCE_BYTES + TAG_BYTES} expected"
        )
    try:
        return cipher.decrypt(bytes(blob[:NONCE_BYTES]), bytes(blob[NONCE_BYTES:]), bytes(associated_data))
    except InvalidTag:
        raise DecryptionError(
            "ciphertext failed authentication (wrong key, wrong associated data or tampered)"
        ) from None


def share_ad(
    chain_id: int, contract: str, round_id: int, sender: str, recipient: str, purpose: str = "share"
) -> bytes:
    """Associated data binding a ciphertext to its chain, contract, round, sender, recipient, purpose.

    ``domain || chain id (32 BE) || contract (20) || round id (32 BE) || sender (20) ||
    recipient (20) || len(purpose) (2 BE) || purpose (UTF-8)``: fixed widths and a
    length prefix make it unambiguous; addresses are compared as bytes, so their
    letter case does not matter.
    """
    if not isinstance(purpose, str) or not purpose:
        raise CryptoError("purpose must be a non-empty string")
    purpose_bytes = purpose.encode("utf-8")
    if len(purpose_bytes) > 0xFFFF:
        raise CryptoError("purpose is longer than 65535 bytes")
    return (
        SHARE_AD_DOMAIN
        + _uint256(chain_id, "chain_id")
        + address_bytes(contract)
        + _uint256(round_id, "round_id")
        + address_bytes(sender)
        + address_bytes(recipient)
        + len(purpose_bytes).to_bytes(2, "big")
        + purpose_bytes
    )
