"""The leak scan's needle filter: low-entropy words that ABI encoding produces by
chance are skipped, everything else is found wherever it sits in a blob."""

from __future__ import annotations

import struct

from enclave_devnet import distinctive, found_on_chain


def _abi_words(*values: int) -> bytes:
    return b"".join(v.to_bytes(32, "big") for v in values)


def test_a_round_float_is_not_distinctive_because_abi_words_contain_it() -> None:
    quarter = struct.pack(">d", 0.25)
    blob = _abi_words(0x3FD0, 7)  # a small integer followed by another one
    assert quarter in blob
    assert not distinctive(quarter)
    assert found_on_chain([quarter], [blob]) == []


def test_an_integral_float_is_not_distinctive_because_a_zero_word_and_a_hash_contain_it() -> None:
    """The demo's 2215.0 (five zero bytes, then 4ea140) was once found on chain: a zero
    word (a key table's own entry, an empty bitmap) followed by any word that begins
    4ea140 (a hash, a ciphertext) contains it, about once in 16 million such pairs."""
    integral = struct.pack("<d", 2215.0)
    blob = _abi_words(0) + bytes.fromhex("4ea140") + b"\x5a" * 29
    assert integral in blob
    assert len(set(integral)) == 4 and not distinctive(integral)
    assert found_on_chain([integral], [blob]) == []


def test_a_distinctive_value_is_found_at_any_offset_in_any_blob() -> None:
    needle = struct.pack(">d", 14.127)
    assert distinctive(needle)
    blobs = [_abi_words(1, 2), b"\x01" * 13 + needle + b"\x02" * 5]
    assert found_on_chain([needle, struct.pack(">d", 0.25)], blobs) == [needle]


def test_absent_needles_are_not_reported_and_duplicates_are_reported_once() -> None:
    present, absent = b"leak-me!", b"not-here"
    assert found_on_chain([present, present, absent], [b"xx" + present]) == [present]
    assert found_on_chain([absent], []) == []
