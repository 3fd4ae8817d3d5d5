"""Share messages of a round: split, route, open, fuse, reconstruct the sum."""

from __future__ import annotations

import dataclasses
import itertools

import numpy as np
import pytest

from enclave_agent.crypto import field, fixed_point, shares
from enclave_agent.crypto.field import PRIME61, RING64
from enclave_agent.crypto.prg import expand_seed, random_elements
from enclave_agent.crypto.shares import ShareKind, SplitResult
from enclave_agent.crypto.sharing import shamir_reconstruct
from enclave_agent.errors import CryptoError, ProtocolError

D = 7
CONTEXT = b"chain=31337/contract=0xd8b9/round=7"


def configurations() -> list[tuple[str, str, int, int, int]]:
    out = []
    for scheme, encoding in itertools.product(("additive", "shamir"), ("dense", "seeded")):
        moduli = (RING64, PRIME61) if scheme == "additive" else (PRIME61,)
        for m in moduli:
            for n in (2, 3, 5):
                for t in range(1, n + 1):
                    out.append((scheme, encoding, m, n, t))
    return out


def run_round(
    secrets: list[np.ndarray], scheme: str, encoding: str, m: int, t: int
) -> tuple[list[np.ndarray], list[SplitResult]]:
    """Every participant splits, messages are routed and opened, each recipient fuses."""
    n = len(secrets)
    results = [
        shares.split_vector(
            s, scheme=scheme, encoding=encoding, n=n, t=t, own_index=i, modulus=m, context=CONTEXT
        )
        for i, s in enumerate(secrets)
    ]
    received: list[list[np.ndarray]] = [[r.kept] for r in results]
    for sender, result in enumerate(results):
        assert sorted(result.messages) == [j for j in range(n) if j != sender]
        for j, message in result.messages.items():
            received[j].append(shares.open_message(message, length=D, modulus=m, context=CONTEXT))
    return [shares.fuse(r, m) for r in received], results


@pytest.mark.parametrize(("scheme", "encoding", "m", "n", "t"), configurations())
def test_fused_shares_reconstruct_the_sum(scheme: str, encoding: str, m: int, n: int, t: int) -> None:
    values = [np.linspace(-50.0, 50.0, D) * (i + 1) for i in range(n)]
    secrets = [fixed_point.encode(v, 16, m, headroom=n) for v in values]
    fused, results = run_round(secrets, scheme, encoding, m, t)
    total = field.sum_arrays(secrets, m)
    for f in fused:
        assert f.dtype == np.uint64
        assert f.shape == (D,)
    if scheme == "additive":
        assert np.array_equal(field.sum_arrays(fused, m), total)
        for drop in range(n):
            partial = field.sum_arrays([f for i, f in enumerate(fused) if i != drop], m)
            assert not np.array_equal(partial, total)
    else:
        for subset in itertools.combinations(range(n), t):
            assert np.array_equal(shamir_reconstruct({i + 1: fused[i] for i in subset}), total), subset
        if t >= 2:
            for subset in itertools.combinations(range(n), t - 1):
                got = shamir_reconstruct({i + 1: fused[i] for i in subset})
                assert not np.array_equal(got, total), subset
    decoded = fixed_point.decode(total, 16, m)
    assert np.allclose(decoded, np.sum(values, axis=0), atol=n * 2.0**-17)
    # Message sizes: seeds are 33 bytes whatever D is; dense carry 8 bytes per element.
    for sender, result in enumerate(results):
        others = [j for j in range(n) if j != sender]
        n_seeded = 0
        if encoding == "seeded":
            n_seeded = len(others) if scheme == "additive" else t - 1
        for position, j in enumerate(others):
            msg = result.messages[j]
            if position < n_seeded:
                assert len(msg) == 33
                assert msg[0] == ShareKind.SEED
            else:
                assert len(msg) == 1 + 8 * D
                assert msg[0] == ShareKind.DENSE


@pytest.mark.parametrize(("n", "t"), [(2, 1), (4, 2), (5, 3), (5, 5)])
def test_shamir_seeded_shares_lie_on_one_polynomial(n: int, t: int) -> None:
    secret = random_elements(D, PRIME61)
    for own in range(n):
        result = shares.split_vector(
            secret,
            scheme="shamir",
            encoding="seeded",
            n=n,
            t=t,
            own_index=own,
            modulus=PRIME61,
            context=CONTEXT,
        )
        all_shares = {own + 1: result.kept}
        for j, msg in result.messages.items():
            all_shares[j + 1] = shares.open_message(msg, length=D, modulus=PRIME61, context=CONTEXT)
        assert len(all_shares) == n
        for subset in itertools.combinations(sorted(all_shares), t):
            assert np.array_equal(shamir_reconstruct({x: all_shares[x] for x in subset}), secret)


def test_seeded_messages_expand_with_the_round_context() -> None:
    secret = random_elements(D, RING64)
    result = shares.split_vector(
        secret, scheme="additive", encoding="seeded", n=3, t=3, own_index=1, modulus=RING64, context=CONTEXT
    )
    for msg in result.messages.values():
        assert len(msg) == 33
        expected = expand_seed(msg[1:], D, RING64, CONTEXT)
        assert np.array_equal(shares.open_message(msg, length=D, modulus=RING64, context=CONTEXT), expected)
    # The owner keeps the correcting share.
    opened = [
        shares.open_message(m, length=D, modulus=RING64, context=CONTEXT) for m in result.messages.values()
    ]
    assert np.array_equal(shares.fuse([result.kept, *opened], RING64), secret)
    # The same seed opened in another round yields an unrelated share.
    wrong = [
        shares.open_message(m, length=D, modulus=RING64, context=CONTEXT + b"x")
        for m in result.messages.values()
    ]
    assert not np.array_equal(shares.fuse([result.kept, *wrong], RING64), secret)


def test_fresh_seeds_every_split() -> None:
    secret = random_elements(D, RING64)
    kw = dict(scheme="additive", encoding="seeded", n=3, t=3, own_index=0, modulus=RING64, context=CONTEXT)
    a = shares.split_vector(secret, **kw)  # type: ignore[arg-type]
    b = shares.split_vector(secret, **kw)  # type: ignore[arg-type]
    assert a.messages[1] != b.messages[1]
    assert not np.array_equal(a.kept, b.kept)


def test_dense_message_layout() -> None:
    share = np.array([1, 2**64 - 1, 0x0102030405060708], dtype=np.uint64)
    msg = shares.dense_message(share)
    assert msg == b"\x01" + (1).to_bytes(8, "little") + b"\xff" * 8 + bytes.fromhex("0807060504030201")
    assert np.array_equal(shares.open_message(msg, length=3, modulus=RING64, context=b""), share)


def test_n_equal_one_keeps_the_secret() -> None:
    secret = random_elements(D, PRIME61)
    for scheme, encoding in itertools.product(("additive", "shamir"), ("dense", "seeded")):
        r = shares.split_vector(
            secret, scheme=scheme, encoding=encoding, n=1, t=1, own_index=0, modulus=PRIME61, context=CONTEXT
        )
        assert r.messages == {}
        assert np.array_equal(r.kept, secret)


def test_split_result_is_frozen() -> None:
    r = SplitResult(np.zeros(1, dtype=np.uint64), {})
    with pytest.raises(dataclasses.FrozenInstanceError):
        r.kept = np.ones(1, dtype=np.uint64)  # type: ignore[misc]


@pytest.mark.parametrize(
    ("overrides", "pattern"),
    [
        ({"scheme": "xor"}, "scheme"),
        ({"encoding": "sparse"}, "encoding"),
        ({"scheme": "shamir", "modulus": RING64}, "prime field"),
        ({"modulus": 2**32}, "unsupported modulus"),
        ({"own_index": 3}, "own_index"),
        ({"own_index": -1}, "own_index"),
        ({"t": 4}, "threshold"),
        ({"t": 0}, "threshold"),
        ({"n": 0, "t": 0, "own_index": 0}, "number of shares"),
        ({"context": "text"}, "context"),
    ],
)
def test_split_vector_argument_errors(overrides: dict[str, object], pattern: str) -> None:
    kw: dict[str, object] = dict(
        scheme="additive", encoding="dense", n=3, t=2, own_index=0, modulus=PRIME61, context=CONTEXT
    )
    kw.update(overrides)
    with pytest.raises(CryptoError, match=pattern):
        shares.split_vector(np.zeros(D, dtype=np.uint64), **kw)  # type: ignore[arg-type]


def test_split_vector_secret_errors() -> None:
    kw = dict(scheme="shamir", encoding="dense", n=3, t=2, own_index=0, modulus=PRIME61, context=CONTEXT)
    with pytest.raises(CryptoError, match="1-D"):
        shares.split_vector(np.zeros((2, 2), dtype=np.uint64), **kw)  # type: ignore[arg-type]
    with pytest.raises(CryptoError, match="dtype uint64"):
        shares.split_vector(np.zeros(2, dtype=np.int64), **kw)  # type: ignore[arg-type]
    with pytest.raises(CryptoError, match="out of range"):
        shares.split_vector(np.array([PRIME61], dtype=np.uint64), **kw)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("plaintext", "pattern"),
    [
        (b"", "empty"),
        (b"\x00" + bytes(32), "kind 0"),
        (b"\x03" + bytes(32), "kind 3"),
        (b"\x02" + bytes(31), "33"),
        (b"\x02" + bytes(33), "33"),
        (b"\x01" + bytes(8 * D - 1), str(1 + 8 * D)),
        (b"\x01" + bytes(8 * D + 8), str(1 + 8 * D)),
        (b"\x01" + bytes(8 * (D - 1)) + PRIME61.to_bytes(8, "little"), "outside the modulus"),
        (b"\x01" + bytes(8 * (D - 1)) + b"\xff" * 8, "outside the modulus"),
    ],
)
def test_open_message_refuses_malformed(plaintext: bytes, pattern: str) -> None:
    with pytest.raises(ProtocolError, match=pattern):
        shares.open_message(plaintext, length=D, modulus=PRIME61, context=CONTEXT)


def test_open_message_ring_accepts_any_word_and_field_accepts_p_minus_1() -> None:
    msg = b"\x01" + b"\xff" * 8
    assert int(shares.open_message(msg, length=1, modulus=RING64, context=b"")[0]) == 2**64 - 1
    msg = b"\x01" + (PRIME61 - 1).to_bytes(8, "little")
    assert int(shares.open_message(msg, length=1, modulus=PRIME61, context=b"")[0]) == PRIME61 - 1


def test_open_message_argument_errors() -> None:
    with pytest.raises(CryptoError, match="unsupported modulus"):
        shares.open_message(b"\x02" + bytes(32), length=D, modulus=97, context=b"")
    with pytest.raises(CryptoError, match="length"):
        shares.open_message(b"\x02" + bytes(32), length=-1, modulus=RING64, context=b"")


def test_opened_dense_share_is_writable_and_independent() -> None:
    msg = bytearray(b"\x01" + bytes(8))
    share = shares.open_message(bytes(msg), length=1, modulus=RING64, context=b"")
    share += np.uint64(5)
    assert int(share[0]) == 5


def test_fuse_errors() -> None:
    with pytest.raises(CryptoError, match="shape"):
        shares.fuse([np.zeros(2, dtype=np.uint64), np.zeros(3, dtype=np.uint64)], RING64)
    with pytest.raises(CryptoError, match="empty"):
        shares.fuse([], RING64)


def test_check_message_validates_without_expanding() -> None:
    """A recipient keeps a checked message and expands it when it fuses: the check
    refuses exactly what opening refuses, and a seed's check does no expansion."""
    seed = shares.seed_message(b"\x01" * 32)
    assert shares.check_message(seed, length=10**9, modulus=RING64) is ShareKind.SEED  # no 8 GB expansion
    dense = shares.dense_message(np.arange(D, dtype=np.uint64))
    assert shares.check_message(dense, length=D, modulus=PRIME61) is ShareKind.DENSE
    bad = shares.dense_message(np.full(D, PRIME61, dtype=np.uint64))
    for call in (shares.check_message, lambda m, **kw: shares.open_message(m, context=CONTEXT, **kw)):
        with pytest.raises(ProtocolError, match="outside the modulus"):
            call(bad, length=D, modulus=PRIME61)
        with pytest.raises(ProtocolError, match="seed share message is 32 bytes"):
            call(seed[:-1], length=D, modulus=RING64)
