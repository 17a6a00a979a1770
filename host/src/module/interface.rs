//! What a module offers and needs: its callable exports with their WIT signatures, its
//! imports, and whether a worker could link it, read from its compiled code.

use serde::{Deserialize, Serialize};
use wasmtime::Engine;
use wasmtime::component::types::{ComponentItem, Type};

use crate::values::{Signature, WitType};
use crate::wire::ModuleKind;

fn core_exports(module: &wasmtime::Module) -> Vec<Signature> {
    let num = |t: &wasmtime::ValType| match t {
        wasmtime::ValType::I32 => WitType::S32,
        wasmtime::ValType::I64 => WitType::S64,
        wasmtime::ValType::F32 => WitType::F32,
        wasmtime::ValType::F64 => WitType::F64,
        other => WitType::Unsupported(format!("core type {other}")),
    };
    module
        .exports()
        .filter_map(|export| {
            let func = export.ty().func()?.clone();
            Some(Signature {
                name: export.name().to_string(),
                params: func
                    .params()
                    .enumerate()
                    .map(|(i, t)| (format!("p{i}"), num(&t)))
                    .collect(),
                results: func.results().map(|t| num(&t)).collect(),
            })
        })
        .collect()
}

/// What a module offers and needs, read from its compiled code by whoever compiled it (a
/// compiling process, behind walls: see `crate::compile`), and kept beside the code in the
/// cache.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct Interface {
    pub(crate) exports: Vec<Signature>,
    pub(crate) imports: Vec<String>,
    /// Why a worker could not link the module, if it could not.
    pub(crate) link_error: Option<String>,
}

/// The exports and the imports of a module, from the code `engine` just compiled, and whether
/// a worker can link it.
pub(crate) fn read_interface(
    engine: &Engine,
    kind: ModuleKind,
    code: &[u8],
) -> Result<Interface, String> {
    let interface = match kind {
        ModuleKind::Core => {
            // SAFETY: `code` is `engine`'s own output, just made by this process.
            unsafe { wasmtime::Module::deserialize(engine, code) }.map(|module| Interface {
                exports: core_exports(&module),
                imports: module
                    .imports()
                    .map(|import| format!("{}.{}", import.module(), import.name()))
                    .collect(),
                link_error: crate::worker::engines::core_link_error(&module),
            })
        }
        // SAFETY: as for a core module, above.
        ModuleKind::Component => unsafe {
            wasmtime::component::Component::deserialize(engine, code)
        }
        .map(|component| Interface {
            exports: component_exports(engine, &component),
            imports: component
                .component_type()
                .imports(engine)
                .map(|(name, _)| name.to_string())
                .collect(),
            link_error: crate::worker::engines::component_link_error(&component),
        }),
    };
    interface.map_err(|e| format!("{e:#}"))
}

fn component_exports(
    engine: &Engine,
    component: &wasmtime::component::Component,
) -> Vec<Signature> {
    let ty = component.component_type();
    let mut out = Vec::new();
    for (name, export) in ty.exports(engine) {
        match export.ty {
            ComponentItem::ComponentFunc(func) => out.push(signature(name.to_string(), &func)),
            ComponentItem::ComponentInstance(instance) => {
                for (func_name, item) in instance.exports(engine) {
                    if let ComponentItem::ComponentFunc(func) = item.ty {
                        out.push(signature(format!("{name}#{func_name}"), &func));
                    }
                }
            }
            _ => {}
        }
    }
    out
}

fn signature(name: String, func: &wasmtime::component::types::ComponentFunc) -> Signature {
    Signature {
        name,
        params: func
            .params()
            .map(|(n, t)| (n.to_string(), wit_type(&t)))
            .collect(),
        results: func.results().map(|t| wit_type(&t)).collect(),
    }
}

fn wit_type(ty: &Type) -> WitType {
    let boxed = |t: &Type| Box::new(wit_type(t));
    match ty {
        Type::Bool => WitType::Bool,
        Type::S8 => WitType::S8,
        Type::U8 => WitType::U8,
        Type::S16 => WitType::S16,
        Type::U16 => WitType::U16,
        Type::S32 => WitType::S32,
        Type::U32 => WitType::U32,
        Type::S64 => WitType::S64,
        Type::U64 => WitType::U64,
        Type::Float32 => WitType::F32,
        Type::Float64 => WitType::F64,
        Type::Char => WitType::Char,
        Type::String => WitType::String,
        Type::List(l) => WitType::List(boxed(&l.ty())),
        Type::Record(r) => WitType::Record(
            r.fields()
                .map(|f| (f.name.to_string(), wit_type(&f.ty)))
                .collect(),
        ),
        Type::Tuple(t) => WitType::Tuple(t.types().map(|t| wit_type(&t)).collect()),
        Type::Variant(v) => WitType::Variant(
            v.cases()
                .map(|c| (c.name.to_string(), c.ty.as_ref().map(wit_type)))
                .collect(),
        ),
        Type::Enum(e) => WitType::Enum(e.names().map(str::to_string).collect()),
        Type::Option(o) => WitType::Option(boxed(&o.ty())),
        Type::Result(r) => WitType::Result {
            ok: r.ok().as_ref().map(boxed),
            err: r.err().as_ref().map(boxed),
        },
        Type::Flags(f) => WitType::Flags(f.names().map(str::to_string).collect()),
        Type::Map(_) => WitType::Unsupported("map".into()),
        Type::Own(_) | Type::Borrow(_) => WitType::Unsupported("resource".into()),
        Type::Future(_) => WitType::Unsupported("future".into()),
        Type::Stream(_) => WitType::Unsupported("stream".into()),
        Type::ErrorContext => WitType::Unsupported("error-context".into()),
        Type::FixedLengthList(_) => WitType::Unsupported("fixed-length list".into()),
    }
}
