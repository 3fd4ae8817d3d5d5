"""EIP-712 quotes: encoding, signing, verification, and agreement with the real
ConsortiumRegistry on anvil."""

from __future__ import annotations

import dataclasses
import json
import os
import secrets
import time

import pytest
from eth_abi import decode as abi_decode
from eth_account import Account
from eth_account.messages import encode_typed_data
from eth_utils import keccak, to_checksum_address
from hexbytes import HexBytes
from web3.datastructures import AttributeDict
from web3.exceptions import ContractCustomError
from web3.logs import DISCARD

from enclave_agent.errors import AttestationError, MeasurementMismatchError
from enclave_agent.tee.quote import (
    ROLE_GATEWAY,
    ROLE_NAMES,
    ROLE_PROVIDER,
    MalformedQuoteError,
    MeasurementNotApprovedError,
    PossessionError,
    Quote,
    QuoteBindingError,
    QuoteExpiredError,
    QuoteRoleError,
    UntrustedSignerError,
    possession_digest,
    quote_digest,
    recover_signer,
    sign_possession,
    sign_quote,
    verify_possession,
    verify_quote,
)

CHAIN_ID = 31337
REGISTRY = "0x5FbDB2315678afecb367f032d93F642f64180aa3"
NOW = 1_800_000_000
SECP256K1_N = int("FFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141", 16)
SERVICE_KEY = keccak(b"attestation service key")


def random_address() -> str:
    return to_checksum_address(os.urandom(20))


def make_quote(**overrides: object) -> Quote:
    fields: dict[str, object] = {
        "role": ROLE_PROVIDER,
        "measurement": os.urandom(32),
        "operator": random_address(),
        "enclave": random_address(),
        "x25519_key": os.urandom(32),
        "chain_id": CHAIN_ID,
        "registry": REGISTRY,
        "nonce": os.urandom(32),
        "expiry": NOW + 3600,
    }
    fields.update(overrides)
    return Quote(**fields)  # type: ignore[arg-type]


def test_roles_match_the_solidity_enum() -> None:
    # enum Role { None, Provider, Gateway }
    assert (ROLE_PROVIDER, ROLE_GATEWAY) == (1, 2)
    assert ROLE_NAMES == {1: "provider", 2: "gateway"}


def test_as_tuple_is_in_struct_order_and_normalised() -> None:
    operator = random_address()
    quote = make_quote(
        operator=operator.lower(), measurement=HexBytes(b"\x11" * 32), nonce=bytearray(b"\x22" * 32)
    )
    t = quote.as_tuple()
    assert t[0] == ROLE_PROVIDER
    assert t[1] == b"\x11" * 32 and type(t[1]) is bytes
    assert t[2] == operator  # checksummed again
    assert t[3] == quote.enclave and t[4] == quote.x25519_key
    assert t[5:] == (CHAIN_ID, REGISTRY, b"\x22" * 32, NOW + 3600)
    assert type(quote.nonce) is bytes


def test_json_round_trip() -> None:
    quote = make_quote(role=ROLE_GATEWAY)
    data = quote.to_json()
    assert data["x25519Key"] == "0x" + quote.x25519_key.hex()
    assert data["chainId"] == CHAIN_ID and data["role"] == ROLE_GATEWAY
    assert Quote.from_json(data) == quote
    assert Quote.from_json(json.dumps(data)) == quote


def test_from_json_refuses_unknown_fields_and_bad_hex() -> None:
    data = make_quote().to_json()
    with pytest.raises(MalformedQuoteError, match="unknown fields x25519_key"):
        Quote.from_json({**data, "x25519_key": data["x25519Key"]})
    with pytest.raises(MalformedQuoteError, match="measurement is not hex"):
        Quote.from_json({**data, "measurement": "0xzz"})
    with pytest.raises(MalformedQuoteError, match="not JSON"):
        Quote.from_json("{nope")


def test_from_event_accepts_attributedict_dict_and_tuple() -> None:
    quote = make_quote()
    event = {
        "role": quote.role,
        "measurement": HexBytes(quote.measurement),
        "operator": quote.operator,
        "enclave": quote.enclave,
        "x25519Key": HexBytes(quote.x25519_key),
        "chainId": quote.chain_id,
        "registry": quote.registry,
        "nonce": HexBytes(quote.nonce),
        "expiry": quote.expiry,
    }
    assert Quote.from_event(AttributeDict(event)) == quote
    assert Quote.from_event(event) == quote
    assert Quote.from_event(quote.as_tuple()) == quote
    with pytest.raises(MalformedQuoteError, match="lacks x25519Key"):
        Quote.from_event({k: v for k, v in event.items() if k != "x25519Key"})
    with pytest.raises(MalformedQuoteError, match="8 members"):
        Quote.from_event(quote.as_tuple()[:8])


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ({"role": 0}, "role must be one of"),
        ({"role": 3}, "role must be one of"),
        ({"role": True}, "role must be one of"),
        ({"measurement": b"\x00" * 31}, "measurement must be 32 bytes, got 31"),
        ({"x25519_key": "0x1234"}, "x25519Key must be 32 bytes, got 2"),
        ({"operator": "0x1234"}, "operator is not an address"),
        ({"enclave": 7}, "enclave is not an address"),
        ({"expiry": 2**64}, "expiry must be an integer"),
        ({"chain_id": -1}, "chainId must be an integer"),
    ],
)
def test_malformed_quotes_are_refused(override: dict[str, object], message: str) -> None:
    with pytest.raises(MalformedQuoteError, match=message):
        make_quote(**override)


def test_digest_equals_eth_account_typed_data_hash() -> None:
    """An independent EIP-712 implementation agrees with ours."""
    quote = make_quote()
    typed = encode_typed_data(
        full_message={
            "types": {
                "EIP712Domain": [
                    {"name": "name", "type": "string"},
                    {"name": "version", "type": "string"},
                    {"name": "chainId", "type": "uint256"},
                    {"name": "verifyingContract", "type": "address"},
                ],
                "Quote": [
                    {"name": "role", "type": "uint8"},
                    {"name": "measurement", "type": "bytes32"},
                    {"name": "operator", "type": "address"},
                    {"name": "enclave", "type": "address"},
                    {"name": "x25519Key", "type": "bytes32"},
                    {"name": "chainId", "type": "uint256"},
                    {"name": "registry", "type": "address"},
                    {"name": "nonce", "type": "bytes32"},
                    {"name": "expiry", "type": "uint64"},
                ],
            },
            "primaryType": "Quote",
            "domain": {
                "name": "EnclaveShareRegistry",
                "version": "1",
                "chainId": CHAIN_ID,
                "verifyingContract": REGISTRY,
            },
            "message": {
                "role": quote.role,
                "measurement": quote.measurement,
                "operator": quote.operator,
                "enclave": quote.enclave,
                "x25519Key": quote.x25519_key,
                "chainId": quote.chain_id,
                "registry": quote.registry,
                "nonce": quote.nonce,
                "expiry": quote.expiry,
            },
        }
    )
    expected = keccak(b"\x19" + typed.version + typed.header + typed.body)
    assert quote_digest(quote) == expected


def test_every_field_changes_the_digest() -> None:
    quote = make_quote()
    changed = {
        "role": ROLE_GATEWAY,
        "measurement": os.urandom(32),
        "operator": random_address(),
        "enclave": random_address(),
        "x25519_key": os.urandom(32),
        "chain_id": CHAIN_ID + 1,
        "registry": random_address(),
        "nonce": os.urandom(32),
        "expiry": quote.expiry + 1,
    }
    digests = {quote_digest(dataclasses.replace(quote, **{name: value})) for name, value in changed.items()}
    assert quote_digest(quote) not in digests
    assert len(digests) == len(changed)


def test_sign_and_recover() -> None:
    key = secrets.token_bytes(32)
    quote = make_quote()
    signature = sign_quote(quote, key)
    assert len(signature) == 65 and signature[64] in (27, 28)
    assert recover_signer(quote, signature) == Account.from_key(key).address
    # A signature over one quote does not vouch for another.
    other = dataclasses.replace(quote, measurement=os.urandom(32))
    assert recover_signer(other, signature) != Account.from_key(key).address


def test_recover_refuses_malformed_signatures() -> None:
    quote = make_quote()
    signature = sign_quote(quote, secrets.token_bytes(32))
    with pytest.raises(MalformedQuoteError, match="65 bytes, got 64"):
        recover_signer(quote, signature[:64])
    with pytest.raises(MalformedQuoteError, match="v=0"):
        recover_signer(quote, signature[:64] + b"\x00")
    # The malleable twin (n - s, flipped v) is valid ECDSA but OpenZeppelin refuses it.
    s = int.from_bytes(signature[32:64], "big")
    twin = signature[:32] + (SECP256K1_N - s).to_bytes(32, "big") + bytes([55 - signature[64]])
    with pytest.raises(MalformedQuoteError, match="high s"):
        recover_signer(quote, twin)


class TestVerifyQuote:
    key = secrets.token_bytes(32)
    signer = Account.from_key(key).address
    ours = os.urandom(32)

    def verify(self, quote: Quote, signature: bytes | None = None, **overrides: object) -> None:
        kwargs: dict[str, object] = {
            "trusted_signers": [self.signer],
            "approved_measurements": {self.ours},
            "expected_measurement": self.ours,
            "chain_id": CHAIN_ID,
            "registry": REGISTRY,
            "now": NOW,
            "expected_role": ROLE_PROVIDER,
        }
        kwargs.update(overrides)
        verify_quote(quote, signature or sign_quote(quote, self.key), **kwargs)  # type: ignore[arg-type]

    def test_accepts_a_good_quote(self) -> None:
        self.verify(make_quote(measurement=self.ours))
        # Lower-case signer and registry spellings and expiry == now are fine, as on chain.
        self.verify(
            make_quote(measurement=self.ours, expiry=NOW),
            trusted_signers=[self.signer.lower()],
            registry=REGISTRY.lower(),
        )

    def test_untrusted_signer_is_named(self) -> None:
        rogue = secrets.token_bytes(32)
        quote = make_quote(measurement=self.ours)
        with pytest.raises(UntrustedSignerError) as err:
            self.verify(quote, sign_quote(quote, rogue))
        assert Account.from_key(rogue).address in str(err.value)
        assert "not a trusted attestation signer" in str(err.value)

    def test_other_role(self) -> None:
        with pytest.raises(QuoteRoleError, match="for role gateway, expected provider"):
            self.verify(make_quote(measurement=self.ours, role=ROLE_GATEWAY))
        self.verify(make_quote(measurement=self.ours, role=ROLE_GATEWAY), expected_role=None)

    def test_wrong_chain(self) -> None:
        with pytest.raises(
            QuoteBindingError, match=f"bound to chain 1 registry {REGISTRY}, expected chain {CHAIN_ID}"
        ):
            self.verify(make_quote(measurement=self.ours, chain_id=1))

    def test_wrong_registry(self) -> None:
        elsewhere = random_address()
        with pytest.raises(
            QuoteBindingError, match=f"registry {elsewhere}, expected chain {CHAIN_ID} registry {REGISTRY}"
        ):
            self.verify(make_quote(measurement=self.ours, registry=elsewhere))

    def test_expired(self) -> None:
        with pytest.raises(QuoteExpiredError, match=f"expired at {NOW - 1}, now is {NOW}"):
            self.verify(make_quote(measurement=self.ours, expiry=NOW - 1))

    def test_measurement_not_approved(self) -> None:
        theirs = os.urandom(32)
        with pytest.raises(
            MeasurementNotApprovedError, match=f"0x{theirs.hex()} .* not approved for role provider"
        ):
            self.verify(make_quote(measurement=theirs))

    def test_same_code_check_names_both_measurements(self) -> None:
        theirs = os.urandom(32)
        quote = make_quote(measurement=theirs)
        with pytest.raises(MeasurementMismatchError) as err:
            # Approved, but not what we run: the peers' "same code" check.
            self.verify(quote, approved_measurements=[self.ours, theirs])
        assert (
            str(err.value)
            == f"peer {quote.enclave} runs measurement 0x{theirs.hex()}, ours is 0x{self.ours.hex()}"
        )
        assert isinstance(err.value, AttestationError)
        # Without an expectation of our own, an approved measurement is enough.
        self.verify(quote, approved_measurements=[self.ours, theirs], expected_measurement=None)


# ---------------------------------------------------------------------- against the contract


def selector(signature: str) -> bytes:
    return keccak(text=signature)[:4]


def test_digest_equals_contract_quote_digest(anvil, registry) -> None:  # type: ignore[no-untyped-def]
    chain_id = anvil.eth.chain_id
    for role in (ROLE_PROVIDER, ROLE_GATEWAY):
        for expiry in (0, NOW, 2**64 - 1):
            quote = make_quote(role=role, chain_id=chain_id, registry=registry.address, expiry=expiry)
            assert registry.functions.quoteDigest(quote.as_tuple()).call() == quote_digest(quote)
    # The domain is the contract's, so a quote bound elsewhere hashes differently there.
    foreign = make_quote(chain_id=chain_id, registry=random_address())
    assert registry.functions.quoteDigest(foreign.as_tuple()).call() != quote_digest(foreign)


def test_trusted_quote_registers_and_untrusted_is_refused(anvil, registry) -> None:  # type: ignore[no-untyped-def]
    governor, operator = anvil.eth.accounts[0], anvil.eth.accounts[1]
    service_key, rogue_key = secrets.token_bytes(32), secrets.token_bytes(32)
    measurement = os.urandom(32)
    wait = anvil.eth.wait_for_transaction_receipt
    wait(registry.functions.approveMeasurement(ROLE_PROVIDER, measurement).transact({"from": governor}))
    wait(
        registry.functions.admitOrganisation(operator, "bank", 1 << ROLE_PROVIDER, 2).transact(
            {"from": governor}
        )
    )
    wait(
        registry.functions.setAttestationSigner(Account.from_key(service_key).address, True).transact(
            {"from": governor}
        )
    )

    def quote_for(enclave: str) -> Quote:  # an enclave whose key we hold
        return make_quote(
            measurement=measurement,
            operator=operator,
            enclave=enclave,
            chain_id=anvil.eth.chain_id,
            registry=registry.address,
            expiry=int(time.time()) + 3600,
        )

    enclave_key = secrets.token_bytes(32)
    enclave = Account.from_key(enclave_key).address
    rogue_quote = quote_for(enclave)
    rogue_signature = sign_quote(rogue_quote, rogue_key)
    with pytest.raises(ContractCustomError) as err:
        registry.functions.register(
            rogue_quote.as_tuple(), rogue_signature, sign_possession(rogue_quote, enclave_key)
        ).call({"from": operator})
    data = HexBytes(err.value.data)
    assert data[:4] == selector("RegistryUntrustedSigner(address)")
    (refused_signer,) = abi_decode(["address"], data[4:])
    assert to_checksum_address(refused_signer) == Account.from_key(rogue_key).address

    quote = quote_for(enclave)
    signature = sign_quote(quote, service_key)
    # The possession digest the agents compute is the one the registry checks.
    assert registry.functions.possessionDigest(quote.as_tuple()).call() == possession_digest(quote)
    # Possession proven by another key than the enclave's: refused, naming both.
    stranger_key = secrets.token_bytes(32)
    with pytest.raises(ContractCustomError) as err:
        registry.functions.register(quote.as_tuple(), signature, sign_possession(quote, stranger_key)).call(
            {"from": operator}
        )
    data = HexBytes(err.value.data)
    assert data[:4] == selector("RegistryPossessionNotProven(address,address)")
    assert [to_checksum_address(a) for a in abi_decode(["address", "address"], data[4:])] == [
        enclave,
        Account.from_key(stranger_key).address,
    ]
    possession = sign_possession(quote, enclave_key)
    receipt = wait(
        registry.functions.register(quote.as_tuple(), signature, possession).transact({"from": operator})
    )
    assert receipt["status"] == 1
    (event,) = registry.events.MemberRegistered().process_receipt(receipt, errors=DISCARD)
    assert Quote.from_event(event["args"]["quote"]) == quote
    assert bytes(event["args"]["signature"]) == signature
    assert bytes(event["args"]["possession"]) == possession
    assert registry.functions.isActiveMember(quote.enclave, ROLE_PROVIDER).call()
    # What the chain accepted also passes the peers' own check.
    verify_quote(
        Quote.from_event(event["args"]["quote"]),
        bytes(event["args"]["signature"]),
        trusted_signers=[Account.from_key(service_key).address],
        approved_measurements=[measurement],
        expected_measurement=measurement,
        chain_id=anvil.eth.chain_id,
        registry=registry.address,
        now=int(time.time()),
        expected_role=ROLE_PROVIDER,
        possession=bytes(event["args"]["possession"]),
    )


def test_possession_is_the_enclave_keys_signature_over_the_quote() -> None:
    enclave_key = secrets.token_bytes(32)
    quote = make_quote(enclave=Account.from_key(enclave_key).address)
    proof = sign_possession(quote, enclave_key)
    verify_possession(quote, proof)
    # Domain-separated from the quote itself: the attestation signature is no proof.
    assert possession_digest(quote) != quote_digest(quote)
    with pytest.raises(PossessionError, match="not by the enclave"):
        verify_possession(quote, sign_quote(quote, enclave_key))
    other = secrets.token_bytes(32)
    with pytest.raises(PossessionError, match="not by the enclave"):
        verify_possession(quote, sign_possession(quote, other))
    # A proof binds the whole quote: another X25519 key needs another proof.
    with pytest.raises(PossessionError):
        verify_possession(make_quote(enclave=quote.enclave, x25519_key=os.urandom(32)), proof)
    with pytest.raises(MalformedQuoteError, match="possession signature must be 65 bytes"):
        verify_possession(quote, proof[:64])


def test_peers_check_possession_with_the_quote() -> None:
    enclave_key = secrets.token_bytes(32)
    quote = make_quote(enclave=Account.from_key(enclave_key).address)
    kwargs = {
        "trusted_signers": [Account.from_key(SERVICE_KEY).address],
        "approved_measurements": [quote.measurement],
        "expected_measurement": quote.measurement,
        "chain_id": quote.chain_id,
        "registry": quote.registry,
        "now": quote.expiry - 10,
    }
    verify_quote(
        quote, sign_quote(quote, SERVICE_KEY), possession=sign_possession(quote, enclave_key), **kwargs
    )
    with pytest.raises(PossessionError):
        verify_quote(
            quote,
            sign_quote(quote, SERVICE_KEY),
            possession=sign_possession(quote, secrets.token_bytes(32)),
            **kwargs,
        )
