// The task {{name}}: a WebAssembly component that implements the world in wit/world.wit.
// One exported function per export of the world. Build it with `wasmpool build` (or
// `npm run build`) and call it with `wasmpool run {{name}}.wasm greet Ada`.

const S32_MAX = 2 ** 31 - 1;

export function greet(name) {
  return `Hello, ${name}!`;
}

// s32 arrives and leaves as a number (s64 and u64 as a BigInt, but componentize-js 0.23.0
// gets negative s64 wrong both ways, ComponentizeJS issue #343: prefer s32 or f64). Throwing
// is the task's own failure (the err of `result<s32, string>`): the caller gets the message,
// and the next item runs.
export function divide(a, b) {
  if (b === 0) {
    throw `cannot divide ${a} by zero`;
  }
  const quotient = Math.trunc(a / b); // toward zero, as in Rust
  if (quotient > S32_MAX) {
    throw `${a} / ${b} overflows s32`;
  }
  return quotient;
}
