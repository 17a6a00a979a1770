//! `--value`, `--array`, `--lock`, `--queue`, `--pipe`, `--dict`: shared objects made for a
//! run and granted to every item of it, and `--state`, their final state as one JSON object.

use std::io::Write;

use anyhow::{Context, bail};
use clap::Args;
use serde_json::{Map, Value as Json};
use wasmpool::{
    Grants, PipeEnd, Pool, Shareable, SharedArray, SharedDict, SharedFloatArray, SharedFloatValue,
    SharedLock, SharedQueue, SharedValue, Task,
};

/// Shared objects for the run, granted to every item under their names.
#[derive(Debug, Clone, Default, Args)]
#[command(next_help_heading = "Shared state (granted to every item; see docs/shared-state.md)")]
pub(crate) struct SharedArgs {
    /// A shared integer, `NAME=N`, or float, `NAME=N.M` (a number with a point).
    #[arg(long = "value", value_name = "NAME=N")]
    values: Vec<String>,
    /// A shared array: `NAME=LEN` (zeros) or `NAME=[1,2,3]` (floats if any has a point).
    #[arg(long = "array", value_name = "NAME=LEN|[..]")]
    arrays: Vec<String>,
    /// A lock shared by every worker.
    #[arg(long = "lock", value_name = "NAME")]
    locks: Vec<String>,
    /// A queue, unbounded or holding CAPACITY items at most.
    #[arg(long = "queue", value_name = "NAME[=CAPACITY]")]
    queues: Vec<String>,
    /// A pipe, whose ends are granted as `NAME.a` and `NAME.b`.
    #[arg(long = "pipe", value_name = "NAME")]
    pipes: Vec<String>,
    /// A dictionary, the `wasi:keyvalue` bucket NAME.
    #[arg(long = "dict", value_name = "NAME")]
    dicts: Vec<String>,
    /// After the run, write the values, arrays, dicts and queues as one JSON object keyed by
    /// name to FILE (`-`: stderr).
    #[arg(long = "state", value_name = "FILE")]
    state: Option<String>,
}

/// The objects one run made.
#[derive(Debug, Default)]
pub(crate) struct Objects {
    made: Vec<Made>,
    state: Option<String>,
}

#[derive(Debug)]
enum Made {
    Value(SharedValue),
    FloatValue(SharedFloatValue),
    Array(SharedArray),
    FloatArray(SharedFloatArray),
    Lock(SharedLock),
    Queue(SharedQueue),
    Pipe(PipeEnd, PipeEnd),
    Dict(SharedDict),
}

impl SharedArgs {
    /// Makes the objects in `pool` and grants them to `task` beside `grants`, the run's own.
    pub(crate) fn apply(
        &self,
        pool: &Pool,
        task: Task,
        grants: Grants,
    ) -> anyhow::Result<(Task, Objects)> {
        let objects = self.make(pool)?;
        if objects.made.is_empty() {
            return Ok((task, objects));
        }
        let grants = objects.grant(grants);
        Ok((task.with_grants(grants)?, objects))
    }

    fn make(&self, pool: &Pool) -> anyhow::Result<Objects> {
        let mut made = Vec::new();
        for spec in &self.values {
            let (name, number) = split(spec, "--value", "NAME=N")?;
            made.push(if number.contains(['.', 'e', 'E']) {
                let v: f64 = number
                    .parse()
                    .with_context(|| format!("--value {spec}: `{number}` is not a number"))?;
                Made::FloatValue(pool.float_value(name, v)?)
            } else {
                let v: i64 = number
                    .parse()
                    .with_context(|| format!("--value {spec}: `{number}` is not an integer"))?;
                Made::Value(pool.value(name, v)?)
            });
        }
        for spec in &self.arrays {
            let (name, what) = split(spec, "--array", "NAME=LEN or NAME=[1,2,3]")?;
            made.push(if what.starts_with('[') {
                let numbers: Vec<serde_json::Number> = serde_json::from_str(what)
                    .with_context(|| format!("--array {spec}: not a list of numbers"))?;
                if numbers.iter().all(|n| n.is_i64()) {
                    let ints: Vec<i64> = numbers.iter().filter_map(|n| n.as_i64()).collect();
                    Made::Array(pool.array_from(name, &ints)?)
                } else {
                    let floats: Vec<f64> = numbers.iter().filter_map(|n| n.as_f64()).collect();
                    Made::FloatArray(pool.float_array_from(name, &floats)?)
                }
            } else {
                let len: u32 = what
                    .parse()
                    .with_context(|| format!("--array {spec}: `{what}` is not a length"))?;
                Made::Array(pool.array(name, len)?)
            });
        }
        for name in &self.locks {
            made.push(Made::Lock(pool.lock(name)?));
        }
        for spec in &self.queues {
            made.push(Made::Queue(match spec.split_once('=') {
                Some((name, capacity)) => {
                    let capacity: usize = capacity.parse().with_context(|| {
                        format!("--queue {spec}: `{capacity}` is not a capacity")
                    })?;
                    pool.queue_bounded(name, capacity)?
                }
                None => pool.queue(spec)?,
            }));
        }
        for name in &self.pipes {
            let (a, b) = pool.pipe(name)?;
            made.push(Made::Pipe(a, b));
        }
        for name in &self.dicts {
            made.push(Made::Dict(pool.dict(name)?));
        }
        Ok(Objects {
            made,
            state: self.state.clone(),
        })
    }
}

fn split<'a>(spec: &'a str, flag: &str, form: &str) -> anyhow::Result<(&'a str, &'a str)> {
    match spec.split_once('=') {
        Some((name, rest)) if !name.is_empty() => Ok((name, rest.trim())),
        _ => bail!("{flag} takes {form}, not `{spec}`"),
    }
}

impl Objects {
    /// `grants` with every object granted under its name.
    fn grant(&self, mut grants: Grants) -> Grants {
        for made in &self.made {
            grants = match made {
                Made::Value(v) => grants.shared(v),
                Made::FloatValue(v) => grants.shared(v),
                Made::Array(a) => grants.shared(a),
                Made::FloatArray(a) => grants.shared(a),
                Made::Lock(l) => grants.shared(l),
                Made::Queue(q) => grants.shared(q),
                Made::Pipe(a, b) => grants.shared(a).shared(b),
                Made::Dict(d) => grants.shared(d),
            };
        }
        grants
    }

    /// The final state as `--state` writes it: values as numbers, arrays as lists, dicts as
    /// objects, queues as the list of items left; locks and pipes left out.
    pub(crate) fn state_json(&self) -> Json {
        let mut out = Map::new();
        for made in &self.made {
            let (name, state) = match made {
                Made::Value(v) => (v.name(), Json::from(v.get())),
                Made::FloatValue(v) => (v.name(), Json::from(v.get())),
                Made::Array(a) => (a.name(), Json::from(a.to_vec())),
                Made::FloatArray(a) => (a.name(), Json::from(a.to_vec())),
                Made::Queue(q) => (
                    q.name(),
                    Json::Array(q.items().iter().map(|item| bytes_json(item)).collect()),
                ),
                Made::Dict(d) => (
                    d.name(),
                    Json::Object(
                        d.entries()
                            .into_iter()
                            .map(|(k, v)| (k, bytes_json(&v)))
                            .collect(),
                    ),
                ),
                Made::Lock(_) | Made::Pipe(..) => continue,
            };
            out.insert(name.to_string(), state);
        }
        Json::Object(out)
    }

    /// Writes the state where `--state` said, if it did.
    pub(crate) fn write_state(&self) -> anyhow::Result<()> {
        let Some(to) = &self.state else {
            return Ok(());
        };
        let text = format!("{}\n", self.state_json());
        if to == "-" {
            crate::terminal::state(&text);
        } else {
            std::fs::File::create(to)
                .and_then(|mut f| f.write_all(text.as_bytes()))
                .with_context(|| format!("cannot write the state to {to}"))?;
        }
        Ok(())
    }
}

/// A stored byte string as `--state` shows it: its JSON if it is UTF-8 JSON text, else the
/// text, else its bytes as numbers.
fn bytes_json(bytes: &[u8]) -> Json {
    match std::str::from_utf8(bytes) {
        Ok(text) => serde_json::from_str(text).unwrap_or_else(|_| Json::String(text.into())),
        Err(_) => Json::from(bytes.to_vec()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stored_bytes_show_as_json_text_or_numbers() {
        assert_eq!(bytes_json(b"{\"a\":1}"), serde_json::json!({"a": 1}));
        assert_eq!(bytes_json(b"plain"), Json::String("plain".into()));
        assert_eq!(bytes_json(&[0xff, 1]), serde_json::json!([255, 1]));
    }

    #[test]
    fn a_value_needs_a_name_and_an_equals_sign() {
        assert!(split("counter", "--value", "NAME=N").is_err());
        assert!(split("=3", "--value", "NAME=N").is_err());
        assert_eq!(split("c=3", "--value", "NAME=N").unwrap(), ("c", "3"));
    }
}
