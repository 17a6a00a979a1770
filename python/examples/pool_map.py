"""The tutorial's "Process Pool" example on a wasm task: the squares of 100 numbers, each
simulating 100 ms of work, sequentially and on a pool of 4 workers, with the speed-up.

    python examples/pool_map.py [TASKS_DIR]

TASKS_DIR holds the built-in tasks (`wasmpool tasks --export DIR`); by default they are
written to a temporary directory by the wheel's own binary.
"""

import time

import wasmpool
from _tasks import tasks_dir

if __name__ == "__main__":
    slow_square = wasmpool.load(tasks_dir() / "square.wasm").task("slow-square")
    numbers = [(n, 100) for n in range(100)]  # (x, milliseconds of simulated work)

    with wasmpool.Pool(processes=1) as pool:
        start = time.time()
        sequential_results = pool.starmap(slow_square, numbers[:10])
        sequential_time = (time.time() - start) * 10  # 10 of the 100 items, one at a time

    start = time.time()
    with wasmpool.Pool(processes=4) as pool:
        parallel_results = pool.starmap(slow_square, numbers)
    parallel_time = time.time() - start

    assert parallel_results == [n * n for n in range(100)]
    print(f"Sequential time: {sequential_time:.2f} seconds (estimated from 10 items)")
    print(f"Parallel time: {parallel_time:.2f} seconds")
    print(f"Speedup: {sequential_time / parallel_time:.2f}x")
