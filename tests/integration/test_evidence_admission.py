"""Hardware evidence end to end (real Anvil, real agent and verifier processes): a
consortium of three SIMULATED providers and one gateway that presents Nitro-format
evidence through the evidence-verifier path (``registerWithEvidence``), re-verified by
every peer before it derives keys; and members presenting evidence for another
measurement, or bound to other keys, refused by the verifier, the contract and the peers.

What is real and what is made here:

- The ACCEPTED gateway's evidence is a Nitro-format COSE_Sign1 document signed by a
  test CA chain (ES384) this test makes (``tests/support/nitro_documents.py``), produced
  by a fake Nitro Secure Module inside the agent process (``tests/support/hardware_member.py``)
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

from enclave_agent.tee.binding import BindingClaims, evidence_binding
from enclave_agent.tee.evidence import EvidenceType
from enclave_agent.tee.nitro import AWS_NITRO_ROOT_G1_SHA256, nitro_measurement
from enclave_agent.tee.quote import Quote, sign_possession
from enclave_agent.tee.sevsnp import SnpReport, snp_measurement
from enclave_agent.tee.verified_evidence import EvidenceClaim, sign_verified_evidence
from enclave_agent.tee.verifier_service import EvidenceRefusedByVerifier, request_verification
from enclave_devnet import Consortium, start_consortium, wait_until
from enclave_devnet.processes import ChildProcess, python_child
from tests.support.nitro_documents import TEST_PCRS, DocumentSigner
from tests.support.snp_reports import ReportSigner
from tests.support.tee_samples import nitro_sample

PROVIDER, GATEWAY = 1, 2
PCR0 = b"\x07" * 48
OTHER_PCR0 = b"\x09" * 48
SNP_MEASUREMENT = b"\x05" * 48
COMPROMISED_KEY = keccak(b"a verifier key that leaked")
REAL_SAMPLE = "anchorage_2022-11-09_eu-west-1.cose"
_VERIFIER_LINE = re.compile(r"verifier=(0x[0-9a-fA-F]{40}) .*listening on (http://\S+)")


def policy_text() -> str:
    pcrs = {"PCR0": PCR0, "PCR1": TEST_PCRS[1], "PCR2": TEST_PCRS[2]}
    entry = ", ".join(f'{k} = "{v.hex()}"' for k, v in pcrs.items())
    return (
        f"version = 1\n\n[roles.gateway.aws-nitro]\napproved = [{{ {entry} }}]\n\n"
        f'[roles.gateway.amd-sev-snp]\napproved = [{{ MEASUREMENT = "{SNP_MEASUREMENT.hex()}" }}]\n'
    )


def transact(c: Consortium, call: Any, sender: str) -> Any:
    receipt = c.w3.eth.wait_for_transaction_receipt(call.transact({"from": sender}))
    assert receipt["status"] == 1
    return receipt


class World:
    def __init__(
        self,
        c: Consortium,
        ca: DocumentSigner,
        chip: ReportSigner,
        policy: Path,
        verifier_url: str,
        evidence_toml: str,
    ) -> None:
        self.c, self.ca, self.chip, self.policy = c, ca, chip, policy
        self.verifier_url, self.evidence_toml = verifier_url, evidence_toml
        self.hardware: dict[str, ChildProcess] = {}  # name -> hardware member process
        self.root = c.root

    def start_hardware_member(self, name: str, operator_index: int, *device: Any) -> str:
        """A hardware gateway on a fake device (``tests/support/hardware_member.py``);
        returns its log file."""
        tee = "amd-sev-snp" if "--snp-chip" in device else "aws-nitro"
        agent = self.c.add_agent(
            name,
            operator_index=operator_index,
            role="gateway",
            extra=self.evidence_toml + "[gateway]\nport = 0\n",
            start=False,
        )
        agent.config.write_text(agent.config.read_text().replace("[agent]\n", f'[agent]\ntee = "{tee}"\n', 1))
        log = self.root / f"{name}.log"
        process = python_child(
            f"agent {name}", "tests.support.hardware_member", "--config", agent.config, *device, log=log
        )
        process.start()
        self.hardware[name] = process
        return str(log)

    def stop_hardware_member(self, name: str) -> None:
        self.hardware.pop(name).stop(timeout=10)
        del self.c.agents[name]


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    root = tmp_path_factory.mktemp("evidence")
    with start_consortium(root) as c:
        ca = DocumentSigner()
        ca.save(root / "test-ca")
        chip = ReportSigner()
        snp_collateral = chip.save(root / "snp-chip")
        policy = root / "evidence-policy.toml"
        policy.write_text(policy_text())
        roots = [ca.sha256.hex(), AWS_NITRO_ROOT_G1_SHA256.hex()]
        ark = chip.ark_sha256.hex()
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
            "--snp-collateral",
            snp_collateral,
            "--amd-ark-sha256",
            f"Milan={ark}",
            "--rpc-url",
            c.anvil.url,
            log=root / "verifier.log",
        )
        verifier.start()
        world: World | None = None
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
                + f'snp_collateral = "{snp_collateral}"\n'
                + f'amd_ark_sha256 = {{ Milan = "{ark}" }}\n'
            )
            for i in range(3):
                c.add_agent(f"provider-{i}", operator_index=i + 1, extra=evidence_toml)
            world = World(c, ca, chip, policy, url, evidence_toml)
            world.start_hardware_member(
                "nitro-gateway", 4, "--nitro-ca", root / "test-ca", "--pcr0", PCR0.hex()
            )
            yield world
        finally:
            for process in world.hardware.values() if world else ():
                process.stop(timeout=10)
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
    """The logs of every running agent (hardware members' from their own processes)."""
    out = {name: agent.logs() for name, agent in w.c.agents.items() if name not in w.hardware}
    for name, process in w.hardware.items():
        if process.running:
            out[name] = (w.root / f"{name}.log").read_text()
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


def compromised_registration(
    w: World, quote: Quote, enclave: Any, evidence_type: EvidenceType, evidence: bytes
) -> Any:
    """The registerWithEvidence call a compromised verifier the registry still trusts
    signs for ``evidence``, whatever it is."""
    claim = EvidenceClaim(evidence_type, keccak(evidence), keccak(w.policy.read_bytes()))
    return w.c.registry.functions.registerWithEvidence(
        quote.as_tuple(),
        claim.as_tuple(),
        [sign_verified_evidence(quote, claim, COMPROMISED_KEY)],
        sign_possession(quote, bytes(enclave.key)),
        evidence,
    )


def wait_every_peer_logs(w: World, needle: str, what: str) -> None:
    def everyone() -> bool:
        w.c.check_alive()
        return all(needle in text for text in logs(w).values())

    wait_until(everyone, 60, what)


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
    call = compromised_registration(w, quote, enclave, EvidenceType.AWS_NITRO, document)
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
    call = compromised_registration(w, quote, enclave, EvidenceType.AWS_NITRO, real)
    transact(w.c, call, operator)
    epoch = int(registry.functions.epoch().call())
    assert registry.functions.isActiveMember(enclave.address, GATEWAY).call()

    # ...and every honest peer re-verifies the real bytes itself and refuses to synchronise.
    wait_every_peer_logs(
        w,
        f"peer {enclave.address}: hardware member {enclave.address}: aws-nitro evidence refused",
        "every honest agent refusing the rogue's evidence",
    )
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


def snp_gateway_measurement(w: World) -> bytes:
    return snp_measurement(SnpReport(w.chip.report(bytes(64), measurement=SNP_MEASUREMENT)))


def test_the_gateway_moves_from_nitro_to_snp_hardware(world: World) -> None:
    """Governance replaces the Nitro gateway by one on an SEV-SNP guest (test chip): its
    report is signed by the verifier service after the service looked up the block its
    challenge names, and every peer re-verifies the report, and that block, itself."""
    w = world
    synchronised(w)
    registry = w.c.registry
    (nitro,) = registry.functions.activeMembers(GATEWAY).call()
    transact(w.c, registry.functions.approveMeasurement(GATEWAY, snp_gateway_measurement(w)), w.c.governor)
    transact(w.c, registry.functions.revoke(nitro), w.c.governor)
    w.stop_hardware_member("nitro-gateway")
    chip = ("--snp-chip", w.root / "snp-chip", "--measurement", SNP_MEASUREMENT.hex())
    w.start_hardware_member("snp-gateway", 7, *chip)
    synchronised(w)
    (gateway,) = registry.functions.activeMembers(GATEWAY).call()
    assert gateway != nitro
    assert registry.functions.evidenceOf(gateway).call()[0] == EvidenceType.AMD_SEV_SNP
    recorded = [
        e
        for e in w.c.contracts.registry.events.EvidenceRecorded().get_logs(from_block=0)
        if e["args"]["enclave"] == gateway
    ]
    (event,) = recorded
    anchor = SnpReport(bytes(event["args"]["evidence"])).report_data[32:]
    anchored_at = w.c.w3.eth.get_block(anchor)["timestamp"]  # a block of this chain...
    admitted_at = w.c.w3.eth.get_block(event["blockNumber"])["timestamp"]
    assert 0 <= admitted_at - anchored_at <= 600  # ...within the policy's max_age
    for name, text in logs(w).items():
        if name != "snp-gateway":
            assert f"hardware member {gateway}: amd-sev-snp evidence re-verified" in text, name


def test_an_snp_report_with_no_block_as_challenge_is_refused_by_verifier_and_peers(world: World) -> None:
    """A genuine, bound report of an approved guest whose challenge names no block (it
    could have been made at any time, e.g. before a TCB recovery): the honest verifier
    refuses it for freshness; signed by a compromised verifier, the contract admits it,
    and every peer refuses it for the same reason."""
    w = world
    synchronised(w)
    registry = w.c.registry
    operator = w.c.w3.eth.accounts[8]
    w.c.admit_organisation(operator, "rogue-stale-report")
    enclave = Account.create()
    quote = rogue_quote(w, operator, enclave, snp_gateway_measurement(w))
    claims = BindingClaims(
        enclave=enclave.address, x25519_key=quote.x25519_key, chain_id=quote.chain_id, registry=quote.registry
    )
    report = w.chip.report(claims.report_data(os.urandom(32)), measurement=SNP_MEASUREMENT)
    with pytest.raises(EvidenceRefusedByVerifier) as refused:
        request_verification(w.verifier_url, quote, "amd-sev-snp", report)
    assert {r["rule"] for r in refused.value.reasons} == {"freshness"}
    call = compromised_registration(w, quote, enclave, EvidenceType.AMD_SEV_SNP, report)
    transact(w.c, call, operator)
    assert registry.functions.isActiveMember(enclave.address, GATEWAY).call()

    wait_every_peer_logs(
        w,
        f"hardware member {enclave.address}: amd-sev-snp evidence refused: freshness",
        "every honest agent refusing the stale report",
    )
    assert not registry.functions.isSynchronised().call()
    transact(w.c, registry.functions.revoke(enclave.address), w.c.governor)
    synchronised(w)
