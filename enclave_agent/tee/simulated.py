"""The simulated TEE backend: same interface as hardware, no isolation.

A 32-byte "platform secret" file stands for the CPU's fused key. The sealing key is
HKDF-SHA256(platform secret, info = "enclave-share/seal/v1" || measurement), so
changed code derives another key and cannot open what the old code sealed, as with
SGX MRENCLAVE sealing. Unlike hardware, the operator can read the platform secret
and hence all sealed state: that is the documented assumption of simulated mode.
"""

from __future__ import annotations

import logging
import os
import stat
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from enclave_agent.errors import SealingError
from enclave_agent.tee._files import ensure_private_dir, write_new_private_file
from enclave_agent.tee.backend import EnclaveKeys
from enclave_agent.tee.measure import PACKAGE_DIR, measure_package

logger = logging.getLogger(__name__)

SEAL_INFO = b"enclave-share/seal/v1"
KEYS_LABEL = "enclave-keys/v1"
KEYS_FILE = "keys.sealed"
PLATFORM_SECRET_FILE = "platform.secret"  # noqa: S105 (a file name, not a secret)
_BLOB_VERSION = b"\x01"
_NONCE_LEN = 12
_TAG_LEN = 16


def _load_or_create_platform_secret(path: Path) -> bytes:
    if not path.exists():
        ensure_private_dir(path.parent)
        if write_new_private_file(path, os.urandom(32)):
            logger.info("simulated platform secret created at %s", path)
    try:
        secret = path.read_bytes()
        mode = path.stat().st_mode
    except OSError as exc:
        raise SealingError(f"simulated platform secret {path} cannot be read: {exc.strerror}") from None
    if len(secret) != 32:
        raise SealingError(
            f"simulated platform secret {path} is corrupt: expected 32 bytes, found {len(secret)}"
        )
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        logger.warning(
            "simulated platform secret %s is accessible to other users (mode %o)", path, mode & 0o777
        )
    return secret


def derive_sealing_key(platform_secret: bytes, measurement: bytes) -> bytes:
    """The AES-256-GCM sealing key bound to the platform secret and the code measurement."""
    hkdf = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=SEAL_INFO + measurement)
    return hkdf.derive(platform_secret)


class SimulatedTee:
    """``TeeBackend`` without hardware: sealing and keys as on a TEE, isolation assumed."""

    name = "simulated"
    simulated = True

    def __init__(
        self,
        state_dir: Path,
        *,
        package_dir: Path | None = None,
        lock_file: Path | None = None,
        platform_secret_path: Path | None = None,
    ) -> None:
        self.state_dir = Path(state_dir)
        self.keys_path = self.state_dir / KEYS_FILE
        self.platform_secret_path = Path(platform_secret_path or self.state_dir / PLATFORM_SECRET_FILE)
        self._measurement = measure_package(package_dir or PACKAGE_DIR, lock_file)
        ensure_private_dir(self.state_dir)
        secret = _load_or_create_platform_secret(self.platform_secret_path)
        self._aead = AESGCM(derive_sealing_key(secret, self._measurement))
        self._keys: EnclaveKeys | None = None
        logger.info(
            "TEE backend: SIMULATED (no hardware isolation) measurement=0x%s", self._measurement.hex()
        )

    def __repr__(self) -> str:
        return f"SimulatedTee(state_dir={str(self.state_dir)!r}, measurement=0x{self._measurement.hex()})"

    def measurement(self) -> bytes:
        return self._measurement

    def seal(self, label: str, plaintext: bytes) -> bytes:
        nonce = os.urandom(_NONCE_LEN)
        return _BLOB_VERSION + nonce + self._aead.encrypt(nonce, plaintext, label.encode())

    def unseal(self, label: str, blob: bytes) -> bytes:
        if len(blob) < 1 + _NONCE_LEN + _TAG_LEN or blob[:1] != _BLOB_VERSION:
            raise SealingError(f"sealed blob {label!r} is malformed ({len(blob)} bytes or unknown version)")
        nonce, ciphertext = blob[1 : 1 + _NONCE_LEN], blob[1 + _NONCE_LEN :]
        try:
            return self._aead.decrypt(nonce, ciphertext, label.encode())
        except InvalidTag:
            raise SealingError(
                f"cannot unseal {label!r}: the code measurement (this code: 0x{self._measurement.hex()}) "
                "or the platform secret differs from the one that sealed it, "
                "or the blob was tampered with or sealed under another label"
            ) from None

    def load_or_create_keys(self) -> EnclaveKeys:
        if self._keys is None:
            self._keys = self._unseal_keys() if self.keys_path.exists() else self._create_keys()
        return self._keys

    def _unseal_keys(self) -> EnclaveKeys:
        try:
            blob = self.keys_path.read_bytes()
        except OSError as exc:
            raise SealingError(f"sealed keys {self.keys_path} cannot be read: {exc.strerror}") from None
        try:
            keys = EnclaveKeys.from_bytes(self.unseal(KEYS_LABEL, blob))
        except SealingError as exc:
            raise SealingError(f"{self.keys_path}: {exc}") from None
        logger.info("enclave keys unsealed from %s: address=%s", self.keys_path, keys.address)
        return keys

    def _create_keys(self) -> EnclaveKeys:
        keys = EnclaveKeys.generate()
        if not write_new_private_file(self.keys_path, self.seal(KEYS_LABEL, keys.to_bytes())):
            return self._unseal_keys()  # a concurrent start sealed its keys first: use those
        logger.info("enclave keys created and sealed to %s: address=%s", self.keys_path, keys.address)
        return keys
