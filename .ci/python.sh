#!/usr/bin/env bash
# The Python package (issue 20): build the wheel with maturin, install it into a fresh virtual
# environment, run the pytest suite and the examples. Called from .ci/run after the tests;
# runs alone too, from a clean clone (`bash .ci/python.sh`), given Rust and python3 (3.9+).
#
# The wheel carries the `wasmpool` binary (the workers' program) at wasmpool/bin/wasmpool:
# this script copies it there from `cargo build --release` before maturin builds. Both use
# the workspace's release build in target/ (maturin honours CARGO_TARGET_DIR and --release),
# so wasmtime is not compiled again: only pyo3, the library crate (once, for the extension's
# feature set) and the extension are (about a minute on two cores the first time, then
# seconds; this whole step about 60 s then). The script says so should maturin ever compile
# wasmtime.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$root/target}"
started=$SECONDS

echo "--- the worker binary (cargo build --release: reuses the workspace build)"
cargo build --release --quiet
mkdir -p python/wasmpool/bin
# Stripped of its line tables: 130 MB of debug sections are no use in a wheel.
strip -o python/wasmpool/bin/wasmpool "$CARGO_TARGET_DIR/release/wasmpool" 2>/dev/null \
    || cp "$CARGO_TARGET_DIR/release/wasmpool" python/wasmpool/bin/wasmpool
chmod 755 python/wasmpool/bin/wasmpool

# The crate is a workspace member but not a default one (cargo build and cargo test at the
# root do not build it): its lints are checked here.
echo "--- lint (cargo clippy -p wasmpool-python)"
cargo clippy --release --quiet -p wasmpool-python -- -D warnings

echo "--- a fresh virtual environment with maturin and pytest"
venv="$CARGO_TARGET_DIR/python-ci/venv"
rm -rf "$CARGO_TARGET_DIR/python-ci"
python3 -m venv "$venv"
"$venv/bin/pip" install --quiet --disable-pip-version-check maturin pytest

echo "--- the wheel (maturin build --release)"
wheels="$CARGO_TARGET_DIR/python-ci/wheels"
build_log="$CARGO_TARGET_DIR/python-ci/maturin.log"
(cd python && "$venv/bin/maturin" build --release --strip --interpreter "$venv/bin/python" \
    --out "$wheels") 2>&1 | tee "$build_log"
if grep -q "Compiling wasmtime " "$build_log"; then
    echo "note: maturin compiled wasmtime again (its features differ from the workspace build's)" >&2
fi
wheel=$(ls "$wheels"/wasmpool-*.whl)
ls -l "$wheel"
"$venv/bin/pip" install --quiet --disable-pip-version-check "$wheel"

echo "--- pytest (python/tests, against the installed wheel)"
# The hostile guest (a test fixture the binary does not embed), as the workspace build made it,
# for the tests of grants and hostile limits (test_grants.py; skipped without it).
hostile=$(ls -t "$CARGO_TARGET_DIR"/release/build/wasmpool-artifacts-*/out/guest-target/wasm32-wasip2/release/hostile.wasm 2>/dev/null | head -1 || true)
if [ -n "$hostile" ]; then
    export WASMPOOL_TEST_HOSTILE="$hostile"
else
    echo "note: no hostile.wasm in $CARGO_TARGET_DIR: test_grants.py is skipped" >&2
fi
# The shared guest (world `shared`: locks, values, queues, pipes, dicts), likewise, for the
# shared-state tests (test_shared.py) and the shared_counter example: always there, since the
# workspace build makes it.
shared=$(ls -t "$CARGO_TARGET_DIR"/release/build/wasmpool-artifacts-*/out/guest-target/wasm32-wasip2/release/shared.wasm 2>/dev/null | head -1 || true)
if [ -z "$shared" ]; then
    echo "error: no shared.wasm in $CARGO_TARGET_DIR (the workspace build makes it)" >&2
    exit 1
fi
export WASMPOOL_TEST_SHARED="$shared"
# From the tests' directory, so that `import wasmpool` is the installed package.
(cd python/tests && "$venv/bin/python" -m pytest -p no:cacheprovider -q -o addopts="" .)

echo "--- the Python examples"
tasks="$CARGO_TARGET_DIR/python-ci/tasks"
mkdir -p "$tasks"
"$venv/bin/python" -c "import wasmpool; print(wasmpool.worker_binary())"
python/wasmpool/bin/wasmpool tasks --export "$tasks" > /dev/null
cp "$shared" "$tasks/shared.wasm"   # for shared_counter.py, beside the built-in tasks
for example in python/examples/[a-z]*.py; do
    echo "--- example $(basename "$example")"
    (cd python/examples && "$venv/bin/python" "$(basename "$example")" "$tasks" > /dev/null)
done
echo "python step: $((SECONDS - started)) s"
