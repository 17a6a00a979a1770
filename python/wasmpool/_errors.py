"""The exceptions of wasmpool.

Every way one task can fail is a subclass of :class:`TaskError`, raised from ``get()`` /
``result()`` (or from ``map``, ``apply``, the iterators of ``imap``) as multiprocessing raises a
task's exception. Each carries ``func`` (the export that was called), ``kind`` (a short stable
name, the command line's ``"kind"``) and the fields of its case; ``str(e)`` is the library's
own message. What goes wrong with a module or a pool (loading, starting workers) is an
:class:`Error`.
"""

from __future__ import annotations

from typing import Any, Optional


class WasmpoolError(Exception):
    """The base of every exception wasmpool raises."""

    kind: str = "error"

    def __init__(self, message: str = "") -> None:
        super().__init__(message)
        self.message = message


class Error(WasmpoolError):
    """A module could not be loaded, or a pool could not be started or used.

    ``kind`` says which: ``"invalid-module"``, ``"no-such-export"``, ``"read"``, ``"spawn"``,
    ``"handshake"``, ``"grant"``, ``"closed"``, ``"compile-timeout"``, ``"compile-failed"``,
    ``"module-too-large"``, ``"not-a-program"``, ``"not-batchable"``, ``"unsupported-export"``,
    ``"already-started"``, ``"worker-not-found"``.
    """


class InvalidModule(Error):
    """The bytes are not a valid WebAssembly module or component (or import what no worker
    provides)."""

    kind = "invalid-module"


class NoSuchExport(Error, LookupError):
    """The module has no export by that name; the message lists those it has."""

    kind = "no-such-export"


class Closed(WasmpoolError, EOFError, ValueError):
    """A shared queue or pipe is closed: a ``get`` / ``recv`` after the queue was closed and
    drained (or the pipe's other end closed, and every message it sent was received), or a
    ``put`` on a closed queue. Also an ``EOFError`` (what multiprocessing's
    ``Connection.recv`` raises at the end) and a ``ValueError`` (what its closed ``Queue``
    raises)."""

    kind = "closed"


class TaskError(WasmpoolError):
    """One task did not produce a value. The base of every per-task failure."""

    kind: str = "task"
    func: Optional[str] = None


class Trap(TaskError):
    """The guest trapped (``unreachable``, a Rust panic, a division by zero...).

    ``trap`` is wasmtime's description, ``panic`` the panic message when the guest panicked,
    ``backtrace`` the wasm backtrace when one was captured."""

    kind = "trap"
    trap: Optional[str] = None
    panic: Optional[str] = None
    backtrace: Optional[str] = None


class GuestError(TaskError):
    """The export returned the ``err`` case of its ``result<T, E>``: ``value`` is ``E`` as a
    Python value (``None`` for a ``result`` without an error type)."""

    kind = "guest"
    value: Any = None
    error_message: Optional[str] = None


class BadInput(TaskError, TypeError):
    """The arguments do not fit the export's WIT signature (wrong count, wrong type).

    ``detail`` says what is wrong, ``param`` where (``p.tags[2]``) when one value is at fault.
    Nothing was sent to a worker."""

    kind = "bad-input"
    detail: Optional[str] = None
    param: Optional[str] = None


class ArgsTooLarge(TaskError):
    """The arguments are larger than one frame to a worker may be."""

    kind = "args-too-large"


class LimitExceeded(TaskError):
    """A limit fired: the base of :class:`Timeout`, :class:`OutOfFuel`,
    :class:`MemoryLimit`, :class:`TableLimit`, :class:`StackOverflow`,
    :class:`ResultTooLarge` and :class:`OutputLimit`. ``limit`` is the limit that fired."""

    limit: Any = None


class Timeout(LimitExceeded):
    """The task ran past its wall-clock ``timeout`` (``limit``, in seconds)."""

    kind = "timeout"


class OutOfFuel(LimitExceeded):
    """The task used up its ``fuel`` (instruction budget)."""

    kind = "out-of-fuel"


class MemoryLimit(LimitExceeded):
    """A linear memory of the task tried to grow past ``max_memory`` (``limit``, bytes)."""

    kind = "memory-limit"


class TableLimit(LimitExceeded):
    """A table of the task tried to grow past its cap."""

    kind = "table-limit"


class StackOverflow(LimitExceeded):
    """The task overflowed its wasm stack."""

    kind = "stack-overflow"


class ResultTooLarge(LimitExceeded):
    """The task's result was larger than ``max_result``."""

    kind = "result-too-large"


class OutputLimit(LimitExceeded):
    """The task wrote more than ``max_output`` to its stdout or stderr."""

    kind = "output-limit"


class BatchLength(TaskError):
    """A batch export returned another number of results than it was given elements."""

    kind = "batch-length"


class SandboxError(TaskError):
    """The sandbox could not be set up as granted."""

    kind = "sandbox"


class WorkerCrashed(TaskError):
    """The worker process running the task died (crashed, or was killed) before it answered.

    ``pid`` is the worker's, ``signal`` the signal that killed it (or ``exit_code`` its
    status), ``attempts`` how many times the task was tried (1 + the retries used),
    ``stderr_tail`` the last lines it wrote to stderr. The pool replaced the worker."""

    kind = "worker-crashed"
    pid: Optional[int] = None
    signal: Optional[int] = None
    exit_code: Optional[int] = None
    attempts: Optional[int] = None
    detail: Optional[str] = None
    stderr_tail: Optional[str] = None


class Cancelled(TaskError):
    """The task was cancelled, or its pool terminated, before it finished."""

    kind = "cancelled"


class PoolClosed(TaskError):
    """The pool was closed before the task was submitted."""

    kind = "pool-closed"


class ResultType(TaskError):
    """The task's value could not be converted."""

    kind = "result-type"


class InternalError(TaskError):
    """A fault inside wasmpool itself. Please report it."""

    kind = "internal"


__all__ = [
    "WasmpoolError",
    "Error",
    "InvalidModule",
    "NoSuchExport",
    "Closed",
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
