"""The tutorial's "More Advanced concurrent.futures Patterns" on a wasm task: submit, then
as_completed, with failures handled per item. `process-item` sleeps (item * 37) % 100 ms
and fails for items where item % 5 == 3, deterministically.

    python examples/executor_as_completed.py [TASKS_DIR]
"""

import concurrent.futures

import wasmpool
from _tasks import tasks_dir

if __name__ == "__main__":
    process_item = wasmpool.load(tasks_dir() / "fallible.wasm").task("process-item")
    items = list(range(20))
    failed = 0
    with wasmpool.Executor(max_workers=4) as executor:
        future_to_item = {executor.submit(process_item, item): item for item in items}
        for future in concurrent.futures.as_completed(future_to_item):
            item = future_to_item[future]
            try:
                value, squared = future.result()
                print(f"Item {item} processed: {value}^2 = {squared}")
            except wasmpool.GuestError as e:
                failed += 1
                print(f"Item {item} generated an exception: {e.value}")
    assert failed == 4
