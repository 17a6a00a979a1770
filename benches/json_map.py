"""The Python peer of `wasmpool map` with JSON in and out: one JSON value per input line on
stdin, `Pool.map` of square over them with Python's default chunking, one JSON line per result
on stdout. `benches/pool.rs` times it against `wasmpool map builtin:square square` on the same
lines: `python3 benches/json_map.py < lines > results`."""

import json
import sys
from multiprocessing import Pool


def square(x):
    return x * x


def main():
    with Pool(int(sys.argv[1]) if len(sys.argv) > 1 else None) as pool:
        args = [json.loads(line) for line in sys.stdin if line.strip()]
        results = pool.map(square, args)
        sys.stdout.write("".join(json.dumps(r) + "\n" for r in results))


if __name__ == "__main__":
    main()
