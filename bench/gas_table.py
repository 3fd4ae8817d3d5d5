"""Gas of the contract operations an enclave-share consortium pays for, at n = 3, 10, 50 and
64 providers (64 is the most a role may have).

Driven by `tests/contracts/test_gas.py` (which builds real consortia: admitted
organisations, signed quotes with proof of possession, synchronised epochs, clients
signing their requests) and printed as a markdown table, also written to reports/gas.md:

    brownie test tests/contracts/test_gas.py -p no:cacheprovider -s

Payloads are realistic in size and entropy (calldata gas depends on both; since EIP-7623
data-heavy transactions pay a floor of about 40 gas per byte):
- seeded posting: a 16-byte header, then per recipient (n - 1 of them) one AEAD ciphertext
  of a 32-byte PRG seed: 12-byte nonce + 32 bytes + 16-byte tag;
- dense posting, d = 31 fixed-point elements of 8 bytes: per recipient 12 + 248 + 16 bytes;
- query: one ciphertext of the d = 31 features per provider; partial: one 8-byte score.

Every posting's first chunk carries its key table (n 32-byte key commitments). The
complaint rows are a Shamir round (t = 2) in which one contributor complains about
another with the committed key: `complain` carries the sender's key table, every other
contributor judges (the last vote excludes the sender); a holder then blames another
after completion.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from eth_utils import keccak

logger = logging.getLogger(__name__)

NONCE, TAG, HEADER = 12, 16, 16
SEED = 32
DENSE_D, ELEMENT = 31, 8
REPORT = Path("reports/gas.md")


def noise(size: int, label: str) -> bytes:
    """Deterministic bytes that look like ciphertext (no zero runs)."""
    out = b""
    counter = 0
    while len(out) < size:
        out += keccak(text=f"{label}-{counter}")
        counter += 1
    return out[:size]


def seeded_payload(n: int, label: str) -> bytes:
    return noise(HEADER + (n - 1) * (NONCE + SEED + TAG), f"seeded-{label}")


def dense_payload(n: int, label: str, d: int = DENSE_D) -> bytes:
    return noise(HEADER + (n - 1) * (NONCE + d * ELEMENT + TAG), f"dense-{label}")


@dataclass(frozen=True)
class _Total:
    """A sum of several transactions' gas, shown as one row."""

    gas_used: int


@dataclass(frozen=True)
class Row:
    operation: str
    n: int
    gas: int
    payload: int  # bytes of variable-size calldata (0 when none)


def measure_membership_join(world: Any, register_next: Callable[[], Any]) -> list[Row]:
    """`world` has n - 1 providers and a gateway, synchronised; `register_next()` registers
    the n-th provider. Measures that registration and the digests of the new epoch."""
    n = len(world.providers) + 1
    rows = [_row("register (the n-th provider joins)", n, register_next())]
    digests = world.sync()
    rows.append(_row("postMembershipDigest (not last)", n, digests[0]))
    rows.append(_row("postMembershipDigest (last, synchronises)", n, digests[-1]))
    return rows


def measure_membership_leave(
    world: Any,
    register_next: Callable[[], Any],
    expire: Callable[[], Any],
    travel_past_deadline: Callable[[], None],
) -> list[Row]:
    """`world` has n providers and a gateway, synchronised. Measures the members leaving:
    revoking the first-registered provider (the compaction moves every later member),
    expiring one laggard, and expiring every provider (only the gateway posted)."""
    n = len(world.providers)
    rows: list[Row] = []
    first = world.providers[0]
    rows.append(
        _row(
            "revoke (first-registered provider)",
            n,
            world.registry.revoke(first.address, {"from": world.governor}),
        )
    )
    world.forget(first.address)
    register_next()  # n providers again, new epoch
    laggard = world.providers[0]
    world.sync([m for m in world.members if m is not laggard])
    travel_past_deadline()
    rows.append(_row("expireUnsynchronised (drops 1 laggard)", n, expire()))
    world.forget(laggard.address)
    register_next()  # n providers again, new epoch; only the gateway posts
    world.sync(world.gateways)
    travel_past_deadline()
    rows.append(_row("expireUnsynchronised (drops all n providers)", n, expire()))
    for p in list(world.providers):
        world.forget(p.address)
    return rows


def _row(operation: str, n: int, tx: Any, payload: int = 0) -> Row:
    logger.info("%s n=%d gas=%d", operation, n, tx.gas_used)
    return Row(operation, n, int(tx.gas_used), payload)


def measure(world: Any, client: Any) -> list[Row]:
    """Gas of each round and request operation in `world` (a synchronised consortium with n
    providers and a gateway, the `Consortium` of tests/contracts/helpers.py)."""
    n = len(world.providers)
    rows: list[Row] = []

    def add(operation: str, tx: Any, payload: int = 0) -> None:
        rows.append(_row(operation, n, tx, payload))

    # A seeded round and a dense round, both completed.
    for encoding, build in (("seeded", seeded_payload), ("dense d=31", dense_payload)):
        round_id, tx = world.open_round(encoding=1 if encoding == "seeded" else 0, length=DENSE_D)
        if encoding == "seeded":
            add("openRound", tx)
        for i, sender in enumerate(world.providers):
            payload = build(n, f"{round_id}-{i}")
            posted = world.post(round_id, sender, [payload])[-1]
            if i == 0:
                add(f"postShares ({encoding}, first sender)", posted, len(payload))
            if i == n - 1:
                add(f"postShares ({encoding}, last sender, closes posting)", posted, len(payload))
        fused = world.fuse_all(round_id)
        if encoding == "seeded":
            add("postFused (first member)", fused[0])
            add("postFused (last member, completes)", fused[-1])

    # Verifiable complaints: a Shamir round, one complaint, n - 2 judges, one blame.
    round_id, _ = world.open_round(scheme=1, threshold=2, length=DENSE_D)
    for i, sender in enumerate(world.providers):
        world.post(round_id, sender, [seeded_payload(n, f"{round_id}-{i}")])
    p = world.providers
    add("complain (valid key: judging opens)", world.complain(round_id, p[0], p[1]), 32 + 32 * n)
    votes = world.judge(round_id, p[2:], True)
    add("judgeComplaint (first; one vote)", votes[0])
    add("judgeComplaint (last: excludes the sender)", votes[-1])
    add("judgeComplaint, all n - 2 judges together", _Total(sum(int(v.gas_used) for v in votes)))
    if n > 3:  # at n = 3 the exclusion left fewer than the floor of 3: the round aborted
        assert [world.fuse(round_id, m) for m in p if m is not p[1]][-1].events["RoundCompleted"]
    blamed_round = world.completed_round(encoding=1, length=DENSE_D)
    blame = world.exchange.reportMisbehaviour(
        blamed_round, p[2].address, 1, keccak(b"reveal key"), {"from": p[0].account}
    )
    add("reportMisbehaviour (32-byte evidence)", blame, 32)
    round_id, _ = world.open_round(scheme=1, threshold=2, length=DENSE_D)
    for i, sender in enumerate(world.providers):
        world.post(round_id, sender, [seeded_payload(n, f"{round_id}-{i}")])
    add(
        "complain (key not committed: both excluded)",
        world.complain(round_id, p[0], p[1], key=keccak(b"x")),
        32 + 32 * n,
    )

    round_id = world.completed_round(encoding=1, length=DENSE_D)
    model = world.register_model(round_id, fee=10**15)
    world.admit_client(client, quota=10, deposit=10**17)
    query = noise(n * (NONCE + DENSE_D * ELEMENT + TAG), "query")
    request_id, tx = world.submit(model, client, query=query)
    add("submitRequest (1 row, client's EIP-712 signature checked)", tx, len(query))
    partial = noise(NONCE + ELEMENT + TAG, "partial")
    tx = world.gateway.postPartial(request_id, partial, {"from": world.providers[0].account})
    add("postPartial", tx, len(partial))
    tx = world.gateway.completeRequest(request_id, keccak(b"result"), {"from": world.gateways[0].account})
    add("completeRequest", tx)
    batch = [world.submit(model, client, query=query)[0] for _ in range(8)]
    tx = world.gateway.postPartials(batch, [partial] * 8, {"from": world.providers[0].account})
    add("postPartials (8 requests in one transaction: a provider's block under load)", tx, 8 * len(partial))
    add("postPartials, per request of those 8", _Total(int(tx.gas_used) // 8), len(partial))
    tx = world.gateway.completeRequests(batch, [keccak(b"result")] * 8, {"from": world.gateways[0].account})
    add("completeRequests (8 requests in one transaction: the gateway's step under load)", tx)
    return rows


def measure_maximum(
    world: Any,
    operator: Any,
    isolated: Callable[[Callable[[], Any]], Any],
    travel_past_deadline: Callable[[], None],
) -> list[Row]:
    """The registry at its largest: 64 providers and 64 gateways (both roles full), all run by
    `operator` (an organisation admitted for both roles with 64 enclaves each), synchronised.
    Each operation that removes members is measured from that same state (`isolated(fn)`
    runs `fn` and then restores the chain and the model)."""
    size = 2 * 64
    rows: list[Row] = []

    def add(operation: str, tx: Any) -> None:
        rows.append(_row(operation, size, tx))

    for role in (1, 2):  # Provider, Gateway
        while len([m for m in world.members if m.role == role]) < 64:
            _, tx = world.register(role, operator=operator)
    add("register (the 128th member: both roles full)", tx)
    digests = world.sync()
    add("postMembershipDigest (last of 128, synchronises)", digests[-1])
    governor = {"from": world.governor}
    add(
        "revoke (first-registered of 128)",
        isolated(lambda: world.registry.revoke(world.members[0].address, governor)),
    )
    add(
        "suspendOrganisation (revokes all 128)",
        isolated(lambda: world.registry.suspendOrganisation(operator, governor)),
    )
    measurement = world.members[0].measurement
    add(
        "revokeMeasurement (deactivates 64 providers)",
        isolated(lambda: world.registry.revokeMeasurement(1, measurement, governor)),
    )

    def expire(posting: int) -> Any:
        """A member leaves and a new one joins (a new epoch of 128 members); `posting` of them
        post their digest; after the deadline anyone expires the others."""
        first = world.members[0]
        world.registry.revoke(first.address, governor)
        world.forget(first.address)
        world.register(first.role, operator=operator)
        world.sync(world.members[:posting])
        travel_past_deadline()
        return world.registry.expireUnsynchronised({"from": world.governor})

    add("expireUnsynchronised (drops 1 of 128)", isolated(lambda: expire(size - 1)))
    add("expireUnsynchronised (drops 127 of 128)", isolated(lambda: expire(1)))
    return rows


def render(rows: Sequence[Row]) -> str:
    """A markdown table: one line per operation, one gas column per n."""
    sizes = sorted({r.n for r in rows})
    operations = list(dict.fromkeys(r.operation for r in rows))
    by_key = {(r.operation, r.n): r for r in rows}
    header = "| operation | " + " | ".join(f"gas n={n}" for n in sizes) + " | payload bytes |"
    lines = [header, "|" + "---|" * (len(sizes) + 2)]
    for op in operations:
        cells = [f"{by_key[(op, n)].gas:,}" if (op, n) in by_key else "" for n in sizes]
        payloads = [
            str(by_key[(op, n)].payload) for n in sizes if (op, n) in by_key and by_key[(op, n)].payload
        ]
        lines.append(f"| {op} | " + " | ".join(cells) + f" | {' / '.join(payloads)} |")
    return "\n".join(lines) + "\n"


def render_maximum(rows: Sequence[Row], cap: int = 2**24) -> str:
    """The operations at the registry's largest size, with their share of the gas cap."""
    lines = [
        "| operation (64 providers + 64 gateways) | gas | share of the 2^24 cap |",
        "|---|---:|---:|",
    ]
    lines += [f"| {r.operation} | {r.gas:,} | {100 * r.gas / cap:.1f}% |" for r in rows]
    return "\n".join(lines) + "\n"


def write_report(
    rows: Sequence[Row], path: Path = REPORT, note: str = "", maximum: Sequence[Row] = ()
) -> str:
    text = "# Contract gas\n\n" + (note + "\n\n" if note else "") + render(rows)
    if maximum:
        text += "\n" + render_maximum(maximum)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return text
