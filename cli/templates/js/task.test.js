// Native tests of task.js, on Node itself: `npm test`.
import { test } from "node:test";
import assert from "node:assert/strict";

import { divide, greet } from "./task.js";

test("greets", () => {
  assert.equal(greet("Ada"), "Hello, Ada!");
});

test("divides or says why not", () => {
  assert.equal(divide(7, 2), 3);
  assert.equal(divide(-9, 2), -4);
  assert.throws(() => divide(1, 0), (e) => e === "cannot divide 1 by zero");
});
