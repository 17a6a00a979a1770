"""The tutorial's "Creating Processes" example on a wasm task: four processes, each running
one task in a worker process of its own, started and joined.

    python examples/processes.py [TASKS_DIR]
"""

import wasmpool
from _tasks import tasks_dir

if __name__ == "__main__":
    sleep = wasmpool.load(tasks_dir() / "sleep.wasm").task("sleep")
    processes = []
    for i in range(4):
        p = wasmpool.Process(target=sleep, args=(200,))
        processes.append(p)
        p.start()
        print(f"Worker {i} started (pid {p.pid})")

    for i, p in enumerate(processes):
        p.join()
        print(f"Worker {i} finished: exit code {p.exitcode}, slept {p.result()} ms")
    print("All workers finished")
