"""Pin the public surface of enclave_agent.crypto: other packages import exactly these names."""

from __future__ import annotations

import inspect

import enclave_agent.crypto as crypto
from enclave_agent.crypto import ShareKind

EXPECTED = {
    "PRIME61",
    "RING64",
    "Decoded",
    "Elements",
    "PairContext",
    "ShareKind",
    "SplitResult",
    "UncorrectableSharesError",
    "add",
    "additive_split",
    "address_bytes",
    "chain_commitment",
    "check_elements",
    "check_modulus",
    "checksum_address",
    "combine_additive",
    "decode",
    "decode_entries",
    "find_entry",
    "decrypt",
    "derive_message_key",
    "derive_pairwise_key",
    "encode",
    "encode_entries",
    "encrypt",
    "expand_seed",
    "fuse",
    "interpolate_at",
    "key_commitment",
    "key_table_hash",
    "lagrange_coefficients",
    "max_abs_value",
    "mul",
    "mul_scalar",
    "neg",
    "new_seed",
    "open_message",
    "public_key_bytes",
    "random_elements",
    "reduce_int",
    "robust_reconstruct",
    "shamir_reconstruct",
    "shamir_split",
    "share_ad",
    "split_chunks",
    "split_vector",
    "sub",
    "sum_arrays",
}


def test_all_is_pinned_and_resolves() -> None:
    assert set(crypto.__all__) == EXPECTED
    assert len(crypto.__all__) == len(EXPECTED)
    for name in crypto.__all__:
        assert getattr(crypto, name) is not None


def test_constants_and_kinds() -> None:
    assert crypto.RING64 == 2**64
    assert crypto.PRIME61 == 2**61 - 1
    assert (ShareKind.DENSE, ShareKind.SEED) == (1, 2)


def test_signatures_other_packages_rely_on() -> None:
    def params(fn: object) -> list[str]:
        return list(inspect.signature(fn).parameters)  # type: ignore[arg-type]

    assert params(crypto.split_vector) == [
        "secret",
        "scheme",
        "encoding",
        "n",
        "t",
        "own_index",
        "modulus",
        "context",
        "recipients",
    ]
    assert params(crypto.open_message) == ["plaintext", "length", "modulus", "context"]
    assert params(crypto.derive_pairwise_key) == [
        "own_private",
        "peer_public",
        "own_address",
        "peer_address",
        "ctx",
    ]
    assert params(crypto.share_ad) == ["chain_id", "contract", "round_id", "sender", "recipient", "purpose"]
    assert params(crypto.encode) == ["values", "frac_bits", "modulus", "headroom"]
    assert params(crypto.decode) == ["elements", "frac_bits", "modulus"]
    assert params(crypto.expand_seed) == ["seed", "length", "m", "context"]
    assert params(crypto.shamir_split)[:4] == ["secret", "n", "t", "m"]
    assert params(crypto.lagrange_coefficients) == ["xs", "m", "at"]
    assert params(crypto.split_chunks) == ["payload", "max_chunk"]
    assert inspect.signature(crypto.split_chunks).parameters["max_chunk"].default == 96 * 1024
