//! A caller's numbers straight into the packed words the wire carries ([`Packed`]), without a
//! [`Values`](super::Values) list or a JSON value per item: the typed fast path of a `map`
//! over numbers.
//!
//! A `map` of a million tiny items spent most of the host's time turning each number into a
//! JSON value, checking it into a [`Value`], and packing that into eight bytes. A [`Packer`]
//! does the three at once with a serde serializer that takes only what it can decide alone: a
//! number (or boolean, or character) of a kind that fits the parameter, as
//! [`super::rust::args_from_serialize`] would accept it, giving the very `Value` that route
//! gives and packing it with the same code ([`pack`]). Anything else (a number out of range,
//! a string, a float that is not finite, a struct) is refused, and the caller takes the
//! general route for it, which makes the value or the error it always made: the fast path
//! never decides anything differently, it only decides the easy cases sooner.

use serde::Serialize;
use serde::ser::{self, Impossible};
use smallvec::SmallVec;

use super::wire::{Kind, Packed, pack};
use super::{ArgsShape, Signature, Value, WitType};

/// How one task's argument lists pack: the kind of each parameter, when every parameter is a
/// number, and whether an item is one argument or a tuple spread over the parameters.
#[derive(Debug, Clone)]
pub(crate) struct Packer {
    kinds: SmallVec<[Kind; 4]>,
    shape: ArgsShape,
}

impl Packer {
    /// The packer of `sig`'s arguments in `shape`, if every parameter is a number and the
    /// shape can be decided item by item (one parameter for [`ArgsShape::Single`]; at least
    /// one for [`ArgsShape::Spread`]).
    pub(crate) fn new(sig: &Signature, shape: ArgsShape) -> Option<Packer> {
        let kinds: SmallVec<[Kind; 4]> = sig
            .params
            .iter()
            .map(|(_, ty)| kind_of(ty))
            .collect::<Option<_>>()?;
        let fits = match shape {
            ArgsShape::Single => kinds.len() == 1,
            ArgsShape::Spread => !kinds.is_empty(),
        };
        fits.then_some(Packer { kinds, shape })
    }

    /// How many bytes the arguments of `items` items take packed.
    pub(crate) fn bytes_for(&self, items: usize) -> usize {
        items * self.kinds.len() * 8
    }

    /// All of `items`' arguments packed, into `words` (emptied first: a vector to reuse),
    /// if every item packs; `None` if one does not (then the caller takes the general route
    /// for them all, which decides each as always).
    pub(crate) fn pack_all<T: Serialize>(&self, items: &[T], mut words: Vec<u8>) -> Option<Packed> {
        let count = u32::try_from(items.len()).ok()?;
        words.clear();
        words.reserve(self.bytes_for(items.len()));
        for item in items {
            if !self.push(item, &mut words) {
                return None;
            }
        }
        Some(Packed::from_bytes(self.kinds.clone(), count, words))
    }

    /// Appends one item's words to `words`; `false` (and `words` as it was) if the item is
    /// not one the fast path decides.
    fn push<T: Serialize + ?Sized>(&self, item: &T, words: &mut Vec<u8>) -> bool {
        let start = words.len();
        let packed = match (self.shape, self.kinds.as_slice()) {
            // One parameter: the item itself, or (spread) a tuple of one.
            (ArgsShape::Single, [kind]) => item.serialize(Number(*kind)).map(|w| put(words, w)),
            (ArgsShape::Spread, _) => item.serialize(Spread {
                kinds: &self.kinds,
                words,
            }),
            (ArgsShape::Single, _) => Err(Refused),
        };
        if packed.is_err() {
            words.truncate(start);
        }
        packed.is_ok()
    }
}

fn put(words: &mut Vec<u8>, word: u64) {
    words.extend_from_slice(&word.to_le_bytes());
}

/// The packed kind of a parameter's type, if it is a number (or a boolean, or a character).
fn kind_of(ty: &WitType) -> Option<Kind> {
    Some(match ty {
        WitType::Bool => Kind::Bool,
        WitType::S8 => Kind::S8,
        WitType::U8 => Kind::U8,
        WitType::S16 => Kind::S16,
        WitType::U16 => Kind::U16,
        WitType::S32 => Kind::S32,
        WitType::U32 => Kind::U32,
        WitType::S64 => Kind::S64,
        WitType::U64 => Kind::U64,
        WitType::F32 => Kind::F32,
        WitType::F64 => Kind::F64,
        WitType::Char => Kind::Char,
        _ => return None,
    })
}

/// Not an item the fast path decides: the general route will.
#[derive(Debug)]
struct Refused;

impl std::fmt::Display for Refused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("not a number the fast path decides")
    }
}

impl std::error::Error for Refused {}

impl ser::Error for Refused {
    fn custom<M: std::fmt::Display>(_msg: M) -> Self {
        Refused
    }
}

/// The word of `value`, which must be of `kind`.
fn word(kind: Kind, value: Value) -> Result<u64, Refused> {
    match pack(&value) {
        Some((k, word)) if k == kind => Ok(word),
        _ => Err(Refused),
    }
}

/// An integer as a parameter of `kind`, as the JSON route takes it: an integer kind takes it
/// if it fits; a float kind takes its nearest `f64` (narrowed to `f32` from there); others
/// refuse.
fn integer<N>(kind: Kind, n: N) -> Result<u64, Refused>
where
    N: Copy,
    i8: TryFrom<N>,
    u8: TryFrom<N>,
    i16: TryFrom<N>,
    u16: TryFrom<N>,
    i32: TryFrom<N>,
    u32: TryFrom<N>,
    i64: TryFrom<N>,
    u64: TryFrom<N>,
    f64: FromInteger<N>,
{
    // Each word as `pack` makes it of the `Value` the JSON route gives (the tests hold the
    // two to it), without making that value: this is the per-item path.
    let fit = |ok: Option<u64>| ok.ok_or(Refused);
    Ok(match kind {
        Kind::S8 => fit(i8::try_from(n).ok().map(|n| n as u64))?,
        Kind::U8 => fit(u8::try_from(n).ok().map(u64::from))?,
        Kind::S16 => fit(i16::try_from(n).ok().map(|n| n as u64))?,
        Kind::U16 => fit(u16::try_from(n).ok().map(u64::from))?,
        Kind::S32 => fit(i32::try_from(n).ok().map(|n| n as u64))?,
        Kind::U32 => fit(u32::try_from(n).ok().map(u64::from))?,
        Kind::S64 => fit(i64::try_from(n).ok().map(|n| n as u64))?,
        Kind::U64 => fit(u64::try_from(n).ok())?,
        // serde_json's `Number::as_f64` of an integer, then (for f32) `as f32` of that.
        Kind::F64 => f64::from_integer(n).to_bits(),
        Kind::F32 => u64::from((f64::from_integer(n) as f32).to_bits()),
        Kind::Bool | Kind::Char => return Err(Refused),
    })
}

/// `n as f64`, for the integer types serde hands a serializer.
trait FromInteger<N> {
    fn from_integer(n: N) -> f64;
}

impl FromInteger<i64> for f64 {
    fn from_integer(n: i64) -> f64 {
        n as f64
    }
}

impl FromInteger<u64> for f64 {
    fn from_integer(n: u64) -> f64 {
        n as f64
    }
}

/// A finite float as a parameter of `kind`: a float kind takes it (an `f32` parameter only
/// if it does not overflow to an infinity, which the JSON route refuses); others refuse, as
/// the JSON route refuses a float for an integer. A float that is not finite is JSON's
/// `null` there: refused here, for that route to say so.
fn float(kind: Kind, x: f64) -> Result<u64, Refused> {
    if !x.is_finite() {
        return Err(Refused);
    }
    let value = match kind {
        Kind::F64 => Value::F64(x),
        Kind::F32 if (x as f32).is_finite() => Value::F32(x as f32),
        _ => return Err(Refused),
    };
    word(kind, value)
}

/// The methods of a serializer of numbers ([`Number`], [`Spread`]) for everything else: an
/// option's value and a newtype's inner value are serialized as themselves (as serde_json
/// does), all the rest is refused.
macro_rules! refuse_all_but_numbers {
    ($ok:ty) => {
        fn serialize_str(self, _v: &str) -> Result<$ok, Refused> {
            Err(Refused)
        }
        fn serialize_bytes(self, _v: &[u8]) -> Result<$ok, Refused> {
            Err(Refused)
        }
        fn serialize_none(self) -> Result<$ok, Refused> {
            Err(Refused)
        }
        fn serialize_some<T: Serialize + ?Sized>(self, value: &T) -> Result<$ok, Refused> {
            value.serialize(self)
        }
        fn serialize_unit(self) -> Result<$ok, Refused> {
            Err(Refused)
        }
        fn serialize_unit_struct(self, _name: &'static str) -> Result<$ok, Refused> {
            Err(Refused)
        }
        fn serialize_unit_variant(
            self,
            _name: &'static str,
            _index: u32,
            _variant: &'static str,
        ) -> Result<$ok, Refused> {
            Err(Refused)
        }
        fn serialize_newtype_struct<T: Serialize + ?Sized>(
            self,
            _name: &'static str,
            value: &T,
        ) -> Result<$ok, Refused> {
            value.serialize(self)
        }
        fn serialize_newtype_variant<T: Serialize + ?Sized>(
            self,
            _name: &'static str,
            _index: u32,
            _variant: &'static str,
            _value: &T,
        ) -> Result<$ok, Refused> {
            Err(Refused)
        }
        fn serialize_tuple_variant(
            self,
            _name: &'static str,
            _index: u32,
            _variant: &'static str,
            _len: usize,
        ) -> Result<Self::SerializeTupleVariant, Refused> {
            Err(Refused)
        }
        fn serialize_map(self, _len: Option<usize>) -> Result<Self::SerializeMap, Refused> {
            Err(Refused)
        }
        fn serialize_struct(
            self,
            _name: &'static str,
            _len: usize,
        ) -> Result<Self::SerializeStruct, Refused> {
            Err(Refused)
        }
        fn serialize_struct_variant(
            self,
            _name: &'static str,
            _index: u32,
            _variant: &'static str,
            _len: usize,
        ) -> Result<Self::SerializeStructVariant, Refused> {
            Err(Refused)
        }
    };
}

/// One number of `kind`, serialized straight into its word.
struct Number(Kind);

impl ser::Serializer for Number {
    type Ok = u64;
    type Error = Refused;
    type SerializeSeq = Impossible<u64, Refused>;
    type SerializeTuple = Impossible<u64, Refused>;
    type SerializeTupleStruct = Impossible<u64, Refused>;
    type SerializeTupleVariant = Impossible<u64, Refused>;
    type SerializeMap = Impossible<u64, Refused>;
    type SerializeStruct = Impossible<u64, Refused>;
    type SerializeStructVariant = Impossible<u64, Refused>;

    fn serialize_bool(self, v: bool) -> Result<u64, Refused> {
        word(self.0, Value::Bool(v))
    }
    fn serialize_i8(self, v: i8) -> Result<u64, Refused> {
        integer(self.0, i64::from(v))
    }
    fn serialize_i16(self, v: i16) -> Result<u64, Refused> {
        integer(self.0, i64::from(v))
    }
    fn serialize_i32(self, v: i32) -> Result<u64, Refused> {
        integer(self.0, i64::from(v))
    }
    fn serialize_i64(self, v: i64) -> Result<u64, Refused> {
        integer(self.0, v)
    }
    fn serialize_u8(self, v: u8) -> Result<u64, Refused> {
        integer(self.0, u64::from(v))
    }
    fn serialize_u16(self, v: u16) -> Result<u64, Refused> {
        integer(self.0, u64::from(v))
    }
    fn serialize_u32(self, v: u32) -> Result<u64, Refused> {
        integer(self.0, u64::from(v))
    }
    fn serialize_u64(self, v: u64) -> Result<u64, Refused> {
        integer(self.0, v)
    }
    fn serialize_f32(self, v: f32) -> Result<u64, Refused> {
        // serde_json keeps an f32 as the f64 it widens to.
        float(self.0, f64::from(v))
    }
    fn serialize_f64(self, v: f64) -> Result<u64, Refused> {
        float(self.0, v)
    }
    fn serialize_char(self, v: char) -> Result<u64, Refused> {
        word(self.0, Value::Char(v))
    }
    fn serialize_seq(self, _len: Option<usize>) -> Result<Self::SerializeSeq, Refused> {
        Err(Refused)
    }
    fn serialize_tuple(self, _len: usize) -> Result<Self::SerializeTuple, Refused> {
        Err(Refused)
    }
    fn serialize_tuple_struct(
        self,
        _name: &'static str,
        _len: usize,
    ) -> Result<Self::SerializeTupleStruct, Refused> {
        Err(Refused)
    }

    refuse_all_but_numbers!(u64);
}

/// An argument list spread over the parameters: one number for a task of one parameter, or
/// a tuple (or array) of exactly one number per parameter, as
/// [`super::rust::args_from_serialize`] spreads them.
struct Spread<'a> {
    kinds: &'a [Kind],
    words: &'a mut Vec<u8>,
}

/// The numbers of a spread tuple, as they come: the next goes to parameter `next`.
struct Elements<'a> {
    kinds: &'a [Kind],
    words: &'a mut Vec<u8>,
    next: usize,
}

impl<'a> Spread<'a> {
    /// One number for the only parameter.
    fn one(self, number: impl FnOnce(Number) -> Result<u64, Refused>) -> Result<(), Refused> {
        match self.kinds {
            [kind] => number(Number(*kind)).map(|w| put(self.words, w)),
            _ => Err(Refused),
        }
    }

    fn elements(self, len: Option<usize>) -> Result<Elements<'a>, Refused> {
        if len.is_some_and(|len| len != self.kinds.len()) {
            return Err(Refused);
        }
        Ok(Elements {
            kinds: self.kinds,
            words: self.words,
            next: 0,
        })
    }
}

impl Elements<'_> {
    fn element<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), Refused> {
        let kind = *self.kinds.get(self.next).ok_or(Refused)?;
        put(self.words, value.serialize(Number(kind))?);
        self.next += 1;
        Ok(())
    }

    fn end(self) -> Result<(), Refused> {
        if self.next == self.kinds.len() {
            Ok(())
        } else {
            Err(Refused)
        }
    }
}

/// The three ways serde spells "a sequence": each element is the next parameter's number.
macro_rules! elements_as {
    ($($trait:ident :: $method:ident),*) => {$(
        impl ser::$trait for Elements<'_> {
            type Ok = ();
            type Error = Refused;
            fn $method<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), Refused> {
                self.element(value)
            }
            fn end(self) -> Result<(), Refused> {
                Elements::end(self)
            }
        }
    )*};
}

elements_as!(
    SerializeSeq::serialize_element,
    SerializeTuple::serialize_element,
    SerializeTupleStruct::serialize_field
);

/// A scalar method of [`Spread`]: the one number of a task of one parameter.
macro_rules! spread_scalars {
    ($($method:ident($ty:ty)),*) => {$(
        fn $method(self, v: $ty) -> Result<(), Refused> {
            self.one(|number| ser::Serializer::$method(number, v))
        }
    )*};
}

impl<'a> ser::Serializer for Spread<'a> {
    type Ok = ();
    type Error = Refused;
    type SerializeSeq = Elements<'a>;
    type SerializeTuple = Elements<'a>;
    type SerializeTupleStruct = Elements<'a>;
    type SerializeTupleVariant = Impossible<(), Refused>;
    type SerializeMap = Impossible<(), Refused>;
    type SerializeStruct = Impossible<(), Refused>;
    type SerializeStructVariant = Impossible<(), Refused>;

    spread_scalars!(
        serialize_bool(bool),
        serialize_i8(i8),
        serialize_i16(i16),
        serialize_i32(i32),
        serialize_i64(i64),
        serialize_u8(u8),
        serialize_u16(u16),
        serialize_u32(u32),
        serialize_u64(u64),
        serialize_f32(f32),
        serialize_f64(f64),
        serialize_char(char)
    );

    fn serialize_seq(self, len: Option<usize>) -> Result<Elements<'a>, Refused> {
        self.elements(len)
    }
    fn serialize_tuple(self, len: usize) -> Result<Elements<'a>, Refused> {
        self.elements(Some(len))
    }
    fn serialize_tuple_struct(
        self,
        _name: &'static str,
        len: usize,
    ) -> Result<Elements<'a>, Refused> {
        self.elements(Some(len))
    }

    refuse_all_but_numbers!(());
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::values::rust::args_from_serialize;

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

    /// What the fast path packs is exactly what the general route makes, packed: whenever
    /// the packer takes an item, `args_from_serialize` accepts it with the same values.
    fn same<T: Serialize>(sig: &Signature, args: T) -> bool {
        let mut took = false;
        for shape in [ArgsShape::Single, ArgsShape::Spread] {
            let Some(packer) = Packer::new(sig, shape) else {
                continue;
            };
            let Some(packed) = packer.pack_all(std::slice::from_ref(&args), Vec::new()) else {
                continue;
            };
            took = true;
            let general = args_from_serialize(sig, &args, shape)
                .unwrap_or_else(|e| panic!("the packer took what the general route refuses: {e}"));
            let expected = Packed::of(std::iter::once(general.as_slice())).unwrap();
            assert_eq!(packed, expected, "{shape:?}");
        }
        took
    }

    #[test]
    fn packs_exactly_what_the_general_route_makes() {
        let kinds = [
            WitType::Bool,
            WitType::S8,
            WitType::U8,
            WitType::S16,
            WitType::U16,
            WitType::S32,
            WitType::U32,
            WitType::S64,
            WitType::U64,
            WitType::F32,
            WitType::F64,
            WitType::Char,
        ];
        for ty in &kinds {
            let one = sig(std::slice::from_ref(ty));
            same(&one, 7i64);
            same(&one, -3i32);
            same(&one, -129i64);
            same(&one, 300u16);
            same(&one, 70_000u32);
            same(&one, u64::MAX);
            same(&one, i64::MIN);
            same(&one, (1u64 << 53) + 1);
            same(&one, 1.5f64);
            same(&one, 0.1f32);
            same(&one, 1e300f64);
            same(&one, f64::NAN);
            same(&one, f32::INFINITY);
            same(&one, true);
            same(&one, 'λ');
            same(&one, "a");
            same(&one, "NaN");
            same(&one, Some(4u8));
            same(&one, Option::<u8>::None);
            same(&one, (5i64,));
            same(&one, [5i64]);
            same(&one, ());
            for other in &kinds {
                let two = sig(&[ty.clone(), other.clone()]);
                same(&two, (2i64, 3u32));
                same(&two, (2.5f64, -1i8));
                same(&two, (true, 'x'));
                same(&two, [1u8, 2]);
                same(&two, vec![1u8, 2, 3]);
                same(&two, (1i64,));
                same(&two, 4i64);
            }
        }
    }

    #[test]
    fn takes_the_common_cases_and_leaves_the_rest() {
        let s64 = sig(&[WitType::S64]);
        assert!(same(&s64, 7i64));
        assert!(same(&s64, 7u8));
        assert!(
            !same(&s64, u64::MAX),
            "out of range: the general route says so"
        );
        assert!(!same(&s64, 1.0f64), "a float for an integer: refused there");
        let f64s = sig(&[WitType::F64, WitType::F32]);
        assert!(same(&f64s, (1.5f64, 2i32)));
        assert!(
            !same(&f64s, (f64::NAN, 1.0f32)),
            "not finite: JSON's null there"
        );
        assert!(
            !same(&f64s, (1.0f64, 1e300f64)),
            "an f32 overflow is an error there"
        );
        assert!(!same(&f64s, (1.0f64,)), "too few");
        assert!(!same(&f64s, (1.0f64, 2.0f64, 3.0f64)), "too many");
        assert!(Packer::new(&sig(&[WitType::String]), ArgsShape::Single).is_none());
        assert!(Packer::new(&sig(&[]), ArgsShape::Spread).is_none());
        assert!(Packer::new(&f64s, ArgsShape::Single).is_none());
        let packer = Packer::new(&s64, ArgsShape::Single).unwrap();
        assert!(packer.pack_all(&[1i64, 2, 3], Vec::new()).is_some());
        let mixed = [serde_json::json!(1), serde_json::json!("two")];
        assert!(
            packer.pack_all(&mixed, Vec::new()).is_none(),
            "one item refused: all go the general way"
        );
    }
}
