//! `wasmpool build [DIR]`: builds the task project in DIR with its language's tool, and
//! prints the component's path, alone, on stdout.
//!
//! The project's language is what its files say: `Cargo.toml` is Rust (cargo, for
//! `wasm32-wasip2`), `package.json` JavaScript (its `build` script, componentize-js), `app.py`
//! beside a `wit/` directory Python (componentize-py). The tool's own output goes to stderr, so
//! that `wasmpool run "$(wasmpool build)" greet Ada` works. A missing tool, or a build that
//! fails, is an error that names the tool and says how to install it.

use std::io::{BufRead, BufReader, Write};
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::time::SystemTime;

use anyhow::{Context, bail};
use clap::Args;

/// Build the task project in DIR, and print the path of the component it made.
#[derive(Debug, Args)]
#[command(
    after_help = "The project's language is what its files say: Cargo.toml (Rust: cargo build --release \
                  --target wasm32-wasip2), package.json (JavaScript: npm run build), app.py and wit/ \
                  (Python: componentize-py, from DIR/.venv/bin or PATH).\n\n\
                  Example:\n  wasmpool run \"$(wasmpool build)\" greet Ada"
)]
pub(crate) struct BuildCommand {
    /// The project's directory (made by `wasmpool new`, or any project of that shape).
    #[arg(default_value = ".")]
    dir: PathBuf,
}

/// The kinds of project `build` knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Project {
    Rust,
    Python,
    Js,
}

impl BuildCommand {
    pub(crate) fn execute(self) -> anyhow::Result<i32> {
        let dir = &self.dir;
        let built = match detect(dir)? {
            Project::Rust => build_rust(dir)?,
            Project::Python => build_python(dir)?,
            Project::Js => build_js(dir)?,
        };
        let mut out = std::io::stdout().lock();
        for path in built {
            writeln!(out, "{}", shown(&path).display())?;
        }
        Ok(0)
    }
}

fn detect(dir: &Path) -> anyhow::Result<Project> {
    if !dir.is_dir() {
        bail!("`{}` is not a directory", dir.display());
    }
    if dir.join("Cargo.toml").is_file() {
        Ok(Project::Rust)
    } else if dir.join("package.json").is_file() {
        Ok(Project::Js)
    } else if dir.join("app.py").is_file() && dir.join("wit").is_dir() {
        Ok(Project::Python)
    } else {
        bail!(
            "`{}` is not a task project: it has no Cargo.toml (Rust), no package.json \
             (JavaScript) and no app.py beside a wit/ directory (Python); `wasmpool new PATH` \
             makes one",
            dir.display()
        )
    }
}

/// `cargo build --release --target wasm32-wasip2`, reading cargo's messages for the
/// components it wrote (wherever its target directory is).
fn build_rust(dir: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let mut child = Command::new("cargo")
        .args([
            "build",
            "--release",
            "--target",
            "wasm32-wasip2",
            "--message-format=json-render-diagnostics",
        ])
        .current_dir(dir)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .spawn()
        .map_err(|e| missing_tool(e, "cargo", RUST_INSTALL))?;
    let mut built = Vec::new();
    let stdout = child.stdout.take().expect("piped");
    let mut err = std::io::stderr();
    for line in BufReader::new(stdout).lines() {
        let line = line.context("reading cargo's output")?;
        match serde_json::from_str::<serde_json::Value>(&line) {
            Ok(message) => built.extend(wasm_artifacts(&message)),
            // Not one of cargo's messages (a build script's own line): the user's to read.
            Err(_) => {
                let _ = writeln!(err, "{line}");
            }
        }
    }
    let status = child.wait().context("waiting for cargo")?;
    if !status.success() {
        if target_missing(dir) {
            bail!(
                "cargo build failed: the Rust target wasm32-wasip2 is not installed \
                 (`rustup target add wasm32-wasip2` installs it)"
            );
        }
        bail!("cargo build failed ({status}; its output is above)");
    }
    if built.is_empty() {
        bail!(
            "cargo built no component: a task is a library with `crate-type = [\"cdylib\"]` in \
             the [lib] section of its Cargo.toml (`wasmpool new` makes one)"
        );
    }
    Ok(built)
}

const RUST_INSTALL: &str = "install Rust with rustup (https://rustup.rs), then `rustup target \
                            add wasm32-wasip2`";

/// The `.wasm` files of a cdylib that one of cargo's JSON messages says it wrote.
fn wasm_artifacts(message: &serde_json::Value) -> Vec<PathBuf> {
    if message["reason"] != "compiler-artifact" {
        return Vec::new();
    }
    let cdylib = message["target"]["kind"]
        .as_array()
        .is_some_and(|kinds| kinds.iter().any(|k| k == "cdylib"));
    if !cdylib {
        return Vec::new();
    }
    message["filenames"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|f| f.as_str())
        .filter(|f| f.ends_with(".wasm"))
        .map(PathBuf::from)
        .collect()
}

/// Whether rustup says the toolchain of `dir` lacks the wasm32-wasip2 target (false when
/// there is no rustup to ask).
fn target_missing(dir: &Path) -> bool {
    Command::new("rustup")
        .args(["target", "list", "--installed"])
        .current_dir(dir)
        .stderr(Stdio::null())
        .output()
        .is_ok_and(|out| {
            out.status.success()
                && !String::from_utf8_lossy(&out.stdout)
                    .lines()
                    .any(|l| l.trim() == "wasm32-wasip2")
        })
}

/// `componentize-py -d wit -w WORLD componentize app -o WORLD.wasm`, with the one world of
/// `wit/`, and componentize-py from the project's `.venv` or `PATH`.
fn build_python(dir: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let world = single_world(&dir.join("wit"))?;
    let venv = dir.join(".venv/bin/componentize-py");
    let tool = if venv.is_file() {
        venv
    } else if let Some(found) = on_path("componentize-py") {
        found
    } else {
        bail!(
            "componentize-py is not installed (looked in {} and on PATH): install it with \
             `python3 -m venv .venv && .venv/bin/pip install componentize-py==0.25.1` in the \
             project's directory",
            dir.join(".venv/bin").display()
        );
    };
    let output = format!("{world}.wasm");
    let started = SystemTime::now();
    let status = Command::new(&tool)
        .args([
            "-d",
            "wit",
            "-w",
            &world,
            "componentize",
            "app",
            "-o",
            &output,
        ])
        .current_dir(dir)
        .stdin(Stdio::null())
        .stdout(to_stderr()?)
        .status()
        .map_err(|e| missing_tool(e, "componentize-py", PYTHON_INSTALL))?;
    check(status, "componentize-py")?;
    Ok(vec![written(
        &dir.join(output),
        started,
        "componentize-py",
    )?])
}

const PYTHON_INSTALL: &str = "install it with `pip install componentize-py==0.25.1` (in a \
                              virtual environment: `python3 -m venv .venv`)";

/// `npm run build`, and the file its script names after `-o` or `--out`.
fn build_js(dir: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let manifest = dir.join("package.json");
    let text = std::fs::read_to_string(&manifest)
        .with_context(|| format!("cannot read `{}`", manifest.display()))?;
    let package: serde_json::Value = serde_json::from_str(&text)
        .with_context(|| format!("`{}` is not valid JSON", manifest.display()))?;
    let Some(script) = package["scripts"]["build"].as_str() else {
        bail!(
            "`{}` has no build script: add \"scripts\": {{\"build\": \"componentize-js task.js \
             --wit wit -o NAME.wasm\"}} (`wasmpool new PATH --lang js` makes one)",
            manifest.display()
        );
    };
    if on_path("npm").is_none() {
        bail!(
            "npm is not installed: install Node.js 20 or later (https://nodejs.org), which comes \
             with npm"
        );
    }
    if script.contains("componentize-js")
        && !dir.join("node_modules/.bin/componentize-js").exists()
        && on_path("componentize-js").is_none()
    {
        bail!(
            "componentize-js is not installed: run `npm install` in `{}` (its package.json asks \
             for @bytecodealliance/componentize-js), or install it for every project with `npm \
             install -g @bytecodealliance/componentize-js@0.23.0`",
            dir.display()
        );
    }
    let started = SystemTime::now();
    let status = Command::new("npm")
        .args(["run", "build"])
        .current_dir(dir)
        .stdin(Stdio::null())
        .stdout(to_stderr()?)
        .status()
        .map_err(|e| missing_tool(e, "npm", "install Node.js 20 or later (https://nodejs.org)"))?;
    check(status, "npm run build")?;
    let output = match script_output(script) {
        Some(output) => dir.join(output),
        None => newest_wasm(dir, started)?.with_context(|| {
            format!(
                "npm run build succeeded, but its script names no output (`-o FILE`) and wrote \
                 no .wasm file in `{}`",
                dir.display()
            )
        })?,
    };
    Ok(vec![written(&output, started, "npm run build")?])
}

/// The file a build script writes, if it says so with `-o FILE`, `--out FILE` or `--out=FILE`.
fn script_output(script: &str) -> Option<String> {
    let mut words = script.split_whitespace();
    while let Some(word) = words.next() {
        if word == "-o" || word == "--out" {
            return words
                .next()
                .map(|w| w.trim_matches(['"', '\'']).to_string());
        }
        if let Some(out) = word.strip_prefix("--out=") {
            return Some(out.trim_matches(['"', '\'']).to_string());
        }
    }
    None
}

/// The `.wasm` file in `dir` most recently modified since `since`, if any.
fn newest_wasm(dir: &Path, since: SystemTime) -> anyhow::Result<Option<PathBuf>> {
    let mut newest: Option<(SystemTime, PathBuf)> = None;
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if path.extension().is_some_and(|e| e == "wasm") {
            let modified = std::fs::metadata(&path)?.modified()?;
            if modified >= since && newest.as_ref().is_none_or(|(t, _)| modified > *t) {
                newest = Some((modified, path));
            }
        }
    }
    Ok(newest.map(|(_, path)| path))
}

/// The name of the one world declared in the `.wit` files of `wit` (not in its `deps/`).
fn single_world(wit: &Path) -> anyhow::Result<String> {
    let mut worlds = Vec::new();
    let mut files: Vec<PathBuf> = std::fs::read_dir(wit)
        .with_context(|| format!("cannot read `{}`", wit.display()))?
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "wit"))
        .collect();
    files.sort();
    for file in files {
        let text = std::fs::read_to_string(&file)
            .with_context(|| format!("cannot read `{}`", file.display()))?;
        worlds.extend(world_names(&text));
    }
    match worlds.as_slice() {
        [one] => Ok(one.clone()),
        [] => bail!(
            "`{}` declares no world: componentize-py builds a component for one (`world NAME {{ \
             ... }}` in a .wit file there)",
            wit.display()
        ),
        many => bail!(
            "`{}` declares several worlds ({}): `wasmpool build` builds a project of one; run \
             componentize-py with `-w WORLD` yourself",
            wit.display(),
            many.join(", ")
        ),
    }
}

/// The worlds a WIT file declares: the lines that start with `world NAME`.
fn world_names(text: &str) -> impl Iterator<Item = String> + '_ {
    text.lines().filter_map(|line| {
        let rest = line.trim_start().strip_prefix("world")?;
        if !rest.starts_with(char::is_whitespace) {
            return None;
        }
        let name: String = rest
            .trim_start()
            .trim_start_matches('%')
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '-')
            .collect();
        (!name.is_empty()).then_some(name)
    })
}

/// The build's output, checked to be there and written by this build.
fn written(path: &Path, since: SystemTime, tool: &str) -> anyhow::Result<PathBuf> {
    // A file's time comes from the kernel's coarse clock, up to a tick behind `since`.
    let since = since - std::time::Duration::from_millis(50);
    let modified = std::fs::metadata(path)
        .and_then(|m| m.modified())
        .with_context(|| format!("{tool} succeeded but wrote no `{}`", path.display()))?;
    if modified < since {
        bail!(
            "{tool} succeeded but did not write `{}` (the file there is older than this build)",
            path.display()
        );
    }
    Ok(path.to_path_buf())
}

fn check(status: ExitStatus, tool: &str) -> anyhow::Result<()> {
    if status.success() {
        Ok(())
    } else {
        bail!("{tool} failed ({status}; its output is above)")
    }
}

/// A spawn error, made into a sentence that says how to install the tool when it is missing.
fn missing_tool(e: std::io::Error, tool: &str, install: &str) -> anyhow::Error {
    if e.kind() == std::io::ErrorKind::NotFound {
        anyhow::anyhow!("{tool} is not installed: {install}")
    } else {
        anyhow::Error::new(e).context(format!("cannot start {tool}"))
    }
}

/// The first executable file called `name` in the directories of `PATH`.
fn on_path(name: &str) -> Option<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|candidate| {
            std::fs::metadata(candidate)
                .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        })
}

/// A child's stdout that goes to our stderr: stdout is for the component's path alone.
fn to_stderr() -> anyhow::Result<Stdio> {
    let fd = std::io::stderr()
        .as_fd()
        .try_clone_to_owned()
        .context("duplicating stderr")?;
    Ok(Stdio::from(fd))
}

/// `path` relative to the current directory when it is inside it, as a user would type it.
fn shown(path: &Path) -> PathBuf {
    let absolute = std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf());
    match std::env::current_dir() {
        Ok(cwd) => match absolute.strip_prefix(&cwd) {
            Ok(inside) if !inside.as_os_str().is_empty() => inside.to_path_buf(),
            _ => absolute,
        },
        Err(_) => absolute,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn worlds_are_found_in_wit_text() {
        let text = "package local:a;\n/// the world\nworld my-task {\n  export f: func();\n}\n\
                    // world not-this\nworld %use {}\ninterface worldly {}\n";
        assert_eq!(world_names(text).collect::<Vec<_>>(), ["my-task", "use"]);
    }

    #[test]
    fn a_scripts_output_is_the_word_after_o() {
        assert_eq!(
            script_output("componentize-js task.js --wit wit -o my-task.wasm").as_deref(),
            Some("my-task.wasm")
        );
        assert_eq!(
            script_output("x --out=dist/a.wasm").as_deref(),
            Some("dist/a.wasm")
        );
        assert_eq!(script_output("node build.mjs"), None);
    }

    #[test]
    fn cargo_messages_name_the_components() {
        let message = serde_json::json!({
            "reason": "compiler-artifact",
            "target": {"kind": ["cdylib"]},
            "filenames": ["/p/target/wasm32-wasip2/release/a.wasm", "/p/x.d"],
        });
        assert_eq!(
            wasm_artifacts(&message),
            [PathBuf::from("/p/target/wasm32-wasip2/release/a.wasm")]
        );
        let proc_macro = serde_json::json!({
            "reason": "compiler-artifact",
            "target": {"kind": ["proc-macro"]},
            "filenames": ["/p/libm.so"],
        });
        assert!(wasm_artifacts(&proc_macro).is_empty());
    }
}
