"""Remote workers from Python (`hosts=`, `launcher=`, `local=`, `remote_bin=`): launched workers
that speak the protocol over their launcher's stdin and stdout, with heartbeats, as behind
ssh or srun. The launcher here is the wheel's own binary started directly (a template without
`{host}`), so the suite needs no sshd: the pool cannot tell it from ssh, and the library's
own tests (tests/all/remote.rs) run the same code through a real sshd and Slurm."""

import os

import pytest

import wasmpool
from _fixtures import find_shared

SHARED = find_shared()


def launched(processes=2, **kwargs):
    """A pool of `processes` launched workers (and what else `kwargs` say)."""
    return wasmpool.Pool(processes, launcher=["{bin}", "worker"],
                         remote_bin=wasmpool.worker_binary(), **kwargs)


def test_a_map_over_launched_workers_and_a_local_one_is_correct_and_in_order(tasks):
    with launched(2, local=1, chunksize=7) as pool:
        assert pool.processes == 3
        assert pool.map(tasks.square, range(3000)) == [x * x for x in range(3000)]
        assert pool.apply(tasks.square, (12,)) == 144
        assert sorted(pool.starmap(tasks.power, [(2, 10), (3, 3)])) == [27, 1024]


def test_limits_and_errors_hold_on_launched_workers(tasks):
    with launched(1, timeout=0.5) as pool:
        with pytest.raises(wasmpool.Timeout):
            pool.apply(tasks.sleep, (5000,))
        # The pool goes on, on the worker relaunched in its slot.
        assert pool.apply(tasks.square, (7,)) == 49
        with pytest.raises(wasmpool.GuestError):
            pool.apply(tasks.parse_int, ("seven",))


@pytest.mark.skipif(not SHARED or not os.path.exists(SHARED),
                    reason="WASMPOOL_TEST_SHARED does not name shared.wasm")
def test_shared_objects_reach_launched_workers_through_the_host():
    shared = wasmpool.load(SHARED)
    with launched(2, local=1) as pool:
        counter = pool.Value("counter", 0)
        lock = pool.Lock("lock")
        increment = shared.task("locked-increment").with_grants(shared=[counter, lock])
        runs = [pool.apply_async(increment, ("lock", "counter", 500)) for _ in range(6)]
        for run in runs:
            run.get(timeout=120)
        assert counter.value == 3000
        assert not lock.locked()
        jobs = pool.Queue("jobs")
        for i in range(5):
            jobs.put(i)
        jobs.close()
        drain = shared.task("consume-all").with_grants(shared=[jobs])
        assert sorted(sum(pool.starmap(drain, [("jobs",), ("jobs",)]), [])) == [0, 1, 2, 3, 4]


def test_hosts_are_given_as_a_mapping_a_list_or_a_line(tasks):
    # A template that names no {host} runs once per slot of each host all the same.
    for hosts in ({"a": 1, "b": 1}, ["a:1", "b"], "a:1,b:1"):
        with wasmpool.Pool(hosts=hosts, launcher=["{bin}", "worker"],
                           remote_bin=wasmpool.worker_binary()) as pool:
            assert pool.processes == 2
            assert pool.map(tasks.square, range(10)) == [x * x for x in range(10)]


def test_remote_options_that_cannot_work_are_value_errors():
    with pytest.raises(ValueError, match="at least one worker"):
        wasmpool.Pool(hosts={"node1": 0})
    with pytest.raises(ValueError, match="give hosts or a launcher"):
        wasmpool.Pool(2, local=1)
    with pytest.raises(ValueError, match="give hosts"):
        wasmpool.Pool(2, launcher="ssh")
    with pytest.raises(ValueError, match="a launcher needs a program"):
        wasmpool.Pool(2, launcher=[])


def test_a_launcher_that_fails_is_reported_with_its_stderr():
    with pytest.raises(wasmpool.Error) as failed:
        wasmpool.Pool(1, launcher=["sh", "-c", "echo no such cluster >&2; exit 3"])
    assert "no such cluster" in str(failed.value), str(failed.value)
