"""Flower SecAgg+ (flwr 1.42): the secure sum of n random vectors of length d, in
its own environment.

    python flwr_sum.py N D REPEATS

Every client runs the stages of Flower's own SecAgg+ client mod
(``flwr.client.mod.secure_aggregation.secaggplus_mod``: setup, share keys, collect
masked vectors, unmask) and the server does what its ``SecAggPlusWorkflow`` does
between and after them (route the encrypted shares, add the masked vectors,
reconstruct each client's self-mask seed from the neighbours' Shamir shares,
unmask, dequantize), with the workflow's defaults (clipping range 8, quantization
range 2^22, modulus 2^32) and its ring of neighbours: k = 11 shares per client (n
if n <= 11), a threshold of half the shares (``reconstruction_threshold=0.5``, at
least 2); no dropouts. All of it in this process, one thread; only
the transport (Flower's gRPC messages) is left out. One JSON line: the median time,
the peak memory and the error of the aggregate (the workflow returns the mean; the
sum is n times it)."""

from __future__ import annotations

import json
import logging
import resource
import statistics
import sys
import time

import numpy as np
from flwr.client.mod.secure_aggregation.secaggplus_mod import (
    SecAggPlusState,
    _collect_masked_vectors,
    _setup,
    _share_keys,
    _unmask,
)
from flwr.common import ndarrays_to_parameters
from flwr.common.secure_aggregation.crypto.shamir import combine_shares
from flwr.common.secure_aggregation.ndarrays_arithmetic import (
    factor_extract,
    get_parameters_shape,
    parameters_addition,
    parameters_mod,
    parameters_subtraction,
)
from flwr.common.secure_aggregation.quantization import dequantize
from flwr.common.secure_aggregation.secaggplus_constants import Key
from flwr.common.secure_aggregation.secaggplus_utils import pseudo_rand_gen

logging.disable(logging.WARNING)
N, D, REPEATS = (int(a) for a in sys.argv[1:4])
CLIP, QUANT, MOD, MAX_WEIGHT = 8.0, 4194304, 4294967296, 1000.0
K = min(11, N) if N > 11 else N
if K < N and K % 2 == 0:
    K += 1
THRESHOLD = max(2, round(0.5 * K))
INPUTS = [np.random.default_rng(1_000 * N + i).uniform(-1, 1, D) for i in range(N)]


def secure_mean() -> np.ndarray:
    ids = list(range(1, N + 1))
    half = K >> 1
    neighbours = {
        nid: {ids[(i + off) % N] for off in range(-half, half + 1)} if K < N else set(ids)
        for i, nid in enumerate(ids)
    }
    setup = {
        Key.SAMPLE_NUMBER: N,
        Key.SHARE_NUMBER: K,
        Key.THRESHOLD: THRESHOLD,
        Key.CLIPPING_RANGE: CLIP,
        Key.TARGET_RANGE: QUANT,
        Key.MOD_RANGE: MOD,
        Key.MAX_WEIGHT: MAX_WEIGHT,
    }
    states = {nid: SecAggPlusState(nid=nid) for nid in ids}
    public = {nid: _setup(states[nid], setup) for nid in ids}
    inbox: dict[int, tuple[list[int], list[bytes]]] = {nid: ([], []) for nid in ids}
    for nid in ids:
        keys = {
            str(j): (public[j][Key.PUBLIC_KEY_1], public[j][Key.PUBLIC_KEY_2])
            for j in sorted(neighbours[nid])
        }
        out = _share_keys(states[nid], keys)
        for dst, ciphertext in zip(out[Key.DESTINATION_LIST], out[Key.CIPHERTEXT_LIST], strict=True):
            inbox[dst][0].append(nid)
            inbox[dst][1].append(ciphertext)
    total = None
    for i, nid in enumerate(ids):
        configs = {Key.SOURCE_LIST: inbox[nid][0], Key.CIPHERTEXT_LIST: inbox[nid][1]}
        out = _collect_masked_vectors(
            states[nid], configs, int(MAX_WEIGHT), ndarrays_to_parameters([INPUTS[i]])
        )
        from flwr.common import bytes_to_ndarray

        masked = [bytes_to_ndarray(b) for b in out[Key.MASKED_PARAMETERS]]
        total = masked if total is None else parameters_addition(total, masked)
    assert total is not None
    total = parameters_mod(total, MOD)
    shares: dict[int, list[bytes]] = {nid: [] for nid in ids}
    for nid in ids:
        out = _unmask(
            states[nid], {Key.ACTIVE_NODE_ID_LIST: sorted(neighbours[nid]), Key.DEAD_NODE_ID_LIST: []}
        )
        for owner, share in zip(out[Key.NODE_ID_LIST], out[Key.SHARE_LIST], strict=True):
            shares[owner].append(share)
    for nid in ids:
        seed = combine_shares(shares[nid])
        total = parameters_subtraction(total, pseudo_rand_gen(seed, MOD, get_parameters_shape(total)))
    recon = parameters_mod(total, MOD)
    q_total, recon = factor_extract(recon)
    vector = dequantize(recon, CLIP, QUANT)[0]
    vector += -(N - 1) * CLIP
    vector *= QUANT / q_total
    return vector


mean = secure_mean() if N * N * D <= 1_000_000 else None  # warm-up, when cheap (as ours)
times = []
for _ in range(REPEATS):
    start = time.perf_counter()
    mean = secure_mean()
    times.append(time.perf_counter() - start)
error = float(np.max(np.abs(mean * N - np.sum(INPUTS, axis=0))))
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print(json.dumps({"seconds": statistics.median(times), "error": error, "peak_mb": peak, "note": f"k={K}"}))
