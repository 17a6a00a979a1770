//! `wasmpool new PATH [--lang rust|python|js]`: a task project that builds with one command.
//!
//! The templates are the files under `cli/templates/<lang>/`, embedded in the binary; each
//! `{{name}}` in them becomes the project's name (kebab-case, the WIT package and world name),
//! each `{{crate}}` the name Rust gives its library file (`my_task`).

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use clap::{Args, ValueEnum};

use crate::terminal;

/// Make a task project: a WIT world, an implementation of it, and a README with the build.
#[derive(Debug, Args)]
#[command(
    after_help = "Examples:\n  wasmpool new hello && cd hello && wasmpool run \"$(wasmpool build)\" greet Ada\n  wasmpool new hello-py --lang python\n  wasmpool new hello-js --lang js"
)]
pub(crate) struct NewCommand {
    /// The project's directory: created, or an empty one.
    path: PathBuf,
    /// The language of the task.
    #[arg(long, value_enum, default_value_t = Lang::Rust)]
    lang: Lang,
    /// The task's name, in kebab-case (default: the directory's name, made kebab-case).
    #[arg(long)]
    name: Option<String>,
}

/// A language `wasmpool new` has a template for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum Lang {
    /// Rust, with wit-bindgen (`cargo build --release --target wasm32-wasip2`).
    Rust,
    /// Python, with componentize-py 0.25.1.
    Python,
    /// JavaScript, with componentize-js 0.23.0 (Node.js 20 or later).
    Js,
}

/// One file of a template: where it goes in the project, and its text.
struct TemplateFile {
    path: &'static str,
    text: &'static str,
}

macro_rules! template {
    ($lang:literal: $($path:literal <= $file:literal),+ $(,)?) => {
        &[$(TemplateFile {
            path: $path,
            text: include_str!(concat!("../../templates/", $lang, "/", $file)),
        }),+]
    };
}

// `Cargo.toml.tmpl` and `gitignore`: a real `Cargo.toml` in this tree would be taken for a
// package by cargo's tooling, a real `.gitignore` would apply to this repository. The lock
// file pins the versions this tree's own guests build with (`guest-tasks/Cargo.lock`), so a
// new project builds offline on a machine that built them, and the same way everywhere.
const RUST: &[TemplateFile] = template!("rust":
    "Cargo.toml" <= "Cargo.toml.tmpl",
    "Cargo.lock" <= "Cargo.lock.tmpl",
    "src/lib.rs" <= "src/lib.rs",
    "wit/world.wit" <= "wit/world.wit",
    "README.md" <= "README.md",
    ".gitignore" <= "gitignore",
);

const PYTHON: &[TemplateFile] = template!("python":
    "app.py" <= "app.py",
    "test_app.py" <= "test_app.py",
    "wit/world.wit" <= "wit/world.wit",
    "README.md" <= "README.md",
    ".gitignore" <= "gitignore",
);

const JS: &[TemplateFile] = template!("js":
    "package.json" <= "package.json",
    "task.js" <= "task.js",
    "task.test.js" <= "task.test.js",
    "wit/world.wit" <= "wit/world.wit",
    "README.md" <= "README.md",
    ".gitignore" <= "gitignore",
);

impl Lang {
    fn files(self) -> &'static [TemplateFile] {
        match self {
            Lang::Rust => RUST,
            Lang::Python => PYTHON,
            Lang::Js => JS,
        }
    }

    fn title(self) -> &'static str {
        match self {
            Lang::Rust => "Rust",
            Lang::Python => "Python",
            Lang::Js => "JavaScript",
        }
    }
}

impl NewCommand {
    pub(crate) fn execute(self) -> anyhow::Result<i32> {
        let path = &self.path;
        refuse_existing(path)?;
        let name = match &self.name {
            Some(name) => {
                if kebab_case(name) != *name {
                    bail!(
                        "`{name}` cannot name a task: use kebab-case, lowercase words of letters \
                         and digits joined by `-`, the first starting with a letter (such as `{}`)",
                        kebab_case(name)
                    );
                }
                name.clone()
            }
            None => kebab_case(&dir_name(path)?),
        };
        let crate_name = name.replace('-', "_");
        std::fs::create_dir_all(path)
            .with_context(|| format!("cannot create the directory `{}`", path.display()))?;
        for file in self.lang.files() {
            let text = file
                .text
                .replace("{{name}}", &name)
                .replace("{{crate}}", &crate_name);
            let target = path.join(file.path);
            if let Some(parent) = target.parent() {
                std::fs::create_dir_all(parent)
                    .with_context(|| format!("cannot create `{}`", parent.display()))?;
            }
            // Never over a file that appeared since the check above.
            std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(&target)
                .and_then(|mut f| f.write_all(text.as_bytes()))
                .with_context(|| format!("cannot write `{}`", target.display()))?;
        }
        writeln!(std::io::stdout().lock(), "{}", path.display())?;
        terminal::summary(
            "new",
            format_args!(
                "a {} task `{name}` in {}; next:\n  cd {}\n{}",
                self.lang.title(),
                path.display(),
                shell_word(&path.display().to_string()),
                next_steps(self.lang)
            ),
        );
        Ok(0)
    }
}

/// What to type next, in the project's directory.
fn next_steps(lang: Lang) -> &'static str {
    match lang {
        Lang::Rust => {
            "  cargo test                                   # the unit tests, natively\n  \
             wasmpool run \"$(wasmpool build)\" greet Ada   # build the component, call it"
        }
        Lang::Python => {
            "  python3 -m venv .venv && .venv/bin/pip install componentize-py==0.25.1\n  \
             wasmpool run \"$(wasmpool build)\" greet Ada"
        }
        Lang::Js => "  npm install\n  wasmpool run \"$(wasmpool build)\" greet Ada",
    }
}

/// A project goes into a new directory or an empty one, never over files.
fn refuse_existing(path: &Path) -> anyhow::Result<()> {
    let meta = match std::fs::symlink_metadata(path) {
        Ok(meta) => meta,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e).with_context(|| format!("cannot look at `{}`", path.display())),
    };
    if !meta.is_dir() {
        bail!(
            "`{}` already exists and is not a directory: `wasmpool new` makes a project in a new \
             or empty directory",
            path.display()
        );
    }
    let mut entries = std::fs::read_dir(path)
        .with_context(|| format!("cannot read the directory `{}`", path.display()))?;
    if entries.next().is_some() {
        bail!(
            "`{}` already exists and is not empty: `wasmpool new` makes a project in a new or \
             empty directory, and never writes over files (choose another path)",
            path.display()
        );
    }
    Ok(())
}

/// The last component of `path`, the current directory's name for `.`.
fn dir_name(path: &Path) -> anyhow::Result<String> {
    let absolute = if path.is_absolute() {
        path.to_path_buf()
    } else {
        std::env::current_dir()?.join(path)
    };
    // `a/..`, `.`: what the path names, which exists if it is one of those.
    let resolved = std::fs::canonicalize(&absolute).unwrap_or(absolute);
    match resolved.file_name() {
        Some(name) => Ok(name.to_string_lossy().into_owned()),
        None => bail!(
            "`{}` has no name to give the task: pass --name",
            path.display()
        ),
    }
}

/// Names that would not work as a WIT package or world name (WIT's keywords), or as a Cargo
/// package (Rust's keywords, its standard crates, the directories of a target dir).
const RESERVED: &[&str] = &[
    // WIT
    "as",
    "async",
    "bool",
    "borrow",
    "char",
    "constructor",
    "enum",
    "error-context",
    "export",
    "f32",
    "f64",
    "flags",
    "from",
    "func",
    "future",
    "import",
    "include",
    "interface",
    "list",
    "map",
    "option",
    "own",
    "package",
    "record",
    "resource",
    "result",
    "s16",
    "s32",
    "s64",
    "s8",
    "static",
    "stream",
    "string",
    "tuple",
    "type",
    "u16",
    "u32",
    "u64",
    "u8",
    "use",
    "variant",
    "with",
    "world", // Rust and Cargo
    "abstract",
    "alloc",
    "become",
    "box",
    "break",
    "build",
    "const",
    "continue",
    "core",
    "crate",
    "deps",
    "do",
    "dyn",
    "else",
    "examples",
    "extern",
    "false",
    "final",
    "fn",
    "for",
    "gen",
    "if",
    "impl",
    "in",
    "incremental",
    "let",
    "loop",
    "macro",
    "match",
    "mod",
    "move",
    "mut",
    "override",
    "priv",
    "proc-macro",
    "pub",
    "ref",
    "return",
    "self",
    "std",
    "struct",
    "super",
    "test",
    "trait",
    "true",
    "try",
    "typeof",
    "unsafe",
    "unsized",
    "virtual",
    "where",
    "while",
    "yield",
];

/// `name` as a kebab-case identifier that WIT, Cargo, npm and componentize-py all take:
/// lowercase ASCII words of letters and digits joined by `-`, the first starting with a
/// letter (`My_Task 2` is `my-task-2`, `2fast` is `task-2fast`), `task` if nothing is left,
/// and `-task` after a reserved word (`test` is `test-task`).
pub(crate) fn kebab_case(name: &str) -> String {
    let mut words: Vec<String> = Vec::new();
    let mut word = String::new();
    let mut prev_lower = false;
    for c in name.chars() {
        if c.is_ascii_alphanumeric() {
            // `myTask` is two words.
            if c.is_ascii_uppercase() && prev_lower && !word.is_empty() {
                words.push(std::mem::take(&mut word));
            }
            prev_lower = c.is_ascii_lowercase() || c.is_ascii_digit();
            word.push(c.to_ascii_lowercase());
        } else {
            prev_lower = false;
            if !word.is_empty() {
                words.push(std::mem::take(&mut word));
            }
        }
    }
    if !word.is_empty() {
        words.push(word);
    }
    if words
        .first()
        .is_none_or(|w| w.starts_with(|c: char| c.is_ascii_digit()))
    {
        words.insert(0, "task".to_string());
    }
    let mut out = words.join("-");
    if RESERVED.contains(&out.as_str()) {
        out.push_str("-task");
    }
    out
}

/// `text` quoted for a POSIX shell when it needs to be.
fn shell_word(text: &str) -> String {
    if !text.is_empty()
        && text
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./+:@".contains(c))
    {
        text.to_string()
    } else {
        format!("'{}'", text.replace('\'', r"'\''"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_kebab_case_identifiers() {
        assert_eq!(kebab_case("hello"), "hello");
        assert_eq!(kebab_case("hello-task"), "hello-task");
        assert_eq!(kebab_case("My_Task 2"), "my-task-2");
        assert_eq!(kebab_case("myTask"), "my-task");
        assert_eq!(kebab_case("HTTPServer"), "httpserver");
        assert_eq!(kebab_case("2fast"), "task-2fast");
        assert_eq!(kebab_case("--x--"), "x");
        assert_eq!(kebab_case("задача"), "task");
        assert_eq!(kebab_case("test"), "test-task");
        assert_eq!(kebab_case("world"), "world-task");
        assert_eq!(kebab_case("a.b"), "a-b");
    }

    #[test]
    fn every_template_names_the_project() {
        for lang in [Lang::Rust, Lang::Python, Lang::Js] {
            let world = lang
                .files()
                .iter()
                .find(|f| f.path == "wit/world.wit")
                .unwrap();
            assert!(world.text.contains("world {{name}} {"), "{lang:?}");
            assert!(lang.files().iter().any(|f| f.path == "README.md"));
        }
    }

    /// The packages of a lock file, as `name version` lines.
    fn locked(text: &str) -> std::collections::BTreeSet<String> {
        let mut out = std::collections::BTreeSet::new();
        let mut name = None;
        for line in text.lines() {
            if let Some(n) = line.strip_prefix("name = ") {
                name = Some(n.trim_matches('"').to_string());
            } else if let (Some(v), Some(n)) = (line.strip_prefix("version = "), name.take()) {
                out.insert(format!("{n} {}", v.trim_matches('"')));
            }
        }
        out
    }

    #[test]
    fn the_rust_template_locks_what_this_trees_guests_build_with() {
        let template = RUST.iter().find(|f| f.path == "Cargo.lock").unwrap();
        let guests = std::fs::read_to_string(
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../guest-tasks/Cargo.lock"),
        )
        .unwrap();
        let guests = locked(&guests);
        let template = locked(template.text);
        assert!(template.contains("wit-bindgen 0.61.1"), "{template:?}");
        let missing: Vec<_> = template
            .iter()
            .filter(|p| !p.starts_with("{{name}} ") && !guests.contains(*p))
            .collect();
        assert!(
            missing.is_empty(),
            "cli/templates/rust/Cargo.lock.tmpl locks versions guest-tasks/Cargo.lock does not: \
             {missing:?}"
        );
    }

    #[test]
    fn shell_words_are_quoted_when_needed() {
        assert_eq!(shell_word("hello/task"), "hello/task");
        assert_eq!(shell_word("my task"), "'my task'");
        assert_eq!(shell_word("it's"), r"'it'\''s'");
    }
}
