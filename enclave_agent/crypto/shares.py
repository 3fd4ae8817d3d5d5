"""The share messages of one round: split a secret vector, open and fuse shares.

Each participant splits its (fixed-point encoded) vector into n shares, keeps its
own and sends one plaintext message to every other participant j (0-based index),
to be encrypted under the pairwise key before posting. A message is::

    kind (1 byte) || 32-byte seed            (ShareKind.SEED: 33 bytes whatever d is)
    kind (1 byte) || d little-endian uint64  (ShareKind.DENSE: 1 + 8d bytes)

Encodings:

- additive dense: n uniformly random-looking shares summing to the secret.
- additive seeded: every other participant gets a fresh seed and its share is
  ``expand_seed(seed, d, m, context)``; the owner keeps the correcting share
  ``secret - sum(expanded)``. All n - 1 messages are 33 bytes.
- shamir dense: ``f(j + 1)`` of a random degree t - 1 polynomial with ``f(0) = secret``.
- shamir seeded: the first t - 1 other participants get seeds whose expansions are
  their shares (uniformly random points, exactly as a random polynomial's would be);
  f is the unique degree t - 1 polynomial through (0, secret) and those points, and
  the remaining n - t participants' shares and the owner's are computed from it by
  Lagrange interpolation and sent dense. This saves t - 1 of the n - 1 dense
  messages; with t = n every message is a seed.

Additive rounds may use a sparse mask (``crypto.mask_graph``): the owner then splits
into its neighbours' messages and its own share only.

``context`` must bind the round (chain, contract, round id): it keys the seed
expansion, so a seed replayed into another round expands to unrelated shares.
"""

from __future__ import annotations

import enum
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from enclave_agent.crypto.field import (
    PRIME61,
    Elements,
    check_elements,
    check_modulus,
    sub,
    sum_arrays,
)
from enclave_agent.crypto.prg import SEED_BYTES, expand_seed, new_seed
from enclave_agent.crypto.sharing import additive_split, check_threshold, interpolate_at, shamir_split
from enclave_agent.errors import CryptoError, ProtocolError
from enclave_agent.onchain import Encoding, Scheme

__all__ = [
    "ENCODINGS",
    "SCHEMES",
    "ShareKind",
    "SplitResult",
    "check_message",
    "dense_message",
    "fuse",
    "open_message",
    "seed_message",
    "split_vector",
]

logger = logging.getLogger(__name__)

SCHEMES = tuple(m.label for m in Scheme)  # the contracts' Scheme and Encoding, by label
ENCODINGS = tuple(m.label for m in Encoding)


class ShareKind(enum.IntEnum):
    """First byte of a share message."""

    DENSE = 1
    SEED = 2


@dataclass(frozen=True, eq=False)
class SplitResult:
    """The owner's own share and the plaintext message for each other participant index."""

    kept: Elements
    messages: dict[int, bytes]


def dense_message(share: Elements) -> bytes:
    """A DENSE message carrying ``share`` as little-endian uint64 words."""
    return bytes([ShareKind.DENSE]) + np.ascontiguousarray(share, dtype="<u8").tobytes()


def seed_message(seed: bytes) -> bytes:
    """A SEED message carrying a 32-byte PRG seed."""
    if len(seed) != SEED_BYTES:
        raise CryptoError(f"seed must be {SEED_BYTES} bytes")
    return bytes([ShareKind.SEED]) + bytes(seed)


def _check_split_args(scheme: str, encoding: str, n: int, t: int, own_index: int, modulus: int) -> int:
    m = check_modulus(modulus)
    if scheme not in SCHEMES:
        raise CryptoError(f"unknown sharing scheme {scheme!r}: expected one of {SCHEMES}")
    if encoding not in ENCODINGS:
        raise CryptoError(f"unknown share encoding {encoding!r}: expected one of {ENCODINGS}")
    check_threshold(n, t)
    if isinstance(own_index, bool) or not isinstance(own_index, int) or not 0 <= own_index < n:
        raise CryptoError(f"own_index must be an int in [0, n={n}), got {own_index!r}")
    if scheme == "shamir" and m != PRIME61:
        raise CryptoError("Shamir sharing needs the prime field 2**61 - 1, not the ring 2**64")
    return m


def split_vector(
    secret: Any,
    *,
    scheme: str,
    encoding: str,
    n: int,
    t: int,
    own_index: int,
    modulus: int,
    context: bytes,
    recipients: Sequence[int] | None = None,
) -> SplitResult:
    """Split a 1-D element vector into the owner's share and one message per other participant.

    For ``scheme="additive"`` the threshold ``t`` is only range-checked (n-of-n), and
    ``recipients`` may name the participants to share with (a sparse mask, see
    ``crypto.mask_graph``); every other participant when None. Shamir shares reach all.
    """
    m = _check_split_args(scheme, encoding, n, t, own_index, modulus)
    if not isinstance(context, bytes | bytearray):
        raise CryptoError("context must be bytes")
    x = check_elements(secret, m)
    if x.ndim != 1:
        raise CryptoError(f"the secret must be a 1-D vector, got shape {x.shape}")
    others = _recipients(scheme, n, own_index, recipients)
    if scheme == "additive" and encoding == "dense":
        split = additive_split(x, len(others) + 1, m)
        result = SplitResult(
            split[-1], {j: dense_message(share) for j, share in zip(others, split[:-1], strict=True)}
        )
    elif scheme == "additive":
        seeds = {j: new_seed() for j in others}
        expanded = [expand_seed(seeds[j], x.size, m, bytes(context)) for j in others]
        kept = sub(x, sum_arrays(expanded, m), m) if expanded else x.copy()
        result = SplitResult(kept, {j: seed_message(seeds[j]) for j in others})
    elif encoding == "dense":
        shares = shamir_split(x, n, t, m)
        result = SplitResult(shares[own_index], {j: dense_message(shares[j]) for j in others})
    else:
        result = _shamir_seeded(x, n, t, own_index, m, bytes(context), others)
    logger.debug("split a %d-element vector into %d %s/%s shares", x.size, n, scheme, encoding)
    return result


def _recipients(scheme: str, n: int, own_index: int, recipients: Sequence[int] | None) -> list[int]:
    others = [j for j in range(n) if j != own_index]
    if recipients is None:
        return others
    chosen = sorted(set(recipients))
    if len(chosen) != len(recipients) or not set(chosen) <= set(others):
        raise CryptoError(
            f"recipients must be distinct other participants in [0, {n}), got {list(recipients)}"
        )
    if scheme == "shamir" and chosen != others:
        raise CryptoError("a Shamir share must reach every other participant")
    return chosen


def _shamir_seeded(
    x: Elements, n: int, t: int, own_index: int, m: int, context: bytes, others: list[int]
) -> SplitResult:
    seeded, dense = others[: t - 1], others[t - 1 :]
    seeds = {j: new_seed() for j in seeded}
    points: dict[int, Elements] = {0: x}
    for j in seeded:
        points[j + 1] = expand_seed(seeds[j], x.size, m, context)
    messages = {j: seed_message(seeds[j]) for j in seeded}
    for j in dense:
        messages[j] = dense_message(interpolate_at(points, j + 1, m))
    kept = interpolate_at(points, own_index + 1, m)
    return SplitResult(kept, dict(sorted(messages.items())))


def check_message(plaintext: bytes, *, length: int, modulus: int) -> ShareKind:
    """The kind of a decrypted message, once it is a well-formed message for a share of
    ``length`` elements; ProtocolError if not. A seed is not expanded (its expansion
    cannot fail), so a recipient may keep the 33-byte message and expand it when fusing."""
    m = check_modulus(modulus)
    if isinstance(length, bool) or not isinstance(length, int) or length < 0:
        raise CryptoError(f"length must be a non-negative int, got {length!r}")
    if len(plaintext) == 0:
        raise ProtocolError("empty share message")
    try:
        kind = ShareKind(plaintext[0])
    except ValueError:
        raise ProtocolError(f"unknown share message kind {plaintext[0]}") from None
    if kind is ShareKind.SEED:
        if len(plaintext) != 1 + SEED_BYTES:
            raise ProtocolError(f"seed share message is {len(plaintext)} bytes, expected {1 + SEED_BYTES}")
        return kind
    expected = 1 + 8 * length
    if len(plaintext) != expected:
        raise ProtocolError(f"dense share message is {len(plaintext)} bytes, expected {expected}")
    try:
        check_elements(np.frombuffer(bytes(plaintext), dtype="<u8", offset=1), m)
    except CryptoError:
        raise ProtocolError("dense share message has an element outside the modulus") from None
    return kind


def open_message(plaintext: bytes, *, length: int, modulus: int, context: bytes) -> Elements:
    """The share carried by a decrypted message; ProtocolError if it is malformed."""
    if check_message(plaintext, length=length, modulus=modulus) is ShareKind.SEED:
        return expand_seed(bytes(plaintext[1:]), length, modulus, bytes(context))
    return np.frombuffer(bytes(plaintext), dtype="<u8", offset=1).astype(np.uint64)


def fuse(shares: Sequence[Any], modulus: int) -> Elements:
    """This participant's share of the aggregate: the sum of its kept and received shares."""
    return sum_arrays(shares, modulus)
