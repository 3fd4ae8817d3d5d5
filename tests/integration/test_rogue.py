"""Rogue members that really act, against three honest provider processes, the gateway
process and a real Anvil: the rogue (``rogue.Rogue``) is an attested enclave running
the approved code's library pieces, driven by the test to lie at one step.

- false complaints trying to shrink a round to a victim: the round completes with the
  honest contributors (or aborts), never over {rogue, victim}; what the rogue holds
  does not rebuild the victim's input;
- a holder that reveals a share other than the one it committed to, to everyone or
  to some recipients only: named on chain, and the aggregate is still right (n >= t + 2);
- a provider that returns a wrong partial statistic: corrected and named with
  n >= t + 2, detected and refused with n = t + 1.

(A valid complaint against a sender that posted garbage: ``test_faults.py``.)
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest

from enclave_agent.crypto import aead, posting
from enclave_agent.crypto.field import PRIME61
from enclave_agent.crypto.fixed_point import decode
from enclave_agent.errors import ContractRevert
from enclave_agent.gateway.auth import hash_api_key, new_api_key
from enclave_agent.gateway.client import GatewayClient, GatewayHTTPError
from enclave_agent.protocol import reveal
from enclave_agent.protocol.queries import statistic_metadata
from enclave_devnet import ABORTED, COMPLETED, FUSING, Consortium, dev_key, free_port, wait_until
from tests.integration.conftest import distinctive_inputs, make_consortium
from tests.integration.rogue import Rogue

HONEST, D, FRAC = 3, 8, 16
INPUTS = distinctive_inputs(HONEST + 1, D, seed=2024)
ROGUE_INPUT = INPUTS[HONEST]
COLUMNS = ["a", "b"]
# Column-statistics inputs: [sum a, sum b, sum a^2, sum b^2, rows] per provider.
STATS = [np.array([10.0 * (i + 1), -5.0 * i, 100.0 * (i + 1), 30.0 + i, 4.0 + i]) for i in range(HONEST + 1)]
CLIENT = 9
EXCLUDED_FALSE_COMPLAINT, EXCLUDED_KEY_MISMATCH = 2, 3
ABORT_TOO_FEW = 4
BLAME_REVEAL_MISMATCH, BLAME_WRONG_PARTIAL = 1, 4


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Consortium, Rogue, GatewayClient]]:
    for c in make_consortium(tmp_path_factory, "rogue"):
        for i in range(HONEST):
            c.add_agent(
                f"provider-{i}",
                operator_index=i + 1,
                inputs={"vec8": list(INPUTS[i]), "stats": list(STATS[i])},
            )
        port, key = free_port(), new_api_key()
        client = c.w3.eth.accounts[CLIENT]
        custody = c.root / "client.key"  # an API-key client is a custody account: the gateway signs
        custody.write_text(dev_key(CLIENT))
        custody.chmod(0o600)
        c.add_agent(
            "gateway",
            operator_index=HONEST + 2,
            role="gateway",
            extra=(
                f'[gateway]\nhost = "127.0.0.1"\nport = {port}\nrequest_timeout = 40\npartial_grace = 20\n'
                f'[gateway.api_keys]\n"{client}" = "{hash_api_key(key)}"\n'
                f'[gateway.custody_keys]\n"{client}" = "{custody}"\n'
            ),
        )
        c.wait_synchronised(HONEST)
        rogue = Rogue(c, operator_index=HONEST + 1)
        rogue.registered()
        wait_until(
            lambda: len(c.registry.functions.activeMembers(1).call()) == HONEST + 1, 30, "rogue member"
        )
        rogue.post_digest()
        c.wait_synchronised(HONEST + 1)
        c.w3.eth.wait_for_transaction_receipt(
            c.gateway.functions.setClientAccess(client, 100).transact({"from": c.governor})
        )
        yield c, rogue, GatewayClient(f"http://127.0.0.1:{port}", api_key=key, timeout=60)


def _address(c: Consortium, name: str) -> str:
    return c.agents[name].enclave_address()


def _honest(c: Consortium) -> list[str]:
    return [_address(c, f"provider-{i}") for i in range(HONEST)]


def _aggregate_inside(c: Consortium, name: str, round_id: int) -> np.ndarray | None:
    raw = c.agents[name].unseal(f"round/{round_id}/aggregate")
    return None if raw is None else decode(np.frombuffer(raw, dtype="<u8").astype(np.uint64), FRAC, PRIME61)


def _wait_aggregates(c: Consortium, round_id: int) -> list[np.ndarray]:
    names = [f"provider-{i}" for i in range(HONEST)]
    return wait_until(
        lambda: (lambda got: got if all(g is not None for g in got) else None)(
            [_aggregate_inside(c, n, round_id) for n in names]
        ),
        90,
        f"round {round_id}'s aggregate inside every honest enclave",
    )


def _tolerance(terms: int) -> float:
    return terms * 2.0 ** -(FRAC + 1)


# ------------------------------------------------------------------ false complaints


def test_false_complaints_cannot_shrink_a_round_to_a_victim(setup: tuple[Consortium, Rogue, Any]) -> None:
    """Issue 9's attack: the rogue accuses two honest providers of a 4-provider t = 2
    round, hoping to be left with one victim. Its first complaint is judged false and
    excludes it; it can accuse no more; the round completes over the three honest
    providers and the rogue learns nothing more than its own shares."""
    c, rogue, _ = setup
    victims = _honest(c)[:2]
    round_id = c.open_round("vec8", D, scheme="shamir", encoding="dense", threshold=2, output="intermediate")
    rogue.post_shares(round_id, ROGUE_INPUT)
    c.wait_round(round_id, states=(FUSING,))
    rogue.complain(round_id, victims[0])  # the real key: the ciphertext opens, the complaint is false
    excluded = wait_until(lambda: c.round_events(round_id, "MemberExcluded"), 60, "the verdict")
    assert [(e["args"]["member"], e["args"]["reason"]) for e in excluded] == [
        (rogue.address, EXCLUDED_FALSE_COMPLAINT)
    ]
    votes = c.round_events(round_id, "ComplaintJudged")
    assert sorted(v["args"]["judge"] for v in votes) == sorted(_honest(c)[2:] + victims[1:])
    assert not any(v["args"]["senderAtFault"] for v in votes)
    with pytest.raises(ContractRevert) as refused:
        rogue.complain(round_id, victims[1])
    # Excluded; or already past fusing (the honest agents re-fused and completed first).
    assert refused.value.error_name in ("RoundSenderExcluded", "RoundUnexpectedState")

    assert c.wait_round(round_id) == COMPLETED
    completed = c.round_events(round_id, "RoundCompleted")[0]["args"]
    participants = c.exchange.functions.participants(round_id).call()
    assert sorted(p for i, p in enumerate(participants) if completed["contributors"] >> i & 1) == sorted(
        _honest(c)
    )
    for aggregate in _wait_aggregates(c, round_id):
        assert np.max(np.abs(aggregate - np.sum(INPUTS[:HONEST], axis=0))) <= _tolerance(HONEST)
    # What the rogue holds: one Shamir point (t = 2) of each victim's input and no
    # reveal of any holder. Rebuilding from it gives noise, not the input.
    assert rogue.reveals_for_me(round_id) == []
    held = rogue.received(round_id)
    for victim, values in zip(victims, INPUTS[:2], strict=True):
        guess = decode(held[victim], FRAC, PRIME61)  # the best it can do with one point
        assert np.all(np.abs(guess - values) > 1.0)
    # The exclusion is visible in every agent's status.
    status = c.agents["provider-0"].status()
    assert status is not None
    assert {"member": rogue.address, "reason": "false-complaint"} in status["rounds"][str(round_id)][
        "excluded"
    ]


def test_a_key_the_sender_did_not_commit_to_excludes_both_and_aborts_below_the_floor(
    setup: tuple[Consortium, Rogue, Any],
) -> None:
    c, rogue, _ = setup
    victim = _honest(c)[0]
    round_id = c.open_round("vec8", D, scheme="shamir", encoding="seeded", threshold=2, output="intermediate")
    rogue.post_shares(round_id, ROGUE_INPUT)
    c.wait_round(round_id, states=(FUSING,))
    rogue.complain(round_id, victim, key=b"\x07" * 32)
    assert c.wait_round(round_id) == ABORTED
    excluded = {
        (e["args"]["member"], e["args"]["reason"]) for e in c.round_events(round_id, "MemberExcluded")
    }
    assert excluded == {(rogue.address, EXCLUDED_KEY_MISMATCH), (victim, EXCLUDED_KEY_MISMATCH)}
    aborted = c.round_events(round_id, "RoundAborted")[0]["args"]
    assert aborted["reason"] == ABORT_TOO_FEW
    # Nobody fused over {the two left}, nobody revealed anything.
    assert c.round_events(round_id, "FusedRevealed") == []


# ------------------------------------------------------------------ lying holders


def _rogue_holder_round(c: Consortium, rogue: Rogue) -> int:
    """An Intermediate Shamir round (t = 2 of 4) in which the rogue takes part honestly
    up to its fused commitment."""
    round_id = c.open_round("vec8", D, scheme="shamir", encoding="dense", threshold=2, output="intermediate")
    rogue.post_shares(round_id, ROGUE_INPUT)
    c.wait_round(round_id, states=(FUSING,))
    rogue.fuse_and_commit(round_id)
    assert c.wait_round(round_id) == COMPLETED
    return round_id


def _blames(c: Consortium, round_id: int, reason: int) -> list[Any]:
    return [e["args"] for e in c.round_events(round_id, "MemberBlamed") if e["args"]["reason"] == reason]


def _check_evidence(c: Consortium, rogue: Rogue, round_id: int, blame: Any) -> None:
    """Anyone can check a RevealMismatch blame: the evidence key opens the rogue's
    reveal for the reporter, and what it opens does not match the rogue's commitment."""
    doc = rogue.round_doc(round_id)
    payload = next(
        bytes(e["args"]["payload"])
        for e in c.round_events(round_id, "FusedRevealed")
        if e["args"]["member"] == rogue.address
    )
    committed = next(
        bytes(e["args"]["commitment"])
        for e in c.round_events(round_id, "FusedCommitted")
        if e["args"]["member"] == rogue.address
    )
    opened = reveal.open_reveal(
        doc, rogue.address, payload, blame["reporter"], bytes(blame["evidence"]), rogue.ctx
    )
    assert not reveal.matches_commitment(opened, committed)


def test_a_holder_revealing_another_share_than_committed_is_named_and_the_result_stays_right(
    setup: tuple[Consortium, Rogue, Any],
) -> None:
    c, rogue, _ = setup
    round_id = _rogue_holder_round(c, rogue)
    lie = (rogue.fused[round_id] + np.uint64(12345)) % np.uint64(PRIME61)
    rogue.reveal(round_id, {h: lie for h in _honest(c)})
    for aggregate in _wait_aggregates(c, round_id):
        assert np.max(np.abs(aggregate - np.sum(INPUTS, axis=0))) <= _tolerance(HONEST + 1)
    blames = wait_until(
        lambda: len(_blames(c, round_id, BLAME_REVEAL_MISMATCH)) == HONEST, 60, "three blames"
    )
    assert blames
    blames = _blames(c, round_id, BLAME_REVEAL_MISMATCH)
    assert {b["member"] for b in blames} == {rogue.address}
    assert sorted(b["reporter"] for b in blames) == sorted(_honest(c))
    _check_evidence(c, rogue, round_id, blames[0])
    assert "does not open its fused commitment" in c.agents["provider-1"].logs()


def test_a_holder_sending_different_shares_to_different_holders_is_caught(
    setup: tuple[Consortium, Rogue, Any],
) -> None:
    c, rogue, _ = setup
    round_id = _rogue_holder_round(c, rogue)
    honest = _honest(c)
    true_share = rogue.fused[round_id]
    lie = (true_share + np.uint64(1)) % np.uint64(PRIME61)
    rogue.reveal(round_id, {honest[0]: true_share, honest[1]: lie, honest[2]: lie})
    for aggregate in _wait_aggregates(c, round_id):
        assert np.max(np.abs(aggregate - np.sum(INPUTS, axis=0))) <= _tolerance(HONEST + 1)
    wait_until(lambda: len(_blames(c, round_id, BLAME_REVEAL_MISMATCH)) == 2, 60, "two blames")
    blames = _blames(c, round_id, BLAME_REVEAL_MISMATCH)
    assert sorted(b["reporter"] for b in blames) == sorted(honest[1:])
    for blame in blames:
        _check_evidence(c, rogue, round_id, blame)
    # The one holder that got the committed share accepted it and blamed nobody.
    assert honest[0] not in {b["reporter"] for b in blames}


def test_an_additive_holder_revealing_another_share_is_named_and_no_wrong_aggregate_is_used(
    setup: tuple[Consortium, Rogue, Any],
) -> None:
    """Additive rounds have no redundancy: the opened commitment is the check. The lie is
    named on chain and the honest enclaves refuse the aggregate rather than use it."""
    c, rogue, _ = setup
    round_id = c.open_round("vec8", D, scheme="additive", encoding="seeded", output="intermediate")
    rogue.post_shares(round_id, ROGUE_INPUT)
    c.wait_round(round_id, states=(FUSING,))
    rogue.fuse_and_commit(round_id)
    assert c.wait_round(round_id) == COMPLETED
    lie = rogue.fused[round_id] + np.uint64(1)  # uint64 wraps: the ring Z/2^64
    rogue.reveal(round_id, {h: lie for h in _honest(c)})
    wait_until(lambda: len(_blames(c, round_id, BLAME_REVEAL_MISMATCH)) == HONEST, 60, "three blames")
    for i in range(HONEST):
        name = f"provider-{i}"
        wait_until(
            lambda n=name: (
                "refused" in ((c.agents[n].status() or {}).get("rounds", {}).get(str(round_id), {}))
            ),
            30,
            f"{name} to refuse the aggregate",
        )
        assert c.agents[name].unseal(f"round/{round_id}/aggregate") is None


# ------------------------------------------------------------------ wrong partial results


def _statistic_model(c: Consortium, rogue: Rogue, threshold: int) -> tuple[int, int]:
    round_id = c.open_round(
        "stats", 5, scheme="shamir", encoding="seeded", threshold=threshold, output="statistic"
    )
    rogue.post_shares(round_id, STATS[HONEST])
    c.wait_round(round_id, states=(FUSING,))
    rogue.fuse_and_commit(round_id)
    assert c.wait_round(round_id) == COMPLETED
    receipt = c.w3.eth.wait_for_transaction_receipt(
        c.gateway.functions.registerModel(
            round_id, f"stats-t{threshold}", statistic_metadata(COLUMNS), 0
        ).transact({"from": c.governor})
    )
    model_id = int(c.gateway.events.ModelRegistered().process_receipt(receipt)[0]["args"]["modelId"])
    return round_id, model_id


def _ask_while_rogue_lies(
    client: GatewayClient, rogue: Rogue, model: tuple[int, int], bias: int
) -> dict[str, Any] | GatewayHTTPError:
    round_id, model_id = model
    wait_until(lambda: any(m["id"] == model_id for m in client.models()), 60, "the model at the gateway")
    out: dict[str, Any] = {}

    def ask() -> None:
        try:
            out["answer"] = client.infer(model_id, {"statistic": {"column": "a"}})
        except GatewayHTTPError as exc:
            out["answer"] = exc

    thread = threading.Thread(target=ask)
    thread.start()
    while thread.is_alive():
        rogue.answer_statistics(round_id, len(COLUMNS), bias=bias)
        thread.join(0.1)
    return out["answer"]


def test_a_wrong_partial_is_corrected_and_named_with_t_plus_2_providers(
    setup: tuple[Consortium, Rogue, GatewayClient],
) -> None:
    c, rogue, client = setup
    model = _statistic_model(c, rogue, threshold=2)
    answer = _ask_while_rogue_lies(client, rogue, model, bias=10**9)
    assert isinstance(answer, dict), answer
    total = np.sum(STATS, axis=0)
    assert abs(answer["sum"] - total[0]) < 1e-3 and abs(answer["count"] - total[4]) < 1e-3
    assert answer["partials"] == HONEST + 1 and answer["checked"] is True
    blames = wait_until(lambda: _blames(c, model[0], BLAME_WRONG_PARTIAL), 30, "the gateway's blame")
    assert [(b["member"], b["reporter"]) for b in blames] == [(rogue.address, _address(c, "gateway"))]
    assert int.from_bytes(bytes(blames[0]["evidence"]), "big") == answer["request_id"]
    metrics = _metrics(client)
    assert (
        f'enclave_gateway_wrong_partials_total{{provider="{rogue.address}",outcome="corrected"}} 1' in metrics
    )
    line = f'enclave_round_blames_total{{member="{rogue.address}",reason="wrong-partial"}} 1'
    wait_until(lambda: line in _metrics(client), 30, "the blame in the gateway's metrics")


def test_a_wrong_partial_with_t_plus_1_providers_is_detected_and_refused(
    setup: tuple[Consortium, Rogue, GatewayClient],
) -> None:
    c, rogue, client = setup
    model = _statistic_model(c, rogue, threshold=3)
    requests_before = int(c.gateway.functions.requestCount().call())
    answer = _ask_while_rogue_lies(client, rogue, model, bias=7)
    assert isinstance(answer, GatewayHTTPError)
    assert answer.status == 502 and answer.body["reason"] == "InconsistentPartials"
    assert int(c.gateway.functions.requestCount().call()) == requests_before + 1
    request_id = requests_before + 1
    assert c.gateway.functions.state(request_id).call() == 1  # never completed: it expires and is refunded
    assert 'outcome="inconsistent_partials"' in _metrics(client)
    # Honest again, the same question is answered.
    answer = _ask_while_rogue_lies(client, rogue, model, bias=0)
    assert isinstance(answer, dict) and abs(answer["sum"] - np.sum(STATS, axis=0)[0]) < 1e-3


def _metrics(client: GatewayClient) -> str:
    import urllib.request

    with urllib.request.urlopen(client.url + "/metrics", timeout=10) as response:  # noqa: S310
        return response.read().decode()


def test_the_evidence_key_opens_one_ciphertext_only(setup: tuple[Consortium, Rogue, Any]) -> None:
    """A revealed message key is HKDF(pairwise key, the message's associated data):
    it opens that one posting entry and no other entry of the same pair."""
    c, rogue, _ = setup
    round_id = int(c.exchange.functions.roundCount().call())
    doc = rogue.round_doc(round_id)
    keys = rogue.keys(doc.epoch)
    victim = _honest(c)[0]
    from enclave_agent.protocol.rounds import message_key

    key = message_key(keys[victim], rogue.ctx, round_id, victim, rogue.address)
    payload, _ = rogue.posting_of(round_id, victim)
    entries = dict(posting.decode_entries(payload))
    ad = aead.share_ad(rogue.ctx.chain_id, rogue.ctx.exchange, round_id, victim, rogue.address)
    assert aead.decrypt(key, entries[rogue.address], ad)
    other = message_key(keys[victim], rogue.ctx, round_id - 1, victim, rogue.address)
    assert other != key and key != keys[victim]
