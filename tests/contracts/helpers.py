"""Shared helpers of the contract tests.

The pure functions at the top (`membership_digest`, `share_commitment`, `quote_typed_data`,
`sign_quote`, `possession_typed_data`, `sign_possession`, `request_typed_data`,
`sign_request`) pin the off-chain formulas the agents and clients use, computed here
independently of the contracts; the tests assert that the contracts agree with them.
`Consortium` drives the three deployed contracts the way real agents do (admitted
organisations, signed quotes with proof of possession, real enclave accounts, clients
signing their own requests) and keeps a Python model of the membership so expected
values never come from the contract under test.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from typing import Any

import brownie
from brownie import (
    ConsortiumRegistry,
    InferenceGateway,
    MockContractWallet,
    ShareExchange,
    accounts,
    chain,
    history,
    web3,
)
from eth_abi import encode as abi_encode
from eth_account import Account
from eth_account.messages import encode_typed_data
from eth_utils import keccak
from hexbytes import HexBytes

# ------------------------------------------------------------------ enums (Types.sol)

ROLE_NONE, PROVIDER, GATEWAY = 0, 1, 2
ADDITIVE, SHAMIR = 0, 1
DENSE, SEEDED = 0, 1
SHARED_MODEL, STATISTIC, INTERMEDIATE = 0, 1, 2


class RoundState:
    NONE, POSTING, FUSING, COMPLETED, ABORTED, EXPIRED, RECOVERING = range(7)


class RequestState:
    NONE, PENDING, COMPLETED, EXPIRED, REFUNDED = range(5)


class Abort:
    (
        NONE,
        MISSING_SHARES,
        INVALID_SHARE,
        MISSING_FUSION,
        TOO_FEW_CONTRIBUTORS,
        FALSE_COMPLAINT,
        KEY_MISMATCH,
        SPLIT_VERDICT,
        MISSING_VERDICT,
        MISSING_RECOVERY,
    ) = range(10)


class Exclusion:
    NONE, INVALID_SHARE, FALSE_COMPLAINT, KEY_MISMATCH = range(4)


class Blame:
    NONE, REVEAL_MISMATCH, REVEAL_UNREADABLE, SHARE_OFF_POLYNOMIAL, WRONG_PARTIAL = range(5)


class OrgStatus:
    NONE, ADMITTED, SUSPENDED = range(3)


class Reason:
    """RevokeReason of `MemberRevoked`."""

    NONE, GOVERNANCE, OPERATOR, MEASUREMENT_REVOKED, ORGANISATION_SUSPENDED, UNSYNCHRONISED = range(6)


def role_bits(*roles: int) -> int:
    """The organisation's roles bitmap: bit 1 << role per allowed role."""
    out = 0
    for role in roles:
        out |= 1 << role
    return out


BOTH_ROLES = role_bits(PROVIDER, GATEWAY)
MAX_ROLE_LIMIT = 64
SYNC_WINDOW, COOLDOWN = 600, 86400  # the registry's default sync policy
# Test operators (accounts[4..8]) are admitted with this many enclaves per role: a role
# is full (MAX_ROLE_LIMIT) before any of them reaches its own limit.
GENEROUS = MAX_ROLE_LIMIT


RING_2_64 = 2**64
PRIME_61 = 2**61 - 1  # a Mersenne prime: the Shamir field of the tests
ZERO32 = b"\x00" * 32
MEASUREMENT = keccak(b"enclave-agent measurement v1")
OTHER_MEASUREMENT = keccak(b"enclave-agent measurement v2")
SIGNER_KEY = keccak(b"attestation signer")
TAG = keccak(b"input: loans-2024")


def bits(*indices: int) -> int:
    """The bitmap with the given participant indices set."""
    out = 0
    for i in indices:
        out |= 1 << i
    return out


def state_bit(*states: int) -> bytes:
    """The `expected` bitmap of the UnexpectedState errors, as bytes32."""
    return bits(*states).to_bytes(32, "big")


# ------------------------------------------------------------------ off-chain formulas


def member_list_hash(members: Iterable[Any]) -> bytes:
    """keccak chain over the active members in registration order, from h = 0:
    h = keccak(abi.encode(h, enclave, role, measurement, x25519Key)).
    `members` yields objects with address, role, measurement and x25519 attributes."""
    h = ZERO32
    for m in members:
        h = keccak(
            abi_encode(
                ["bytes32", "address", "uint8", "bytes32", "bytes32"],
                [h, m.address, m.role, m.measurement, m.x25519],
            )
        )
    return h


def membership_digest(chain_id: int, registry: str, epoch: int, members: Iterable[Any]) -> bytes:
    """Mirrors ConsortiumRegistry.membershipDigest():
    keccak(abi.encode(chainId, registry, epoch, listHash)), listHash = `member_list_hash`."""
    return keccak(
        abi_encode(
            ["uint256", "address", "uint64", "bytes32"],
            [chain_id, registry, epoch, member_list_hash(members)],
        )
    )


KEY_COMMITMENT_TAG = keccak(b"enclave-share/posting-key/v1")


def key_commitment(
    chain_id: int, exchange: str, round_id: int, sender: str, recipient: str, key: bytes
) -> bytes:
    """The commitment a sender posts, in its key table, to the key of its ciphertext for
    `recipient`: keccak(abi.encode(tag, chainid, exchange, roundId, sender, recipient, key))."""
    return keccak(
        abi_encode(
            ["bytes32", "uint256", "address", "uint256", "address", "address", "bytes32"],
            [KEY_COMMITMENT_TAG, chain_id, exchange, round_id, sender, recipient, key],
        )
    )


def table_hash(table: Sequence[bytes]) -> bytes:
    """keccak256(abi.encodePacked(bytes32[])): the concatenation of the entries."""
    return keccak(b"".join(bytes(t) for t in table))


def share_commitment(chunks: Sequence[bytes]) -> bytes:
    """The hash chain of a posting: c0 = 0, c_{i+1} = keccak(c_i ++ keccak(chunk_i))."""
    running = ZERO32
    for chunk in chunks:
        running = keccak(running + keccak(chunk))
    return running


QUOTE_TYPE = [
    {"name": "role", "type": "uint8"},
    {"name": "measurement", "type": "bytes32"},
    {"name": "operator", "type": "address"},
    {"name": "enclave", "type": "address"},
    {"name": "x25519Key", "type": "bytes32"},
    {"name": "chainId", "type": "uint256"},
    {"name": "registry", "type": "address"},
    {"name": "nonce", "type": "bytes32"},
    {"name": "expiry", "type": "uint64"},
]
QUOTE_TYPE_STRING = "Quote(" + ",".join(f"{f['type']} {f['name']}" for f in QUOTE_TYPE) + ")"


@dataclass(frozen=True)
class Quote:
    role: int
    measurement: bytes
    operator: str
    enclave: str
    x25519Key: bytes
    chainId: int
    registry: str
    nonce: bytes
    expiry: int

    def as_tuple(self) -> tuple[Any, ...]:
        return tuple(getattr(self, f["name"]) for f in QUOTE_TYPE)

    def as_message(self) -> dict[str, Any]:
        return {f["name"]: getattr(self, f["name"]) for f in QUOTE_TYPE}

    def but(self, **changes: Any) -> Quote:
        return replace(self, **changes)


def quote_typed_data(quote: Quote, chain_id: int, verifying_contract: str) -> dict[str, Any]:
    """The EIP-712 document an attestation service signs."""
    return {
        "types": {
            "EIP712Domain": [
                {"name": "name", "type": "string"},
                {"name": "version", "type": "string"},
                {"name": "chainId", "type": "uint256"},
                {"name": "verifyingContract", "type": "address"},
            ],
            "Quote": QUOTE_TYPE,
        },
        "primaryType": "Quote",
        "domain": {
            "name": "EnclaveShareRegistry",
            "version": "1",
            "chainId": chain_id,
            "verifyingContract": verifying_contract,
        },
        "message": quote.as_message(),
    }


def sign_quote(key: bytes, quote: Quote, chain_id: int, verifying_contract: str) -> tuple[bytes, bytes]:
    """(signature, EIP-712 digest) of `quote` signed with `key`."""
    return sign_typed_data(key, quote_typed_data(quote, chain_id, verifying_contract))


def sign_typed_data(key: bytes, document: dict[str, Any]) -> tuple[bytes, bytes]:
    """(signature, digest) of an EIP-712 document, signed as a wallet would (eth_account)."""
    signed = Account.sign_message(encode_typed_data(full_message=document), key)
    return bytes(signed.signature), bytes(signed.message_hash)


def typed_data_digest(document: dict[str, Any]) -> bytes:
    """The EIP-712 digest keccak(0x19 0x01 domainSeparator structHash) of a document."""
    message = encode_typed_data(full_message=document)
    return keccak(b"\x19" + message.version + message.header + message.body)


_DOMAIN_TYPE = [
    {"name": "name", "type": "string"},
    {"name": "version", "type": "string"},
    {"name": "chainId", "type": "uint256"},
    {"name": "verifyingContract", "type": "address"},
]
POSSESSION_TYPE = [{"name": "quoteDigest", "type": "bytes32"}]
POSSESSION_TYPE_STRING = "Possession(bytes32 quoteDigest)"


def possession_typed_data(quote_digest: bytes, chain_id: int, registry: str) -> dict[str, Any]:
    """The EIP-712 document an enclave key signs to prove it holds the quoted account:
    `Possession(bytes32 quoteDigest)` in the registry's domain."""
    return {
        "types": {"EIP712Domain": _DOMAIN_TYPE, "Possession": POSSESSION_TYPE},
        "primaryType": "Possession",
        "domain": {
            "name": "EnclaveShareRegistry",
            "version": "1",
            "chainId": chain_id,
            "verifyingContract": registry,
        },
        "message": {"quoteDigest": quote_digest},
    }


def sign_possession(enclave_key: bytes, quote: Quote, chain_id: int, registry: str) -> tuple[bytes, bytes]:
    """(possession signature, possession digest) of `quote` by `enclave_key`."""
    quote_digest = typed_data_digest(quote_typed_data(quote, chain_id, registry))
    return sign_typed_data(enclave_key, possession_typed_data(quote_digest, chain_id, registry))


EVIDENCE_TYPE = [
    {"name": "quoteDigest", "type": "bytes32"},
    {"name": "evidenceType", "type": "uint8"},
    {"name": "evidenceHash", "type": "bytes32"},
    {"name": "policyHash", "type": "bytes32"},
]
EVIDENCE_TYPE_STRING = "VerifiedEvidence(" + ",".join(f"{f['type']} {f['name']}" for f in EVIDENCE_TYPE) + ")"
NITRO = 2  # EvidenceType.AWS_NITRO (enclave_agent.tee.evidence)
POLICY_HASH = keccak(b"evidence policy v1")
VERIFIER_KEYS = [keccak(text=f"evidence verifier {i}") for i in range(4)]


@dataclass(frozen=True)
class EvidenceClaim:
    evidenceType: int
    evidenceHash: bytes
    policyHash: bytes

    def as_tuple(self) -> tuple[Any, ...]:
        return (self.evidenceType, self.evidenceHash, self.policyHash)


def verified_evidence_typed_data(
    quote_digest: bytes, claim: EvidenceClaim, chain_id: int, registry: str
) -> dict[str, Any]:
    """The EIP-712 document an evidence verifier signs: `VerifiedEvidence` in the registry's domain."""
    return {
        "types": {"EIP712Domain": _DOMAIN_TYPE, "VerifiedEvidence": EVIDENCE_TYPE},
        "primaryType": "VerifiedEvidence",
        "domain": {
            "name": "EnclaveShareRegistry",
            "version": "1",
            "chainId": chain_id,
            "verifyingContract": registry,
        },
        "message": {
            "quoteDigest": quote_digest,
            "evidenceType": claim.evidenceType,
            "evidenceHash": claim.evidenceHash,
            "policyHash": claim.policyHash,
        },
    }


def sign_verified_evidence(
    keys: Sequence[bytes], quote: Quote, claim: EvidenceClaim, chain_id: int, registry: str
) -> list[bytes]:
    """Each key's signature over `VerifiedEvidence(quote, claim)`, in ascending signer order."""
    document = verified_evidence_typed_data(
        typed_data_digest(quote_typed_data(quote, chain_id, registry)), claim, chain_id, registry
    )
    ordered = sorted(keys, key=lambda k: int(Account.from_key(k).address, 16))
    return [sign_typed_data(k, document)[0] for k in ordered]


REQUEST_TYPE = [
    {"name": "client", "type": "address"},
    {"name": "modelId", "type": "uint256"},
    {"name": "rows", "type": "uint32"},
    {"name": "inputHash", "type": "bytes32"},
    {"name": "nonce", "type": "uint256"},
    {"name": "deadline", "type": "uint64"},
    {"name": "maxFee", "type": "uint256"},
]
REQUEST_TYPE_STRING = "InferenceRequest(" + ",".join(f"{f['type']} {f['name']}" for f in REQUEST_TYPE) + ")"


@dataclass(frozen=True)
class ClientRequest:
    """What a client signs (Types.sol `ClientRequest`)."""

    client: str
    modelId: int
    rows: int
    inputHash: bytes
    nonce: int
    deadline: int
    maxFee: int

    def as_tuple(self) -> tuple[Any, ...]:
        return tuple(getattr(self, f["name"]) for f in REQUEST_TYPE)

    def as_message(self) -> dict[str, Any]:
        return {f["name"]: getattr(self, f["name"]) for f in REQUEST_TYPE}

    def but(self, **changes: Any) -> ClientRequest:
        return replace(self, **changes)


def request_typed_data(request: ClientRequest, chain_id: int, gateway: str) -> dict[str, Any]:
    """The EIP-712 document a client signs to let a gateway spend on one request."""
    return {
        "types": {"EIP712Domain": _DOMAIN_TYPE, "InferenceRequest": REQUEST_TYPE},
        "primaryType": "InferenceRequest",
        "domain": {
            "name": "EnclaveShareGateway",
            "version": "1",
            "chainId": chain_id,
            "verifyingContract": gateway,
        },
        "message": request.as_message(),
    }


def sign_request(key: bytes, request: ClientRequest, chain_id: int, gateway: str) -> tuple[bytes, bytes]:
    """(signature, EIP-712 digest) of `request` signed with the client's `key`."""
    return sign_typed_data(key, request_typed_data(request, chain_id, gateway))


# ------------------------------------------------------------------ keys of the test accounts

ANVIL_MNEMONIC = "test test test test test test test test test test test junk"
_MNEMONIC_KEYS: dict[str, bytes] = {}


def key_of(account: Any) -> bytes:
    """The private key of a test account: a `accounts.add` account's own, or for the node's
    accounts[i] the key Anvil derives from its default mnemonic (m/44'/60'/0'/0/i)."""
    own = getattr(account, "private_key", None)
    if own:
        return bytes(HexBytes(own))
    address = str(getattr(account, "address", account)).lower()
    for known in accounts:
        if str(known.address).lower() == address and getattr(known, "private_key", None):
            return bytes(HexBytes(known.private_key))
    if not _MNEMONIC_KEYS:
        Account.enable_unaudited_hdwallet_features()
        for i in range(10):
            derived = Account.from_mnemonic(ANVIL_MNEMONIC, account_path=f"m/44'/60'/0'/0/{i}")
            assert derived.address == str(accounts[i].address), "the chain runs another mnemonic"
            _MNEMONIC_KEYS[derived.address.lower()] = bytes(derived.key)
    return _MNEMONIC_KEYS[address]


# ------------------------------------------------------------------ reverts and events


def _error_types() -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for container in (ConsortiumRegistry, ShareExchange, InferenceGateway, MockContractWallet):
        for item in container.abi:
            if item["type"] == "error":
                out[item["name"]] = [i["type"] for i in item["inputs"]]
    return out


_ERRORS: dict[str, list[str]] = {}


def revert_message(name: str, *args: Any) -> str:
    """The string Brownie 1.22 decodes a custom error to: `Name: arg, arg` (addresses lower case,
    bytesN as Python bytes repr), built from the contracts' ABI so the argument count is checked."""
    if not _ERRORS:
        _ERRORS.update(_error_types())
    types = _ERRORS[name]
    assert len(types) == len(args), f"{name} takes {len(types)} arguments"
    values: list[Any] = []
    for kind, value in zip(types, args):
        if kind == "address":
            values.append(str(value).lower())
        elif kind.startswith("bytes"):
            values.append(bytes(HexBytes(value)))
        elif kind == "bool":
            values.append(bool(value))
        else:
            values.append(int(value))
    return f"{name}: {', '.join(str(v) for v in values)}"


def norm(value: Any) -> Any:
    """Normalise decoded values for comparison: addresses lower case, bytes as bytes."""
    if isinstance(value, bool):
        return value
    if isinstance(value, int):
        return int(value)
    if isinstance(value, (bytes, bytearray)):
        return bytes(value)
    if isinstance(value, str):
        if value.startswith("0x") and len(value) == 42:
            return value.lower()
        if value.startswith("0x"):
            return bytes(HexBytes(value))
        return value
    if hasattr(value, "address") and not isinstance(value, (list, tuple)):
        return str(value.address).lower()
    if isinstance(value, (list, tuple)):
        return tuple(norm(v) for v in value)
    return value


def events_of(tx: Any) -> list[tuple[str, dict[str, Any]]]:
    """Every event of `tx`, in order, as (name, normalised arguments)."""
    return [(ev.name, {k: norm(v) for k, v in ev.items()}) for ev in tx.events]


def assert_events(tx: Any, *expected: tuple[str, dict[str, Any]]) -> None:
    """The transaction emitted exactly these events, in this order, with these arguments."""
    want = [(name, {k: norm(v) for k, v in args.items()}) for name, args in expected]
    assert events_of(tx) == want


@contextmanager
def rejects(name: str, *args: Any, world: Any = None) -> Iterator[None]:
    """The block must send one transaction that reverts with exactly this custom error, emits
    nothing and leaves every view of `world` (a Consortium) unchanged."""
    before = world.snapshot() if world is not None else None
    sent = len(history)
    with brownie.reverts(revert_message(name, *args)):
        yield
    assert len(history) == sent + 1, "expected exactly one (reverted) transaction"
    tx = history[-1]
    assert tx.status == 0
    assert not tx.logs and len(tx.events) == 0
    if world is not None:
        assert world.snapshot() == before


def role_hash(name: str) -> bytes:
    return keccak(text=name)


GOVERNOR_ROLE = role_hash("GOVERNOR_ROLE")
COORDINATOR_ROLE = role_hash("COORDINATOR_ROLE")
CLIENT_ROLE = role_hash("CLIENT_ROLE")
DEFAULT_ADMIN_ROLE = ZERO32


def batch_call(specs: Sequence[tuple[Any, ...]]) -> list[Any]:
    """Evaluate many view calls (contract, function, *args) in one JSON-RPC batch, normalised.
    A spec (None, "balance", address) reads an ether balance."""
    if not specs:
        return []
    requests: list[tuple[str, list[Any]]] = []
    for contract, fn, *args in specs:
        if contract is None:
            requests.append(("eth_getBalance", [args[0], "latest"]))
        else:
            data = getattr(contract, fn).encode_input(*args)
            requests.append(("eth_call", [{"to": contract.address, "data": data}, "latest"]))
    responses = web3.provider.make_batch_request(requests)
    out: list[Any] = []
    for (contract, fn, *_), response in zip(specs, responses):
        assert "error" not in response, response
        result = response["result"]
        out.append(int(result, 16) if contract is None else norm(getattr(contract, fn).decode_output(result)))
    return out


# ------------------------------------------------------------------ time


def now() -> int:
    return int(web3.eth.get_block("latest").timestamp)


def next_block_at(timestamp: int) -> None:
    """The next transaction is mined at exactly `timestamp`."""
    response = web3.provider.make_request("evm_setNextBlockTimestamp", [timestamp])
    assert "error" not in response, response


def travel_to(timestamp: int) -> None:
    """Mine an empty block at `timestamp`: views then see that time, and a state derived
    from time (Expired) is already visible before the next transaction."""
    next_block_at(timestamp)
    chain.mine()


# ------------------------------------------------------------------ the consortium


@dataclass
class Enclave:
    """A registered (or registrable) enclave: its chain account and quoted identity."""

    account: Any
    role: int
    operator: Any
    measurement: bytes
    x25519: bytes

    @property
    def address(self) -> str:
        return str(self.account.address)

    @property
    def key(self) -> bytes:
        return key_of(self.account)


def admitted_operators() -> list[Any]:
    """The operators `Consortium.deploy` admits (both roles, GENEROUS enclaves per role):
    accounts[4..8]. accounts[0..3] (governor, coordinator, client, outsider) and
    accounts[9] are never admitted."""
    return [accounts[i] for i in range(4, 9)]


@dataclass
class Consortium:
    """The deployed contracts plus a Python model of the membership."""

    registry: Any
    exchange: Any
    gateway: Any
    governor: Any
    coordinator: Any
    signer_key: bytes
    members: list[Enclave] = field(default_factory=list)
    known: list[str] = field(default_factory=list)
    fees: dict[int, int] = field(default_factory=dict)
    _serial: int = 0

    # -------------------------------------------------------------- set-up

    def clone(self) -> Consortium:
        """A copy whose Python model a test may change (the chain is reverted after each test)."""
        return replace(self, members=list(self.members), known=list(self.known), fees=dict(self.fees))

    @classmethod
    def deploy(cls, governor: Any, coordinator: Any, measurement: bytes = MEASUREMENT) -> Consortium:
        tx = {"from": governor}
        registry = ConsortiumRegistry.deploy(governor, tx)
        exchange = ShareExchange.deploy(registry, governor, tx)
        gateway = InferenceGateway.deploy(registry, exchange, governor, tx)
        exchange.grantRole(COORDINATOR_ROLE, coordinator, tx)
        for role in (PROVIDER, GATEWAY):
            registry.approveMeasurement(role, measurement, tx)
        signer_key = SIGNER_KEY
        registry.setAttestationSigner(Account.from_key(signer_key).address, True, tx)
        for operator in admitted_operators():
            registry.admitOrganisation(operator, f"org-{operator.address[2:8]}", BOTH_ROLES, GENEROUS, tx)
        return cls(registry, exchange, gateway, governor, coordinator, signer_key)

    @property
    def signer(self) -> str:
        return str(Account.from_key(self.signer_key).address)

    def new_account(self, label: str = "enclave", fund: int = 10**18) -> Any:
        """A fresh brownie LocalAccount with a deterministic key (funded with `fund` wei)."""
        self._serial += 1
        acct = accounts.add(keccak(text=f"{label}-{self.registry.address}-{self._serial}"))
        if fund:
            accounts[0].transfer(acct, fund, silent=True)
        self.known.append(str(acct.address))
        return acct

    def admit(
        self,
        operator: Any = None,
        roles: int = BOTH_ROLES,
        limit: int = 1,
        name: str = "fresh-org",
    ) -> tuple[Any, Any]:
        """Admit an organisation (a fresh operator account by default); (operator, tx)."""
        operator = operator or self.new_account("operator")
        tx = self.registry.admitOrganisation(operator, name, roles, limit, {"from": self.governor})
        if str(operator.address) not in self.known:
            self.known.append(str(operator.address))
        return operator, tx

    def quote(self, role: int, enclave: str, operator: str, **changes: Any) -> Quote:
        self._serial += 1
        base = Quote(
            role=role,
            measurement=MEASUREMENT,
            operator=str(operator),
            enclave=str(enclave),
            x25519Key=keccak(text=f"x25519-{enclave}-{self._serial}"),
            chainId=chain.id,
            registry=self.registry.address,
            nonce=keccak(text=f"nonce-{self.registry.address}-{self._serial}"),
            expiry=now() + 3600,
        )
        return base.but(**changes)

    def sign(
        self,
        quote: Quote,
        key: bytes | None = None,
        chain_id: int | None = None,
        verifying: str | None = None,
    ) -> bytes:
        signature, _ = sign_quote(
            key or self.signer_key,
            quote,
            chain.id if chain_id is None else chain_id,
            verifying or self.registry.address,
        )
        return signature

    def possess(self, quote: Quote, key: Any) -> bytes:
        """The possession signature over `quote` made with `key` (bytes, or an account whose key
        is known): the enclave's own key proves it holds the quoted account."""
        raw = key if isinstance(key, (bytes, bytearray)) else key_of(key)
        signature, _ = sign_possession(bytes(raw), quote, chain.id, self.registry.address)
        return signature

    def offer(
        self, role: int, operator: Any, enclave: Any = None, **changes: Any
    ) -> tuple[Any, Quote, bytes, bytes]:
        """A fresh enclave account and its quote, quote signature and possession signature,
        not yet submitted: (enclave account, quote, signature, possession)."""
        enclave = enclave or self.new_account(f"enclave-r{role}")
        quote = self.quote(role, enclave.address, operator.address, **changes)
        return enclave, quote, self.sign(quote), self.possess(quote, enclave)

    def register(
        self, role: int, operator: Any = None, enclave: Any = None, value: int = 0, **changes: Any
    ) -> tuple[Enclave, Any]:
        """Register a new enclave of `role` through a properly signed quote and the enclave's
        own proof of possession, sent by its (admitted) operator."""
        operator = operator or accounts[4]
        enclave, quote, signature, possession = self.offer(role, operator, enclave, **changes)
        tx = self.registry.register(
            quote.as_tuple(), signature, possession, {"from": operator, "value": value}
        )
        member = Enclave(enclave, role, operator, quote.measurement, quote.x25519Key)
        self.members.append(member)
        return member, tx

    def trust_verifiers(self, count: int, threshold: int = 1) -> list[bytes]:
        """Trust the first `count` VERIFIER_KEYS as evidence verifiers, set the threshold; the keys."""
        tx = {"from": self.governor}
        for key in VERIFIER_KEYS[:count]:
            self.registry.setEvidenceVerifier(Account.from_key(key).address, True, tx)
        if threshold != 1:
            self.registry.setVerifierThreshold(threshold, tx)
        return VERIFIER_KEYS[:count]

    def evidence_offer(
        self,
        role: int,
        operator: Any,
        evidence: bytes,
        verifier_keys: Sequence[bytes],
        evidence_type: int = NITRO,
        enclave: Any = None,
        **changes: Any,
    ) -> tuple[Any, Quote, EvidenceClaim, list[bytes], bytes]:
        """A fresh enclave account, its quote, the evidence claim, the verifiers' signatures
        (ascending signers) and the possession signature: (enclave, quote, claim, signatures,
        possession)."""
        enclave = enclave or self.new_account(f"enclave-r{role}")
        quote = self.quote(role, enclave.address, operator.address, **changes)
        claim = EvidenceClaim(evidence_type, keccak(evidence), POLICY_HASH)
        signatures = sign_verified_evidence(verifier_keys, quote, claim, chain.id, self.registry.address)
        return enclave, quote, claim, signatures, self.possess(quote, enclave)

    def register_with_evidence(
        self,
        role: int,
        evidence: bytes,
        verifier_keys: Sequence[bytes],
        operator: Any = None,
        **changes: Any,
    ) -> tuple[Enclave, Any]:
        """Register a new enclave of `role` through hardware evidence signed by `verifier_keys`."""
        operator = operator or accounts[4]
        enclave, quote, claim, signatures, possession = self.evidence_offer(
            role, operator, evidence, verifier_keys, **changes
        )
        tx = self.registry.registerWithEvidence(
            quote.as_tuple(), claim.as_tuple(), signatures, possession, evidence, {"from": operator}
        )
        member = Enclave(enclave, role, operator, quote.measurement, quote.x25519Key)
        self.members.append(member)
        return member, tx

    def forget(self, address: str) -> None:
        """Update the model after a successful revocation."""
        self.members = [m for m in self.members if m.address.lower() != str(address).lower()]

    def expected_digest(self, epoch: int | None = None) -> bytes:
        epoch = int(self.registry.epoch()) if epoch is None else epoch
        return membership_digest(chain.id, self.registry.address, epoch, self.members)

    def sync(self, members: Sequence[Enclave] | None = None) -> list[Any]:
        """Every active member (or only `members`) posts the digest computed off-chain; when
        everyone did, the epoch synchronises."""
        epoch = int(self.registry.epoch())
        digest = self.expected_digest(epoch)
        assert bytes(self.registry.membershipDigest()) == digest
        posters = self.members if members is None else members
        txs = [self.registry.postMembershipDigest(epoch, digest, {"from": m.account}) for m in posters]
        if members is None:
            assert self.registry.isSynchronised()
        return txs

    @property
    def providers(self) -> list[Enclave]:
        return [m for m in self.members if m.role == PROVIDER]

    @property
    def gateways(self) -> list[Enclave]:
        return [m for m in self.members if m.role == GATEWAY]

    # -------------------------------------------------------------- rounds

    def open_round(
        self,
        scheme: int = ADDITIVE,
        threshold: int | None = None,
        length: int = 4,
        frac_bits: int = 16,
        encoding: int = SEEDED,
        modulus: int | None = None,
        kind: int = SHARED_MODEL,
        min_contributors: int = 0,
        posting: int = 1000,
        total: int = 2000,
        tag: bytes = TAG,
        mask_degree: int = 0,
    ) -> tuple[int, Any]:
        n = len(self.providers)
        threshold = n if threshold is None else threshold
        modulus = (RING_2_64 if scheme == ADDITIVE else PRIME_61) if modulus is None else modulus
        start = now()
        tx = self.exchange.openRound(
            tag,
            (length, frac_bits, scheme, encoding, modulus, mask_degree),
            threshold,
            start + posting,
            start + total,
            (kind, min_contributors),
            {"from": self.coordinator},
        )
        return int(tx.return_value), tx

    def payload(self, round_id: int, sender: Any, size: int = 96) -> bytes:
        seed = keccak(text=f"payload-{round_id}-{sender}")
        return (seed * (size // 32 + 1))[:size]

    def posting_key(self, round_id: int, sender: str, recipient: str) -> bytes:
        """The (test) per-posting key of `sender`'s ciphertext for `recipient`."""
        return keccak(text=f"posting-key-{self.exchange.address}-{round_id}-{sender}-{recipient}")

    def key_table(self, round_id: int, sender: str) -> list[bytes]:
        """The key table `sender` posts: a commitment per participant, zero for itself."""
        return [
            ZERO32
            if str(p) == str(sender)
            else key_commitment(
                chain.id,
                self.exchange.address,
                round_id,
                sender,
                str(p),
                self.posting_key(round_id, sender, str(p)),
            )
            for p in self.exchange.participants(round_id)
        ]

    def post(
        self,
        round_id: int,
        sender: Enclave,
        chunks: Sequence[bytes] | None = None,
        key_table: Sequence[bytes] | None = None,
    ) -> list[Any]:
        chunks = list(chunks) if chunks is not None else [self.payload(round_id, sender.address)]
        table = list(key_table) if key_table is not None else self.key_table(round_id, sender.address)
        commitment = share_commitment(chunks)
        return [
            self.exchange.postShares(
                round_id, i, len(chunks), commitment, table if i == 0 else [], chunk, {"from": sender.account}
            )
            for i, chunk in enumerate(chunks)
        ]

    def complain(self, round_id: int, accuser: Enclave, sender: Enclave, key: bytes | None = None) -> Any:
        """`accuser` complains about `sender`'s posting, revealing the committed key
        (or `key`), with the sender's key table."""
        key = self.posting_key(round_id, sender.address, accuser.address) if key is None else key
        table = self.key_table(round_id, sender.address)
        return self.exchange.complain(round_id, sender.address, key, table, {"from": accuser.account})

    def judge(self, round_id: int, judges: Sequence[Enclave], sender_at_fault: bool) -> list[Any]:
        return [self.exchange.judgeComplaint(round_id, sender_at_fault, {"from": j.account}) for j in judges]

    def post_all(self, round_id: int, senders: Sequence[Enclave] | None = None) -> list[Any]:
        return [tx for s in (self.providers if senders is None else senders) for tx in self.post(round_id, s)]

    def fused_commitment(self, round_id: int, member: Enclave) -> bytes:
        return keccak(text=f"fused-{round_id}-{member.address}")

    def fuse(self, round_id: int, member: Enclave, contributors: int | None = None) -> Any:
        if contributors is None:
            contributors = int(self.exchange.roundInfo(round_id)[6])
        return self.exchange.postFused(
            round_id, self.fused_commitment(round_id, member), contributors, {"from": member.account}
        )

    def fuse_all(self, round_id: int, members: Sequence[Enclave] | None = None) -> list[Any]:
        return [self.fuse(round_id, m) for m in (self.providers if members is None else members)]

    def completed_round(self, **kwargs: Any) -> int:
        round_id, _ = self.open_round(**kwargs)
        self.post_all(round_id)
        self.fuse_all(round_id)
        assert self.exchange.state(round_id) == RoundState.COMPLETED
        return round_id

    # -------------------------------------------------------------- inference

    def register_model(self, round_id: int, fee: int = 10**15, name: str = "loan-default") -> int:
        tx = self.gateway.registerModel(round_id, name, '{"link":"logistic"}', fee, {"from": self.governor})
        model_id = int(tx.return_value)
        self.fees[model_id] = fee
        return model_id

    def admit_client(self, client: Any, quota: int = 5, deposit: int = 10**17) -> None:
        self.gateway.setClientAccess(client, quota, {"from": self.governor})
        if deposit:
            self.gateway.deposit({"from": client, "value": deposit})
        if str(client.address) not in self.known:
            self.known.append(str(client.address))

    def request(
        self, model_id: int, client: Any, query: bytes = b"\x01" * 64, rows: int = 1, **changes: Any
    ) -> ClientRequest:
        """A fresh request the client would sign: a new nonce, a deadline an hour ahead and a
        fee cap of exactly the model's fee (as registered through `register_model`) per row."""
        self._serial += 1
        base = ClientRequest(
            client=str(getattr(client, "address", client)),
            modelId=model_id,
            rows=rows,
            inputHash=keccak(query),
            nonce=self._serial,
            deadline=now() + 3600,
            maxFee=self.fees.get(model_id, 0) * rows,
        )
        return base.but(**changes)

    def sign_request(self, request: ClientRequest, key: Any) -> bytes:
        """The client's EIP-712 signature over `request` with `key` (bytes or an account)."""
        raw = key if isinstance(key, (bytes, bytearray)) else key_of(key)
        signature, _ = sign_request(bytes(raw), request, chain.id, self.gateway.address)
        return signature

    def submit(
        self,
        model_id: int,
        client: Any,
        query: bytes = b"\x01" * 64,
        rows: int = 1,
        request: ClientRequest | None = None,
        signature: bytes | None = None,
        sender: Any = None,
        **changes: Any,
    ) -> tuple[int, Any]:
        """The first gateway enclave records a request signed by the client's own key (or the
        given `request` and `signature`)."""
        request = request or self.request(model_id, client, query, rows, **changes)
        if signature is None:
            signature = self.sign_request(request, client)
        tx = self.gateway.submitRequest(
            request.as_tuple(), signature, query, {"from": sender or self.gateways[0].account}
        )
        return int(tx.return_value), tx

    def complete(self, request_id: int, provider: int = 0) -> Any:
        """Answer a request: one partial (if none yet), then the gateway's result commitment."""
        if int(self.gateway.requestInfo(request_id)[5]) == 0:
            self.gateway.postPartial(request_id, b"partial", {"from": self.providers[provider].account})
        result = keccak(text=f"result-{request_id}")
        return self.gateway.completeRequest(request_id, result, {"from": self.gateways[0].account})

    # -------------------------------------------------------------- observation

    def accounts_of_interest(self) -> list[str]:
        seen: list[str] = []
        for a in [*(str(a.address) for a in accounts[:10]), *self.known, *(m.address for m in self.members)]:
            if a not in seen:
                seen.append(a)
        return seen

    def snapshot(self) -> dict[str, Any]:
        """Every view of the three contracts for every account the tests know (three batched RPCs)."""
        reg, ex, gw = self.registry, self.exchange, self.gateway
        people = self.accounts_of_interest()
        counts = batch_call([(ex, "roundCount"), (gw, "modelCount"), (gw, "requestCount"), (reg, "epoch")])
        rounds, models, requests = (range(1, int(c) + 1) for c in counts[:3])
        epoch = int(counts[3])
        participants = batch_call([(ex, "participants", rid) for rid in rounds])
        specs: dict[str, list[Any]] = {
            "registry": [
                (reg, "epoch"),
                (reg, "synchronisedEpoch"),
                (reg, "isSynchronised"),
                (reg, "membershipDigest"),
                (reg, "paused"),
                (reg, "activeMembers", PROVIDER),
                (reg, "activeMembers", GATEWAY),
                (reg, "isTrustedSigner", self.signer),
                (reg, "verifierCount"),
                (reg, "verifierThreshold"),
                *((reg, "isEvidenceVerifier", Account.from_key(k).address) for k in VERIFIER_KEYS),
                (ex, "contributorFloor"),
                *(
                    (reg, "isApproved", r, m)
                    for r in (PROVIDER, GATEWAY)
                    for m in (MEASUREMENT, OTHER_MEASUREMENT)
                ),
                *((reg, "member", a) for a in people),
                *((reg, "evidenceOf", a) for a in people),
                (reg, "syncDeadline"),
                (reg, "syncPolicy"),
                *((reg, "roleLimit", r) for r in (PROVIDER, GATEWAY)),
            ],
            "organisations": [
                *((reg, "organisation", a) for a in people),
                *((reg, "enclaveCount", a, r) for a in people for r in (PROVIDER, GATEWAY)),
                *((reg, "digestMatched", e, a) for a in people for e in sorted({epoch, max(epoch - 1, 0)})),
            ],
            "roles": [
                *(
                    (c, "hasRole", role, a)
                    for c in (reg, ex, gw)
                    for role in (GOVERNOR_ROLE, DEFAULT_ADMIN_ROLE)
                    for a in people
                ),
                *((ex, "hasRole", COORDINATOR_ROLE, a) for a in people),
                *((gw, "hasRole", CLIENT_ROLE, a) for a in people),
            ],
            "rounds": [
                *(
                    spec
                    for rid, parts in zip(rounds, participants)
                    for spec in (
                        (ex, "state", rid),
                        (ex, "roundInfo", rid),
                        (ex, "roundGuards", rid),
                        (ex, "pendingComplaint", rid),
                        (ex, "recoveryInfo", rid),
                        *(
                            (ex, fn, rid, p)
                            for p in parts
                            for fn in ("shareCommitment", "chunksPosted", "isHolder", "keyTableHash")
                        ),
                    )
                ),
            ],
            "inference": [
                (gw, "collectedFees"),
                (gw, "requestTtl"),
                *((gw, "modelInfo", mid) for mid in models),
                *((gw, fn, qid) for qid in requests for fn in ("state", "requestInfo")),
                *((gw, fn, a) for a in people for fn in ("quotaOf", "balanceOf")),
            ],
        }
        flat = [spec for group in specs.values() for spec in group]
        values = batch_call(
            flat + [(None, "balance", a) for a in [*people, gw.address, ex.address, reg.address]]
        )
        return {"counts": counts, "participants": participants, "values": values}
