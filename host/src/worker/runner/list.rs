//! One call of a batch export (see [`crate::Task::batched`]): a component's export of one
//! `list` parameter, called with a list of elements, returning the elements of its one `list`
//! result. The chunk around it, with its splitting and its outcomes, is
//! [`crate::worker::batch`]'s.
//!
//! Numbers take a typed path: a list of `s32`, `u32`, `s64`, `u64`, `f32` or `f64` that
//! returns a list of one of them is called through wasmtime's typed interface, which copies
//! the whole list into the guest's memory and back at once, where the dynamic one converts
//! and checks each element as a value of its own (measured: most of a tiny item's cost).

use std::time::Duration;

use wasmtime::component::{ComponentType, Lift, Lower, Type, Val};

use crate::limits::{Grants, Resolved};
use crate::values::wasm::to_val;
use crate::values::wire::{Kind, unpack};
use crate::wire::RunFailure;

use super::{Callee, Compiled, Live, Runner, failure};
use crate::worker::store::{ComponentState, Limited, arm};

/// A list call's elements.
pub(crate) enum Elements {
    /// As wasmtime's values.
    Vals(Vec<Val>),
    /// Numbers of one kind, as the words [`crate::values::wire::Packed`] holds them.
    Words(Kind, Vec<u64>),
}

impl Elements {
    pub(crate) fn len(&self) -> usize {
        match self {
            Elements::Vals(vals) => vals.len(),
            Elements::Words(_, words) => words.len(),
        }
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The elements from `at` on, taken out of these.
    pub(crate) fn split_off(&mut self, at: usize) -> Elements {
        match self {
            Elements::Vals(vals) => Elements::Vals(vals.split_off(at)),
            Elements::Words(kind, words) => Elements::Words(*kind, words.split_off(at)),
        }
    }
}

/// What a list call returned: its list's elements.
pub(crate) enum Returned {
    Vals(Vec<Val>),
    /// Numbers of one kind, as words.
    Words(Kind, Vec<u64>),
}

impl Returned {
    pub(crate) fn len(&self) -> usize {
        match self {
            Returned::Vals(vals) => vals.len(),
            Returned::Words(_, words) => words.len(),
        }
    }
}

/// How one list call ended, and what it printed.
pub(crate) struct ListOutcome {
    /// The elements of the list it returned, or why there are none.
    pub(crate) result: Result<Returned, ListFailure>,
    pub(crate) stdout: Vec<u8>,
    pub(crate) stderr: Vec<u8>,
    /// How long making its instance took, when one was made.
    pub(crate) made_in: Option<Duration>,
}

/// Why a list call gave no list.
pub(crate) enum ListFailure {
    /// No instance could be made (or its export was not found): so it goes for any list.
    Instance(RunFailure),
    /// The call failed (a trap, a limit): a part of the list may not.
    Call(RunFailure),
}

impl Runner {
    /// Calls `func(list)` once in a fresh instance (the one made ahead, if given), within
    /// `limits` (the timeout and the fuel for this call), with only what `grants` allow. The
    /// elements stay in `list` whatever happened, for a retry of its parts; the instance is
    /// dropped, as it has served its one call.
    pub(crate) fn call_list(
        &self,
        ahead: Option<Live>,
        compiled: &Compiled,
        func: &str,
        list: &mut Elements,
        limits: &Resolved,
        grants: &Grants,
    ) -> ListOutcome {
        let mut live = match ahead {
            Some(live) => live,
            None => match self.instantiate(compiled, func, limits, grants) {
                Ok(live) => live,
                Err(why) => {
                    return ListOutcome {
                        result: Err(ListFailure::Instance(why)),
                        stdout: Vec::new(),
                        stderr: Vec::new(),
                        made_in: None,
                    };
                }
            },
        };
        let result = live.call_list(list, limits);
        let (stdout, stderr, overflowed) = live.take_output();
        // As for one call: a trap after a refused write is the output limit.
        let result = match result {
            Err(RunFailure::Trap { .. }) if overflowed => Err(RunFailure::OutputLimit),
            other => other,
        };
        ListOutcome {
            result: result.map_err(ListFailure::Call),
            stdout,
            stderr,
            made_in: Some(live.made_in),
        }
    }
}

impl Live {
    /// Calls the export once with `list` as its one argument, within `limits`; the elements
    /// of the list it returns.
    fn call_list(
        &mut self,
        list: &mut Elements,
        limits: &Resolved,
    ) -> Result<Returned, RunFailure> {
        let rearm = !self.armed;
        self.armed = false;
        let Callee::Component(store, f, results) = &mut self.callee else {
            return Err(RunFailure::Module(
                "a batch export is a component's export".into(),
            ));
        };
        if rearm {
            arm(store, limits);
        }
        if let Elements::Words(kind, words) = list {
            let returns = f.ty(&*store).results().next().and_then(|ty| match ty {
                Type::List(list) => typed_kind(&list.ty()),
                _ => None,
            });
            if let Some(returns) = returns.filter(|_| typed_kind_of(*kind))
                && let Some(called) = call_typed(store, f, *kind, words, returns)
            {
                return called
                    .map(|words| Returned::Words(returns, words))
                    .map_err(|e| failure(e, store.data().limit_hit()));
            }
            // Numbers the typed path does not take: as values.
            let vals = words
                .iter()
                .map(|&word| unpack(*kind, word).map(|value| to_val(&value)))
                .collect::<Result<Vec<_>, _>>()
                .map_err(RunFailure::BadInput)?;
            *list = Elements::Vals(vals);
        }
        let Elements::Vals(vals) = list else {
            unreachable!("numbers were made values above")
        };
        let params = [Val::List(std::mem::take(vals))];
        let called = f.call(&mut *store, &params, results);
        if let [Val::List(given)] = params {
            *vals = given;
        }
        called.map_err(|e| failure(e, store.data().limit_hit()))?;
        match results
            .first_mut()
            .map(|r| std::mem::replace(r, Val::Bool(false)))
        {
            Some(Val::List(elements)) => Ok(Returned::Vals(elements)),
            _ => Err(RunFailure::Module(
                "the batch export returned no list".into(),
            )),
        }
    }
}

/// The kind of a list element the typed path takes.
fn typed_kind(ty: &Type) -> Option<Kind> {
    Some(match ty {
        Type::S32 => Kind::S32,
        Type::U32 => Kind::U32,
        Type::S64 => Kind::S64,
        Type::U64 => Kind::U64,
        Type::Float32 => Kind::F32,
        Type::Float64 => Kind::F64,
        _ => return None,
    })
}

fn typed_kind_of(kind: Kind) -> bool {
    matches!(
        kind,
        Kind::S32 | Kind::U32 | Kind::S64 | Kind::U64 | Kind::F32 | Kind::F64
    )
}

type Store = wasmtime::Store<ComponentState>;

/// The typed call of `f` with `words` as a list of `kind`, returning a list of `returns`, as
/// words; `None` if `f` turns out not to have that type.
fn call_typed(
    store: &mut Store,
    f: &wasmtime::component::Func,
    kind: Kind,
    words: &[u64],
    returns: Kind,
) -> Option<Result<Vec<u64>, wasmtime::Error>> {
    // A word is a number as `Packed` holds it: sign- or zero-extended to 64 bits, a float's
    // bits.
    match kind {
        Kind::S32 => with_params(store, f, &convert(words, |w| w as i32), returns),
        Kind::U32 => with_params(store, f, &convert(words, |w| w as u32), returns),
        Kind::S64 => with_params(store, f, &convert(words, |w| w as i64), returns),
        Kind::U64 => with_params(store, f, words, returns),
        Kind::F32 => with_params(
            store,
            f,
            &convert(words, |w| f32::from_bits(w as u32)),
            returns,
        ),
        Kind::F64 => with_params(store, f, &convert(words, f64::from_bits), returns),
        _ => None,
    }
}

fn convert<T>(words: &[u64], f: impl Fn(u64) -> T) -> Vec<T> {
    words.iter().map(|&w| f(w)).collect()
}

fn with_params<P>(
    store: &mut Store,
    f: &wasmtime::component::Func,
    params: &[P],
    returns: Kind,
) -> Option<Result<Vec<u64>, wasmtime::Error>>
where
    P: ComponentType + Lower,
{
    Some(match returns {
        Kind::S32 => to_words(typed::<P, i32>(store, f, params)?, |r| r as u64),
        Kind::U32 => to_words(typed::<P, u32>(store, f, params)?, u64::from),
        Kind::S64 => to_words(typed::<P, i64>(store, f, params)?, |r| r as u64),
        Kind::U64 => typed::<P, u64>(store, f, params)?,
        Kind::F32 => to_words(typed::<P, f32>(store, f, params)?, |r| {
            u64::from(r.to_bits())
        }),
        Kind::F64 => to_words(typed::<P, f64>(store, f, params)?, f64::to_bits),
        _ => return None,
    })
}

/// Typed results as words.
fn to_words<R>(
    called: Result<Vec<R>, wasmtime::Error>,
    word: impl Fn(R) -> u64,
) -> Result<Vec<u64>, wasmtime::Error> {
    called.map(|results| results.into_iter().map(word).collect())
}

/// `f(params)` through wasmtime's typed interface; `None` if `f` is not of that type.
fn typed<P, R>(
    store: &mut Store,
    f: &wasmtime::component::Func,
    params: &[P],
) -> Option<Result<Vec<R>, wasmtime::Error>>
where
    P: ComponentType + Lower,
    R: ComponentType + Lift + 'static,
{
    let typed = f.typed::<(&[P],), (Vec<R>,)>(&*store).ok()?;
    Some(typed.call(&mut *store, (params,)).map(|(results,)| results))
}
