"""imap and imap_unordered: results as a lazy stream, in order or as tasks finish. Items that
sleep longer finish later: imap_unordered yields the quick ones first.

    python examples/imap_unordered.py [TASKS_DIR]
"""

import time

import wasmpool
from _tasks import tasks_dir

if __name__ == "__main__":
    sleep = wasmpool.load(tasks_dir() / "sleep.wasm").task("sleep")
    delays = [400, 100, 300, 50, 200, 10]
    with wasmpool.Pool(processes=3) as pool:
        start = time.time()
        for elapsed in pool.imap_unordered(sleep, delays):
            print(f"a task that slept {elapsed} ms finished at {time.time() - start:.2f} s")
        print("in order:", list(pool.imap(sleep, delays)))
