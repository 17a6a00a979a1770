//! Values of WIT types: what a task takes and returns, checked against its signature.
//!
//! A value crosses four boundaries on its way from a caller to a guest and back, and each has
//! its own module here:
//!
//! - [`json`]: JSON in and out. A caller's arguments are checked against the export's
//!   [`Signature`] and become [`Value`]s, or an error naming the parameter and the WIT type it
//!   expects, before anything is sent; results become JSON with WIT's names (for the command
//!   line) or serde's (for Rust types).
//! - [`rust`]: Rust values through serde. Flat arguments (numbers, strings, tuples of them)
//!   skip the JSON tree but not its checks; results go straight into the caller's type.
//! - [`wasm`]: wasmtime's `Val`, which the worker calls the guest with.
//! - [`wire`]: the bytes between host and worker: a `Value`'s encoding (with a depth guard),
//!   and numbers packed eight bytes apiece.
//! - [`pack`]: a caller's numbers straight into those packed words, for a `map` over numbers.
//!
//! Names are matched loosely on input: `word-count`, `word_count` and `WordCount` all name the
//! WIT field or case `word-count`, so a Rust struct with serde's default derive fits a WIT
//! record without attributes.

pub(crate) mod json;
pub(crate) mod pack;
pub(crate) mod rust;
pub(crate) mod wasm;
pub(crate) mod wire;

use std::fmt;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::error::TaskError;

/// A WIT type, as the host learns it from a module's exports.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[non_exhaustive]
pub enum WitType {
    /// `bool`.
    Bool,
    /// `s8`.
    S8,
    /// `u8`.
    U8,
    /// `s16`.
    S16,
    /// `u16`.
    U16,
    /// `s32` (a core module's `i32`).
    S32,
    /// `u32`.
    U32,
    /// `s64` (a core module's `i64`).
    S64,
    /// `u64`.
    U64,
    /// `f32`.
    F32,
    /// `f64`.
    F64,
    /// `char`: one Unicode scalar value.
    Char,
    /// `string`.
    String,
    /// `list<T>`.
    List(Box<WitType>),
    /// `record { name: T, ... }`: its fields in order.
    Record(Vec<(String, WitType)>),
    /// `tuple<T, ...>`.
    Tuple(Vec<WitType>),
    /// `variant { case(T), case, ... }`: its cases, each with its payload's type if it has one.
    Variant(Vec<(String, Option<WitType>)>),
    /// `enum { case, ... }`.
    Enum(Vec<String>),
    /// `option<T>`.
    Option(Box<WitType>),
    /// `result<T, E>`, either side possibly empty.
    Result {
        /// The `ok` payload's type, if any.
        ok: Option<Box<WitType>>,
        /// The `err` payload's type, if any.
        err: Option<Box<WitType>>,
    },
    /// `flags { name, ... }`.
    Flags(Vec<String>),
    /// A type wasmpool cannot pass across processes (resources, streams, futures, maps...),
    /// named.
    Unsupported(String),
}

/// A value of a [`WitType`], as it crosses the pipe between host and worker.
///
/// Decoding is bounded: a value nested deeper than [`MAX_VALUE_DEPTH`] is a decode error,
/// so garbage on the wire cannot overflow the decoder's stack.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum Value {
    /// A `bool`.
    Bool(bool),
    /// An `s8`.
    S8(i8),
    /// A `u8`.
    U8(u8),
    /// An `s16`.
    S16(i16),
    /// A `u16`.
    U16(u16),
    /// An `s32`.
    S32(i32),
    /// A `u32`.
    U32(u32),
    /// An `s64`.
    S64(i64),
    /// A `u64`.
    U64(u64),
    /// An `f32`.
    F32(f32),
    /// An `f64`.
    F64(f64),
    /// A `char`.
    Char(char),
    /// A `string`.
    String(String),
    /// A `list`.
    List(Vec<Value>),
    /// A `record`: its fields, named, in the type's order.
    Record(Vec<(String, Value)>),
    /// A `tuple`.
    Tuple(Vec<Value>),
    /// A `variant`: the case's name and its payload, if the case has one.
    Variant(String, Option<Box<Value>>),
    /// An `enum`: the case's name.
    Enum(String),
    /// An `option`: `None` is `none`.
    Option(Option<Box<Value>>),
    /// A `result`: `Ok` is `ok`, `Err` is `err`, each with its payload if the type has one.
    Result(Result<Option<Box<Value>>, Option<Box<Value>>>),
    /// A `flags` value: the names of the flags that are set.
    Flags(Vec<String>),
}

/// The arguments or results of one call. Inline up to two values: the common case of a
/// `map` over numbers allocates nothing per item for them.
pub(crate) type Values = smallvec::SmallVec<[Value; 2]>;

/// How deeply a decoded [`Value`] may nest.
pub const MAX_VALUE_DEPTH: u32 = 100;

/// The signature of one callable export: its name, named parameters and results.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Signature {
    /// The export's name, as `wasmpool run` and [`crate::Module::task`] take it
    /// (`iface#func` for a function inside an exported interface).
    pub name: String,
    /// Parameter names and types, in order.
    pub params: Vec<(String, WitType)>,
    /// Result types (components have zero or one; core modules may have more).
    pub results: Vec<WitType>,
}

impl WitType {
    /// The first part of this type that cannot cross a process boundary (a resource, a
    /// stream...), named, if there is one.
    pub fn unsupported(&self) -> Option<&str> {
        match self {
            WitType::Unsupported(what) => Some(what),
            WitType::List(t) | WitType::Option(t) => t.unsupported(),
            WitType::Record(fields) => fields.iter().find_map(|(_, t)| t.unsupported()),
            WitType::Tuple(types) => types.iter().find_map(WitType::unsupported),
            WitType::Variant(cases) => cases
                .iter()
                .find_map(|(_, t)| t.as_ref().and_then(WitType::unsupported)),
            WitType::Result { ok, err } => {
                ok.iter().chain(err.iter()).find_map(|t| t.unsupported())
            }
            _ => None,
        }
    }
}

impl Signature {
    /// The first part of a parameter or result that cannot cross a process boundary, named
    /// (`resource`), if there is one: such an export cannot be a task.
    pub fn unsupported(&self) -> Option<&str> {
        self.params
            .iter()
            .map(|(_, t)| t)
            .chain(&self.results)
            .find_map(WitType::unsupported)
    }
}

impl Value {
    /// About how many bytes the value takes on the wire: what the result-size limit counts.
    pub fn approx_size(&self) -> u64 {
        let boxed = |v: &Option<Box<Value>>| v.as_deref().map_or(0, Value::approx_size);
        1 + match self {
            Value::Bool(_) | Value::S8(_) | Value::U8(_) => 1,
            Value::S16(_) | Value::U16(_) => 2,
            Value::S32(_) | Value::U32(_) | Value::F32(_) | Value::Char(_) => 4,
            Value::S64(_) | Value::U64(_) | Value::F64(_) => 8,
            Value::String(s) | Value::Enum(s) => s.len() as u64 + 4,
            Value::List(items) | Value::Tuple(items) => {
                4 + items.iter().map(Value::approx_size).sum::<u64>()
            }
            Value::Record(fields) => fields
                .iter()
                .map(|(n, v)| n.len() as u64 + 4 + v.approx_size())
                .sum(),
            Value::Variant(case, payload) => case.len() as u64 + 4 + boxed(payload),
            Value::Option(v) | Value::Result(Ok(v) | Err(v)) => boxed(v),
            Value::Flags(flags) => flags.iter().map(|f| f.len() as u64 + 4).sum(),
        }
    }
}

impl fmt::Display for WitType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fn names(f: &mut fmt::Formatter<'_>, kw: &str, names: &[String]) -> fmt::Result {
            write!(f, "{kw} {{ {} }}", names.join(", "))
        }
        match self {
            WitType::Bool => f.write_str("bool"),
            WitType::S8 => f.write_str("s8"),
            WitType::U8 => f.write_str("u8"),
            WitType::S16 => f.write_str("s16"),
            WitType::U16 => f.write_str("u16"),
            WitType::S32 => f.write_str("s32"),
            WitType::U32 => f.write_str("u32"),
            WitType::S64 => f.write_str("s64"),
            WitType::U64 => f.write_str("u64"),
            WitType::F32 => f.write_str("f32"),
            WitType::F64 => f.write_str("f64"),
            WitType::Char => f.write_str("char"),
            WitType::String => f.write_str("string"),
            WitType::List(t) => write!(f, "list<{t}>"),
            WitType::Option(t) => write!(f, "option<{t}>"),
            WitType::Result { ok, err } => match (ok, err) {
                (None, None) => f.write_str("result"),
                (Some(ok), None) => write!(f, "result<{ok}>"),
                (None, Some(err)) => write!(f, "result<_, {err}>"),
                (Some(ok), Some(err)) => write!(f, "result<{ok}, {err}>"),
            },
            WitType::Tuple(ts) => {
                let parts: Vec<String> = ts.iter().map(ToString::to_string).collect();
                write!(f, "tuple<{}>", parts.join(", "))
            }
            WitType::Record(fields) => {
                let parts: Vec<String> = fields.iter().map(|(n, t)| format!("{n}: {t}")).collect();
                write!(f, "record {{ {} }}", parts.join(", "))
            }
            WitType::Variant(cases) => {
                let parts: Vec<String> = cases
                    .iter()
                    .map(|(n, t)| match t {
                        Some(t) => format!("{n}({t})"),
                        None => n.clone(),
                    })
                    .collect();
                write!(f, "variant {{ {} }}", parts.join(", "))
            }
            WitType::Enum(cases) => names(f, "enum", cases),
            WitType::Flags(flags) => names(f, "flags", flags),
            WitType::Unsupported(what) => write!(f, "{what} (unsupported)"),
        }
    }
}

impl fmt::Display for Signature {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let params: Vec<String> = self
            .params
            .iter()
            .map(|(n, t)| format!("{n}: {t}"))
            .collect();
        write!(f, "{}: func({})", self.name, params.join(", "))?;
        match self.results.as_slice() {
            [] => Ok(()),
            [one] => write!(f, " -> {one}"),
            many => {
                let parts: Vec<String> = many.iter().map(ToString::to_string).collect();
                write!(f, " -> ({})", parts.join(", "))
            }
        }
    }
}

/// How a caller's arguments map onto an export's parameters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ArgsShape {
    /// The value is the one argument (`map`, `imap`).
    Single,
    /// The value is an array (a Rust tuple) spread over the parameters (`starmap`, `apply`,
    /// `submit`, the CLI's `run`); a value that is not an array is taken as the one argument
    /// of a one-parameter export, so `apply(&square, 7)` works like `(7,)`.
    Spread,
}

/// A value that does not fit a WIT type: where, what was expected, what was found.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct ValueError {
    /// Where in the arguments: `text`, `p.tags[2]`, `shape.circle`...
    pub(crate) path: String,
    /// The WIT type expected there.
    pub(crate) expected: String,
    /// What was found instead (a short JSON excerpt), or why it does not fit.
    pub(crate) found: String,
}

impl fmt::Display for ValueError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "parameter `{}`: expected {}, got {}",
            self.path, self.expected, self.found
        )
    }
}

/// Why arguments do not fit a signature.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum ArgsError {
    /// Not as many arguments as parameters.
    Count {
        /// The parameters, as `name: type`.
        params: Vec<String>,
        /// How many arguments came.
        got: usize,
        /// Whether the caller gave one argument per item to an export of several parameters
        /// (`map` where `starmap` was meant).
        single_for_many: bool,
    },
    /// One argument does not fit its parameter's type.
    Value(ValueError),
    /// Arguments given by name (a JSON object) that do not name the parameters: a parameter
    /// missing, or a name that is none of them.
    Names {
        /// The parameters, as `name: type`.
        params: Vec<String>,
        /// The parameters the object does not give.
        missing: Vec<String>,
        /// The object's keys that name no parameter.
        unknown: Vec<String>,
    },
    /// serde could not serialize the caller's arguments.
    Serialize(String),
}

impl fmt::Display for ArgsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ArgsError::Count {
                params,
                got,
                single_for_many,
            } => {
                write!(
                    f,
                    "expected {} argument{} ({}), got {got}",
                    params.len(),
                    if params.len() == 1 { "" } else { "s" },
                    params.join(", "),
                )?;
                if *single_for_many {
                    f.write_str(
                        " (map passes one argument per item: use starmap to spread tuples)",
                    )?;
                }
                Ok(())
            }
            ArgsError::Value(e) => e.fmt(f),
            ArgsError::Names {
                params,
                missing,
                unknown,
            } => {
                write!(
                    f,
                    "arguments by name must name each parameter ({})",
                    params.join(", ")
                )?;
                if !missing.is_empty() {
                    write!(f, "; missing: {}", missing.join(", "))?;
                }
                if !unknown.is_empty() {
                    write!(f, "; no such parameter: {}", unknown.join(", "))?;
                }
                Ok(())
            }
            ArgsError::Serialize(e) => write!(f, "cannot serialize the arguments: {e}"),
        }
    }
}

impl ArgsError {
    /// The task error of a call to `func` with these arguments: [`TaskError::BadInput`],
    /// naming the parameter when one argument is at fault.
    pub(crate) fn for_task(self, func: &str) -> TaskError {
        let param = match &self {
            ArgsError::Value(e) => Some(e.path.clone()),
            ArgsError::Count { .. } | ArgsError::Names { .. } | ArgsError::Serialize(_) => None,
        };
        TaskError::BadInput {
            func: func.to_string(),
            detail: self.to_string(),
            param,
        }
    }
}

/// The arguments of one call, checked against a task's signature: made by
/// [`crate::Task::args_from_json`] or [`crate::Task::arg_from_json`], and run by
/// [`crate::Pool::apply_json`] and [`crate::Pool::imap_json`].
#[derive(Debug, Clone, PartialEq)]
pub struct Args {
    pub(crate) values: Values,
    /// The signature they were checked against: a pool runs them only for a task with it.
    pub(crate) checked: Arc<Signature>,
}

impl Args {
    /// The values, in parameter order.
    pub fn values(&self) -> &[Value] {
        &self.values
    }
}
