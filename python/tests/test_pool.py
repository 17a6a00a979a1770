"""Pool: multiprocessing.Pool's methods and meanings, on real workers and real wasm."""

import itertools
import multiprocessing
import threading
import time

import pytest

import wasmpool
from conftest import alive


def test_map_is_in_order_for_every_chunksize(pool, tasks):
    assert pool.map(tasks.square, range(1000)) == [i * i for i in range(1000)]
    assert pool.map(tasks.square, range(100), chunksize=7) == [i * i for i in range(100)]
    assert pool.map(tasks.square, (i for i in range(10)), 1) == [i * i for i in range(10)]
    assert pool.map(tasks.square, []) == []


def test_map_raises_the_first_error_in_input_order(pool, tasks):
    with pytest.raises(wasmpool.BadInput) as e:
        pool.map(tasks.square, [1, 2, "three", 4, "five"])
    assert 'got "three"' in str(e.value)


def test_map_async_is_an_async_result(pool, tasks):
    slow = pool.starmap_async(tasks.slow_square, [(i, 200) for i in range(2)])
    assert not slow.ready()
    with pytest.raises(ValueError):
        slow.successful()
    with pytest.raises(multiprocessing.TimeoutError):
        slow.get(timeout=0.01)
    slow.wait()
    assert slow.ready() and slow.successful()
    assert slow.get() == [0, 1]


def test_map_async_callbacks(pool, tasks):
    got, errors = [], []
    done = threading.Event()
    pool.map_async(tasks.square, range(5), callback=lambda v: (got.append(v), done.set()))
    assert done.wait(10)
    assert got == [[0, 1, 4, 9, 16]]
    failed = threading.Event()
    r = pool.map_async(tasks.square, ["x"], error_callback=lambda e: (errors.append(e), failed.set()))
    assert failed.wait(10)
    assert isinstance(errors[0], wasmpool.BadInput)
    with pytest.raises(wasmpool.BadInput):
        r.get()
    assert not r.successful()


def test_starmap_spreads_tuples(pool, tasks):
    assert pool.starmap(tasks.power, [(2, 3), (3, 2), (4, 4), (5, 2)]) == [8, 9, 256, 25]
    assert pool.starmap(tasks.power, [(2, 10)] * 50, chunksize=3) == [1024] * 50
    assert pool.starmap_async(tasks.power, [(2, 0)]).get() == [1]


def test_apply_and_apply_async(pool, tasks):
    assert pool.apply(tasks.power, (10, 2)) == 100
    assert pool.apply(tasks.power, kwds={"base": 3, "exponent": 3}) == 27
    assert pool.apply(tasks.power, (2,), {"exponent": 5}) == 32
    r = pool.apply_async(tasks.square, (7,))
    assert r.get(timeout=5) == 49
    assert r.ready() and r.successful()
    assert isinstance(r, wasmpool.AsyncResult)


def test_apply_async_callback_runs_before_get_returns(pool, tasks):
    seen = []
    r = pool.apply_async(tasks.square, (12,), callback=seen.append)
    assert r.get() == 144
    assert seen == [144]
    errs = []
    r = pool.apply_async(tasks.square, ("x",), error_callback=errs.append)
    with pytest.raises(wasmpool.BadInput):
        r.get()
    assert isinstance(errs[0], wasmpool.BadInput)


def test_apply_async_get_timeout(pool, tasks):
    r = pool.apply_async(tasks.sleep, (300,))
    with pytest.raises(multiprocessing.TimeoutError):
        r.get(timeout=0.05)
    assert r.get(timeout=5) >= 300


def test_imap_is_lazy_and_ordered(pool, tasks):
    pulled = []

    def source():
        for i in itertools.count():  # endless: only a lazy imap can take from it
            pulled.append(i)
            yield i

    it = pool.imap(tasks.square, source())
    assert list(itertools.islice(it, 100)) == [i * i for i in range(100)]
    assert len(pulled) < 50_000
    del it
    assert list(pool.imap(tasks.square, range(300))) == [i * i for i in range(300)]
    assert list(pool.imap(tasks.square, [])) == []


def test_imap_unordered_yields_as_tasks_finish(pool, tasks):
    assert list(pool.imap_unordered(tasks.square, [])) == []
    got = list(pool.imap_unordered(tasks.square, range(50), chunksize=4))
    assert sorted(got) == [i * i for i in range(50)]
    sleepy = list(pool.imap_unordered(tasks.sleep, [400, 10]))
    assert sleepy[0] < 400 <= sleepy[1]


def test_imap_raises_each_error_at_its_place(pool, tasks):
    it = pool.imap(tasks.square, [1, "two", 3])
    assert next(it) == 1
    with pytest.raises(wasmpool.BadInput):
        next(it)
    assert next(it) == 9
    with pytest.raises(StopIteration):
        next(it)


def test_imap_next_timeout(pool, tasks):
    it = pool.imap(tasks.sleep, [500])
    with pytest.raises(multiprocessing.TimeoutError):
        it.next(timeout=0.05)
    assert it.next(timeout=5) >= 500


def test_imap_of_an_iterator_that_raises(pool, tasks):
    def source():
        yield 1
        raise RuntimeError("the input broke")

    it = pool.imap(tasks.square, source())
    assert next(it) == 1
    with pytest.raises(RuntimeError, match="the input broke"):
        next(it)


def test_close_join_terminate(tasks):
    pool = wasmpool.Pool(processes=2)
    assert pool.map(tasks.square, range(4)) == [0, 1, 4, 9]
    pids = pool.worker_pids()
    assert len(pids) >= 1 and all(alive(p) for p in pids)
    with pytest.raises(ValueError, match="still running"):
        pool.join()
    r = pool.apply_async(tasks.sleep, (100,))
    pool.close()
    with pytest.raises(ValueError, match="not running"):
        pool.apply(tasks.square, (1,))
    pool.join()
    assert r.get() >= 100  # queued work finished
    assert not any(alive(p) for p in pids)


def test_terminate_cancels_pending_work(tasks):
    pool = wasmpool.Pool(processes=1)
    running = pool.apply_async(tasks.sleep, (2000,))
    deadline = time.monotonic() + 10
    while not running._native.running():
        assert time.monotonic() < deadline
        time.sleep(0.005)
    queued = pool.apply_async(tasks.square, (3,))
    pids = pool.worker_pids()
    start = time.monotonic()
    pool.terminate()
    assert time.monotonic() - start < 1.5
    for r in (running, queued):
        with pytest.raises(wasmpool.Cancelled):
            r.get(timeout=5)
    assert not any(alive(p) for p in pids)


def test_context_manager_terminates_and_leaves_no_worker(tasks):
    with wasmpool.Pool(processes=2) as pool:
        pool.map(tasks.square, range(100), chunksize=1)
        pids = pool.worker_pids()
        assert pids
    assert not any(alive(p) for p in pids)
    with pytest.raises(ValueError):
        pool.map(tasks.square, [1])


def test_a_python_function_is_refused(pool):
    with pytest.raises(TypeError, match="wasmpool.Task"):
        pool.map(lambda x: x * x, [1])
    with pytest.raises(ValueError):
        wasmpool.Pool(processes=0)
    with pytest.raises(ValueError):
        pool.map(None, [1], chunksize=0)


def test_pool_load_is_load(pool, wasm):
    module = pool.load(wasm("power"))
    assert isinstance(module, wasmpool.Module)
    assert module.kind == "component"
    assert "power: func(base: s64, exponent: u32) -> s64" in module.exports
    task = module.task("power")
    assert task.name == "power"
    assert task.params == [("base", "s64"), ("exponent", "u32")]
    assert task.results == ["s64"]
    assert pool.apply(task, (2, 8)) == 256


def test_instance_reuse_and_batched(pool, tasks, wasm):
    fast = tasks.square.with_instance_reuse()
    assert pool.map(fast, range(500)) == [i * i for i in range(500)]
    many = wasmpool.load(wasm("square")).task("square-many").batched()
    assert pool.map(many, range(1000)) == [i * i for i in range(1000)]


def test_maxtasksperchild_replaces_workers(tasks):
    with wasmpool.Pool(processes=1, maxtasksperchild=2) as pool:
        pids = set()
        for i in range(6):
            assert pool.apply(tasks.square, (i,)) == i * i
            pids.update(pool.worker_pids())
        assert len(pids) >= 2


def test_an_endless_imap_stops_pulling_when_dropped_or_terminated(tasks):
    for how in ("drop", "terminate"):
        pool = wasmpool.Pool(processes=2)
        pulled = []

        def source():
            for i in itertools.count():
                pulled.append(i)
                yield i

        it = pool.imap_unordered(tasks.square, source())
        assert len(list(itertools.islice(it, 50))) == 50
        if how == "drop":
            del it
        else:
            pool.terminate()
        time.sleep(0.3)
        settled = len(pulled)
        time.sleep(0.3)
        assert len(pulled) == settled, how
        pool.terminate()
