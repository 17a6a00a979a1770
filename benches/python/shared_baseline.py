#!/usr/bin/env python3
"""Baseline benchmark of CPython's shared state between processes (multiprocessing's Value,
Lock, Queue, Pipe and Manager dict), as the peer for wasmpool's shared-state bench (issue 17).

Usage:
    python3 shared_baseline.py                 # run everything, print a readable table
    python3 shared_baseline.py --json          # run everything, print one JSON object
    python3 shared_baseline.py --from-json F   # render the table from a saved JSON file (no run)
    python3 shared_baseline.py --scale 0.1     # every N times 0.1 (a quick look)

Processes are started with the "fork" start method (--start-method spawn for the other), and
are started outside the timed region: each waits on a Barrier, then times its own loop with
time.perf_counter() (CLOCK_MONOTONIC, one clock for every process); a run's time is from the
earliest start to the latest end over its processes. Every figure is in microseconds per
operation, the median of RUNS runs; the raw runs are kept in the JSON. Workloads:

  locked_increment  2 processes x N `with lock: v.value += 1` on a Value('q', 0, lock=False)
                    and a shared Lock(): time / (2 N)
  locked_increment_get_lock
                    the same on a Value('q', 0) under its own v.get_lock() (an RLock, which the
                    synchronized wrapper's .value takes again): time / (2 N)
  atomic_add        Python has no atomic add: `with v.get_lock(): v.value += 1`, 1 process, N times
  queue             Queue(): 1 process puts N items (bytes of decimal text), another gets them:
                    time / N
  pipe_round_trip   Pipe(): one process echoes, the other sends 8 bytes and receives the reply,
                    N times (send_bytes / recv_bytes): time / N
  pipe_round_trip_pickled
                    the same with send / recv of the bytes objects (pickled): time / N
  dict_set          Manager().dict(): 1 process sets d[f"k{i % 100}"] = str(i), N times: time / N
"""
import argparse
import datetime
import json
import multiprocessing as mp
import os
import platform
import statistics
import sys
import time

# The check that nothing else is burning a core, shared with the bench's other Python peer.
from py_baseline import foreign_cpu_load

RUNS = 5            # each figure = median of RUNS runs
PING = b"ping1234"  # the 8-byte message of the pipe round trip
KEYS = 100          # distinct keys of dict_set

# Per run: N for each workload, chosen so that the whole script takes about 25 s on 2 cores.
N = {
    "locked_increment": 200_000,           # per process (2 processes)
    "locked_increment_get_lock": 200_000,  # per process (2 processes)
    "atomic_add": 500_000,
    "queue": 50_000,
    "pipe_round_trip": 50_000,
    "pipe_round_trip_pickled": 25_000,
    "dict_set": 20_000,
}

# ---------------------------------------------------------------- process bodies (module level)


def _timed(barrier, times, slot, body, *args):
    """Waits for every process of the run, then runs `body(*args)` and stores (start, end)."""
    barrier.wait()
    t0 = time.perf_counter()
    body(*args)
    t1 = time.perf_counter()
    times[2 * slot] = t0
    times[2 * slot + 1] = t1


def increment_under(lock, v, n):
    for _ in range(n):
        with lock:
            v.value += 1


def increment_under_own_lock(v, n):
    for _ in range(n):
        with v.get_lock():
            v.value += 1


def produce(q, n):
    for i in range(n):
        q.put(str(i).encode())


def consume(q, n):
    total = 0
    for _ in range(n):
        total += int(q.get())
    expected = n * (n - 1) // 2
    if total != expected:
        raise SystemExit(f"queue: got items summing to {total}, expected {expected}")


def echo_bytes(conn, n):
    for _ in range(n):
        conn.send_bytes(conn.recv_bytes())


def ping_bytes(conn, n):
    for _ in range(n):
        conn.send_bytes(PING)
        if conn.recv_bytes() != PING:
            raise SystemExit("pipe: wrong echo")


def echo_pickled(conn, n):
    for _ in range(n):
        conn.send(conn.recv())


def ping_pickled(conn, n):
    for _ in range(n):
        conn.send(PING)
        if conn.recv() != PING:
            raise SystemExit("pipe: wrong echo")


def dict_sets(d, n):
    for i in range(n):
        d[f"k{i % KEYS}"] = str(i)

# ---------------------------------------------------------------- the runs


def run_processes(ctx, bodies):
    """Runs each (function, args) of `bodies` in a process of its own, started before the clock;
    returns the seconds from the earliest start to the latest end."""
    barrier = ctx.Barrier(len(bodies))
    times = ctx.Array("d", 2 * len(bodies), lock=False)
    procs = [ctx.Process(target=_timed, args=(barrier, times, slot, body, *args))
             for slot, (body, args) in enumerate(bodies)]
    for p in procs:
        p.start()
    for p in procs:
        p.join()
    failed = [p.exitcode for p in procs if p.exitcode != 0]
    if failed:
        raise RuntimeError(f"a benchmark process failed (exit codes {failed})")
    starts, ends = times[0::2], times[1::2]
    return max(ends) - min(starts)


def bench_locked_increment(ctx, n, own_lock):
    if own_lock:
        v = ctx.Value("q", 0)
        bodies = [(increment_under_own_lock, (v, n))] * 2
    else:
        v = ctx.Value("q", 0, lock=False)
        lock = ctx.Lock()
        bodies = [(increment_under, (lock, v, n))] * 2
    seconds = run_processes(ctx, bodies)
    if v.value != 2 * n:
        raise RuntimeError(f"locked increment: {v.value}, expected {2 * n}")
    return seconds, 2 * n


def bench_atomic_add(ctx, n):
    v = ctx.Value("q", 0)
    seconds = run_processes(ctx, [(increment_under_own_lock, (v, n))])
    if v.value != n:
        raise RuntimeError(f"atomic add: {v.value}, expected {n}")
    return seconds, n


def bench_queue(ctx, n):
    q = ctx.Queue()
    seconds = run_processes(ctx, [(produce, (q, n)), (consume, (q, n))])
    q.close()
    q.join_thread()
    return seconds, n


def bench_pipe(ctx, n, pickled):
    a, b = ctx.Pipe()
    echo, ping = (echo_pickled, ping_pickled) if pickled else (echo_bytes, ping_bytes)
    seconds = run_processes(ctx, [(echo, (b, n)), (ping, (a, n))])
    a.close()
    b.close()
    return seconds, n


def bench_dict_set(ctx, n, manager):
    d = manager.dict()
    seconds = run_processes(ctx, [(dict_sets, (d, n))])
    if len(d) != min(n, KEYS) or d["k0"] != str((n - 1) // KEYS * KEYS):
        raise RuntimeError("dict set: wrong final contents")
    return seconds, n


WORKLOADS = [
    ("locked_increment", "2 processes x N `with lock: v.value += 1`, Value('q', lock=False) + Lock()",
     lambda ctx, n, _m: bench_locked_increment(ctx, n, own_lock=False)),
    ("locked_increment_get_lock", "2 processes x N `with v.get_lock(): v.value += 1`, Value('q')",
     lambda ctx, n, _m: bench_locked_increment(ctx, n, own_lock=True)),
    ("atomic_add", "1 process x N `with v.get_lock(): v.value += 1` (no atomic add in Python)",
     lambda ctx, n, _m: bench_atomic_add(ctx, n)),
    ("queue", "Queue(): N puts in one process, N gets in another (bytes of decimal text)",
     lambda ctx, n, _m: bench_queue(ctx, n)),
    ("pipe_round_trip", "Pipe(): N x send_bytes(8 bytes) + recv_bytes, the other end echoes",
     lambda ctx, n, _m: bench_pipe(ctx, n, pickled=False)),
    ("pipe_round_trip_pickled", "Pipe(): N x send(8-byte bytes) + recv (pickled), echoed",
     lambda ctx, n, _m: bench_pipe(ctx, n, pickled=True)),
    ("dict_set", "Manager().dict(): N x d[f'k{i % 100}'] = str(i) from a child process",
     lambda ctx, n, manager: bench_dict_set(ctx, n, manager)),
]

# ---------------------------------------------------------------- driver and rendering


def meta(start_method, scale):
    cpu = "?"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return {"python": sys.version.split()[0], "implementation": platform.python_implementation(),
            "platform": platform.platform(), "cpu_model": cpu, "cpu_count": os.cpu_count(),
            "start_method": start_method, "runs_per_figure": RUNS, "scale": scale,
            "statistic": "median", "timer": "time.perf_counter, per process, after a Barrier",
            "unit": "microseconds per operation",
            "utc": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")}


def run_all(start_method, scale, log):
    t0 = time.perf_counter()
    ctx = mp.get_context(start_method)
    out = {"meta": meta(start_method, scale)}
    out["meta"]["foreign_cpu_load_before"] = foreign_cpu_load()
    manager = ctx.Manager()
    try:
        for name, setup, fn in WORKLOADS:
            s = time.perf_counter()
            n = max(1, round(N[name] * scale))
            runs = []
            for _ in range(RUNS):
                seconds, ops = fn(ctx, n, manager)
                runs.append(seconds / ops * 1e6)
            out[name] = {"setup": setup, "n": n, "ops_per_run": ops,
                         "runs_us": [round(r, 3) for r in runs],
                         "median_us": round(statistics.median(runs), 3)}
            log(f"[{name}: {out[name]['median_us']:.2f} us/op, {time.perf_counter() - s:.1f} s]")
    finally:
        manager.shutdown()
    out["meta"]["foreign_cpu_load_after"] = foreign_cpu_load()
    out["meta"]["total_wall_s"] = round(time.perf_counter() - t0, 1)
    return out


def render(d):
    m = d["meta"]
    lines = [f"CPython {m['python']} shared-state baseline  |  {m['cpu_model']}, {m['cpu_count']} "
             f"CPUs  |  start method {m['start_method']}  |  median of {m['runs_per_figure']}  |  "
             f"{m['utc']}" + (f"\nnote: {m['note']}" if m.get("note") else ""),
             "", f"{'workload':<28}{'N':>9}{'us/op':>10}  setup", "-" * 100]
    for when in ("after", "before"):
        fl = m.get(f"foreign_cpu_load_{when}")
        if fl and fl["busy_cores"] >= 0.2:
            lines.insert(1, f"WARNING: other processes used {fl['busy_cores']} of {m['cpu_count']} "
                            f"cores {when} the run: " + ", ".join(
                                f"pid {x['pid']} {x['comm']} {x['cpu_pct']}%"
                                for x in fl["processes_over_5pct"]))
    for name, _, _ in WORKLOADS:
        w = d[name]
        lines.append(f"{name:<28}{w['n']:>9,}{w['median_us']:>10.2f}  {w['setup']}")
    lines += ["-" * 100, f"total wall time {m['total_wall_s']} s"]
    return "\n".join(lines)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    ap.add_argument("--from-json", metavar="FILE", help="render the table from a saved JSON file")
    ap.add_argument("--start-method", default="fork", choices=("fork", "spawn", "forkserver"),
                    help="multiprocessing start method (default: fork)")
    ap.add_argument("--scale", type=float, default=1.0, help="multiply every N by this")
    ap.add_argument("--note", default="", help="free text stored in meta.note (run conditions)")
    a = ap.parse_args()
    if a.from_json:
        with open(a.from_json) as f:
            print(render(json.load(f)))
        return
    d = run_all(a.start_method, a.scale, lambda s: print(s, file=sys.stderr, flush=True))
    if a.note:
        d["meta"]["note"] = a.note
    print(json.dumps(d, indent=2) if a.json else render(d), flush=True)
    # belt and braces: no stray process may keep the interpreter from exiting
    for p in mp.active_children():
        p.kill()


if __name__ == "__main__":
    main()
