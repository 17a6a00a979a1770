//! wasmtime's values: a [`Value`] as the guest is called with it, and back.
//!
//! Structural, both ways, and checked by wasmtime itself when the call is made. A component's
//! values are wasmtime's component `Val`s; a core module's are its four number types.

use wasmtime::component::Val;

use super::Value;

/// A core module's parameter: a number of one of wasm's four types.
pub(crate) fn core_val(value: &Value) -> Result<wasmtime::Val, String> {
    match value {
        Value::S32(x) => Ok(wasmtime::Val::I32(*x)),
        Value::S64(x) => Ok(wasmtime::Val::I64(*x)),
        Value::F32(x) => Ok(wasmtime::Val::F32(x.to_bits())),
        Value::F64(x) => Ok(wasmtime::Val::F64(x.to_bits())),
        other => Err(format!("a core module takes numbers, not {other:?}")),
    }
}

/// A core module's result.
pub(crate) fn from_core_val(val: &wasmtime::Val) -> Result<Value, String> {
    match val {
        wasmtime::Val::I32(x) => Ok(Value::S32(*x)),
        wasmtime::Val::I64(x) => Ok(Value::S64(*x)),
        wasmtime::Val::F32(bits) => Ok(Value::F32(f32::from_bits(*bits))),
        wasmtime::Val::F64(bits) => Ok(Value::F64(f64::from_bits(*bits))),
        other => Err(format!("unsupported core result {other:?}")),
    }
}

/// A component's argument.
pub(crate) fn to_val(value: &Value) -> Val {
    let boxed = |v: &Option<Box<Value>>| v.as_deref().map(|v| Box::new(to_val(v)));
    match value {
        Value::Bool(b) => Val::Bool(*b),
        Value::S8(n) => Val::S8(*n),
        Value::U8(n) => Val::U8(*n),
        Value::S16(n) => Val::S16(*n),
        Value::U16(n) => Val::U16(*n),
        Value::S32(n) => Val::S32(*n),
        Value::U32(n) => Val::U32(*n),
        Value::S64(n) => Val::S64(*n),
        Value::U64(n) => Val::U64(*n),
        Value::F32(x) => Val::Float32(*x),
        Value::F64(x) => Val::Float64(*x),
        Value::Char(c) => Val::Char(*c),
        Value::String(s) => Val::String(s.clone()),
        Value::List(items) => Val::List(items.iter().map(to_val).collect()),
        Value::Record(fields) => {
            Val::Record(fields.iter().map(|(n, v)| (n.clone(), to_val(v))).collect())
        }
        Value::Tuple(items) => Val::Tuple(items.iter().map(to_val).collect()),
        Value::Variant(case, payload) => Val::Variant(case.clone(), boxed(payload)),
        Value::Enum(case) => Val::Enum(case.clone()),
        Value::Option(v) => Val::Option(boxed(v)),
        Value::Result(Ok(v)) => Val::Result(Ok(boxed(v))),
        Value::Result(Err(v)) => Val::Result(Err(boxed(v))),
        Value::Flags(flags) => Val::Flags(flags.clone()),
    }
}

/// Why a result cannot be returned: it holds `what`, which cannot leave the worker.
fn unsupported(what: &str) -> String {
    format!("the result holds {what}, which cannot leave the worker")
}

/// A component's result; an error for a value that cannot leave the worker (a resource).
pub(crate) fn from_val(val: &Val) -> Result<Value, String> {
    let boxed = |v: &Option<Box<Val>>| -> Result<Option<Box<Value>>, String> {
        v.as_deref().map(|v| from_val(v).map(Box::new)).transpose()
    };
    let list = |items: &[Val]| items.iter().map(from_val).collect::<Result<Vec<_>, _>>();
    Ok(match val {
        Val::Bool(b) => Value::Bool(*b),
        Val::S8(n) => Value::S8(*n),
        Val::U8(n) => Value::U8(*n),
        Val::S16(n) => Value::S16(*n),
        Val::U16(n) => Value::U16(*n),
        Val::S32(n) => Value::S32(*n),
        Val::U32(n) => Value::U32(*n),
        Val::S64(n) => Value::S64(*n),
        Val::U64(n) => Value::U64(*n),
        Val::Float32(x) => Value::F32(*x),
        Val::Float64(x) => Value::F64(*x),
        Val::Char(c) => Value::Char(*c),
        Val::String(s) => Value::String(s.clone()),
        Val::List(items) => Value::List(list(items)?),
        Val::Record(fields) => Value::Record(
            fields
                .iter()
                .map(|(n, v)| Ok((n.clone(), from_val(v)?)))
                .collect::<Result<_, String>>()?,
        ),
        Val::Tuple(items) => Value::Tuple(list(items)?),
        Val::Variant(case, payload) => Value::Variant(case.clone(), boxed(payload)?),
        Val::Enum(case) => Value::Enum(case.clone()),
        Val::Option(v) => Value::Option(boxed(v)?),
        Val::Result(Ok(v)) => Value::Result(Ok(boxed(v)?)),
        Val::Result(Err(v)) => Value::Result(Err(boxed(v)?)),
        Val::Flags(flags) => Value::Flags(flags.clone()),
        // Named, never printed: a handle's debug form shows host addresses.
        Val::Resource(_) => return Err(unsupported("a resource")),
        Val::Future(_) => return Err(unsupported("a future")),
        Val::Stream(_) => return Err(unsupported("a stream")),
        Val::ErrorContext(_) => return Err(unsupported("an error context")),
        Val::Map(_) => return Err(unsupported("a map")),
        Val::FixedLengthList(_) => return Err(unsupported("a fixed-length list")),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_round_trip_through_wasmtime() {
        let values = [
            Value::Record(vec![
                ("name".into(), Value::String("Ada".into())),
                ("tags".into(), Value::List(vec![Value::Char('λ')])),
            ]),
            Value::Variant("circle".into(), Some(Box::new(Value::F64(2.0)))),
            Value::Result(Err(Some(Box::new(Value::Enum("no".into()))))),
            Value::Option(None),
            Value::Tuple(vec![Value::U8(1), Value::S16(-2), Value::Bool(true)]),
            Value::Flags(vec!["read".into()]),
        ];
        for value in values {
            assert_eq!(from_val(&to_val(&value)), Ok(value));
        }
        for number in [
            Value::S32(-3),
            Value::S64(4),
            Value::F32(0.5),
            Value::F64(-1.5),
        ] {
            assert_eq!(from_core_val(&core_val(&number).unwrap()), Ok(number));
        }
        assert!(core_val(&Value::U8(1)).is_err());
    }
}
