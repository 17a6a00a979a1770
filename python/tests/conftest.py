"""Fixtures of the wasmpool Python suite: real workers (the wheel's `wasmpool` binary) and
real wasm, the built-in tasks the binary writes out (`wasmpool tasks --export DIR`)."""

import os
import subprocess

import pytest

import wasmpool


@pytest.fixture(scope="session")
def tasks_dir(tmp_path_factory):
    """A directory of the built-in tasks: square.wasm, power.wasm, records.wasm..."""
    given = os.environ.get("WASMPOOL_TEST_TASKS")
    if given:
        return given
    out = tmp_path_factory.mktemp("tasks")
    subprocess.run([wasmpool.worker_binary(), "tasks", "--export", str(out)], check=True,
                   stdout=subprocess.DEVNULL)
    return str(out)


@pytest.fixture(scope="session")
def wasm(tasks_dir):
    """The path of a built-in task's module: ``wasm("square")``."""
    def path(name):
        for ext in (".wasm", ".wat"):
            p = os.path.join(tasks_dir, name + ext)
            if os.path.exists(p):
                return p
        raise FileNotFoundError(name)
    return path


@pytest.fixture(scope="session")
def tasks(wasm):
    """The tasks the suite uses, loaded once."""
    class Tasks:
        square = wasmpool.load(wasm("square")).task("square")
        slow_square = wasmpool.load(wasm("square")).task("slow-square")
        power = wasmpool.load(wasm("power")).task("power")
        primes = wasmpool.load(wasm("primes")).task("count-primes-range")
        sleep = wasmpool.load(wasm("sleep")).task("sleep")
        records = wasmpool.load(wasm("records"))
        words = wasmpool.load(wasm("words"))
        parse_int = wasmpool.load(wasm("fallible")).task("parse-int")
        process_item = wasmpool.load(wasm("fallible")).task("process-item")
        maybe_crash = wasmpool.load(wasm("trap")).task("maybe-crash")
        panic = wasmpool.load(wasm("trap")).task("panic")
        divide = wasmpool.load(wasm("trap")).task("divide")
        hello = wasmpool.load(wasm("hello")).task("hello")
        arith = wasmpool.load(wasm("arith"))
        program = wasmpool.load(wasm("program")).program()
    return Tasks


@pytest.fixture
def pool():
    with wasmpool.Pool(processes=2) as p:
        yield p


def alive(pid):
    """Whether a process exists and is not a zombie."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def worker_processes(parent=None):
    """The pids of the `wasmpool worker` processes of this package's binary (other programs'
    workers on the machine are not counted), or only the children of `parent`."""
    ours = os.path.realpath(wasmpool.worker_binary())
    pids = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                argv = f.read().split(b"\0")
            exe = os.path.realpath(f"/proc/{entry}/exe")
            with open(f"/proc/{entry}/stat") as f:
                ppid = int(f.read().rsplit(")", 1)[1].split()[1])
        except OSError:
            continue
        if exe != ours or len(argv) < 2 or argv[1] != b"worker":
            continue
        if parent is not None and ppid != parent:
            continue
        if alive(int(entry)):
            pids.append(int(entry))
    return pids
