"""The membership stages: string values pinned (the store, status and ``/healthz`` show
them), every move the agent makes allowed and persisted, any other refused as a bug, a
stored stage this agent does not know refused on load, and a registration refusal
recorded as REFUSED, from which a restart registers again."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from enclave_agent.protocol.context import AgentContext, stored_stage
from enclave_agent.protocol.onboarding import AgentRefused, Onboarding
from enclave_agent.protocol.stages import TRANSITIONS, IllegalStageTransition, Stage
from enclave_agent.store import Store, StoreError

S = Stage

# Every move, with the code path that makes it (enclave_agent.protocol.onboarding).
ALLOWED = {
    (S.UNREGISTERED, S.REGISTERING): "_register",
    (S.REFUSED, S.REGISTERING): "_register after a restart",
    (S.REGISTERING, S.REFUSED): "step: the registry or a verifier refused us",
    (S.REGISTERING, S.ATTESTED): "our MemberRegistered",
    (S.UNREGISTERED, S.ATTESTED): "our MemberRegistered replayed (restore, reset-state)",
    (S.REFUSED, S.ATTESTED): "our MemberRegistered replayed (restore)",
    (S.ATTESTED, S.VERIFIED): "_synchronise: digest posted",
    (S.VERIFIED, S.SYNCHRONISED): "EpochSynchronised, or _synchronise",
    (S.VERIFIED, S.ATTESTED): "EpochStarted",
    (S.SYNCHRONISED, S.ATTESTED): "EpochStarted",
    (S.ATTESTED, S.UNREGISTERED): "our MemberRevoked, unsynchronised",
    (S.VERIFIED, S.UNREGISTERED): "our MemberRevoked, unsynchronised (a mismatching digest)",
    (S.ATTESTED, S.REVOKED): "our MemberRevoked",
    (S.VERIFIED, S.REVOKED): "our MemberRevoked",
    (S.SYNCHRONISED, S.REVOKED): "our MemberRevoked",
}

ILLEGAL = [
    (S.SYNCHRONISED, S.UNREGISTERED),  # a synchronised epoch drops nobody
    (S.SYNCHRONISED, S.VERIFIED),
    (S.REVOKED, S.SYNCHRONISED),
    (S.REVOKED, S.UNREGISTERED),  # only reset-state starts over, with a new store
    (S.REVOKED, S.ATTESTED),
    (S.UNREGISTERED, S.SYNCHRONISED),
    (S.UNREGISTERED, S.REFUSED),
    (S.REGISTERING, S.VERIFIED),
    (S.REGISTERING, S.UNREGISTERED),
    (S.ATTESTED, S.SYNCHRONISED),
    (S.REFUSED, S.REVOKED),
]


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    with Store(tmp_path / "agent.sqlite3") as s:
        yield s


def context(store: Store, stage: Stage) -> AgentContext:
    """An agent's context with only what stages need (no chain): its store and stage."""
    ctx = object.__new__(AgentContext)
    ctx.store, ctx.stage = store, stage
    return ctx


def test_stage_values_are_the_persisted_strings() -> None:
    assert [s.value for s in Stage] == [
        "unregistered",
        "registering",
        "attested",
        "verified",
        "synchronised",
        "refused",
        "revoked",
    ]
    assert f"{S.SYNCHRONISED}" == str(S.SYNCHRONISED) == "synchronised"


def test_the_table_is_exactly_the_moves_the_agent_makes() -> None:
    assert set(TRANSITIONS) == set(Stage)
    assert {(a, b) for a, nexts in TRANSITIONS.items() for b in nexts} == set(ALLOWED)
    assert not TRANSITIONS[S.REVOKED]


@pytest.mark.parametrize(("current", "new"), sorted(ALLOWED))
def test_every_allowed_move_is_made_and_persisted(store: Store, current: Stage, new: Stage) -> None:
    ctx = context(store, current)
    ctx.set_stage(new)
    assert ctx.stage is new
    assert store.get_json("stage") == new.value
    assert stored_stage(store) is new  # what the next start resumes from


@pytest.mark.parametrize(("current", "new"), ILLEGAL)
def test_an_illegal_move_is_refused_naming_both_stages(store: Store, current: Stage, new: Stage) -> None:
    store.put_json("stage", current.value)
    ctx = context(store, current)
    with pytest.raises(IllegalStageTransition, match=f"illegal stage transition {current} -> {new}") as err:
        ctx.set_stage(new)
    assert (err.value.current, err.value.new) == (current, new)
    assert ctx.stage is current and store.get_json("stage") == current.value


@pytest.mark.parametrize("stage", list(Stage))
def test_the_same_stage_again_changes_nothing(store: Store, stage: Stage) -> None:
    ctx = context(store, stage)
    ctx.set_stage(stage)
    assert ctx.stage is stage and store.get_json("stage") is None  # not even written


def test_a_new_store_starts_unregistered(store: Store) -> None:
    assert stored_stage(store) is S.UNREGISTERED


@pytest.mark.parametrize("value", ["bogus", "Synchronised", "", 3])
def test_a_stored_stage_this_agent_does_not_know_is_refused(store: Store, value: object) -> None:
    store.put_json("stage", value)
    with pytest.raises(StoreError, match=f"{store.path}: stored stage {value!r} is none this agent knows"):
        stored_stage(store)


def test_a_refused_registration_is_recorded_and_a_restart_registers_again(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    ctx = context(store, S.UNREGISTERED)

    def refused(self: Onboarding) -> None:
        self.agent.set_stage(S.REGISTERING)
        raise AgentRefused("registration refused (RegistryOrganisationCoolingDown)")

    monkeypatch.setattr(Onboarding, "_register", refused)
    with pytest.raises(AgentRefused):
        Onboarding(ctx).step()
    assert ctx.stage is S.REFUSED and store.get_json("stage") == "refused"

    restarted = context(store, stored_stage(store))
    monkeypatch.setattr(Onboarding, "_register", lambda self: self.agent.set_stage(S.REGISTERING))
    Onboarding(restarted).step()
    assert restarted.stage is S.REGISTERING and store.get_json("stage") == "registering"
