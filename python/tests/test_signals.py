"""Ctrl-C: KeyboardInterrupt in the caller, the pool terminated, no worker left behind."""

import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest

from conftest import alive, worker_processes

# A process started in the background by a non-interactive shell inherits SIGINT ignored, and
# Python then leaves it so: the child asks for Python's own handler, as a terminal's Ctrl-C
# finds it.
CHILD = textwrap.dedent("""
    import signal, sys, time, wasmpool
    signal.signal(signal.SIGINT, signal.default_int_handler)
    square = wasmpool.load(sys.argv[1]).task("slow-square")
    pool = wasmpool.Pool(processes=2)
    r = pool.starmap_async(square, [(i, 300) for i in range(100)], chunksize=1)
    while len(pool.worker_pids()) < 2:
        time.sleep(0.01)
    print(*pool.worker_pids(), flush=True)
    try:
        {wait}
    except KeyboardInterrupt:
        print("interrupted", flush=True)
        print(*pool.worker_pids(), flush=True)
        sys.exit(0)
    print("not interrupted", flush=True)
    sys.exit(1)
""")


@pytest.mark.parametrize("wait", [
    "r.get()",
    "pool.map(wasmpool.load(sys.argv[1].replace('square', 'sleep')).task('sleep'), [5000] * 4)",
    "pool.starmap(square, [(1, 5000)])",
    "list(pool.imap(wasmpool.load(sys.argv[1]).task('square'), iter(lambda: 1, 0)))",
    "pool.apply_async(square, (1, 5000)).get()",
    # the Executor's own pool: the first pool goes, the executor's is the one to be terminated
    "ex = wasmpool.Executor(2); pool.terminate(); pool = ex.pool; ex.submit(square, 1, 5000).result()",
    "ex = wasmpool.Executor(2); pool.terminate(); pool = ex.pool; list(ex.map(square, iter(lambda: 1, 0), iter(lambda: 300, 0)))",
])
def test_ctrl_c_raises_keyboard_interrupt_and_leaves_no_worker(wasm, wait):
    before = set(worker_processes())
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD.replace("{wait}", wait), wasm("square")],
        stdout=subprocess.PIPE, text=True,
    )
    try:
        pids = [int(p) for p in child.stdout.readline().split()]
        assert len(pids) == 2 and all(alive(p) for p in pids)
        time.sleep(0.3)
        # Every worker of the child, those of a pool made after the first line too.
        children = worker_processes(parent=child.pid)
        assert children, "the child has workers to leave behind"
        child.send_signal(signal.SIGINT)
        out, _ = child.communicate(timeout=20)
    finally:
        if child.poll() is None:
            child.kill()
    lines = out.splitlines()
    assert lines[0] == "interrupted", out
    assert child.returncode == 0
    assert lines[1:] == [""] or lines[1:] == [], f"workers still there after terminate: {lines}"
    assert not any(alive(p) for p in pids + children)
    assert set(worker_processes()) <= before


def test_a_killed_host_leaves_no_worker(wasm):
    """SIGKILL the Python process itself: the workers' parent-death signal ends them."""
    code = textwrap.dedent("""
        import sys, time, wasmpool
        t = wasmpool.load(sys.argv[1]).task("slow-square")
        pool = wasmpool.Pool(processes=2)
        r = pool.starmap_async(t, [(i, 300) for i in range(100)], chunksize=1)
        while len(pool.worker_pids()) < 2:
            time.sleep(0.01)
        print(*pool.worker_pids(), flush=True)
        r.get()
    """)
    child = subprocess.Popen([sys.executable, "-c", code, wasm("square")],
                             stdout=subprocess.PIPE, text=True)
    pids = [int(p) for p in child.stdout.readline().split()]
    assert pids
    child.kill()
    child.wait(10)
    deadline = time.monotonic() + 5
    while any(alive(p) for p in pids) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not any(alive(p) for p in pids)
