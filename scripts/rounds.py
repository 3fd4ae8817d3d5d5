"""Open a share-exchange round over the synchronised providers (coordinator).

brownie run scripts/rounds.py open_round column-stats 61 additive seeded
brownie run scripts/rounds.py open_round my-input 31 shamir dense 2
brownie run scripts/rounds.py state 1
"""

from __future__ import annotations

from brownie import chain

from enclave_agent.protocol import stages
from enclave_agent.protocol.coordinator import round_arguments
from scripts.common import actor, contracts


def open_round(
    tag: str, length: int | str, scheme: str = "additive", encoding: str = "seeded", threshold: str = ""
) -> int:
    registry, exchange, _ = contracts()
    args = round_arguments(
        tag=tag,
        length=int(length),
        scheme=scheme,
        encoding=encoding,
        threshold=int(threshold) if threshold else None,
        participants=len(registry.activeMembers(1)),
        frac_bits=16,
        now=chain.time(),
        posting_window=120,
        window=300,
        output="shared-model",
        min_contributors=None,  # statistic: every participant
    )
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
