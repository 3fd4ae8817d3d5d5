"""The consortium bench/load.py loads: the demo's (three providers, the gateway,
Anvil), trained, with three API-key clients funded for the run. Run as a child
process: it writes a JSON ready file, then on SIGUSR1 kills provider-1 with SIGKILL,
on SIGUSR2 starts it again, and on SIGTERM stops everything.

    python bench/load_consortium.py WORKDIR READY_FILE REQUESTS
"""

from __future__ import annotations

import json
import signal
import sys
import threading
from pathlib import Path

from enclave_agent.model.table import read_table
from enclave_devnet.demo import CLIENT_INDEX, FEE_WEI, SPARE_CLIENTS, Demo, DemoConfig


def main(workdir: Path, ready: Path, requests: int) -> int:
    demo = Demo(DemoConfig(workdir=workdir, fedavg_rounds=1, out=lambda text: print(text, flush=True)))
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    try:
        result = demo.start()
        demo.train()
        w3, gateway = demo.c.w3, demo.c.gateway.functions
        clients = [w3.eth.accounts[i] for i in (CLIENT_INDEX, *SPARE_CLIENTS)]
        for client in clients:  # room for the whole run, whatever share each client gets
            w3.eth.wait_for_transaction_receipt(
                gateway.setClientAccess(client, requests + 1000).transact({"from": demo.c.governor})
            )
            w3.eth.wait_for_transaction_receipt(
                gateway.deposit().transact({"from": client, "value": FEE_WEI * (requests + 1000)})
            )
        names, x, _ = read_table(result.split.holdout_path, result.split.label_column)
        provider = demo.c.agents["provider-1"]
        signal.signal(signal.SIGUSR1, lambda *_: provider.kill9())
        signal.signal(signal.SIGUSR2, lambda *_: provider.start())
        ready.write_text(
            json.dumps(
                {
                    "gateway": demo.gateway_url,
                    "rpc": demo.c.anvil.url,
                    "manifest": str(demo.c.manifest_path),
                    "model": result.model_id,
                    "fee": FEE_WEI,
                    "clients": {client: demo.api_keys[client] for client in clients},
                    "rows": [dict(zip(names, map(float, row), strict=True)) for row in x],
                    "start_block": int(w3.eth.block_number),
                }
            )
        )
        while not stop.wait(0.5):
            pass
    finally:
        demo.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main(Path(sys.argv[1]), Path(sys.argv[2]), int(sys.argv[3])))
