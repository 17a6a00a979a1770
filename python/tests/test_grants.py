"""Grants (deny by default) and the hostile limits, on the hostile guest of guest-tasks/: it
reads files, the environment and sockets, and exhausts memory and the stack. It is a test
fixture the binary does not embed: .ci/python.sh names the one the workspace build made in
WASMPOOL_TEST_HOSTILE; without it these tests are skipped."""

import os

import pytest

import wasmpool

HOSTILE = os.environ.get("WASMPOOL_TEST_HOSTILE")
pytestmark = pytest.mark.skipif(
    not HOSTILE or not os.path.exists(HOSTILE),
    reason="WASMPOOL_TEST_HOSTILE does not name hostile.wasm (.ci/python.sh sets it)",
)


@pytest.fixture(scope="module")
def hostile():
    return wasmpool.load(HOSTILE)


def test_no_environment_unless_granted(hostile):
    read_env = hostile.task("read-env")
    with wasmpool.Pool(processes=1) as pool:
        assert pool.apply(read_env, ()) == []
    with wasmpool.Pool(processes=1, env={"MODE": "grade"}) as pool:
        assert pool.apply(read_env, ()) == [("MODE", "grade")]
        # a task's grants replace the pool's
        assert pool.apply(read_env.with_grants(env={"A": "1"}), ()) == [("A", "1")]


def test_no_files_unless_granted(hostile, tmp_path):
    (tmp_path / "in.txt").write_text("granted text")
    read, write = hostile.task("read-file"), hostile.task("write-file")
    with wasmpool.Pool(processes=1) as pool:
        with pytest.raises(wasmpool.GuestError):
            pool.apply(read, ("/data/in.txt",))
    with wasmpool.Pool(processes=1, ro_dirs={str(tmp_path): "/data"}) as pool:
        assert pool.apply(read, ("/data/in.txt",)) == "granted text"
        with pytest.raises(wasmpool.GuestError):
            pool.apply(write, ("/data/out.txt", "no"))
        assert not (tmp_path / "out.txt").exists()
    with wasmpool.Pool(processes=1, dirs=[f"{tmp_path}::/data"]) as pool:
        assert pool.apply(write, ("/data/out.txt", "written")) is None
        assert (tmp_path / "out.txt").read_text() == "written"


def test_no_sockets(hostile):
    with wasmpool.Pool(processes=1) as pool:
        with pytest.raises(wasmpool.GuestError):
            pool.apply(hostile.task("open-socket"), ("127.0.0.1:80",))


def test_memory_bomb_and_stack_overflow(hostile):
    with wasmpool.Pool(processes=1, max_memory="32M") as pool:
        with pytest.raises(wasmpool.MemoryLimit):
            pool.apply(hostile.task("memory-bomb"), ())
        with pytest.raises(wasmpool.StackOverflow):
            pool.apply(hostile.task("stack-overflow"), (1 << 40,))
        with pytest.raises(wasmpool.OutputLimit):
            pool.apply(hostile.task("stdout-flood").with_limits(max_output="64K"), (1 << 20,))
        with pytest.raises(wasmpool.ResultTooLarge):
            pool.apply(hostile.task("huge-result").with_limits(max_result=1000), (5000,))
        assert pool.apply(hostile.task("huge-result"), (3,)) == "xxx"


def test_a_batch_export_that_breaks_its_contract(hostile):
    with wasmpool.Pool(processes=1) as pool:
        with pytest.raises(wasmpool.BatchLength) as e:
            pool.map(hostile.task("drop-last").batched(), range(10))
        assert e.value.kind == "batch-length"
