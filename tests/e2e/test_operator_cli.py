"""The operator commands (`enclave-agent model|stat|client|round`) against the demo
consortium: each does what it says on chain, names members by organisation, and each
refusal is one line, exit 2, with nothing written on chain."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest
from eth_account import Account

from enclave_agent.errors import EXIT_CONFIG, EXIT_ROUND_ABORTED, EXIT_TIMEOUT
from enclave_agent.tee._files import write_private_file
from enclave_devnet import REPO_ROOT, dev_key
from enclave_devnet.data import BREAST_CANCER_CLASSES, breast_cancer_units
from enclave_devnet.demo import Demo

GRANTED, PAYER = 7, 8  # dev accounts no other test uses (12 and 13 are test_gateway's)


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("keys")
    paths = {"governor": folder / "governor.key", "payer": folder / "payer.key"}
    write_private_file(paths["governor"], dev_key(0).encode())
    write_private_file(paths["payer"], dev_key(PAYER).encode())
    return paths


def cli(demo: Demo, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "enclave_agent.cli", *args, "--manifest", str(demo.c.manifest_path)]
    return subprocess.run(command, capture_output=True, text=True, timeout=timeout, cwd=REPO_ROOT)


def refused(result: subprocess.CompletedProcess[str], message: str) -> None:
    assert result.returncode == EXIT_CONFIG, result.stderr
    assert result.stderr.count("\n") == 1 and message in result.stderr, result.stderr


def csv_of(demo: Demo) -> str:
    return str(demo._result.split.provider_paths[0])


def test_model_register_binds_the_training_rounds_read_from_the_tags(
    demo: Demo, keys: dict[str, Path]
) -> None:
    rounds = demo._result.rounds
    gateway = demo.c.gateway.functions
    before = gateway.modelCount().call()
    base = ["--features-from", csv_of(demo), "--key-file", str(keys["governor"])]
    refused(
        cli(demo, "model", "register", str(rounds["scaling"]), "--name", "x", *base), "not a training round"
    )
    refused(cli(demo, "model", "register", "9999", "--name", "x", *base), "round 9999 does not exist")
    refused(
        cli(
            demo,
            "model",
            "register",
            str(rounds["model"]),
            "--name",
            "x",
            "--features",
            "a,b",
            "--key-file",
            str(keys["governor"]),
        ),
        "a model over 2 features needs 4",
    )
    refused(
        cli(demo, "model", "register", str(rounds["model"]), "--name", "x", "--features-from", csv_of(demo)),
        "give --key-file",
    )
    refused(cli(demo, "stat", "register", str(rounds["model"]), "--name", "x", *base), "a statistic needs")
    refused(cli(demo, "stat", "register", str(rounds["scaling"]), "--name", "x", *base), "a statistic needs")
    assert gateway.modelCount().call() == before  # nothing was written

    refused(
        cli(demo, "model", "register", str(rounds["model"]), "--name", "x", "--classes", "2=maybe", *base),
        "classes are the labels '0' and '1'",
    )
    refused(
        cli(demo, "model", "register", str(rounds["model"]), "--name", "x", "--units", "nope=px", *base),
        "units name an unknown feature 'nope'",
    )
    assert gateway.modelCount().call() == before
    features = list(demo._result.split.features)
    card = [
        "--description",
        "Logistic regression on fine needle aspirate images: is the mass benign?",
        "--units",
        ",".join(f"{name}={unit}" for name, unit in breast_cancer_units(features).items()),
        "--classes",
        ",".join(f"{label}={meaning}" for label, meaning in BREAST_CANCER_CLASSES.items()),
    ]
    done = cli(
        demo, "model", "register", str(rounds["model"]), "--name", "cli-model", "--fee", "7", *card, *base
    )
    assert done.returncode == 0, done.stderr
    model_id = int(done.stdout)
    round_id, kind, fee, active, _ = gateway.modelInfo(model_id).call()
    assert (round_id, kind, fee, active) == (rounds["model"], 0, 7, True)
    listed = json.loads(cli(demo, "model", "list", "--round", str(rounds["model"])).stdout)
    mine = next(m for m in listed if m["id"] == model_id)
    demo_model = next(m for m in listed if m["id"] == demo._result.model_id)
    assert mine["metadata"] == demo_model["metadata"]  # the demo registers through the same function
    assert mine["metadata"]["scaling"]["stats_round"] == rounds["scaling"]

    retired = cli(demo, "model", "retire", str(model_id), "--key-file", str(keys["governor"]))
    assert retired.returncode == 0 and json.loads(retired.stdout)["active"] is False
    assert gateway.modelInfo(model_id).call()[3] is False
    refused(
        cli(demo, "model", "retire", str(model_id), "--key-file", str(keys["governor"])), "retired already"
    )


def test_client_grant_quota_fee_deposit_and_revoke(demo: Demo, keys: dict[str, Path]) -> None:
    client = demo.c.w3.eth.accounts[GRANTED]
    payer = demo.c.w3.eth.accounts[PAYER]
    gateway = demo.c.gateway.functions
    governor = ["--key-file", str(keys["governor"])]
    refused(cli(demo, "client", "grant", "0x1234", *governor), "client must be an address")
    refused(cli(demo, "client", "grant", client, "--quota", "0", *governor), "--quota must be >= 1")
    refused(cli(demo, "client", "grant", client), "give --key-file")
    assert gateway.quotaOf(client).call() == [0, 0]

    granted = cli(demo, "client", "grant", client, "--quota", "5", *governor)
    assert granted.returncode == 0, granted.stderr
    assert json.loads(granted.stdout) | {"balance_wei": 0} == {
        "client": client,
        "access": True,
        "quota_rows": 5,
        "used_rows": 0,
        "balance_wei": 0,
    }
    assert gateway.quotaOf(client).call() == [5, 0]
    assert json.loads(cli(demo, "client", "quota", client).stdout)["quota_rows"] == 5

    refused(cli(demo, "client", "deposit", "1.5wei", "--key-file", str(keys["payer"])), "not a whole number")
    refused(cli(demo, "client", "deposit", "1000"), "give its --key-file")
    deposited = cli(demo, "client", "deposit", "0.5gwei", "--key-file", str(keys["payer"]))
    assert deposited.returncode == 0, deposited.stderr
    assert gateway.balanceOf(payer).call() == 500_000_000
    fees = json.loads(cli(demo, "client", "fee", payer).stdout)
    model = next(m for m in fees["models"] if m["id"] == demo._result.model_id)
    assert model["rows_paid"] == 500_000_000 // model["fee_wei_per_row"]

    revoked = cli(demo, "client", "revoke", client, *governor)
    assert revoked.returncode == 0 and json.loads(revoked.stdout)["access"] is False
    assert gateway.quotaOf(client).call()[0] == 0


def test_round_open_wait_and_show_name_the_members(demo: Demo, keys: dict[str, Path]) -> None:
    coordinator = ["--key-file", str(keys["governor"])]
    opened = cli(
        demo, "round", "open", "--tag", "column-stats", "--features-from", csv_of(demo), *coordinator
    )
    assert opened.returncode == 0, opened.stderr
    round_id = int(opened.stdout)
    waited = cli(demo, "round", "wait", str(round_id), "--interval", "0.2")
    assert waited.returncode == 0 and waited.stdout == "completed\n", waited.stderr
    assert f"round {round_id}: completed (3 of 3 contributed)" in waited.stderr
    shown = json.loads(cli(demo, "round", "show", str(round_id)).stdout)
    assert shown["output"] == {"kind": "statistic", "min_contributors": 3, "floor": 3}  # safe default
    assert sorted(p["name"] for p in shown["participants"]) == ["provider-0", "provider-1", "provider-2"]
    assert shown["state"] == "completed" and shown["aborted"] is None and shown["gas"]["total"] > 0
    assert shown["recovery"] is None  # nobody was absent
    assert shown["result"]["released"] is False and "stat register" in shown["result"]["note"]
    refused(cli(demo, "round", "show", "9999"), "round 9999 does not exist")


def test_round_wait_exits_10_on_an_abort_naming_the_culprits(demo: Demo, keys: dict[str, Path]) -> None:
    opened = cli(
        demo,
        "round",
        "open",
        "--tag",
        "nobody-has-this",
        "--length",
        "3",
        "--posting-window",
        "5",
        "--window",
        "10",
        "--key-file",
        str(keys["governor"]),
    )
    assert opened.returncode == 0, opened.stderr
    round_id = int(opened.stdout)
    waited = cli(demo, "round", "wait", str(round_id), "--interval", "0.2")
    assert waited.returncode == EXIT_ROUND_ABORTED and waited.stdout == "aborted\n", waited.stderr
    assert f"round {round_id}: aborted (missing-shares: " in waited.stderr
    for name in ("provider-0", "provider-1", "provider-2"):
        assert name in waited.stderr.splitlines()[-1]
    shown = json.loads(cli(demo, "round", "show", str(round_id)).stdout)
    assert shown["aborted"]["reason"] == "missing-shares"
    assert sorted(c["name"] for c in shown["aborted"]["culprits"]) == [
        "provider-0",
        "provider-1",
        "provider-2",
    ]


def test_round_wait_exits_11_when_the_timeout_passes_and_register_refuses_an_open_round(
    demo: Demo, keys: dict[str, Path]
) -> None:
    # Nobody can contribute (there is no scaling round 9999): the round stays open a minute.
    opened = cli(
        demo,
        "round",
        "open",
        "--tag",
        "train:9999:0",
        "--features-from",
        csv_of(demo),
        "--posting-window",
        "60",
        "--window",
        "90",
        "--key-file",
        str(keys["governor"]),
    )
    assert opened.returncode == 0, opened.stderr
    round_id = int(opened.stdout)
    refused(
        cli(
            demo,
            "model",
            "register",
            str(round_id),
            "--name",
            "early",
            "--features-from",
            csv_of(demo),
            "--key-file",
            str(keys["governor"]),
        ),
        "is posting, not completed",
    )
    waited = cli(demo, "round", "wait", str(round_id), "--timeout", "1", "--interval", "0.2")
    assert waited.returncode == EXIT_TIMEOUT and waited.stdout == "timeout\n"
    assert f"round {round_id}: posting, 0/3 posted" in waited.stderr
    assert f"round {round_id} did not end within 1 s" in waited.stderr


def test_a_contract_refusal_is_exit_1_naming_the_error(demo: Demo, keys: dict[str, Path]) -> None:
    client = demo.c.w3.eth.accounts[GRANTED]
    not_governance = cli(demo, "client", "grant", client, "--quota", "3", "--key-file", str(keys["payer"]))
    assert not_governance.returncode == 1 and not_governance.stderr.count("\n") == 1
    assert "AccessControlUnauthorizedAccount" in not_governance.stderr
    assert demo.c.gateway.functions.quotaOf(client).call()[0] == 0


def test_demo_serve_prints_the_wallet_key_to_import(demo: Demo) -> None:
    lines: list[str] = []
    out = demo.config.out
    demo.config.out = lines.append
    stop = threading.Event()
    stop.set()  # print what serving prints, then return at once
    try:
        demo.serve(stop)
    finally:
        demo.config.out = out
    key = next(
        word
        for line in "\n".join(lines).splitlines()
        if "wallet key" in line
        for word in line.split()
        if word.startswith("0x") or len(word) == 64
    )
    assert Account.from_key(key).address == demo.client_address


def test_round_show_gives_the_released_statistic_through_the_gateway(demo: Demo, tmp_path: Path) -> None:
    from enclave_agent.model.table import read_table

    round_id = str(demo._result.rounds["statistic"])
    refused(
        cli(demo, "round", "show", round_id, "--column", "mean_radius"),
        "give --gateway URL and --api-key-file",
    )
    key = tmp_path / "client.apikey"
    write_private_file(key, demo.api_key.encode())
    scaling = str(demo._result.rounds["scaling"])
    refused(
        cli(
            demo,
            "round",
            "show",
            scaling,
            "--column",
            "mean_radius",
            "--gateway",
            demo.gateway_url,
            "--api-key-file",
            str(key),
        ),
        "releases nothing",
    )
    shown = cli(
        demo,
        "round",
        "show",
        round_id,
        "--column",
        "mean_radius",
        "--gateway",
        demo.gateway_url,
        "--api-key-file",
        str(key),
    )
    assert shown.returncode == 0, shown.stderr
    result = json.loads(shown.stdout)["result"]
    assert result["released"] is True and result["models"][0]["id"] == demo._result.stats_model_id
    tables = [read_table(p) for p in demo._result.split.provider_paths]
    column = np.concatenate([x[:, names.index("mean_radius")] for names, x, _ in tables])
    assert result["answer"]["mean"] == pytest.approx(column.mean(), rel=1e-4)
    assert result["answer"]["std"] == pytest.approx(column.std(ddof=0), rel=1e-3)  # the population std


def test_measurements_and_signers(demo: Demo, keys: dict[str, Path]) -> None:
    governor = ["--key-file", str(keys["governor"])]
    registry = demo.c.registry.functions
    fresh = "0x" + "ab" * 32  # a build nobody runs: revoking it deactivates nobody
    refused(cli(demo, "measurement", "approve", "gateway", "0x1234", *governor), "32 bytes of hex")
    refused(cli(demo, "measurement", "approve", "gateway", fresh), "give --key-file")
    refused(cli(demo, "measurement", "revoke", "gateway", fresh, *governor), "is not approved")
    approved = cli(demo, "measurement", "approve", "gateway", fresh, *governor)
    assert approved.returncode == 0, approved.stderr
    assert registry.isApproved(2, bytes.fromhex("ab" * 32)).call()
    assert {"role": "gateway", "measurement": fresh, "approved": True} in json.loads(approved.stdout)
    refused(cli(demo, "measurement", "approve", "gateway", fresh, *governor), "approved for gateway already")
    revoked = cli(demo, "measurement", "revoke", "gateway", fresh, *governor)
    assert revoked.returncode == 0 and "0 member(s) running it deactivated" in revoked.stderr
    assert not registry.isApproved(2, bytes.fromhex("ab" * 32)).call()
    assert len(registry.activeMembers(1).call()) == 3 and len(registry.activeMembers(2).call()) == 1

    signer = demo.c.w3.eth.accounts[14]
    refused(cli(demo, "signer", "trust", "0x12", *governor), "signer must be an address")
    trusted = cli(demo, "signer", "trust", signer, *governor)
    assert trusted.returncode == 0 and registry.isTrustedSigner(signer).call()
    refused(cli(demo, "signer", "trust", signer, *governor), "trusted already")
    distrusted = cli(demo, "signer", "distrust", signer, *governor)
    assert distrusted.returncode == 0 and not registry.isTrustedSigner(signer).call()
    listed = json.loads(cli(demo, "signer", "list").stdout)
    assert {"signer": signer, "trusted": False} in listed
    assert any(entry["trusted"] for entry in listed)  # the attestation service's signer
