#!/usr/bin/env bash
# Builds and runs a crate outside the workspace against the library as `cargo package`
# packages it: proof that a stranger can depend on `wasmpool` without the guest sources, the
# wasm target or the rest of this repository. Run from the repository's root, after a release
# build: it shares the build directory and the lock file, so it compiles only wasmpool and
# itself, not wasmtime again.
set -euo pipefail
root=$PWD
cargo package -p wasmpool --no-verify --quiet
crate=$(ls target/package/wasmpool-*.crate | sort | tail -n 1)
outside=$(mktemp -d)
trap 'rm -rf "$outside"' EXIT
tar -xzf "$crate" -C "$outside"
library=$(ls -d "$outside"/wasmpool-*/)
if [ -e "$library/build.rs" ] || [ -e "$library/guest-tasks" ]; then
    echo "the packaged library carries a build script or guest sources" >&2
    exit 1
fi
mkdir -p "$outside/app/src"
cp .ci/outside/main.rs "$outside/app/src/main.rs"
cp Cargo.lock "$outside/app/Cargo.lock"
# The same features of wasmtime's dependencies and the same release profile as the workspace's
# test build (see the root Cargo.toml; `anyhow` with its default features comes from the CLI),
# so that this build reuses its wasmtime. Should they drift apart, cargo would compile
# wasmtime a third time, minutes on two cores: fail instead, as the demo step does.
cat > "$outside/app/Cargo.toml" <<TOML
[package]
name = "outside"
version = "0.0.0"
edition = "2024"
publish = false

[dependencies]
wasmpool = { path = "$library" }
serde_json = "1"
anyhow = "1"
fnv = "1"
once_cell = "1"
rand = { version = "0.10", features = ["std", "sys_rng"] }

[profile.release]
debug = "line-tables-only"

[workspace]
TOML
status=0
CARGO_TARGET_DIR="$root/target" cargo run --release --manifest-path "$outside/app/Cargo.toml" \
    2> "$outside/build.stderr" || status=$?
cat "$outside/build.stderr" >&2
[ "$status" -eq 0 ] || exit "$status"
if grep -q "Compiling wasmtime v" "$outside/build.stderr"; then
    echo "the crate outside the workspace compiled wasmtime again: its features differ from the workspace's" >&2
    exit 1
fi
