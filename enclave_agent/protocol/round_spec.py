"""The one builder of a round's openRound arguments, and the one set of defaults
every way of opening a round starts from (the operator CLI, the Brownie script, the
local consortium, the demo). Pure: validates before any transaction."""

from __future__ import annotations

from dataclasses import dataclass

from enclave_agent.crypto.field import PRIME61, RING64
from enclave_agent.errors import ConfigError
from enclave_agent.protocol import stages


def encode_tag(tag: str) -> bytes:
    raw = tag.encode()
    if not raw or len(raw) > 32:
        raise ConfigError(f"input tag must be 1..32 bytes, got {len(raw)}")
    return raw.ljust(32, b"\0")


@dataclass(frozen=True)
class RoundRequest:
    """What a coordinator asks for; deadlines are seconds from now. Its defaults are
    the one set every way of opening a round starts from (CLI, scripts, localnet)."""

    tag: str
    length: int
    scheme: str = "additive"
    encoding: str = "seeded"
    threshold: int | None = None
    frac_bits: int = 16
    posting_window: int = 120
    window: int = 300
    output: str = "shared-model"
    min_contributors: int | None = None  # None: every participant for a statistic, else 0
    mask_degree: int = 0  # additive: 0 shares with every pair, else k nearest (crypto.mask_graph)


def round_arguments(request: RoundRequest, *, participants: int, now: int) -> tuple[object, ...]:
    """Validate ``request`` and build the openRound arguments (clear errors before any
    transaction). ``min_contributors`` None: every participant for a statistic (the
    safe release rule), 0 otherwise (nothing is released)."""
    r = request
    if r.scheme not in stages.SCHEMES:
        raise ConfigError(f"scheme must be one of {stages.SCHEMES}")
    if r.encoding not in stages.ENCODINGS:
        raise ConfigError(f"encoding must be one of {stages.ENCODINGS}")
    if r.output not in stages.OUTPUT_KINDS:
        raise ConfigError(f"output must be one of {stages.OUTPUT_KINDS}")
    if r.length < 1:
        raise ConfigError(f"length must be >= 1, got {r.length}")
    if not 0 <= r.frac_bits <= 40:
        raise ConfigError(f"frac-bits must be 0..40, got {r.frac_bits}")
    if r.posting_window < 1 or r.window < r.posting_window:
        raise ConfigError("need 1 <= posting-window <= window (seconds)")
    if r.mask_degree and (r.scheme != "additive" or r.mask_degree < 2 or r.mask_degree % 2):
        raise ConfigError(
            f"mask-degree must be 0 (every pair) or an even number >= 2, and additive only; got "
            f"{r.mask_degree} for a {r.scheme} round"
        )
    threshold = r.threshold
    if threshold is None:
        threshold = participants if r.scheme == "additive" else max(2, participants - 1)
    if r.mask_degree and threshold != participants:
        raise ConfigError(
            f"mask-degree is for rounds every provider must complete: a threshold of {threshold} of "
            f"{participants} would make the shares of a provider's absent neighbours public, "
            "possibly all of them"
        )
    min_contributors = r.min_contributors
    if min_contributors is None:
        min_contributors = participants if r.output == "statistic" else 0
    if not 0 <= min_contributors <= participants:
        raise ConfigError(
            f"min-contributors must be 0..{participants} (the participants), got {min_contributors}"
        )
    modulus = RING64 if r.scheme == "additive" else PRIME61
    spec = (
        r.length,
        r.frac_bits,
        stages.SCHEMES.index(r.scheme),
        stages.ENCODINGS.index(r.encoding),
        modulus,
        r.mask_degree,
    )
    policy = (stages.OUTPUT_KINDS.index(r.output), min_contributors)
    return (encode_tag(r.tag), spec, threshold, now + r.posting_window, now + r.window, policy)


# Calldata and log data cost about this much gas per posted byte on the EVM (measured:
# a 7.2 MB dense posting took 289 M gas at n = 10, d = 10^5; see the README).
GAS_PER_POSTED_BYTE = 40
# Above this, a posting does not fit a block of 30 M gas on a public chain.
LARGE_POSTING_BYTES = 750_000


def posting_bytes(request: RoundRequest, participants: int) -> int:
    """About how many bytes each provider posts for ``request``: an 8-byte word per
    coordinate for every share that travels dense, 33 bytes for a seed, and 60 bytes of
    encryption and framing per recipient."""
    n, d = participants, request.length
    recipients = n - 1
    if request.mask_degree and request.scheme == "additive":
        recipients = min(recipients, request.mask_degree)
    if request.encoding == "dense":
        dense = recipients
    elif request.scheme == "shamir":  # seeds fix t - 1 shares, the other n - t go dense
        threshold = request.threshold or max(2, n - 1)
        dense = max(0, n - threshold)
    else:
        dense = 0
    return dense * 8 * d + (recipients - dense) * 33 + recipients * 60


def large_posting_warning(request: RoundRequest, participants: int) -> str | None:
    """What to tell a coordinator about a round whose postings are chain-bound, or None."""
    size = posting_bytes(request, participants)
    if size <= LARGE_POSTING_BYTES:
        return None
    return (
        f"each provider will post about {size / 1e6:.1f} MB (~{size * GAS_PER_POSTED_BYTE / 1e6:.0f} M gas) "
        f"for this round: it is bound by the chain's block gas, not by the agents; "
        f"additive seeded rounds post 33 bytes per recipient whatever the length"
    )


# What a request left at its defaults asks for (the CLI shows and uses these).
ROUND_DEFAULTS = RoundRequest(tag="", length=1)
