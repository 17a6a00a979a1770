//! Writing a task, as a user does in their first hour: `wasmpool new`, `wasmpool build`,
//! `wasmpool run` and `map`, for Rust always, and for Python (componentize-py) and JavaScript
//! (componentize-js) when their tools are on PATH. A test whose tool is missing says so on
//! stderr and passes, unless WASMPOOL_REQUIRE_TOOLCHAINS=1 (CI) makes it fail. And `inspect`'s
//! example lines, each fed to `map`.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Instant;

use serde_json::Value as Json;

/// The binary with `args` in `dir`, `stdin` written to it, and `PATH` replaced if asked.
fn wasmpool_in(dir: &Path, args: &[&str], stdin: &str, path: Option<&Path>) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_wasmpool"));
    command
        .args(args)
        .current_dir(dir)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    if let Some(path) = path {
        command.env("PATH", path);
    }
    let mut child = command.spawn().expect("wasmpool starts");
    let fed = child.stdin.take().unwrap().write_all(stdin.as_bytes());
    // A command that refuses its options exits before it reads: its stdin may be closed.
    assert!(
        fed.is_ok()
            || fed
                .as_ref()
                .is_err_and(|e| e.kind() == std::io::ErrorKind::BrokenPipe),
        "{fed:?}"
    );
    child.wait_with_output().unwrap()
}

fn wasmpool(args: &[&str], stdin: &str) -> Output {
    wasmpool_in(Path::new("."), args, stdin, None)
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Whether CI asked for every toolchain test to run (a missing tool is then a failure).
fn toolchains_required() -> bool {
    std::env::var("WASMPOOL_REQUIRE_TOOLCHAINS").is_ok_and(|v| v == "1")
}

/// The executable called `name` on PATH, if there is one.
fn on_path(name: &str) -> Option<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|p| {
            std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        })
}

/// Whether the tools a test needs are on PATH. When one is not, says so loudly, and panics
/// when CI requires the toolchains.
fn have_tools(test: &str, tools: &[&str], install: &str) -> bool {
    let missing: Vec<&str> = tools
        .iter()
        .copied()
        .filter(|t| on_path(t).is_none())
        .collect();
    if missing.is_empty() {
        return true;
    }
    let message = format!("{test}: {} not on PATH ({install})", missing.join(" and "));
    assert!(
        !toolchains_required(),
        "{message}, and WASMPOOL_REQUIRE_TOOLCHAINS=1 requires it"
    );
    // Straight to stderr in one write, not through `eprintln!`, which the test harness
    // captures and hides for a test that passes.
    let banner = format!(
        "\n==========\nSKIPPED {message}; set WASMPOOL_REQUIRE_TOOLCHAINS=1 to make this a \
         failure\n==========\n"
    );
    let _ = std::io::stderr().lock().write_all(banner.as_bytes());
    false
}

/// `wasmpool build` in `dir`: the component's path, the only line on stdout.
fn build(dir: &Path) -> PathBuf {
    let started = Instant::now();
    let out = wasmpool_in(dir, &["build"], "", None);
    assert!(
        out.status.success(),
        "wasmpool build failed:\n{}",
        stderr(&out)
    );
    let text = stdout(&out);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 1, "only the component's path: {text:?}");
    let path = dir.join(lines[0]);
    let size = std::fs::metadata(&path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .len();
    eprintln!(
        "built {} in {:.1} s: {} KiB",
        path.display(),
        started.elapsed().as_secs_f64(),
        size / 1024
    );
    path
}

/// What `wasmpool new` wrote: its stdout is the project's path, its stderr what to do next.
fn new_project(parent: &Path, name: &str, lang: &str) -> PathBuf {
    let out = wasmpool_in(parent, &["new", name, "--lang", lang], "", None);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stdout(&out), format!("{name}\n"));
    assert!(
        stderr(&out).contains("wasmpool run \"$(wasmpool build)\" greet Ada"),
        "{}",
        stderr(&out)
    );
    let dir = parent.join(name);
    let wit = std::fs::read_to_string(dir.join("wit/world.wit")).unwrap();
    assert!(wit.contains(&format!("package local:{name};")), "{wit}");
    assert!(wit.contains(&format!("world {name} {{")), "{wit}");
    assert!(!wit.contains("{{"), "every placeholder is filled: {wit}");
    dir
}

/// The scaffold's two exports, called as the README says: `greet` returns, `divide` by 0 is
/// the task's own error (exit 1, the message on stderr), and `map` takes an array or an
/// object of named arguments for `divide`.
fn check_scaffold_component(component: &Path) {
    let component = component.to_str().unwrap();
    let out = wasmpool(&["run", component, "greet", "Ada"], "");
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stdout(&out), "\"Hello, Ada!\"\n");

    let out = wasmpool(&["run", component, "divide", "1", "0"], "");
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("`divide` returned an error: cannot divide 1 by zero"),
        "{}",
        stderr(&out)
    );

    let out = wasmpool(
        &["map", component, "divide"],
        "[7, 2]\n{\"a\": -9, \"b\": 2}\n[1, 0]\n[-2147483648, -1]\n",
    );
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let lines: Vec<Json> = stdout(&out)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines[0], 3);
    assert_eq!(
        lines[1], -4,
        "division rounds toward zero in every language"
    );
    assert_eq!(lines[2]["error"]["kind"], "guest");
    assert_eq!(lines[2]["error"]["value"], "cannot divide 1 by zero");
    assert_eq!(lines[3]["error"]["value"], "-2147483648 / -1 overflows s32");

    assert_examples_are_taken(component);
}

/// Every example line `inspect` prints for `module` is taken by `map` as the arguments of its
/// export: the call may fail (a trap, a timeout, the task's own error), but never with
/// bad-input.
fn assert_examples_are_taken(module: &str) -> usize {
    let out = wasmpool(&["inspect", "--json", module], "");
    assert!(out.status.success(), "{}", stderr(&out));
    let doc: Json = serde_json::from_slice(&out.stdout).unwrap();
    let text = stdout(&wasmpool(&["inspect", module], ""));
    let exports = doc["exports"].as_array().unwrap();
    for export in exports {
        let name = export["name"].as_str().unwrap();
        if export["program_entry"] == true {
            // A program's entry point is run by `exec`, not called by `map`.
            continue;
        }
        let example = export["example"]
            .as_str()
            .unwrap_or_else(|| panic!("{module} {name} has no example: {export}"));
        assert!(
            text.contains(&format!("    map line: {example}\n")),
            "the text shows the example of {name}: {text}"
        );
        let out = wasmpool(
            &["map", module, name, "--timeout", "2s", "-j", "1"],
            &format!("{example}\n"),
        );
        let line: Json = serde_json::from_str(stdout(&out).trim())
            .unwrap_or_else(|e| panic!("{module} {name} {example}: {e}: {}", stderr(&out)));
        assert_ne!(
            line["error"]["kind"], "bad-input",
            "{module} {name}: the example {example} is refused: {line}"
        );
    }
    exports.len()
}

/// A directory of the test's own for a project, and a cargo target directory shared by every
/// run of this test, so that wit-bindgen and its dependencies compile once.
fn rust_target_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("authoring-cargo-target")
}

fn cargo_in(dir: &Path, args: &[&str]) -> Output {
    Command::new("cargo")
        .args(args)
        .current_dir(dir)
        .env("CARGO_TARGET_DIR", rust_target_dir())
        .output()
        .expect("cargo starts")
}

#[test]
fn a_rust_task_is_made_tested_built_and_run() {
    let parent = tempfile::tempdir().unwrap();
    let dir = new_project(parent.path(), "hello-task", "rust");
    let manifest = std::fs::read_to_string(dir.join("Cargo.toml")).unwrap();
    for line in [
        "name = \"hello-task\"",
        "crate-type = [\"cdylib\"]",
        "wit-bindgen = \"=0.61.1\"",
        "[workspace]",
    ] {
        assert!(manifest.contains(line), "{line} in {manifest}");
    }
    let readme = std::fs::read_to_string(dir.join("README.md")).unwrap();
    assert!(
        readme.contains("cargo build --release --target wasm32-wasip2")
            && readme.contains("target/wasm32-wasip2/release/hello_task.wasm"),
        "{readme}"
    );

    // The native unit tests, as the README says.
    let out = cargo_in(&dir, &["test", "--quiet"]);
    assert!(out.status.success(), "cargo test: {}", stderr(&out));
    assert!(stdout(&out).contains("2 passed"), "{}", stdout(&out));

    // `wasmpool build` finds the component wherever cargo's target directory is.
    let started = Instant::now();
    let out = Command::new(env!("CARGO_BIN_EXE_wasmpool"))
        .arg("build")
        .current_dir(&dir)
        .env("CARGO_TARGET_DIR", rust_target_dir())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let component = PathBuf::from(stdout(&out).trim_end());
    assert_eq!(stdout(&out).lines().count(), 1, "{}", stdout(&out));
    assert!(
        component.ends_with("wasm32-wasip2/release/hello_task.wasm"),
        "{}",
        component.display()
    );
    assert!(
        stderr(&out).contains("Compiling hello-task") || stderr(&out).contains("Finished"),
        "cargo's own output goes to stderr: {}",
        stderr(&out)
    );
    eprintln!(
        "built the Rust scaffold in {:.1} s: {} KiB",
        started.elapsed().as_secs_f64(),
        std::fs::metadata(&component).unwrap().len() / 1024
    );
    check_scaffold_component(&component);

    // A build that fails is exit 2 and a sentence, with nothing on stdout; `build DIR` from
    // elsewhere.
    std::fs::write(
        dir.join("src/lib.rs"),
        std::fs::read_to_string(dir.join("src/lib.rs"))
            .unwrap()
            .replace(
                "format!(\"Hello, {name}!\")",
                "format!(\"Hello, {name}!\") +",
            ),
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_wasmpool"))
        .args(["build", dir.to_str().unwrap()])
        .env("CARGO_TARGET_DIR", rust_target_dir())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(out.stdout.is_empty(), "{}", stdout(&out));
    assert!(
        stderr(&out).contains("error: expected expression")
            && stderr(&out).contains("wasmpool: error: cargo build failed"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn a_python_task_is_made_built_and_run() {
    if !have_tools(
        "a_python_task_is_made_built_and_run",
        &["componentize-py"],
        "pip install componentize-py==0.25.1",
    ) {
        return;
    }
    let parent = tempfile::tempdir().unwrap();
    let dir = new_project(parent.path(), "hello-py", "python");
    let readme = std::fs::read_to_string(dir.join("README.md")).unwrap();
    assert!(
        readme.contains("componentize-py -d wit -w hello-py componentize app -o hello-py.wasm"),
        "{readme}"
    );
    // The native tests, with the bindings, as the README says.
    let bindings = Command::new("componentize-py")
        .args(["-d", "wit", "-w", "hello-py", "bindings", ".bindings"])
        .current_dir(&dir)
        .output()
        .unwrap();
    assert!(bindings.status.success(), "{}", stderr(&bindings));
    let python = Command::new("python3")
        .args(["-m", "unittest"])
        .current_dir(&dir)
        .env("PYTHONPATH", ".bindings")
        .output()
        .unwrap();
    assert!(
        python.status.success() && stderr(&python).contains("Ran 2 tests"),
        "{}",
        stderr(&python)
    );

    let component = build(&dir);
    assert!(component.ends_with("hello-py.wasm"));
    check_scaffold_component(&component);

    // The interpreter's own initialization export is not a task, and is listed on asking.
    let module = component.to_str().unwrap();
    let text = stdout(&wasmpool(&["inspect", module], ""));
    assert!(
        !text.contains("exports#init: func")
            && text.contains("made by the toolchain, not a task: exports#init"),
        "{text}"
    );
    let all = stdout(&wasmpool(&["inspect", "--all", module], ""));
    assert!(
        all.contains("  exports#init: func(app-name: string"),
        "{all}"
    );
    let doc: Json =
        serde_json::from_slice(&wasmpool(&["inspect", "--json", module], "").stdout).unwrap();
    assert_eq!(doc["hidden_exports"], serde_json::json!(["exports#init"]));
}

#[test]
fn a_javascript_task_is_made_built_and_run() {
    if !have_tools(
        "a_javascript_task_is_made_built_and_run",
        &["npm", "componentize-js"],
        "Node.js 20 and `npm install -g @bytecodealliance/componentize-js@0.23.0`",
    ) {
        return;
    }
    let parent = tempfile::tempdir().unwrap();
    let dir = new_project(parent.path(), "hello-js", "js");
    let package: Json =
        serde_json::from_str(&std::fs::read_to_string(dir.join("package.json")).unwrap()).unwrap();
    assert_eq!(
        package["devDependencies"]["@bytecodealliance/componentize-js"],
        "0.23.0"
    );
    // The native tests, on Node, as the README says.
    let node = Command::new("npm")
        .args(["test", "--silent"])
        .current_dir(&dir)
        .output()
        .unwrap();
    assert!(
        node.status.success() && stdout(&node).contains("# pass 2"),
        "{}{}",
        stdout(&node),
        stderr(&node)
    );

    let component = build(&dir);
    assert!(component.ends_with("hello-js.wasm"));
    check_scaffold_component(&component);
}

#[test]
fn new_never_writes_into_a_directory_that_is_not_empty() {
    let parent = tempfile::tempdir().unwrap();
    let dir = parent.path().join("taken");
    std::fs::create_dir(&dir).unwrap();
    std::fs::write(dir.join("notes.txt"), "mine").unwrap();
    let out = wasmpool_in(parent.path(), &["new", "taken"], "", None);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("`taken` already exists and is not empty"),
        "{}",
        stderr(&out)
    );
    let entries: Vec<_> = std::fs::read_dir(&dir).unwrap().collect();
    assert_eq!(entries.len(), 1, "nothing was added");
    assert_eq!(
        std::fs::read_to_string(dir.join("notes.txt")).unwrap(),
        "mine"
    );

    // An empty directory is fine, and `.` names the project after it.
    let empty = parent.path().join("My_Task");
    std::fs::create_dir(&empty).unwrap();
    let out = wasmpool_in(&empty, &["new", ".", "--lang", "python"], "", None);
    assert!(out.status.success(), "{}", stderr(&out));
    let wit = std::fs::read_to_string(empty.join("wit/world.wit")).unwrap();
    assert!(wit.contains("world my-task {"), "{wit}");
    assert!(empty.join("app.py").is_file() && empty.join(".gitignore").is_file());

    let out = wasmpool_in(
        parent.path(),
        &["new", "x", "--name", "Not Kebab"],
        "",
        None,
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("use kebab-case") && stderr(&out).contains("`not-kebab`"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn build_says_what_is_missing() {
    let parent = tempfile::tempdir().unwrap();
    let out = wasmpool_in(parent.path(), &["build"], "", None);
    assert_eq!(out.status.code(), Some(2));
    assert!(out.stdout.is_empty());
    assert!(
        stderr(&out).contains("`.` is not a task project")
            && stderr(&out).contains("`wasmpool new PATH` makes one"),
        "{}",
        stderr(&out)
    );

    // Each language's tool, missing from PATH, is named with how to install it.
    let empty_path = parent.path().join("no-tools");
    std::fs::create_dir(&empty_path).unwrap();
    for (lang, says) in [
        ("rust", "cargo is not installed: install Rust with rustup"),
        (
            "python",
            "componentize-py is not installed (looked in hello-python/.venv/bin and on PATH): \
             install it with `python3 -m venv .venv && .venv/bin/pip install \
             componentize-py==0.25.1`",
        ),
        ("js", "npm is not installed: install Node.js 20 or later"),
    ] {
        let name = format!("hello-{lang}");
        new_project(parent.path(), &name, lang);
        let out = wasmpool_in(parent.path(), &["build", &name], "", Some(&empty_path));
        assert_eq!(out.status.code(), Some(2), "{lang}: {}", stderr(&out));
        assert!(out.stdout.is_empty());
        assert!(stderr(&out).contains(says), "{lang}: {}", stderr(&out));
    }

    // npm without componentize-js: `npm install` is the way.
    if let (Some(npm), Some(node)) = (on_path("npm"), on_path("node")) {
        let node_only = parent.path().join("node-only");
        std::fs::create_dir(&node_only).unwrap();
        std::os::unix::fs::symlink(npm, node_only.join("npm")).unwrap();
        std::os::unix::fs::symlink(node, node_only.join("node")).unwrap();
        let out = wasmpool_in(parent.path(), &["build", "hello-js"], "", Some(&node_only));
        assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
        assert!(
            stderr(&out).contains("componentize-js is not installed: run `npm install` in"),
            "{}",
            stderr(&out)
        );
    }
}

#[test]
fn inspect_examples_are_lines_map_takes_for_every_builtin_task() {
    let out = wasmpool(&["tasks"], "");
    assert!(out.status.success());
    let names: Vec<String> = stdout(&out)
        .lines()
        .map(|l| l.split_whitespace().next().unwrap().to_string())
        .collect();
    assert!(names.contains(&"builtin:records".to_string()), "{names:?}");
    let mut exports = 0;
    for name in &names {
        exports += assert_examples_are_taken(name);
    }
    assert!(exports >= 20, "{exports} exports");

    // A record's keys are its WIT names, a variant is `{"case": payload}`, flags a list.
    let doc: Json =
        serde_json::from_slice(&wasmpool(&["inspect", "--json", "builtin:records"], "").stdout)
            .unwrap();
    let example = |name: &str| {
        doc["exports"]
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["name"] == name)
            .unwrap()["example"]
            .as_str()
            .unwrap()
            .to_string()
    };
    assert_eq!(
        example("describe"),
        r#"{"age":1,"email":"text","name":"text","role":"student","tags":["text"]}"#
    );
    assert_eq!(example("area"), r#"{"circle":1.5}"#);
    assert_eq!(example("grant"), r#"[["read"],["read"]]"#);
    assert_eq!(example("minmax"), "[1.5]");
}
