"""The README's by-hand walk-through, run exactly as written: the bash blocks between
``<!-- walkthrough:start -->`` and ``<!-- walkthrough:end -->`` are joined into one
script and run by ``bash -eu`` from the checkout, against a real Anvil, the attestation
service and real agent processes. The test only sets what the README lets a reader set
(``DIR`` and the three ports, free ones here) and checks what the commands printed
against the providers' own CSVs, so the README cannot drift from the commands."""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from enclave_agent.model.table import read_table
from enclave_devnet import REPO_ROOT, free_port

README = REPO_ROOT / "README.md"
START, END = "<!-- walkthrough:start -->", "<!-- walkthrough:end -->"


def walkthrough_script(text: str) -> str:
    """The fenced bash blocks between the markers, in order, as one script."""
    if text.count(START) != 1 or text.count(END) != 1:
        raise AssertionError("the README must mark exactly one walk-through")
    section = text[text.index(START) : text.index(END)]
    blocks = re.findall(r"^```bash\n(.*?)^```$", section, flags=re.S | re.M)
    assert blocks, "no ```bash blocks between the walk-through markers"
    return "\n".join(blocks)


def json_documents(output: str) -> Iterator[Any]:
    """Every JSON object or array the commands printed, in order."""
    decoder = json.JSONDecoder()
    position = 0
    while True:
        match = re.compile(r"[\[{]").search(output, position)
        if match is None:
            return
        try:
            value, end = decoder.raw_decode(output, match.start())
        except ValueError:
            position = match.start() + 1
            continue
        yield value
        position = end


def test_the_walkthrough_extracts_every_block_in_order() -> None:
    script = walkthrough_script(README.read_text())
    assert script.startswith("make setup")
    assert "anvil --port $RPC_PORT --block-time 1" in script
    assert script.rstrip().endswith(
        "kill $(jobs -p)                                           # stop the gateway, "
        "the agents, the service, anvil"
    )
    assert "8545" not in re.sub(r"\$\{RPC_PORT:-8545\}", "", script)  # only as the reader's default


@pytest.fixture(scope="module")
def walkthrough(tmp_path_factory: pytest.TempPathFactory) -> tuple[subprocess.CompletedProcess[str], Path]:
    folder = tmp_path_factory.mktemp("readme") / "by-hand"
    script = tmp_path_factory.mktemp("script") / "walkthrough.sh"
    script.write_text(walkthrough_script(README.read_text()))
    env = {
        **os.environ,
        "DIR": str(folder),
        "RPC_PORT": str(free_port()),
        "SERVICE_PORT": str(free_port()),
        "GATEWAY_PORT": str(free_port()),
    }
    env.pop("ENCLAVE_MANIFEST", None)
    process = subprocess.Popen(
        ["bash", "-eu", str(script)],
        cwd=REPO_ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,  # the README's background processes are in this group
    )
    try:
        stdout, stderr = process.communicate(timeout=900)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        stdout, stderr = process.communicate()
        pytest.fail(f"the walk-through did not finish in 900 s:\n{stderr[-4000:]}")
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)  # whatever is left of the background processes
    return subprocess.CompletedProcess(process.args, process.returncode, stdout, stderr), folder


def _logs(folder: Path) -> str:
    return "\n".join(f"--- {p.name}\n{p.read_text(errors='replace')[-2000:]}" for p in folder.glob("*.log"))


def test_the_readme_walkthrough_runs_to_an_answered_request(
    walkthrough: tuple[subprocess.CompletedProcess[str], Path],
) -> None:
    result, folder = walkthrough
    assert result.returncode == 0, f"{result.stderr[-4000:]}\n{_logs(folder)}"
    for key in ("governor", "bank-a", "client"):
        assert (folder / f"{key}.key").stat().st_mode & 0o077 == 0  # owner only, as the README says
    documents = list(json_documents(result.stdout))

    # The statistic, as released, equals the three CSVs' joint mean and population std.
    statistic = next(d for d in documents if isinstance(d, dict) and "mean" in d and "std" in d)
    columns = [read_table(folder / "data" / f"provider-{i}.csv")[1] for i in range(3)]
    names = read_table(folder / "data" / "provider-0.csv")[0]
    column = np.concatenate([x[:, names.index("mean_radius")] for x in columns])
    assert statistic["count"] == pytest.approx(len(column))
    assert statistic["mean"] == pytest.approx(column.mean(), rel=1e-4)
    assert statistic["std"] == pytest.approx(column.std(ddof=0), rel=1e-3)

    # Three held-out rows answered as one batch, each a probability.
    batch = next(d for d in documents if isinstance(d, dict) and "results" in d)
    scores = [float(r["score"]) for r in batch["results"]]
    assert len(scores) == 3 and all(0.0 <= s <= 1.0 for s in scores)

    # round show names every participant by organisation, and says where the statistic goes.
    shown = next(d for d in documents if isinstance(d, dict) and "participants" in d and "gas" in d)
    assert {p["name"] for p in shown["participants"]} == {"bank-a", "bank-b", "bank-c"}
    assert shown["state"] == "completed" and shown["output"]["min_contributors"] == 3
    assert (shown["spec"]["mask_degree"], shown["spec"]["collusion_bound"]) == (0, 2)  # every pair of 3
    assert shown["gas"]["total"] > 0 and all(p["posted"] and p["fused"] for p in shown["participants"])

    # Agents' logs name the other members by organisation, next to the address.
    assert re.search(
        r"opened share from 0x[0-9a-fA-F]{40} \(bank-[bc]\)", (folder / "bank-a.log").read_text()
    )

    # round wait reported progress on stderr and the final state on stdout.
    assert len(re.findall(r"^round \d+: completed \(3 of 3 contributed\)$", result.stderr, flags=re.M)) == 3
    assert result.stdout.count("completed\n") >= 3
