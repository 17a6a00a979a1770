//! `wasmpool inspect MODULE`: what a module is, what it exports and what it imports.

use std::io::Write;

use clap::Args;
use wasmpool::ModuleKind;

use crate::builtin::load_module;

/// List a module's exports with their WIT signatures, and its imports.
#[derive(Debug, Args)]
pub(crate) struct InspectCommand {
    /// A .wasm component or core module, a .wat file, or builtin:NAME.
    module: String,
    /// Print one JSON object instead of text.
    #[arg(long)]
    json: bool,
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
        let mut out = std::io::stdout().lock();
        if self.json {
            let exports: Vec<serde_json::Value> = module
                .exports()
                .iter()
                .map(|sig| {
                    serde_json::json!({
                        "name": sig.name,
                        "signature": sig.to_string(),
                        "params": sig.params.iter().map(|(n, t)| serde_json::json!({"name": n, "type": t.to_string()})).collect::<Vec<_>>(),
                        "results": sig.results.iter().map(ToString::to_string).collect::<Vec<_>>(),
                    })
                })
                .collect();
            let doc = serde_json::json!({
                "module": module.origin(),
                "kind": kind,
                "sha256": module.hash_hex(),
                "exports": exports,
                "imports": module.imports(),
            });
            writeln!(out, "{doc}")?;
        } else {
            writeln!(
                out,
                "{}: {kind}, sha256 {}",
                module.origin(),
                module.hash_hex()
            )?;
            if module.exports().is_empty() {
                writeln!(out, "  (no callable exports)")?;
            }
            for sig in module.exports() {
                writeln!(out, "  {sig}")?;
            }
            match module.imports() {
                [] => writeln!(out, "imports: nothing")?,
                imports => writeln!(out, "imports: {}", imports.join(", "))?,
            }
        }
        Ok(0)
    }
}
