"""The tutorial's shared counter: two tasks, in two worker processes, each add 1 to a shared
`Value` 100,000 times under its lock (Python's `with counter.get_lock(): counter.value += 1`),
and the total is exactly 200,000. Then the same counter with a `Lock` of its own, a queue
between a producer and a consumer task, and a dict.

    python examples/shared_counter.py [TASKS_DIR]

The tasks are the `shared` guest of guest-tasks/ (`shared.wasm`), which the binary does not
embed: TASKS_DIR must hold it (.ci/python.sh copies the workspace build's there), or
$WASMPOOL_SHARED_WASM name it.
"""

import os
import sys

import wasmpool
from _tasks import tasks_dir


def shared_wasm() -> str:
    path = os.environ.get("WASMPOOL_SHARED_WASM") or str(tasks_dir() / "shared.wasm")
    if not os.path.exists(path):
        sys.exit(f"no {path}: build the workspace (cargo build --release) and pass the directory "
                 "holding shared.wasm, or set WASMPOOL_SHARED_WASM")
    return path


if __name__ == "__main__":
    module = wasmpool.load(shared_wasm())

    with wasmpool.Pool(processes=2) as pool:
        # A shared integer with initial value 0; tasks reach it only under a granted name.
        counter = pool.Value("counter", 0)
        increment = module.task("own-lock-increment", shared=[counter])
        # Two tasks that increment it, at the same time, each under the value's own lock.
        p1 = pool.apply_async(increment, ("counter", 100_000))
        p2 = pool.apply_async(increment, ("counter", 100_000))
        p1.get()
        p2.get()
        print(f"Final counter value: {counter.value}")
        assert counter.value == 200_000

        # The same with a Lock of its own, granted beside the value; the host takes it too.
        lock = pool.Lock("lock")
        locked = module.task("locked-increment", shared=[counter, lock])
        pool.starmap(locked, [("lock", "counter", 50_000)] * 2)
        with lock:
            counter.value += 1
        print(f"After two more tasks and one host increment: {counter.value}")
        assert counter.value == 300_001

        # A queue: a producer task and a consumer task in two workers, every item once.
        jobs = pool.Queue("jobs")
        consumer = pool.apply_async(module.task("consume", shared=[jobs]), ("jobs", 1_000))
        pool.apply(module.task("produce", shared=[jobs]), ("jobs", 0, 1_000))
        got = consumer.get(timeout=60)
        assert sorted(got) == list(range(1_000))
        print(f"The consumer got {len(got)} items, each once")

        # A dict, which tasks see as the wasi:keyvalue bucket "hits".
        hits = pool.dict("hits")
        count = module.task("dict-count", shared=[hits])
        pool.starmap(count, [("hits", "page", 100)] * 2)
        print(f"hits['page'] = {hits['page']}")
        assert hits["page"] == 200
