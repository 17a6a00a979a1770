//! Rust values through serde: a caller's arguments in ([`args_from_serialize`]), a task's
//! results out into the caller's type ([`typed`]), both without a JSON tree where they can.
//!
//! Most tasks take numbers, booleans, characters or strings, one of them or a tuple of them.
//! For those, serializing into a `serde_json::Value` tree and then checking the tree costs
//! more than the call it feeds. [`args_from_serialize`] captures such a flat argument list
//! directly (each scalar through serde_json's own value serializer, so that it is exactly
//! the JSON that [`serde_json::to_value`] would give) and checks it with the same code as the
//! JSON route. Anything else (structs, maps, nested lists) takes the JSON route unchanged.

use serde::Serialize;
use serde::ser::{self, Impossible};
use serde_json::Value as Json;
use smallvec::SmallVec;

use super::json::{Names, args_from_json, results_json, spread_args};
use super::wire::{Kind, unpack};
use super::{ArgsError, ArgsShape, Signature, Value, Values};
use crate::error::TaskError;

/// Checks and converts a caller's arguments, as `args_from_json(sig, &to_value(args), shape)`
/// would, but without the JSON tree when the arguments are flat.
pub(crate) fn args_from_serialize<T: Serialize + ?Sized>(
    sig: &Signature,
    args: &T,
    shape: ArgsShape,
) -> Result<Values, ArgsError> {
    match args.serialize(Top) {
        Ok(Flat::One(one)) => spread_args(sig, &args_json_one(&one, shape, sig), shape),
        Ok(Flat::Seq(items)) if shape == ArgsShape::Spread => {
            let spread: SmallVec<[&Json; 4]> = items.iter().collect();
            spread_args(sig, &spread, shape)
        }
        // One argument that is itself a list: rare enough to take the JSON route.
        Ok(Flat::Seq(_)) | Err(NotFlat) => match serde_json::to_value(args) {
            Ok(json) => args_from_json(sig, &json, shape),
            Err(e) => Err(ArgsError::Serialize(e.to_string())),
        },
    }
}

/// The arguments a single JSON value stands for: none for `null` spread over no parameters,
/// else the value itself.
fn args_json_one<'a>(one: &'a Json, shape: ArgsShape, sig: &Signature) -> SmallVec<[&'a Json; 4]> {
    match (shape, one) {
        (ArgsShape::Spread, Json::Null) if sig.params.is_empty() => SmallVec::new(),
        _ => smallvec::smallvec![one],
    }
}

/// A flat argument list: one scalar, or a sequence (a tuple, an array) of scalars.
enum Flat {
    One(Json),
    Seq(SmallVec<[Json; 4]>),
}

/// The arguments are not flat (or failed to serialize): take the JSON route, which reports
/// a real error exactly as before.
#[derive(Debug)]
struct NotFlat;

impl std::fmt::Display for NotFlat {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("not a flat argument list")
    }
}

impl std::error::Error for NotFlat {}

impl ser::Error for NotFlat {
    fn custom<M: std::fmt::Display>(_msg: M) -> Self {
        NotFlat
    }
}

/// One scalar, exactly as serde_json's value serializer makes it.
fn scalar(result: Result<Json, serde_json::Error>) -> Result<Json, NotFlat> {
    result.map_err(|_| NotFlat)
}

/// The serializer methods of a scalar, forwarded to serde_json, for a serializer whose `Ok`
/// is `$ok` built from a `Json` by `$wrap`.
macro_rules! forward_scalars {
    ($wrap:expr) => {
        fn serialize_bool(self, v: bool) -> Result<Self::Ok, NotFlat> {
            scalar(serde_json::value::Serializer.serialize_bool(v)).map($wrap)
        }
        fn serialize_i8(self, v: i8) -> Result<Self::Ok, NotFlat> {
            scalar(serde_json::value::Serializer.serialize_i8(v)).map($wrap)
        }
        fn serialize_i16(self, v: i16) -> Result<Self::Ok, NotFlat> {
            scalar(serde_json::value::Serializer.serialize_i16(v)).map($wrap)
        }
        fn serialize_i32(self, v: i32) -> Result<Self::Ok, NotFlat> {
            scalar(serde_json::value::Serializer.serialize_i32(v)).map($wrap)
        }
        fn serialize_i64(self, v: i64) -> Result<Self::Ok, NotFlat> {
            scalar(serde_json::value::Serializer.serialize_i64(v)).map($wrap)
        }
        fn serialize_u8(self, v: u8) -> Result<Self::Ok, NotFlat> {
            scalar(serde_json::value::Serializer.serialize_u8(v)).map($wrap)
        }
        fn serialize_u16(self, v: u16) -> Result<Self::Ok, NotFlat> {
            scalar(serde_json::value::Serializer.serialize_u16(v)).map($wrap)
        }
        fn serialize_u32(self, v: u32) -> Result<Self::Ok, NotFlat> {
            scalar(serde_json::value::Serializer.serialize_u32(v)).map($wrap)
        }
        fn serialize_u64(self, v: u64) -> Result<Self::Ok, NotFlat> {
            scalar(serde_json::value::Serializer.serialize_u64(v)).map($wrap)
        }
        fn serialize_f32(self, v: f32) -> Result<Self::Ok, NotFlat> {
            scalar(serde_json::value::Serializer.serialize_f32(v)).map($wrap)
        }
        fn serialize_f64(self, v: f64) -> Result<Self::Ok, NotFlat> {
            scalar(serde_json::value::Serializer.serialize_f64(v)).map($wrap)
        }
        fn serialize_char(self, v: char) -> Result<Self::Ok, NotFlat> {
            scalar(serde_json::value::Serializer.serialize_char(v)).map($wrap)
        }
        fn serialize_str(self, v: &str) -> Result<Self::Ok, NotFlat> {
            scalar(serde_json::value::Serializer.serialize_str(v)).map($wrap)
        }
        fn serialize_none(self) -> Result<Self::Ok, NotFlat> {
            Ok($wrap(Json::Null))
        }
        fn serialize_some<T: Serialize + ?Sized>(self, value: &T) -> Result<Self::Ok, NotFlat> {
            value.serialize(self)
        }
        fn serialize_unit(self) -> Result<Self::Ok, NotFlat> {
            Ok($wrap(Json::Null))
        }
        fn serialize_unit_struct(self, _name: &'static str) -> Result<Self::Ok, NotFlat> {
            Ok($wrap(Json::Null))
        }
        fn serialize_unit_variant(
            self,
            _name: &'static str,
            _index: u32,
            variant: &'static str,
        ) -> Result<Self::Ok, NotFlat> {
            Ok($wrap(Json::String(variant.to_string())))
        }
        fn serialize_newtype_struct<T: Serialize + ?Sized>(
            self,
            _name: &'static str,
            value: &T,
        ) -> Result<Self::Ok, NotFlat> {
            value.serialize(self)
        }
        fn serialize_bytes(self, _v: &[u8]) -> Result<Self::Ok, NotFlat> {
            Err(NotFlat)
        }
        fn serialize_newtype_variant<T: Serialize + ?Sized>(
            self,
            _name: &'static str,
            _index: u32,
            _variant: &'static str,
            _value: &T,
        ) -> Result<Self::Ok, NotFlat> {
            Err(NotFlat)
        }
        fn serialize_map(self, _len: Option<usize>) -> Result<Self::SerializeMap, NotFlat> {
            Err(NotFlat)
        }
        fn serialize_struct(
            self,
            _name: &'static str,
            _len: usize,
        ) -> Result<Self::SerializeStruct, NotFlat> {
            Err(NotFlat)
        }
        fn serialize_tuple_variant(
            self,
            _name: &'static str,
            _index: u32,
            _variant: &'static str,
            _len: usize,
        ) -> Result<Self::SerializeTupleVariant, NotFlat> {
            Err(NotFlat)
        }
        fn serialize_struct_variant(
            self,
            _name: &'static str,
            _index: u32,
            _variant: &'static str,
            _len: usize,
        ) -> Result<Self::SerializeStructVariant, NotFlat> {
            Err(NotFlat)
        }
    };
}

/// The whole argument list: a scalar, or a sequence of [`Element`]s.
struct Top;

/// One element of a sequence: scalars only.
struct Element;

/// The elements of a sequence, as they come.
struct Elements(SmallVec<[Json; 4]>);

impl ser::Serializer for Top {
    type Ok = Flat;
    type Error = NotFlat;
    type SerializeSeq = Elements;
    type SerializeTuple = Elements;
    type SerializeTupleStruct = Elements;
    type SerializeTupleVariant = Impossible<Flat, NotFlat>;
    type SerializeMap = Impossible<Flat, NotFlat>;
    type SerializeStruct = Impossible<Flat, NotFlat>;
    type SerializeStructVariant = Impossible<Flat, NotFlat>;

    forward_scalars!(Flat::One);

    fn serialize_seq(self, len: Option<usize>) -> Result<Elements, NotFlat> {
        Ok(Elements(SmallVec::with_capacity(len.unwrap_or(0))))
    }
    fn serialize_tuple(self, len: usize) -> Result<Elements, NotFlat> {
        Ok(Elements(SmallVec::with_capacity(len)))
    }
    fn serialize_tuple_struct(self, _name: &'static str, len: usize) -> Result<Elements, NotFlat> {
        Ok(Elements(SmallVec::with_capacity(len)))
    }
}

impl ser::Serializer for Element {
    type Ok = Json;
    type Error = NotFlat;
    type SerializeSeq = Impossible<Json, NotFlat>;
    type SerializeTuple = Impossible<Json, NotFlat>;
    type SerializeTupleStruct = Impossible<Json, NotFlat>;
    type SerializeTupleVariant = Impossible<Json, NotFlat>;
    type SerializeMap = Impossible<Json, NotFlat>;
    type SerializeStruct = Impossible<Json, NotFlat>;
    type SerializeStructVariant = Impossible<Json, NotFlat>;

    forward_scalars!(std::convert::identity);

    fn serialize_seq(self, _len: Option<usize>) -> Result<Self::SerializeSeq, NotFlat> {
        Err(NotFlat)
    }
    fn serialize_tuple(self, _len: usize) -> Result<Self::SerializeTuple, NotFlat> {
        Err(NotFlat)
    }
    fn serialize_tuple_struct(
        self,
        _name: &'static str,
        _len: usize,
    ) -> Result<Self::SerializeTupleStruct, NotFlat> {
        Err(NotFlat)
    }
}

/// The three ways serde spells "a sequence": each adds an [`Element`] and ends in a
/// [`Flat::Seq`].
macro_rules! elements_as {
    ($($trait:ident :: $method:ident),*) => {$(
        impl ser::$trait for Elements {
            type Ok = Flat;
            type Error = NotFlat;
            fn $method<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), NotFlat> {
                self.0.push(value.serialize(Element)?);
                Ok(())
            }
            fn end(self) -> Result<Flat, NotFlat> {
                Ok(Flat::Seq(self.0))
            }
        }
    )*};
}

elements_as!(
    SerializeSeq::serialize_element,
    SerializeTuple::serialize_element,
    SerializeTupleStruct::serialize_field
);

/// Converts a task's results into the caller's Rust type, through their JSON form with serde's
/// names ([`super::json::to_rust_json`]); a failed task's error as it is.
pub(crate) fn typed<R: serde::de::DeserializeOwned>(
    func: &str,
    outcome: &Result<Values, TaskError>,
) -> Result<R, TaskError> {
    let converted = match outcome {
        Ok(results) => match results.as_slice() {
            [one] => match scalar_result::<R>(one) {
                Some(converted) => converted,
                None => serde_json::from_value(results_json(results, Names::Rust)),
            },
            _ => serde_json::from_value(results_json(results, Names::Rust)),
        },
        Err(e) => return Err(e.clone()),
    };
    converted.map_err(|e| TaskError::ResultType {
        func: func.to_string(),
        detail: e.to_string(),
    })
}

/// The one number `word` of `kind` (a result filed packed, see
/// [`crate::values::wire::Packed::number_bytes`]) into the caller's type, exactly as [`typed`]
/// converts the same result as a [`Value`] (the deserializer [`scalar_result`] picks for it),
/// but straight from the word: this runs once per item of a map, on the caller's thread,
/// after the last result is in.
pub(crate) fn typed_number<R: serde::de::DeserializeOwned>(
    func: &str,
    kind: Kind,
    word: u64,
) -> Result<R, TaskError> {
    use serde::de::value::{BoolDeserializer, F64Deserializer, I64Deserializer, U64Deserializer};
    type E = serde_json::Error;
    let signed = |n: i64| R::deserialize(I64Deserializer::<E>::new(n));
    let unsigned = |n: u64| R::deserialize(U64Deserializer::<E>::new(n));
    let float = |x: f64| R::deserialize(F64Deserializer::<E>::new(x));
    let converted = match kind {
        Kind::Bool => R::deserialize(BoolDeserializer::<E>::new(word != 0)),
        Kind::S8 => signed(i64::from(word as i8)),
        Kind::S16 => signed(i64::from(word as i16)),
        Kind::S32 => signed(i64::from(word as i32)),
        Kind::S64 if (word as i64) < 0 => signed(word as i64),
        Kind::S64 => unsigned(word),
        Kind::U8 => unsigned(u64::from(word as u8)),
        Kind::U16 => unsigned(u64::from(word as u16)),
        Kind::U32 => unsigned(u64::from(word as u32)),
        Kind::U64 => unsigned(word),
        Kind::F32 if f32::from_bits(word as u32).is_finite() => {
            float(f64::from(f32::from_bits(word as u32)))
        }
        Kind::F64 if f64::from_bits(word).is_finite() => float(f64::from_bits(word)),
        // Characters, and floats that are no JSON numbers: through their value.
        _ => {
            return match unpack(kind, word) {
                Ok(value) => typed(func, &Ok(smallvec::smallvec![value])),
                Err(detail) => Err(TaskError::Internal {
                    func: func.to_string(),
                    detail,
                }),
            };
        }
    };
    converted.map_err(|e| TaskError::ResultType {
        func: func.to_string(),
        detail: e.to_string(),
    })
}

/// A number, boolean, character or string result straight into the caller's type, exactly as
/// through its JSON form (see [`super::json::to_rust_json`]) but without building it: the common case of a
/// `map` over numbers pays no allocation here. `None` for other values.
fn scalar_result<R: serde::de::DeserializeOwned>(
    value: &Value,
) -> Option<Result<R, serde_json::Error>> {
    use serde::de::value::{
        BoolDeserializer, CharDeserializer, F64Deserializer, I64Deserializer, StrDeserializer,
        U64Deserializer,
    };
    type E = serde_json::Error;
    Some(match value {
        Value::Bool(b) => R::deserialize(BoolDeserializer::<E>::new(*b)),
        Value::S8(n) => R::deserialize(I64Deserializer::<E>::new(i64::from(*n))),
        Value::S16(n) => R::deserialize(I64Deserializer::<E>::new(i64::from(*n))),
        Value::S32(n) => R::deserialize(I64Deserializer::<E>::new(i64::from(*n))),
        Value::S64(n) if *n < 0 => R::deserialize(I64Deserializer::<E>::new(*n)),
        // JSON keeps a non-negative integer as unsigned: so does this.
        Value::S64(n) => R::deserialize(U64Deserializer::<E>::new(*n as u64)),
        Value::U8(n) => R::deserialize(U64Deserializer::<E>::new(u64::from(*n))),
        Value::U16(n) => R::deserialize(U64Deserializer::<E>::new(u64::from(*n))),
        Value::U32(n) => R::deserialize(U64Deserializer::<E>::new(u64::from(*n))),
        Value::U64(n) => R::deserialize(U64Deserializer::<E>::new(*n)),
        Value::F32(x) if x.is_finite() => R::deserialize(F64Deserializer::<E>::new(f64::from(*x))),
        Value::F64(x) if x.is_finite() => R::deserialize(F64Deserializer::<E>::new(*x)),
        Value::Char(c) => R::deserialize(CharDeserializer::<E>::new(*c)),
        Value::String(s) => R::deserialize(StrDeserializer::<E>::new(s)),
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::values::WitType;

    fn sig(params: &[WitType]) -> Signature {
        Signature {
            name: "f".into(),
            params: params
                .iter()
                .enumerate()
                .map(|(i, t)| (format!("p{i}"), t.clone()))
                .collect(),
            results: vec![],
        }
    }

    /// The direct route and the JSON route agree on every argument, in both shapes:
    /// the same values or the same error text.
    fn same<T: Serialize>(sig: &Signature, args: T) {
        for shape in [ArgsShape::Single, ArgsShape::Spread] {
            let direct = args_from_serialize(sig, &args, shape);
            let json = serde_json::to_value(&args)
                .map_err(|e| ArgsError::Serialize(e.to_string()))
                .and_then(|json| args_from_json(sig, &json, shape));
            assert_eq!(direct, json, "{} as {shape:?}", serde_json::json!(args));
        }
    }

    #[test]
    fn flat_arguments_convert_exactly_as_through_json() {
        let s64 = sig(&[WitType::S64]);
        let two = sig(&[WitType::S64, WitType::U32]);
        let floats = sig(&[WitType::F64, WitType::F32]);
        let text = sig(&[WitType::String, WitType::Char, WitType::Bool]);
        let none = sig(&[]);
        let list = sig(&[WitType::List(Box::new(WitType::S64))]);
        let opt = sig(&[WitType::Option(Box::new(WitType::U8))]);
        for s in [&s64, &two, &floats, &text, &none, &list, &opt] {
            same(s, 7i64);
            same(s, -3i32);
            same(s, u64::MAX);
            same(s, (7i64,));
            same(s, (2i64, 3u32));
            same(s, (2i64, -3i64));
            same(s, [1i64, 2, 3]);
            same(s, vec![1u8, 2]);
            same(s, (1.5f64, f32::NAN));
            same(s, (f64::INFINITY, 2.0f32));
            same(s, ("hi", 'λ', true));
            same(s, ("hi", "ab", true));
            same(s, ());
            same(s, Option::<u8>::None);
            same(s, Some(4u8));
            same(s, (Some(4u8),));
            same(s, serde_json::json!({"a": 1}));
            same(s, (vec![1, 2], 3));
        }
    }

    #[test]
    fn numbers_need_no_json_tree() {
        let s64 = sig(&[WitType::S64]);
        assert_eq!(
            args_from_serialize(&s64, &9i64, ArgsShape::Single).unwrap()[0],
            Value::S64(9)
        );
        let err = args_from_serialize(&s64, &"x", ArgsShape::Single).unwrap_err();
        assert_eq!(err.to_string(), "parameter `p0`: expected s64, got \"x\"");
    }

    #[test]
    fn scalar_results_convert_exactly_as_through_json() {
        fn same<R: serde::de::DeserializeOwned + PartialEq + std::fmt::Debug>(v: &Value) {
            let direct = scalar_result::<R>(v)
                .expect("a scalar")
                .map_err(|e| e.to_string());
            let json = serde_json::from_value::<R>(super::super::json::to_rust_json(v))
                .map_err(|e| e.to_string());
            assert_eq!(direct, json, "{v:?} as {}", std::any::type_name::<R>());
        }
        let values = [
            Value::S64(-5),
            Value::S64(7),
            Value::U64(u64::MAX),
            Value::S8(-1),
            Value::U32(300),
            Value::F64(2.5),
            Value::F32(-0.25),
            Value::Bool(true),
            Value::Char('λ'),
            Value::String("hi".into()),
        ];
        for v in &values {
            same::<i64>(v);
            same::<u8>(v);
            same::<u64>(v);
            same::<f64>(v);
            same::<bool>(v);
            same::<String>(v);
            same::<char>(v);
            same::<serde_json::Value>(v);
        }
        assert!(scalar_result::<f64>(&Value::F64(f64::NAN)).is_none());
        assert!(scalar_result::<i64>(&Value::List(vec![])).is_none());
    }

    #[test]
    fn packed_numbers_convert_exactly_as_their_values() {
        use crate::values::wire::pack;
        fn same<R: serde::de::DeserializeOwned + PartialEq + std::fmt::Debug>(v: &Value) {
            let (kind, word) = pack(v).expect("a number");
            let direct = typed_number::<R>("f", kind, word);
            let through_value = typed::<R>("f", &Ok(smallvec::smallvec![v.clone()]));
            assert_eq!(
                direct,
                through_value,
                "{v:?} as {}",
                std::any::type_name::<R>()
            );
        }
        let values = [
            Value::Bool(false),
            Value::S8(-1),
            Value::S8(100),
            Value::U8(255),
            Value::S16(-300),
            Value::U16(60_000),
            Value::S32(i32::MIN),
            Value::U32(u32::MAX),
            Value::S64(-5),
            Value::S64(7),
            Value::S64(i64::MAX),
            Value::U64(u64::MAX),
            Value::F32(-0.25),
            Value::F32(f32::NAN),
            Value::F64(2.5),
            Value::F64(f64::NEG_INFINITY),
            Value::Char('λ'),
        ];
        for v in &values {
            same::<i64>(v);
            same::<u8>(v);
            same::<i8>(v);
            same::<u64>(v);
            same::<f64>(v);
            same::<f32>(v);
            same::<bool>(v);
            same::<String>(v);
            same::<char>(v);
            same::<serde_json::Value>(v);
        }
    }

    #[test]
    fn results_become_the_callers_type() {
        let r: Result<u8, TaskError> = typed("f", &Ok(smallvec::smallvec![Value::U8(7)]));
        assert_eq!(r, Ok(7));
        let r: Result<String, TaskError> = typed("f", &Ok(smallvec::smallvec![Value::U8(7)]));
        assert!(matches!(r, Err(TaskError::ResultType { .. })));
        let r: Result<(u8, u8), TaskError> =
            typed("f", &Ok(smallvec::smallvec![Value::U8(1), Value::U8(2)]));
        assert_eq!(r, Ok((1, 2)));
    }
}
