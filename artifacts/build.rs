//! Builds the guest tasks of `../guest-tasks` (a cargo workspace of its own, for the
//! `wasm32-wasip2` target) and generates `$OUT_DIR/guests.rs`, which `src/lib.rs` includes:
//! one `Guest` constant per task, with the component embedded by `include_bytes!`, the list
//! `ALL`, and the macro `foreach_guest!`, which the integration tests use to insist on a test
//! per guest. So `cargo build` and `cargo run -- demo` on a fresh clone need no other step than
//! `rustup target add wasm32-wasip2`.
//!
//! Every crate of `guest-tasks/` must be listed in `COMPONENTS` below (the build fails
//! otherwise), so a new guest cannot be added without a description, a constant and a test.
//!
//! The nested build runs `$CARGO build --release --target wasm32-wasip2` in `../guest-tasks`,
//! with its own target directory in `$OUT_DIR/guest-target`, and with the environment cleaned of
//! what the outer cargo set for this build script or for the host target (see `clean_env`).
//! The jobserver (`CARGO_MAKEFLAGS`) is kept, so the nested build shares the outer build's job
//! slots instead of starting as many more compilers as there are cores.

use std::env;
use std::fmt::Write as _;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

const GUEST_TARGET: &str = "wasm32-wasip2";

/// The component tasks: (world and crate name, description). The order is that of `ALL`.
const COMPONENTS: &[(&str, &str)] = &[
    (
        "square",
        "square(x) = x * x on s64, the tiny task; slow-square(x, millis) sleeps first; square-many(xs), its batch export (map --batch)",
    ),
    (
        "pure",
        "square(x) = x * x on s64, written without std so that it imports nothing: a fresh instance costs half as much",
    ),
    (
        "power",
        "power(base, exponent) on s64, trapping on overflow",
    ),
    (
        "primes",
        "count-primes-range(lo, hi): trial-division prime count over [lo, hi), the CPU-bound task",
    ),
    (
        "sleep",
        "sleep(millis): sleeps, then returns the elapsed milliseconds",
    ),
    (
        "words",
        "word-count(text) and count-words(text): word frequencies as a list of records; count-words-many(texts), a batch export",
    ),
    (
        "records",
        "describe, area, grant, first-char, minmax: records, enums, variants, flags, options, tuples, chars",
    ),
    (
        "fallible",
        "parse-int(text) and process-item(item): results whose errors are strings",
    ),
    (
        "trap",
        "maybe-crash(x) traps when x = 5, panic(message) and divide(a, b) trap too",
    ),
    (
        "hello",
        "hello(name): prints to stdout and stderr, returns the greeting",
    ),
    (
        "program",
        "a whole program (wasi:cli/run) for `wasmpool exec`: sums the numbers on its stdin; --exit N, --panic, --args, --spin",
    ),
    (
        "hostile",
        "for the sandbox and limits tests: spin, memory-bomb, stack-overflow, huge-result, stdout-flood, unreachable, block, drop-last, spin-on-negative (misbehave); read-file, write-file, list-dir, read-env, read-args, open-socket, read-stdin (probe the sandbox)",
    ),
    (
        "shared",
        "shared state (wasmpool:shared, wasi:keyvalue): locked-increment, own-lock-increment, atomic-add, float-add, histogram, array-read/-write, float-array-scale, produce, consume(-all), close-queue, queue-len, wait-for-item, pipe-send/-receive/-echo/-ping, dict-set/-get/-set-many-times/-count/-keys; hold-lock-and-trap/-spin/-block, lock-abandoned, open-value (failures holding a lock, names not granted)",
    ),
];

/// The core module, embedded as WebAssembly text: (name, description, path in guest-tasks).
const CORE_MODULE: (&str, &str, &str) = (
    "arith",
    "a core module (WebAssembly text): add, mul64, square, fdiv, half, spin (never returns), boom (traps)",
    "core/arith.wat",
);

fn main() {
    let manifest_dir =
        PathBuf::from(env::var_os("CARGO_MANIFEST_DIR").expect("CARGO_MANIFEST_DIR"));
    let out_dir = PathBuf::from(env::var_os("OUT_DIR").expect("OUT_DIR"));
    let root = manifest_dir
        .join("..")
        .canonicalize()
        .expect("the workspace root");
    let guest_dir = root.join("guest-tasks");
    let wit_dir = root.join("wit");
    if !guest_dir.join("Cargo.toml").is_file() {
        panic!(
            "cannot find the guest tasks: no {}",
            guest_dir.join("Cargo.toml").display()
        );
    }

    rerun_if_changed(&guest_dir, &wit_dir);
    check_every_guest_is_listed(&guest_dir);

    let rustc = outer_rustc();
    check_target_installed(rustc.as_deref());

    let target_dir = out_dir.join("guest-target");
    let cargo = env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut cmd = Command::new(&cargo);
    cmd.arg("build")
        .arg("--release")
        .arg("--target")
        .arg(GUEST_TARGET)
        .arg("--manifest-path")
        .arg(guest_dir.join("Cargo.toml"))
        .arg("--target-dir")
        .arg(&target_dir)
        // Config files are found from the current directory, not from --manifest-path: run in
        // guest-tasks so that its .cargo/config.toml applies as in a direct build.
        .current_dir(&guest_dir)
        // Cargo reads build-script directives from stdout: keep the nested cargo off it.
        .stdout(Stdio::from(std::io::stderr()));
    clean_env(&mut cmd);
    // The same compiler as the outer build (cargo resolved RUSTC to an actual rustc; wrappers
    // are in RUSTC_WRAPPER and RUSTC_WORKSPACE_WRAPPER, which `clean_env` removed).
    if let Some(rustc) = &rustc {
        cmd.env("RUSTC", rustc);
    }

    eprintln!("running: {cmd:?}");
    let start = Instant::now();
    let status = cmd
        .status()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", Path::new(&cargo).display()));
    if !status.success() {
        fail(&format!(
            "building the guest tasks failed ({status}); the errors are above. To build them \
             alone: cd guest-tasks && cargo build --release"
        ));
    }
    eprintln!("guest tasks built in {:.1?}", start.elapsed());

    let release_dir = target_dir.join(GUEST_TARGET).join("release");
    let mut code = String::from("// Generated by artifacts/build.rs: the guest tasks.\n\n");
    let mut names = Vec::new();
    for (name, description) in COMPONENTS {
        let wasm = release_dir.join(format!("{name}.wasm"));
        if !wasm.is_file() {
            panic!("the guest build did not produce {}", wasm.display());
        }
        push_task(
            &mut code,
            name,
            description,
            &format!("{name}.wasm"),
            &wasm,
            "component",
        );
        names.push(name.to_uppercase());
    }
    let (name, description, path) = CORE_MODULE;
    let file_name = Path::new(path).file_name().unwrap().to_str().unwrap();
    push_task(
        &mut code,
        name,
        description,
        file_name,
        &guest_dir.join(path),
        "core module, as text",
    );
    names.push(name.to_uppercase());

    writeln!(
        code,
        "/// Every guest: the {} components, then the core module.",
        COMPONENTS.len()
    )
    .unwrap();
    writeln!(code, "pub const ALL: &[Guest] = &[{}];\n", names.join(", ")).unwrap();
    let calls: String = COMPONENTS
        .iter()
        .map(|(name, _)| *name)
        .chain([CORE_MODULE.0])
        .map(|name| format!("        $mac!({name});\n"))
        .collect();
    writeln!(
        code,
        "/// Calls `$mac!(name)` once per guest (`square`, ..., `arith`): the integration tests \
         pass a macro that names a test function after each guest, so that a guest without a \
         test does not compile.\n\
         #[macro_export]\n\
         macro_rules! foreach_guest {{\n    ($mac:ident) => {{\n{calls}    }};\n}}"
    )
    .unwrap();
    fs::write(out_dir.join("guests.rs"), code).expect("write guests.rs");
}

/// Fails the build when a crate of `guest-tasks/` is missing from [`COMPONENTS`], so that no
/// guest is built without a constant, a description and a test.
fn check_every_guest_is_listed(guest_dir: &Path) {
    let mut unlisted = Vec::new();
    for entry in fs::read_dir(guest_dir).expect("read guest-tasks").flatten() {
        let path = entry.path();
        let name = entry.file_name().to_string_lossy().into_owned();
        if path.join("Cargo.toml").is_file() && !COMPONENTS.iter().any(|(n, _)| *n == name) {
            unlisted.push(name);
        }
    }
    if !unlisted.is_empty() {
        unlisted.sort();
        fail(&format!(
            "guest-tasks/ has crates that artifacts/build.rs does not list: {}. Add each to \
             COMPONENTS there (a name and a description), and a test named after it to \
             tests/all/guests.rs.",
            unlisted.join(", ")
        ));
    }
}

/// Appends the definition of one `Guest` constant to the generated code.
fn push_task(
    code: &mut String,
    name: &str,
    description: &str,
    file_name: &str,
    path: &Path,
    kind: &str,
) {
    let path = path
        .to_str()
        .unwrap_or_else(|| panic!("path is not UTF-8: {}", path.display()));
    writeln!(code, "/// The `{name}` guest ({kind}): {description}.").unwrap();
    writeln!(code, "pub const {}: Guest = Guest {{", name.to_uppercase()).unwrap();
    writeln!(code, "    name: {name:?},").unwrap();
    writeln!(code, "    description: {description:?},").unwrap();
    writeln!(code, "    file_name: {file_name:?},").unwrap();
    writeln!(code, "    wasm: include_bytes!({path:?}),").unwrap();
    writeln!(code, "}};\n").unwrap();
}

/// Removes from the nested cargo's environment what the outer cargo set for this build script
/// or for the host target, and what the user set for the outer build only: all of it would
/// change, break or pollute a build for wasm32-wasip2 in another target directory.
fn clean_env(cmd: &mut Command) {
    const REMOVE: &[&str] = &[
        // Flags for the host target (e.g. `-C target-cpu=native`), or from `cargo llvm-cov`.
        "RUSTFLAGS",
        "CARGO_ENCODED_RUSTFLAGS",
        "CARGO_BUILD_RUSTFLAGS",
        "RUSTDOCFLAGS",
        "CARGO_ENCODED_RUSTDOCFLAGS",
        "CARGO_BUILD_RUSTDOCFLAGS",
        // Where and for what the outer build builds (the command line sets ours).
        "CARGO_TARGET_DIR",
        "CARGO_BUILD_TARGET_DIR",
        "CARGO_BUILD_TARGET",
        // clippy-driver, `cargo fix`, coverage or caching wrappers of the outer build.
        "RUSTC_WRAPPER",
        "RUSTC_WORKSPACE_WRAPPER",
        "CARGO_BUILD_RUSTC_WRAPPER",
        "CARGO_BUILD_RUSTC_WORKSPACE_WRAPPER",
        "RUSTC",
        "RUSTDOC",
        "CARGO_BUILD_RUSTC",
        "CARGO_BUILD_RUSTDOC",
        "RUSTC_LINKER",
        // Set by cargo for this build script (the nested cargo sets its own for its scripts).
        "TARGET",
        "HOST",
        "OUT_DIR",
        "OPT_LEVEL",
        "PROFILE",
        "DEBUG",
        "NUM_JOBS",
        "CARGO_PRIMARY_PACKAGE",
        "CARGO_CRATE_NAME",
        "CARGO_RUSTC_CURRENT_DIR",
        "CARGO_MANIFEST_LINKS",
    ];
    const REMOVE_PREFIXES: &[&str] = &[
        // Profile settings for the outer build (`CARGO_PROFILE_RELEASE_DEBUG=true` would put
        // DWARF in the components).
        "CARGO_PROFILE_",
        // Facts about this package and the host target, set for this build script.
        "CARGO_CFG_",
        "CARGO_FEATURE_",
        "CARGO_PKG_",
        "CARGO_MANIFEST_",
        "DEP_",
        // Cargo's internal variables (`cargo fix`, ...).
        "__CARGO_",
    ];
    for name in REMOVE {
        cmd.env_remove(name);
    }
    for (key, _) in env::vars_os() {
        if let Some(key) = key.to_str()
            && REMOVE_PREFIXES.iter().any(|prefix| key.starts_with(prefix))
        {
            cmd.env_remove(key);
        }
    }
}

/// Reports an error that is the user's to fix, without a backtrace, and fails the build.
fn fail(message: &str) -> ! {
    eprintln!("\nerror: {message}\n");
    std::process::exit(1);
}

/// The compiler of the outer build, unless it is unsuitable for another target (under miri).
fn outer_rustc() -> Option<PathBuf> {
    if env::var_os("CARGO_CFG_MIRI").is_some() {
        return None;
    }
    env::var_os("RUSTC").map(PathBuf::from)
}

/// Fails with a clear message if the standard library for wasm32-wasip2 is not installed.
fn check_target_installed(rustc: Option<&Path>) {
    let rustc = rustc.unwrap_or(Path::new("rustc"));
    let output = Command::new(rustc)
        .args(["--print", "target-libdir", "--target", GUEST_TARGET])
        .env_remove("RUSTC_WRAPPER")
        .env_remove("RUSTC_WORKSPACE_WRAPPER")
        .output();
    let installed = match &output {
        Ok(output) if output.status.success() => {
            let libdir = PathBuf::from(String::from_utf8_lossy(&output.stdout).trim());
            fs::read_dir(&libdir).is_ok_and(|entries| {
                entries.flatten().any(|entry| {
                    let name = entry.file_name();
                    let name = name.to_string_lossy();
                    name.starts_with("libstd-") && name.ends_with(".rlib")
                })
            })
        }
        _ => false,
    };
    if !installed {
        fail(&format!(
            "The Rust target {GUEST_TARGET} is not installed, and wasmpool's guest tasks \
             (guest-tasks/) are built for it.\nInstall it with:\n\n    rustup target add \
             {GUEST_TARGET}\n\n(checked with `{} --print target-libdir --target {GUEST_TARGET}`)",
            rustc.display()
        ));
    }
}

/// Tells cargo to rerun this script when a guest source changes: every file of guest-tasks
/// (manifests, lock file, .cargo/config.toml, sources, .wat) but its target directory, the
/// source directories themselves (for new files), and the WIT directory.
fn rerun_if_changed(guest_dir: &Path, wit_dir: &Path) {
    println!("cargo:rerun-if-changed={}", wit_dir.display());
    fn walk(dir: &Path) {
        let mut entries: Vec<_> = fs::read_dir(dir)
            .unwrap_or_else(|e| panic!("cannot read {}: {e}", dir.display()))
            .flatten()
            .map(|entry| entry.path())
            .collect();
        entries.sort();
        for path in entries {
            let name = path.file_name().unwrap().to_string_lossy();
            if path.is_dir() {
                if name == "target" || (name.starts_with('.') && name != ".cargo") {
                    continue;
                }
                if name == "src" || name == "core" {
                    println!("cargo:rerun-if-changed={}", path.display());
                }
                walk(&path);
            } else if !name.starts_with('.') {
                println!("cargo:rerun-if-changed={}", path.display());
            }
        }
    }
    walk(guest_dir);
}
