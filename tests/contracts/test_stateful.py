"""Hypothesis stateful tests of the round and request lifecycles and of the membership
(organisations, suspensions, role limits, sync deadlines and expiry) (docs/properties.md).

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
from eth_utils import keccak
from helpers import (
    ADDITIVE,
    BOTH_ROLES,
    GATEWAY,
    INTERMEDIATE,
    MEASUREMENT,
    NITRO,
    POLICY_HASH,
    PRIME_61,
    PROVIDER,
    RING_2_64,
    SEEDED,
    SHAMIR,
    SHARED_MODEL,
    STATISTIC,
    TAG,
    VERIFIER_KEYS,
    ZERO32,
    Abort,
    Blame,
    ClientRequest,
    Consortium,
    EvidenceClaim,
    Exclusion,
    OrgStatus,
    Reason,
    RequestState,
    RoundState,
    batch_call,
    events_of,
    key_of,
    membership_digest,
    next_block_at,
    norm,
    now,
    rejects,
    request_typed_data,
    role_bits,
    share_commitment,
    sign_verified_evidence,
    state_bit,
    travel_to,
    typed_data_digest,
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
    # additive t-of-n recovery: its deadline, the holders owing keys, those that revealed
    rdl: int = 0
    owing: int = 0
    recovered: int = 0

    @property
    def tolerant(self) -> bool:
        return self.scheme == ADDITIVE and self.t < N


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
    st_scheme = st.sampled_from([(ADDITIVE, N), (ADDITIVE, N - 1), (SHAMIR, 2), (SHAMIR, 3)])
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
    # Mostly the client's own signature; sometimes a gateway acting on its own.
    st_consent = st.sampled_from(["client", "client", "client", "client", "gateway key", "late", "low cap"])

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
        self.digests: set[bytes] = set()
        self.signed: list[tuple] = []  # recorded (request, signature, model id, round)
        self.nonce = 0
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
        if r.status == RoundState.RECOVERING and at > r.rdl:
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
        r.floor = N if scheme_id == ADDITIVE and t == N else max(t, 3, minimum)
        modulus = RING_2_64 if scheme_id == ADDITIVE else PRIME_61
        tx = self.w.exchange.openRound(
            TAG,
            (4, 16, scheme_id, SEEDED, modulus, 0),
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
        if popcount(r.posted) >= r.floor:
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
        if r.scheme == ADDITIVE and not r.tolerant:
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
            if r.excluded and r.tolerant:
                names += self._start_recovery(tx, r, at)
            else:
                r.status = RoundState.COMPLETED
                names.append("RoundCompleted")
                assert tx.events["RoundCompleted"]["holders"] == r.holders
        assert [name for name, _ in events_of(tx)] == names

    def _start_recovery(self, tx, r: RoundModel, at: int) -> list[str]:
        """The contract froze the holders: every-pair rounds here, so every holder owes keys."""
        absent = (2**N - 1) & ~r.holders
        r.status, r.owing, r.rdl = RoundState.RECOVERING, r.holders, at + (r.dl - r.pd)
        started = tx.events["RecoveryStarted"]
        assert (started["absent"], started["owing"], started["recoveryDeadline"]) == (absent, r.owing, r.rdl)
        return ["RecoveryStarted"]

    def _recovery_keys(
        self, rid: int, r: RoundModel, member: int, honest: bool
    ) -> tuple[list, list, list, list]:
        p = [x.address for x in self.w.providers]
        absent = [j for j in range(N) if not r.holders >> j & 1]
        sent = (
            [self.w.posting_key(rid, p[member], p[j]) for j in absent] if r.contributors >> member & 1 else []
        )
        posted = [j for j in absent if r.contributors >> j & 1]
        received = [self.w.posting_key(rid, p[j], p[member]) for j in posted]
        if not honest and sent:
            sent[0] = keccak(b"another key")
        elif not honest and received:
            received[0] = keccak(b"another key")
        own = self.w.key_table(rid, p[member]) if sent else []
        return sent, received, own, [self.w.key_table(rid, p[j]) for j in posted]

    @rule(pick=st_pick, member=st_member, honest=st_flag)
    def rule_recover(self, pick, member, honest):
        rid, r = self._round(pick)
        who = self.w.providers[member]
        at = self._tick()
        state = self._round_state(r, at)
        bit = 1 << member
        keys = self._recovery_keys(rid, r, member, honest) if r is not None else ([], [], [], [])
        forged = not honest and bool(keys[0] or keys[1])
        if state != RoundState.RECOVERING:
            outcome = ("RoundUnexpectedState", rid, state, state_bit(RoundState.RECOVERING))
        elif not r.owing & bit:
            outcome = ("RoundNothingToRecover", rid, who.address)
        elif r.recovered & bit:
            outcome = ("RoundAlreadyRecovered", rid, who.address)
        elif forged:
            absent = [j for j in range(N) if not r.holders >> j & 1]
            first = self.w.providers[
                absent[0] if keys[0] else [j for j in absent if r.contributors >> j & 1][0]
            ]
            pair = (who, first) if keys[0] else (first, who)
            outcome = ("RoundRecoveryKeyMismatch", rid, pair[0].address, pair[1].address)
        else:
            outcome = ("ok",)
        tx = self._expect(outcome, lambda: self.w.exchange.recoverAbsent(rid, *keys, {"from": who.account}))
        if tx is None:
            return
        r.recovered |= bit
        names = ["RecoveryKeysRevealed"]
        if r.recovered == r.owing:
            r.status, r.contributors = RoundState.COMPLETED, r.contributors & r.holders
            names.append("RoundCompleted")
            assert tx.events["RoundCompleted"]["contributors"] == r.contributors
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
        elif r.status == RoundState.RECOVERING:
            self._aborted(tx, r, Abort.MISSING_RECOVERY, r.owing & ~r.recovered)
        elif r.complaint is not None:
            _, _, judges, guilty, innocent = r.complaint
            r.complaint = None
            self._aborted(tx, r, Abort.MISSING_VERDICT, judges & ~(guilty | innocent))
        elif r.scheme == SHAMIR and popcount(r.holders) >= r.t:
            r.status = RoundState.COMPLETED
            assert events_of(tx) == [
                ("RoundCompleted", {"roundId": rid, "contributors": r.contributors, "holders": r.holders})
            ]
        elif r.tolerant and popcount(r.holders & r.contributors) >= r.floor:
            assert [name for name, _ in events_of(tx)] == self._start_recovery(tx, r, at)
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
        recoverers=st_subset,
    )
    def rule_round_scenario(self, scheme, kind, posters, accuse, verdict, close, fusers, expire, recoverers):
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
        if r.status == RoundState.RECOVERING:
            for member in range(N):
                if recoverers >> member & 1:
                    self.rule_recover(0, member, True)
            if r.status == RoundState.RECOVERING:
                self._jump_to(r.rdl + 1)
                self.rule_finalize(0)
        self.rule_register_model(0)
        for member in range(N):
            self.rule_reveal(0, member)
        if r.status == RoundState.COMPLETED and popcount(r.holders) > 1:
            holders = [m for m in range(N) if r.holders >> m & 1]
            self.rule_blame(0, holders[0], holders[1], Blame.REVEAL_MISMATCH, True)

    @rule(
        kind=st_kind,
        absent=st_member,
        drop=st.sampled_from(["post", "fuse"]),
        recoverers=st_subset,
        forger=st_accuse,
    )
    def rule_recovery_scenario(self, kind, absent, drop, recoverers, forger):
        """An additive t-of-n round with one member absent (never posting, or never
        fusing) reaches Recovering; some holders reveal, the rest may stay silent."""
        self.rule_open((ADDITIVE, N - 1), kind)
        r = self.rounds[-1]
        for member in range(N):
            if member != absent or drop == "fuse":
                self._post(0, member, 1)
        if r.status == RoundState.POSTING:
            self._jump_to(r.pd + 1)
            self.rule_close(0)
        for member in range(N):
            if member != absent:
                self.rule_fuse(0, member, False)
        self._jump_to(r.dl + 1)
        self.rule_finalize(0)
        for member in range(N):
            if member == forger:  # a made-up key first: refused, nothing changes
                self.rule_recover(0, member, False)
            if recoverers >> member & 1:
                self.rule_recover(0, member, True)
        if r.status == RoundState.RECOVERING:
            self._jump_to(r.rdl + 1)
            self.rule_finalize(0)
        self.rule_register_model(0)

    @rule(pick=st_pick, partials=st_subset, expire=st_flag, rows=st_rows, consent=st_consent, reuse=st_flag)
    def rule_request_scenario(self, pick, partials, expire, rows, consent, reuse):
        before = len(self.requests)
        self.rule_submit(pick, reuse, rows, consent)
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

    @rule(pick=st_pick, reuse=st_flag, rows=st_rows, consent=st_consent)
    def rule_submit(self, pick, reuse, rows, consent="client"):
        """The gateway records a request: signed by the client (or, per `consent`, by the
        gateway's own key, with a deadline already passed, or with a cap below the fee),
        or replays the last recorded signed request (`reuse`)."""
        at = self.now + 1
        if reuse and self.signed:
            request, signature, model_id, r = self.signed[-1]
            rows = request.rows
        else:
            if pick == UNKNOWN or not self.models:
                model_id, r = len(self.models) + 1, None
            else:
                model_id, r = self.models[-1 - pick % len(self.models)]
            self.nonce += 1
            request = ClientRequest(
                client=str(self.client.address),
                modelId=model_id,
                rows=rows,
                inputHash=keccak(f"query-{self.nonce}".encode()),
                nonce=self.nonce,
                deadline=at - 1 if consent == "late" else at + 3600,
                maxFee=max(FEE * rows - 1, 0) if consent == "low cap" else FEE * rows,
            )
            key = self.w.gateways[0].key if consent == "gateway key" else key_of(self.client)
            signature = self.w.sign_request(request, key)
        digest = typed_data_digest(request_typed_data(request, chain.id, self.w.gateway.address))
        forged = not (reuse and self.signed) and consent == "gateway key"
        self._tick()
        maximum = 1 if r is not None and r.kind == STATISTIC else 256
        if r is None:
            outcome = ("InferenceUnknownModel", model_id)
        elif not 1 <= rows <= maximum:
            outcome = ("InferenceInvalidRows", model_id, rows, maximum)
        elif at > request.deadline:
            outcome = ("InferenceSignatureExpired", request.deadline, at)
        elif digest in self.digests:
            outcome = ("InferenceRequestReplayed", digest)
        elif forged:
            outcome = ("InferenceInvalidClientSignature", self.client, digest)
        elif r.kind == STATISTIC and popcount(r.contributors) < r.minimum:
            outcome = ("InferenceTooFewContributors", model_id, popcount(r.contributors), r.minimum)
        elif FEE * rows > request.maxFee:
            outcome = ("InferenceFeeAboveCap", FEE * rows, request.maxFee)
        elif self.used + rows > QUOTA:
            outcome = ("InferenceQuotaExhausted", self.client, self.used, QUOTA)
        elif self.balance < FEE * rows:
            outcome = ("InferenceFeeUnpaid", self.client, self.balance, FEE * rows)
        else:
            outcome = ("ok",)
        gateway = self.w.gateways[0]
        tx = self._expect(
            outcome,
            lambda: self.w.gateway.submitRequest(
                request.as_tuple(), signature, b"q", {"from": gateway.account}
            ),
        )
        if tx is None:
            return
        q = RequestModel(len(self.requests) + 1, model_id, r, FEE * rows, at + TTL, rows)
        assert tx.return_value == q.id
        assert tx.events["RequestSubmitted"]["deadline"] == q.deadline
        assert tx.events["RequestSubmitted"]["rows"] == rows
        assert norm(tx.events["RequestSubmitted"]["requestDigest"]) == digest
        self.requests.append(q)
        self.digests.add(digest)
        self.signed.append((request, signature, model_id, r))
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
                (ex, "recoveryInfo", r.id),
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
            state, info, guards, pending, recovery = (next(values) for _ in range(5))
            assert recovery == (r.rdl, r.owing, r.recovered)
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
                (r.status in (RoundState.POSTING, RoundState.FUSING) and self.now > r.dl)
                or (r.status == RoundState.RECOVERING and self.now > r.rdl)
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
            if r.status in (RoundState.FUSING, RoundState.RECOVERING, RoundState.COMPLETED):
                if r.scheme == ADDITIVE and not r.tolerant:  # 9
                    assert contributors == everyone
                else:  # 10, 18
                    assert popcount(contributors) >= r.floor >= max(r.t, 3)
            if r.status == RoundState.COMPLETED:
                if r.tolerant:  # 21: the aggregate covers holders that contributed, at least the floor
                    assert contributors & ~holders == 0 and popcount(contributors) >= r.floor
                else:
                    assert holders == everyone if r.scheme == ADDITIVE else popcount(holders) >= r.t
            if r.status == RoundState.RECOVERING:  # 22: holders frozen, at least the floor contributed
                assert popcount(holders & contributors) >= r.floor and r.recovered & ~r.owing == 0
            if r.status in (RoundState.POSTING, RoundState.FUSING) and (r.scheme == SHAMIR or r.tolerant):
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


# ====================================================================== membership

OPERATORS = 3  # fresh accounts, none admitted at the start
WINDOW, COOL = 60, 120  # the sync policy the membership machine starts with
LIMITS = {PROVIDER: 3, GATEWAY: 2}  # role limits it starts with, so full roles are reachable


@dataclass
class OrgModel:
    status: int = OrgStatus.NONE
    roles: int = 0
    limit: int = 0
    cooling: int = 0
    name: str = ""


@dataclass
class MemberModel:
    account: object
    role: int
    operator: int  # index into the machine's operators
    x25519: bytes
    joined: int
    measurement: bytes = MEASUREMENT
    active: bool = True

    @property
    def address(self) -> str:
        return str(self.account.address)


class Membership(RuleBasedStateMachine):
    """Organisations, registrations with proof of possession, revocations, suspensions,
    reinstatements, digests, role limits, the sync policy and expiry, against a model."""

    st_op = st.integers(0, OPERATORS - 1)
    st_role = st.sampled_from([PROVIDER, GATEWAY])
    st_roles = st.sampled_from([role_bits(PROVIDER), role_bits(GATEWAY), BOTH_ROLES, 0, 1 << 3])
    st_limit = st.sampled_from([1, 1, 2, 0])
    st_pick = st.integers(0, 20)
    st_by = st.sampled_from(["governor", "operator", "enclave", "outsider"])
    st_dt = st.sampled_from([1, 30, 59, 61, 119, 121, 700])

    # Set by the test before the run.
    w: Consortium
    operators: list

    def __init__(self):
        chain.revert()
        super().__init__()
        self.now = now()
        self.orgs = [OrgModel() for _ in range(OPERATORS)]
        self.enclaves: list[MemberModel] = []  # every enclave ever registered, latest record
        self.order: list[MemberModel] = []  # active members in registration order
        self.epoch = self.synced = self.deadline = 0
        self.window, self.cooldown = WINDOW, COOL
        self.limits = dict(LIMITS)
        self.matched: set[str] = set()

    # -------------------------------------------------------------- plumbing

    def _tick(self) -> int:
        self.now += 1
        next_block_at(self.now)
        return self.now

    def _expect(self, outcome, call):
        if outcome[0] == "ok":
            tx = call()
            assert tx.status == 1
            return tx
        with rejects(*outcome):
            call()
        return None

    def _active(self, op: int | None = None, role: int | None = None) -> list[MemberModel]:
        return [
            m for m in self.order if (op is None or m.operator == op) and (role is None or m.role == role)
        ]

    def _digest(self) -> bytes:
        return membership_digest(chain.id, self.w.registry.address, self.epoch, self.order)

    def _new_epoch(self, tx) -> None:
        """A membership change: the next epoch starts at the transaction's time."""
        self.epoch += 1
        self.deadline = self.now + self.window
        self.matched = set()
        name, args = events_of(tx)[-1]
        assert name == "EpochStarted"
        assert args == {
            "epoch": self.epoch,
            "membershipDigest": self._digest(),
            "memberCount": len(self.order),
            "syncDeadline": self.deadline,
        }

    def _leave(self, leaving: list[MemberModel]) -> None:
        for m in leaving:
            m.active = False
        self.order = [m for m in self.order if m.active]

    def _revoked_events(self, leaving, by, reason):
        return [
            (
                "MemberRevoked",
                {
                    "enclave": m.address.lower(),
                    "by": str(by).lower(),
                    "epoch": self.epoch + 1,
                    "reason": reason,
                },
            )
            for m in leaving
        ]

    # -------------------------------------------------------------- governance of organisations

    @initialize()
    def initialize_two_organisations(self):
        """Start with two admitted organisations, each running a provider, and synchronised."""
        self.rule_admit(0, BOTH_ROLES, 2)
        self.rule_admit(1, role_bits(PROVIDER), 1)
        self.rule_register(0, PROVIDER, -1, True)
        self.rule_register(1, PROVIDER, -1, True)
        self.rule_everyone_posts_but(True, -1)

    @rule(op=st_op, roles=st_roles, limit=st_limit)
    def rule_admit(self, op, roles, limit):
        operator = self.operators[op]
        org = self.orgs[op]
        name = f"org-{op}"
        self._tick()
        if roles == 0 or roles & ~BOTH_ROLES or limit == 0:
            outcome = ("RegistryInvalidOrganisation", operator, roles, limit)
        elif org.status != OrgStatus.NONE:
            outcome = ("RegistryOrganisationExists", operator)
        else:
            outcome = ("ok",)
        tx = self._expect(
            outcome,
            lambda: self.w.registry.admitOrganisation(
                operator, name, roles, limit, {"from": self.w.governor}
            ),
        )
        if tx is not None:
            self.orgs[op] = OrgModel(OrgStatus.ADMITTED, roles, limit, 0, name)
            assert [n for n, _ in events_of(tx)] == ["OrganisationAdmitted"]

    @rule(op=st_op)
    def rule_suspend(self, op):
        operator = self.operators[op]
        self._tick()
        outcome = (
            ("ok",)
            if self.orgs[op].status == OrgStatus.ADMITTED
            else ("RegistryOrganisationNotAdmitted", operator)
        )
        tx = self._expect(
            outcome, lambda: self.w.registry.suspendOrganisation(operator, {"from": self.w.governor})
        )
        if tx is None:
            return
        self.orgs[op].status = OrgStatus.SUSPENDED
        leaving = self._active(op)
        expected = self._revoked_events(leaving, self.w.governor, Reason.ORGANISATION_SUSPENDED)
        expected.append(
            ("OrganisationSuspended", {"operator": str(operator).lower(), "revoked": len(leaving)})
        )
        self._leave(leaving)
        if leaving:
            self._new_epoch(tx)
            assert events_of(tx)[:-1] == expected
        else:
            assert events_of(tx) == expected

    @rule(op=st_op)
    def rule_reinstate(self, op):
        operator = self.operators[op]
        org = self.orgs[op]
        at = self._tick()
        cooling = org.status == OrgStatus.ADMITTED and org.cooling > at
        outcome = (
            ("ok",)
            if org.status == OrgStatus.SUSPENDED or cooling
            else ("RegistryOrganisationNotSuspended", operator)
        )
        tx = self._expect(
            outcome, lambda: self.w.registry.reinstateOrganisation(operator, {"from": self.w.governor})
        )
        if tx is not None:
            org.status, org.cooling = OrgStatus.ADMITTED, 0
            assert [n for n, _ in events_of(tx)] == ["OrganisationReinstated"]

    @rule(role=st_role, limit=st.sampled_from([0, 1, 2, 3, 65]))
    def rule_set_role_limit(self, role, limit):
        self._tick()
        outcome = ("ok",) if 1 <= limit <= 64 else ("RegistryInvalidRoleLimit", role, limit)
        tx = self._expect(
            outcome, lambda: self.w.registry.setRoleLimit(role, limit, {"from": self.w.governor})
        )
        if tx is not None:
            self.limits[role] = limit

    @rule(window=st.sampled_from([9, 10, 60, 120]), cooldown=st.sampled_from([0, 120, 600]))
    def rule_set_sync_policy(self, window, cooldown):
        self._tick()
        outcome = ("ok",) if window >= 10 else ("RegistryInvalidSyncPolicy", window, cooldown)
        tx = self._expect(
            outcome, lambda: self.w.registry.setSyncPolicy(window, cooldown, {"from": self.w.governor})
        )
        if tx is not None:
            self.window, self.cooldown = window, cooldown

    # -------------------------------------------------------------- members

    @rule(
        op=st_op,
        role=st_role,
        reuse=st.one_of(st.just(-1), st_pick),
        own_key=st.booleans(),
        evidence=st.booleans(),
    )
    def rule_register(self, op, role, reuse, own_key, evidence=False):
        """An operator registers a fresh enclave (or one seen before); `own_key` False: the
        possession is signed by the operator, not by the enclave; `evidence`: through
        `registerWithEvidence` (hardware evidence signed by the trusted verifier)."""
        operator = self.operators[op]
        org = self.orgs[op]
        if reuse >= 0 and self.enclaves:
            account = self.enclaves[reuse % len(self.enclaves)].account
        else:
            account = self.w.new_account("stateful-enclave", fund=0)
        quote = self.w.quote(role, account.address, operator.address, expiry=self.now + 3600)
        signature = self.w.sign(quote)
        possession = self.w.possess(quote, account if own_key else operator)
        at = self._tick()
        active = {m.address for m in self.order}
        if org.status != OrgStatus.ADMITTED:
            outcome = ("RegistryOrganisationNotAdmitted", operator)
        elif at < org.cooling:
            outcome = ("RegistryOrganisationCoolingDown", operator, org.cooling)
        elif not org.roles >> role & 1:
            outcome = ("RegistryRoleNotAllowed", operator, role)
        elif len(self._active(op, role)) >= org.limit:
            outcome = ("RegistryEnclaveLimit", operator, role, org.limit)
        elif not own_key:
            outcome = ("RegistryPossessionNotProven", account.address, operator.address)
        elif str(account.address) in active:
            outcome = ("RegistryAlreadyMember", account.address)
        elif len(self._active(role=role)) >= self.limits[role]:
            outcome = ("RegistryRoleFull", role, self.limits[role])
        else:
            outcome = ("ok",)
        blob = keccak(text=f"evidence-{account.address}-{quote.nonce.hex()}") * 8
        claim = EvidenceClaim(NITRO, keccak(blob), POLICY_HASH)
        if evidence:
            (verified,) = sign_verified_evidence(
                VERIFIER_KEYS[:1], quote, claim, chain.id, self.w.registry.address
            )
            send = lambda: self.w.registry.registerWithEvidence(  # noqa: E731
                quote.as_tuple(), claim.as_tuple(), [verified], possession, blob, {"from": operator}
            )
        else:
            send = lambda: self.w.registry.register(  # noqa: E731
                quote.as_tuple(), signature, possession, {"from": operator}
            )
        tx = self._expect(outcome, send)
        if tx is None:
            return
        recorded = tuple(self.w.registry.evidenceOf(account.address))
        assert norm(recorded) == norm(claim.as_tuple() if evidence else (0, ZERO32, ZERO32))
        member = MemberModel(account, role, op, quote.x25519Key, self.epoch + 1)
        self.enclaves = [m for m in self.enclaves if m.address != member.address] + [member]
        self.order.append(member)
        self._new_epoch(tx)
        names = [n for n, _ in events_of(tx)]
        assert names == ["EvidenceRecorded"] * evidence + ["MemberRegistered", "EpochStarted"]

    @rule(pick=st_pick, by=st_by)
    def rule_revoke(self, pick, by):
        if not self.enclaves:
            return
        m = self.enclaves[pick % len(self.enclaves)]
        caller = {
            "governor": self.w.governor,
            "operator": self.operators[m.operator],
            "enclave": m.account,
            "outsider": accounts[3],
        }[by]
        self._tick()
        if not m.active:
            outcome = ("RegistryNotActiveMember", m.address)
        elif by == "outsider":
            outcome = ("RegistryRevokeUnauthorized", caller, m.address)
        else:
            outcome = ("ok",)
        tx = self._expect(outcome, lambda: self.w.registry.revoke(m.address, {"from": caller}))
        if tx is None:
            return
        reason = Reason.GOVERNANCE if by == "governor" else Reason.OPERATOR
        expected = self._revoked_events([m], caller, reason)
        self._leave([m])
        self._new_epoch(tx)
        assert events_of(tx)[:-1] == expected

    @rule(pick=st_pick, correct=st.booleans(), stale=st.booleans())
    def rule_post_digest(self, pick, correct, stale):
        if not self.enclaves:
            return
        m = self.enclaves[pick % len(self.enclaves)]
        epoch = self.epoch - 1 if stale else self.epoch
        digest = self._digest() if correct else keccak(b"a membership nobody has")
        self._tick()
        if not m.active:
            outcome = ("RegistryNotActiveMember", m.address)
        elif stale:
            outcome = ("RegistryWrongEpoch", epoch, self.epoch)
        elif m.address in self.matched:
            outcome = ("RegistryDigestAlreadyPosted", m.address, epoch)
        else:
            outcome = ("ok",)
        tx = self._expect(
            outcome, lambda: self.w.registry.postMembershipDigest(epoch, digest, {"from": m.account})
        )
        if tx is None:
            return
        names = ["MembershipDigestPosted"]
        assert events_of(tx)[0][1]["matches"] is correct
        if correct:
            self.matched.add(m.address)
            if len(self.matched) == len(self.order):
                self.synced = self.epoch
                names.append("EpochSynchronised")
        assert [n for n, _ in events_of(tx)] == names

    @rule(correct=st.booleans(), skip=st.integers(-1, 3))
    def rule_everyone_posts_but(self, correct, skip):
        """Every active member but (at most) one posts: the common road to expiry."""
        for i, m in enumerate(list(self.order)):
            if i != skip and m.address not in self.matched:
                self.rule_post_digest(self.enclaves.index(m), correct, False)

    @rule()
    def rule_expire(self):
        at = self._tick()
        if self.epoch == 0 or self.synced == self.epoch:
            outcome = ("RegistryEpochSynchronised", self.epoch)
        elif at <= self.deadline:
            outcome = ("RegistrySyncStillOpen", self.epoch, self.deadline)
        elif not self.matched:
            outcome = ("RegistryNoMemberSynchronised", self.epoch)
        else:
            outcome = ("ok",)
        tx = self._expect(outcome, lambda: self.w.registry.expireUnsynchronised({"from": accounts[3]}))
        if tx is None:
            return
        laggards = [m for m in self.order if m.address not in self.matched]
        assert laggards  # otherwise the epoch would be synchronised
        expected = self._revoked_events(laggards, accounts[3], Reason.UNSYNCHRONISED)
        for m in laggards:
            self.orgs[m.operator].cooling = at + self.cooldown
        self._leave(laggards)
        self._new_epoch(tx)
        assert events_of(tx)[:-1] == expected

    # -------------------------------------------------------------- scenarios
    # Built from the single-call rules (every call still predicted and checked) to reach
    # full roles, expiries and cool-downs within short runs.

    @rule(
        joins=st.lists(st.tuples(st_op, st_role), min_size=1, max_size=4),
        skip=st.integers(0, 4),
        correct=st.booleans(),
        retry=st_op,
    )
    def rule_liveness_scenario(self, joins, skip, correct, retry):
        """Some enclaves join, everyone but one posts, the deadline passes, anyone expires,
        and an operator tries to register again (cooling down if it was dropped)."""
        for op, role in joins:
            self.rule_register(op, role, -1, True)
        self.rule_everyone_posts_but(correct, skip)
        self.rule_sleep_past_the_deadline()
        self.rule_expire()
        self.rule_register(retry, PROVIDER, -1, True)
        self.rule_register(retry, GATEWAY, -1, True)

    # Hypothesis chooses among rules uniformly: a second name doubles a rule's weight.
    rule_liveness_scenario_again = rule_liveness_scenario
    rule_register_again = rule_register

    @rule(dt=st_dt)
    def rule_sleep(self, dt):
        self.now += dt
        travel_to(self.now)

    @rule()
    def rule_sleep_past_the_deadline(self):
        if self.deadline >= self.now:
            self.now = self.deadline + 1
            travel_to(self.now)

    # -------------------------------------------------------------- invariants

    @invariant()
    def invariant_registry_matches_the_model(self):
        reg = self.w.registry
        specs = [
            (reg, "epoch"),
            (reg, "synchronisedEpoch"),
            (reg, "isSynchronised"),
            (reg, "syncDeadline"),
            (reg, "membershipDigest"),
            (reg, "syncPolicy"),
            (reg, "roleLimit", PROVIDER),
            (reg, "roleLimit", GATEWAY),
            (reg, "activeMembers", PROVIDER),
            (reg, "activeMembers", GATEWAY),
        ]
        for op in self.operators:
            specs += [
                (reg, "organisation", op),
                (reg, "enclaveCount", op, PROVIDER),
                (reg, "enclaveCount", op, GATEWAY),
            ]
        for m in self.enclaves:
            specs += [(reg, "member", m.address), (reg, "digestMatched", self.epoch, m.address)]
        values = iter(batch_call(specs))
        epoch, synced, is_synced, deadline, digest, policy = (next(values) for _ in range(6))
        limits = {PROVIDER: next(values), GATEWAY: next(values)}
        providers, gateways = next(values), next(values)

        # M1, M6: the epoch clock and its deadline.
        assert (epoch, synced, deadline) == (self.epoch, self.synced, self.deadline)
        # M2: the digest formula over the active members in registration order.
        assert digest == self._digest()
        # M3: synchronised exactly when every active member posted the matching digest.
        assert is_synced == (self.epoch != 0 and self.synced == self.epoch)
        if is_synced:
            assert self.matched == {m.address for m in self.order}
        assert policy == (self.window, self.cooldown) and limits == self.limits
        assert providers == tuple(m.address.lower() for m in self._active(role=PROVIDER))
        assert gateways == tuple(m.address.lower() for m in self._active(role=GATEWAY))
        for op, org in enumerate(self.orgs):
            record, n_providers, n_gateways = next(values), next(values), next(values)
            assert record == (org.status, org.roles, org.limit, org.cooling, org.name)
            # M4: counts are of active enclaves; a suspended organisation has none.
            assert (n_providers, n_gateways) == (
                len(self._active(op, PROVIDER)),
                len(self._active(op, GATEWAY)),
            )
            if org.status != OrgStatus.ADMITTED:
                assert n_providers == n_gateways == 0
            assert n_providers <= max(org.limit, 0) and n_gateways <= max(org.limit, 0)
        for m in self.enclaves:
            record, matched = next(values), next(values)
            assert record == norm(
                (m.role, m.active, self.operators[m.operator], m.measurement, m.x25519, m.joined)
            )
            assert matched == (m.address in self.matched)


@pytest.fixture(scope="module")
def _membership(_bare):
    w = _bare
    tx = {"from": w.governor}
    w.registry.setSyncPolicy(WINDOW, COOL, tx)
    w.trust_verifiers(1)
    for role, limit in LIMITS.items():
        w.registry.setRoleLimit(role, limit, tx)
    operators = [w.new_account("stateful-operator") for _ in range(OPERATORS)]
    return w, operators


def test_membership_organisations_and_liveness(_membership):
    Membership.w, Membership.operators = _membership
    chain.snapshot()
    run_state_machine_as_test(
        Membership,
        settings=settings(
            max_examples=20,
            stateful_step_count=30,
            deadline=None,
            database=None,
            suppress_health_check=HealthCheck.all(),
        ),
    )
