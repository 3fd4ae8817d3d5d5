"""The on-chain payload of one participant's share posting, its chunks and commitment.

Payload layout (version 1)::

    magic "ESP" (3 bytes) || version (1 byte) || entry count (4 bytes BE)
    then per entry: recipient address (20 bytes) || length (4 bytes BE) || ciphertext

Decoding is strict: a wrong magic or version, a truncated entry, trailing bytes or a
recipient named twice is a ProtocolError. The payload is cut into chunks that fit
one transaction each; the ShareExchange contract checks the keccak256 hash chain
``c0 = 0**32, c_{i+1} = keccak256(c_i || keccak256(chunk_i))`` against the
commitment announced with the first chunk.

With the first chunk a sender also posts its key table: for every participant j the
commitment ``keccak256(abi.encode(KEY_COMMITMENT_TAG, chain id, exchange, round id,
sender, j, key_j))`` to the message key of its ciphertext for j (zero for itself).
A complaint reveals key_j; the contract checks it against this table.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from eth_utils.crypto import keccak

from enclave_agent.crypto.addresses import ADDRESS_BYTES, address_bytes, checksum_address
from enclave_agent.errors import CryptoError, ProtocolError

__all__ = [
    "DEFAULT_MAX_CHUNK",
    "KEY_COMMITMENT_TAG",
    "MAGIC",
    "MAX_CHUNKS",
    "VERSION",
    "chain_commitment",
    "decode_entries",
    "encode_entries",
    "find_entry",
    "key_commitment",
    "key_table_hash",
    "split_chunks",
]

logger = logging.getLogger(__name__)

MAGIC = b"ESP"
VERSION = 1
DEFAULT_MAX_CHUNK = 96 * 1024  # under the 128 KiB mempool limit with room for the call envelope
MAX_CHUNKS = 0xFFFF  # chunk indices and counts are uint16 on chain
_HEADER_BYTES = len(MAGIC) + 1 + 4
_LENGTH_BYTES = 4
_MAX_CIPHERTEXT = 2**32 - 1
_ZERO32 = bytes(32)
KEY_COMMITMENT_TAG = keccak(b"enclave-share/posting-key/v1")


def encode_entries(entries: Sequence[tuple[str, bytes]]) -> bytes:
    """Serialise ``(recipient address, ciphertext)`` pairs into one posting payload."""
    parts = [MAGIC, bytes([VERSION]), len(entries).to_bytes(4, "big")]
    seen: set[bytes] = set()
    for index, (recipient, ciphertext) in enumerate(entries):
        try:
            raw = address_bytes(recipient)
        except CryptoError as exc:
            raise ProtocolError(f"posting entry {index}: {exc}") from None
        if raw in seen:
            raise ProtocolError(f"posting entry {index}: recipient {checksum_address(raw)} appears twice")
        seen.add(raw)
        if len(ciphertext) > _MAX_CIPHERTEXT:
            raise ProtocolError(f"posting entry {index}: ciphertext longer than 2**32 - 1 bytes")
        parts += [raw, len(ciphertext).to_bytes(_LENGTH_BYTES, "big"), bytes(ciphertext)]
    return b"".join(parts)


def _entry_spans(data: memoryview) -> list[tuple[bytes, int, int]]:
    """Check a whole posting payload and give each entry's (raw recipient, start, end)
    without copying any ciphertext."""
    if len(data) < _HEADER_BYTES:
        raise ProtocolError(f"posting truncated: {len(data)} bytes, header needs {_HEADER_BYTES}")
    if bytes(data[: len(MAGIC)]) != MAGIC:
        raise ProtocolError("posting does not start with the magic bytes 'ESP'")
    version = data[len(MAGIC)]
    if version != VERSION:
        raise ProtocolError(f"unsupported posting version {version} (expected {VERSION})")
    count = int.from_bytes(data[len(MAGIC) + 1 : _HEADER_BYTES], "big")
    offset = _HEADER_BYTES
    spans: list[tuple[bytes, int, int]] = []
    seen: set[bytes] = set()
    for index in range(count):
        if len(data) - offset < ADDRESS_BYTES + _LENGTH_BYTES:
            raise ProtocolError(f"posting truncated in the header of entry {index} of {count}")
        raw = bytes(data[offset : offset + ADDRESS_BYTES])
        offset += ADDRESS_BYTES
        length = int.from_bytes(data[offset : offset + _LENGTH_BYTES], "big")
        offset += _LENGTH_BYTES
        if len(data) - offset < length:
            raise ProtocolError(
                f"posting truncated in entry {index} of {count}: ciphertext needs {length} bytes, "
                f"{len(data) - offset} left"
            )
        if raw in seen:
            raise ProtocolError(f"posting names recipient {checksum_address(raw)} twice")
        seen.add(raw)
        spans.append((raw, offset, offset + length))
        offset += length
    if offset != len(data):
        raise ProtocolError(f"posting has {len(data) - offset} trailing bytes after {count} entries")
    return spans


def decode_entries(payload: bytes | memoryview) -> list[tuple[str, bytes]]:
    """Parse a posting payload into ``(checksummed recipient, ciphertext)`` pairs."""
    data = memoryview(payload)
    return [(checksum_address(raw), bytes(data[start:end])) for raw, start, end in _entry_spans(data)]


def find_entry(payload: bytes | memoryview, recipient: str) -> bytes | None:
    """The ciphertext for ``recipient`` in a posting payload, or None if it has none.

    The payload is checked whole, exactly as ``decode_entries`` checks it, but only this
    recipient's ciphertext is copied and no address is checksummed: every recipient
    reads every posting, so that work would be quadratic in the consortium's size."""
    try:
        wanted = address_bytes(recipient)
    except CryptoError as exc:
        raise ProtocolError(f"posting recipient: {exc}") from None
    data = memoryview(payload)
    for raw, start, end in _entry_spans(data):
        if raw == wanted:
            return bytes(data[start:end])
    return None


def split_chunks(payload: bytes, max_chunk: int = DEFAULT_MAX_CHUNK) -> list[bytes]:
    """Cut ``payload`` into chunks of at most ``max_chunk`` bytes (one chunk if it is empty)."""
    if isinstance(max_chunk, bool) or not isinstance(max_chunk, int) or max_chunk < 1:
        raise CryptoError(f"max_chunk must be a positive int, got {max_chunk!r}")
    data = bytes(payload)
    chunks = [data[i : i + max_chunk] for i in range(0, len(data), max_chunk)] or [b""]
    if len(chunks) > MAX_CHUNKS:
        raise ProtocolError(
            f"posting of {len(data)} bytes needs {len(chunks)} chunks of {max_chunk} bytes, "
            f"more than the {MAX_CHUNKS} the contract accepts"
        )
    return chunks


def chain_commitment(chunks: Sequence[bytes]) -> bytes:
    """The keccak256 hash chain over ``chunks`` that ShareExchange checks."""
    if len(chunks) == 0:
        raise ProtocolError("a posting has at least one chunk")
    running = _ZERO32
    for chunk in chunks:
        running = keccak(running + keccak(bytes(chunk)))
    return running


def _word(value: int) -> bytes:
    return int(value).to_bytes(32, "big")


def key_commitment(
    chain_id: int, exchange: str, round_id: int, sender: str, recipient: str, key: bytes
) -> bytes:
    """``keccak256(abi.encode(tag, chainId, exchange, roundId, sender, recipient, key))``,
    as ShareExchange computes it to check a complaint's revealed key."""
    if len(key) != 32:
        raise CryptoError("a message key is 32 bytes")
    if isinstance(chain_id, bool) or not 0 <= int(chain_id) < 2**256 or not 0 <= int(round_id) < 2**256:
        raise CryptoError("chain id and round id must be uint256 values")
    return keccak(
        KEY_COMMITMENT_TAG
        + _word(chain_id)
        + bytes(12)
        + address_bytes(exchange)
        + _word(round_id)
        + bytes(12)
        + address_bytes(sender)
        + bytes(12)
        + address_bytes(recipient)
        + bytes(key)
    )


def key_table_hash(table: Sequence[bytes]) -> bytes:
    """``keccak256(abi.encodePacked(bytes32[]))`` of a key table."""
    if any(len(entry) != 32 for entry in table):
        raise CryptoError("key table entries are 32 bytes")
    return keccak(b"".join(bytes(entry) for entry in table))
