"""Executor: a concurrent.futures.Executor whose futures are real concurrent.futures.Futures."""

import concurrent.futures as cf
import threading
import time

import pytest

import wasmpool


def wait_until(condition, seconds=10):
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "timed out waiting"
        time.sleep(0.005)


@pytest.fixture
def ex():
    with wasmpool.Executor(max_workers=2) as e:
        yield e


def test_submit_returns_a_real_future(ex, tasks):
    f = ex.submit(tasks.square, 9)
    assert isinstance(f, cf.Future)
    assert f.result(timeout=5) == 81
    assert f.done() and not f.cancelled() and f.exception() is None
    assert isinstance(ex, cf.Executor)


def test_as_completed_and_wait(ex, tasks):
    futures = {ex.submit(tasks.square, i): i for i in range(200)}
    seen = {}
    for f in cf.as_completed(futures, timeout=30):
        seen[futures[f]] = f.result()
    assert seen == {i: i * i for i in range(200)}
    slow = ex.submit(tasks.sleep, 500)
    quick = ex.submit(tasks.sleep, 1)
    done, pending = cf.wait([slow, quick], return_when=cf.FIRST_COMPLETED, timeout=5)
    assert quick in done and slow in pending
    done, pending = cf.wait([slow, quick], timeout=5)
    assert not pending


def test_as_completed_order_is_completion_order(ex, tasks):
    fs = [ex.submit(tasks.sleep, ms) for ms in (600, 50)]
    first = next(cf.as_completed(fs, timeout=10))
    assert first is fs[1]


def test_exceptions_and_callbacks(ex, tasks):
    f = ex.submit(tasks.parse_int, "nope")
    assert isinstance(f.exception(timeout=5), wasmpool.GuestError)
    with pytest.raises(wasmpool.GuestError, match="not an integer: nope"):
        f.result()
    called = threading.Event()
    values = []
    g = ex.submit(tasks.square, 5)
    g.add_done_callback(lambda fut: (values.append(fut.result()), called.set()))
    assert called.wait(5) and values == [25]


def test_cancel_before_it_starts(tasks):
    with wasmpool.Executor(max_workers=1) as ex:
        blocker = ex.submit(tasks.sleep, 500)
        wait_until(blocker.running)
        queued = ex.submit(tasks.square, 3)
        assert queued.cancel()
        assert queued.cancelled()
        with pytest.raises(cf.CancelledError):
            queued.result()
        assert not blocker.cancel()  # running: too late
        assert blocker.result(timeout=5) >= 500


def test_map_in_order_with_timeout(ex, tasks):
    assert list(ex.map(tasks.square, range(100))) == [i * i for i in range(100)]
    assert list(ex.map(tasks.power, [2, 3], [10, 2])) == [1024, 9]
    results = ex.map(tasks.sleep, [1000], timeout=0.1)
    with pytest.raises(cf.TimeoutError):
        next(results)


def test_submit_with_keywords(ex, tasks):
    assert ex.submit(tasks.power, base=2, exponent=3).result() == 8
    assert ex.submit(tasks.power, 2, exponent=4).result() == 16


def test_shutdown(tasks):
    ex = wasmpool.Executor(max_workers=1)
    f = ex.submit(tasks.sleep, 100)
    ex.shutdown(wait=True)
    assert f.result() >= 100
    with pytest.raises(RuntimeError):
        ex.submit(tasks.square, 1)


def test_shutdown_cancel_futures(tasks):
    ex = wasmpool.Executor(max_workers=1)
    blocker = ex.submit(tasks.sleep, 300)
    wait_until(blocker.running)
    queued = [ex.submit(tasks.square, i) for i in range(5)]
    ex.shutdown(wait=True, cancel_futures=True)
    assert all(f.cancelled() for f in queued)


def test_executor_load(ex, wasm):
    task = ex.load(wasm("square")).task("square")
    assert ex.submit(task, 4).result() == 16


def test_a_terminated_pool_fails_new_calls_with_pool_closed(tasks):
    ex = wasmpool.Executor(max_workers=1)
    ex.pool.terminate()
    with pytest.raises(wasmpool.PoolClosed):
        ex.submit(tasks.square, 2).result(timeout=5)
    ex.shutdown()
