"""Rounds as an operator sees them: defaults for opening one derived from its input
tag, everything the chain says about one (participants by organisation name, stage,
deadlines, contributors, exclusions, blame, abort, gas, where its result goes) and
waiting for one to end."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from enclave_agent.crypto import mask_graph
from enclave_agent.model.logistic import contribution_length
from enclave_agent.operator.models import STATS_TAG, list_models, opened_round
from enclave_agent.operator.session import Session
from enclave_agent.protocol import stages

# Which stage a transaction belongs to, by the first round event it emitted.
_EVENT_STAGES = {
    "RoundOpened": "open",
    "SharesPosted": "posting",
    "PostingClosed": "posting",
    "ComplaintFiled": "complaints",
    "ComplaintJudged": "complaints",
    "MemberExcluded": "complaints",
    "FusedCommitted": "fusing",
    "RecoveryStarted": "recovery",
    "RecoveryKeysRevealed": "recovery",
    "RoundCompleted": "fusing",
    "RoundAborted": "abort",
    "FusedRevealed": "reveal",
    "MemberBlamed": "reveal",
}
FINAL_STATES = ("completed", "aborted")


def default_output(tag: str) -> str:
    """``column-stats`` rounds release statistics, ``train:S:P`` rounds are models (an
    earlier training step must be asked for as intermediate), anything else a model."""
    return "statistic" if tag == STATS_TAG else "shared-model"


def default_length(tag: str, features: int) -> int | None:
    """The vector length of the built-in inputs over ``features`` columns (None: unknown)."""
    if tag == STATS_TAG:
        return 2 * features + 1
    if tag.startswith("train:"):
        return contribution_length(features)
    return None


def _bits(bitmap: int, count: int) -> list[int]:
    return [i for i in range(count) if bitmap >> i & 1]


def _logs(session: Session, round_id: int, from_block: int) -> dict[str, list[Any]]:
    events = session.contracts.exchange.events
    return {
        name: list(
            getattr(events, name)().get_logs(from_block=from_block, argument_filters={"roundId": round_id})
        )
        for name in _EVENT_STAGES
    }


def _gas(session: Session, logs: dict[str, list[Any]]) -> dict[str, int]:
    stage_of: dict[str, tuple[tuple[int, int], str]] = {}
    for name, entries in logs.items():
        for entry in entries:
            tx = entry["transactionHash"].hex()
            place = (int(entry["blockNumber"]), int(entry["logIndex"]))
            if tx not in stage_of or place < stage_of[tx][0]:
                stage_of[tx] = (place, _EVENT_STAGES[name])
    gas: dict[str, int] = {}
    for tx, (_, stage) in stage_of.items():
        used = int(session.contracts.w3.eth.get_transaction_receipt(tx)["gasUsed"])  # type: ignore[arg-type]
        gas[stage] = gas.get(stage, 0) + used
    return {"total": sum(gas.values()), **gas}


def _result(
    session: Session, round_id: int, output: str, state: str, min_contributors: int
) -> dict[str, Any]:
    models = [
        {"id": m["id"], "name": m["name"], "kind": m["kind"], "active": m["active"]}
        for m in list_models(session, round_id)
    ]
    if output == "intermediate":
        note = (
            "revealed inside the participants' enclaves only (joint scaling, training steps); never released"
        )
    elif output == "shared-model":
        note = "stays secret-shared among the holders; clients ask it through the gateway as a model"
        if state == "completed" and not models:
            note += f"; not yet: governance registers it first (enclave-agent model register {round_id} ...)"
    else:
        note = (
            f"column sums, means, population std and counts, released through the gateway only to clients "
            f"with access and only with at least {min_contributors} contributors"
        )
        if state == "completed" and not models:
            note += f"; not yet: governance registers it first (enclave-agent stat register {round_id} ...)"
        elif models:
            note += f"; ask: enclave-agent request --model {models[0]['id']} --column NAME"
    released = output == "statistic" and state == "completed" and any(m["active"] for m in models)
    return {"released": released, "note": note, "models": models}


def _deadline(at: int, now: int) -> dict[str, int]:
    return {"at": at, "seconds_left": max(0, at - now)}


def show(session: Session, round_id: int) -> dict[str, Any]:
    """Everything the chain says about ``round_id``, members named by organisation."""
    opened = opened_round(session, round_id)
    exchange = session.contracts.exchange.functions
    state = stages.ROUND_STATES[int(exchange.state(round_id).call())]
    spec, policy, threshold, epoch, posting_deadline, deadline, contributors, holders = exchange.roundInfo(
        round_id
    ).call()
    participants = [str(p) for p in exchange.participants(round_id).call()]
    floor, _ = exchange.roundGuards(round_id).call()
    logs = _logs(session, round_id, opened.block)
    names = session.names
    posted = {
        str(e["args"]["sender"])
        for e in logs["SharesPosted"]
        if e["args"]["chunkIndex"] + 1 == e["args"]["chunkCount"]
    }
    fused = {str(e["args"]["member"]) for e in logs["FusedCommitted"]}
    excluded = {
        str(e["args"]["member"]): stages.EXCLUSION_REASONS[int(e["args"]["reason"])]
        for e in logs["MemberExcluded"]
    }
    now = session.chain_time()
    members = []
    for index, address in enumerate(participants):
        members.append(
            names.enclave(address)
            | {
                "posted": address in posted,
                "fused": address in fused,
                "contributor": bool(int(contributors) >> index & 1),
                "holder": bool(int(holders) >> index & 1),
                "excluded": excluded.get(address),
            }
        )
    aborted = None
    if logs["RoundAborted"]:
        args = logs["RoundAborted"][0]["args"]
        aborted = {
            "reason": stages.ABORT_REASONS[int(args["reason"])],
            "culprits": [names.enclave(c) for c in args["culprits"]],
        }
    recovery = None
    if logs["RecoveryStarted"]:  # additive t-of-n: who was absent, who owed keys, who revealed
        args = logs["RecoveryStarted"][0]["args"]
        recovery = {
            "absent": [names.label(participants[i]) for i in _bits(int(args["absent"]), len(participants))],
            "owing": [names.label(participants[i]) for i in _bits(int(args["owing"]), len(participants))],
            "revealed": [names.label(str(e["args"]["member"])) for e in logs["RecoveryKeysRevealed"]],
            "deadline": _deadline(int(args["recoveryDeadline"]), now),
        }
    blame = [
        {
            "member": names.enclave(e["args"]["member"]),
            "reporter": names.enclave(e["args"]["reporter"]),
            "reason": stages.BLAME_REASONS[int(e["args"]["reason"])],
        }
        for e in logs["MemberBlamed"]
    ]
    output = stages.OUTPUT_KINDS[int(policy[0])]
    return {
        "round": round_id,
        "tag": opened.tag,
        "state": state,
        "epoch": int(epoch),
        "spec": {
            "length": int(spec[0]),
            "frac_bits": int(spec[1]),
            "scheme": stages.SCHEMES[int(spec[2])],
            "encoding": stages.ENCODINGS[int(spec[3])],
            "threshold": int(threshold),
            "mask_degree": int(spec[5]),
            # The fewest colluding participants that can learn one participant's input:
            # t holders of a Shamir round; an additive round's mask connectivity.
            "collusion_bound": int(threshold)
            if int(spec[2]) == stages.SCHEMES.index("shamir")
            else mask_graph.collusion_bound(len(participants), int(spec[5])),
        },
        "output": {"kind": output, "min_contributors": int(policy[1]), "floor": int(floor)},
        "deadlines": {
            "posting": _deadline(int(posting_deadline), now),
            "round": _deadline(int(deadline), now),
        },
        "participants": members,
        "contributors": [names.label(participants[i]) for i in _bits(int(contributors), len(participants))],
        "holders": [names.label(participants[i]) for i in _bits(int(holders), len(participants))],
        "exclusions": [{"member": names.enclave(m), "reason": r} for m, r in excluded.items()],
        "recovery": recovery,
        "blame": blame,
        "aborted": aborted,
        "gas": _gas(session, logs),
        "result": _result(session, round_id, output, state, int(policy[1])),
    }


def progress(session: Session, round_id: int, from_block: int) -> tuple[str, str]:
    """(state, one progress line) without reading receipts: cheap enough to poll."""
    exchange = session.contracts.exchange
    state = stages.ROUND_STATES[int(exchange.functions.state(round_id).call())]
    participants = exchange.functions.participants(round_id).call()
    info = exchange.functions.roundInfo(round_id).call()
    now = session.chain_time()
    n = len(participants)
    if state == "posting":
        posted = sum(
            1 for p in participants if int.from_bytes(exchange.functions.shareCommitment(round_id, p).call())
        )
        return (
            state,
            f"round {round_id}: posting, {posted}/{n} posted, posting closes in {max(0, info[4] - now)} s",
        )
    if state in ("fusing", "expired"):
        fused = exchange.events.FusedCommitted().get_logs(
            from_block=from_block, argument_filters={"roundId": round_id}
        )
        left = f"deadline in {info[5] - now} s" if info[5] > now else "deadline passed, waiting for finalize"
        return state, f"round {round_id}: {state}, {len(fused)}/{n} fused, {left}"
    if state == "aborted":
        aborted = exchange.events.RoundAborted().get_logs(
            from_block=from_block, argument_filters={"roundId": round_id}
        )
        reason = int(aborted[0]["args"]["reason"]) if aborted else 0
        culprits = (
            ", ".join(session.names.label(str(c)) for c in aborted[0]["args"]["culprits"]) if aborted else ""
        )
        return (
            state,
            f"round {round_id}: aborted ({stages.ABORT_REASONS[reason]}: {culprits or 'nobody named'})",
        )
    contributors = bin(int(info[6])).count("1")
    return state, f"round {round_id}: {state} ({contributors} of {n} contributed)"


def wait(
    session: Session,
    round_id: int,
    *,
    timeout: float,
    interval: float,
    report: Callable[[str], None],
) -> str:
    """Poll until the round is completed or aborted (returned) or ``timeout`` seconds
    pass ("timeout"); ``report`` gets each new progress line."""
    opened = opened_round(session, round_id)
    deadline = time.monotonic() + timeout
    last = ""
    while True:
        state, line = progress(session, round_id, opened.block)
        if line != last:
            report(line)
            last = line
        if state in FINAL_STATES:
            return state
        if time.monotonic() >= deadline:
            return "timeout"
        time.sleep(interval)
