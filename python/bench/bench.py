#!/usr/bin/env python3
"""The Python front end against multiprocessing (and the Rust API), on the same workloads in
one run: a map of tiny tasks, the apply_async round trip, submit + as_completed, and the prime
kernel (benches/python/cpu_kernels.md). Prints the figures side by side with their ratios.

    python python/bench/bench.py [TASKS_DIR] [--rust] [--runs N] [--json FILE]

TASKS_DIR holds the built-in tasks (`wasmpool tasks --export DIR`; by default the wheel's
binary writes them to a temporary directory). `--rust` also runs the Rust API's bench
(`cargo bench --bench pool -- --no-python`, about 90 s more) and adds its figures of this
run; without it, the Rust column holds the README's figures (another run: compare ratios of
one run only). The multiprocessing side reuses benches/python/py_baseline.py's task
functions and helpers.
"""

import argparse
import concurrent.futures
import json
import os
import pathlib
import re
import statistics
import subprocess
import sys
import tempfile
import time

HERE = pathlib.Path(__file__).resolve().parent
REPO = HERE.parent.parent
sys.path.insert(0, str(REPO / "benches" / "python"))

import multiprocessing as mp  # noqa: E402

import py_baseline as base  # noqa: E402  (square, count_primes_range, cpu_ranges, warm_pool)

import wasmpool  # noqa: E402

WORKERS = base.POOL  # 2, as the Rust bench and the baseline

# The Rust API's figures in the README (2-core VM, 2026-12-01): the fallback without --rust.
README_RUST = {
    "map(square, 200k), fresh instance per item": 196_000,
    "map(square, 200k), instance reused per chunk": 3_330_000,
    "map(square, 20k, chunksize=1)": 138_000,
    "map_batched(square-many, 1M)": 9_920_000,
    "apply_async(square).result() round trip, median": 13.4,
    "submit + as_completed, 20k tasks": 183_000,
    "primes < 200k, 64 ranges, 2 workers": 4.2,
    "primes < 2M, 64 ranges, 2 workers": 83.0,
}


def median_runs(fn, runs):
    ts = []
    for _ in range(runs):
        t0 = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t0)
    return statistics.median(ts)


def tasks_dir(given):
    if given:
        return pathlib.Path(given)
    out = pathlib.Path(tempfile.mkdtemp(prefix="wasmpool-bench-"))
    subprocess.run([wasmpool.worker_binary(), "tasks", "--export", str(out)], check=True,
                   stdout=subprocess.DEVNULL)
    return out


# ------------------------------------------------------------------------- wasmpool (Python)

def bench_wasmpool(tasks, runs):
    square = wasmpool.load(tasks / "square.wasm").task("square")
    count = wasmpool.load(tasks / "primes.wasm").task("count-primes-range")
    out = {}
    with wasmpool.Pool(processes=WORKERS) as pool:
        pool.map(square, range(10_000))
        n = 200_000
        for label, task in (("map(square, 200k), fresh instance per item", square),
                            ("map(square, 200k), instance reused per chunk",
                             square.with_instance_reuse())):
            pool.map(task, range(10_000))

            def run(task=task):
                r = pool.map(task, range(n))
                assert r[-1] == (n - 1) ** 2
            out[label] = n / median_runs(run, runs)

        million = 1_000_000
        many = wasmpool.load(tasks / "square.wasm").task("square-many").batched()
        pool.map(many, range(10_000))

        def run_batched():
            r = pool.map(many, range(million))
            assert r[-1] == (million - 1) ** 2
        out["map_batched(square-many, 1M)"] = million / median_runs(run_batched, runs)

        n1 = 20_000

        def run1():
            assert len(pool.map(square, range(n1), chunksize=1)) == n1
        out["map(square, 20k, chunksize=1)"] = n1 / median_runs(run1, runs)

        for i in range(200):
            pool.apply_async(square, (i,)).get()
        lat = []
        for i in range(5000):
            t0 = time.perf_counter()
            assert pool.apply_async(square, (i,)).get() == i * i
            lat.append(time.perf_counter() - t0)
        lat.sort()
        out["apply_async(square).result() round trip, median"] = lat[len(lat) // 2] * 1e6
        out["  the same, 10th percentile"] = lat[len(lat) // 10] * 1e6
        out["  the same, 90th percentile"] = lat[len(lat) * 9 // 10] * 1e6

    with wasmpool.Executor(max_workers=WORKERS) as ex:
        list(ex.map(square, range(200)))
        n = 20_000
        expect = sum(i * i for i in range(n))

        def run_futures():
            futs = [ex.submit(square, i) for i in range(n)]
            s = 0
            for f in concurrent.futures.as_completed(futs):
                s += f.result()
            assert s == expect
        out["submit + as_completed, 20k tasks"] = n / median_runs(run_futures, runs)

    with wasmpool.Pool(processes=WORKERS, chunksize=1) as pool:
        for limit, key in ((200_000, "primes < 200k, 64 ranges, 2 workers"),
                           (2_000_000, "primes < 2M, 64 ranges, 2 workers")):
            rs = base.cpu_ranges(limit)
            expected = base.CPU_EXPECTED_BY_LIMIT[limit]
            pool.starmap(count, rs)

            def par(rs=rs, expected=expected):
                assert sum(pool.starmap(count, rs)) == expected
            out[key] = median_runs(par, 21 if limit == 200_000 else max(runs, 5)) * 1e3
    return out


# ------------------------------------------------------------------------- multiprocessing

def bench_multiprocessing(runs):
    out = {}
    with mp.Pool(WORKERS) as pool:
        base.warm_pool(pool)
        n = 200_000

        def run():
            assert len(pool.map(base.square, range(n))) == n
        tiny = n / median_runs(run, runs)
        out["map(square, 200k), fresh instance per item"] = tiny
        out["map(square, 200k), instance reused per chunk"] = tiny

        def run_million():
            assert len(pool.map(base.square, range(1_000_000))) == 1_000_000
        out["map_batched(square-many, 1M)"] = 1_000_000 / median_runs(run_million, runs)
        n1 = 20_000

        def run1():
            assert len(pool.map(base.square, range(n1), chunksize=1)) == n1
        out["map(square, 20k, chunksize=1)"] = n1 / median_runs(run1, runs)
        for i in range(200):
            pool.apply_async(base.square, (i,)).get()
        lat = []
        for i in range(2000):
            t0 = time.perf_counter()
            assert pool.apply_async(base.square, (i,)).get() == i * i
            lat.append(time.perf_counter() - t0)
        lat.sort()
        out["apply_async(square).result() round trip, median"] = lat[len(lat) // 2] * 1e6
        for limit, key in ((200_000, "primes < 200k, 64 ranges, 2 workers"),
                           (2_000_000, "primes < 2M, 64 ranges, 2 workers")):
            rs = base.cpu_ranges(limit)
            expected = base.CPU_EXPECTED_BY_LIMIT[limit]

            def par(rs=rs, expected=expected):
                assert sum(pool.map(base.count_primes_range, rs)) == expected
            out[key] = median_runs(par, 3) * 1e3
    with concurrent.futures.ProcessPoolExecutor(WORKERS) as ex:
        list(ex.map(base.square, range(200)))
        n = 20_000
        expect = sum(i * i for i in range(n))

        def run_futures():
            futs = [ex.submit(base.square, i) for i in range(n)]
            assert sum(f.result() for f in concurrent.futures.as_completed(futs)) == expect
        out["submit + as_completed, 20k tasks"] = n / median_runs(run_futures, 3)
    return out


# ------------------------------------------------------------------------- the Rust API

def bench_rust():
    """The Rust bench's table rows of this run, by name."""
    env = dict(os.environ)
    env.setdefault("CARGO_TARGET_DIR", str(REPO / "target"))
    proc = subprocess.run(["cargo", "bench", "--bench", "pool", "--", "--no-python"],
                          cwd=REPO, env=env, capture_output=True, text=True, check=True)
    # A row: the name (padded to 46, or longer), the figure, its unit, then the peer.
    row = re.compile(r"^(.*\S)\s+(\d[\d.]*)\s+(items/s|tasks/s|lines/s|us|ms|MiB)\s")
    rows = {}
    for line in proc.stdout.splitlines():
        m = row.match(line)
        if m:
            rows[m.group(1)] = float(m.group(2))
    return rows


# ------------------------------------------------------------------------- the table

ROWS = [
    # name, unit, higher is better
    ("map(square, 200k), fresh instance per item", "items/s", True),
    ("map(square, 200k), instance reused per chunk", "items/s", True),
    ("map_batched(square-many, 1M)", "items/s", True),
    ("map(square, 20k, chunksize=1)", "items/s", True),
    ("apply_async(square).result() round trip, median", "us", False),
    ("  the same, 10th percentile", "us", False),
    ("  the same, 90th percentile", "us", False),
    ("submit + as_completed, 20k tasks", "tasks/s", True),
    ("primes < 200k, 64 ranges, 2 workers", "ms", False),
    ("primes < 2M, 64 ranges, 2 workers", "ms", False),
]


def fmt(v):
    if v is None:
        return "-"
    if v >= 1e6:
        return f"{v / 1e6:.2f} M"
    if v >= 1e4:
        return f"{v / 1e3:.1f} k"
    return f"{v:.1f}"


def ratio(ours, peer, higher):
    if ours is None or peer is None:
        return None
    return ours / peer if higher else peer / ours


def render(py, mpfig, rust, rust_source):
    print(f"\n{'workload':<50} {'unit':<8} {'wasmpool (Python)':>17} {'multiprocessing':>15}"
          f" {'vs mp':>7} {'Rust API':>10} {'vs Rust':>8}")
    print("-" * 122)
    for name, unit, higher in ROWS:
        ours, peer, r = py.get(name), mpfig.get(name), rust.get(name)
        vs_mp, vs_rust = ratio(ours, peer, higher), ratio(ours, r, higher)
        print(f"{name:<50} {unit:<8} {fmt(ours):>17} {fmt(peer):>15} "
              f"{(f'{vs_mp:.2f}x' if vs_mp else '-'):>7} {fmt(r):>10} "
              f"{(f'{vs_rust:.2f}x' if vs_rust else '-'):>8}")
    print(f"\nvs mp / vs Rust: how many times better the Python front end is (>1 is better)."
          f"\nThe target: vs Rust >= 0.67x (no worse than 1.5x the Rust API), and vs mp > 1x"
          f" wherever the Rust API is ahead of multiprocessing.\nRust API figures: {rust_source}.")


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("tasks", nargs="?", help="directory of the built-in tasks")
    ap.add_argument("--rust", action="store_true", help="run the Rust API's bench too (+90 s)")
    ap.add_argument("--runs", type=int, default=5, help="runs per figure (median)")
    ap.add_argument("--json", metavar="FILE", help="also write the figures as JSON")
    ap.add_argument("--skip-mp", action="store_true", help="skip multiprocessing")
    args = ap.parse_args()
    tasks = tasks_dir(args.tasks)
    print("wasmpool (Python front end)...", file=sys.stderr)
    py = bench_wasmpool(tasks, args.runs)
    mpfig = {}
    if not args.skip_mp:
        print("multiprocessing...", file=sys.stderr)
        mpfig = bench_multiprocessing(args.runs)
    if args.rust:
        print("the Rust API (cargo bench --bench pool -- --no-python)...", file=sys.stderr)
        rust, source = bench_rust(), "this run (cargo bench --bench pool)"
    else:
        rust, source = README_RUST, "the README's table (another run)"
    render(py, mpfig, rust, source)
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"python": py, "multiprocessing": mpfig, "rust": rust,
                       "rust_source": source}, f, indent=2)


if __name__ == "__main__":
    main()
