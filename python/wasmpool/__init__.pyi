"""Type stubs of wasmpool: the pool from Python over WebAssembly tasks (see __init__.py)."""

import concurrent.futures
import multiprocessing
import os
from typing import Any, Callable, Iterable, Iterator, List, Mapping, Optional, Sequence, Tuple, Union

from ._errors import (
    ArgsTooLarge as ArgsTooLarge,
    BadInput as BadInput,
    BatchLength as BatchLength,
    Cancelled as Cancelled,
    Error as Error,
    GuestError as GuestError,
    InternalError as InternalError,
    InvalidModule as InvalidModule,
    LimitExceeded as LimitExceeded,
    MemoryLimit as MemoryLimit,
    NoSuchExport as NoSuchExport,
    OutOfFuel as OutOfFuel,
    OutputLimit as OutputLimit,
    PoolClosed as PoolClosed,
    ResultTooLarge as ResultTooLarge,
    ResultType as ResultType,
    SandboxError as SandboxError,
    StackOverflow as StackOverflow,
    TableLimit as TableLimit,
    TaskError as TaskError,
    Timeout as Timeout,
    Trap as Trap,
    WasmpoolError as WasmpoolError,
    WorkerCrashed as WorkerCrashed,
)

__version__: str
TimeoutError = multiprocessing.TimeoutError

_Path = Union[str, "os.PathLike[str]"]
_Size = Union[int, str, None]
#: Directory grants: ``{host: guest}``, or ``["HOST::GUEST", ...]``, or ``[(host, guest), ...]``.
_Dirs = Union[Mapping[_Path, str], Iterable[Union[str, Tuple[_Path, str]]], None]

def cpu_count() -> Optional[int]: ...
def worker_binary() -> str: ...
def load(
    path: _Path,
    *,
    max_bytes: Optional[int] = ...,
    compile_timeout: Optional[float] = ...,
    compile_memory: _Size = ...,
    timeout: Optional[float] = ...,
    fuel: Optional[int] = ...,
) -> Module: ...

class Task:
    @property
    def name(self) -> str: ...
    @property
    def signature(self) -> str: ...
    @property
    def params(self) -> List[Tuple[str, str]]: ...
    @property
    def results(self) -> List[str]: ...
    def check(self, args: Any = ..., kwds: Optional[Mapping[str, Any]] = ...) -> None: ...
    def with_limits(
        self,
        *,
        timeout: Optional[float] = ...,
        fuel: Optional[int] = ...,
        max_memory: _Size = ...,
        max_table_elements: Optional[int] = ...,
        max_output: _Size = ...,
        max_result: _Size = ...,
    ) -> Task: ...
    def with_grants(
        self, *, dirs: _Dirs = ..., ro_dirs: _Dirs = ..., env: Optional[Mapping[str, str]] = ...
    ) -> Task: ...
    def with_instance_reuse(self) -> Task: ...
    def batched(self) -> Task: ...

class Module:
    def task(
        self,
        name: str,
        *,
        timeout: Optional[float] = ...,
        fuel: Optional[int] = ...,
        max_memory: _Size = ...,
        max_table_elements: Optional[int] = ...,
        max_output: _Size = ...,
        max_result: _Size = ...,
        dirs: _Dirs = ...,
        ro_dirs: _Dirs = ...,
        env: Optional[Mapping[str, str]] = ...,
    ) -> Task: ...
    def program(self) -> Task: ...
    @property
    def exports(self) -> List[str]: ...
    @property
    def export_names(self) -> List[str]: ...
    @property
    def origin(self) -> str: ...
    @property
    def kind(self) -> str: ...

class AsyncResult:
    def ready(self) -> bool: ...
    def successful(self) -> bool: ...
    def wait(self, timeout: Optional[float] = ...) -> None: ...
    def get(self, timeout: Optional[float] = ...) -> Any: ...

class MapResult(AsyncResult):
    def get(self, timeout: Optional[float] = ...) -> List[Any]: ...

class IMapIterator(Iterator[Any]):
    def __iter__(self) -> IMapIterator: ...
    def __next__(self) -> Any: ...
    def next(self, timeout: Optional[float] = ...) -> Any: ...

class Pool:
    def __init__(
        self,
        processes: Optional[int] = ...,
        *,
        timeout: Optional[float] = ...,
        fuel: Optional[int] = ...,
        max_memory: _Size = ...,
        max_table_elements: Optional[int] = ...,
        max_output: _Size = ...,
        max_result: _Size = ...,
        dirs: _Dirs = ...,
        ro_dirs: _Dirs = ...,
        env: Optional[Mapping[str, str]] = ...,
        retries: int = ...,
        chunksize: Optional[int] = ...,
        maxtasksperchild: Optional[int] = ...,
        max_tasks_per_worker: Optional[int] = ...,
        max_wasm_stack: _Size = ...,
    ) -> None: ...
    @property
    def processes(self) -> int: ...
    def worker_pids(self) -> List[int]: ...
    def load(self, path: _Path, **kwargs: Any) -> Module: ...
    def apply(self, func: Task, args: Any = ..., kwds: Optional[Mapping[str, Any]] = ...) -> Any: ...
    def apply_async(
        self,
        func: Task,
        args: Any = ...,
        kwds: Optional[Mapping[str, Any]] = ...,
        callback: Optional[Callable[[Any], Any]] = ...,
        error_callback: Optional[Callable[[BaseException], Any]] = ...,
    ) -> AsyncResult: ...
    def map(self, func: Task, iterable: Iterable[Any], chunksize: Optional[int] = ...) -> List[Any]: ...
    def map_async(
        self,
        func: Task,
        iterable: Iterable[Any],
        chunksize: Optional[int] = ...,
        callback: Optional[Callable[[List[Any]], Any]] = ...,
        error_callback: Optional[Callable[[BaseException], Any]] = ...,
    ) -> MapResult: ...
    def starmap(
        self, func: Task, iterable: Iterable[Sequence[Any]], chunksize: Optional[int] = ...
    ) -> List[Any]: ...
    def starmap_async(
        self,
        func: Task,
        iterable: Iterable[Sequence[Any]],
        chunksize: Optional[int] = ...,
        callback: Optional[Callable[[List[Any]], Any]] = ...,
        error_callback: Optional[Callable[[BaseException], Any]] = ...,
    ) -> MapResult: ...
    def imap(self, func: Task, iterable: Iterable[Any], chunksize: int = ...) -> IMapIterator: ...
    def imap_unordered(self, func: Task, iterable: Iterable[Any], chunksize: int = ...) -> IMapIterator: ...
    def close(self) -> None: ...
    def join(self) -> None: ...
    def terminate(self) -> None: ...
    def __enter__(self) -> Pool: ...
    def __exit__(self, *exc: Any) -> None: ...

class Executor(concurrent.futures.Executor):
    def __init__(
        self,
        max_workers: Optional[int] = ...,
        *,
        timeout: Optional[float] = ...,
        fuel: Optional[int] = ...,
        max_memory: _Size = ...,
        max_table_elements: Optional[int] = ...,
        max_output: _Size = ...,
        max_result: _Size = ...,
        dirs: _Dirs = ...,
        ro_dirs: _Dirs = ...,
        env: Optional[Mapping[str, str]] = ...,
        retries: int = ...,
        chunksize: Optional[int] = ...,
        max_tasks_per_worker: Optional[int] = ...,
    ) -> None: ...
    @property
    def pool(self) -> Pool: ...
    def load(self, path: _Path, **kwargs: Any) -> Module: ...
    def submit(self, fn: Task, /, *args: Any, **kwargs: Any) -> concurrent.futures.Future[Any]: ...  # type: ignore[override]
    def map(  # type: ignore[override]
        self, fn: Task, *iterables: Iterable[Any], timeout: Optional[float] = ..., chunksize: int = ...
    ) -> Iterator[Any]: ...
    def shutdown(self, wait: bool = ..., *, cancel_futures: bool = ...) -> None: ...

class Process:
    name: str
    def __init__(
        self,
        task: Optional[Task] = ...,
        args: Any = ...,
        kwargs: Optional[Mapping[str, Any]] = ...,
        *,
        target: Optional[Task] = ...,
        name: Optional[str] = ...,
    ) -> None: ...
    def start(self) -> None: ...
    def join(self, timeout: Optional[float] = ...) -> None: ...
    def is_alive(self) -> bool: ...
    @property
    def pid(self) -> Optional[int]: ...
    @property
    def exitcode(self) -> Optional[int]: ...
    def kill(self) -> None: ...
    def terminate(self) -> None: ...
    def result(self, timeout: Optional[float] = ...) -> Any: ...
