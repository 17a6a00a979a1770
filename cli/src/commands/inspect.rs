//! `wasmpool inspect MODULE`: what a module is, what it exports (each with a line of input
//! that `wasmpool map` takes) and what it imports.

use std::io::Write;

use clap::Args;
use serde_json::{Value as Json, json};
use wasmpool::{ModuleKind, Signature, WitType};

use crate::builtin::load_module;

/// List a module's exports with their WIT signatures and an example line of input for
/// `wasmpool map`, and its imports.
#[derive(Debug, Args)]
#[command(
    after_help = "Examples:\n  wasmpool inspect builtin:records\n  wasmpool inspect --json square.wasm"
)]
pub(crate) struct InspectCommand {
    /// A .wasm component or core module, a .wat file, or builtin:NAME.
    module: String,
    /// Print one JSON object instead of text.
    #[arg(long)]
    json: bool,
    /// List the exports a toolchain adds for itself too (componentize-py's `exports#init`,
    /// `cabi_*`, `_initialize`...), which are not tasks.
    #[arg(long)]
    all: bool,
    #[command(flatten)]
    load: crate::options::LoadArgs,
}

impl InspectCommand {
    pub(crate) fn execute(self) -> anyhow::Result<i32> {
        let module = load_module(&self.module, &self.load, wasmpool::Limits::new())?;
        let kind = match module.kind() {
            ModuleKind::Component => "component",
            ModuleKind::Core => "core module",
        };
        let (internal, tasks): (Vec<&Signature>, Vec<&Signature>) = module
            .exports()
            .iter()
            .partition(|sig| is_internal(&sig.name));
        let shown: Vec<&Signature> = if self.all {
            module.exports().iter().collect()
        } else {
            tasks
        };
        // A whole program's entry point is run by `exec`, not called by `map`.
        let program = module.program().ok();
        let is_entry = |sig: &Signature| program.as_ref().is_some_and(|p| p.name() == sig.name);
        // A batch export's line for `map --batch`: one element.
        let batch_line = |sig: &Signature| {
            let batched = module
                .task(&sig.name)
                .and_then(|task| task.batched())
                .ok()?;
            map_line(batched.signature())
        };
        let mut out = std::io::stdout().lock();
        if self.json {
            let exports: Vec<Json> = shown
                .iter()
                .map(|sig| {
                    json!({
                        "name": sig.name,
                        "signature": sig.to_string(),
                        "params": sig.params.iter().map(|(n, t)| json!({"name": n, "type": t.to_string()})).collect::<Vec<_>>(),
                        "results": sig.results.iter().map(ToString::to_string).collect::<Vec<_>>(),
                        "example": if is_entry(sig) { None } else { map_line(sig) },
                        "batch_example": batch_line(sig),
                        "program_entry": is_entry(sig),
                        "internal": is_internal(&sig.name),
                    })
                })
                .collect();
            let mut doc = json!({
                "module": module.origin(),
                "kind": kind,
                "sha256": module.hash_hex(),
                "exports": exports,
                "imports": module.imports(),
                "program": program.is_some(),
            });
            if !self.all {
                doc["hidden_exports"] = json!(internal.iter().map(|s| &s.name).collect::<Vec<_>>());
            }
            writeln!(out, "{doc}")?;
        } else {
            writeln!(
                out,
                "{}: {kind}, sha256 {}",
                module.origin(),
                module.hash_hex()
            )?;
            if shown.is_empty() {
                writeln!(out, "  (no callable exports)")?;
            }
            for sig in &shown {
                writeln!(out, "  {sig}")?;
                if is_entry(sig) {
                    writeln!(
                        out,
                        "    a program's entry point: `wasmpool exec {}` runs it once per input line (its stdin, or --args)",
                        self.module
                    )?;
                    continue;
                }
                match map_line(sig) {
                    Some(line) => writeln!(out, "    map line: {line}")?,
                    None => writeln!(
                        out,
                        "    (no map line: a parameter cannot be given as JSON)"
                    )?,
                }
                if let Some(line) = batch_line(sig) {
                    writeln!(out, "    map --batch line (one element): {line}")?;
                }
            }
            if !self.all && !internal.is_empty() {
                let names: Vec<&str> = internal.iter().map(|s| s.name.as_str()).collect();
                writeln!(
                    out,
                    "  ({} made by the toolchain, not a task: {}; --all lists {})",
                    if names.len() == 1 {
                        "1 export"
                    } else {
                        "exports"
                    },
                    names.join(", "),
                    if names.len() == 1 { "it" } else { "them" },
                )?;
            }
            if program.is_some() && !shown.iter().any(|sig| is_entry(sig)) {
                writeln!(
                    out,
                    "  a program: `wasmpool exec {}` runs it once per input line (its stdin, or --args)",
                    self.module
                )?;
            }
            match module.imports() {
                [] => writeln!(out, "imports: nothing")?,
                imports => writeln!(out, "imports: {}", imports.join(", "))?,
            }
        }
        Ok(0)
    }
}

/// Whether an export is one a toolchain adds for itself rather than a task: componentize-py's
/// `exports#init` (the hook its build calls to initialize the interpreter), and the canonical
/// ABI's and the C runtime's helpers a core module may export (`cabi_realloc`,
/// `cabi_post_*`, `_initialize`, `_start`, `__wasm_call_ctors`...).
pub(crate) fn is_internal(name: &str) -> bool {
    name == "exports#init" || name.starts_with("cabi_") || name.starts_with('_')
}

/// A line of input `wasmpool map` takes for this export, as compact JSON: the one argument
/// itself for one parameter, an array of them for several (`[]` for none). None when a
/// parameter's type cannot be given as JSON.
pub(crate) fn map_line(sig: &Signature) -> Option<String> {
    let mut args = Vec::with_capacity(sig.params.len());
    for (_, ty) in &sig.params {
        args.push(example(ty)?);
    }
    let line = match <[Json; 1]>::try_from(args) {
        Ok([one]) => one,
        Err(args) => Json::Array(args),
    };
    Some(line.to_string())
}

/// A value of `ty` in the JSON form the library takes (`host/src/values/json.rs`): numbers,
/// strings (a `char` is one), arrays (lists, tuples, flags by name), objects with the WIT
/// field names (records), `"case"` or `{"case": payload}` (variants, enums, results), and an
/// option's value for `some` (`null` is `none`).
fn example(ty: &WitType) -> Option<Json> {
    Some(match ty {
        WitType::Bool => json!(true),
        WitType::S8
        | WitType::U8
        | WitType::S16
        | WitType::U16
        | WitType::S32
        | WitType::U32
        | WitType::S64
        | WitType::U64 => json!(1),
        WitType::F32 | WitType::F64 => json!(1.5),
        WitType::Char => json!("a"),
        WitType::String => json!("text"),
        WitType::List(elem) => json!([example(elem)?]),
        WitType::Tuple(types) => Json::Array(types.iter().map(example).collect::<Option<_>>()?),
        WitType::Record(fields) => {
            let mut object = serde_json::Map::new();
            for (name, t) in fields {
                object.insert(name.clone(), example(t)?);
            }
            Json::Object(object)
        }
        WitType::Variant(cases) => match cases.first()? {
            (case, None) => json!(case),
            (case, Some(t)) => json!({ case: example(t)? }),
        },
        WitType::Enum(cases) => json!(cases.first()?),
        WitType::Flags(flags) => Json::Array(flags.first().map(|f| json!(f)).into_iter().collect()),
        WitType::Option(t) => example(t)?,
        WitType::Result { ok, .. } => match ok {
            Some(t) => json!({ "ok": example(t)? }),
            None => json!("ok"),
        },
        // A resource, a stream...: nothing that travels as JSON.
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sig(params: Vec<(&str, WitType)>) -> Signature {
        Signature {
            name: "f".into(),
            params: params.into_iter().map(|(n, t)| (n.into(), t)).collect(),
            results: vec![],
        }
    }

    #[test]
    fn one_parameter_is_the_value_several_an_array() {
        assert_eq!(map_line(&sig(vec![("x", WitType::S64)])).unwrap(), "1");
        let list = WitType::List(Box::new(WitType::F64));
        assert_eq!(map_line(&sig(vec![("xs", list)])).unwrap(), "[1.5]");
        assert_eq!(
            map_line(&sig(vec![("a", WitType::S64), ("b", WitType::String)])).unwrap(),
            r#"[1,"text"]"#
        );
        assert_eq!(map_line(&sig(vec![])).unwrap(), "[]");
    }

    #[test]
    fn compound_values_take_the_librarys_json_form() {
        let record = WitType::Record(vec![
            ("word-count".into(), WitType::U32),
            ("email".into(), WitType::Option(Box::new(WitType::String))),
        ]);
        assert_eq!(
            example(&record).unwrap(),
            json!({"word-count": 1, "email": "text"})
        );
        let variant = WitType::Variant(vec![
            ("circle".into(), Some(WitType::F64)),
            ("point".into(), None),
        ]);
        assert_eq!(example(&variant).unwrap(), json!({"circle": 1.5}));
        let unit = WitType::Variant(vec![("point".into(), None)]);
        assert_eq!(example(&unit).unwrap(), json!("point"));
        let flags = WitType::Flags(vec!["read".into(), "write".into()]);
        assert_eq!(example(&flags).unwrap(), json!(["read"]));
        let result = WitType::Result {
            ok: None,
            err: Some(Box::new(WitType::String)),
        };
        assert_eq!(example(&result).unwrap(), json!("ok"));
        assert_eq!(example(&WitType::Unsupported("own<counter>".into())), None);
    }

    #[test]
    fn toolchain_exports_are_not_tasks() {
        assert!(is_internal("exports#init"));
        assert!(is_internal("cabi_realloc"));
        assert!(is_internal("_initialize"));
        assert!(!is_internal("greet"));
        assert!(!is_internal("wasi:http/incoming-handler#handle"));
    }
}
