"""SecretFlow SPU (0.9.5): the secure sum of n random vectors of length d, in its own
environment.

    python spu_sum.py N D REPEATS

SPU's simulator (``spu.utils.simulation``) runs n parties as threads of this
process, SEMI2K (additive secret sharing over Z_2^64, fixed point with 18 fraction
bits): each input vector is secret-shared among the n parties, the sum is computed
on the shares and revealed, as a JAX function compiled by SPU. The first call
(compilation) is not timed. One JSON line: the median time, the peak memory and the
error against the plaintext sum."""

from __future__ import annotations

import json
import logging
import os
import resource
import statistics
import sys
import time

os.environ.setdefault("JAX_PLATFORMS", "cpu")
logging.disable(logging.WARNING)

import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
import spu.utils.simulation as spsim  # noqa: E402
from spu import libspu  # noqa: E402

N, D, REPEATS = (int(a) for a in sys.argv[1:4])
INPUTS = [np.random.default_rng(1_000 * N + i).uniform(-1, 1, D) for i in range(N)]


def total(*vectors: jnp.ndarray) -> jnp.ndarray:
    acc = vectors[0]
    for v in vectors[1:]:
        acc = acc + v
    return acc


config = libspu.RuntimeConfig(
    protocol=libspu.ProtocolKind.SEMI2K, field=libspu.FieldType.FM64, fxp_fraction_bits=18
)
sim = spsim.Simulator(N, config)
secure_total = spsim.sim_jax(sim, total)
result = np.asarray(secure_total(*INPUTS))  # compiles
times = []
for _ in range(REPEATS):
    start = time.perf_counter()
    result = np.asarray(secure_total(*INPUTS))
    times.append(time.perf_counter() - start)
error = float(np.max(np.abs(result - np.sum(INPUTS, axis=0))))
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print(json.dumps({"seconds": statistics.median(times), "error": error, "peak_mb": peak, "note": "simulator"}))
