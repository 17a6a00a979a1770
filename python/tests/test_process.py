"""Process: one task in a worker process of its own."""

import os
import signal
import time

import pytest

import wasmpool
from conftest import alive


def test_start_join_exitcode(tasks):
    p = wasmpool.Process(tasks.square, (9,))
    assert p.exitcode is None and not p.is_alive()
    p.start()
    p.join(timeout=10)
    assert not p.is_alive()
    assert p.exitcode == 0
    assert p.result() == 81


def test_target_keyword_and_kwargs(tasks):
    p = wasmpool.Process(target=tasks.power, args=(2,), kwargs={"exponent": 6})
    p.start()
    assert p.result(timeout=10) == 64


def test_is_alive_while_it_runs_and_join_timeout(tasks):
    p = wasmpool.Process(tasks.sleep, (400,))
    p.start()
    assert p.is_alive()
    assert p.pid is not None and alive(p.pid)
    p.join(timeout=0.05)
    assert p.is_alive() and p.exitcode is None
    p.join()
    assert p.exitcode == 0


def test_a_failure_is_exit_code_1(tasks):
    p = wasmpool.Process(tasks.maybe_crash, (5,))
    p.start()
    p.join()
    assert p.exitcode == 1
    with pytest.raises(wasmpool.Trap):
        p.result()


def test_kill_is_minus_9(tasks):
    p = wasmpool.Process(tasks.sleep, (5000,))
    p.start()
    time.sleep(0.1)
    p.kill()
    p.join(timeout=10)
    assert p.exitcode == -signal.SIGKILL
    with pytest.raises(wasmpool.WorkerCrashed) as e:
        p.result()
    assert e.value.signal == signal.SIGKILL


def test_bad_arguments_fail_at_once(tasks):
    with pytest.raises(wasmpool.BadInput):
        wasmpool.Process(tasks.square, ("x",))
    with pytest.raises(TypeError):
        wasmpool.Process()
