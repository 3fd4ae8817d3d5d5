"""The local Anvil keeps recent history only, in memory, like a geth full node: long
runs no longer fill the disk under ``~/.foundry/anvil/tmp/``, and everything the agents
do is shown to work without an archive node."""

from __future__ import annotations

import pytest

from enclave_devnet.anvil import HISTORY_ARGS, AnvilProcess
from enclave_devnet.errors import AnvilError

KEPT = int(HISTORY_ARGS[1])


@pytest.fixture(scope="module")
def node():
    with AnvilProcess() as running:
        running.mine(KEPT + 40)
        yield running


@pytest.fixture(scope="module")
def account(node: AnvilProcess) -> str:
    first: str = node.rpc("eth_accounts")[0]
    return first


def test_recent_state_is_served(node: AnvilProcess, account: str) -> None:
    head = int(node.rpc("eth_blockNumber"), 16)
    assert int(node.rpc("eth_getBalance", account, hex(head - KEPT + 8)), 16) > 0


def test_state_older_than_the_kept_history_is_refused(node: AnvilProcess, account: str) -> None:
    head = int(node.rpc("eth_blockNumber"), 16)
    with pytest.raises(AnvilError, match="BlockOutOfRange"):
        node.rpc("eth_getBalance", account, hex(head - KEPT - 20))


def test_old_blocks_and_their_headers_stay(node: AnvilProcess) -> None:
    # The chain-identity check reads the genesis and deployment blocks: headers, not state.
    assert node.rpc("eth_getBlockByNumber", "0x1", False)["number"] == "0x1"
