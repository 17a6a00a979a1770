"""What more than one test module of the suite looks up: the test fixtures the workspace build
makes and the binary does not embed."""

import glob
import os


def find_shared():
    """The `shared` guest (world `shared`: locks, values, queues, pipes, dicts):
    $WASMPOOL_TEST_SHARED (.ci/python.sh sets it), else the newest a workspace build next to
    this checkout made, else None."""
    given = os.environ.get("WASMPOOL_TEST_SHARED")
    if given:
        return given
    root = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..")
    target = os.environ.get("CARGO_TARGET_DIR", os.path.join(root, "target"))
    found = glob.glob(os.path.join(target, "release", "build", "wasmpool-artifacts-*", "out",
                                   "guest-target", "wasm32-wasip2", "release", "shared.wasm"))
    return max(found, key=os.path.getmtime) if found else None
