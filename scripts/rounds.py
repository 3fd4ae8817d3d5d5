"""Open a share-exchange round over the synchronised providers (coordinator).

brownie run scripts/rounds.py open_round column-stats 61 additive seeded
brownie run scripts/rounds.py open_round my-input 31 shamir dense 2
brownie run scripts/rounds.py state 1
"""

from __future__ import annotations

from brownie import chain

from enclave_agent.onchain import Role
from enclave_agent.protocol import stages
from enclave_agent.protocol.round_spec import RoundRequest, round_arguments
from scripts.common import actor, contracts


def open_round(
    tag: str, length: int | str, scheme: str = "additive", encoding: str = "seeded", threshold: str = ""
) -> int:
    registry, exchange, _ = contracts()
    request = RoundRequest(
        tag, int(length), scheme=scheme, encoding=encoding, threshold=int(threshold) if threshold else None
    )
    args = round_arguments(request, participants=len(registry.activeMembers(Role.PROVIDER)), now=chain.time())
    tx = exchange.openRound(*args, {"from": actor()})
    round_id = int(tx.events["RoundOpened"]["roundId"])
    print(f"opened round {round_id}")
    return round_id


def state(round_id: int | str) -> str:
    _, exchange, _ = contracts()
    name = stages.ROUND_STATES[exchange.state(int(round_id))]
    print(f"round {round_id}: {name}")
    return name


def main() -> None:
    print(__doc__)
