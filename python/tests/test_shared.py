"""Shared state between tasks (issue 20's `pool.Value`, `pool.Queue`, `pool.Lock`, `pool.dict`,
and `pool.Array`, `pool.Pipe`), through real workers, on the `shared` guest of guest-tasks/
(world `shared` in wit/tasks.wit). It is a test fixture the binary does not embed:
.ci/python.sh names the one the workspace build made in WASMPOOL_TEST_SHARED; without it (and
without a workspace build next to this checkout) these tests are skipped, with a warning."""

import os
import queue
import threading
import time
import warnings

import pytest

import wasmpool
from _fixtures import find_shared


SHARED = find_shared()
if not SHARED or not os.path.exists(SHARED):
    warnings.warn("WASMPOOL_TEST_SHARED does not name shared.wasm (.ci/python.sh sets it): "
                  "the shared-state tests are skipped")
pytestmark = pytest.mark.skipif(
    not SHARED or not os.path.exists(SHARED),
    reason="WASMPOOL_TEST_SHARED does not name shared.wasm (.ci/python.sh sets it)",
)


@pytest.fixture(scope="module")
def shared():
    return wasmpool.load(SHARED)


def test_two_tasks_of_locked_increments_add_up(shared):
    with wasmpool.Pool(processes=2) as pool:
        counter = pool.Value("counter", 0)
        lock = pool.Lock("lock")
        increment = shared.task("locked-increment").with_grants(shared=[counter, lock])
        runs = [pool.apply_async(increment, ("lock", "counter", 100_000)) for _ in range(2)]
        last = sorted(r.get(timeout=60) for r in runs)
        assert counter.value == 200_000
        assert last[-1] == 200_000
        assert not lock.locked()

        # Under the value's own lock (Python's get_lock()), and by atomic adds.
        for export in ("own-lock-increment", "atomic-add"):
            task = shared.task(export, shared=[counter])
            runs = [pool.apply_async(task, ("counter", 50_000)) for _ in range(2)]
            for r in runs:
                r.get(timeout=60)
        assert counter.value == 400_000

        # The host takes the same lock as the tasks.
        with counter.get_lock():
            counter.value += 1
        assert counter.value == 400_001
        assert counter.add(-1) == 400_000


def test_values_and_arrays_from_the_host(shared):
    with wasmpool.Pool(processes=2) as pool:
        total = pool.Value("total", 0.5)
        assert total.typecode == "d" and total.value == 0.5
        add = shared.task("float-add", shared=[total])
        for r in [pool.apply_async(add, ("total", 0.25, 1000)) for _ in range(2)]:
            r.get(timeout=60)
        assert total.value == 500.5
        n = pool.Value("n", 7)
        with pytest.raises(TypeError):
            n.value = 1.5
        n.value = 9
        assert n.compare_and_swap(9, 10) == 9 and n.value == 10

        hist = pool.Array("hist", 10)
        assert len(hist) == 10 and hist.typecode == "q"
        histogram = shared.task("histogram", shared=[hist])
        halves = [pool.apply_async(histogram, ("hist", list(range(i, i + 500))))
                  for i in (0, 500)]
        assert [h.get(timeout=60) for h in halves] == [10, 10]
        assert hist.tolist() == [100] * 10

        squares = pool.Array("squares", [1, 4, 9])
        write = shared.task("array-write", shared={"a": squares})
        read = shared.task("array-read", shared={"a": squares})
        pool.apply(write, ("a", 1, [40, 90]))
        assert pool.apply(read, ("a",)) == [1, 40, 90]
        assert squares[-1] == 90 and squares[0:2] == [1, 40] and list(squares) == [1, 40, 90]
        squares[1:] = [5, 6]
        squares[0] = 2
        assert pool.apply(read, ("a",)) == [2, 5, 6]
        assert squares.add(0, 3) == 5
        with pytest.raises(IndexError):
            squares[3]
        with pytest.raises(ValueError):
            squares[0:2] = [1]
        with squares.get_lock():
            squares[0] = squares[0] + 1
        assert squares[0] == 6

        scale = pool.Array("f", [1, 2.5])
        assert scale.typecode == "d"
        assert pool.apply(shared.task("float-array-scale", shared=[scale]), ("f", 2.0)) == \
            [2.0, 5.0]
        assert scale.tolist() == [2.0, 5.0]
        assert pool.Array("z", 2, "d").tolist() == [0.0, 0.0]


def test_queue_producers_and_consumers_in_different_workers_take_every_item_once(shared):
    with wasmpool.Pool(processes=4) as pool:
        jobs = pool.Queue("jobs")
        produce = shared.task("produce", shared=[jobs], timeout=60)
        consume = shared.task("consume", shared=[jobs], timeout=60)
        consumers = [pool.apply_async(consume, ("jobs", 5_000)) for _ in range(2)]
        producers = [pool.apply_async(produce, ("jobs", i * 5_000, 5_000)) for i in range(2)]
        for p in producers:
            p.get(timeout=60)
        got = sorted(x for c in consumers for x in c.get(timeout=60))
        assert got == list(range(10_000))
        assert jobs.empty() and jobs.qsize() == 0

        # The host puts (JSON: the guest reads decimal text) and closes; a task drains.
        for i in range(3):
            jobs.put(i)
        jobs.close()
        with pytest.raises(wasmpool.Closed, match="no more puts"):
            jobs.put(3)
        assert pool.apply(shared.task("consume-all", shared=[jobs]), ("jobs",)) == [0, 1, 2]
        with pytest.raises(wasmpool.Closed):
            jobs.get(timeout=1)
        with pytest.raises(EOFError):
            jobs.get_nowait()


def test_queue_from_the_host(shared):
    with wasmpool.Pool(processes=1) as pool:
        q = pool.Queue("q")
        q.put({"n": 1, "tags": ["a"]})
        q.put_bytes(b"\xff\x00")
        q.put("text")
        assert q.qsize() == 3 and q.items() == [{"n": 1, "tags": ["a"]}, b"\xff\x00", "text"]
        assert q.get() == {"n": 1, "tags": ["a"]}
        assert q.get_bytes() == b"\xff\x00"
        assert q.get_nowait() == "text"
        start = time.monotonic()
        with pytest.raises(queue.Empty):
            q.get(timeout=0.2)
        assert 0.15 < time.monotonic() - start < 5
        with pytest.raises(wasmpool.Empty):
            q.get(block=False)
        with pytest.raises(TypeError):
            q.put(b"bytes are not JSON")
        with pytest.raises(ValueError, match="larger than"):
            q.put_bytes(b"x" * (5 << 20), timeout=0.2)
        # A task puts decimal text, read back as its JSON number.
        pool.apply(shared.task("produce", shared=[q]), ("q", 41, 2))
        assert [q.get(timeout=5), q.get(timeout=5)] == [41, 42]

        bounded = pool.Queue("bounded", maxsize=2)
        assert bounded.maxsize == 2
        bounded.put(1)
        bounded.put_nowait(2)
        assert bounded.full()
        with pytest.raises(queue.Full):
            bounded.put(3, timeout=0.1)
        with pytest.raises(wasmpool.Full):
            bounded.put_nowait(3)
        assert bounded.get() == 1
        bounded.put(3)
        assert pool.apply(shared.task("queue-len", shared=[bounded]), ("bounded",)) == 2


def test_a_pipe_carries_messages_in_order(shared):
    with wasmpool.Pool(processes=2) as pool:
        a, b = pool.Pipe("p")
        assert (a.name, b.name) == ("p.a", "p.b")
        receive = pool.apply_async(shared.task("pipe-receive", shared=[b]), ("p.b",))
        pool.apply(shared.task("pipe-send", shared=[a]), ("p.a", ["hello", "from", "a"]))
        assert receive.get(timeout=30) == ["hello", "from", "a"]

        # The host at one end, a task at the other: bytes, and JSON, echoed in order.
        host, task_end = pool.Pipe("echo")
        echo = pool.apply_async(shared.task("pipe-echo", shared=[task_end]), ("echo.b", 4))
        for i in range(3):
            host.send_bytes(bytes([i]))
            assert host.recv_bytes(timeout=10) == bytes([i])
        host.send({"last": [1, 2]})
        assert host.recv(timeout=10) == {"last": [1, 2]}
        echo.get(timeout=30)

        # A task sends and closes; the host receives in order, then the end.
        x, y = pool.Pipe("q")
        pool.apply(shared.task("pipe-send", shared=(x, y)), ("q.a", ["1", "two", "[3]"]))
        assert [y.recv(timeout=5) for _ in range(3)] == [1, "two", [3]]
        with pytest.raises(EOFError):
            y.recv(timeout=5)
        with pytest.raises(wasmpool.TimeoutError):
            x.recv(timeout=0.1)


def test_dict_entries_and_increment(shared):
    with wasmpool.Pool(processes=2) as pool:
        d = pool.dict("d")
        pool.apply(shared.task("dict-set", shared=[d]), ("d", "greeting", "hi"))
        # The task stored raw UTF-8 (not JSON): it reads back as its text.
        assert d["greeting"] == "hi" and d.get_bytes("greeting") == b"hi"
        d["n"] = 40
        count = shared.task("dict-count", shared=[d])
        runs = [pool.apply_async(count, ("d", "n", 100)) for _ in range(2)]
        assert max(r.get(timeout=60) for r in runs) == 240
        assert d["n"] == 240 and d.get_bytes("n") == b"240"
        d["obj"] = {"a": [1, None]}
        assert pool.apply(shared.task("dict-get", shared=[d]), ("d", "obj")) == '{"a":[1,null]}'
        assert pool.apply(shared.task("dict-get", shared=[d]), ("d", "missing")) is None
        assert pool.apply(shared.task("dict-keys", shared=[d]), ("d",)) == \
            ["greeting", "n", "obj"]
        assert d.keys() == ["greeting", "n", "obj"] and list(d) == d.keys()
        assert len(d) == 3 and "n" in d and "nope" not in d and 1 not in d
        assert d.items()[1] == ("n", 240)
        assert d.get("nope", 5) == 5
        del d["greeting"]
        with pytest.raises(KeyError):
            del d["greeting"]
        with pytest.raises(KeyError):
            d["greeting"]
        assert d.pop("obj") == {"a": [1, None]} and d.pop("obj", None) is None
        d.update({"x": 1}, y=[2])
        assert d.setdefault("x", 9) == 1 and d.setdefault("w", 9) == 9
        d.set_bytes("raw", b"\x00\xff")
        assert d["raw"] == b"\x00\xff"
        assert d.copy() == {"n": 240, "x": 1, "y": [2], "w": 9, "raw": b"\x00\xff"}


def test_a_name_not_granted_is_refused(shared):
    with wasmpool.Pool(processes=1) as pool:
        counter = pool.Value("counter", 7)
        open_value = shared.task("open-value")
        with pytest.raises(wasmpool.GuestError) as caught:
            pool.apply(open_value, ("counter",))
        assert caught.value.value == "not-granted(counter)"
        # Granted under another name: reachable by that name only.
        aliased = open_value.with_grants(shared={"c": counter})
        assert pool.apply(aliased, ("c",)) == 7
        with pytest.raises(wasmpool.GuestError, match=r"not-granted\(counter\)"):
            pool.apply(aliased, ("counter",))
        # A lock granted as a value is not a value.
        lock = pool.Lock("l")
        with pytest.raises(wasmpool.GuestError):
            pool.apply(open_value.with_grants(shared=[lock]), ("l",))
        # Another pool's object is refused before anything runs.
        with wasmpool.Pool(processes=1) as other:
            theirs = other.Value("counter", 1)
            with pytest.raises(wasmpool.SandboxError):
                pool.apply(open_value.with_grants(shared=[theirs]), ("counter",))
        # What is not a shared object, or an object's own lock, is not granted.
        with pytest.raises(TypeError):
            open_value.with_grants(shared=["counter"])
        with pytest.raises(TypeError):
            open_value.with_grants(shared=[counter.get_lock()])
        # One name, one object.
        with pytest.raises(wasmpool.Error) as caught:
            pool.Value("counter", 0)
        assert caught.value.kind == "shared"


def test_pool_wide_grants_reach_tasks_without_their_own(shared):
    with wasmpool.Pool(processes=1) as pool:
        counter = pool.Value("counter", 3)
        other = pool.Value("other", 4)
        open_value = shared.task("open-value")
        pool.share(counter, {"o": other})
        assert pool.apply(open_value, ("counter",)) == 3
        assert pool.map(open_value, ["counter", "o"]) == [3, 4]
        assert list(pool.imap(open_value, ["o"])) == [4]
        # A task's own grants replace the pool's.
        own = open_value.with_grants(shared={"c": counter})
        with pytest.raises(wasmpool.GuestError):
            pool.apply(own, ("o",))
    with wasmpool.Executor(max_workers=1) as ex:
        v = ex.Value("v", 11)
        ex.share(v)
        assert ex.submit(shared.task("open-value"), "v").result(timeout=30) == 11
        assert list(ex.map(shared.task("open-value"), ["v"])) == [11]


def test_a_lock_held_by_a_trapping_task_is_abandoned(shared):
    with wasmpool.Pool(processes=1) as pool:
        lock = pool.Lock("l")
        with pytest.raises(wasmpool.Trap):
            pool.apply(shared.task("hold-lock-and-trap", shared=[lock]), ("l",))
        assert lock.acquire(timeout=5)
        assert lock.abandoned
        lock.release()
        assert lock.acquire(timeout=5) and not lock.abandoned
        lock.release()
        with pytest.raises(ValueError):
            lock.release()
        # Held by the host, a task waits for it; then tasks see it as not abandoned.
        abandoned = shared.task("lock-abandoned", shared=[lock])
        with lock:
            assert lock.locked()
            assert not lock.acquire(timeout=0.05)
            with pytest.raises(wasmpool.GuestError):
                pool.apply(abandoned, ("l", 50))
        assert pool.apply(abandoned, ("l", 1000)) is False


def test_waits_release_the_gil(shared):
    with wasmpool.Pool(processes=1) as pool:
        q = pool.Queue("q")
        lock = pool.Lock("l")
        ticks = []
        stop = threading.Event()

        def tick():
            while not stop.is_set():
                ticks.append(1)
                time.sleep(0.005)

        t = threading.Thread(target=tick)
        t.start()
        try:
            with pytest.raises(queue.Empty):
                q.get(timeout=0.3)
            during_get = len(ticks)
            with lock:
                waiter = threading.Thread(target=lambda: lock.acquire(timeout=0.3))
                waiter.start()
                waiter.join()
        finally:
            stop.set()
            t.join()
        assert during_get > 10, "the thread did not run while the host waited on the queue"
