"""MPyC (0.11): the secure sum of n random vectors of length d, in its own environment.

    python mpyc_sum.py N D REPEATS

MPyC runs one process per party over local TCP (``-M N``; party 0 is this process,
the others it starts itself), Shamir over a prime field with fixed-point numbers
(``SecFxp(64)``): every party secret-shares its input vector with every other
(``mpc.input``), the shares are added locally and the sum is opened (``mpc.output``).
Party 0 prints one JSON line: the median wall time of that (all parties at once, on
this machine's cores), its peak memory and the error against the plaintext sum.
Randomness is not needed for a sum, so PRSS is off (its key count grows as
C(n, t), which makes n = 50 unstartable)."""

from __future__ import annotations

import json
import os
import resource
import statistics
import sys
import time

import numpy as np

N, D, REPEATS = (int(a) for a in sys.argv[1:4])
PORT = 20000 + (os.getpid() % 2000) * 10 if "-I" not in sys.argv else 0
if "-I" not in sys.argv:  # party 0: choose the parties' ports and start the others with it
    sys.argv += ["-M", str(N), "--no-prss", "--base-port", str(PORT)]

from mpyc.runtime import mpc  # noqa: E402  (reads sys.argv)


def inputs(pid: int) -> np.ndarray:
    return np.random.default_rng(1_000 * N + pid).uniform(-1, 1, D)


async def main() -> None:
    secfxp = mpc.SecFxp(64)
    await mpc.start()
    times = []
    total = None
    warm = N * N * D <= 1_000_000  # a warm-up round first, when cheap (as ours)
    for repeat in range(REPEATS + warm):
        await mpc.barrier()
        start = time.perf_counter()
        shared = mpc.input(secfxp.array(inputs(mpc.pid)))
        acc = shared[0]
        for other in shared[1:]:
            acc = acc + other
        total = await mpc.output(acc)
        if repeat >= warm:
            times.append(time.perf_counter() - start)
    await mpc.shutdown()
    if mpc.pid == 0:
        expected = np.sum([inputs(p) for p in range(N)], axis=0)
        error = float(np.max(np.abs(np.asarray(total, dtype=float) - expected)))
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        note = f"{N} processes"
        print(
            json.dumps({"seconds": statistics.median(times), "error": error, "peak_mb": peak, "note": note})
        )


mpc.run(main())
