"""The TEE backend interface and the enclave's key pair.

A backend measures the running code, makes and keeps the enclave's keys, and seals
state so that only the same code on the same platform can open it. ``simulated``
is True for backends without hardware isolation; callers must say so wherever the
backend shows (logs, status, API).
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from functools import cached_property
from typing import Protocol, runtime_checkable

from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat, PublicFormat
from eth_account import Account
from eth_account.signers.local import LocalAccount

from enclave_agent.errors import SealingError

_SECP256K1_N = int("FFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141", 16)
_KEYS_FORMAT = b"\x01"  # version byte of the serialised key pair


def new_secp256k1_key() -> bytes:
    """A uniformly random valid secp256k1 private key from the OS CSPRNG."""
    while True:
        candidate = secrets.token_bytes(32)
        if 0 < int.from_bytes(candidate, "big") < _SECP256K1_N:
            return candidate


def is_secp256k1_key(key: bytes) -> bool:
    return len(key) == 32 and 0 < int.from_bytes(key, "big") < _SECP256K1_N


@dataclass(eq=False, repr=False)
class EnclaveKeys:
    """The enclave's secp256k1 chain account and X25519 key-agreement key.

    ``repr`` shows only public parts; the private halves leave this object only
    through ``to_bytes`` (for sealing) and ``account``.
    """

    signing_key: bytes
    x25519_private: X25519PrivateKey

    def __post_init__(self) -> None:
        if not is_secp256k1_key(bytes(self.signing_key)):
            raise ValueError("signing_key must be a valid 32-byte secp256k1 private key")
        self.signing_key = bytes(self.signing_key)

    @classmethod
    def generate(cls) -> EnclaveKeys:
        return cls(new_secp256k1_key(), X25519PrivateKey.generate())

    @cached_property
    def account(self) -> LocalAccount:
        """The enclave's own chain account (eth_account LocalAccount)."""
        account: LocalAccount = Account.from_key(self.signing_key)
        return account

    @property
    def address(self) -> str:
        """Checksummed address of the signing key."""
        return str(self.account.address)

    @property
    def x25519_public(self) -> bytes:
        return self.x25519_private.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)

    def to_bytes(self) -> bytes:
        """Serialised private keys, for sealing only (version || secp256k1 || x25519)."""
        x25519_raw = self.x25519_private.private_bytes(Encoding.Raw, PrivateFormat.Raw, NoEncryption())
        return _KEYS_FORMAT + self.signing_key + x25519_raw

    @classmethod
    def from_bytes(cls, data: bytes) -> EnclaveKeys:
        if len(data) != 65 or data[:1] != _KEYS_FORMAT or not is_secp256k1_key(data[1:33]):
            raise SealingError(f"unsealed key material is not a key pair ({len(data)} bytes)")
        return cls(data[1:33], X25519PrivateKey.from_private_bytes(data[33:]))

    def __repr__(self) -> str:
        return f"EnclaveKeys(address={self.address}, x25519_public=0x{self.x25519_public.hex()})"

    __str__ = __repr__


@runtime_checkable
class TeeBackend(Protocol):
    """What the agent needs from a trusted execution environment."""

    name: str
    simulated: bool

    def measurement(self) -> bytes:
        """The 32-byte measurement of the code this backend runs."""
        ...

    def load_or_create_keys(self) -> EnclaveKeys:
        """The enclave's keys: unsealed from state, or created and sealed on first start."""
        ...

    def seal(self, label: str, plaintext: bytes) -> bytes:
        """Encrypt ``plaintext`` so that only this code on this platform can open it
        under the same ``label``."""
        ...

    def unseal(self, label: str, blob: bytes) -> bytes:
        """Open a ``seal`` blob; ``SealingError`` if the code, label or blob differ."""
        ...
