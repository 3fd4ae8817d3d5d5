"""The aggregation core: the compute of one secure-sum round for every party, with no
chain, against the same secure sum in Flower SecAgg+, SecretFlow SPU and MPyC.

    .venv/bin/python bench/core.py [--quick] [--repeats 3] [--no-peers]

Ours (``enclave_agent.protocol.rounds``, exactly what the agents run): every
participant encodes its vector, splits it and encrypts one message per other
participant (``build_posting``); every participant then finds, decrypts and expands
the message each other participant posted for it (``open_posting``) and fuses its
share of the sum (``fuse``). The aggregate is checked against the plaintext sum.
Every scheme (additive, Shamir with t = n - 1, as rounds default to) and encoding
(seeded, dense) at n in {3, 10, 50} and d in {31, 10^3, 10^5}, and additive seeded with
a sparse mask of ten neighbours (``k=10``) where n - 1 > 10.

Peers, each in its own virtual environment that this script sets up under
``.bench/venvs`` (from the package registry, pinned): the same sum of n random
vectors of length d, every party's compute in this one process, one thread:

- Flower SecAgg+ (flwr 1.42): its own primitives, the SecAgg+ protocol of its
  workflow (key agreement with k neighbours, Shamir shares of each client's secret
  key and self-mask seed, masking, the server's unmasking), k = 11 (or n - 1 if
  smaller, made odd), no dropouts;
- SecretFlow SPU (0.9.5): its simulator, SEMI2K over Z_2^64, n parties, the sum of
  n inputs as a JAX function;
- MPyC (0.11): Shamir over a prime field, every party in this process (MPyC's
  single-process mode computes every party's share arithmetic), secure fixed point
  sum of n input vectors.

A case is a child process; its peak resident memory is reported. Cases over
``--budget`` seconds are run once; a peer case the peer cannot finish within
``--timeout`` is reported as such. Tables are printed and written to
reports/bench-core.md; the plot goes to docs/bench/core.png.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import resource
import signal
import statistics
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import plots  # bench/plots.py (a script's folder is on its path)

ROOT = Path(__file__).resolve().parents[1]
REPORT = ROOT / "reports" / "bench-core.md"
PLOT = ROOT / "docs" / "bench" / "core.png"
SIZES = (3, 10, 50)
LENGTHS = (31, 1_000, 100_000)
# (scheme, encoding, mask degree): 0 shares with every pair; SPARSE is the k-regular mask
# with as many neighbours as Flower's SecAgg+ here (k = 11 shares: ten others and itself).
SPARSE = 10
SCHEMES = (
    ("additive", "seeded", 0),
    ("additive", "seeded", SPARSE),
    ("additive", "dense", 0),
    ("shamir", "seeded", 0),
    ("shamir", "dense", 0),
)


@dataclass(frozen=True)
class Result:
    system: str
    n: int
    d: int
    seconds: float | None  # median all-party compute; None: not finished
    peak_mb: float | None
    note: str = ""


# ------------------------------------------------------------------------------ ours (in a child)


def run_ours(n: int, d: int, scheme: str, encoding: str, degree: int, repeats: int) -> dict[str, object]:
    """One case in this (child) process: median seconds over ``repeats`` and the error."""
    import numpy as np
    from eth_utils.address import to_checksum_address

    from enclave_agent.crypto.field import PRIME61, RING64
    from enclave_agent.crypto.fixed_point import decode
    from enclave_agent.crypto.reed_solomon import robust_reconstruct
    from enclave_agent.protocol.rounds import RoundContext, RoundDoc, build_posting, fuse, open_posting

    ctx = RoundContext(31337, "0x" + "ee" * 20)
    people = [to_checksum_address(f"0x{i + 1:040x}") for i in range(n)]
    modulus = RING64 if scheme == "additive" else PRIME61
    threshold = n if scheme == "additive" else max(2, n - 1)
    rng = np.random.default_rng(n * 1_000_003 + d)
    inputs = [rng.uniform(-1, 1, d) for _ in range(n)]
    pair = {(i, j): os.urandom(32) for i in range(n) for j in range(i + 1, n)}

    def key(i: int, j: int) -> bytes:
        return pair[(min(i, j), max(i, j))]

    docs = [
        RoundDoc(
            round_id=1,
            epoch=1,
            tag="bench",
            participants=people,
            my_index=i,
            length=d,
            frac_bits=16,
            scheme=scheme,
            encoding=encoding,
            modulus=modulus,
            threshold=threshold,
            posting_deadline=0,
            deadline=0,
            output_kind="intermediate",
            min_contributors=0,
            floor=n,
            mask_degree=degree,
            contributors=(1 << n) - 1,
        )
        for i in range(n)
    ]

    def one_round() -> list[np.ndarray]:
        postings = [
            build_posting(docs[i], inputs[i], {people[j]: key(i, j) for j in range(n) if j != i}, ctx)
            for i in range(n)
        ]
        payloads = [b"".join(p.chunks) for p in postings]
        fused = []
        for j in range(n):
            received = {
                people[i]: open_posting(docs[j], people[i], payloads[i], people[j], key(i, j), ctx)
                for i in range(n)
                if i != j and docs[j].shares_with(people[i], people[j])
            }
            fused.append(fuse(docs[j], postings[j].kept, received))
        return fused

    fused: list[np.ndarray] = one_round() if n * n * d <= 1_000_000 else []  # warm-up, when cheap
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fused = one_round()
        times.append(time.perf_counter() - start)
    if modulus == RING64:
        total = np.zeros(d, dtype=np.uint64)
        for share in fused:
            total = total + share
    else:
        total = robust_reconstruct({i + 1: s for i, s in enumerate(fused)}, threshold, modulus).secret
    error = float(np.max(np.abs(decode(total, 16, modulus) - np.sum(inputs, axis=0))))
    return {"seconds": statistics.median(times), "error": error}


def child(argv: Sequence[str]) -> int:
    """``core.py --child SYSTEM N D SCHEME ENCODING DEGREE REPEATS``: one case, JSON on stdout."""
    system, n, d, scheme, encoding, degree, repeats = (
        argv[0],
        int(argv[1]),
        int(argv[2]),
        argv[3],
        argv[4],
        int(argv[5]),
        int(argv[6]),
    )
    if system != "ours":
        raise SystemExit(f"unknown system {system}")
    out = run_ours(n, d, scheme, encoding, degree, repeats)
    out["peak_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps(out))
    return 0


# ------------------------------------------------------------------------------ peers

PEERS = {
    "flwr-secagg+": ("flwr==1.42.0", "numpy"),
    "spu": ("spu==0.9.5",),
    "mpyc": ("mpyc==0.11", "numpy", "gmpy2"),
}
VENVS = ROOT / ".bench" / "venvs"


def peer_python(name: str) -> Path:
    """The peer's virtual environment (made and filled once; a stamp records its pins)."""
    venv = VENVS / name
    python = venv / "bin" / "python"
    stamp = venv / "installed.txt"
    pins = " ".join(PEERS[name])
    if stamp.exists() and stamp.read_text() == pins:
        return python
    print(f"setting up {venv} ({pins}) ...", file=sys.stderr, flush=True)
    subprocess.run([sys.executable, "-m", "venv", "--clear", str(venv)], check=True)
    subprocess.run([str(python), "-m", "pip", "install", "-q", *PEERS[name]], check=True)
    stamp.write_text(pins)
    return python


def run_case(command: list[str], timeout: float) -> dict[str, object] | None:
    """The case's JSON line; None if it did not finish in ``timeout`` seconds. The case
    runs in its own process group, all of which goes when it ends or times out (MPyC
    starts a process per party: left running, they would load the next benchmarks)."""
    with subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True
    ) as child:
        timed_out = False
        try:
            stdout, stderr = child.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            timed_out, stdout, stderr = True, "", ""
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(child.pid, signal.SIGKILL)
            child.communicate()
    if timed_out:
        return None
    if child.returncode != 0:
        raise RuntimeError(f"{' '.join(command[:3])}... failed:\n{stderr[-3000:]}")
    result: dict[str, object] = json.loads(stdout.strip().splitlines()[-1])
    return result


def peer_result(name: str, n: int, d: int, repeats: int, timeout: float) -> Result:
    python = peer_python(name)
    script = Path(__file__).resolve().parent / "peers" / f"{name.split('-')[0]}_sum.py"
    out = run_case([str(python), str(script), str(n), str(d), str(repeats)], timeout)
    if out is None:
        return Result(name, n, d, None, None, f"not finished in {timeout:.0f} s")
    error = float(out["error"])  # type: ignore[arg-type]
    if error > 1e-2 * n:
        raise RuntimeError(f"{name} n={n} d={d}: its sum is off by {error}")
    return Result(name, n, d, float(out["seconds"]), float(out["peak_mb"]), str(out.get("note", "")))  # type: ignore[arg-type]


def our_system(scheme: str, encoding: str, degree: int) -> str:
    return f"ours {scheme}/{encoding}" + (f" k={degree}" if degree else "")


def our_result(
    scheme: str, encoding: str, degree: int, n: int, d: int, repeats: int, budget: float
) -> Result:
    # Cases that would take over the budget (dense at n = 50, d = 10^5) run once.
    heavy = encoding == "dense" and n * n * d > 10_000_000
    times = 1 if heavy else repeats
    command = [
        *(sys.executable, __file__, "--child", "ours", str(n), str(d)),
        *(scheme, encoding, str(degree), str(times)),
    ]
    out = run_case(command, budget * max(times, 1) + 600)
    system = our_system(scheme, encoding, degree)
    if out is None:
        return Result(system, n, d, None, None, "not finished")
    if float(out["error"]) > n * 2.0**-16:  # type: ignore[arg-type]
        raise RuntimeError(f"{system} n={n} d={d}: aggregate off by {out['error']}")
    return Result(system, n, d, float(out["seconds"]), float(out["peak_mb"]), "once" if heavy else "")  # type: ignore[arg-type]


# ------------------------------------------------------------------------------ report


def cell(r: Result | None) -> str:
    if r is None:
        return "-"
    if r.seconds is None:
        return r.note
    return f"{r.seconds * 1000:,.1f}" if r.seconds < 10 else f"{r.seconds * 1000:,.0f}"


def tables(results: Sequence[Result], sizes: Sequence[int], lengths: Sequence[int]) -> str:
    systems = list(dict.fromkeys(r.system for r in results))
    by = {(r.system, r.n, r.d): r for r in results}
    cases = [(n, d) for n in sizes for d in lengths]
    head = "| system | " + " | ".join(f"n={n} d={d:,}" for n, d in cases) + " |"
    sep = "|---|" + "---:|" * len(cases)
    ms = [head, sep] + [
        f"| {s} | " + " | ".join(cell(by.get((s, n, d))) for n, d in cases) + " |" for s in systems
    ]
    mem = [head, sep] + [
        f"| {s} | "
        + " | ".join(
            f"{r.peak_mb:,.0f}" if (r := by.get((s, n, d))) is not None and r.peak_mb is not None else "-"
            for n, d in cases
        )
        + " |"
        for s in systems
    ]

    def ratios(base: str) -> str:
        rows = [head, sep]
        for s in systems:
            if s == base:
                continue
            cells = []
            for n, d in cases:
                ours, other = by.get((base, n, d)), by.get((s, n, d))
                if ours is None or other is None or ours.seconds is None or other.seconds is None:
                    cells.append("-")
                else:
                    cells.append(f"{other.seconds / ours.seconds:,.1f}x")
            rows.append(f"| {s} | " + " | ".join(cells) + " |")
        return f"\n\n### Each system's time over ours (`{base}`), same run\n\n" + "\n".join(rows)

    sparse = our_system("additive", "seeded", SPARSE)
    return (
        "### All-party compute of one secure sum, ms (median; ours and Flower on one thread, "
        "SPU's simulated parties and MPyC's party processes as they run)\n\n"
        + "\n".join(ms)
        + f"\n\n`{sparse}`: the sparse mask, run where it differs from every pair (n - 1 > {SPARSE}).\n"
        + ratios(our_system("additive", "seeded", 0))
        + (ratios(sparse) if sparse in systems else "")
        + "\n\n### Peak resident memory of the case's process, MB\n\n"
        + "\n".join(mem)
    )


def plot(results: Sequence[Result], lengths: Sequence[int], path: Path) -> None:
    plt = plots.pyplot()
    fig, axes = plt.subplots(1, len(lengths), figsize=(5 * len(lengths), 4), sharey=False)
    for ax, d in zip(axes if len(lengths) > 1 else [axes], lengths, strict=True):
        for system in dict.fromkeys(r.system for r in results):
            points = sorted(
                (r.n, r.seconds) for r in results if r.system == system and r.d == d and r.seconds
            )
            if points:
                ax.plot([p[0] for p in points], [p[1] for p in points], marker="o", label=system)
        ax.set_title(f"d = {d:,}")
        ax.set_xlabel("parties n")
        ax.set_yscale("log")
        ax.set_ylabel("all-party compute, s")
        ax.grid(True, alpha=0.3)
    axes[0].legend(fontsize=7) if len(lengths) > 1 else axes.legend(fontsize=7)
    plots.save(fig, path)


def main(argv: Sequence[str]) -> int:
    if argv[:1] == ["--child"]:
        return child(argv[1:])
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="n = 3, 10 and d = 31, 1000 only; one repeat")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--no-peers", action="store_true", help="ours only (no peer environments)")
    parser.add_argument("--peers", nargs="+", default=list(PEERS), choices=list(PEERS))
    parser.add_argument("--budget", type=float, default=60, help="seconds a case may take per repeat")
    parser.add_argument("--timeout", type=float, default=300, help="seconds a peer case may take")
    parser.add_argument("--out", type=Path, default=REPORT)
    parser.add_argument("--plot", type=Path, default=PLOT)
    args = parser.parse_args(argv)
    sizes, lengths = ((3, 10), (31, 1_000)) if args.quick else (SIZES, LENGTHS)
    repeats = 1 if args.quick else args.repeats
    results: list[Result] = []
    for n in sizes:
        for d in lengths:
            for scheme, encoding, degree in SCHEMES:
                if degree and degree >= n - 1:
                    continue  # the same graph as every pair
                results.append(our_result(scheme, encoding, degree, n, d, repeats, args.budget))
                print(
                    f"{results[-1].system} n={n} d={d}: {cell(results[-1])}",
                    file=sys.stderr,
                    flush=True,
                )
            for name in [] if args.no_peers else args.peers:
                results.append(peer_result(name, n, d, repeats, args.timeout))
                print(f"{name} n={n} d={d}: {cell(results[-1])}", file=sys.stderr, flush=True)
    text = (
        "# Aggregation core\n\n"
        f"Python {sys.version.split()[0]}, {os.cpu_count()} cores (one used), repeats {repeats}. "
        "Peers in their own environments under .bench/venvs.\n\n" + tables(results, sizes, lengths)
    )
    print(text)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text + "\n")
    plot(results, lengths, args.plot)
    print(f"plot: {args.plot}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
