"""Python values to and from WIT values, every kind, checked against the export's signature."""

import math

import pytest

import wasmpool


def test_records_enums_options_lists(pool, tasks):
    describe = tasks.records.task("describe")
    person = {"name": "Ada Lovelace", "age": 36, "email": None, "role": "teacher",
              "tags": ["math", "poetry"]}
    assert pool.apply(describe, (person,)) == {
        "greeting": "Hello, Ada Lovelace!", "adult": True, "initials": "AL",
        "tag-count": 2, "role-title": "Teacher",
    }
    # snake_case names are accepted for kebab-case fields, and a missing option is none
    minimal = {"name": "Grace Hopper", "age": 17, "role": "student", "tags": []}
    out = pool.apply(describe, (minimal,))
    assert out["adult"] is False and out["tag-count"] == 0
    with pytest.raises(wasmpool.BadInput, match=r"parameter `p.role`: expected enum \{ student, teacher, admin \}.*unknown case `janitor`"):
        pool.apply(describe, ({**person, "role": "janitor"},))
    with pytest.raises(wasmpool.BadInput, match=r"parameter `p.age`: expected u8, got 300"):
        pool.apply(describe, ({**person, "age": 300},))
    with pytest.raises(wasmpool.BadInput, match=r"p.tags\[1\]"):
        pool.apply(describe, ({**person, "tags": ["ok", 5]},))
    with pytest.raises(wasmpool.BadInput, match="unknown field `nickname`"):
        pool.apply(describe, ({**person, "nickname": "A"},))


def test_variants_with_and_without_payloads(pool, tasks):
    area = tasks.records.task("area")
    assert pool.apply(area, ({"circle": 1.0},)) == pytest.approx(math.pi)
    assert pool.apply(area, ({"rectangle": (2.0, 3.5)},)) == 7.0
    assert pool.apply(area, ({"rectangle": [2, 3]},)) == 6.0  # a list for a tuple, ints for floats
    assert pool.apply(area, ("point",)) == 0.0
    with pytest.raises(wasmpool.BadInput, match="unknown case `square`"):
        pool.apply(area, ({"square": 1.0},))
    with pytest.raises(wasmpool.BadInput, match="without its payload"):
        pool.apply(area, ("circle",))


def test_flags_are_sets(pool, tasks):
    grant = tasks.records.task("grant")
    assert pool.apply(grant, (["read"], {"write", "execute"})) == {"read", "write", "execute"}
    assert pool.apply(grant, (set(), frozenset())) == set()
    with pytest.raises(wasmpool.BadInput, match="unknown flag `fly`"):
        pool.apply(grant, (["fly"], []))


def test_options_chars_and_none(pool, tasks):
    first = tasks.records.task("first-char")
    assert pool.apply(first, ("",)) is None
    assert pool.apply(first, ("λambda",)) == "λ"


def test_tuples_and_floats_including_nan_and_inf(pool, tasks):
    minmax = tasks.records.task("minmax")
    assert pool.apply(minmax, ([3.0, -1.5, 2.0],)) == (-1.5, 3.0)
    assert isinstance(pool.apply(minmax, ([1.0],)), tuple)
    assert pool.apply(minmax, ([],)) is None
    assert pool.apply(minmax, ([float("nan"), 1.0],)) == (1.0, 1.0)
    lo, hi = pool.apply(minmax, ([float("-inf"), float("inf")],))
    assert lo == float("-inf") and hi == float("inf")
    lo, hi = pool.apply(minmax, ([float("nan")],))
    assert math.isnan(lo) and math.isnan(hi)


def test_strings_lists_of_records_and_unsigned_64(pool, tasks):
    counts = pool.apply(tasks.words.task("word-count"), ("the cat and the hat",))
    assert counts[0] == {"word": "the", "count": 2}
    assert {"word": "cat", "count": 1} in counts
    assert pool.apply(tasks.words.task("count-words"), ("über straße",)) == 2
    elapsed = pool.apply(tasks.sleep, (5,))
    assert isinstance(elapsed, int) and elapsed >= 5


def test_results_unwrap_ok_and_raise_err(pool, tasks):
    assert pool.apply(tasks.parse_int, ("-9223372036854775808",)) == -2 ** 63
    with pytest.raises(wasmpool.GuestError):
        pool.apply(tasks.parse_int, ("9223372036854775808",))


def test_core_module_numbers(pool, tasks):
    arith = tasks.arith
    assert arith.kind == "core"
    assert pool.apply(arith.task("add"), (2, 3)) == 5
    fdiv = arith.task("fdiv")
    assert pool.apply(fdiv, (1.0, 4.0)) == 0.25
    assert pool.apply(fdiv, (1.0, 0.0)) == float("inf")
    with pytest.raises(wasmpool.Trap):
        pool.apply(arith.task("boom"), ())
    half = arith.task("half")  # f32
    assert half.params == [("p0", "f32")]
    assert pool.apply(half, (3.0,)) == 1.5
    assert pool.apply(half, (float("-inf"),)) == float("-inf")
    with pytest.raises(wasmpool.BadInput, match="out of range for f32"):
        pool.apply(half, (1e39,))
    add = arith.task("add")  # s32: wraps in wasm, range-checked on the way in
    assert pool.apply(add, (2 ** 31 - 1, 1)) == -(2 ** 31)
    with pytest.raises(wasmpool.BadInput, match="expected s32, got 2147483648"):
        pool.apply(add, (2 ** 31, 0))


def test_bool_is_not_an_int_and_bytes_are_lists(pool, tasks):
    with pytest.raises(wasmpool.BadInput, match="expected s64, got true"):
        pool.apply(tasks.square, (True,))
    # bytes are a list<u8>: against a string parameter, the message says so
    with pytest.raises(wasmpool.BadInput, match=r"expected string, got \[104,105\]"):
        pool.apply(tasks.words.task("count-words"), (b"hi",))
    with pytest.raises(wasmpool.BadInput, match="string keys only"):
        pool.apply(tasks.records.task("describe"), ({1: 2},))


def test_a_whole_program(pool, tasks):
    # program: sums the numbers on its stdin; (args, stdin) in, the exit code out
    assert pool.apply(tasks.program, ([], "1 2 3\n")) == 0
    # a component's exit is success or failure: any other code comes back as 1
    assert pool.apply(tasks.program, (["--exit", "3"], "")) == 1


def test_signatures_are_exposed(tasks):
    describe = tasks.records.task("describe")
    assert describe.signature.startswith("describe: func(p: record {")
    assert describe.params[0][0] == "p"
    assert tasks.parse_int.results == ["result<s64, string>"]


BYTES_WAT = __import__("pathlib").Path(__file__).parent / "data" / "bytes.wat"


def test_bytes_are_list_u8_both_ways(pool):
    # data/bytes.wat: a component in WebAssembly text (no built-in task has a list<u8>)
    module = wasmpool.load(BYTES_WAT)
    reverse, size = module.task("reverse"), module.task("size")
    assert reverse.signature == "reverse: func(b: list<u8>) -> list<u8>"
    assert pool.apply(reverse, (b"hello",)) == b"olleh"
    assert pool.apply(reverse, (bytearray(b"abc"),)) == b"cba"
    assert pool.apply(reverse, ([1, 2, 255],)) == b"\xff\x02\x01"
    assert pool.apply(reverse, (b"",)) == b""
    assert pool.map(reverse, [bytes(range(256))] * 3) == [bytes(reversed(range(256)))] * 3
    assert pool.apply(size, (b"x" * 5000,)) == 5000
    with pytest.raises(wasmpool.BadInput, match=r"parameter `b`: expected list<u8>, got \"str\""):
        pool.apply(reverse, ("str",))
    with pytest.raises(wasmpool.BadInput, match=r"parameter `b\[0\]`: expected u8, got 256"):
        pool.apply(reverse, ([256],))


def test_check_without_running(tasks):
    tasks.power.check((2, 3))
    tasks.power.check(kwds={"base": 2, "exponent": 3})
    with pytest.raises(wasmpool.BadInput, match="expected u32, got -3"):
        tasks.power.check((2, -3))
    with pytest.raises(wasmpool.BadInput, match=r"p.age"):
        tasks.records.task("describe").check(({"name": "x", "age": -1, "role": "admin", "tags": []},))
