"""The agent's side of the synchronisation deadline: it drops laggards only after the
deadline, follows an extension (governance unpaused the registry) and never gives up
on an epoch because the deadline moved."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest

from enclave_agent.chain import ChainEvent, error_class
from enclave_agent.protocol.membership import MembershipView
from enclave_agent.protocol.onboarding import Onboarding


class FakeStore:
    def __init__(self) -> None:
        self.docs: dict[str, Any] = {}

    def get_json(self, key: str) -> Any:
        return self.docs.get(key)

    def put_json(self, key: str, value: Any) -> None:
        self.docs[key] = value


class FakeAgent:
    """What ``Onboarding`` reads and writes for the deadline, with ``send_or_done``
    answering ``outcome`` (True: sent, False: a benign refusal, or raising it)."""

    def __init__(self, now: int, outcome: BaseException | bool) -> None:
        self.view = MembershipView(epoch=4, synchronised_epoch=3, sync_deadline=100)
        self.store = FakeStore()
        self.sent: list[tuple[str, tuple[str, ...]]] = []
        self.now, self.outcome = now, outcome
        self.contracts = SimpleNamespace(
            registry=SimpleNamespace(functions=SimpleNamespace(expireUnsynchronised=lambda: "call"))
        )

    def chain_now(self) -> int:
        return self.now

    def save_view(self, view: MembershipView) -> None:
        self.view = view

    def send_or_done(self, fn: Any, label: str, *benign: str) -> bool:
        self.sent.append((label, benign))
        if isinstance(self.outcome, BaseException):
            raise self.outcome
        return self.outcome


def make(now: int, outcome: BaseException | bool) -> Any:
    return FakeAgent(now, outcome)


def test_nothing_happens_before_the_deadline() -> None:
    a = make(now=100, outcome=True)
    Onboarding(a)._expire_laggards()
    assert a.sent == [] and a.store.docs == {}


def test_after_the_deadline_the_laggards_are_dropped_once() -> None:
    a = make(now=101, outcome=True)
    onboarding = Onboarding(a)
    onboarding._expire_laggards()
    onboarding._expire_laggards()
    assert [label for label, _ in a.sent] == ["expire-4"]
    assert a.store.docs == {"expired/4": True}


def test_a_moved_deadline_is_waited_for_not_given_up() -> None:
    a = make(now=101, outcome=error_class("RegistrySyncStillOpen")("RegistrySyncStillOpen", {}, "still open"))
    onboarding = Onboarding(a)
    onboarding._expire_laggards()
    assert "expired/4" not in a.store.docs  # tried again later
    extended = ChainEvent(
        "ConsortiumRegistry", "SyncDeadlineExtended", {"epoch": 4, "syncDeadline": 700}, 9, "0x", 0
    )
    onboarding._on_sync_deadline_extended(extended)
    assert a.view.sync_deadline == 700
    a.sent.clear()
    onboarding._expire_laggards()  # now = 101 < 700: not yet
    assert a.sent == []


def test_an_extension_for_another_epoch_is_ignored() -> None:
    a = make(now=50, outcome=True)
    event = ChainEvent(
        "ConsortiumRegistry", "SyncDeadlineExtended", {"epoch": 3, "syncDeadline": 900}, 9, "0x", 0
    )
    Onboarding(a)._on_sync_deadline_extended(event)
    assert a.view.sync_deadline == 100


@pytest.mark.parametrize("benign", ["RegistryEpochSynchronised", "RegistryNoMemberSynchronised"])
def test_other_refusals_are_final_for_the_epoch(benign: str) -> None:
    a = make(now=101, outcome=False)
    Onboarding(a)._expire_laggards()
    assert benign in a.sent[0][1] and a.store.docs == {"expired/4": True}
