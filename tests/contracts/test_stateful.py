"""Hypothesis stateful test of the round and request lifecycles (docs/properties.md).

Random sequences of operations run against the contracts and against a Python model.
Each rule predicts, from the model alone, whether the call succeeds (and which events it
emits) or exactly which custom error it reverts with. After every step the invariants
compare every view with the model and check the properties marked [S] in
docs/properties.md. Time is fully controlled: every transaction is mined at a timestamp
the model chose, so deadline edges are exact.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest
from brownie import accounts, chain
from eth_account import Account
from eth_utils import keccak
from helpers import (
    ADDITIVE,
    INTERMEDIATE,
    PRIME_61,
    RING_2_64,
    SEEDED,
    SHAMIR,
    SHARED_MODEL,
    STATISTIC,
    TAG,
    ZERO32,
    Abort,
    Blame,
    Consortium,
    Exclusion,
    RequestState,
    RoundState,
    batch_call,
    dev_key_of,
    events_of,
    next_block_at,
    norm,
    now,
    rejects,
    share_commitment,
    state_bit,
    travel_to,
)
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule, run_state_machine_as_test

N = 4
POSTING_WINDOW, ROUND_WINDOW, TTL = 60, 120, 120
FEE = 10**15
QUOTA = 4
UNKNOWN = 9  # a pick of 9 targets an id that does not exist
TERMINAL_ROUND = {RoundState.COMPLETED, RoundState.ABORTED}
TERMINAL_REQUEST = {RequestState.COMPLETED, RequestState.REFUNDED}


def popcount(x: int) -> int:
    return bin(x).count("1")


@dataclass
class RoundModel:
    id: int
    scheme: int
    t: int
    pd: int
    dl: int
    kind: int
    minimum: int
    status: int = RoundState.POSTING
    posted: int = 0
    excluded: int = 0
    contributors: int = 0
    holders: int = 0
    # sender index -> (chunks accepted, chunks of the posting)
    progress: dict[int, tuple[int, list[bytes]]] = field(default_factory=dict)
    revealed: set[int] = field(default_factory=set)
    floor: int = 0
    # the pending complaint: (accuser, sender, judges, guilty, innocent), or None
    complaint: tuple[int, int, int, int, int] | None = None
    blamed: set[tuple[int, int, int, bytes]] = field(default_factory=set)


@dataclass
class RequestModel:
    id: int
    model_id: int
    round: RoundModel
    fee: int
    deadline: int
    rows: int = 1
    status: int = RequestState.PENDING
    partials: set[int] = field(default_factory=set)


class Lifecycles(RuleBasedStateMachine):
    st_pick = st.integers(0, UNKNOWN)
    st_member = st.integers(0, N - 1)
    st_scheme = st.sampled_from([(ADDITIVE, N), (SHAMIR, 2), (SHAMIR, 3)])
    st_kind = st.sampled_from([(SHARED_MODEL, 0), (STATISTIC, 3), (STATISTIC, 2), (INTERMEDIATE, 0)])
    st_served = st.sampled_from([(SHARED_MODEL, 0), (STATISTIC, 3), (STATISTIC, 2)])
    st_chunks = st.integers(1, 3)
    st_dt = st.sampled_from([1, 30, 59, 61, 119, 121, 400])
    st_flag = st.booleans()
    st_rows = st.sampled_from([1, 1, 2, 3, 0])  # 0 is refused; 2 and 3 for a statistic too
    # Subsets of participants, half of the time everyone (full rounds are the common case).
    st_subset = st.one_of(st.just(2**N - 1), st.integers(0, 2**N - 1))
    st_accuse = st.one_of(st.just(-1), st.integers(-1, N - 1))
    st_verdict = st.sampled_from(["guilty", "innocent", "split", "silent", "wrong-key"])
    st_reason = st.integers(0, 4)

    # Set by the test before the run.
    w: Consortium
    client: object

    def __init__(self):
        # Every example starts from the chain snapshot taken before the run.
        chain.revert()
        super().__init__()
        self.now = now()
        self.rounds: list[RoundModel] = []
        self.requests: list[RequestModel] = []
        self.models: list[tuple[int, RoundModel]] = []
        self.digests: list[bytes] = []
        self.nonces: list[int] = []
        self.balance = int(self.w.gateway.balanceOf(self.client))
        self.used = 0
        self.collected = 0
        self.observed_rounds: dict[int, int] = {}
        self.observed_requests: dict[int, int] = {}

    # -------------------------------------------------------------- plumbing

    def _tick(self) -> int:
        """The next transaction is mined one second later, at a time the model knows."""
        self.now += 1
        next_block_at(self.now)
        return self.now

    def _round_state(self, r: RoundModel | None, at: int) -> int:
        if r is None:
            return RoundState.NONE
        if r.status in (RoundState.POSTING, RoundState.FUSING) and at > r.dl:
            return RoundState.EXPIRED
        return r.status

    def _request_state(self, q: RequestModel | None, at: int) -> int:
        if q is None:
            return RequestState.NONE
        if q.status == RequestState.PENDING and at > q.deadline:
            return RequestState.EXPIRED
        return q.status

    def _round(self, pick: int) -> tuple[int, RoundModel | None]:
        if pick == UNKNOWN or not self.rounds:
            return len(self.rounds) + 1, None  # an unknown id
        r = self.rounds[-1 - pick % len(self.rounds)]
        return r.id, r

    def _request(self, pick: int) -> tuple[int, RequestModel | None]:
        if pick == UNKNOWN or not self.requests:
            return len(self.requests) + 1, None
        q = self.requests[-1 - pick % len(self.requests)]
        return q.id, q

    def _members(self, mask: int) -> list[str]:
        return [p.address for i, p in enumerate(self.w.providers) if mask >> i & 1]

    def _expect(self, outcome, call):
        """Run `call`; `outcome` is either ("ok",) or an error (name, *args)."""
        if outcome[0] == "ok":
            tx = call()
            assert tx.status == 1
            return tx
        with rejects(*outcome):
            call()
        return None

    # -------------------------------------------------------------- round rules

    @rule(scheme=st_scheme, kind=st_kind)
    def rule_open(self, scheme, kind):
        (scheme_id, t), (kind_id, minimum) = scheme, kind
        at = self._tick()
        r = RoundModel(
            len(self.rounds) + 1, scheme_id, t, at + POSTING_WINDOW, at + ROUND_WINDOW, kind_id, minimum
        )
        r.floor = N if scheme_id == ADDITIVE else max(t, 3, minimum)
        modulus = RING_2_64 if scheme_id == ADDITIVE else PRIME_61
        tx = self.w.exchange.openRound(
            TAG,
            (4, 16, scheme_id, SEEDED, modulus),
            t,
            r.pd,
            r.dl,
            (kind_id, minimum),
            {"from": self.w.coordinator},
        )
        assert tx.return_value == r.id
        assert tx.events["RoundOpened"]["floor"] == r.floor
        self.rounds.append(r)

    @initialize(scheme=st_scheme, kind=st_served)
    def initialize_served_model(self, scheme, kind):
        """Start with a completed round and a model on it, so requests are reachable."""
        self.rule_open(scheme, kind)
        self.rule_everyone_posts(0)
        self.rule_everyone_fuses(0)
        self.rule_register_model(0)

    @initialize(scheme=st_scheme, kind=st_kind)
    def initialize_round_in_posting(self, scheme, kind):
        """And a second round still taking shares."""
        self.rule_open(scheme, kind)

    @rule(pick=st_pick)
    def rule_everyone_posts(self, pick):
        for member in range(N):
            self._post(pick, member, 1)

    @rule(pick=st_pick)
    def rule_everyone_fuses(self, pick):
        for member in range(N):
            self.rule_fuse(pick, member, False)

    @rule(pick=st_pick, member=st_member, nchunks=st_chunks)
    def rule_post(self, pick, member, nchunks):
        self._post(pick, member, nchunks)

    def _post(self, pick, member, nchunks):
        rid, r = self._round(pick)
        sender = self.w.providers[member]
        accepted, chunks = r.progress.get(member, (0, None)) if r else (0, None)
        if chunks is None:
            chunks = [keccak(f"{rid}-{member}-{i}".encode()) * (1 + i) for i in range(nchunks)]
        commitment = share_commitment(chunks)
        at = self._tick()
        state = self._round_state(r, at)
        bit = 1 << member
        if state != RoundState.POSTING:
            outcome = ("RoundUnexpectedState", rid, state, state_bit(RoundState.POSTING))
        elif at > r.pd:
            outcome = ("RoundPostingDeadlinePassed", rid, r.pd)
        elif r.excluded & bit:
            outcome = ("RoundSenderExcluded", rid, sender.address)
        elif r.posted & bit:
            outcome = ("RoundAlreadyPosted", rid, sender.address)
        else:
            outcome = ("ok",)
        tx = self._expect(
            outcome,
            lambda: self.w.exchange.postShares(
                rid,
                accepted,
                len(chunks),
                commitment,
                self.w.key_table(rid, sender.address) if accepted == 0 else [],
                chunks[min(accepted, len(chunks) - 1)],
                {"from": sender.account},
            ),
        )
        if tx is None:
            return
        accepted += 1
        r.progress[member] = (accepted, chunks)
        names = ["SharesPosted"]
        if accepted == len(chunks):
            r.posted |= bit
            if popcount(r.posted) + popcount(r.excluded) == N:
                r.status, r.contributors = RoundState.FUSING, r.posted
                names.append("PostingClosed")
        assert [name for name, _ in events_of(tx)] == names

    @rule(pick=st_pick)
    def rule_close(self, pick):
        rid, r = self._round(pick)
        at = self._tick()
        state = self._round_state(r, at)
        if state != RoundState.POSTING:
            outcome = ("RoundUnexpectedState", rid, state, state_bit(RoundState.POSTING))
        elif at <= r.pd:
            outcome = ("RoundPostingStillOpen", rid, r.pd)
        else:
            outcome = ("ok",)
        tx = self._expect(outcome, lambda: self.w.exchange.closePosting(rid, {"from": accounts[3]}))
        if tx is None:
            return
        if r.scheme == SHAMIR and popcount(r.posted) >= r.floor:
            r.status, r.contributors = RoundState.FUSING, r.posted
            assert events_of(tx) == [("PostingClosed", {"roundId": rid, "contributors": r.posted})]
        else:
            self._aborted(tx, r, Abort.MISSING_SHARES, ~(r.posted | r.excluded))

    def _pending_error(self, rid, r):
        accuser, sender = r.complaint[0], r.complaint[1]
        return (
            "RoundComplaintPending",
            rid,
            self.w.providers[accuser].address,
            self.w.providers[sender].address,
        )

    @rule(pick=st_pick, accuser=st_member, accused=st_member, honest_key=st_flag)
    def rule_complain(self, pick, accuser, accused, honest_key):
        rid, r = self._round(pick)
        sender, by = self.w.providers[accused], self.w.providers[accuser]
        at = self._tick()
        state = self._round_state(r, at)
        bit = 1 << accused
        if state != RoundState.FUSING:
            outcome = ("RoundUnexpectedState", rid, state, state_bit(RoundState.FUSING))
        elif r.excluded >> accuser & 1:
            outcome = ("RoundSenderExcluded", rid, by.address)
        elif accuser == accused:
            outcome = ("RoundSelfComplaint", rid, by.address)
        elif r.excluded & bit:
            outcome = ("RoundSenderExcluded", rid, sender.address)
        elif not r.contributors & bit:
            outcome = ("RoundNothingPosted", rid, sender.address)
        elif r.complaint is not None:
            outcome = self._pending_error(rid, r)
        else:
            outcome = ("ok",)
        key = self.w.posting_key(rid, sender.address, by.address) if honest_key else keccak(b"another key")
        table = self.w.key_table(rid, sender.address) if r is not None else []
        tx = self._expect(
            outcome, lambda: self.w.exchange.complain(rid, sender.address, key, table, {"from": by.account})
        )
        if tx is None:
            return
        parties = bit | 1 << accuser
        judges = 0 if not honest_key else r.contributors & ~parties
        assert events_of(tx)[0] == (
            "ComplaintFiled",
            {
                "roundId": rid,
                "accuser": by.address.lower(),
                "sender": sender.address.lower(),
                "postingKey": key,
                "judges": judges,
            },
        )
        if not honest_key:
            self._exclude(tx, r, parties, Exclusion.KEY_MISMATCH, skip=1)
            return
        r.complaint = (accuser, accused, judges, 0, 0)
        r.holders = 0
        assert len(tx.events) == 1

    @rule(pick=st_pick, member=st_member, at_fault=st_flag)
    def rule_judge(self, pick, member, at_fault):
        rid, r = self._round(pick)
        who = self.w.providers[member]
        at = self._tick()
        state = self._round_state(r, at)
        bit = 1 << member
        if state != RoundState.FUSING:
            outcome = ("RoundUnexpectedState", rid, state, state_bit(RoundState.FUSING))
        elif r.complaint is None:
            outcome = ("RoundNoComplaint", rid)
        elif not r.complaint[2] & bit:
            outcome = ("RoundNotJudge", rid, who.address)
        elif (r.complaint[3] | r.complaint[4]) & bit:
            outcome = ("RoundAlreadyJudged", rid, who.address)
        else:
            outcome = ("ok",)
        tx = self._expect(
            outcome, lambda: self.w.exchange.judgeComplaint(rid, at_fault, {"from": who.account})
        )
        if tx is None:
            return
        accuser, sender, judges, guilty, innocent = r.complaint
        guilty, innocent = (guilty | bit, innocent) if at_fault else (guilty, innocent | bit)
        r.complaint = (accuser, sender, judges, guilty, innocent)
        assert events_of(tx)[0] == (
            "ComplaintJudged",
            {
                "roundId": rid,
                "judge": who.address.lower(),
                "accuser": self.w.providers[accuser].address.lower(),
                "sender": self.w.providers[sender].address.lower(),
                "senderAtFault": at_fault,
            },
        )
        if guilty | innocent != judges:
            assert len(tx.events) == 1
            return
        r.complaint = None
        if innocent == 0:
            self._exclude(tx, r, 1 << sender, Exclusion.INVALID_SHARE, skip=1)
        elif guilty == 0:
            self._exclude(tx, r, 1 << accuser, Exclusion.FALSE_COMPLAINT, skip=1)
        else:
            self._aborted(tx, r, Abort.SPLIT_VERDICT, 1 << accuser | 1 << sender, skip=1)

    def _exclude(self, tx, r: RoundModel, mask: int, reason: int, skip: int):
        r.excluded |= mask
        r.posted &= ~mask
        r.contributors &= ~mask
        r.holders = 0
        members = [a.lower() for a in self._members(mask)]
        expected = [
            (
                "MemberExcluded",
                {"roundId": r.id, "member": m, "reason": reason, "contributors": r.contributors},
            )
            for m in members
        ]
        assert events_of(tx)[skip : skip + len(members)] == expected
        skip += len(members)
        if r.scheme == ADDITIVE:
            why = {
                Exclusion.INVALID_SHARE: Abort.INVALID_SHARE,
                Exclusion.FALSE_COMPLAINT: Abort.FALSE_COMPLAINT,
                Exclusion.KEY_MISMATCH: Abort.KEY_MISMATCH,
            }[reason]
            self._aborted(tx, r, why, mask, skip=skip)
        elif popcount(r.contributors) < r.floor:
            self._aborted(tx, r, Abort.TOO_FEW_CONTRIBUTORS, r.excluded, skip=skip)
        else:
            assert len(tx.events) == skip

    @rule(pick=st_pick, reporter=st_member, member=st_member, reason=st_reason, evidence=st_flag)
    def rule_blame(self, pick, reporter, member, reason, evidence):
        rid, r = self._round(pick)
        by, who = self.w.providers[reporter], self.w.providers[member]
        proof = b"\x01" * 32 if evidence else b""
        at = self._tick()
        state = self._round_state(r, at)
        if state != RoundState.COMPLETED:
            outcome = ("RoundUnexpectedState", rid, state, state_bit(RoundState.COMPLETED))
        elif not r.holders >> member & 1:
            outcome = ("RoundNotHolder", rid, who.address)
        elif reason == Blame.NONE:
            outcome = ("RoundInvalidBlame", rid, reason)
        elif (reporter, member, reason, proof) in r.blamed:
            outcome = ("RoundAlreadyBlamed", rid, by.address, who.address)
        else:
            outcome = ("ok",)
        tx = self._expect(
            outcome,
            lambda: self.w.exchange.reportMisbehaviour(rid, who.address, reason, proof, {"from": by.account}),
        )
        if tx is not None:
            r.blamed.add((reporter, member, reason, proof))
            assert [name for name, _ in events_of(tx)] == ["MemberBlamed"]

    @rule(pick=st_pick, member=st_member, stale=st_flag)
    def rule_fuse(self, pick, member, stale):
        rid, r = self._round(pick)
        who = self.w.providers[member]
        current = r.contributors if r else 0
        given = current ^ 1 if stale else current
        at = self._tick()
        state = self._round_state(r, at)
        bit = 1 << member
        if state != RoundState.FUSING:
            outcome = ("RoundUnexpectedState", rid, state, state_bit(RoundState.FUSING))
        elif r.excluded & bit:
            outcome = ("RoundSenderExcluded", rid, who.address)
        elif r.complaint is not None:
            outcome = self._pending_error(rid, r)
        elif given != current:
            outcome = ("RoundStaleContributors", rid, given, current)
        elif r.holders & bit:
            outcome = ("RoundAlreadyFused", rid, who.address)
        else:
            outcome = ("ok",)
        commitment = keccak(f"fused-{rid}-{member}-{current}".encode())
        tx = self._expect(
            outcome, lambda: self.w.exchange.postFused(rid, commitment, given, {"from": who.account})
        )
        if tx is None:
            return
        r.holders |= bit
        names = ["FusedCommitted"]
        if popcount(r.holders) == N - popcount(r.excluded):
            r.status = RoundState.COMPLETED
            names.append("RoundCompleted")
            assert tx.events["RoundCompleted"]["holders"] == r.holders
        assert [name for name, _ in events_of(tx)] == names

    @rule(pick=st_pick)
    def rule_finalize(self, pick):
        rid, r = self._round(pick)
        at = self._tick()
        state = self._round_state(r, at)
        outcome = (
            ("ok",)
            if state == RoundState.EXPIRED
            else ("RoundUnexpectedState", rid, state, state_bit(RoundState.EXPIRED))
        )
        tx = self._expect(outcome, lambda: self.w.exchange.finalize(rid, {"from": accounts[3]}))
        if tx is None:
            return
        if r.status == RoundState.POSTING:
            self._aborted(tx, r, Abort.MISSING_SHARES, ~(r.posted | r.excluded))
        elif r.complaint is not None:
            _, _, judges, guilty, innocent = r.complaint
            r.complaint = None
            self._aborted(tx, r, Abort.MISSING_VERDICT, judges & ~(guilty | innocent))
        elif r.scheme == SHAMIR and popcount(r.holders) >= r.t:
            r.status = RoundState.COMPLETED
            assert events_of(tx) == [
                ("RoundCompleted", {"roundId": rid, "contributors": r.contributors, "holders": r.holders})
            ]
        else:
            self._aborted(tx, r, Abort.MISSING_FUSION, ~(r.holders | r.excluded))

    def _aborted(self, tx, r: RoundModel, reason: int, mask: int, skip: int = 0):
        r.status = RoundState.ABORTED
        culprits = [a.lower() for a in self._members(mask & (2**N - 1))]
        assert events_of(tx)[skip:] == [
            ("RoundAborted", {"roundId": r.id, "reason": reason, "culprits": tuple(culprits)})
        ]

    @rule(pick=st_pick, member=st_member)
    def rule_reveal(self, pick, member):
        rid, r = self._round(pick)
        who = self.w.providers[member]
        at = self._tick()
        state = self._round_state(r, at)
        if state != RoundState.COMPLETED:
            outcome = ("RoundUnexpectedState", rid, state, state_bit(RoundState.COMPLETED))
        elif r.kind != INTERMEDIATE:
            outcome = ("RoundNotIntermediate", rid)
        elif not r.holders >> member & 1:
            outcome = ("RoundNotHolder", rid, who.address)
        elif member in r.revealed:
            outcome = ("RoundAlreadyRevealed", rid, who.address)
        else:
            outcome = ("ok",)
        tx = self._expect(outcome, lambda: self.w.exchange.revealFused(rid, b"sealed", {"from": who.account}))
        if tx is not None:
            r.revealed.add(member)
            assert [name for name, _ in events_of(tx)] == ["FusedRevealed"]

    # -------------------------------------------------------------- scenarios
    # Whole lifecycles in one step, built from the single-call rules above (so every call
    # is still predicted and checked): they reach deep states that a uniform choice of
    # single calls rarely reaches within a short run.

    @rule(
        scheme=st_scheme,
        kind=st_kind,
        posters=st_subset,
        accuse=st_accuse,
        verdict=st_verdict,
        close=st_flag,
        fusers=st_subset,
        expire=st_flag,
    )
    def rule_round_scenario(self, scheme, kind, posters, accuse, verdict, close, fusers, expire):
        self.rule_open(scheme, kind)
        r = self.rounds[-1]
        for member in range(N):
            if posters >> member & 1:
                self._post(0, member, 1)
        if close:
            self._jump_to(r.pd + 1)
            self.rule_close(0)
        if accuse >= 0:
            self.rule_complain(0, (accuse + 1) % N, accuse, verdict != "wrong-key")
            judges = r.complaint[2] if r.complaint else 0
            for i, member in enumerate(m for m in range(N) if judges >> m & 1):
                if verdict != "silent" or i == 0:
                    self.rule_judge(0, member, verdict == "guilty" or (verdict == "split" and i == 0))
        for member in range(N):
            if fusers >> member & 1:
                self.rule_fuse(0, member, False)
        if expire:
            self._jump_to(r.dl + 1)
            self.rule_finalize(0)
        self.rule_register_model(0)
        for member in range(N):
            self.rule_reveal(0, member)
        if r.status == RoundState.COMPLETED and popcount(r.holders) > 1:
            holders = [m for m in range(N) if r.holders >> m & 1]
            self.rule_blame(0, holders[0], holders[1], Blame.REVEAL_MISMATCH, True)

    @rule(pick=st_pick, partials=st_subset, expire=st_flag, rows=st_rows)
    def rule_request_scenario(self, pick, partials, expire, rows):
        before = len(self.requests)
        self.rule_submit(pick, False, rows)
        if len(self.requests) == before:
            return
        for member in range(N):
            if partials >> member & 1:
                self.rule_partial(0, member)
        if expire:
            self._jump_to(self.requests[-1].deadline + 1)
            self.rule_refund(0)
        else:
            self.rule_complete(0, False)

    # Hypothesis chooses among rules uniformly: a second name doubles a scenario's weight.
    rule_round_scenario_again = rule_round_scenario
    rule_request_scenario_again = rule_request_scenario

    def _jump_to(self, timestamp: int) -> None:
        if timestamp > self.now:
            self.now = timestamp
            travel_to(timestamp)

    @rule(dt=st_dt)
    def rule_sleep(self, dt):
        self.now += dt
        travel_to(self.now)

    # -------------------------------------------------------------- request rules

    @rule(pick=st_pick)
    def rule_register_model(self, pick):
        rid, r = self._round(pick)
        at = self._tick()
        state = self._round_state(r, at)
        if state != RoundState.COMPLETED:
            outcome = ("InferenceRoundNotCompleted", rid, state)
        elif r.kind == INTERMEDIATE:
            outcome = ("InferenceRoundNotServable", rid, INTERMEDIATE)
        else:
            outcome = ("ok",)
        tx = self._expect(
            outcome, lambda: self.w.gateway.registerModel(rid, "m", "{}", FEE, {"from": self.w.governor})
        )
        if tx is not None:
            self.models.append((int(tx.return_value), r))

    @rule(pick=st_pick, reuse=st_flag, rows=st_rows)
    def rule_submit(self, pick, reuse, rows):
        if pick == UNKNOWN or not self.models:
            model_id, r = len(self.models) + 1, None
        else:
            model_id, r = self.models[-1 - pick % len(self.models)]
        # The client signs the request (EIP-712); reusing a nonce of the same request replays it.
        nonce = self.nonces[-1] if reuse and self.nonces else len(self.nonces) + 1
        request = (str(self.client.address), model_id, rows, keccak(b"q"), nonce, 2**40, 10**18)
        digest = bytes(self.w.gateway.requestDigest(request))
        signature = bytes(Account.unsafe_sign_hash(digest, dev_key_of(self.client)).signature)
        at = self._tick()
        maximum = 1 if r is not None and r.kind == STATISTIC else 256
        if r is None:
            outcome = ("InferenceUnknownModel", model_id)
        elif not 1 <= rows <= maximum:
            outcome = ("InferenceInvalidRows", model_id, rows, maximum)
        elif digest in self.digests:
            outcome = ("InferenceRequestReplayed", digest)
        elif r.kind == STATISTIC and popcount(r.contributors) < r.minimum:
            outcome = ("InferenceTooFewContributors", model_id, popcount(r.contributors), r.minimum)
        elif self.used + rows > QUOTA:
            outcome = ("InferenceQuotaExhausted", self.client, self.used, QUOTA)
        elif self.balance < FEE * rows:
            outcome = ("InferenceFeeUnpaid", self.client, self.balance, FEE * rows)
        else:
            outcome = ("ok",)
        gateway = self.w.gateways[0]
        tx = self._expect(
            outcome,
            lambda: self.w.gateway.submitRequest(request, signature, b"q", {"from": gateway.account}),
        )
        if tx is None:
            return
        q = RequestModel(len(self.requests) + 1, model_id, r, FEE * rows, at + TTL, rows)
        assert tx.return_value == q.id
        assert tx.events["RequestSubmitted"]["deadline"] == q.deadline
        assert tx.events["RequestSubmitted"]["rows"] == rows
        self.requests.append(q)
        self.digests.append(digest)
        self.nonces.append(nonce)
        self.used += rows
        self.balance -= q.fee

    @rule(pick=st_pick, member=st_member)
    def rule_partial(self, pick, member):
        qid, q = self._request(pick)
        provider = self.w.providers[member]
        at = self._tick()
        state = self._request_state(q, at)
        if state != RequestState.PENDING:
            outcome = ("InferenceUnexpectedState", qid, state, state_bit(RequestState.PENDING))
        elif q.round.status != RoundState.COMPLETED or not q.round.holders >> member & 1:
            outcome = ("InferenceNotShareholder", qid, provider.address)
        elif member in q.partials:
            outcome = ("InferencePartialAlreadyPosted", qid, provider.address)
        else:
            outcome = ("ok",)
        tx = self._expect(
            outcome, lambda: self.w.gateway.postPartial(qid, b"partial", {"from": provider.account})
        )
        if tx is not None:
            q.partials.add(member)

    @rule(pick=st_pick, wrong=st_flag)
    def rule_complete(self, pick, wrong):
        qid, q = self._request(pick)
        gateway = self.w.gateways[0]
        caller = self.w.providers[0].account if wrong else gateway.account
        at = self._tick()
        state = self._request_state(q, at)
        if state != RequestState.PENDING:
            outcome = ("InferenceUnexpectedState", qid, state, state_bit(RequestState.PENDING))
        elif wrong:
            outcome = ("InferenceWrongGateway", qid, caller, gateway.address)
        elif not q.partials:
            outcome = ("InferenceNoPartials", qid)
        else:
            outcome = ("ok",)
        result = keccak(f"result-{qid}".encode())
        tx = self._expect(outcome, lambda: self.w.gateway.completeRequest(qid, result, {"from": caller}))
        if tx is None:
            return
        q.status = RequestState.COMPLETED
        self.collected += q.fee
        assert events_of(tx) == [
            ("RequestCompleted", {"requestId": qid, "resultCommitment": result, "partials": len(q.partials)})
        ]

    @rule(pick=st_pick)
    def rule_refund(self, pick):
        qid, q = self._request(pick)
        at = self._tick()
        state = self._request_state(q, at)
        outcome = (
            ("ok",)
            if state == RequestState.EXPIRED
            else ("InferenceUnexpectedState", qid, state, state_bit(RequestState.EXPIRED))
        )
        tx = self._expect(outcome, lambda: self.w.gateway.refundExpired(qid, {"from": accounts[3]}))
        if tx is None:
            return
        q.status = RequestState.REFUNDED
        self.balance += q.fee
        self.used -= q.rows

    @rule(withdraw=st_flag)
    def rule_funds(self, withdraw):
        """The client tops up one fee, or governance sweeps the collected fees."""
        self._tick()
        if withdraw:
            treasury = accounts[9]
            before = treasury.balance()
            self.w.gateway.withdrawFees(treasury, {"from": self.w.governor})
            assert treasury.balance() == before + self.collected
            self.collected = 0
        else:
            self.w.gateway.deposit({"from": self.client, "value": FEE})
            self.balance += FEE

    # -------------------------------------------------------------- invariants

    @invariant()
    def invariant_views_match_the_model_and_properties(self):
        ex, gw = self.w.exchange, self.w.gateway
        providers = [p.address for p in self.w.providers]
        specs = [
            (ex, "roundCount"),
            (ex, "state", len(self.rounds) + 1),
            (gw, "requestCount"),
            (gw, "state", len(self.requests) + 1),
            (gw, "collectedFees"),
            (gw, "balanceOf", self.client),
            (gw, "quotaOf", self.client),
            (None, "balance", gw.address),
        ]
        for r in self.rounds:
            specs += [
                (ex, "state", r.id),
                (ex, "roundInfo", r.id),
                (ex, "roundGuards", r.id),
                (ex, "pendingComplaint", r.id),
            ]
            specs += [
                (ex, fn, r.id, p) for p in providers for fn in ("chunksPosted", "shareCommitment", "isHolder")
            ]
        for q in self.requests:
            specs += [(gw, "state", q.id), (gw, "requestInfo", q.id)]
        values = iter(batch_call(specs))
        round_count, unknown_round, request_count, unknown_request = (next(values) for _ in range(4))
        collected, balance, quota, ether = (next(values) for _ in range(4))

        # Rounds 1, 3, 4: identity, terminal states, derived expiry.
        assert round_count == len(self.rounds) and unknown_round == RoundState.NONE
        for r in self.rounds:
            state, info, guards, pending = next(values), next(values), next(values), next(values)
            expected = self._round_state(r, self.now)
            # 17: the floor is fixed at opening; exclusions are the model's.
            assert guards == (r.floor, r.excluded)
            if r.complaint is None:
                assert pending == ("0x" + "00" * 20, "0x" + "00" * 20, 0, 0, 0)
            else:
                a, snd, judges, guilty, innocent = r.complaint
                assert pending == (providers[a].lower(), providers[snd].lower(), judges, guilty, innocent)
                # 19: judges are the other contributors; nobody fuses while they judge.
                assert judges & ~r.contributors == 0 and not judges >> a & 1 and not judges >> snd & 1
                assert (guilty | innocent) & ~judges == 0 and guilty & innocent == 0
                assert info[7] == 0 and r.status == RoundState.FUSING
            assert state == expected
            previous = self.observed_rounds.get(r.id)
            assert previous not in TERMINAL_ROUND or state == previous
            self.observed_rounds[r.id] = state
            assert (state == RoundState.EXPIRED) == (
                r.status in (RoundState.POSTING, RoundState.FUSING) and self.now > r.dl
            )
            contributors, holders = info[6], info[7]
            assert (contributors, holders) == (r.contributors, r.holders)
            everyone = 2**N - 1
            # 7, 8: disjoint posted/excluded; contributors zero while posting.
            assert r.posted & r.excluded == 0
            if r.status == RoundState.POSTING:
                assert contributors == 0
            assert contributors & r.excluded == 0
            # 11: holders among the non-excluded participants.
            assert holders & ~(everyone & ~r.excluded) == 0
            if r.status in (RoundState.FUSING, RoundState.COMPLETED):
                if r.scheme == ADDITIVE:  # 9
                    assert contributors == everyone
                else:  # 10, 18
                    assert popcount(contributors) >= r.floor >= max(r.t, 3)
            if r.status == RoundState.COMPLETED:
                assert holders == everyone if r.scheme == ADDITIVE else popcount(holders) >= r.t
            if r.status in (RoundState.POSTING, RoundState.FUSING) and r.scheme == SHAMIR:
                assert N - popcount(r.excluded) >= r.floor
            for i in range(N):
                chunks_posted, commitment, is_holder = next(values), next(values), next(values)
                accepted, chunks = r.progress.get(i, (0, []))
                assert chunks_posted == accepted  # 6
                complete = bool(chunks) and accepted == len(chunks)
                assert commitment == (share_commitment(chunks) if complete else ZERO32)
                assert is_holder == (state == RoundState.COMPLETED and bool(holders >> i & 1))  # 13

        # Requests 1, 2, 3, 6, 7, 8, 9.
        assert request_count == len(self.requests) and unknown_request == RequestState.NONE
        held = 0
        for q in self.requests:
            state, info = next(values), next(values)
            assert state == self._request_state(q, self.now)
            previous = self.observed_requests.get(q.id)
            assert previous not in TERMINAL_REQUEST or state == previous
            self.observed_requests[q.id] = state
            assert norm(info) == norm(
                (q.model_id, self.client, self.w.gateways[0].address, q.fee, q.deadline, len(q.partials))
            )
            assert len(q.partials) <= popcount(q.round.holders)
            if state in (RequestState.PENDING, RequestState.EXPIRED):
                held += q.fee
        assert collected == self.collected
        assert balance == self.balance
        assert quota == (QUOTA, self.used)
        assert self.used == sum(q.rows for q in self.requests if q.status != RequestState.REFUNDED) <= QUOTA
        assert ether == balance + collected + held


@pytest.fixture(scope="module")
def _lifecycle(_world4, client):
    _world4.admit_client(client, quota=QUOTA, deposit=3 * FEE)
    return _world4


def test_round_and_request_lifecycles(_lifecycle, client):
    # Brownie's own `state_machine` does exactly this (snapshot, revert per example), but
    # its compiled build here rejects every rules class (TypeError in __init__).
    Lifecycles.w = _lifecycle
    Lifecycles.client = client
    chain.snapshot()
    run_state_machine_as_test(
        Lifecycles,
        settings=settings(
            max_examples=20,
            stateful_step_count=25,
            deadline=None,
            database=None,
            suppress_health_check=HealthCheck.all(),
        ),
    )
