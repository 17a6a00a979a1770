"""The tutorial's "Map vs. Apply" and "starmap" examples on wasm tasks: map, apply,
apply_async, map_async and starmap.

    python examples/map_apply.py [TASKS_DIR]
"""

import wasmpool
from _tasks import tasks_dir

if __name__ == "__main__":
    tasks = tasks_dir()
    square = wasmpool.load(tasks / "square.wasm").task("square")
    power = wasmpool.load(tasks / "power.wasm").task("power")

    with wasmpool.Pool(processes=4) as pool:
        result_map = pool.map(square, [1, 2, 3, 4, 5])
        print(f"Map result: {result_map}")

        result_apply = pool.apply(power, args=(10, 2))
        print(f"Apply result: {result_apply}")

        async_result = pool.apply_async(power, args=(30, 2))
        print(f"Async result: {async_result.get(timeout=5)}")

        async_map = pool.map_async(square, [6, 7, 8, 9, 10])
        print(f"Async map result: {async_map.get()}")

        results = pool.starmap(power, [(2, 3), (3, 2), (4, 4), (5, 2)])
        print(f"Starmap result: {results}")  # [8, 9, 256, 25]
        assert results == [8, 9, 256, 25]
