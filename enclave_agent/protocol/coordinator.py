"""The coordinator's side: open a share-exchange round over the synchronised
epoch's providers."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path

from web3 import Web3
from web3.contract.contract import ContractFunction
from web3.types import TxReceipt

from enclave_agent.chain import Contracts, ErrorDecoder, TxSender, connect
from enclave_agent.chain.manifest import load_manifest
from enclave_agent.config import load_account
from enclave_agent.crypto.field import PRIME61, RING64
from enclave_agent.errors import ConfigError
from enclave_agent.protocol import stages

log = logging.getLogger(__name__)


def encode_tag(tag: str) -> bytes:
    raw = tag.encode()
    if not raw or len(raw) > 32:
        raise ConfigError(f"input tag must be 1..32 bytes, got {len(raw)}")
    return raw.ljust(32, b"\0")


def round_arguments(
    *,
    tag: str,
    length: int,
    scheme: str,
    encoding: str,
    threshold: int | None,
    participants: int,
    frac_bits: int,
    now: int,
    posting_window: int,
    window: int,
    output: str,
    min_contributors: int | None,
) -> tuple[object, ...]:
    """Validate and build the openRound arguments (clear errors before any transaction).
    ``min_contributors`` None: every participant for a statistic (the safe release rule),
    0 otherwise (nothing is released)."""
    if scheme not in stages.SCHEMES:
        raise ConfigError(f"scheme must be one of {stages.SCHEMES}")
    if encoding not in stages.ENCODINGS:
        raise ConfigError(f"encoding must be one of {stages.ENCODINGS}")
    if output not in stages.OUTPUT_KINDS:
        raise ConfigError(f"output must be one of {stages.OUTPUT_KINDS}")
    if length < 1:
        raise ConfigError(f"length must be >= 1, got {length}")
    if not 0 <= frac_bits <= 40:
        raise ConfigError(f"frac-bits must be 0..40, got {frac_bits}")
    if posting_window < 1 or window < posting_window:
        raise ConfigError("need 1 <= posting-window <= window (seconds)")
    if threshold is None:
        threshold = participants if scheme == "additive" else max(2, participants - 1)
    if min_contributors is None:
        min_contributors = participants if output == "statistic" else 0
    if not 0 <= min_contributors <= participants:
        raise ConfigError(
            f"min-contributors must be 0..{participants} (the participants), got {min_contributors}"
        )
    modulus = RING64 if scheme == "additive" else PRIME61
    spec = (length, frac_bits, stages.SCHEMES.index(scheme), stages.ENCODINGS.index(encoding), modulus)
    policy = (stages.OUTPUT_KINDS.index(output), min_contributors)
    return (encode_tag(tag), spec, threshold, now + posting_window, now + window, policy)


@dataclass(frozen=True)
class RoundRequest:
    """What a coordinator asks for; deadlines are seconds from now."""

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


def open_round_call(w3: Web3, contracts: Contracts, request: RoundRequest) -> ContractFunction:
    """The openRound call over the active providers, validated before any transaction."""
    participants = len(contracts.registry.functions.activeMembers(1).call())
    # The next block's time: "latest" lags on an idle chain and misses any offset the
    # node applies to the next block (evm_increaseTime); "pending" has both.
    chain_time = max(int(w3.eth.get_block(tag)["timestamp"]) for tag in ("latest", "pending"))
    args = round_arguments(
        tag=request.tag,
        length=request.length,
        scheme=request.scheme,
        encoding=request.encoding,
        threshold=request.threshold,
        participants=participants,
        frac_bits=request.frac_bits,
        # The chain clock moves only with blocks: an idle chain lags the wall clock,
        # and deadlines computed from it could already have passed.
        now=max(chain_time, int(time.time())),
        posting_window=request.posting_window,
        window=request.window,
        output=request.output,
        min_contributors=request.min_contributors,
    )
    return contracts.exchange.functions.openRound(*args)


def round_id_of(contracts: Contracts, receipt: TxReceipt) -> int:
    events = contracts.exchange.events.RoundOpened().process_receipt(receipt)
    return int(events[0]["args"]["roundId"])


def open_round(
    manifest_path: Path, key_file: Path, request: RoundRequest, *, rpc_url: str | None = None
) -> int:
    """Open a round as the coordinator whose key is in `key_file`; returns its id."""
    manifest = load_manifest(manifest_path)
    account = load_account(key_file, "coordinator key")
    w3 = connect(rpc_url or manifest.rpc_url)
    contracts = Contracts(w3, manifest)
    call = open_round_call(w3, contracts, request)
    receipt = TxSender(w3, account, ErrorDecoder.from_manifest(manifest)).send(call, label="open-round")
    round_id = round_id_of(contracts, receipt)
    log.info("opened round %d (%s/%s, d=%d)", round_id, request.scheme, request.encoding, request.length)
    return round_id
