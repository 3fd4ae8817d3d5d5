"""``enclave-console``: serve the read-only consortium page of one deployment.

    enclave-console --manifest var/demo/net/manifest.json [--rpc-url URL] [--port 8600]

Exit codes: 0 stopped by SIGINT/SIGTERM, 2 bad arguments or an unreadable manifest
(one line on stderr). An unreachable chain is not an exit: the page says so and the
service keeps trying.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys
from pathlib import Path

from enclave_agent.chain import load_manifest
from enclave_agent.errors import ConfigError
from enclave_agent.listener import listen
from enclave_console.http import STOPPING, STREAM_TICK, build_app
from enclave_console.watcher import Watcher

log = logging.getLogger("enclave_console")

EXIT_OK, EXIT_USAGE = 0, 2


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="enclave-console",
        description="Serve the read-only consortium page (members, epochs, rounds, requests, live).",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("--manifest", type=Path, required=True, help="deployment manifest (manifest.json)")
    p.add_argument("--rpc-url", default=None, help="JSON-RPC endpoint (default: the manifest's rpc_url)")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on")
    p.add_argument("--port", type=int, default=8600, help="port to listen on (0: any free port)")
    p.add_argument("--poll", type=float, default=0.5, help="seconds between reads of the chain")
    p.add_argument("--log-level", default="INFO", choices=("DEBUG", "INFO", "WARNING", "ERROR"))
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    logging.basicConfig(level=args.log_level, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    if not 0 <= args.port <= 65535 or not 0.05 <= args.poll <= 60:
        print("enclave-console: --port must be 0..65535 and --poll 0.05..60 seconds", file=sys.stderr)
        return EXIT_USAGE
    try:
        manifest = load_manifest(args.manifest)
    except ConfigError as exc:
        print(f"enclave-console: {exc}", file=sys.stderr)
        return EXIT_USAGE
    watcher = Watcher(manifest, rpc_url=args.rpc_url, poll_interval=args.poll)
    watcher.start()

    async def serve() -> None:
        app = build_app(watcher)
        listener = await listen(app, args.host, args.port)
        # One line tests and scripts wait for (the port may have been 0).
        print(f"enclave-console: serving http://{args.host}:{listener.port}/", flush=True)
        loop = asyncio.get_running_loop()
        done = asyncio.Event()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, done.set)
        await done.wait()
        app[STOPPING].set()
        await asyncio.sleep(2 * STREAM_TICK)  # live pages' streams end
        await listener.close()

    try:
        asyncio.run(serve())
    finally:
        watcher.stop()
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
