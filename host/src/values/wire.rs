//! Values on the wire between host and worker: a [`Value`]'s encoding (serde's derive, with a
//! guard on depth), and numbers packed eight bytes apiece ([`Packed`]), the wire form of a
//! chunk's arguments and of a run of outcomes when every value is a number (or a boolean or a
//! character). The frames around them are [`crate::wire`]'s.
//!
//! A `map` over numbers sends tens of thousands of one-number argument lists per chunk. As
//! [`Value`]s, each costs an enum tag, a variable-length integer and a depth check to encode
//! and decode on each side; packed, a whole chunk is one copy of bytes, and each number is
//! read back with one match on its kind.

use serde::{Deserialize, Serialize};
use smallvec::SmallVec;

use super::{MAX_VALUE_DEPTH, Value, Values};

/// The wire form of [`Value`]: serde derives it here, and `Value`'s own impls wrap it with a
/// depth guard.
#[derive(Serialize, Deserialize)]
#[serde(remote = "Value")]
enum ValueDef {
    Bool(bool),
    S8(i8),
    U8(u8),
    S16(i16),
    U16(u16),
    S32(i32),
    U32(u32),
    S64(i64),
    U64(u64),
    F32(f32),
    F64(f64),
    Char(char),
    String(String),
    List(Vec<Value>),
    Record(Vec<(String, Value)>),
    Tuple(Vec<Value>),
    Variant(String, Option<Box<Value>>),
    Enum(String),
    Option(Option<Box<Value>>),
    Result(Result<Option<Box<Value>>, Option<Box<Value>>>),
    Flags(Vec<String>),
}

impl Serialize for Value {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        ValueDef::serialize(self, serializer)
    }
}

thread_local! {
    static DECODE_DEPTH: std::cell::Cell<u32> = const { std::cell::Cell::new(0) };
}

impl<'de> Deserialize<'de> for Value {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Value, D::Error> {
        let depth = DECODE_DEPTH.with(|d| {
            d.set(d.get() + 1);
            d.get()
        });
        let result = if depth > MAX_VALUE_DEPTH {
            Err(serde::de::Error::custom(format!(
                "value nested deeper than {MAX_VALUE_DEPTH}"
            )))
        } else {
            ValueDef::deserialize(deserializer)
        };
        DECODE_DEPTH.with(|d| d.set(d.get() - 1));
        result
    }
}

/// The kind of a packed number.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) enum Kind {
    Bool,
    S8,
    U8,
    S16,
    U16,
    S32,
    U32,
    S64,
    U64,
    F32,
    F64,
    Char,
}

/// The kinds of one item's values; `None` if one of them is not a number.
pub(crate) fn kinds_of(values: &[Value]) -> Option<SmallVec<[Kind; 4]>> {
    values
        .iter()
        .map(|v| pack(v).map(|(kind, _)| kind))
        .collect()
}

/// A number's kind and its word (a boolean or character counts as a number); `None` for any
/// other value.
pub(crate) fn pack(value: &Value) -> Option<(Kind, u64)> {
    Some(match *value {
        Value::Bool(b) => (Kind::Bool, u64::from(b)),
        Value::S8(n) => (Kind::S8, n as u64),
        Value::U8(n) => (Kind::U8, u64::from(n)),
        Value::S16(n) => (Kind::S16, n as u64),
        Value::U16(n) => (Kind::U16, u64::from(n)),
        Value::S32(n) => (Kind::S32, n as u64),
        Value::U32(n) => (Kind::U32, u64::from(n)),
        Value::S64(n) => (Kind::S64, n as u64),
        Value::U64(n) => (Kind::U64, n),
        Value::F32(x) => (Kind::F32, u64::from(x.to_bits())),
        Value::F64(x) => (Kind::F64, x.to_bits()),
        Value::Char(c) => (Kind::Char, u64::from(u32::from(c))),
        _ => return None,
    })
}

pub(crate) fn unpack(kind: Kind, word: u64) -> Result<Value, String> {
    Ok(match kind {
        Kind::Bool => Value::Bool(word != 0),
        Kind::S8 => Value::S8(word as i8),
        Kind::U8 => Value::U8(word as u8),
        Kind::S16 => Value::S16(word as i16),
        Kind::U16 => Value::U16(word as u16),
        Kind::S32 => Value::S32(word as i32),
        Kind::U32 => Value::U32(word as u32),
        Kind::S64 => Value::S64(word as i64),
        Kind::U64 => Value::U64(word),
        Kind::F32 => Value::F32(f32::from_bits(word as u32)),
        Kind::F64 => Value::F64(f64::from_bits(word)),
        Kind::Char => Value::Char(
            char::from_u32(word as u32).ok_or_else(|| format!("{word:#x} is not a character"))?,
        ),
    })
}

/// Items of numbers, all of the same kinds, packed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct Packed {
    /// The kinds of each item's numbers, in order.
    kinds: SmallVec<[Kind; 4]>,
    /// How many items.
    count: u32,
    /// `kinds.len()` numbers per item, each as 8 little-endian bytes.
    words: Bytes,
}

impl Packed {
    /// An empty pack for items of these kinds.
    pub(crate) fn new(kinds: SmallVec<[Kind; 4]>) -> Self {
        Packed {
            kinds,
            count: 0,
            words: Bytes(Vec::new()),
        }
    }

    /// An empty pack for items like `values`, if they are all numbers.
    pub(crate) fn start(values: &[Value]) -> Option<Self> {
        kinds_of(values).map(Packed::new)
    }

    /// A pack of all `items`, if they are all numbers of the same kinds.
    pub(crate) fn of<'a>(mut items: impl Iterator<Item = &'a [Value]> + Clone) -> Option<Self> {
        let mut packed = Packed::new(kinds_of(items.clone().next()?)?);
        items.all(|values| packed.push(values)).then_some(packed)
    }

    /// Adds one item; `false` (and nothing added) if its values are not of this pack's kinds.
    pub(crate) fn push(&mut self, values: &[Value]) -> bool {
        if values.len() != self.kinds.len() {
            return false;
        }
        let start = self.words.0.len();
        for (value, &kind) in values.iter().zip(&self.kinds) {
            match pack(value) {
                Some((k, word)) if k == kind => self.words.0.extend_from_slice(&word.to_le_bytes()),
                _ => {
                    self.words.0.truncate(start);
                    return false;
                }
            }
        }
        self.count += 1;
        true
    }

    /// A pack of `count` items of these kinds, from their words already laid out as the pack
    /// keeps them (`kinds.len()` little-endian words per item): what
    /// [`crate::values::pack::Packer`] makes straight from a caller's numbers.
    pub(crate) fn from_bytes(kinds: SmallVec<[Kind; 4]>, count: u32, words: Vec<u8>) -> Self {
        debug_assert_eq!(words.len(), kinds.len() * 8 * count as usize);
        Packed {
            kinds,
            count,
            words: Bytes(words),
        }
    }

    /// How many items.
    pub(crate) fn len(&self) -> usize {
        self.count as usize
    }

    /// The pack's bytes, to reuse their memory.
    pub(crate) fn into_bytes(self) -> Vec<u8> {
        self.words.0
    }

    /// For items of one number each, their kind and their words as the pack keeps them (8
    /// little-endian bytes an item), in order; `None` for items of another arity, or a pack
    /// whose bytes do not match its count. Read in place: how a run of results is filed
    /// without a [`Value`] each.
    pub(crate) fn number_bytes(&self) -> Option<(Kind, &[u8])> {
        match self.kinds.as_slice() {
            [kind] if self.words.0.len() == 8 * self.len() => Some((*kind, &self.words.0)),
            _ => None,
        }
    }

    /// For items of one number each, their kind and their numbers as words, in order (a
    /// batch chunk's elements, for a typed call); `None` for items of another arity, or a
    /// pack whose bytes do not match its count.
    pub(crate) fn words(&self) -> Option<(Kind, Vec<u64>)> {
        let [kind] = self.kinds.as_slice() else {
            return None;
        };
        if self.words.0.len() != 8 * self.len() {
            return None;
        }
        let words = self.words.0.chunks_exact(8);
        Some((
            *kind,
            words
                .map(|w| u64::from_le_bytes(w.try_into().expect("8")))
                .collect(),
        ))
    }

    /// A pack of one number of `kind` per item, from their words (as [`Packed::words`] gives
    /// them): a typed batch call's results.
    pub(crate) fn of_words(kind: Kind, words: &[u64]) -> Self {
        let mut bytes = Vec::with_capacity(8 * words.len());
        for word in words {
            bytes.extend_from_slice(&word.to_le_bytes());
        }
        Packed {
            kinds: smallvec::smallvec![kind],
            count: u32::try_from(words.len()).expect("a chunk's items fit in u32"),
            words: Bytes(bytes),
        }
    }

    /// Each item's numbers, in order, read in place; an error for a pack whose bytes do not
    /// match its count.
    pub(crate) fn rows(&self) -> impl ExactSizeIterator<Item = Result<Row<'_>, String>> + '_ {
        let arity = self.kinds.len();
        let consistent = self.words.0.len() == arity * 8 * self.len();
        (0..self.len()).map(move |i| {
            if !consistent {
                return Err("a packed chunk whose size does not match its count".to_string());
            }
            Ok(Row {
                kinds: &self.kinds,
                words: &self.words.0[i * arity * 8..(i + 1) * arity * 8],
            })
        })
    }

    /// Whether every item decodes: the bytes match the count, and every character is one.
    pub(crate) fn check(&self) -> Result<(), String> {
        let chars = self.kinds.contains(&Kind::Char);
        for row in self.rows() {
            let row = row?;
            if chars {
                for value in row.values() {
                    value?;
                }
            }
        }
        Ok(())
    }

    /// Each item's values, in order; an error for a pack that does not hold what it says
    /// (bytes for a different count, an invalid character).
    pub(crate) fn items(&self) -> impl ExactSizeIterator<Item = Result<Values, String>> + '_ {
        // One number per item (a map's results): read straight from its word.
        let single = match self.kinds.as_slice() {
            [kind] => Some(*kind),
            _ => None,
        };
        self.rows().map(move |row| {
            if let Some(kind) = single {
                let row = row?;
                let word = u64::from_le_bytes(row.words.try_into().expect("8"));
                return Ok(smallvec::smallvec![unpack(kind, word)?]);
            }
            // A plain loop: collecting into a `Result` costs more than the unpacking.
            let mut values = Values::new();
            for value in row?.values() {
                values.push(value?);
            }
            Ok(values)
        })
    }
}

/// One item of a [`Packed`]: its numbers, still in the pack's bytes. A worker calls a guest
/// with them without building [`Values`] first.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Row<'a> {
    kinds: &'a [Kind],
    words: &'a [u8],
}

impl Row<'_> {
    /// The values; an error for an invalid character.
    pub(crate) fn values(&self) -> impl Iterator<Item = Result<Value, String>> + '_ {
        self.words
            .chunks_exact(8)
            .zip(self.kinds)
            .map(|(bytes, &kind)| unpack(kind, u64::from_le_bytes(bytes.try_into().expect("8"))))
    }
}

/// Bytes that serde encodes in one piece (postcard: a length, then a copy), where a
/// `Vec<u8>` would go element by element.
#[derive(Debug, Clone, PartialEq, Default)]
struct Bytes(Vec<u8>);

impl Serialize for Bytes {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_bytes(&self.0)
    }
}

impl<'de> Deserialize<'de> for Bytes {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl<'de> serde::de::Visitor<'de> for Visitor {
            type Value = Bytes;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("bytes")
            }
            fn visit_bytes<E: serde::de::Error>(self, v: &[u8]) -> Result<Bytes, E> {
                Ok(Bytes(v.to_vec()))
            }
            fn visit_byte_buf<E: serde::de::Error>(self, v: Vec<u8>) -> Result<Bytes, E> {
                Ok(Bytes(v))
            }
        }
        deserializer.deserialize_byte_buf(Visitor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deep_values_are_refused_not_overflowed() {
        // Tag 13 is List, then a length of 1: a million nested lists in 2 MB of garbage.
        let garbage: Vec<u8> = [13u8, 1].repeat(1_000_000);
        let err = postcard::from_bytes::<Value>(&garbage).unwrap_err();
        assert!(matches!(err, postcard::Error::SerdeDeCustom), "{err:?}");
        let mut ok = Value::U8(1);
        for _ in 0..MAX_VALUE_DEPTH - 1 {
            ok = Value::List(vec![ok]);
        }
        let bytes = postcard::to_allocvec(&ok).unwrap();
        assert_eq!(postcard::from_bytes::<Value>(&bytes).unwrap(), ok);
    }

    proptest::proptest! {
        /// Any bytes decode to a value or an error, never a panic or an overflow.
        #[test]
        fn garbage_values_never_panic(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..256)) {
            let _ = postcard::from_bytes::<Value>(&bytes);
            let _ = postcard::from_bytes::<Vec<Value>>(&bytes);
        }
    }

    #[test]
    fn numbers_of_every_kind_round_trip() {
        let item: Vec<Value> = vec![
            Value::Bool(true),
            Value::S8(-8),
            Value::U8(200),
            Value::S16(-1600),
            Value::U16(60000),
            Value::S32(i32::MIN),
            Value::U32(u32::MAX),
            Value::S64(-1),
            Value::U64(u64::MAX),
            Value::F32(-0.5),
            Value::F64(f64::NAN),
            Value::Char('λ'),
        ];
        let other: Vec<Value> = item.iter().rev().cloned().collect();
        let packed = Packed::of([item.as_slice(), item.as_slice()].into_iter()).unwrap();
        assert_eq!(packed.len(), 2);
        let bytes = postcard::to_allocvec(&packed).unwrap();
        let back: Packed = postcard::from_bytes(&bytes).unwrap();
        let items: Vec<Values> = back.items().collect::<Result<_, _>>().unwrap();
        // NaN is not equal to itself: compare the debug forms.
        assert_eq!(format!("{:?}", items[1].as_slice()), format!("{item:?}"));
        assert!(!back.clone().push(&other));
        assert!(Packed::of([item.as_slice(), other.as_slice()].into_iter()).is_none());
        let text = [Value::String("x".into())];
        assert!(Packed::of(std::iter::once(text.as_slice())).is_none());
    }

    #[test]
    fn items_without_arguments_are_counted() {
        let none: [Value; 0] = [];
        let packed = Packed::of([none.as_slice(); 3].into_iter()).unwrap();
        assert_eq!(packed.items().count(), 3);
    }

    proptest::proptest! {
        /// A pack from garbage (a hostile worker's results frame) decodes to items or errors,
        /// never a panic.
        #[test]
        fn garbage_packs_never_panic(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..256)) {
            if let Ok(packed) = postcard::from_bytes::<Packed>(&bytes) {
                // The host reads no more items than the chunk holds.
                for item in packed.items().take(1000) {
                    let _ = item;
                }
            }
        }
    }

    #[test]
    fn inconsistent_packs_are_errors_not_panics() {
        let mut packed = Packed::of(std::iter::once([Value::Char('a')].as_slice())).unwrap();
        assert_eq!(packed.check(), Ok(()));
        packed.words.0[0..4].copy_from_slice(&0xD800u32.to_le_bytes());
        assert!(packed.items().next().unwrap().is_err());
        assert!(packed.check().is_err(), "a surrogate is not a character");
        packed.count = 5;
        assert!(packed.items().all(|item| item.is_err()));
        assert!(packed.check().is_err(), "five items in the bytes of one");
    }
}
