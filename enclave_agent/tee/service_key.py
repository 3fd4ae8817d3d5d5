"""A service's secp256k1 signing key on disk (the evidence verifier's; the simulated
attestation service's in ``enclave_devnet``)."""

from __future__ import annotations

import logging
from pathlib import Path

from enclave_agent.errors import ConfigError
from enclave_agent.tee._files import check_owner_only, write_new_private_file
from enclave_agent.tee.backend import is_secp256k1_key, new_secp256k1_key

__all__ = ["load_or_create_service_key"]

logger = logging.getLogger(__name__)


def load_or_create_service_key(path: Path) -> bytes:
    """The service's secp256k1 key, stored as hex text in ``path`` (mode 0600)."""
    path = Path(path)
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        if write_new_private_file(path, ("0x" + new_secp256k1_key().hex() + "\n").encode()):
            logger.info("service key created at %s", path)
    check_owner_only(path, "attestation service key")
    try:
        text = path.read_text().strip()
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"attestation service key file {path} cannot be read: {exc}") from None
    try:
        key = bytes.fromhex(text.removeprefix("0x"))
    except ValueError:
        key = b""
    if not is_secp256k1_key(key):
        raise ConfigError(f"attestation service key file {path} does not hold a 32-byte hex secp256k1 key")
    return key
