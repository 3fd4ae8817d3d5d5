"""Canonical 20-byte forms of EVM addresses for keys, associated data and postings."""

from __future__ import annotations

import logging
import re

from eth_utils.address import to_checksum_address

from enclave_agent.errors import CryptoError

__all__ = ["ADDRESS_BYTES", "address_bytes", "checksum_address"]

logger = logging.getLogger(__name__)

ADDRESS_BYTES = 20
_HEX_ADDRESS = re.compile(r"0x[0-9a-fA-F]{40}")


def address_bytes(address: str) -> bytes:
    """The 20 bytes of a ``0x``-prefixed hex address (case-insensitive).

    All-lowercase and all-uppercase forms are accepted as they are; a mixed-case
    address must carry a valid EIP-55 checksum, so a mistyped one is refused.
    """
    if not isinstance(address, str) or _HEX_ADDRESS.fullmatch(address) is None:
        raise CryptoError(f"not a 0x-prefixed 20-byte hex address: {address!r}")
    digits = address[2:]
    if digits not in (digits.lower(), digits.upper()) and to_checksum_address(address) != address:
        raise CryptoError(f"address has an invalid EIP-55 checksum: {address}")
    return bytes.fromhex(digits)


def checksum_address(raw: bytes) -> str:
    """The EIP-55 checksummed form of 20 address bytes."""
    if len(raw) != ADDRESS_BYTES:
        raise CryptoError(f"an address is {ADDRESS_BYTES} bytes, got {len(raw)}")
    return str(to_checksum_address(raw))
