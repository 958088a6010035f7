//! JSON bodies read so that a number with a zero fraction (`3.0`, `1e3`) is an integer wherever the request's type
//! has an integer. JSON Schema, and so the OpenAPI description, counts such numbers as integers (clients and
//! fuzzers send them); serde_json alone refuses them for integer fields. Only fields read as integers change:
//! a value read as arbitrary JSON (an action's `input`) keeps its numbers as written.

use std::fmt;

use serde::de::{self, DeserializeOwned, DeserializeSeed, Deserializer, Visitor};

/// Parses `bytes` (one JSON value, nothing after it but whitespace) as `T`.
pub fn from_slice<T: DeserializeOwned>(bytes: &[u8]) -> serde_json::Result<T> {
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let value = T::deserialize(Whole(&mut de))?;
    de.end()?;
    Ok(value)
}

/// A deserializer that hands every value it reads to a [`Wrap`]ped visitor.
struct Whole<D>(D);

/// A visitor that reads nested values through [`Whole`] and, when `INTEGER` (the type asked for an integer), takes
/// a whole float as that integer.
struct Wrap<V, const INTEGER: bool>(V);

/// A seed that reads through [`Whole`].
struct Seed<S>(S);

/// Sequence, map and enum access that read through [`Whole`].
struct Access<A>(A);

macro_rules! forward {
    ($($method:ident)*) => {
        $(
            fn $method<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Self::Error> {
                self.0.$method(Wrap::<V, false>(visitor))
            }
        )*
    };
}

macro_rules! integer {
    ($($method:ident)*) => {
        $(
            fn $method<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Self::Error> {
                self.0.$method(Wrap::<V, true>(visitor))
            }
        )*
    };
}

impl<'de, D: Deserializer<'de>> Deserializer<'de> for Whole<D> {
    type Error = D::Error;

    forward! {
        deserialize_any deserialize_bool deserialize_f32 deserialize_f64 deserialize_char deserialize_str
        deserialize_string deserialize_bytes deserialize_byte_buf deserialize_option deserialize_unit
        deserialize_seq deserialize_map deserialize_identifier deserialize_ignored_any
    }

    integer! {
        deserialize_i8 deserialize_i16 deserialize_i32 deserialize_i64 deserialize_i128
        deserialize_u8 deserialize_u16 deserialize_u32 deserialize_u64 deserialize_u128
    }

    fn deserialize_unit_struct<V: Visitor<'de>>(self, name: &'static str, visitor: V) -> Result<V::Value, D::Error> {
        self.0.deserialize_unit_struct(name, Wrap::<V, false>(visitor))
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(self, name: &'static str, visitor: V) -> Result<V::Value, D::Error> {
        self.0.deserialize_newtype_struct(name, Wrap::<V, false>(visitor))
    }

    fn deserialize_tuple<V: Visitor<'de>>(self, len: usize, visitor: V) -> Result<V::Value, D::Error> {
        self.0.deserialize_tuple(len, Wrap::<V, false>(visitor))
    }

    fn deserialize_tuple_struct<V: Visitor<'de>>(
        self,
        name: &'static str,
        len: usize,
        visitor: V,
    ) -> Result<V::Value, D::Error> {
        self.0.deserialize_tuple_struct(name, len, Wrap::<V, false>(visitor))
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        name: &'static str,
        fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, D::Error> {
        self.0.deserialize_struct(name, fields, Wrap::<V, false>(visitor))
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        name: &'static str,
        variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, D::Error> {
        self.0.deserialize_enum(name, variants, Wrap::<V, false>(visitor))
    }

    fn is_human_readable(&self) -> bool {
        self.0.is_human_readable()
    }
}

macro_rules! visit {
    ($($method:ident($ty:ty))*) => {
        $(
            fn $method<E: de::Error>(self, v: $ty) -> Result<V::Value, E> {
                self.0.$method(v)
            }
        )*
    };
}

/// The integer a whole float stands for, when it has one.
fn whole(v: f64) -> Option<Result<u64, i64>> {
    // 2^64 and -2^63 are exact as floats; every whole float in between is an integer of u64 or i64.
    if v.fract() != 0.0 || !v.is_finite() {
        None
    } else if (0.0..18_446_744_073_709_551_616.0).contains(&v) {
        Some(Ok(v as u64))
    } else if (-9_223_372_036_854_775_808.0..0.0).contains(&v) {
        Some(Err(v as i64))
    } else {
        None
    }
}

impl<'de, V: Visitor<'de>, const INTEGER: bool> Visitor<'de> for Wrap<V, INTEGER> {
    type Value = V::Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.expecting(f)
    }

    visit! {
        visit_bool(bool) visit_i8(i8) visit_i16(i16) visit_i32(i32) visit_i64(i64) visit_i128(i128)
        visit_u8(u8) visit_u16(u16) visit_u32(u32) visit_u64(u64) visit_u128(u128) visit_f32(f32)
        visit_char(char) visit_str(&str) visit_borrowed_str(&'de str) visit_string(String)
        visit_bytes(&[u8]) visit_borrowed_bytes(&'de [u8]) visit_byte_buf(Vec<u8>)
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<V::Value, E> {
        match whole(v) {
            Some(Ok(n)) if INTEGER => self.0.visit_u64(n),
            Some(Err(n)) if INTEGER => self.0.visit_i64(n),
            _ => self.0.visit_f64(v),
        }
    }

    fn visit_none<E: de::Error>(self) -> Result<V::Value, E> {
        self.0.visit_none()
    }

    fn visit_unit<E: de::Error>(self) -> Result<V::Value, E> {
        self.0.visit_unit()
    }

    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<V::Value, D::Error> {
        self.0.visit_some(Whole(d))
    }

    fn visit_newtype_struct<D: Deserializer<'de>>(self, d: D) -> Result<V::Value, D::Error> {
        self.0.visit_newtype_struct(Whole(d))
    }

    fn visit_seq<A: de::SeqAccess<'de>>(self, seq: A) -> Result<V::Value, A::Error> {
        self.0.visit_seq(Access(seq))
    }

    fn visit_map<A: de::MapAccess<'de>>(self, map: A) -> Result<V::Value, A::Error> {
        self.0.visit_map(Access(map))
    }

    fn visit_enum<A: de::EnumAccess<'de>>(self, data: A) -> Result<V::Value, A::Error> {
        self.0.visit_enum(Access(data))
    }
}

impl<'de, S: DeserializeSeed<'de>> DeserializeSeed<'de> for Seed<S> {
    type Value = S::Value;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<S::Value, D::Error> {
        self.0.deserialize(Whole(d))
    }
}

impl<'de, A: de::SeqAccess<'de>> de::SeqAccess<'de> for Access<A> {
    type Error = A::Error;

    fn next_element_seed<T: DeserializeSeed<'de>>(&mut self, seed: T) -> Result<Option<T::Value>, A::Error> {
        self.0.next_element_seed(Seed(seed))
    }

    fn size_hint(&self) -> Option<usize> {
        self.0.size_hint()
    }
}

impl<'de, A: de::MapAccess<'de>> de::MapAccess<'de> for Access<A> {
    type Error = A::Error;

    fn next_key_seed<K: DeserializeSeed<'de>>(&mut self, seed: K) -> Result<Option<K::Value>, A::Error> {
        self.0.next_key_seed(Seed(seed))
    }

    fn next_value_seed<T: DeserializeSeed<'de>>(&mut self, seed: T) -> Result<T::Value, A::Error> {
        self.0.next_value_seed(Seed(seed))
    }

    fn size_hint(&self) -> Option<usize> {
        self.0.size_hint()
    }
}

impl<'de, A: de::EnumAccess<'de>> de::EnumAccess<'de> for Access<A> {
    type Error = A::Error;
    type Variant = Access<A::Variant>;

    fn variant_seed<T: DeserializeSeed<'de>>(self, seed: T) -> Result<(T::Value, Self::Variant), A::Error> {
        self.0
            .variant_seed(Seed(seed))
            .map(|(value, variant)| (value, Access(variant)))
    }
}

impl<'de, A: de::VariantAccess<'de>> de::VariantAccess<'de> for Access<A> {
    type Error = A::Error;

    fn unit_variant(self) -> Result<(), A::Error> {
        self.0.unit_variant()
    }

    fn newtype_variant_seed<T: DeserializeSeed<'de>>(self, seed: T) -> Result<T::Value, A::Error> {
        self.0.newtype_variant_seed(Seed(seed))
    }

    fn tuple_variant<V: Visitor<'de>>(self, len: usize, visitor: V) -> Result<V::Value, A::Error> {
        self.0.tuple_variant(len, Wrap::<V, false>(visitor))
    }

    fn struct_variant<V: Visitor<'de>>(
        self,
        fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, A::Error> {
        self.0.struct_variant(fields, Wrap::<V, false>(visitor))
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use serde::Deserialize;
    use serde_json::{Value, json};

    use super::*;

    #[derive(Debug, Deserialize, PartialEq)]
    #[serde(deny_unknown_fields)]
    struct Sample {
        count: u64,
        small: Option<u32>,
        signed: i64,
        list: Vec<u16>,
        map: BTreeMap<String, u8>,
        input: Value,
        float: f64,
    }

    #[test]
    fn whole_floats_are_integers_where_an_integer_is_read() {
        let got: Sample = from_slice(
            br#"{"count": 3.0, "small": 1e3, "signed": -2.0, "list": [1, 2.0], "map": {"a": 7.0},
                 "input": {"kept": 2.0, "n": 5}, "float": 4.0}"#,
        )
        .unwrap();
        assert_eq!(got.count, 3);
        assert_eq!(got.small, Some(1000));
        assert_eq!(got.signed, -2);
        assert_eq!(got.list, [1, 2]);
        assert_eq!(got.map["a"], 7);
        assert_eq!(got.float, 4.0);
        // Arbitrary JSON keeps its numbers as written.
        assert_eq!(got.input, json!({"kept": 2.0, "n": 5}));
        assert!(got.input["kept"].is_f64());
    }

    #[test]
    fn fractions_out_of_range_and_garbage_are_still_refused() {
        let base = |count: &str| {
            format!(
                r#"{{"count": {count}, "small": null, "signed": 0, "list": [], "map": {{}}, "input": 0, "float": 0}}"#
            )
        };
        for bad in ["3.5", "-1.0", "1e20", "18446744073709551616.0", "\"3\""] {
            assert!(from_slice::<Sample>(base(bad).as_bytes()).is_err(), "{bad}");
        }
        assert!(from_slice::<Sample>(base("18446744073709549568.0").as_bytes()).is_ok());
        assert!(from_slice::<Sample>(format!("{} x", base("1")).as_bytes()).is_err());
        let small =
            r#"{"count": 1, "small": 4294967296.0, "signed": 0, "list": [], "map": {}, "input": 0, "float": 0}"#;
        assert!(from_slice::<Sample>(small.as_bytes()).is_err());
    }
}
