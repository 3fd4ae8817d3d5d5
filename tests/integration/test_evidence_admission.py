"""Hardware evidence end to end (real Anvil, real agent and verifier processes): a
consortium of three SIMULATED providers and one gateway that presents Nitro-format
evidence through the evidence-verifier path (``registerWithEvidence``), re-verified by
every peer before it derives keys; and members presenting evidence for another
measurement, or bound to other keys, refused by the verifier, the contract and the peers.

What is real and what is made here:

- The ACCEPTED gateway's evidence is a Nitro-format COSE_Sign1 document signed by a
  test CA chain (ES384) this test makes (``tests/support/nitro_documents.py``), produced
  by a fake Nitro Secure Module inside the agent process (``tests/support/nitro_member.py``)
  with ``user_data`` = the binding of the agent's fresh keys. The recorded AWS samples
  cannot be bound to fresh keys (their ``user_data`` is fixed), so the verifier service
  and the peers pin this test root by SHA-256 alongside AWS's own root.
- The REFUSED member presents a REAL recorded AWS Nitro document
  (``anchorage_2022-11-09_eu-west-1.cose``, verified under the real AWS root): the
  verifier service refuses it (binding, measurement, age); a compromised verifier that
  governance still trusts signs it anyway, the contract (which only checks verifier
  signatures) admits it, and every honest peer re-verifies the bytes from the event,
  refuses to synchronise with it and names the binding; governance removes it and the
  consortium synchronises again.
- Evidence for another measurement (test CA, another PCR0) is refused by the verifier
  service and, signed by the compromised verifier, by the contract
  (``RegistryMeasurementNotApproved``).
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from eth_abi import encode as abi_encode
from eth_account import Account
from eth_utils import keccak
from web3.exceptions import ContractCustomError

from enclave_agent.localnet import Consortium, start_consortium, wait_until
from enclave_agent.localnet.processes import ChildProcess, python_child
from enclave_agent.tee.binding import evidence_binding
from enclave_agent.tee.evidence import EvidenceType
from enclave_agent.tee.nitro import AWS_NITRO_ROOT_G1_SHA256, nitro_measurement
from enclave_agent.tee.quote import Quote, sign_possession
from enclave_agent.tee.verified_evidence import EvidenceClaim, sign_verified_evidence
from enclave_agent.tee.verifier_service import EvidenceRefusedByVerifier, request_verification
from tests.support.nitro_documents import TEST_PCRS, DocumentSigner
from tests.support.tee_samples import nitro_sample

PROVIDER, GATEWAY = 1, 2
PCR0 = b"\x07" * 48
OTHER_PCR0 = b"\x09" * 48
COMPROMISED_KEY = keccak(b"a verifier key that leaked")
REAL_SAMPLE = "anchorage_2022-11-09_eu-west-1.cose"
_VERIFIER_LINE = re.compile(r"verifier=(0x[0-9a-fA-F]{40}) .*listening on (http://\S+)")


def policy_text() -> str:
    pcrs = {"PCR0": PCR0, "PCR1": TEST_PCRS[1], "PCR2": TEST_PCRS[2]}
    entry = ", ".join(f'{k} = "{v.hex()}"' for k, v in pcrs.items())
    return f"version = 1\n\n[roles.gateway.aws-nitro]\napproved = [{{ {entry} }}]\n"


def transact(c: Consortium, call: Any, sender: str) -> Any:
    receipt = c.w3.eth.wait_for_transaction_receipt(call.transact({"from": sender}))
    assert receipt["status"] == 1
    return receipt


class World:
    def __init__(
        self, c: Consortium, ca: DocumentSigner, policy: Path, verifier_url: str, gateway: str
    ) -> None:
        self.c, self.ca, self.policy, self.verifier_url, self.gateway_log = (
            c,
            ca,
            policy,
            verifier_url,
            gateway,
        )


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    root = tmp_path_factory.mktemp("evidence")
    with start_consortium(root) as c:
        ca = DocumentSigner()
        ca.save(root / "test-ca")
        policy = root / "evidence-policy.toml"
        policy.write_text(policy_text())
        roots = [ca.sha256.hex(), AWS_NITRO_ROOT_G1_SHA256.hex()]
        verifier = python_child(
            "evidence verifier",
            "enclave_agent.cli",
            "evidence-verifier",
            "--key",
            root / "verifier.key",
            "--policy",
            policy,
            "--port",
            "0",
            *[arg for r in roots for arg in ("--nitro-root-sha256", r)],
            log=root / "verifier.log",
        )
        verifier.start()
        nitro_gateway: ChildProcess | None = None
        try:
            address, url = wait_until(
                lambda: m.groups() if (m := _VERIFIER_LINE.search(verifier.output())) else None,
                30,
                "the evidence verifier",
            )
            registry, governor = c.registry, c.governor
            transact(c, registry.functions.setEvidenceVerifier(address, True), governor)
            transact(
                c,
                registry.functions.setEvidenceVerifier(Account.from_key(COMPROMISED_KEY).address, True),
                governor,
            )
            measurement = nitro_measurement({0: PCR0, **TEST_PCRS})
            transact(c, registry.functions.approveMeasurement(GATEWAY, measurement), governor)
            evidence_toml = (
                f"[evidence]\nverifier_urls = [{url!r}]\n".replace("'", '"')
                + f'policy = "{policy}"\n'
                + "nitro_root_sha256 = ["
                + ", ".join(f'"{r}"' for r in roots)
                + "]\n"
            )
            for i in range(3):
                c.add_agent(f"provider-{i}", operator_index=i + 1, extra=evidence_toml)
            gw = c.add_agent(
                "nitro-gateway",
                operator_index=4,
                role="gateway",
                extra=evidence_toml + "[gateway]\nport = 0\n",
                start=False,
            )
            gw.config.write_text(
                gw.config.read_text().replace("[agent]\n", '[agent]\ntee = "aws-nitro"\n', 1)
            )
            nitro_gateway = python_child(
                "agent nitro-gateway",
                "tests.support.nitro_member",
                "--config",
                gw.config,
                "--ca",
                root / "test-ca",
                "--pcr0",
                PCR0.hex(),
                log=root / "nitro-gateway.log",
            )
            nitro_gateway.start()
            yield World(c, ca, policy, url, str(root / "nitro-gateway.log"))
        finally:
            if nitro_gateway is not None:
                nitro_gateway.stop(timeout=10)
            verifier.stop(timeout=5)


def synchronised(w: World, gateways: int = 1) -> None:
    registry = w.c.registry

    def ready() -> bool:
        w.c.check_alive()
        return (
            len(registry.functions.activeMembers(PROVIDER).call()) == 3
            and len(registry.functions.activeMembers(GATEWAY).call()) == gateways
            and bool(registry.functions.isSynchronised().call())
        )

    wait_until(ready, 120, f"3 simulated providers and {gateways} Nitro gateway synchronised")


def logs(w: World) -> dict[str, str]:
    out = {name: agent.logs() for name, agent in w.c.agents.items() if name != "nitro-gateway"}
    out["nitro-gateway"] = Path(w.gateway_log).read_text()
    return out


def rogue_quote(w: World, operator: str, enclave: Any, measurement: bytes) -> Quote:
    return Quote(
        role=GATEWAY,
        measurement=measurement,
        operator=operator,
        enclave=enclave.address,
        x25519_key=os.urandom(32),
        chain_id=int(w.c.w3.eth.chain_id),
        registry=w.c.registry.address,
        nonce=os.urandom(32),
        expiry=int(time.time()) + 3600,
    )


def test_nitro_gateway_joins_a_simulated_consortium(world: World) -> None:
    w = world
    synchronised(w)
    (gateway,) = w.c.registry.functions.activeMembers(GATEWAY).call()
    evidence_type, evidence_hash, policy_hash = w.c.registry.functions.evidenceOf(gateway).call()
    assert evidence_type == EvidenceType.AWS_NITRO
    assert bytes(policy_hash) == keccak(w.policy.read_bytes())
    (recorded,) = w.c.contracts.registry.events.EvidenceRecorded().get_logs(from_block=0)
    assert keccak(bytes(recorded["args"]["evidence"])) == bytes(evidence_hash)
    for provider in w.c.registry.functions.activeMembers(PROVIDER).call():
        assert w.c.registry.functions.evidenceOf(provider).call()[0] == 0  # simulated quotes
    for name, text in logs(w).items():
        if name != "nitro-gateway":
            assert f"hardware member {gateway}: aws-nitro evidence re-verified" in text, name


def test_evidence_for_another_measurement_is_refused_by_verifier_and_contract(world: World) -> None:
    w = world
    synchronised(w)
    operator = w.c.w3.eth.accounts[5]
    w.c.admit_organisation(operator, "rogue-measurement")
    enclave = Account.create()
    other = nitro_measurement({0: OTHER_PCR0, **TEST_PCRS})
    quote = rogue_quote(w, operator, enclave, other)
    binding = evidence_binding(
        enclave=enclave.address, x25519_key=quote.x25519_key, chain_id=quote.chain_id, registry=quote.registry
    )
    document = w.ca.document(pcr0=OTHER_PCR0, user_data=binding, timestamp_ms=int(time.time() * 1000))
    with pytest.raises(EvidenceRefusedByVerifier) as refused:
        request_verification(w.verifier_url, quote, "aws-nitro", document)
    assert {r["rule"] for r in refused.value.reasons} == {"measurement"}
    claim = EvidenceClaim(EvidenceType.AWS_NITRO, keccak(document), keccak(w.policy.read_bytes()))
    call = w.c.registry.functions.registerWithEvidence(
        quote.as_tuple(),
        claim.as_tuple(),
        [sign_verified_evidence(quote, claim, COMPROMISED_KEY)],
        sign_possession(quote, bytes(enclave.key)),
        document,
    )
    with pytest.raises(ContractCustomError) as reverted:
        call.call({"from": operator})
    expected = keccak(text="RegistryMeasurementNotApproved(uint8,bytes32)")[:4] + abi_encode(
        ["uint8", "bytes32"], [GATEWAY, other]
    )
    assert bytes.fromhex(str(reverted.value.data).removeprefix("0x")) == expected


def test_real_evidence_bound_to_other_keys_is_refused_by_every_peer(world: World) -> None:
    w = world
    synchronised(w)
    registry = w.c.registry
    operator = w.c.w3.eth.accounts[6]
    w.c.admit_organisation(operator, "rogue-binding")
    enclave = Account.create()
    measurement = nitro_measurement({0: PCR0, **TEST_PCRS})  # what the honest gateway runs
    quote = rogue_quote(w, operator, enclave, measurement)
    real = nitro_sample(REAL_SAMPLE)
    # The honest verifier checks the genuine AWS document (real root) and refuses it.
    with pytest.raises(EvidenceRefusedByVerifier) as refused:
        request_verification(w.verifier_url, quote, "aws-nitro", real)
    assert {"binding", "measurement", "max_age"} <= {r["rule"] for r in refused.value.reasons}
    # A compromised verifier the registry still trusts signs it: the contract admits it...
    claim = EvidenceClaim(EvidenceType.AWS_NITRO, keccak(real), keccak(w.policy.read_bytes()))
    call = registry.functions.registerWithEvidence(
        quote.as_tuple(),
        claim.as_tuple(),
        [sign_verified_evidence(quote, claim, COMPROMISED_KEY)],
        sign_possession(quote, bytes(enclave.key)),
        real,
    )
    transact(w.c, call, operator)
    epoch = int(registry.functions.epoch().call())
    assert registry.functions.isActiveMember(enclave.address, GATEWAY).call()

    # ...and every honest peer re-verifies the real bytes itself and refuses to synchronise.
    def all_refused() -> bool:
        w.c.check_alive()
        return all(
            f"peer {enclave.address}: hardware member {enclave.address}: aws-nitro evidence refused" in text
            for text in logs(w).values()
        )

    wait_until(all_refused, 60, "every honest agent refusing the rogue's evidence")
    for text in logs(w).values():
        line = next(
            x for x in text.splitlines() if f"hardware member {enclave.address}" in x and "refused" in x
        )
        assert "binding:" in line and "measurement:" in line
    honest = [m for m in registry.functions.activeMembers(PROVIDER).call()] + [
        g for g in registry.functions.activeMembers(GATEWAY).call() if g != enclave.address
    ]
    assert not any(registry.functions.digestMatched(epoch, m).call() for m in honest)
    assert not registry.functions.isSynchronised().call()
    # Governance removes it; the honest members synchronise the next epoch.
    transact(w.c, registry.functions.revoke(enclave.address), w.c.governor)
    synchronised(w)
