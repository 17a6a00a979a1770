"""wasmpool: Python's ``multiprocessing.Pool`` and ``concurrent.futures`` for WebAssembly.

A task is an export of a WebAssembly module or component; a pool runs it in worker processes,
each call in a fresh wasmtime sandbox inside a walled worker process::

    import wasmpool

    with wasmpool.Pool(processes=4, timeout=2.0, max_memory="256M") as pool:
        square = pool.load("square.wasm").task("square")
        print(pool.map(square, range(100)))
        r = pool.apply_async(square, (7,))
        print(r.get(timeout=1))

    with wasmpool.Executor(max_workers=4) as ex:          # a concurrent.futures.Executor
        futures = {ex.submit(square, i): i for i in range(20)}
        for f in concurrent.futures.as_completed(futures):
            print(futures[f], f.result())

Errors are exceptions under :class:`TaskError` (:class:`Timeout`, :class:`OutOfFuel`,
:class:`MemoryLimit`, :class:`Trap`, :class:`WorkerCrashed`, :class:`BadInput`,
:class:`GuestError`...), raised from ``get()`` / ``result()``. ``docs/python.md`` in the
repository is the guide: the values mapping, limits and grants, how the worker binary is found.
"""

from __future__ import annotations

import concurrent.futures as _cf
import json as _json
import multiprocessing as _mp
import operator as _operator
import os as _os
import queue as _queue
import re as _re
import shutil as _shutil
import threading as _threading
import time as _time
import weakref as _weakref
from typing import Any, Callable, Iterable, Iterator, List, Mapping, Optional, Sequence, Union

from . import _wasmpool
from ._errors import (
    ArgsTooLarge,
    BadInput,
    BatchLength,
    Cancelled,
    Closed,
    Error,
    GuestError,
    InternalError,
    InvalidModule,
    LimitExceeded,
    MemoryLimit,
    NoSuchExport,
    OutOfFuel,
    OutputLimit,
    PoolClosed,
    ResultTooLarge,
    ResultType,
    SandboxError,
    StackOverflow,
    TableLimit,
    TaskError,
    Timeout,
    Trap,
    WasmpoolError,
    WorkerCrashed,
)

__version__ = "0.1.0"

#: What ``AsyncResult.get(timeout)`` and ``IMapIterator.next(timeout)`` raise when the
#: timeout passes first: multiprocessing's own class, so that existing ``except`` clauses work.
TimeoutError = _mp.TimeoutError  # noqa: A001

#: What a shared queue's ``get`` raises when no item came in time, and ``put`` when no room
#: came: the standard library's ``queue.Empty`` and ``queue.Full``, as multiprocessing's.
Empty = _queue.Empty
Full = _queue.Full

cpu_count = _os.cpu_count

__all__ = [
    "load",
    "Module",
    "Task",
    "Pool",
    "AsyncResult",
    "MapResult",
    "IMapIterator",
    "Executor",
    "Process",
    "SharedValue",
    "SharedArray",
    "SharedLock",
    "SharedQueue",
    "PipeEnd",
    "SharedDict",
    "worker_binary",
    "TimeoutError",
    "Empty",
    "Full",
    "Closed",
    "cpu_count",
    "WasmpoolError",
    "Error",
    "InvalidModule",
    "NoSuchExport",
    "TaskError",
    "Trap",
    "GuestError",
    "BadInput",
    "ArgsTooLarge",
    "LimitExceeded",
    "Timeout",
    "OutOfFuel",
    "MemoryLimit",
    "TableLimit",
    "StackOverflow",
    "ResultTooLarge",
    "OutputLimit",
    "BatchLength",
    "SandboxError",
    "WorkerCrashed",
    "Cancelled",
    "PoolClosed",
    "ResultType",
    "InternalError",
]

# ---------------------------------------------------------------------------------------------
# The worker binary

_worker_lock = _threading.Lock()
_worker_path: Optional[str] = None


def worker_binary() -> str:
    """The ``wasmpool`` binary the workers run (``wasmpool worker``), found as
    ``docs/python.md`` says: ``$WASMPOOL_WORKER_BINARY``, else the one in the wheel
    (``wasmpool/bin/wasmpool``), else ``wasmpool`` on ``PATH``."""
    global _worker_path
    with _worker_lock:
        if _worker_path is not None:
            return _worker_path
        candidates = []
        env = _os.environ.get("WASMPOOL_WORKER_BINARY")
        if env:
            candidates.append(env)
        candidates.append(_os.path.join(_os.path.dirname(__file__), "bin", "wasmpool"))
        on_path = _shutil.which("wasmpool")
        if on_path:
            candidates.append(on_path)
        for path in candidates:
            if _os.path.isfile(path):
                if not _os.access(path, _os.X_OK):
                    try:
                        _os.chmod(path, 0o755)
                    except OSError:
                        pass
                if _os.access(path, _os.X_OK):
                    _wasmpool.set_worker(path, ["worker"])
                    _worker_path = path
                    return path
        err = Error(
            "cannot find the wasmpool worker binary: looked for "
            + ", ".join(candidates)
            + " (set WASMPOOL_WORKER_BINARY to the `wasmpool` binary built from cli/)"
        )
        err.kind = "worker-not-found"
        raise err


# ---------------------------------------------------------------------------------------------
# Limits and grants

_SIZE = _re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmgt]?)(?:i?b)?\s*$", _re.IGNORECASE)
_UNITS = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}


def _size(value: Union[int, str, None], what: str) -> Optional[int]:
    """Bytes from an int or a string such as ``"256M"``, ``"64MiB"``, ``"1.5G"`` (binary
    units)."""
    if value is None:
        return None
    if isinstance(value, bool):
        raise TypeError(f"{what} must be a number of bytes or a size such as '256M'")
    if isinstance(value, int):
        if value < 0:
            raise ValueError(f"{what} must not be negative")
        return value
    if isinstance(value, str):
        m = _SIZE.match(value)
        if not m:
            raise ValueError(f"{what}: {value!r} is not a size such as '256M', '64MiB' or '1G'")
        return int(float(m.group(1)) * _UNITS[m.group(2).lower()])
    raise TypeError(f"{what} must be a number of bytes or a size such as '256M'")


_LIMIT_KEYS = ("timeout", "fuel", "max_memory", "max_table_elements", "max_output", "max_result")


def _limits(kw: Mapping[str, Any]) -> Optional[Any]:
    if all(kw.get(k) is None for k in _LIMIT_KEYS):
        return None
    timeout = kw.get("timeout")
    if timeout is not None:
        timeout = float(timeout)
        if not timeout > 0:
            raise ValueError("timeout must be a positive number of seconds")
    fuel = kw.get("fuel")
    if fuel is not None and (isinstance(fuel, bool) or not isinstance(fuel, int) or fuel < 0):
        raise ValueError("fuel must be a non-negative int")
    return _wasmpool.LimitSpec(
        timeout=timeout,
        fuel=fuel,
        max_memory=_size(kw.get("max_memory"), "max_memory"),
        max_table_elements=kw.get("max_table_elements"),
        max_output=_size(kw.get("max_output"), "max_output"),
        max_result=_size(kw.get("max_result"), "max_result"),
    )


def _dir_list(dirs: Any, read_only: bool, what: str) -> List[tuple]:
    """Directory grants as ``(host, guest, read_only)``: from a mapping ``{host: guest}``, or
    a list of ``"HOST::GUEST"`` strings or ``(host, guest)`` pairs."""
    if not dirs:
        return []
    out = []
    items = dirs.items() if isinstance(dirs, Mapping) else dirs
    for item in items:
        if isinstance(item, str):
            host, sep, guest = item.partition("::")
            if not sep:
                raise ValueError(f"{what}: {item!r} is not HOST::GUEST")
        else:
            host, guest = item
        out.append((_os.fspath(host), str(guest), read_only))
    return out


def _grants(kw: Mapping[str, Any]) -> tuple:
    dirs = _dir_list(kw.get("dirs"), False, "dirs") + _dir_list(kw.get("ro_dirs"), True, "ro_dirs")
    env = kw.get("env") or {}
    env_list = [(str(k), str(v)) for k, v in (env.items() if isinstance(env, Mapping) else env)]
    return dirs, env_list


# ---------------------------------------------------------------------------------------------
# Modules and tasks


class Task:
    """One export of one module: what a pool runs. Made by :meth:`Module.task`.

    Cheap to copy; the same task runs in any :class:`Pool`, :class:`Executor` or
    :class:`Process`. ``with_limits`` / ``with_grants`` give a copy with its own limits (over
    the pool's) or grants (instead of the pool's)."""

    __slots__ = ("_native", "_own_grants")

    def __init__(self, native: Any, own_grants: bool = False) -> None:
        self._native = native
        self._own_grants = own_grants

    @property
    def name(self) -> str:
        """The export's name."""
        return self._native.name

    @property
    def signature(self) -> str:
        """The export's WIT signature, such as ``power: func(base: s64, exponent: u32) -> s64``."""
        return self._native.signature

    @property
    def params(self) -> List[tuple]:
        """The parameters as ``(name, WIT type)`` pairs."""
        return self._native.params

    @property
    def results(self) -> List[str]:
        """The results' WIT types."""
        return self._native.results

    def check(self, args: Any = (), kwds: Optional[Mapping[str, Any]] = None) -> None:
        """Checks ``args`` (and ``kwds``) against the signature as a call would, without
        running anything: raises the :class:`BadInput` the call would raise."""
        _wasmpool.check_args(self._native, _call_args(self, args, kwds))

    def with_limits(
        self,
        *,
        timeout: Optional[float] = None,
        fuel: Optional[int] = None,
        max_memory: Union[int, str, None] = None,
        max_table_elements: Optional[int] = None,
        max_output: Union[int, str, None] = None,
        max_result: Union[int, str, None] = None,
    ) -> "Task":
        """A copy of this task with these limits; those not given are the pool's."""
        spec = _limits(dict(timeout=timeout, fuel=fuel, max_memory=max_memory,
                            max_table_elements=max_table_elements, max_output=max_output,
                            max_result=max_result))
        if spec is None:
            return self
        return Task(self._native.with_limits(spec), self._own_grants)

    def with_grants(self, *, dirs: Any = None, ro_dirs: Any = None,
                    env: Optional[Mapping[str, str]] = None, shared: Any = None) -> "Task":
        """A copy of this task with these grants instead of the pool's: ``dirs`` and
        ``ro_dirs`` map host directories to guest paths (read-write, read-only), ``env`` sets
        environment variables, ``shared`` names the pool's shared objects the task may open:
        a list of them (each under its own name, a pipe's pair as both ends) or a mapping
        ``{name: object}`` (the task opens the object by that name)."""
        d, e = _grants(dict(dirs=dirs, ro_dirs=ro_dirs, env=env))
        return Task(self._native.with_grants(d, e, _shared_list(shared)), True)

    def with_instance_reuse(self) -> "Task":
        """A copy that calls the items of a chunk in one instance (much faster for tiny
        items; only for tasks that keep no state between calls)."""
        return Task(self._native.with_instance_reuse(), self._own_grants)

    def batched(self) -> "Task":
        """For an export ``func(xs: list<T>) -> list<R>``: a task of its elements, each chunk
        of a map one call with the chunk's items as the list."""
        return Task(self._native.batched(), self._own_grants)

    def __repr__(self) -> str:
        return f"<wasmpool.Task {self.signature}>"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Task) and other._native is self._native

    def __hash__(self) -> int:
        return id(self._native)


class Module:
    """A loaded WebAssembly module or component: validated, its exports' signatures read,
    compiled once (in a walled process, cached per machine). Made by :func:`load`."""

    __slots__ = ("_native",)

    def __init__(self, native: Any) -> None:
        self._native = native

    def task(self, name: str, **limits_and_grants: Any) -> Task:
        """The task of the export ``name`` (``iface#func`` for a function of an exported
        interface). Keyword arguments are limits (``timeout``, ``fuel``, ``max_memory``...)
        and grants (``dirs``, ``ro_dirs``, ``env``, ``shared``) of this task."""
        task = Task(self._native.task(name))
        if limits_and_grants:
            grants = {k: limits_and_grants.pop(k) for k in ("dirs", "ro_dirs", "env", "shared")
                      if k in limits_and_grants}
            if limits_and_grants:
                task = task.with_limits(**limits_and_grants)
            if grants:
                task = task.with_grants(**grants)
        return task

    def program(self) -> Task:
        """The whole program (a ``wasi:cli/run`` component or a WASI command): a task taking
        ``(args, stdin)`` (a list of strings, a string) and returning its exit code."""
        return Task(self._native.program())

    @property
    def exports(self) -> List[str]:
        """The callable exports' WIT signatures."""
        return self._native.exports

    @property
    def export_names(self) -> List[str]:
        """The callable exports' names."""
        return self._native.export_names

    @property
    def origin(self) -> str:
        """Where the module came from."""
        return self._native.origin

    @property
    def kind(self) -> str:
        """``"component"`` or ``"core"``."""
        return self._native.kind

    def __repr__(self) -> str:
        return f"<wasmpool.Module {self.origin}>"


def load(
    path: Union[str, "_os.PathLike[str]"],
    *,
    max_bytes: Optional[int] = None,
    compile_timeout: Optional[float] = None,
    compile_memory: Union[int, str, None] = None,
    **limits: Any,
) -> Module:
    """Reads, validates and compiles a ``.wasm`` module or component (or ``.wat`` text).

    Compiling happens in a walled process with a deadline (``compile_timeout``, seconds) and a
    memory cap (``compile_memory``); the code is cached per machine. Limit keywords
    (``timeout``, ``fuel``) compile the code those limits need now rather than on first use.
    Raises :class:`Error` (:class:`InvalidModule` for bytes that are not wasm)."""
    worker_binary()
    return Module(
        _wasmpool.load(
            _os.fspath(path),
            limits=_limits(limits),
            max_bytes=max_bytes,
            compile_timeout=compile_timeout,
            compile_memory=_size(compile_memory, "compile_memory"),
        )
    )


def _native_task(func: Any) -> Any:
    if isinstance(func, Task):
        return func._native
    raise TypeError(
        f"wasmpool runs WebAssembly tasks: pass a wasmpool.Task (pool.load('x.wasm').task('name')),"
        f" not {type(func).__name__}"
    )


def _call_args(task: Task, args: Any, kwds: Optional[Mapping[str, Any]]) -> Any:
    """The arguments of one call: ``args`` spread over the parameters; with ``kwds``, all of
    them by name."""
    if not kwds:
        return args
    if isinstance(args, (tuple, list)):
        positional = tuple(args)
    else:
        positional = (args,)
    names = [n for n, _ in task.params]
    if len(positional) > len(names):
        return positional  # the library's own count error names the parameters
    named = dict(zip(names, positional))
    for k, v in kwds.items():
        if k in named:
            raise TypeError(f"{task.name}() got multiple values for argument {k!r}")
        named[k] = v
    return named


# ---------------------------------------------------------------------------------------------
# Shared state


def _encode(obj: Any, what: str) -> bytes:
    """An item, message or entry as the JSON text (UTF-8) that crosses to tasks."""
    try:
        return _json.dumps(obj, separators=(",", ":"), allow_nan=True).encode()
    except TypeError as e:
        raise TypeError(f"{what}: {e} (items are JSON; use the *_bytes methods for bytes)") from None


def _decode(data: bytes) -> Any:
    """An item as Python: its JSON if it is JSON text, else the text if it is UTF-8, else the
    bytes (what a task put may be any of them)."""
    try:
        return _json.loads(data)
    except ValueError:
        pass
    try:
        return data.decode()
    except UnicodeDecodeError:
        return data


class SharedLock:
    """A lock shared by the host and every worker of a pool (``pool.Lock(name)``), or a
    value's or array's own (``get_lock()``): ``multiprocessing.Lock``'s ``acquire(block=True,
    timeout=None)``, ``release()`` and context manager. Held by this process between
    ``acquire`` and ``release`` (any thread may release it).

    ``abandoned`` is true after an ``acquire`` that found the lock left by a holder that
    failed (a trap, a timeout) or died holding it: what it protected may be half updated."""

    __slots__ = ("_native",)

    def __init__(self, native: Any) -> None:
        self._native = native

    @property
    def name(self) -> str:
        """The name the lock (or its object) was made with."""
        return self._native.name

    def acquire(self, block: bool = True, timeout: Optional[float] = None) -> bool:
        """Waits for the lock (at most ``timeout`` seconds; not at all with
        ``block=False``); whether it was acquired. The GIL is released while waiting."""
        return self._native.acquire(timeout if block else 0.0)

    def release(self) -> None:
        """Releases the lock; ``ValueError`` if it is not held by this process."""
        self._native.release()

    @property
    def abandoned(self) -> bool:
        """Whether the last ``acquire`` found the lock abandoned by a failed or dead holder."""
        return self._native.abandoned

    def locked(self) -> bool:
        """Whether anyone holds the lock now (for an object's own lock: this process)."""
        return self._native.locked()

    def __enter__(self) -> "SharedLock":
        self._native.acquire(None)
        return self

    def __exit__(self, *exc: Any) -> None:
        self._native.release()

    def __repr__(self) -> str:
        return f"<wasmpool.SharedLock {self.name!r}>"


class SharedValue:
    """A shared 64-bit integer or float (``pool.Value(name, initial)``): ``value`` reads and
    writes it (each atomically), ``add(delta)`` adds atomically and returns the new value,
    ``get_lock()`` is its own lock, for updates of several steps (``with v.get_lock():
    v.value += 1``), which tasks take with the value's ``lock`` in ``wasmpool:shared``."""

    __slots__ = ("_native", "_lock")

    def __init__(self, native: Any) -> None:
        self._native = native
        self._lock = SharedLock(native.lock())

    @property
    def name(self) -> str:
        """The value's own name (what a grant calls it by default)."""
        return self._native.name

    @property
    def typecode(self) -> str:
        """``"q"`` (a 64-bit integer) or ``"d"`` (a 64-bit float), as ``array``'s codes."""
        return "d" if self._native.is_float else "q"

    @property
    def value(self) -> Any:
        """The value now."""
        return self._native.get()

    @value.setter
    def value(self, v: Any) -> None:
        self._native.set(v)

    def add(self, delta: Any) -> Any:
        """Adds ``delta`` atomically; returns the new value."""
        return self._native.add(delta)

    def compare_and_swap(self, expected: int, new: int) -> int:
        """Stores ``new`` if the value is ``expected`` (integers); returns the value found."""
        return self._native.compare_and_swap(expected, new)

    def get_lock(self) -> SharedLock:
        """The value's own lock."""
        return self._lock

    def __repr__(self) -> str:
        return f"<wasmpool.SharedValue {self.name!r} value={self.value!r}>"


class SharedArray:
    """A shared array of 64-bit integers or floats (``pool.Array(name, size_or_sequence)``):
    indexing (negative indices and slices too), ``len``, iteration, ``tolist()``,
    ``add(index, delta)`` (atomic), ``get_lock()``. Each element is read and written
    atomically; hold ``get_lock()`` for a consistent whole."""

    __slots__ = ("_native", "_lock")

    def __init__(self, native: Any) -> None:
        self._native = native
        self._lock = SharedLock(native.lock())

    @property
    def name(self) -> str:
        """The array's own name."""
        return self._native.name

    @property
    def typecode(self) -> str:
        """``"q"`` (64-bit integers) or ``"d"`` (64-bit floats)."""
        return "d" if self._native.is_float else "q"

    def __len__(self) -> int:
        return len(self._native)

    def _index(self, i: int) -> int:
        n = len(self._native)
        if i < 0:
            i += n
        if not 0 <= i < n:
            raise IndexError("array index out of range")
        return i

    def __getitem__(self, i: Union[int, slice]) -> Any:
        if isinstance(i, slice):
            values = self._native.tolist()
            return values[i]
        return self._native.get(self._index(_operator.index(i)))

    def __setitem__(self, i: Union[int, slice], v: Any) -> None:
        if isinstance(i, slice):
            start, stop, step = i.indices(len(self._native))
            values = list(v)
            positions = range(start, stop, step)
            if len(values) != len(positions):
                raise ValueError("can only assign a sequence of the same length to a slice "
                                 "of a shared array")
            if step == 1:
                self._native.write(start, values)
            else:
                for p, x in zip(positions, values):
                    self._native.set(p, x)
            return
        self._native.set(self._index(_operator.index(i)), v)

    def __iter__(self) -> Iterator[Any]:
        return iter(self._native.tolist())

    def tolist(self) -> List[Any]:
        """Every element (each read atomically; hold ``get_lock()`` for a snapshot)."""
        return self._native.tolist()

    def add(self, index: int, delta: Any) -> Any:
        """Adds ``delta`` at ``index`` atomically; returns the new element."""
        return self._native.add(self._index(_operator.index(index)), delta)

    def get_lock(self) -> SharedLock:
        """The array's own lock."""
        return self._lock

    def __repr__(self) -> str:
        return f"<wasmpool.SharedArray {self.name!r} {self.tolist()!r}>"


class SharedQueue:
    """A first-in first-out queue between the host and the tasks of a pool
    (``pool.Queue(name, maxsize=0)``), with ``multiprocessing.Queue``'s methods: ``put(obj,
    block=True, timeout=None)`` (``queue.Full`` when no room came), ``get(block=True,
    timeout=None)`` (``queue.Empty`` when no item came), ``put_nowait``, ``get_nowait``,
    ``qsize()``, ``empty()``, ``full()``, ``close()``.

    Items are JSON text (UTF-8) on the queue: ``put`` encodes, ``get`` decodes (an item a task
    put that is not JSON comes back as its text, or its bytes if it is not UTF-8);
    ``put_bytes`` and ``get_bytes`` carry bytes as they are. After ``close()``, gets take what
    is left, then raise :class:`Closed`; a put raises it at once."""

    __slots__ = ("_native",)

    def __init__(self, native: Any) -> None:
        self._native = native

    @property
    def name(self) -> str:
        """The queue's own name."""
        return self._native.name

    @property
    def maxsize(self) -> int:
        """The most items it holds (0: as many as fit in its 4 MiB)."""
        return self._native.maxsize

    def put(self, obj: Any, block: bool = True, timeout: Optional[float] = None) -> None:
        """Appends ``obj`` as JSON, waiting at most ``timeout`` seconds for room."""
        self._native.put(_encode(obj, "Queue.put"), timeout if block else 0.0)

    def put_bytes(self, data: bytes, block: bool = True, timeout: Optional[float] = None) -> None:
        """Appends ``data`` as it is."""
        self._native.put(bytes(data), timeout if block else 0.0)

    def put_nowait(self, obj: Any) -> None:
        """``put(obj, block=False)``."""
        self.put(obj, False)

    def get(self, block: bool = True, timeout: Optional[float] = None) -> Any:
        """Takes the first item, decoded, waiting at most ``timeout`` seconds."""
        return _decode(self._native.get(timeout if block else 0.0))

    def get_bytes(self, block: bool = True, timeout: Optional[float] = None) -> bytes:
        """Takes the first item as bytes."""
        return self._native.get(timeout if block else 0.0)

    def get_nowait(self) -> Any:
        """``get(block=False)``."""
        return self.get(False)

    def qsize(self) -> int:
        """How many items wait now."""
        return self._native.qsize()

    def empty(self) -> bool:
        """Whether no item waits now."""
        return self._native.qsize() == 0

    def full(self) -> bool:
        """Whether a bounded queue holds ``maxsize`` items now."""
        return self.maxsize > 0 and self._native.qsize() >= self.maxsize

    def close(self) -> None:
        """No more puts: gets take what is left, then raise :class:`Closed`."""
        self._native.close()

    def items(self) -> List[Any]:
        """A copy of the items waiting now, decoded, in order (none is taken)."""
        return [_decode(b) for b in self._native.items()]

    def __repr__(self) -> str:
        return f"<wasmpool.SharedQueue {self.name!r} qsize={self.qsize()}>"


class PipeEnd:
    """One end of a pipe (``pool.Pipe(name)`` returns both, named ``NAME.a`` and
    ``NAME.b``): ``multiprocessing.Connection``'s ``send(obj)``, ``recv()``,
    ``send_bytes``, ``recv_bytes`` and ``close()``. Messages are JSON, as a queue's items
    are; ``recv(timeout)`` raises :data:`TimeoutError` when none came, and :class:`Closed`
    (an ``EOFError``) once the other end closed and every message it sent was received."""

    __slots__ = ("_native",)

    def __init__(self, native: Any) -> None:
        self._native = native

    @property
    def name(self) -> str:
        """This end's name (``NAME.a`` or ``NAME.b``)."""
        return self._native.name

    def send(self, obj: Any) -> None:
        """Sends ``obj`` as JSON to the other end."""
        self._native.send(_encode(obj, "send"))

    def send_bytes(self, data: bytes) -> None:
        """Sends ``data`` as it is."""
        self._native.send(bytes(data))

    def recv(self, timeout: Optional[float] = None) -> Any:
        """The next message, decoded, waiting at most ``timeout`` seconds."""
        return _decode(self._native.recv(timeout))

    def recv_bytes(self, timeout: Optional[float] = None) -> bytes:
        """The next message as bytes."""
        return self._native.recv(timeout)

    def close(self) -> None:
        """This end sends no more."""
        self._native.close()

    def __repr__(self) -> str:
        return f"<wasmpool.PipeEnd {self.name!r}>"


_MISSING = object()


class SharedDict:
    """A dictionary shared by the host and the tasks of a pool (``pool.dict(name)``), which
    tasks reach as the ``wasi:keyvalue`` bucket of its name: ``d[key]``, ``d[key] = v``,
    ``del d[key]``, ``get``, ``keys``, ``values``, ``items``, ``len``, ``in``, ``update``,
    ``pop``, ``setdefault``. Keys are strings; values are stored as JSON text (UTF-8), and
    read back decoded (a value a task stored that is not JSON comes back as its text, or its
    bytes); ``get_bytes`` / ``set_bytes`` carry bytes as they are. ``wasi:keyvalue``'s
    ``increment`` keeps a count as decimal text, which reads back as an int."""

    __slots__ = ("_native",)

    def __init__(self, native: Any) -> None:
        self._native = native

    @property
    def name(self) -> str:
        """The dict's own name (its bucket's)."""
        return self._native.name

    def __getitem__(self, key: str) -> Any:
        data = self._native.get(key)
        if data is None:
            raise KeyError(key)
        return _decode(data)

    def __setitem__(self, key: str, value: Any) -> None:
        self._native.set(key, _encode(value, "dict value"))

    def __delitem__(self, key: str) -> None:
        if not self._native.delete(key):
            raise KeyError(key)

    def __contains__(self, key: object) -> bool:
        return isinstance(key, str) and self._native.get(key) is not None

    def __len__(self) -> int:
        return len(self._native)

    def __iter__(self) -> Iterator[str]:
        return iter(self.keys())

    def get(self, key: str, default: Any = None) -> Any:
        """The value of ``key``, or ``default``."""
        data = self._native.get(key)
        return default if data is None else _decode(data)

    def get_bytes(self, key: str, default: Optional[bytes] = None) -> Optional[bytes]:
        """The value of ``key`` as bytes, or ``default``."""
        data = self._native.get(key)
        return default if data is None else data

    def set_bytes(self, key: str, value: bytes) -> None:
        """Stores ``value`` as it is under ``key``."""
        self._native.set(key, bytes(value))

    def keys(self) -> List[str]:
        """The keys, sorted."""
        return [k for k, _ in self._native.entries()]

    def values(self) -> List[Any]:
        """The values, decoded, in the keys' order."""
        return [_decode(v) for _, v in self._native.entries()]

    def items(self) -> List[tuple]:
        """``(key, value)`` pairs, decoded, sorted by key."""
        return [(k, _decode(v)) for k, v in self._native.entries()]

    def update(self, other: Any = (), **kw: Any) -> None:
        """Stores every entry of ``other`` (a mapping or pairs) and ``kw``."""
        items = other.items() if isinstance(other, Mapping) else other
        for k, v in items:
            self[k] = v
        for k, v in kw.items():
            self[k] = v

    def pop(self, key: str, default: Any = _MISSING) -> Any:
        """Removes ``key`` and returns its value (or ``default``; ``KeyError`` without)."""
        data = self._native.get(key)
        if data is None:
            if default is _MISSING:
                raise KeyError(key)
            return default
        self._native.delete(key)
        return _decode(data)

    def setdefault(self, key: str, default: Any = None) -> Any:
        """The value of ``key``, storing ``default`` first if it is absent."""
        data = self._native.get(key)
        if data is None:
            self[key] = default
            return default
        return _decode(data)

    def copy(self) -> dict:
        """A plain ``dict`` of the entries now."""
        return dict(self.items())

    def __repr__(self) -> str:
        return f"<wasmpool.SharedDict {self.name!r} {self.copy()!r}>"


_Shared = (SharedValue, SharedArray, SharedLock, SharedQueue, PipeEnd, SharedDict)


def _shared_list(spec: Any) -> List[tuple]:
    """Shared-object grants as ``(name, native)``: from one object, a list or tuple of objects
    (each under its own name; a pipe's pair of ends is two), a mapping ``{name: object}``
    (aliases), or ``(name, object)`` pairs."""
    if spec is None:
        return []
    if isinstance(spec, _Shared):
        spec = [spec]
    out: List[tuple] = []
    if isinstance(spec, Mapping):
        for name, obj in spec.items():
            if not isinstance(obj, _Shared):
                raise TypeError(f"shared={{{name!r}: ...}}: not a shared object of a pool: {obj!r}")
            out.append((str(name), obj._native))
        return out
    for item in spec:
        if isinstance(item, _Shared):
            out.append((item.name, item._native))
        elif (isinstance(item, tuple) and len(item) == 2 and isinstance(item[0], str)
              and isinstance(item[1], _Shared)):
            out.append((item[0], item[1]._native))
        elif isinstance(item, (tuple, list)) and all(isinstance(x, _Shared) for x in item):
            out.extend((x.name, x._native) for x in item)  # both ends of a pipe
        else:
            raise TypeError(f"shared: not a shared object of a pool: {item!r} (pool.Value, "
                            "pool.Array, pool.Lock, pool.Queue, pool.Pipe, pool.dict)")
    return out


# ---------------------------------------------------------------------------------------------
# Completing futures and calling callbacks


_completers: "set[_Completer]" = set()


class _Completer:
    """A daemon thread that settles what ends: the native completer wakes it with each ended
    call (a waker per future), and it completes the Python future or calls the callbacks."""

    def __init__(self) -> None:
        self._native = _wasmpool.Completer()
        self._thread: Optional[_threading.Thread] = None
        self._lock = _threading.Lock()

    def _start(self) -> None:
        with self._lock:
            if self._thread is None:
                self._thread = _threading.Thread(
                    target=self._run, name="wasmpool-completer", daemon=True
                )
                self._thread.start()
                _completers.add(self)

    def watch(self, native_future: Any, key: Any) -> None:
        if self._thread is None:
            self._start()
        self._native.watch(native_future, key)

    def watch_map(self, native_map: Any, key: Any) -> None:
        if self._thread is None:
            self._start()
        self._native.watch_map(native_map, key)

    def _run(self) -> None:
        native = self._native
        while True:
            batch = native.next(0.25)
            if batch is None:
                return
            for key, ok, value in batch:
                try:
                    key._settle(ok, value)
                except Exception:  # a callback's own exception must not end the thread
                    import traceback

                    traceback.print_exc()

    def stop(self) -> None:
        """Ends the thread and waits for it: a daemon thread must not be inside the native
        wait when the interpreter finalizes (it would be unwound through Rust frames)."""
        self._native.stop()
        t = self._thread
        if t is not None and t is not _threading.current_thread():
            t.join(timeout=5)
        _completers.discard(self)


# ---------------------------------------------------------------------------------------------
# Pool


class AsyncResult:
    """The handle of :meth:`Pool.apply_async`: multiprocessing's ``AsyncResult``."""

    __slots__ = ("_pool", "_native", "_callback", "_error_callback", "_settled")

    def __init__(self, pool: "Pool", native: Any, callback: Optional[Callable[[Any], Any]],
                 error_callback: Optional[Callable[[BaseException], Any]]) -> None:
        self._pool = pool
        self._native = native
        self._callback = callback
        self._error_callback = error_callback
        self._settled: Optional[_threading.Event] = None
        if callback is not None or error_callback is not None:
            self._settled = _threading.Event()
            self._watch(pool._completer())

    def _watch(self, completer: _Completer) -> None:
        completer.watch(self._native, self)

    def _settle(self, ok: bool, value: Any) -> None:
        try:
            if ok and self._callback is not None:
                self._callback(value)
            elif not ok and self._error_callback is not None:
                self._error_callback(value)
        finally:
            assert self._settled is not None
            self._settled.set()

    def ready(self) -> bool:
        """Whether the call has ended."""
        return self._native.done()

    def successful(self) -> bool:
        """Whether the call ended with a value; ``ValueError`` if it has not ended."""
        ok = self._native.successful()
        if ok is None:
            raise ValueError(f"{self!r} not ready")
        return ok

    def wait(self, timeout: Optional[float] = None) -> None:
        """Waits until the call ends, or ``timeout`` seconds."""
        self._pool._interruptible(self._native.wait, timeout)

    def get(self, timeout: Optional[float] = None) -> Any:
        """The value; raises the task's exception, or :data:`TimeoutError`
        (``multiprocessing.TimeoutError``) if ``timeout`` seconds pass first."""
        if not self._pool._interruptible(self._native.wait, timeout):
            raise _mp.TimeoutError
        if self._settled is not None:
            self._pool._interruptible(self._settled.wait)
        return self._native.result()

    def __repr__(self) -> str:
        state = "ready" if self.ready() else "pending"
        return f"<wasmpool.AsyncResult {state}>"


class MapResult(AsyncResult):
    """The handle of :meth:`Pool.map_async` and :meth:`Pool.starmap_async`: ``get()`` is the
    list of values in input order, or raises the first error in input order."""

    __slots__ = ()

    def _watch(self, completer: _Completer) -> None:
        completer.watch_map(self._native, self)


class IMapIterator:
    """The iterator of :meth:`Pool.imap` and :meth:`Pool.imap_unordered`: one value per
    item, raising an item's exception at its place; ``next(timeout)`` as multiprocessing's."""

    __slots__ = ("_pool", "_native")

    def __init__(self, pool: "Pool", native: Any) -> None:
        self._pool = pool
        self._native = native

    def __iter__(self) -> "IMapIterator":
        return self

    def __next__(self) -> Any:
        return self._pool._interruptible(self._native.next, None)

    def next(self, timeout: Optional[float] = None) -> Any:
        """The next value, waiting at most ``timeout`` seconds (then
        ``multiprocessing.TimeoutError``)."""
        return self._pool._interruptible(self._native.next, timeout)


_RUN, _CLOSE, _TERMINATE = "RUN", "CLOSE", "TERMINATE"
_live_pools: "_weakref.WeakSet[Pool]" = _weakref.WeakSet()


class Pool:
    """A pool of worker processes running WebAssembly tasks, with ``multiprocessing.Pool``'s
    methods and meanings.

    ``processes`` workers (default: one per core), started as work comes. Limits apply to
    every task (a task's own ``with_limits`` overrides them): ``timeout`` (seconds, wall
    clock), ``fuel`` (instructions), ``max_memory`` (each linear memory, bytes or ``"256M"``),
    ``max_table_elements``, ``max_output`` (stdout and stderr, each), ``max_result``. Grants
    (deny by default): ``dirs`` and ``ro_dirs`` (``{host: guest}``, read-write and read-only),
    ``env`` (``{name: value}``). ``retries`` reruns a task whose worker died under it.
    ``chunksize`` fixes the chunk size of ``map`` (default: multiprocessing's heuristic).
    ``maxtasksperchild`` (or ``max_tasks_per_worker``) replaces a worker after that many tasks.

    Remote workers (``docs/cluster.md``): ``hosts`` (``{"node1": 4, "node2": 8}``, or
    ``"node1:4,node2:8"``, or a list of ``"host:N"``) run that many workers on each host
    through ``launcher``: ``"ssh"`` (the default), ``"slurm"`` (one ``srun`` per worker, inside
    an allocation), ``"kubectl"`` (``hosts`` are pods), or a template of one's own (an argv
    list, or a command line split as a shell would, never run by one) with ``{host}``,
    ``{slot}`` and ``{bin}`` filled in; a template without ``{host}`` is started
    ``processes`` times. ``remote_bin`` is ``{bin}``, the ``wasmpool`` program on the far
    side (default: ``wasmpool`` on its ``PATH``); ``local`` local workers run beside them
    (default none); ``startup_timeout`` bounds a worker's start (seconds, default 120) and
    ``link_timeout`` how long its link may stay silent (default 5). Everything else holds
    there as here: limits, grants (the remote machine's paths), shared objects (served
    through the host, a round trip per operation), retries.

    As a context manager, leaving the block terminates the pool (as multiprocessing does).
    Ctrl-C while the pool waits raises ``KeyboardInterrupt`` and terminates it: no worker is
    left behind."""

    def __init__(
        self,
        processes: Optional[int] = None,
        *,
        timeout: Optional[float] = None,
        fuel: Optional[int] = None,
        max_memory: Union[int, str, None] = None,
        max_table_elements: Optional[int] = None,
        max_output: Union[int, str, None] = None,
        max_result: Union[int, str, None] = None,
        dirs: Any = None,
        ro_dirs: Any = None,
        env: Optional[Mapping[str, str]] = None,
        retries: int = 0,
        chunksize: Optional[int] = None,
        maxtasksperchild: Optional[int] = None,
        max_tasks_per_worker: Optional[int] = None,
        max_wasm_stack: Union[int, str, None] = None,
        hosts: Union[Mapping[str, int], Sequence[str], str, None] = None,
        launcher: Union[str, Sequence[str], None] = None,
        remote_bin: Optional[str] = None,
        local: Optional[int] = None,
        startup_timeout: Optional[float] = None,
        link_timeout: Optional[float] = None,
    ) -> None:
        if processes is not None and processes < 1:
            raise ValueError("Number of processes must be at least 1")
        if chunksize is not None and chunksize < 1:
            raise ValueError("Chunksize must be 1+, not {0:n}".format(chunksize))
        worker_binary()
        self._limit_spec = _limits(dict(timeout=timeout, fuel=fuel, max_memory=max_memory,
                                        max_table_elements=max_table_elements,
                                        max_output=max_output, max_result=max_result))
        d, e = _grants(dict(dirs=dirs, ro_dirs=ro_dirs, env=env))
        self._dirs, self._env = d, e
        # Shared objects granted to every task without grants of its own (`share`), and the
        # tasks re-granted with them, by the id of their native task.
        self._shared: List[tuple] = []
        self._granted: dict = {}
        self._native = _wasmpool.Pool(
            processes=processes,
            limits=self._limit_spec,
            dirs=d,
            env=e,
            retries=int(retries),
            chunksize=chunksize,
            max_tasks_per_worker=max_tasks_per_worker or maxtasksperchild,
            max_wasm_stack=_size(max_wasm_stack, "max_wasm_stack"),
            remote=_remote(hosts, launcher, remote_bin, local, startup_timeout, link_timeout),
        )
        self._state = _RUN
        self._completer_obj: Optional[_Completer] = None
        self._completer_lock = _threading.Lock()
        _live_pools.add(self)

    # -- helpers --------------------------------------------------------------------------

    def _completer(self) -> _Completer:
        if self._completer_obj is None:
            with self._completer_lock:
                if self._completer_obj is None:
                    self._completer_obj = _Completer()
        return self._completer_obj

    def _check_running(self) -> None:
        if self._state != _RUN:
            raise ValueError("Pool not running")

    def _task(self, func: Any) -> Any:
        """The native task to run for ``func``: with the pool's shared grants (``share``) if
        it has no grants of its own."""
        native = _native_task(func)
        if not self._shared or func._own_grants:
            return native
        hit = self._granted.get(id(native))
        if hit is None or hit[0] is not native:
            hit = (native, native.with_grants(self._dirs, self._env, self._shared))
            self._granted[id(native)] = hit
        return hit[1]

    def _interruptible(self, fn: Callable[..., Any], *args: Any) -> Any:
        """Runs a blocking wait; Ctrl-C terminates the pool and raises KeyboardInterrupt."""
        try:
            return fn(*args)
        except KeyboardInterrupt:
            self.terminate()
            raise

    # -- the API --------------------------------------------------------------------------

    @property
    def processes(self) -> int:
        """How many worker slots the pool has."""
        return self._native.workers

    def worker_pids(self) -> List[int]:
        """The process ids of the workers running now."""
        return self._native.worker_pids()

    def load(self, path: Union[str, "_os.PathLike[str]"], **kwargs: Any) -> Module:
        """:func:`load`, compiling for this pool's limits at once."""
        if self._limit_spec is not None and not any(k in kwargs for k in _LIMIT_KEYS):
            worker_binary()
            return Module(_wasmpool.load(_os.fspath(path), limits=self._limit_spec,
                                         max_bytes=kwargs.get("max_bytes"),
                                         compile_timeout=kwargs.get("compile_timeout"),
                                         compile_memory=_size(kwargs.get("compile_memory"),
                                                              "compile_memory")))
        return load(path, **kwargs)

    def apply(self, func: Task, args: Any = (), kwds: Optional[Mapping[str, Any]] = None) -> Any:
        """Calls ``func(*args, **kwds)`` in a worker and waits for its value."""
        return self.apply_async(func, args, kwds).get()

    def apply_async(
        self,
        func: Task,
        args: Any = (),
        kwds: Optional[Mapping[str, Any]] = None,
        callback: Optional[Callable[[Any], Any]] = None,
        error_callback: Optional[Callable[[BaseException], Any]] = None,
    ) -> AsyncResult:
        """Starts one call; the :class:`AsyncResult` gives its value. ``callback`` (value) or
        ``error_callback`` (exception) is called from a wasmpool thread when it ends."""
        self._check_running()
        native = self._native.submit(self._task(func), _call_args(func, args, kwds))
        return AsyncResult(self, native, callback, error_callback)

    def map(self, func: Task, iterable: Iterable[Any], chunksize: Optional[int] = None) -> List[Any]:
        """``func`` on every item, in parallel; the values in input order, or the first error
        in input order raised."""
        return self._map_async(func, iterable, chunksize, False, None, None).get()

    def map_async(self, func: Task, iterable: Iterable[Any], chunksize: Optional[int] = None,
                  callback: Optional[Callable[[Any], Any]] = None,
                  error_callback: Optional[Callable[[BaseException], Any]] = None) -> MapResult:
        """Starts a :meth:`map`; the :class:`MapResult` gives the list."""
        return self._map_async(func, iterable, chunksize, False, callback, error_callback)

    def starmap(self, func: Task, iterable: Iterable[Sequence[Any]],
                chunksize: Optional[int] = None) -> List[Any]:
        """Like :meth:`map`, each item a tuple spread over the parameters:
        ``starmap(power, [(2, 3), (3, 2)])`` is ``[power(2, 3), power(3, 2)]``."""
        return self._map_async(func, iterable, chunksize, True, None, None).get()

    def starmap_async(self, func: Task, iterable: Iterable[Sequence[Any]],
                      chunksize: Optional[int] = None,
                      callback: Optional[Callable[[Any], Any]] = None,
                      error_callback: Optional[Callable[[BaseException], Any]] = None) -> MapResult:
        """Starts a :meth:`starmap`."""
        return self._map_async(func, iterable, chunksize, True, callback, error_callback)

    def _map_async(self, func: Task, iterable: Iterable[Any], chunksize: Optional[int],
                   star: bool, callback: Any, error_callback: Any) -> MapResult:
        self._check_running()
        if chunksize is not None and chunksize < 1:
            raise ValueError("Chunksize must be 1+, not {0:n}".format(chunksize))
        task = self._task(func)
        if not isinstance(iterable, (list, tuple, range)):
            iterable = list(iterable)
        native = self._native.map_async(task, iterable, chunksize, star)
        return MapResult(self, native, callback, error_callback)

    def imap(self, func: Task, iterable: Iterable[Any], chunksize: int = 1) -> IMapIterator:
        """A lazy iterator of the values, in input order. Chunks are sized by how long items
        take (``chunksize`` is accepted for compatibility: the adaptive size does better)."""
        self._check_running()
        return IMapIterator(self, self._native.imap(self._task(func), iterable, True, False))

    def imap_unordered(self, func: Task, iterable: Iterable[Any], chunksize: int = 1) -> IMapIterator:
        """Like :meth:`imap`, but the values come as the calls end."""
        self._check_running()
        return IMapIterator(self, self._native.imap(self._task(func), iterable, False, False))

    # -- shared state -----------------------------------------------------------------------

    def Value(self, name: str, initial: Union[int, float] = 0) -> SharedValue:  # noqa: N802
        """A shared value named ``name`` (``multiprocessing.Value``): a 64-bit integer for an
        ``int`` ``initial``, a 64-bit float for a ``float``. Tasks granted it open it by
        name (``wasmpool:shared/value``)."""
        self._check_running()
        return SharedValue(self._native.value(name, initial))

    def Array(self, name: str, size_or_sequence: Union[int, Iterable[Any]],  # noqa: N802
              typecode: Optional[str] = None) -> SharedArray:
        """A shared array (``multiprocessing.Array``): ``size`` zeros, or the numbers of a
        sequence; 64-bit floats if ``typecode`` is ``"d"`` (or ``"f"``) or any number is a
        float, else 64-bit integers."""
        self._check_running()
        floats = typecode in ("d", "f")
        if typecode is not None and typecode not in ("d", "f", "q", "l", "i"):
            raise ValueError(f"typecode {typecode!r}: a shared array holds 'q' (64-bit "
                             "integers) or 'd' (64-bit floats)")
        if isinstance(size_or_sequence, int) and not isinstance(size_or_sequence, bool):
            if size_or_sequence < 0:
                raise ValueError("an array's size must not be negative")
            return SharedArray(self._native.array(name, len=size_or_sequence, float=floats))
        values = list(size_or_sequence)
        if floats or any(isinstance(v, float) for v in values):
            return SharedArray(self._native.array(name, float_values=[float(v) for v in values]))
        return SharedArray(self._native.array(name, values=values))

    def Lock(self, name: str) -> SharedLock:  # noqa: N802
        """A lock shared by this process and every worker (``multiprocessing.Lock``)."""
        self._check_running()
        return SharedLock(self._native.lock(name))

    def Queue(self, name: str, maxsize: int = 0) -> SharedQueue:  # noqa: N802
        """A first-in first-out queue (``multiprocessing.Queue``), unbounded (``maxsize``
        0: as many items as fit in 4 MiB) or holding ``maxsize`` items at most."""
        self._check_running()
        if maxsize < 0:
            maxsize = 0
        return SharedQueue(self._native.queue(name, maxsize))

    def Pipe(self, name: str) -> "tuple[PipeEnd, PipeEnd]":  # noqa: N802
        """A two-ended channel (``multiprocessing.Pipe``): its ends, named ``NAME.a`` and
        ``NAME.b`` (what a task opens each by)."""
        self._check_running()
        a, b = self._native.pipe(name)
        return PipeEnd(a), PipeEnd(b)

    def dict(self, name: str) -> SharedDict:
        """A shared dictionary (``Manager().dict()``), which tasks reach as the
        ``wasi:keyvalue`` bucket ``name``."""
        self._check_running()
        return SharedDict(self._native.dict(name))

    def share(self, *objects: Any) -> None:
        """Grants shared objects to every task this pool runs that has no grants of its own
        (a task's ``with_grants`` replaces the pool's grants, these too). Each argument is
        what ``with_grants(shared=...)`` takes: an object, a list of them, or a mapping
        ``{name: object}``. Names granted again are granted to the newest object."""
        by_name = dict(self._shared)
        for spec in objects:
            for name, native in _shared_list(spec):
                by_name[name] = native
        self._shared = list(by_name.items())
        self._granted = {}

    def close(self) -> None:
        """Stops new submissions; queued and running tasks finish."""
        if self._state == _RUN:
            self._state = _CLOSE
        self._native.close()

    def join(self) -> None:
        """Waits for the queued work and the workers' exit; call :meth:`close` first."""
        if self._state == _RUN:
            raise ValueError("Pool is still running")
        self._interruptible(self._native.join)
        self._stop_completer()

    def terminate(self) -> None:
        """Kills the workers at once: running and queued tasks end with :class:`Cancelled`.
        Returns once every worker process has been reaped."""
        self._state = _TERMINATE
        self._native.terminate()
        self._stop_completer()

    def _stop_completer(self) -> None:
        c = self._completer_obj
        if c is not None:
            c.stop()

    def __del__(self) -> None:
        c = getattr(self, "_completer_obj", None)
        if c is not None:
            c._native.stop()

    def __enter__(self) -> "Pool":
        self._check_running()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.terminate()

    def __repr__(self) -> str:
        return f"<wasmpool.Pool state={self._state} processes={self.processes}>"


# ---------------------------------------------------------------------------------------------
# Executor

_PENDING = "PENDING"
_RUNNING = "RUNNING"
_FINISHED = "FINISHED"


# What `concurrent.futures.Future.__init__` sets (the same from 3.9 to 3.13): a `_Future` sets
# it itself, with its executor's condition instead of a new one each, when this holds.
_FUTURE_FIELDS = {"_condition", "_state", "_result", "_exception", "_waiters", "_done_callbacks"}
_LEAN_FUTURES = set(vars(_cf.Future())) == _FUTURE_FIELDS


class _Future(_cf.Future):
    """A real ``concurrent.futures.Future``, completed by wasmpool's completer thread, whose
    ``cancel`` cancels the call if it has not started.

    The futures of one executor share one condition (a ``threading.Condition`` each is most
    of what a future costs to make): ``result()`` and ``exception()`` wait on the call itself,
    not on the condition, so a notification meant for another future wakes no one wrongly;
    ``as_completed`` and ``wait`` take the (reentrant) lock of each future as ever."""

    def __init__(self, native: Any, executor: "Executor") -> None:
        if _LEAN_FUTURES:
            self._condition = executor._condition
            self._state = _PENDING
            self._result = None
            self._exception = None
            self._waiters = []
            self._done_callbacks = []
        else:
            super().__init__()
        self._native = native
        self._executor_ref = executor

    def cancel(self) -> bool:
        with self._condition:
            if self._state in (_RUNNING, _FINISHED):
                return False
            if self._state != _PENDING:
                return True
        if not self._native.cancel():
            return False
        return super().cancel()

    def running(self) -> bool:
        return self._state == _PENDING and self._native.running() or super().running()

    def _wait_native(self, timeout: Optional[float]) -> None:
        """Waits on the call itself (the GIL released, Ctrl-C terminating the pool), and
        settles the future if the completer has not yet: a lone ``result()`` does not wait
        for the completer's thread."""
        if self._state != _PENDING:
            return
        try:
            if not self._native.wait(timeout):
                return  # the timeout passed: Future's own code raises TimeoutError
        except KeyboardInterrupt:
            self._executor_ref._pool.terminate()
            raise
        if self._state == _PENDING:
            self._settle(*self._native.outcome())

    def result(self, timeout: Optional[float] = None) -> Any:
        self._wait_native(timeout)
        return super().result(0 if self._state == _PENDING else timeout)

    def exception(self, timeout: Optional[float] = None) -> Optional[BaseException]:
        self._wait_native(timeout)
        return super().exception(0 if self._state == _PENDING else timeout)

    def _settle(self, ok: bool, value: Any) -> None:
        if self._state != _PENDING:
            return  # cancelled
        try:
            if ok:
                self.set_result(value)
            else:
                self.set_exception(value)
        except _cf.InvalidStateError:
            pass


def _hosts(hosts: Any) -> List[tuple]:
    """``hosts`` as ``[(host, workers)]``: a mapping, ``"a:4,b:8"``, or a list of
    ``"host:N"``, ``"host"`` (one worker) or ``(host, N)``."""
    if isinstance(hosts, str):
        hosts = [h for h in hosts.split(",") if h.strip()]
    if isinstance(hosts, Mapping):
        items = list(hosts.items())
    else:
        items = []
        for entry in hosts:
            if isinstance(entry, str):
                host, sep, count = entry.strip().rpartition(":")
                if not sep or not count.isdigit():
                    host, count = entry.strip(), "1"
                items.append((host, int(count)))
            else:
                host, count = entry
                items.append((host, count))
    out = []
    for host, count in items:
        if not isinstance(host, str) or not host:
            raise ValueError("a host is a non-empty name, not {0!r}".format(host))
        if isinstance(count, bool) or not isinstance(count, int) or count < 1:
            raise ValueError("host {0!r}: at least one worker, not {1!r}".format(host, count))
        out.append((host, count))
    return out


def _remote(hosts: Any, launcher: Any, remote_bin: Optional[str], local: Optional[int],
            startup_timeout: Optional[float], link_timeout: Optional[float]) -> Any:
    """The native spec of a pool's remote workers, or ``None`` for a local pool."""
    if hosts is None and launcher is None:
        for name, value in (("remote_bin", remote_bin), ("local", local),
                            ("startup_timeout", startup_timeout),
                            ("link_timeout", link_timeout)):
            if value is not None:
                raise ValueError("{0} is for remote workers: give hosts or a launcher"
                                 .format(name))
        return None
    if local is not None and (isinstance(local, bool) or local < 0):
        raise ValueError("local is a number of workers, 0 or more, not {0!r}".format(local))
    argv = None
    if launcher is not None and not isinstance(launcher, str):
        argv = [str(word) for word in launcher]
        launcher = None
    return _wasmpool.RemoteSpec(
        launcher=launcher,
        argv=argv,
        hosts=_hosts(hosts) if hosts is not None else [],
        local=local or 0,
        remote_bin=remote_bin,
        startup_timeout=None if startup_timeout is None else float(startup_timeout),
        link_timeout=None if link_timeout is None else float(link_timeout),
    )


class Executor(_cf.Executor):
    """A ``concurrent.futures.Executor`` over a wasmpool :class:`Pool`: ``submit`` returns a
    real ``concurrent.futures.Future``, so ``as_completed``, ``wait`` and
    ``add_done_callback`` work as with ``ProcessPoolExecutor``. ``max_workers`` and the
    keywords are :class:`Pool`'s."""

    def __init__(self, max_workers: Optional[int] = None, **pool_kwargs: Any) -> None:
        if max_workers is not None and max_workers <= 0:
            raise ValueError("max_workers must be greater than 0")
        self._pool = Pool(max_workers, **pool_kwargs)
        self._shutdown = False
        self._condition = _threading.Condition()
        self._completer = self._pool._completer()
        self._completer._start()
        self._submit = self._pool._native.submit
        self._watch = self._completer._native.watch

    @property
    def pool(self) -> Pool:
        """The pool underneath."""
        return self._pool

    def load(self, path: Union[str, "_os.PathLike[str]"], **kwargs: Any) -> Module:
        """:func:`load` (as :meth:`Pool.load`)."""
        return self._pool.load(path, **kwargs)

    def submit(self, fn: Task, /, *args: Any, **kwargs: Any) -> "_cf.Future[Any]":  # type: ignore[override]
        """Starts ``fn(*args, **kwargs)``; a ``concurrent.futures.Future`` of its value."""
        if self._shutdown:
            raise RuntimeError("cannot schedule new futures after shutdown")
        if kwargs:
            args = _call_args(fn, args, kwargs)
        try:
            native = self._submit(self._pool._task(fn) if self._pool._shared else fn._native,
                                  args)
        except AttributeError:
            native = self._submit(_native_task(fn), args)
        future = _Future(native, self)
        self._watch(native, future)
        return future

    def map(self, fn: Task, *iterables: Iterable[Any], timeout: Optional[float] = None,  # type: ignore[override]
            chunksize: int = 1) -> Iterator[Any]:
        """Like the built-in ``map`` over the values, in order, computed in parallel;
        several iterables are zipped and spread over the parameters."""
        if self._shutdown:
            raise RuntimeError("cannot schedule new futures after shutdown")
        task = self._pool._task(fn)
        if len(iterables) == 1:
            native = self._pool._native.imap(task, iterables[0], True, False)
        else:
            native = self._pool._native.imap(task, zip(*iterables), True, True)
        end = None if timeout is None else _time.monotonic() + timeout
        pool = self._pool

        def results() -> Iterator[Any]:
            while True:
                remaining = None if end is None else max(0.0, end - _time.monotonic())
                try:
                    value = pool._interruptible(native.next, remaining)
                except StopIteration:
                    return
                except _mp.TimeoutError:
                    raise _cf.TimeoutError() from None
                yield value

        return results()

    def Value(self, name: str, initial: Union[int, float] = 0) -> SharedValue:  # noqa: N802
        """:meth:`Pool.Value` of the pool underneath."""
        return self._pool.Value(name, initial)

    def Array(self, name: str, size_or_sequence: Union[int, Iterable[Any]],  # noqa: N802
              typecode: Optional[str] = None) -> SharedArray:
        """:meth:`Pool.Array` of the pool underneath."""
        return self._pool.Array(name, size_or_sequence, typecode)

    def Lock(self, name: str) -> SharedLock:  # noqa: N802
        """:meth:`Pool.Lock` of the pool underneath."""
        return self._pool.Lock(name)

    def Queue(self, name: str, maxsize: int = 0) -> SharedQueue:  # noqa: N802
        """:meth:`Pool.Queue` of the pool underneath."""
        return self._pool.Queue(name, maxsize)

    def Pipe(self, name: str) -> "tuple[PipeEnd, PipeEnd]":  # noqa: N802
        """:meth:`Pool.Pipe` of the pool underneath."""
        return self._pool.Pipe(name)

    def dict(self, name: str) -> SharedDict:
        """:meth:`Pool.dict` of the pool underneath."""
        return self._pool.dict(name)

    def share(self, *objects: Any) -> None:
        """:meth:`Pool.share` of the pool underneath."""
        self._pool.share(*objects)

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        """Stops taking work; with ``cancel_futures``, cancels what has not started; with
        ``wait``, waits for the rest and for the workers' exit."""
        self._shutdown = True
        if cancel_futures:
            for f in self._completer._native.pending():
                if isinstance(f, _Future):
                    f.cancel()
        if wait:
            self._pool.close()
            self._pool.join()
        else:
            self._pool.close()

    def __exit__(self, *exc: Any) -> None:  # type: ignore[override]
        if exc and exc[0] is not None and issubclass(exc[0], KeyboardInterrupt):
            self._pool.terminate()
            return None
        self.shutdown(wait=True)
        return None


# ---------------------------------------------------------------------------------------------
# Process


class Process:
    """One task in a worker process of its own: ``multiprocessing.Process`` with a wasm task
    as its target. ``Process(task, args)`` (or ``target=task``); ``start``, ``join``,
    ``is_alive``, ``exitcode`` (0 for a value, 1 for a failure, ``-signal`` for a killed
    worker), ``kill``; ``result()`` gives the task's value or raises its exception."""

    def __init__(self, task: Optional[Task] = None, args: Any = (),
                 kwargs: Optional[Mapping[str, Any]] = None, *, target: Optional[Task] = None,
                 name: Optional[str] = None) -> None:
        task = task if task is not None else target
        if task is None:
            raise TypeError("Process needs a task (Process(task, args) or target=task)")
        worker_binary()
        self._native = _wasmpool.Process(_native_task(task), _call_args(task, args, kwargs))
        self.name = name or f"wasmpool.Process-{task.name}"
        self._started = False

    def start(self) -> None:
        """Starts the worker process and the task in it."""
        if self._started:
            raise AssertionError("cannot start a process twice")
        self._started = True
        self._native.start()

    def join(self, timeout: Optional[float] = None) -> None:
        """Waits for the task to end, at most ``timeout`` seconds."""
        if not self._started:
            raise AssertionError("can only join a started process")
        try:
            self._native.join(timeout)
        except KeyboardInterrupt:
            self._native.kill()
            raise

    def is_alive(self) -> bool:
        """Whether the process has started and not yet ended."""
        return self._native.is_alive()

    @property
    def pid(self) -> Optional[int]:
        """The worker process's id, once started."""
        return self._native.pid

    @property
    def exitcode(self) -> Optional[int]:
        """``None`` while running; then 0 (a value), 1 (a failure), or ``-N`` (killed by
        signal ``N``)."""
        return self._native.exitcode

    def kill(self) -> None:
        """Kills the worker (SIGKILL)."""
        self._native.kill()

    terminate = kill

    def result(self, timeout: Optional[float] = None) -> Any:
        """Waits for the task (at most ``timeout`` seconds, then ``TimeoutError``); its value,
        or raises its exception."""
        self.join(timeout)
        outcome = self._native.outcome()
        if outcome is None:
            raise _mp.TimeoutError
        ok, value = outcome
        if ok:
            return value
        raise value

    def __repr__(self) -> str:
        return f"<wasmpool.Process {self.name} pid={self.pid} exitcode={self.exitcode}>"


def _terminate_all() -> None:
    """At exit: every pool terminated, every completer thread ended (before the interpreter
    finalizes, which would kill a daemon thread inside a native wait)."""
    for pool in list(_live_pools):
        try:
            pool.terminate()
        except Exception:
            pass
    for completer in list(_completers):
        completer.stop()


import atexit as _atexit  # noqa: E402

_atexit.register(_terminate_all)
