"""The task {{name}}: a WebAssembly component that implements the world in wit/world.wit.

Build it with `wasmpool build` (or the componentize-py line in README.md) and call it with
`wasmpool run {{name}}.wasm greet Ada`.
"""

import wit_world
from componentize_py_types import Err

S32_MAX = 2**31 - 1


class WitWorld(wit_world.WitWorld):
    """One method per export of the world; componentize-py generates `wit_world` from wit/."""

    def greet(self, name: str) -> str:
        return f"Hello, {name}!"

    def divide(self, a: int, b: int) -> int:
        # Raising Err is the task's own failure (`result<s32, string>`'s err): the caller gets
        # the message, and the next item runs. Any other exception traps instead.
        if b == 0:
            raise Err(f"cannot divide {a} by zero")
        # Integer division that rounds toward zero, as in Rust and JavaScript.
        quotient = abs(a) // abs(b)
        if (a < 0) != (b < 0):
            quotient = -quotient
        if quotient > S32_MAX:
            raise Err(f"{a} / {b} overflows s32")
        return quotient
