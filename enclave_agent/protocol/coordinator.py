"""The coordinator's side: open a share-exchange round over the synchronised
epoch's providers."""

from __future__ import annotations

import logging
import time
from pathlib import Path

from web3 import Web3
from web3.contract.contract import ContractFunction
from web3.types import TxReceipt

from enclave_agent.chain import Contracts, ErrorDecoder, TxSender, connect
from enclave_agent.chain.manifest import load_manifest
from enclave_agent.config import load_account
from enclave_agent.onchain import Role
from enclave_agent.protocol.round_spec import RoundRequest, large_posting_warning, round_arguments

log = logging.getLogger(__name__)


def open_round_call(w3: Web3, contracts: Contracts, request: RoundRequest) -> ContractFunction:
    """The openRound call over the active providers, validated before any transaction."""
    participants = len(contracts.registry.functions.activeMembers(Role.PROVIDER).call())
    # The next block's time: "latest" lags on an idle chain and misses any offset the
    # node applies to the next block (evm_increaseTime); "pending" has both.
    chain_time = max(int(w3.eth.get_block(tag)["timestamp"]) for tag in ("latest", "pending"))
    # The chain clock moves only with blocks: an idle chain lags the wall clock, and
    # deadlines computed from it could already have passed.
    args = round_arguments(request, participants=participants, now=max(chain_time, int(time.time())))
    warning = large_posting_warning(request, participants)
    if warning is not None:
        log.warning("%s", warning)
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
