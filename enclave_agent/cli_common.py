"""What every ``enclave-agent`` command shares: the help formatter (every default
shown), the chain arguments (manifest, key file, RPC URL) and JSON output."""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path
from typing import Any, NoReturn

from enclave_agent.errors import ConfigError

MANIFEST_ENV = "ENCLAVE_MANIFEST"


class HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Descriptions as written; every option's default appended to its help unless the
    help already says it (or there is none to show: no value, a flag)."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        text = action.help or ""
        default = action.default
        if (
            "default" in text
            or default in (None, False, argparse.SUPPRESS, [])
            or not (action.option_strings or action.nargs in ("?", "*"))
        ):
            return text
        return f"{text} (default: %(default)s)"


class Parser(argparse.ArgumentParser):
    """An argument parser whose help shows every default (its subcommands' too)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("formatter_class", HelpFormatter)
        super().__init__(*args, **kwargs)

    def error(self, message: str) -> NoReturn:
        """Bad arguments: one line and exit 2, like every other refusal (usage: --help)."""
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


def add_chain_args(p: argparse.ArgumentParser, key_help: str | None, *, key_required: bool = False) -> None:
    """``--manifest`` (default $ENCLAVE_MANIFEST), ``--rpc-url`` and, if ``key_help``,
    ``--key-file``."""
    p.add_argument(
        "--manifest",
        type=Path,
        default=None,
        help=f"deployment manifest JSON (default: ${MANIFEST_ENV})",
    )
    p.add_argument("--rpc-url", help="JSON-RPC URL (default: the manifest's)")
    if key_help is not None:
        p.add_argument("--key-file", type=Path, required=key_required, help=key_help)


def manifest_of(args: argparse.Namespace) -> Path:
    if args.manifest is not None:
        return Path(args.manifest)
    env = os.environ.get(MANIFEST_ENV)
    if not env:
        raise ConfigError(f"give --manifest FILE or set {MANIFEST_ENV}")
    return Path(env)


def print_json(value: Any) -> None:
    print(json.dumps(value, indent=2))


def positive_int(text: str) -> int:
    """argparse type: an integer >= 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value
