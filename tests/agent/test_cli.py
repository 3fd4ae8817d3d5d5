"""The enclave-agent command line without a chain: every option described and its
default shown; the rough edges of issue 13 (a state_dir that is a file, a damaged
store, a closed pipe, a gateway slower than --timeout, a misspelled key, a missing key
file) end in one line and the documented exit code, never a traceback."""

from __future__ import annotations

import argparse
import http.server
import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from enclave_agent.cli import build_parser
from enclave_agent.errors import EXIT_CONFIG, EXIT_ERROR, EXIT_TIMEOUT
from enclave_agent.store import Store

REPO = Path(__file__).resolve().parents[2]
PROVIDER = """
[agent]
name = "bank-a"
role = "provider"
state_dir = "state"

[chain]
manifest = "manifest.json"

[operator]
key_file = "operator.key"

[attestation]
service_url = "http://127.0.0.1:9"
"""


def run(*args: str, cwd: Path = REPO, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "enclave_agent.cli", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=cwd,
    )


def one_line(result: subprocess.CompletedProcess[str], code: int, *needles: str) -> None:
    assert result.returncode == code, result.stderr
    assert "Traceback" not in result.stderr
    assert result.stderr.count("\n") == 1 and result.stderr.startswith("enclave-agent: error: "), (
        result.stderr
    )
    for needle in needles:
        assert needle in result.stderr


def _parsers(
    parser: argparse.ArgumentParser, path: str = ""
) -> Iterator[tuple[str, argparse.ArgumentParser]]:
    yield path, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from _parsers(sub, f"{path} {name}".strip())


def test_every_option_of_every_command_is_described_and_shows_its_default() -> None:
    commands = dict(_parsers(build_parser()))
    assert {"model", "stat", "client", "round open", "round show", "round wait", "deploy"} <= set(commands)
    for name, parser in commands.items():
        text = " ".join(parser.format_help().split())
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction | argparse._HelpAction):
                continue
            assert action.help, f"{name}: {action.dest} has no help"
            if action.default not in (None, False, [], argparse.SUPPRESS):
                shown = f"(default: {action.default})" in text or "default" in action.help
                assert shown, f"{name}: the default of {action.dest} is not shown"
    described = commands["round open"].format_help()
    for option in (
        "--scheme",
        "--encoding",
        "--mask-degree",
        "--threshold",
        "--output",
        "--min-contributors",
    ):
        assert option in described
    assert "every participant for a statistic" in described  # not 0: the safe release rule


def test_round_open_resolves_a_statistics_release_rule_to_every_participant() -> None:
    from enclave_agent.protocol.round_spec import RoundRequest, round_arguments

    def build(output: str, min_contributors: int | None) -> tuple[object, ...]:
        request = RoundRequest(
            "column-stats", 7, posting_window=10, window=20, output=output, min_contributors=min_contributors
        )
        return round_arguments(request, participants=4, now=0)

    assert build("statistic", None)[-1] == (1, 4)
    assert build("shared-model", None)[-1] == (0, 0)
    with pytest.raises(ValueError, match="min-contributors must be 0..4"):
        build("statistic", 5)


@pytest.mark.parametrize(
    ("scheme", "degree", "spec_degree"),
    [
        ("additive", 0, 0),
        ("additive", 2, 2),
        ("additive", 10, 10),
        ("additive", 3, None),
        ("additive", -2, None),
        ("shamir", 2, None),
        ("shamir", 0, 0),
    ],
)
def test_round_open_checks_the_mask_degree_before_any_transaction(
    scheme: str, degree: int, spec_degree: int | None
) -> None:
    from enclave_agent.cli import build_parser
    from enclave_agent.protocol.round_spec import RoundRequest, round_arguments

    argv = ["round", "open", "--tag", "t", "--length", "3", "--key-file", "k", "--mask-degree", str(degree)]
    assert build_parser().parse_args(argv).mask_degree == degree
    request = RoundRequest("t", 3, scheme=scheme, mask_degree=degree)
    if spec_degree is None:
        with pytest.raises(ValueError, match=f"mask-degree must be 0 .* got {degree} for a {scheme} round"):
            round_arguments(request, participants=5, now=0)
    else:
        assert round_arguments(request, participants=5, now=0)[1][5] == spec_degree  # type: ignore[index]


@pytest.mark.parametrize("threshold", [3, 4])
def test_round_open_refuses_a_sparse_mask_below_n_before_any_transaction(threshold: int) -> None:
    from enclave_agent.protocol.round_spec import RoundRequest, round_arguments

    request = RoundRequest("t", 3, threshold=threshold, mask_degree=2)
    with pytest.raises(ValueError, match=f"a threshold of {threshold} of 5 would make the shares"):
        round_arguments(request, participants=5, now=0)
    assert round_arguments(RoundRequest("t", 3, threshold=threshold), participants=5, now=0)[2] == threshold


def test_every_way_of_opening_a_round_starts_from_one_set_of_defaults() -> None:
    from enclave_agent.cli import build_parser
    from enclave_agent.protocol.round_spec import ROUND_DEFAULTS

    args = build_parser().parse_args(["round", "open", "--tag", "t", "--length", "3", "--key-file", "k"])
    for field in (
        "scheme",
        "encoding",
        "threshold",
        "frac_bits",
        "posting_window",
        "window",
        "min_contributors",
    ):
        assert getattr(args, field) == getattr(ROUND_DEFAULTS, field), field


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    (tmp_path / "agent.toml").write_text(PROVIDER)
    return tmp_path


def test_a_state_dir_that_is_a_file_is_one_line(folder: Path) -> None:
    (folder / "state").write_text("not a directory")
    for command in ("run", "status"):
        one_line(
            run(command, "--config", str(folder / "agent.toml")), EXIT_CONFIG, "agent.state_dir", "is a file"
        )


def test_garbage_in_the_store_is_one_line(folder: Path) -> None:
    (folder / "state").mkdir()
    with Store(folder / "state" / "agent.sqlite3") as store:
        store.put_json("status", {"stage": "synchronised"})
        store._write("UPDATE docs SET value = ? WHERE key = ?", ("{not json", "status"))
    one_line(run("status", "--config", str(folder / "agent.toml")), EXIT_ERROR, "'status' is not valid JSON")
    (folder / "state" / "agent.sqlite3").write_bytes(b"garbage" * 100)
    for suffix in ("-wal", "-shm"):
        (folder / "state" / f"agent.sqlite3{suffix}").unlink(missing_ok=True)
    one_line(run("status", "--config", str(folder / "agent.toml")), EXIT_ERROR, "agent.sqlite3")


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (
            lambda t: t.replace('state_dir = "state"', 'state_dir = "state"\nstatedir = "x"'),
            "agent.statedir: unknown key (did you mean 'state_dir'?)",
        ),
        (
            lambda t: t.replace("[chain]", "[chain]\nconfirmation = 2"),
            "chain.confirmation: unknown key (did you mean 'confirmations'?)",
        ),
        (
            lambda t: t + "\n[gateway]\nport = 1\nrequest_timout = 5\n",
            "gateway.request_timout: unknown key (did you mean 'request_timeout'?)",
        ),
        (
            lambda t: t + "\n[health]\nport = 1\nhots = 'x'\n",
            "health.hots: unknown key (did you mean 'host'?)",
        ),
        (lambda t: t + "\n[inputs.v]\nvalue = [1]\n", "inputs.v.value: unknown key (did you mean 'values'?)"),
        (lambda t: t.replace("key_file", "keyfile"), "operator.keyfile: unknown key"),
    ],
)
def test_a_misspelled_key_inside_a_table_is_refused_by_name(folder: Path, change, message: str) -> None:
    (folder / "agent.toml").write_text(change(PROVIDER))
    one_line(run("run", "--config", str(folder / "agent.toml")), EXIT_CONFIG, message)
    assert not (folder / "state").exists()


def test_missing_key_files_are_reported_before_any_enclave_key_is_created(folder: Path) -> None:
    one_line(
        run("run", "--config", str(folder / "agent.toml")), EXIT_CONFIG, "operator key file", "operator.key"
    )
    assert not (folder / "state").exists()
    gateway = PROVIDER.replace('role = "provider"', 'role = "gateway"') + (
        '\n[gateway]\nport = 0\n[gateway.api_keys]\n"0x70997970C51812dc3A010C7d01b50e0d17dc79C8" = "'
        + "ab" * 32
        + '"\n[gateway.custody_keys]\n"0x70997970C51812dc3A010C7d01b50e0d17dc79C8" = "client.key"\n'
    )
    (folder / "agent.toml").write_text(gateway)
    (folder / "operator.key").write_text("0x" + "11" * 32)
    (folder / "operator.key").chmod(0o600)
    one_line(run("gateway", "--config", str(folder / "agent.toml")), EXIT_CONFIG, "custody key", "client.key")
    assert not (folder / "state").exists()
    (folder / "agent.toml").write_text(PROVIDER)  # the manifest is missing too
    result = run("run", "--config", str(folder / "agent.toml"))
    one_line(result, EXIT_CONFIG, "manifest.json")
    assert not (folder / "state").exists()


def test_status_into_a_closed_pipe_is_one_line(folder: Path) -> None:
    (folder / "state").mkdir()
    with Store(folder / "state" / "agent.sqlite3") as store:
        store.put_json("status", {f"key-{i}": "x" * 100 for i in range(2000)})  # more than a pipe holds
    command = f"{sys.executable} -m enclave_agent.cli status --config {folder / 'agent.toml'} | head -n 1"
    result = subprocess.run(
        ["bash", "-c", command + "; echo exit=${PIPESTATUS[0]} >&2"],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=REPO,
    )
    assert result.stdout == "{\n"
    assert "Traceback" not in result.stderr and "Exception ignored" not in result.stderr
    assert result.stderr.splitlines() == [
        "enclave-agent: error: output closed before it was all written (broken pipe)",
        f"exit={EXIT_ERROR}",
    ]


class _Gateway(http.server.BaseHTTPRequestHandler):
    """/v1/models answers at once; anything else after 3 s (a gateway waiting for providers)."""

    def do_GET(self) -> None:  # noqa: N802
        if self.path == "/v1/models":
            self._json({"models": [{"id": 1, "name": "m", "kind": "statistic", "features": ["a"]}]})
        else:
            time.sleep(3)
            self._json({})

    def do_POST(self) -> None:  # noqa: N802
        time.sleep(3)
        self._json({})

    def _json(self, body: object) -> None:
        data = json.dumps(body).encode()
        try:
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
        except OSError:
            pass

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def gateway() -> Iterator[str]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Gateway)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def test_list_models_needs_no_credentials(gateway: str) -> None:
    result = run("request", "--url", gateway, "--list-models")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)[0]["name"] == "m"


def test_a_gateway_slower_than_timeout_is_one_line_and_exit_11(gateway: str, tmp_path: Path) -> None:
    key = tmp_path / "client.apikey"
    key.write_text("secret")
    key.chmod(0o600)
    result = run(
        "request",
        "--url",
        gateway,
        "--api-key-file",
        str(key),
        "--model",
        "m",
        "--column",
        "a",
        "--timeout",
        "1",
    )
    one_line(result, EXIT_TIMEOUT, "within --timeout 1 s", "may still answer")
    assert os.environ.get("NOTHING") is None


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("round", "show"), "enclave-agent round show: error: the following arguments are required: id"),
        (("round", "wait", "x"), "enclave-agent round wait: error: argument id: expected a whole number"),
        (("client", "lend", "0x00"), "enclave-agent client: error: argument action: invalid choice: 'lend'"),
        (("round", "wait", "3", "--timeout", "0"), "enclave-agent: error: need 0 < --timeout <= 86400"),
        (("model", "register", "3", "--name", "m"), "enclave-agent: error: model register changes the chain"),
    ],
)
def test_bad_arguments_are_one_line_and_exit_2(args: tuple[str, ...], message: str) -> None:
    result = run(*args)
    assert result.returncode == EXIT_CONFIG and "Traceback" not in result.stderr
    assert result.stderr.count("\n") == 1 and result.stderr.startswith(message), result.stderr
