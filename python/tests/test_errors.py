"""Exceptions: one class per way a task fails, under wasmpool.TaskError, raised from get() and
result(); limits and grants as keyword arguments, per pool and per task; killed workers."""

import os
import signal
import threading
import time

import pytest

import wasmpool

ALL_TASK_ERRORS = [
    wasmpool.Trap, wasmpool.GuestError, wasmpool.BadInput, wasmpool.ArgsTooLarge,
    wasmpool.Timeout, wasmpool.OutOfFuel, wasmpool.MemoryLimit, wasmpool.TableLimit,
    wasmpool.StackOverflow, wasmpool.ResultTooLarge, wasmpool.OutputLimit,
    wasmpool.BatchLength, wasmpool.SandboxError, wasmpool.WorkerCrashed, wasmpool.Cancelled,
    wasmpool.PoolClosed, wasmpool.ResultType, wasmpool.InternalError,
]


def test_one_base():
    for cls in ALL_TASK_ERRORS:
        assert issubclass(cls, wasmpool.TaskError)
        assert issubclass(cls, wasmpool.WasmpoolError)
    assert not issubclass(wasmpool.Error, wasmpool.TaskError)


def test_trap_with_panic_message(pool, tasks):
    with pytest.raises(wasmpool.Trap) as e:
        pool.apply(tasks.maybe_crash, (5,))
    assert e.value.func == "maybe-crash" and e.value.kind == "trap"
    with pytest.raises(wasmpool.Trap) as e:
        pool.apply(tasks.panic, ("the guest gave up",))
    assert "the guest gave up" in e.value.panic
    assert "panicked" in str(e.value)
    # A trap fails that task alone.
    assert pool.map(tasks.maybe_crash, [1, 2]) == [1, 4]


def test_guest_error_carries_the_value(pool, tasks):
    with pytest.raises(wasmpool.GuestError) as e:
        pool.apply(tasks.parse_int, ("12x",))
    assert e.value.value == "not an integer: 12x"
    assert str(e.value) == "`parse-int` returned an error: not an integer: 12x"
    assert pool.apply(tasks.process_item, (4,)) == (4, 16)
    with pytest.raises(wasmpool.GuestError) as e:
        pool.apply(tasks.process_item, (3,))
    assert e.value.value == "processing failed for item 3"


def test_bad_input_messages_are_the_librarys(pool, tasks):
    with pytest.raises(wasmpool.BadInput) as e:
        pool.apply(tasks.square, ("seven",))
    assert str(e.value) == 'bad input for `square`: parameter `x`: expected s64, got "seven"'
    assert e.value.param == "x"
    assert isinstance(e.value, TypeError)
    with pytest.raises(wasmpool.BadInput, match=r"expected 2 arguments \(base: s64, exponent: u32\), got 1"):
        pool.apply(tasks.power, (2,))
    with pytest.raises(wasmpool.BadInput, match="use starmap"):
        pool.map(tasks.power, [(2, 3)])
    with pytest.raises(wasmpool.BadInput, match="expected u32, got -1"):
        pool.apply(tasks.power, (2, -1))
    with pytest.raises(wasmpool.BadInput, match="does not fit in 64 bits"):
        pool.apply(tasks.square, (2 ** 70,))
    with pytest.raises(wasmpool.BadInput, match="a Python object cannot be passed"):
        pool.apply(tasks.square, (object(),))
    with pytest.raises(wasmpool.BadInput, match="missing: exponent"):
        pool.apply(tasks.power, kwds={"base": 2})


def test_timeout_per_pool_and_per_task(tasks):
    with wasmpool.Pool(processes=1, timeout=0.3) as pool:
        start = time.monotonic()
        with pytest.raises(wasmpool.Timeout) as e:
            pool.apply(tasks.sleep, (5000,))
        assert time.monotonic() - start < 3
        assert e.value.limit == pytest.approx(0.3)
        assert isinstance(e.value, wasmpool.LimitExceeded)
        assert pool.apply(tasks.square, (3,)) == 9  # the pool goes on
    with wasmpool.Pool(processes=1) as pool:
        strict = tasks.sleep.with_limits(timeout=0.2)
        with pytest.raises(wasmpool.Timeout):
            pool.apply(strict, (5000,))
        assert pool.apply(tasks.sleep, (10,)) >= 10


def test_timeout_of_a_spinning_core_module(pool, tasks):
    spin = tasks.arith.task("spin", timeout=0.2)
    with pytest.raises(wasmpool.Timeout):
        pool.apply(spin, ())


def test_out_of_fuel(tasks):
    with wasmpool.Pool(processes=1, fuel=10_000) as pool:
        with pytest.raises(wasmpool.OutOfFuel) as e:
            pool.apply(tasks.primes, (0, 200_000))
        assert e.value.limit == 10_000
    with wasmpool.Pool(processes=1) as pool:
        assert pool.apply(tasks.primes, (0, 1000)) == 168
        with pytest.raises(wasmpool.OutOfFuel):
            pool.apply(tasks.primes.with_limits(fuel=1000), (0, 200_000))


def test_memory_limit(tasks):
    text = "word " * 2_000_000  # 10 MB of text: the guest's memory must grow past 4 MiB
    with wasmpool.Pool(processes=1, max_memory="4M") as pool:
        with pytest.raises(wasmpool.MemoryLimit) as e:
            pool.apply(tasks.words.task("count-words"), (text,))
        assert e.value.limit == 4 << 20
        assert "4 MiB" in str(e.value)
        assert pool.apply(tasks.words.task("count-words"), ("a b c",)) == 3


def test_sizes_are_parsed():
    for bad in ("lots", "-1M", True):
        with pytest.raises((ValueError, TypeError)):
            wasmpool.Pool(max_memory=bad)
    with pytest.raises(ValueError):
        wasmpool.Pool(timeout=0)


def test_output_limit(tasks):
    with wasmpool.Pool(processes=1, max_output=4) as pool:
        with pytest.raises(wasmpool.OutputLimit):
            pool.apply(tasks.hello, ("a name longer than four bytes",))


def test_result_too_large(tasks):
    with wasmpool.Pool(processes=1, max_result=16) as pool:
        with pytest.raises(wasmpool.ResultTooLarge):
            pool.apply(tasks.hello, ("a name long enough to pass sixteen bytes",))


def test_a_grant_of_a_missing_directory_is_refused():
    with pytest.raises(wasmpool.Error, match="grant"):
        wasmpool.Pool(dirs={"/no/such/dir/anywhere": "/data"})
    with pytest.raises(ValueError):
        wasmpool.Pool(dirs=["no-separator"])


def _kill_a_worker_soon(pool, delay=0.3):
    def kill():
        time.sleep(delay)
        for pid in pool.worker_pids():
            os.kill(pid, signal.SIGKILL)
    t = threading.Thread(target=kill)
    t.start()
    return t


def test_killed_worker_is_worker_crashed_and_the_pool_goes_on(tasks):
    with wasmpool.Pool(processes=1) as pool:
        pool.apply(tasks.square, (1,))
        old = pool.worker_pids()
        r = pool.apply_async(tasks.sleep, (3000,))
        t = _kill_a_worker_soon(pool)
        with pytest.raises(wasmpool.WorkerCrashed) as e:
            r.get(timeout=10)
        t.join()
        assert e.value.signal == signal.SIGKILL
        assert e.value.pid in old
        assert e.value.attempts == 1
        assert "SIGKILL" in str(e.value)
        # Replaced: the next task runs on a new worker.
        assert pool.map(tasks.square, range(10)) == [i * i for i in range(10)]
        assert set(pool.worker_pids()).isdisjoint(old)


def test_killed_worker_is_retried(tasks):
    with wasmpool.Pool(processes=1, retries=1) as pool:
        pool.apply(tasks.square, (1,))
        r = pool.apply_async(tasks.sleep, (1000,))
        t = _kill_a_worker_soon(pool, 0.2)
        assert r.get(timeout=20) >= 1000
        t.join()


def test_load_errors(tmp_path, wasm):
    garbage = tmp_path / "garbage.wasm"
    garbage.write_bytes(b"\0asm this is not wasm")
    with pytest.raises(wasmpool.InvalidModule) as e:
        wasmpool.load(garbage)
    assert e.value.kind == "invalid-module"
    with pytest.raises(wasmpool.Error, match="cannot read"):
        wasmpool.load(tmp_path / "missing.wasm")
    with pytest.raises(wasmpool.NoSuchExport, match="its exports are"):
        wasmpool.load(wasm("square")).task("cube")
    with pytest.raises(LookupError):
        wasmpool.load(wasm("square")).task("cube")
