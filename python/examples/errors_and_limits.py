"""Untrusted code, safely: limits as keyword arguments and one exception class per failure.

    python examples/errors_and_limits.py [TASKS_DIR]
"""

import wasmpool
from _tasks import tasks_dir

if __name__ == "__main__":
    tasks = tasks_dir()
    sleep = wasmpool.load(tasks / "sleep.wasm").task("sleep")
    primes = wasmpool.load(tasks / "primes.wasm").task("count-primes-range")
    crash = wasmpool.load(tasks / "trap.wasm").task("maybe-crash")
    square = wasmpool.load(tasks / "square.wasm").task("square")

    with wasmpool.Pool(processes=2, timeout=0.5, max_memory="64M") as pool:
        for name, call in [
            ("timeout", lambda: pool.apply(sleep, (5000,))),
            ("fuel", lambda: pool.apply(primes.with_limits(fuel=100_000), (0, 1_000_000))),
            ("trap", lambda: pool.apply(crash, (5,))),
            ("bad input", lambda: pool.apply(square, ("seven",))),
        ]:
            try:
                call()
            except wasmpool.TaskError as e:
                print(f"{name}: {type(e).__name__}: {e}")
        print("and the pool goes on:", pool.map(square, range(5)))
