"""Cryptography of the enclave agent: ring/field arithmetic, fixed point, secret
sharing, robust (Reed-Solomon) reconstruction, the CSPRNG/PRG, pairwise and message
keys and AEAD, share messages, postings and their key commitments.

Only the ``cryptography`` package's primitives are used (X25519, HKDF-SHA256,
AES-256-GCM, AES-256-CTR) and the OS CSPRNG; numpy does the vector arithmetic.
"""

from __future__ import annotations

from enclave_agent.crypto.addresses import address_bytes, checksum_address
from enclave_agent.crypto.aead import (
    PairContext,
    decrypt,
    derive_message_key,
    derive_pairwise_key,
    encrypt,
    public_key_bytes,
    share_ad,
)
from enclave_agent.crypto.field import (
    PRIME61,
    RING64,
    Elements,
    add,
    check_elements,
    check_modulus,
    mul,
    mul_scalar,
    neg,
    reduce_int,
    sub,
    sum_arrays,
)
from enclave_agent.crypto.fixed_point import decode, encode, max_abs_value
from enclave_agent.crypto.posting import (
    chain_commitment,
    decode_entries,
    encode_entries,
    find_entry,
    key_commitment,
    key_table_hash,
    split_chunks,
)
from enclave_agent.crypto.prg import expand_seed, new_seed, random_elements
from enclave_agent.crypto.reed_solomon import Decoded, UncorrectableSharesError, robust_reconstruct
from enclave_agent.crypto.shares import ShareKind, SplitResult, fuse, open_message, split_vector
from enclave_agent.crypto.sharing import (
    additive_split,
    combine_additive,
    interpolate_at,
    lagrange_coefficients,
    shamir_reconstruct,
    shamir_split,
)

__all__ = [
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
    "decrypt",
    "derive_message_key",
    "derive_pairwise_key",
    "encode",
    "encode_entries",
    "encrypt",
    "expand_seed",
    "find_entry",
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
]
