"""Where the examples find their wasm: the built-in tasks, written out by the wheel's
`wasmpool` binary (`wasmpool tasks --export DIR`), or a directory named on the command line."""

import pathlib
import subprocess
import sys
import tempfile

import wasmpool


def tasks_dir() -> pathlib.Path:
    if len(sys.argv) > 1:
        return pathlib.Path(sys.argv[1])
    out = pathlib.Path(tempfile.mkdtemp(prefix="wasmpool-tasks-"))
    subprocess.run([wasmpool.worker_binary(), "tasks", "--export", str(out)], check=True,
                   stdout=subprocess.DEVNULL)
    return out
