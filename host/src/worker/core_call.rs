//! A core module's export called through raw values: its signature is read once per instance
//! (numbers only: `i32`, `i64`, `f32`, `f64`), each call writes its arguments into a kept
//! buffer of `ValRaw`s and calls `Func::call_unchecked`, which skips the per-call type lookup,
//! checks and conversions of `Func::call` (a `FuncType` fetched from the engine's registry, a
//! vector of `Val`s each way). The arguments' types are checked here against the signature as
//! they are written, which is what `call_unchecked` asks of its caller.

use wasmtime::{Func, Store, ValRaw, ValType};

use crate::values::wire::Row;
use crate::values::{Value, Values};
use crate::wire::RunFailure;

use super::store::CoreState;

/// One of the four number types of core wasm.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Num {
    I32,
    I64,
    F32,
    F64,
}

impl Num {
    fn of(ty: &ValType) -> Option<Num> {
        match ty {
            ValType::I32 => Some(Num::I32),
            ValType::I64 => Some(Num::I64),
            ValType::F32 => Some(Num::F32),
            ValType::F64 => Some(Num::F64),
            _ => None,
        }
    }

    /// `value` as a raw value of this type, if it is one.
    fn raw(self, value: &Value) -> Option<ValRaw> {
        Some(match (self, value) {
            (Num::I32, Value::S32(x)) => ValRaw::i32(*x),
            (Num::I64, Value::S64(x)) => ValRaw::i64(*x),
            (Num::F32, Value::F32(x)) => ValRaw::f32(x.to_bits()),
            (Num::F64, Value::F64(x)) => ValRaw::f64(x.to_bits()),
            _ => return None,
        })
    }

    fn value(self, raw: &ValRaw) -> Value {
        match self {
            Num::I32 => Value::S32(raw.get_i32()),
            Num::I64 => Value::S64(raw.get_i64()),
            Num::F32 => Value::F32(f32::from_bits(raw.get_f32())),
            Num::F64 => Value::F64(f64::from_bits(raw.get_f64())),
        }
    }
}

/// A core export's signature, and the buffer its calls go through.
pub(crate) struct CoreCall {
    params: Vec<Num>,
    results: Vec<Num>,
    /// Parameters in, results out: as long as the longer of the two lists.
    raw: Vec<ValRaw>,
}

impl CoreCall {
    /// The raw call of `f`, if its signature is numbers only (a core task's always is: the
    /// host refuses other exports when the module is loaded).
    pub(crate) fn new(store: &Store<CoreState>, f: &Func) -> Option<CoreCall> {
        let ty = f.ty(store);
        let params = ty
            .params()
            .map(|t| Num::of(&t))
            .collect::<Option<Vec<_>>>()?;
        let results = ty
            .results()
            .map(|t| Num::of(&t))
            .collect::<Option<Vec<_>>>()?;
        let len = params.len().max(results.len());
        Some(CoreCall {
            params,
            results,
            raw: vec![ValRaw::i32(0); len],
        })
    }

    /// Calls `f` (the export this was made for, in `store`) with `args`; its results, or the
    /// error of the call (a trap), or a bad input when an argument is not of its parameter's
    /// type or their count is wrong.
    pub(crate) fn call(
        &mut self,
        store: &mut Store<CoreState>,
        f: &Func,
        args: Args<'_, '_>,
    ) -> Result<Result<Values, wasmtime::Error>, RunFailure> {
        let mut given = 0;
        let mut put = |value: &Value| -> Result<(), RunFailure> {
            let Some(ty) = self.params.get(given) else {
                return Err(self.count_error(given + 1));
            };
            self.raw[given] = ty.raw(value).ok_or_else(|| {
                RunFailure::BadInput(format!("argument {given} is {value:?}, not a {ty:?}",))
            })?;
            given += 1;
            Ok(())
        };
        match args {
            Args::Values(values) => values.iter().try_for_each(&mut put)?,
            Args::Packed(row) => {
                for value in row.values() {
                    put(&value.map_err(RunFailure::BadInput)?)?;
                }
            }
        }
        if given != self.params.len() {
            return Err(self.count_error(given));
        }
        // SAFETY: `raw` holds one value of the right type per parameter of `f` (checked just
        // above against `f`'s own signature, read when this was made), it has room for every
        // result, `f` belongs to `store`, no reference types are involved (numbers only), and
        // the call is not made from within an async call.
        let called = unsafe { f.call_unchecked(&mut *store, self.raw.as_mut_slice()) };
        Ok(called.map(|()| {
            let mut values = Values::new();
            for (ty, raw) in self.results.iter().zip(&self.raw) {
                values.push(ty.value(raw));
            }
            values
        }))
    }

    fn count_error(&self, got: usize) -> RunFailure {
        RunFailure::BadInput(format!(
            "expected {} arguments, got {got}",
            self.params.len()
        ))
    }
}

/// A core call's arguments, as the runner has them.
#[derive(Clone, Copy)]
pub(crate) enum Args<'v, 'r> {
    Values(&'v [Value]),
    Packed(Row<'r>),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_travel_raw_both_ways_and_other_types_are_refused() {
        for (ty, value) in [
            (Num::I32, Value::S32(-7)),
            (Num::I64, Value::S64(i64::MIN)),
            (Num::F32, Value::F32(1.5)),
            (Num::F64, Value::F64(-0.25)),
        ] {
            let raw = ty.raw(&value).expect("its own type");
            assert_eq!(ty.value(&raw), value);
        }
        assert!(Num::I32.raw(&Value::S64(1)).is_none());
        assert!(Num::F64.raw(&Value::F32(1.0)).is_none());
    }
}
