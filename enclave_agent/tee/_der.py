"""A strict reader of DER TLVs, for the two certificate extensions ``cryptography``
leaves undecoded (Intel's SGX extension of PCK certificates, AMD's TCB extensions
of VCEKs). Definite lengths only, minimal length encodings, every element inside its
container. It parses; it does no cryptography."""

from __future__ import annotations

from enclave_agent.errors import AttestationError

TAG_INTEGER, TAG_BIT_STRING, TAG_OCTETS, TAG_OID, TAG_IA5STRING, TAG_SEQUENCE = (
    0x02,
    0x03,
    0x04,
    0x06,
    0x16,
    0x30,
)


def der_items(data: bytes, what: str, error: type[AttestationError]) -> list[tuple[int, bytes]]:
    """The (tag, contents) of the DER elements that exactly fill ``data``."""
    items, offset = [], 0
    while offset < len(data):
        if offset + 2 > len(data):
            raise error(f"{what}: truncated DER header")
        tag, length = data[offset], data[offset + 1]
        offset += 2
        if length & 0x80:
            count = length & 0x7F
            if count == 0 or count > 3 or offset + count > len(data):
                raise error(f"{what}: unsupported or truncated DER length")
            length = int.from_bytes(data[offset : offset + count], "big")
            if length < 0x80 or data[offset] == 0:
                raise error(f"{what}: non-minimal DER length")
            offset += count
        if offset + length > len(data):
            raise error(f"{what}: DER element runs past its container")
        items.append((tag, bytes(data[offset : offset + length])))
        offset += length
    return items


def der_single(data: bytes, tag: int, what: str, error: type[AttestationError]) -> bytes:
    """The contents of ``data`` that must be exactly one element with ``tag``."""
    items = der_items(data, what, error)
    if len(items) != 1 or items[0][0] != tag:
        raise error(f"{what}: expected one DER element with tag {tag:#04x}")
    return items[0][1]


def der_uint(contents: bytes, what: str, error: type[AttestationError]) -> int:
    """A non-negative DER INTEGER's value (minimal encoding)."""
    if not contents or (len(contents) > 1 and contents[0] == 0 and contents[1] < 0x80) or contents[0] & 0x80:
        raise error(f"{what}: not a minimal non-negative DER INTEGER")
    return int.from_bytes(contents, "big")
