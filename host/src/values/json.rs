//! JSON in and out: a caller's JSON arguments checked against an export's signature and
//! turned into [`Value`]s, and results turned back into JSON.
//!
//! Every argument route ends here, the Rust one included (see [`super::rust`]): a wrong count
//! or a wrong type is an [`ArgsError`] naming the parameter and the WIT type it expects.
//! Results become JSON with WIT's names ([`to_json`], the command line's output) or with
//! serde's defaults ([`to_rust_json`]: snake_case fields, UpperCamelCase variants,
//! `Ok`/`Err`), which is how they reach a Rust type.

use serde_json::{Map, Number, Value as Json};

use super::{ArgsError, ArgsShape, Signature, Value, ValueError, Values, WitType};

/// Checks a caller's JSON arguments against `sig` and converts them, naming the parameter
/// and its WIT type on a mismatch.
pub(crate) fn args_from_json(
    sig: &Signature,
    args: &Json,
    shape: ArgsShape,
) -> Result<Values, ArgsError> {
    if let Json::Object(named) = args
        && takes_by_name(sig, named)
    {
        return named_args(sig, named);
    }
    let spread: smallvec::SmallVec<[&Json; 4]> = match (shape, args) {
        (ArgsShape::Spread, Json::Array(items)) => items.iter().collect(),
        (ArgsShape::Spread, Json::Null) if sig.params.is_empty() => smallvec::SmallVec::new(),
        (_, one) => smallvec::smallvec![one],
    };
    spread_args(sig, &spread, shape)
}

/// Whether a JSON object is the arguments by name (`{"base": 2, "exponent": 10}`) rather than
/// one argument: always for an export of several parameters (an object cannot be several
/// arguments otherwise); for one parameter, only when the object's one key is the parameter's
/// name and the parameter is not a record (an object is a record's own form).
fn takes_by_name(sig: &Signature, named: &serde_json::Map<String, Json>) -> bool {
    match sig.params.as_slice() {
        [] => false,
        [(name, ty)] => {
            !matches!(ty, WitType::Record(_)) && named.len() == 1 && named.contains_key(name)
        }
        _ => true,
    }
}

/// Arguments by name: each parameter's value under its name, in any order, each key a
/// parameter.
fn named_args(sig: &Signature, named: &serde_json::Map<String, Json>) -> Result<Values, ArgsError> {
    let missing: Vec<String> = sig
        .params
        .iter()
        .filter(|(name, _)| !named.contains_key(name))
        .map(|(name, _)| name.clone())
        .collect();
    let unknown: Vec<String> = named
        .keys()
        .filter(|key| !sig.params.iter().any(|(name, _)| name == *key))
        .cloned()
        .collect();
    if !missing.is_empty() || !unknown.is_empty() {
        return Err(ArgsError::Names {
            params: sig
                .params
                .iter()
                .map(|(n, t)| format!("{n}: {t}"))
                .collect(),
            missing,
            unknown,
        });
    }
    let spread: smallvec::SmallVec<[&Json; 4]> =
        sig.params.iter().map(|(name, _)| &named[name]).collect();
    spread_args(sig, &spread, ArgsShape::Spread)
}

/// Checks and converts arguments already spread over the parameters (one JSON value each).
pub(crate) fn spread_args(
    sig: &Signature,
    spread: &[&Json],
    shape: ArgsShape,
) -> Result<Values, ArgsError> {
    if spread.len() != sig.params.len() {
        return Err(ArgsError::Count {
            params: sig
                .params
                .iter()
                .map(|(n, t)| format!("{n}: {t}"))
                .collect(),
            got: spread.len(),
            single_for_many: shape == ArgsShape::Single && sig.params.len() > 1,
        });
    }
    // A plain loop: collecting into a `Result` costs more than converting one number.
    let mut values = Values::new();
    for ((name, ty), json) in sig.params.iter().zip(spread) {
        values.push(from_json(json, ty, name).map_err(ArgsError::Value)?);
    }
    Ok(values)
}

/// Converts `json` to a [`Value`] of type `ty`; `path` names the place for error messages.
pub(crate) fn from_json(json: &Json, ty: &WitType, path: &str) -> Result<Value, ValueError> {
    let fail = |found: String| ValueError {
        path: path.to_string(),
        expected: ty.to_string(),
        found,
    };
    let mismatch = || fail(excerpt(json));
    Ok(match ty {
        WitType::Bool => Value::Bool(json.as_bool().ok_or_else(mismatch)?),
        WitType::S8 => Value::S8(int(json).ok_or_else(mismatch)?),
        WitType::U8 => Value::U8(int(json).ok_or_else(mismatch)?),
        WitType::S16 => Value::S16(int(json).ok_or_else(mismatch)?),
        WitType::U16 => Value::U16(int(json).ok_or_else(mismatch)?),
        WitType::S32 => Value::S32(int(json).ok_or_else(mismatch)?),
        WitType::U32 => Value::U32(int(json).ok_or_else(mismatch)?),
        WitType::S64 => Value::S64(int(json).ok_or_else(mismatch)?),
        WitType::U64 => Value::U64(int(json).ok_or_else(mismatch)?),
        WitType::F32 => {
            let x = float(json).ok_or_else(mismatch)?;
            let narrow = x as f32;
            // A finite number too large for an f32 would become an infinity: refused, as an
            // integer too large for its type is.
            if x.is_finite() && narrow.is_infinite() {
                return Err(fail(format!("{} (out of range for f32)", excerpt(json))));
            }
            Value::F32(narrow)
        }
        WitType::F64 => Value::F64(float(json).ok_or_else(mismatch)?),
        WitType::Char => {
            let s = json.as_str().ok_or_else(mismatch)?;
            let mut chars = s.chars();
            match (chars.next(), chars.next()) {
                (Some(c), None) => Value::Char(c),
                _ => {
                    return Err(fail(format!(
                        "{} (not exactly one character)",
                        excerpt(json)
                    )));
                }
            }
        }
        WitType::String => Value::String(json.as_str().ok_or_else(mismatch)?.to_string()),
        WitType::List(elem) => {
            let items = json.as_array().ok_or_else(mismatch)?;
            let mut out = Vec::with_capacity(items.len());
            for (i, item) in items.iter().enumerate() {
                out.push(from_json(item, elem, &format!("{path}[{i}]"))?);
            }
            Value::List(out)
        }
        WitType::Tuple(types) => {
            let items = json.as_array().ok_or_else(mismatch)?;
            if items.len() != types.len() {
                return Err(fail(format!("{} ({} items)", excerpt(json), items.len())));
            }
            let mut out = Vec::with_capacity(items.len());
            for (i, (item, t)) in items.iter().zip(types).enumerate() {
                out.push(from_json(item, t, &format!("{path}.{i}"))?);
            }
            Value::Tuple(out)
        }
        WitType::Record(fields) => {
            let object = json.as_object().ok_or_else(mismatch)?;
            for key in object.keys() {
                if !fields.iter().any(|(name, _)| same_name(key, name)) {
                    return Err(fail(format!("unknown field `{key}`")));
                }
            }
            let mut out = Vec::with_capacity(fields.len());
            for (name, t) in fields {
                let field_path = format!("{path}.{name}");
                let value = match object.iter().find(|(key, _)| same_name(key, name)) {
                    Some((_, v)) => from_json(v, t, &field_path)?,
                    // A missing field of an option type is `none`, as serde does.
                    None if matches!(t, WitType::Option(_)) => Value::Option(None),
                    None => return Err(fail(format!("no field `{name}`"))),
                };
                out.push((name.clone(), value));
            }
            Value::Record(out)
        }
        WitType::Variant(cases) => {
            let (case, payload) = tagged(json).ok_or_else(mismatch)?;
            let (name, t) = cases
                .iter()
                .find(|(name, _)| same_name(case, name))
                .ok_or_else(|| fail(format!("unknown case `{case}`")))?;
            let payload = match (t, payload) {
                (None, None | Some(Json::Null)) => None,
                (Some(t), Some(p)) => Some(Box::new(from_json(p, t, &format!("{path}.{name}"))?)),
                (Some(_), None) => return Err(fail(format!("case `{name}` without its payload"))),
                (None, Some(p)) => {
                    return Err(fail(format!(
                        "case `{name}` takes no payload, got {}",
                        excerpt(p)
                    )));
                }
            };
            Value::Variant(name.clone(), payload)
        }
        WitType::Enum(cases) => {
            let case = json.as_str().ok_or_else(mismatch)?;
            let name = cases
                .iter()
                .find(|name| same_name(case, name))
                .ok_or_else(|| fail(format!("unknown case `{case}`")))?;
            Value::Enum(name.clone())
        }
        WitType::Option(t) => match json {
            Json::Null => Value::Option(None),
            other => Value::Option(Some(Box::new(from_json(other, t, path)?))),
        },
        WitType::Result { ok, err } => {
            let (case, payload) = tagged(json).ok_or_else(mismatch)?;
            let side = |t: &Option<Box<WitType>>, label: &str| -> Result<_, ValueError> {
                match (t, payload) {
                    (None, None | Some(Json::Null)) => Ok(None),
                    (Some(t), Some(p)) => {
                        Ok(Some(Box::new(from_json(p, t, &format!("{path}.{label}"))?)))
                    }
                    (Some(_), None) => Err(fail(format!("`{label}` without its payload"))),
                    (None, Some(p)) => Err(fail(format!(
                        "`{label}` takes no payload, got {}",
                        excerpt(p)
                    ))),
                }
            };
            if same_name(case, "ok") {
                Value::Result(Ok(side(ok, "ok")?))
            } else if same_name(case, "err") {
                Value::Result(Err(side(err, "err")?))
            } else {
                return Err(fail(format!("unknown case `{case}` (expected ok or err)")));
            }
        }
        WitType::Flags(all) => {
            let items = json.as_array().ok_or_else(mismatch)?;
            let mut set = Vec::with_capacity(items.len());
            for item in items {
                let flag = item.as_str().ok_or_else(mismatch)?;
                let name = all
                    .iter()
                    .find(|name| same_name(flag, name))
                    .ok_or_else(|| fail(format!("unknown flag `{flag}`")))?;
                if !set.contains(name) {
                    set.push(name.clone());
                }
            }
            Value::Flags(set)
        }
        WitType::Unsupported(what) => {
            return Err(fail(format!(
                "a value; {what} cannot cross a process boundary"
            )));
        }
    })
}

/// The results of a call as one JSON value: `null` for none, the value for one, an array for
/// several. `names` picks WIT's names (the command line's output) or serde's (Rust types).
pub(crate) fn results_json(results: &[Value], names: Names) -> Json {
    let one = |v: &Value| convert(v, &names);
    match results {
        [] => Json::Null,
        [v] => one(v),
        many => Json::Array(many.iter().map(one).collect()),
    }
}

/// Converts a result [`Value`] to JSON with WIT's own names (the CLI's output).
pub(crate) fn to_json(value: &Value) -> Json {
    convert(value, &Names::Wit)
}

/// Converts a result [`Value`] to JSON shaped for serde's default derives: record fields in
/// snake_case, variant and enum cases in UpperCamelCase, results as `{"Ok": ..}`/`{"Err": ..}`.
/// (Results reach Rust types through [`results_json`] with [`Names::Rust`]; the tests check
/// single values with this.)
#[cfg(test)]
pub(crate) fn to_rust_json(value: &Value) -> Json {
    convert(value, &Names::Rust)
}

/// Whose names JSON uses for record fields, variant and enum cases and flags.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Names {
    /// WIT's own: `word-count`, `circle`, `ok`.
    Wit,
    /// serde's defaults for Rust types: `word_count`, `Circle`, `Ok`.
    Rust,
}

impl Names {
    fn field(&self, name: &str) -> String {
        match self {
            Names::Wit => name.to_string(),
            Names::Rust => name.replace('-', "_"),
        }
    }
    fn case(&self, name: &str) -> String {
        match self {
            Names::Wit => name.to_string(),
            Names::Rust => name
                .split('-')
                .map(|part| {
                    let mut chars = part.chars();
                    match chars.next() {
                        Some(c) => c.to_uppercase().chain(chars).collect::<String>(),
                        None => String::new(),
                    }
                })
                .collect(),
        }
    }
}

fn convert(value: &Value, names: &Names) -> Json {
    let boxed = |v: &Option<Box<Value>>| v.as_deref().map_or(Json::Null, |v| convert(v, names));
    match value {
        Value::Bool(b) => Json::Bool(*b),
        Value::S8(n) => Json::from(*n),
        Value::U8(n) => Json::from(*n),
        Value::S16(n) => Json::from(*n),
        Value::U16(n) => Json::from(*n),
        Value::S32(n) => Json::from(*n),
        Value::U32(n) => Json::from(*n),
        Value::S64(n) => Json::from(*n),
        Value::U64(n) => Json::from(*n),
        Value::F32(x) => float_json(f64::from(*x)),
        Value::F64(x) => float_json(*x),
        Value::Char(c) => Json::String(c.to_string()),
        Value::String(s) => Json::String(s.clone()),
        Value::List(items) | Value::Tuple(items) => {
            Json::Array(items.iter().map(|v| convert(v, names)).collect())
        }
        Value::Record(fields) => Json::Object(
            fields
                .iter()
                .map(|(name, v)| (names.field(name), convert(v, names)))
                .collect::<Map<_, _>>(),
        ),
        Value::Variant(case, None) => Json::String(names.case(case)),
        Value::Variant(case, payload) => tag(names.case(case), boxed(payload)),
        Value::Enum(case) => Json::String(names.case(case)),
        Value::Option(v) => boxed(v),
        Value::Result(Ok(v)) => tag(names.case("ok"), boxed(v)),
        Value::Result(Err(v)) => tag(names.case("err"), boxed(v)),
        Value::Flags(flags) => {
            Json::Array(flags.iter().map(|f| Json::String(names.field(f))).collect())
        }
    }
}

fn tag(name: String, payload: Json) -> Json {
    let mut map = Map::new();
    map.insert(name, payload);
    Json::Object(map)
}

/// JSON has no NaN or infinities: they travel as the strings `"NaN"`, `"inf"`, `"-inf"`.
fn float_json(x: f64) -> Json {
    match Number::from_f64(x) {
        Some(n) => Json::Number(n),
        None if x.is_nan() => Json::String("NaN".into()),
        None if x > 0.0 => Json::String("inf".into()),
        None => Json::String("-inf".into()),
    }
}

fn float(json: &Json) -> Option<f64> {
    match json {
        Json::Number(n) => n.as_f64(),
        Json::String(s) => match s.as_str() {
            "NaN" | "nan" => Some(f64::NAN),
            "inf" | "+inf" | "Infinity" => Some(f64::INFINITY),
            "-inf" | "-Infinity" => Some(f64::NEG_INFINITY),
            _ => None,
        },
        _ => None,
    }
}

fn int<T: TryFrom<i64> + TryFrom<u64>>(json: &Json) -> Option<T> {
    let n = json.as_number()?;
    if let Some(i) = n.as_i64() {
        T::try_from(i).ok()
    } else {
        T::try_from(n.as_u64()?).ok()
    }
}

/// A variant-like JSON value: `"case"` or `{"case": payload}`.
fn tagged(json: &Json) -> Option<(&str, Option<&Json>)> {
    match json {
        Json::String(case) => Some((case, None)),
        Json::Object(map) if map.len() == 1 => {
            map.iter().next().map(|(k, v)| (k.as_str(), Some(v)))
        }
        _ => None,
    }
}

/// WIT names are kebab-case; serde's defaults are snake_case and UpperCamelCase. Two names
/// are the same when they match ignoring case, `-` and `_`.
fn same_name(given: &str, wit: &str) -> bool {
    fn norm(s: &str) -> impl Iterator<Item = char> + '_ {
        s.chars()
            .filter(|c| *c != '-' && *c != '_')
            .map(|c| c.to_ascii_lowercase())
    }
    norm(given).eq(norm(wit))
}

fn excerpt(json: &Json) -> String {
    let text = json.to_string();
    if text.chars().count() > 60 {
        format!("{}...", text.chars().take(57).collect::<String>())
    } else {
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::TaskError;
    use serde_json::json;

    fn person() -> WitType {
        WitType::Record(vec![
            ("name".into(), WitType::String),
            ("age".into(), WitType::U8),
            ("email".into(), WitType::Option(Box::new(WitType::String))),
            ("word-count".into(), WitType::U32),
            ("tags".into(), WitType::List(Box::new(WitType::String))),
        ])
    }

    fn shape() -> WitType {
        WitType::Variant(vec![
            ("circle".into(), Some(WitType::F64)),
            (
                "rectangle".into(),
                Some(WitType::Tuple(vec![WitType::F64, WitType::F64])),
            ),
            ("point".into(), None),
        ])
    }

    fn sig(params: Vec<(&str, WitType)>) -> Signature {
        Signature {
            name: "f".into(),
            params: params
                .into_iter()
                .map(|(n, t)| (n.to_string(), t))
                .collect(),
            results: vec![],
        }
    }

    #[test]
    fn arguments_may_be_given_by_name() {
        let power = sig(vec![("base", WitType::S64), ("exponent", WitType::U32)]);
        let by_name = json!({"exponent": 10, "base": 2});
        let expected: Values = smallvec::smallvec![Value::S64(2), Value::U32(10)];
        for shape in [ArgsShape::Spread, ArgsShape::Single] {
            assert_eq!(
                args_from_json(&power, &by_name, shape),
                Ok(expected.clone())
            );
        }
        let err =
            args_from_json(&power, &json!({"base": 2, "exp": 10}), ArgsShape::Spread).unwrap_err();
        assert_eq!(
            err.to_string(),
            "arguments by name must name each parameter (base: s64, exponent: u32); \
             missing: exponent; no such parameter: exp"
        );
        // One parameter: by name only when the key is its name and it is not a record.
        let square = sig(vec![("x", WitType::S64)]);
        assert_eq!(
            args_from_json(&square, &json!({"x": 7}), ArgsShape::Single),
            Ok(smallvec::smallvec![Value::S64(7)])
        );
        let greet = sig(vec![("person", person())]);
        let ada = json!({"name": "Ada", "age": 36, "word-count": 1, "tags": []});
        assert!(matches!(
            args_from_json(&greet, &ada, ArgsShape::Single).unwrap()[0],
            Value::Record(_)
        ));
    }

    #[test]
    fn integers_are_range_checked() {
        assert_eq!(
            from_json(&json!(255), &WitType::U8, "x"),
            Ok(Value::U8(255))
        );
        let err = from_json(&json!(256), &WitType::U8, "x").unwrap_err();
        assert_eq!(err.to_string(), "parameter `x`: expected u8, got 256");
        assert!(from_json(&json!(-1), &WitType::U64, "x").is_err());
        assert_eq!(
            from_json(&json!(u64::MAX), &WitType::U64, "x"),
            Ok(Value::U64(u64::MAX))
        );
        assert!(from_json(&json!(1.5), &WitType::S32, "x").is_err());
        assert!(from_json(&json!("7"), &WitType::S64, "x").is_err());
    }

    #[test]
    fn floats_out_of_range_are_refused_like_integers() {
        let err = from_json(&json!(1e39), &WitType::F32, "x").unwrap_err();
        assert_eq!(
            err.to_string(),
            "parameter `x`: expected f32, got 1e+39 (out of range for f32)"
        );
        assert!(from_json(&json!(-1e39), &WitType::F32, "x").is_err());
        assert_eq!(
            from_json(&json!(3.4028235e38), &WitType::F32, "x"),
            Ok(Value::F32(f32::MAX)),
            "the largest f32 fits"
        );
        assert!(matches!(
            from_json(&json!("inf"), &WitType::F32, "x"),
            Ok(Value::F32(x)) if x == f32::INFINITY
        ));
        assert_eq!(
            from_json(&json!(1e39), &WitType::F64, "x"),
            Ok(Value::F64(1e39))
        );
    }

    #[test]
    fn records_accept_rust_names_and_missing_options() {
        let v = from_json(
            &json!({"name": "Ada", "age": 36, "word_count": 3, "tags": ["x"]}),
            &person(),
            "p",
        )
        .unwrap();
        let Value::Record(fields) = &v else {
            panic!("{v:?}")
        };
        assert_eq!(fields[2], ("email".to_string(), Value::Option(None)));
        assert_eq!(fields[3], ("word-count".to_string(), Value::U32(3)));
        let back = to_rust_json(&v);
        assert_eq!(back["word_count"], json!(3));
        assert_eq!(to_json(&v)["word-count"], json!(3));
    }

    #[test]
    fn errors_name_the_path_and_type() {
        let err = from_json(
            &json!({"name": "Ada", "age": 36, "word-count": 3, "tags": ["x", 5]}),
            &person(),
            "p",
        )
        .unwrap_err();
        assert_eq!(err.path, "p.tags[1]");
        assert_eq!(err.expected, "string");
        let err = from_json(&json!({"name": "Ada"}), &person(), "p").unwrap_err();
        assert!(err.found.contains("no field `age`"), "{err}");
        let err = from_json(&json!({"nam": "Ada"}), &person(), "p").unwrap_err();
        assert!(err.found.contains("unknown field `nam`"), "{err}");
    }

    #[test]
    fn variants_round_trip_in_both_namings() {
        for (input, expected) in [
            (
                json!({"circle": 2.0}),
                Value::Variant("circle".into(), Some(Box::new(Value::F64(2.0)))),
            ),
            (
                json!({"Rectangle": [2.0, 3.0]}),
                Value::Variant(
                    "rectangle".into(),
                    Some(Box::new(Value::Tuple(vec![
                        Value::F64(2.0),
                        Value::F64(3.0),
                    ]))),
                ),
            ),
            (json!("Point"), Value::Variant("point".into(), None)),
        ] {
            let v = from_json(&input, &shape(), "s").unwrap();
            assert_eq!(v, expected);
            assert_eq!(from_json(&to_json(&v), &shape(), "s").unwrap(), v);
            assert_eq!(from_json(&to_rust_json(&v), &shape(), "s").unwrap(), v);
        }
        assert!(from_json(&json!("square"), &shape(), "s").is_err());
        assert!(from_json(&json!("circle"), &shape(), "s").is_err());
    }

    #[test]
    fn results_options_flags_chars() {
        let ty = WitType::Result {
            ok: Some(Box::new(WitType::S64)),
            err: Some(Box::new(WitType::String)),
        };
        let ok = from_json(&json!({"Ok": 5}), &ty, "r").unwrap();
        assert_eq!(to_json(&ok), json!({"ok": 5}));
        assert_eq!(to_rust_json(&ok), json!({"Ok": 5}));
        let err = from_json(&json!({"err": "no"}), &ty, "r").unwrap();
        assert_eq!(to_rust_json(&err), json!({"Err": "no"}));
        let flags = WitType::Flags(vec!["read".into(), "write".into()]);
        assert_eq!(
            from_json(&json!(["Write", "read", "write"]), &flags, "f").unwrap(),
            Value::Flags(vec!["write".into(), "read".into()])
        );
        assert!(from_json(&json!(["exec"]), &flags, "f").is_err());
        assert_eq!(
            from_json(&json!("é"), &WitType::Char, "c").unwrap(),
            Value::Char('é')
        );
        assert!(from_json(&json!("ab"), &WitType::Char, "c").is_err());
        let opt = WitType::Option(Box::new(WitType::U8));
        assert_eq!(
            from_json(&json!(null), &opt, "o").unwrap(),
            Value::Option(None)
        );
        assert_eq!(to_json(&Value::F64(f64::NAN)), json!("NaN"));
        assert!(
            matches!(from_json(&json!("-inf"), &WitType::F64, "x"), Ok(Value::F64(x)) if x == f64::NEG_INFINITY)
        );
    }

    #[test]
    fn args_are_counted_and_spread() {
        let power = Signature {
            name: "power".into(),
            params: vec![
                ("base".into(), WitType::S64),
                ("exponent".into(), WitType::U32),
            ],
            results: vec![WitType::S64],
        };
        assert_eq!(
            power.to_string(),
            "power: func(base: s64, exponent: u32) -> s64"
        );
        assert_eq!(
            args_from_json(&power, &json!([2, 3]), ArgsShape::Spread)
                .unwrap()
                .to_vec(),
            vec![Value::S64(2), Value::U32(3)]
        );
        let err = args_from_json(&power, &json!(2), ArgsShape::Single)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("expected 2 arguments (base: s64, exponent: u32), got 1"),
            "{err}"
        );
        assert!(err.contains("starmap"), "{err}");
        let err = args_from_json(&power, &json!([2, -3]), ArgsShape::Spread).unwrap_err();
        assert_eq!(
            err.to_string(),
            "parameter `exponent`: expected u32, got -3"
        );
        let TaskError::BadInput { param, .. } = err.for_task("power") else {
            unreachable!()
        };
        assert_eq!(param.as_deref(), Some("exponent"));

        let square = Signature {
            name: "square".into(),
            params: vec![("x".into(), WitType::S64)],
            results: vec![WitType::S64],
        };
        assert_eq!(
            args_from_json(&square, &json!(7), ArgsShape::Spread)
                .unwrap()
                .to_vec(),
            vec![Value::S64(7)]
        );
        assert_eq!(
            args_from_json(&square, &json!([7]), ArgsShape::Spread)
                .unwrap()
                .to_vec(),
            vec![Value::S64(7)]
        );
        let list = Signature {
            name: "sum".into(),
            params: vec![("xs".into(), WitType::List(Box::new(WitType::S64)))],
            results: vec![],
        };
        assert_eq!(
            args_from_json(&list, &json!([1, 2]), ArgsShape::Single)
                .unwrap()
                .to_vec(),
            vec![Value::List(vec![Value::S64(1), Value::S64(2)])]
        );
    }

    proptest::proptest! {
        /// Any JSON checked against any of a few types converts or errs, never panics.
        #[test]
        fn any_json_against_any_type(text in "[\\[\\]{}\":,0-9a-z.\\- ]{0,40}") {
            if let Ok(json) = serde_json::from_str::<Json>(&text) {
                for ty in [person(), shape(), WitType::Char, WitType::U8, WitType::Flags(vec!["a".into()])] {
                    let _ = from_json(&json, &ty, "x");
                }
            }
        }
    }

    #[test]
    fn types_print_as_wit() {
        assert_eq!(
            shape().to_string(),
            "variant { circle(f64), rectangle(tuple<f64, f64>), point }"
        );
        let r = WitType::Result {
            ok: None,
            err: Some(Box::new(WitType::String)),
        };
        assert_eq!(r.to_string(), "result<_, string>");
    }
}
