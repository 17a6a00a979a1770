//! Python values to and from the library's.
//!
//! In: a Python object is serialized into the library through serde ([`PyArg`], or [`Owned`]
//! for a stream's items, converted while the GIL is held and serialized on the stream's
//! thread), so that the library checks it against the export's signature with its own
//! messages. `None` is `none`; a `bool`, an `int`, a `float`, a `str` are themselves; `bytes`
//! and `bytearray` are lists of bytes; `list`, `tuple`, `set` and `frozenset` are sequences;
//! a `dict` (string keys) is a record, a variant case (`{"circle": 2.0}`), a `result` case
//! (`{"ok": v}`) or arguments by name. A float that is not finite travels as JSON does
//! (`"NaN"`, `"inf"`, `"-inf"`).
//!
//! Out: results come as JSON with serde's names, and [`to_python`] turns them into Python
//! objects by the WIT type: `list<u8>` is `bytes`, a tuple a `tuple`, a record a `dict` keyed
//! by WIT's field names, an enum case or a payload-less variant case its WIT name, a variant
//! case with a payload `{name: payload}`, an option `None` or its value, a nested `result`
//! `{"ok": v}` or `{"err": e}`, flags a `set` of names.

use pyo3::prelude::*;
use pyo3::types::{
    PyBool, PyByteArray, PyBytes, PyDict, PyFloat, PyFrozenSet, PyInt, PyList, PySet, PyString,
    PyTuple,
};
use serde::Serialize;
use serde::ser::{Error as _, SerializeMap, SerializeSeq};
use serde_json::Value as Json;
use wasmpool::WitType;

/// A Python object as serde sees it, serialized with the GIL held.
pub(crate) struct PyArg<'a, 'py>(pub(crate) &'a Bound<'py, PyAny>);

/// The text of a float that JSON cannot hold.
fn special_float(x: f64) -> &'static str {
    if x.is_nan() {
        "NaN"
    } else if x > 0.0 {
        "inf"
    } else {
        "-inf"
    }
}

fn type_name(obj: &Bound<'_, PyAny>) -> String {
    obj.get_type()
        .name()
        .map(|n| n.to_string())
        .unwrap_or_else(|_| "?".into())
}

fn unsupported(obj: &Bound<'_, PyAny>) -> String {
    format!(
        "a Python {} cannot be passed to a task (use int, float, str, bytes, bool, None, list, tuple or dict)",
        type_name(obj)
    )
}

fn too_big(obj: &Bound<'_, PyAny>) -> String {
    let text = obj
        .repr()
        .map(|r| r.to_string())
        .unwrap_or_else(|_| "an int".into());
    format!("the int {text} does not fit in 64 bits")
}

impl Serialize for PyArg<'_, '_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let obj = self.0;
        if obj.is_none() {
            return s.serialize_none();
        }
        if let Ok(b) = obj.cast::<PyBool>() {
            return s.serialize_bool(b.is_true());
        }
        if let Ok(i) = obj.cast::<PyInt>() {
            if let Ok(v) = i.extract::<i64>() {
                return s.serialize_i64(v);
            }
            if let Ok(v) = i.extract::<u64>() {
                return s.serialize_u64(v);
            }
            return Err(S::Error::custom(too_big(obj)));
        }
        if let Ok(f) = obj.cast::<PyFloat>() {
            let x = f.value();
            return if x.is_finite() {
                s.serialize_f64(x)
            } else {
                s.serialize_str(special_float(x))
            };
        }
        if let Ok(text) = obj.cast::<PyString>() {
            let text = text.to_cow().map_err(S::Error::custom)?;
            return s.serialize_str(&text);
        }
        if let Ok(bytes) = obj.cast::<PyBytes>() {
            return bytes_seq(s, bytes.as_bytes());
        }
        if let Ok(bytes) = obj.cast::<PyByteArray>() {
            return bytes_seq(s, &bytes.to_vec());
        }
        if let Ok(tuple) = obj.cast::<PyTuple>() {
            let mut seq = s.serialize_seq(Some(tuple.len()))?;
            for item in tuple.iter() {
                seq.serialize_element(&PyArg(&item))?;
            }
            return seq.end();
        }
        if let Ok(list) = obj.cast::<PyList>() {
            let mut seq = s.serialize_seq(Some(list.len()))?;
            for item in list.iter() {
                seq.serialize_element(&PyArg(&item))?;
            }
            return seq.end();
        }
        if let Ok(dict) = obj.cast::<PyDict>() {
            let mut map = s.serialize_map(Some(dict.len()))?;
            for (k, v) in dict.iter() {
                let key = k.cast::<PyString>().map_err(|_| {
                    S::Error::custom(format!(
                        "a dict passed to a task has string keys only, not {}",
                        type_name(&k)
                    ))
                })?;
                let key = key.to_cow().map_err(S::Error::custom)?;
                map.serialize_entry(&*key, &PyArg(&v))?;
            }
            return map.end();
        }
        if obj.cast::<PySet>().is_ok() || obj.cast::<PyFrozenSet>().is_ok() {
            let items: Vec<Bound<'_, PyAny>> = obj
                .try_iter()
                .map_err(S::Error::custom)?
                .collect::<PyResult<_>>()
                .map_err(S::Error::custom)?;
            let mut seq = s.serialize_seq(Some(items.len()))?;
            for item in &items {
                seq.serialize_element(&PyArg(item))?;
            }
            return seq.end();
        }
        Err(S::Error::custom(unsupported(obj)))
    }
}

fn bytes_seq<S: serde::Serializer>(s: S, bytes: &[u8]) -> Result<S::Ok, S::Error> {
    let mut seq = s.serialize_seq(Some(bytes.len()))?;
    for b in bytes {
        seq.serialize_element(b)?;
    }
    seq.end()
}

/// A Python value converted while the GIL was held, serialized later without it.
#[derive(Debug, Clone)]
pub(crate) enum Owned {
    None,
    Bool(bool),
    I64(i64),
    U64(u64),
    F64(f64),
    Str(String),
    Seq(Vec<Owned>),
    Map(Vec<(String, Owned)>),
    /// A value that cannot be passed: its item fails with this as its `BadInput`.
    Invalid(String),
}

impl Owned {
    /// Converts `obj` as [`PyArg`] would serialize it.
    pub(crate) fn from_py(obj: &Bound<'_, PyAny>) -> PyResult<Owned> {
        let all = |items: &mut dyn Iterator<Item = Bound<'_, PyAny>>| -> PyResult<Owned> {
            let mut out = Vec::new();
            for item in items {
                out.push(Owned::from_py(&item)?);
            }
            Ok(Owned::Seq(out))
        };
        Ok(if obj.is_none() {
            Owned::None
        } else if let Ok(b) = obj.cast::<PyBool>() {
            Owned::Bool(b.is_true())
        } else if let Ok(i) = obj.cast::<PyInt>() {
            if let Ok(v) = i.extract::<i64>() {
                Owned::I64(v)
            } else if let Ok(v) = i.extract::<u64>() {
                Owned::U64(v)
            } else {
                Owned::Invalid(too_big(obj))
            }
        } else if let Ok(f) = obj.cast::<PyFloat>() {
            let x = f.value();
            if x.is_finite() {
                Owned::F64(x)
            } else {
                Owned::Str(special_float(x).into())
            }
        } else if let Ok(text) = obj.cast::<PyString>() {
            Owned::Str(text.to_cow()?.into_owned())
        } else if let Ok(bytes) = obj.cast::<PyBytes>() {
            Owned::Seq(
                bytes
                    .as_bytes()
                    .iter()
                    .map(|b| Owned::U64(u64::from(*b)))
                    .collect(),
            )
        } else if let Ok(bytes) = obj.cast::<PyByteArray>() {
            Owned::Seq(
                bytes
                    .to_vec()
                    .into_iter()
                    .map(|b| Owned::U64(u64::from(b)))
                    .collect(),
            )
        } else if let Ok(tuple) = obj.cast::<PyTuple>() {
            all(&mut tuple.iter())?
        } else if let Ok(list) = obj.cast::<PyList>() {
            all(&mut list.iter())?
        } else if obj.cast::<PySet>().is_ok() || obj.cast::<PyFrozenSet>().is_ok() {
            let items: Vec<Bound<'_, PyAny>> = obj.try_iter()?.collect::<PyResult<_>>()?;
            all(&mut items.into_iter())?
        } else if let Ok(dict) = obj.cast::<PyDict>() {
            let mut fields = Vec::with_capacity(dict.len());
            for (k, v) in dict.iter() {
                let Ok(key) = k.cast::<PyString>() else {
                    return Ok(Owned::Invalid(format!(
                        "a dict passed to a task has string keys only, not {}",
                        type_name(&k)
                    )));
                };
                fields.push((key.to_cow()?.into_owned(), Owned::from_py(&v)?));
            }
            Owned::Map(fields)
        } else {
            Owned::Invalid(unsupported(obj))
        })
    }

    /// A `starmap` item: a tuple spread over the parameters `names` (given by name, as a
    /// stream's items are each one value).
    pub(crate) fn star(item: &Bound<'_, PyAny>, names: &[String]) -> PyResult<Owned> {
        let values = match Owned::from_py(item)? {
            Owned::Seq(values) => values,
            other => vec![other],
        };
        if values.len() != names.len() {
            return Ok(Owned::Invalid(format!(
                "expected {} argument{} ({}), got {}",
                names.len(),
                if names.len() == 1 { "" } else { "s" },
                names.join(", "),
                values.len()
            )));
        }
        if names.len() == 1 {
            return Ok(values.into_iter().next().unwrap_or(Owned::None));
        }
        Ok(Owned::Map(names.iter().cloned().zip(values).collect()))
    }
}

impl Serialize for Owned {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Owned::None => s.serialize_none(),
            Owned::Bool(b) => s.serialize_bool(*b),
            Owned::I64(n) => s.serialize_i64(*n),
            Owned::U64(n) => s.serialize_u64(*n),
            Owned::F64(x) => s.serialize_f64(*x),
            Owned::Str(text) => s.serialize_str(text),
            Owned::Seq(items) => {
                let mut seq = s.serialize_seq(Some(items.len()))?;
                for item in items {
                    seq.serialize_element(item)?;
                }
                seq.end()
            }
            Owned::Map(fields) => {
                let mut map = s.serialize_map(Some(fields.len()))?;
                for (k, v) in fields {
                    map.serialize_entry(k, v)?;
                }
                map.end()
            }
            Owned::Invalid(why) => Err(S::Error::custom(why)),
        }
    }
}

/// WIT names are kebab-case, serde's snake_case or UpperCamelCase: the same name ignoring
/// case, `-` and `_` (as the library matches them).
fn same_name(given: &str, wit: &str) -> bool {
    let norm = |s: &str| -> Vec<char> {
        s.chars()
            .filter(|c| *c != '-' && *c != '_')
            .map(|c| c.to_ascii_lowercase())
            .collect()
    };
    norm(given) == norm(wit)
}

/// A JSON value as the Python object it stands for, shaped by `ty` when known.
pub(crate) fn to_python(py: Python<'_>, json: &Json, ty: Option<&WitType>) -> PyResult<Py<PyAny>> {
    let Some(ty) = ty else {
        return plain(py, json);
    };
    let any = |v: Bound<'_, PyAny>| Ok(v.unbind());
    match (ty, json) {
        (WitType::F32 | WitType::F64, Json::String(text)) => {
            let x = match text.as_str() {
                "NaN" | "nan" => f64::NAN,
                "inf" | "+inf" | "Infinity" => f64::INFINITY,
                "-inf" | "-Infinity" => f64::NEG_INFINITY,
                _ => return plain(py, json),
            };
            any(PyFloat::new(py, x).into_any())
        }
        (WitType::F32 | WitType::F64, Json::Number(n)) => {
            any(PyFloat::new(py, n.as_f64().unwrap_or(f64::NAN)).into_any())
        }
        (WitType::List(elem), Json::Array(items)) if **elem == WitType::U8 => {
            let bytes: Option<Vec<u8>> = items
                .iter()
                .map(|v| v.as_u64().and_then(|n| u8::try_from(n).ok()))
                .collect();
            match bytes {
                Some(bytes) => any(PyBytes::new(py, &bytes).into_any()),
                None => plain(py, json),
            }
        }
        (WitType::List(elem), Json::Array(items)) => {
            let list = PyList::empty(py);
            for item in items {
                list.append(to_python(py, item, Some(elem))?)?;
            }
            any(list.into_any())
        }
        (WitType::Tuple(types), Json::Array(items)) => {
            let mut out = Vec::with_capacity(items.len());
            for (i, item) in items.iter().enumerate() {
                out.push(to_python(py, item, types.get(i))?);
            }
            any(PyTuple::new(py, out)?.into_any())
        }
        (WitType::Record(fields), Json::Object(map)) => {
            let dict = PyDict::new(py);
            for (name, t) in fields {
                let value = map
                    .get(&name.replace('-', "_"))
                    .or_else(|| map.get(name))
                    .or_else(|| map.iter().find(|(k, _)| same_name(k, name)).map(|(_, v)| v));
                if let Some(value) = value {
                    dict.set_item(name, to_python(py, value, Some(t))?)?;
                }
            }
            any(dict.into_any())
        }
        (WitType::Variant(cases), Json::String(case)) => {
            let name = cases
                .iter()
                .find(|(n, _)| same_name(case, n))
                .map_or(case.as_str(), |(n, _)| n.as_str());
            any(PyString::new(py, name).into_any())
        }
        (WitType::Variant(cases), Json::Object(map)) if map.len() == 1 => {
            let (case, payload) = map.iter().next().expect("one entry");
            let found = cases.iter().find(|(n, _)| same_name(case, n));
            let (name, t) = match found {
                Some((n, t)) => (n.as_str(), t.as_ref()),
                None => (case.as_str(), None),
            };
            let dict = PyDict::new(py);
            dict.set_item(name, to_python(py, payload, t)?)?;
            any(dict.into_any())
        }
        (WitType::Enum(cases), Json::String(case)) => {
            let name = cases
                .iter()
                .find(|n| same_name(case, n))
                .map_or(case.as_str(), |n| n.as_str());
            any(PyString::new(py, name).into_any())
        }
        (WitType::Option(_), Json::Null) => Ok(py.None()),
        (WitType::Option(t), other) => to_python(py, other, Some(t)),
        (WitType::Result { ok, err }, Json::Object(map)) if map.len() == 1 => {
            let (case, payload) = map.iter().next().expect("one entry");
            let (name, t) = if same_name(case, "ok") {
                ("ok", ok.as_deref())
            } else {
                ("err", err.as_deref())
            };
            let dict = PyDict::new(py);
            dict.set_item(name, to_python(py, payload, t)?)?;
            any(dict.into_any())
        }
        (WitType::Flags(all), Json::Array(items)) => {
            let set = PySet::empty(py)?;
            for item in items {
                let Some(flag) = item.as_str() else {
                    return plain(py, json);
                };
                let name = all
                    .iter()
                    .find(|n| same_name(flag, n))
                    .map_or(flag, |n| n.as_str());
                set.add(name)?;
            }
            any(set.into_any())
        }
        _ => plain(py, json),
    }
}

/// JSON as Python, without a type: numbers, strings, lists and dicts.
fn plain(py: Python<'_>, json: &Json) -> PyResult<Py<PyAny>> {
    Ok(match json {
        Json::Null => py.None(),
        Json::Bool(b) => PyBool::new(py, *b).to_owned().into_any().unbind(),
        Json::Number(n) => {
            if let Some(i) = n.as_i64() {
                i.into_pyobject(py)?.into_any().unbind()
            } else if let Some(u) = n.as_u64() {
                u.into_pyobject(py)?.into_any().unbind()
            } else {
                PyFloat::new(py, n.as_f64().unwrap_or(f64::NAN))
                    .into_any()
                    .unbind()
            }
        }
        Json::String(s) => PyString::new(py, s).into_any().unbind(),
        Json::Array(items) => {
            let list = PyList::empty(py);
            for item in items {
                list.append(plain(py, item)?)?;
            }
            list.into_any().unbind()
        }
        Json::Object(map) => {
            let dict = PyDict::new(py);
            for (k, v) in map {
                dict.set_item(k, plain(py, v)?)?;
            }
            dict.into_any().unbind()
        }
    })
}
