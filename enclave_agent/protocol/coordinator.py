"""The coordinator's side: open a share-exchange round over the synchronised
epoch's providers."""

from __future__ import annotations

import logging
from pathlib import Path

from eth_account import Account

from enclave_agent.chain import Contracts, ErrorDecoder, TxSender, connect
from enclave_agent.chain.manifest import load_manifest
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
    min_contributors: int,
) -> tuple[object, ...]:
    """Validate and build the openRound arguments (clear errors before any transaction)."""
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
    modulus = RING64 if scheme == "additive" else PRIME61
    spec = (length, frac_bits, stages.SCHEMES.index(scheme), stages.ENCODINGS.index(encoding), modulus)
    policy = (stages.OUTPUT_KINDS.index(output), min_contributors)
    return (encode_tag(tag), spec, threshold, now + posting_window, now + window, policy)


def open_round(
    *,
    manifest_path: Path,
    key_file: Path,
    tag: str,
    length: int,
    scheme: str = "additive",
    encoding: str = "seeded",
    threshold: int | None = None,
    frac_bits: int = 16,
    posting_window: int = 120,
    window: int = 300,
    output: str = "shared-model",
    min_contributors: int = 0,
    rpc_url: str | None = None,
) -> int:
    manifest = load_manifest(manifest_path)
    try:
        account = Account.from_key(key_file.read_text().strip())
    except OSError as exc:
        raise ConfigError(f"key file {key_file} cannot be read: {exc.strerror}") from exc
    except (ValueError, TypeError) as exc:
        raise ConfigError(f"key file {key_file} does not hold a hex private key") from exc
    w3 = connect(rpc_url or manifest.rpc_url)
    contracts = Contracts(w3, manifest)
    participants = len(contracts.registry.functions.activeMembers(1).call())
    now = int(w3.eth.get_block("latest")["timestamp"])
    args = round_arguments(
        tag=tag,
        length=length,
        scheme=scheme,
        encoding=encoding,
        threshold=threshold,
        participants=participants,
        frac_bits=frac_bits,
        now=now,
        posting_window=posting_window,
        window=window,
        output=output,
        min_contributors=min_contributors,
    )
    sender = TxSender(w3, account, ErrorDecoder.from_manifest(manifest))
    receipt = sender.send(contracts.exchange.functions.openRound(*args), label="open-round")
    events = contracts.exchange.events.RoundOpened().process_receipt(receipt)
    round_id = int(events[0]["args"]["roundId"])
    log.info("opened round %d (%s/%s, d=%d, n=%d)", round_id, scheme, encoding, length, participants)
    return round_id
