"""Posting payloads, chunking and the keccak hash-chain commitment."""

from __future__ import annotations

import pytest
from Crypto.Hash import keccak as pycryptodome_keccak
from eth_utils.address import to_checksum_address

from enclave_agent.crypto import posting
from enclave_agent.errors import CryptoError, ProtocolError

ALICE = "0x5B38Da6a701c568545dCfcB03FcB875f56beddC4"
BOB = "0xAb8483F64d9C6d1EcF9b849Ae677dD3315835cb2"
CAROL = "0x4B20993Bc481177ec7E8f571ceCaE8A9e22C02db"
ENTRIES = [(ALICE, b"\x00" * 33), (BOB, bytes(range(200))), (CAROL, b"")]


def keccak256(data: bytes) -> bytes:
    """An implementation independent of the one under test (pycryptodome)."""
    return pycryptodome_keccak.new(digest_bits=256, data=data).digest()


def test_round_trip() -> None:
    payload = posting.encode_entries(ENTRIES)
    assert posting.decode_entries(payload) == ENTRIES


def test_decoded_addresses_are_checksummed() -> None:
    payload = posting.encode_entries([(a.lower(), c) for a, c in ENTRIES])
    decoded = posting.decode_entries(payload)
    assert [a for a, _ in decoded] == [to_checksum_address(a) for a, _ in ENTRIES]


def test_known_layout() -> None:
    payload = posting.encode_entries([("0x" + "11" * 20, b"\xaa\xbb"), ("0x" + "22" * 20, b"")])
    assert payload == (
        b"ESP\x01"
        + (2).to_bytes(4, "big")
        + b"\x11" * 20
        + b"\x00\x00\x00\x02"
        + b"\xaa\xbb"
        + b"\x22" * 20
        + b"\x00\x00\x00\x00"
    )


def test_empty_posting_round_trips() -> None:
    payload = posting.encode_entries([])
    assert payload == b"ESP\x01\x00\x00\x00\x00"
    assert posting.decode_entries(payload) == []


def test_every_truncation_is_refused() -> None:
    payload = posting.encode_entries(ENTRIES)
    for length in range(len(payload)):
        with pytest.raises(ProtocolError, match="truncated"):
            posting.decode_entries(payload[:length])


def test_trailing_bytes_are_refused() -> None:
    payload = posting.encode_entries(ENTRIES)
    with pytest.raises(ProtocolError, match="1 trailing bytes"):
        posting.decode_entries(payload + b"\x00")


def test_bad_magic_or_version_is_refused() -> None:
    payload = posting.encode_entries(ENTRIES)
    with pytest.raises(ProtocolError, match="version 2"):
        posting.decode_entries(payload[:3] + b"\x02" + payload[4:])
    with pytest.raises(ProtocolError, match="magic"):
        posting.decode_entries(b"XSP" + payload[3:])


def test_count_larger_than_the_entries_is_refused() -> None:
    payload = posting.encode_entries(ENTRIES)
    with pytest.raises(ProtocolError, match="truncated in the header of entry 3"):
        posting.decode_entries(payload[:4] + (4).to_bytes(4, "big") + payload[8:])
    with pytest.raises(ProtocolError, match="trailing"):
        posting.decode_entries(payload[:4] + (2).to_bytes(4, "big") + payload[8:])


def test_duplicate_recipients_are_refused() -> None:
    one = bytes.fromhex(ALICE[2:]) + (1).to_bytes(4, "big") + b"x"
    crafted = b"ESP\x01" + (2).to_bytes(4, "big") + one + one
    with pytest.raises(ProtocolError, match=f"{ALICE} twice"):
        posting.decode_entries(crafted)
    with pytest.raises(ProtocolError, match="appears twice"):
        posting.encode_entries([(ALICE, b"a"), (ALICE.lower(), b"b")])


@pytest.mark.parametrize("address", ["0x1234", "5B38Da6a701c568545dCfcB03FcB875f56beddC4", ALICE.swapcase()])
def test_encode_refuses_bad_addresses(address: str) -> None:
    with pytest.raises(ProtocolError, match="entry 1"):
        posting.encode_entries([(BOB, b""), (address, b"c")])


# --- chunks and commitment -----------------------------------------------------


@pytest.mark.parametrize("size", [0, 1, 95, 96, 97, 96 * 3, 1000])
def test_split_chunks_reassembles(size: int) -> None:
    payload = bytes(i % 251 for i in range(size))
    chunks = posting.split_chunks(payload, max_chunk=96)
    assert len(chunks) >= 1
    assert b"".join(chunks) == payload
    assert all(len(c) <= 96 for c in chunks)
    assert all(len(c) == 96 for c in chunks[:-1])
    assert len(chunks) == max(1, -(-size // 96))


def test_split_chunks_default_size_and_empty_payload() -> None:
    assert posting.split_chunks(b"") == [b""]
    chunks = posting.split_chunks(bytes(200 * 1024))
    assert [len(c) for c in chunks] == [96 * 1024, 96 * 1024, 8 * 1024]


def test_split_chunks_limits() -> None:
    for bad in (0, -1, 1.5, True):
        with pytest.raises(CryptoError, match="max_chunk"):
            posting.split_chunks(b"abc", max_chunk=bad)  # type: ignore[arg-type]
    assert len(posting.split_chunks(bytes(0xFFFF), max_chunk=1)) == 0xFFFF
    with pytest.raises(ProtocolError, match="65535"):
        posting.split_chunks(bytes(0x10000), max_chunk=1)


def test_chain_commitment_known_vectors() -> None:
    # keccak256("") is the well-known constant; the chain is built from it by hand.
    empty = bytes.fromhex("c5d2460186f7233c927e7db2dcc703c0e500b653ca82273b7bfad8045d85a470")
    assert keccak256(b"") == empty
    assert posting.chain_commitment([b""]) == keccak256(bytes(32) + empty)

    chunks = [b"first chunk", b"", bytes(range(256)) * 3]
    c = bytes(32)
    for chunk in chunks:
        c = keccak256(c + keccak256(chunk))
    assert posting.chain_commitment(chunks) == c


def test_chain_commitment_is_order_and_boundary_sensitive() -> None:
    a, b = b"aaaa", b"bbbb"
    assert posting.chain_commitment([a, b]) != posting.chain_commitment([b, a])
    assert posting.chain_commitment([a + b]) != posting.chain_commitment([a, b])
    assert posting.chain_commitment([a]) != posting.chain_commitment([a, b""])


def test_chain_commitment_over_split_payload() -> None:
    payload = posting.encode_entries(ENTRIES)
    chunks = posting.split_chunks(payload, max_chunk=64)
    assert len(chunks) == 5
    c = bytes(32)
    for chunk in chunks:
        c = keccak256(c + keccak256(chunk))
    assert posting.chain_commitment(chunks) == c
    assert c != bytes(32)


def test_chain_commitment_needs_a_chunk() -> None:
    with pytest.raises(ProtocolError, match="at least one chunk"):
        posting.chain_commitment([])


# ------------------------------------------------------------------ key commitments


def test_key_commitment_is_the_contracts_abi_encoding() -> None:
    """keccak256(abi.encode(bytes32 tag, uint256 chainid, address exchange, uint256 roundId,
    address sender, address recipient, bytes32 key)), as ShareExchange recomputes it."""
    from eth_abi import encode as abi_encode

    key = bytes(range(32))
    expected = keccak256(
        abi_encode(
            ["bytes32", "uint256", "address", "uint256", "address", "address", "bytes32"],
            [keccak256(b"enclave-share/posting-key/v1"), 31337, CAROL, 7, ALICE, BOB, key],
        )
    )
    assert keccak256(b"enclave-share/posting-key/v1") == posting.KEY_COMMITMENT_TAG
    assert posting.key_commitment(31337, CAROL, 7, ALICE, BOB, key) == expected
    # Each field binds: another recipient, round, chain or key gives another commitment.
    others = {
        posting.key_commitment(31337, CAROL, 7, ALICE, CAROL, key),
        posting.key_commitment(31337, CAROL, 8, ALICE, BOB, key),
        posting.key_commitment(1, CAROL, 7, ALICE, BOB, key),
        posting.key_commitment(31337, CAROL, 7, ALICE, BOB, bytes(32)),
        posting.key_commitment(31337, CAROL, 7, BOB, ALICE, key),
    }
    assert expected not in others and len(others) == 5


def test_key_table_hash_is_abi_encode_packed() -> None:
    table = [bytes(32), bytes([1]) * 32, bytes([2]) * 32]
    assert posting.key_table_hash(table) == keccak256(b"".join(table))


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: posting.key_commitment(1, CAROL, 1, ALICE, BOB, b"short"), "32 bytes"),
        (lambda: posting.key_commitment(-1, CAROL, 1, ALICE, BOB, bytes(32)), "uint256"),
        (lambda: posting.key_commitment(1, "0x12", 1, ALICE, BOB, bytes(32)), "address"),
        (lambda: posting.key_table_hash([b"x"]), "32 bytes"),
    ],
)
def test_key_commitment_refuses_bad_input(call, message) -> None:
    with pytest.raises(CryptoError, match=message):
        call()


def test_find_entry_gives_one_recipients_ciphertext() -> None:
    payload = posting.encode_entries(ENTRIES)
    for recipient, ciphertext in ENTRIES:
        assert posting.find_entry(payload, recipient) == ciphertext
        assert posting.find_entry(payload, recipient.lower()) == ciphertext
    assert posting.find_entry(payload, "0x" + "33" * 20) is None
    with pytest.raises(ProtocolError, match="recipient"):
        posting.find_entry(payload, "0x1234")


def malformed_variants(payload: bytes) -> list[bytes]:
    """Every truncation, a trailing byte, bad version and magic, wrong counts, and a
    recipient named twice (after its first entry)."""
    twice = payload[:4] + (4).to_bytes(4, "big") + payload[8:] + bytes.fromhex(ALICE[2:]) + bytes(4)
    return [
        *(payload[:length] for length in range(len(payload))),
        payload + b"\x00",
        payload[:3] + b"\x02" + payload[4:],
        b"XSP" + payload[3:],
        payload[:4] + (4).to_bytes(4, "big") + payload[8:],
        payload[:4] + (2).to_bytes(4, "big") + payload[8:],
        twice,
    ]


def test_find_entry_refuses_whatever_decode_entries_refuses() -> None:
    # The first recipient's entry comes first: a reader that stopped at it would miss a
    # malformed remainder. Same checks, same messages, whichever entry is wanted.
    for bad in malformed_variants(posting.encode_entries(ENTRIES)):
        with pytest.raises(ProtocolError) as expected:
            posting.decode_entries(bad)
        for recipient, _ in ENTRIES:
            with pytest.raises(ProtocolError) as found:
                posting.find_entry(bad, recipient)
            assert str(found.value) == str(expected.value)
