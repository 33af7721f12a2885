//! serde decoding from a [`Node`], so typed structs come with field paths and positions.
//!
//! Errors are built innermost-first: the failing scalar records its own position, and each
//! enclosing list or object prepends its segment on the way out, giving
//! `spec.http[0].match[0].hedears` with the line and column of `hedears`.

use std::fmt;

use serde::de::{self, DeserializeSeed, IntoDeserializer, Visitor};

use super::node::{FieldPath, Node, NodeKind, Pos, Resolved, ScalarStyle, Seg};

/// Why a node could not be decoded into the expected type.
#[derive(Debug, Clone, PartialEq)]
pub struct DecodeError {
    pub path: FieldPath,
    pub pos: Option<Pos>,
    pub message: String,
}

impl DecodeError {
    fn at(mut self, seg: Seg, pos: Pos) -> Self {
        self.path.0.insert(0, seg);
        self.pos.get_or_insert(pos);
        self
    }

    fn here(mut self, pos: Pos) -> Self {
        self.pos.get_or_insert(pos);
        self
    }

    pub fn new(message: impl Into<String>) -> Self {
        DecodeError {
            path: FieldPath::root(),
            pos: None,
            message: message.into(),
        }
    }
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.path.is_empty() {
            write!(f, "{}", self.message)
        } else {
            write!(f, "{}: {}", self.path, self.message)
        }
    }
}

impl std::error::Error for DecodeError {}

impl de::Error for DecodeError {
    fn custom<T: fmt::Display>(msg: T) -> Self {
        DecodeError::new(msg.to_string())
    }

    fn unknown_field(field: &str, expected: &'static [&'static str]) -> Self {
        DecodeError::new(unknown_message("field", field, expected))
    }

    fn unknown_variant(variant: &str, expected: &'static [&'static str]) -> Self {
        DecodeError::new(unknown_message("value", variant, expected))
    }

    fn duplicate_field(field: &'static str) -> Self {
        DecodeError::new(format!("field \"{field}\" is set twice"))
    }

    fn missing_field(field: &'static str) -> Self {
        DecodeError::new(format!("missing required field \"{field}\""))
    }
}

/// "unknown field "hedears" (did you mean "headers"?)" — or the list of what is allowed.
pub fn unknown_message(what: &str, got: &str, expected: &[&str]) -> String {
    match crate::suggest::closest(got, expected.iter().copied()) {
        Some(best) => format!("unknown {what} \"{got}\" (did you mean \"{best}\"?)"),
        None if expected.is_empty() => {
            format!("unknown {what} \"{got}\": no {what}s are allowed here")
        }
        None if expected.len() <= 12 => {
            format!(
                "unknown {what} \"{got}\"; expected one of: {}",
                expected.join(", ")
            )
        }
        None => format!("unknown {what} \"{got}\""),
    }
}

/// Decodes a typed value from a node.
pub fn from_node<'de, T: de::Deserialize<'de>>(node: &'de Node) -> Result<T, DecodeError> {
    T::deserialize(NodeDe(node)).map_err(|e| e.here(node.pos))
}

/// The serde deserializer over a borrowed node.
#[derive(Clone, Copy)]
pub struct NodeDe<'de>(pub &'de Node);

impl<'de> NodeDe<'de> {
    fn mismatch(&self, expected: &str) -> DecodeError {
        let found = match self.0.resolve() {
            Some(Resolved::Str(s)) => format!("the string \"{}\"", truncate(s)),
            Some(
                r @ (Resolved::Int(_) | Resolved::UInt(_) | Resolved::Float(_) | Resolved::Bool(_)),
            ) => {
                format!("{} ({})", r.describe(), self.0.as_str().unwrap_or_default())
            }
            _ => self.0.kind_name().to_string(),
        };
        DecodeError::new(format!("expected {expected}, found {found}")).here(self.0.pos)
    }

    fn scalar_string(&self) -> Result<&'de str, DecodeError> {
        match &self.0.kind {
            NodeKind::Scalar { text, style: ScalarStyle::Quoted } => Ok(text),
            NodeKind::Scalar { text, style: ScalarStyle::Plain } => match self.0.resolve() {
                Some(Resolved::Str(_)) => Ok(text),
                _ => Err(DecodeError::new(format!(
                    "expected a string, found {} ({text}); quote it (\"{text}\") if a string is meant",
                    self.0.kind_name()
                ))
                .here(self.0.pos)),
            },
            _ => Err(self.mismatch("a string")),
        }
    }
}

fn truncate(s: &str) -> String {
    if s.chars().count() > 40 {
        format!("{}…", s.chars().take(40).collect::<String>())
    } else {
        s.to_string()
    }
}

macro_rules! int_method {
    ($method:ident) => {
        fn $method<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Self::Error> {
            match self.0.resolve() {
                Some(Resolved::Int(i)) => visitor.visit_i64(i),
                Some(Resolved::UInt(u)) => visitor.visit_u64(u),
                Some(Resolved::Null) => visitor.visit_u64(0),
                _ => Err(self.mismatch("an integer")),
            }
            .map_err(|e: DecodeError| e.here(self.0.pos))
        }
    };
}

impl<'de> de::Deserializer<'de> for NodeDe<'de> {
    type Error = DecodeError;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Self::Error> {
        match &self.0.kind {
            NodeKind::Null => visitor.visit_unit(),
            NodeKind::Scalar { text, .. } => match self.0.resolve() {
                Some(Resolved::Bool(b)) => visitor.visit_bool(b),
                Some(Resolved::Int(i)) => visitor.visit_i64(i),
                Some(Resolved::UInt(u)) => visitor.visit_u64(u),
                Some(Resolved::Float(f)) => visitor.visit_f64(f),
                _ => visitor.visit_borrowed_str(text),
            },
            NodeKind::Seq(items) => visitor.visit_seq(SeqAccess {
                items: items.iter(),
                index: 0,
            }),
            NodeKind::Map(entries) => visitor.visit_map(MapAccess {
                entries: entries.iter(),
                value: None,
            }),
        }
        .map_err(|e| e.here(self.0.pos))
    }

    fn deserialize_bool<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Self::Error> {
        match self.0.resolve() {
            Some(Resolved::Bool(b)) => visitor.visit_bool(b),
            Some(Resolved::Null) => visitor.visit_bool(false),
            _ => Err(self.mismatch("a boolean (true or false)")),
        }
    }

    int_method!(deserialize_i8);
    int_method!(deserialize_i16);
    int_method!(deserialize_i32);
    int_method!(deserialize_i64);
    int_method!(deserialize_u8);
    int_method!(deserialize_u16);
    int_method!(deserialize_u32);
    int_method!(deserialize_u64);

    fn deserialize_f32<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Self::Error> {
        self.deserialize_f64(visitor)
    }

    fn deserialize_f64<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Self::Error> {
        match self.0.resolve() {
            Some(Resolved::Int(i)) => visitor.visit_f64(i as f64),
            Some(Resolved::UInt(u)) => visitor.visit_f64(u as f64),
            Some(Resolved::Float(f)) => visitor.visit_f64(f),
            Some(Resolved::Null) => visitor.visit_f64(0.0),
            _ => Err(self.mismatch("a number")),
        }
    }

    fn deserialize_char<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Self::Error> {
        self.deserialize_str(visitor)
    }

    fn deserialize_str<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Self::Error> {
        if self.0.is_null() {
            return visitor.visit_borrowed_str("");
        }
        visitor
            .visit_borrowed_str(self.scalar_string()?)
            .map_err(|e: DecodeError| e.here(self.0.pos))
    }

    fn deserialize_string<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Self::Error> {
        self.deserialize_str(visitor)
    }

    fn deserialize_bytes<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Self::Error> {
        self.deserialize_str(visitor)
    }

    fn deserialize_byte_buf<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Self::Error> {
        self.deserialize_str(visitor)
    }

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Self::Error> {
        if self.0.is_null() {
            visitor.visit_none()
        } else {
            visitor.visit_some(self)
        }
    }

    fn deserialize_unit<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Self::Error> {
        visitor.visit_unit()
    }

    fn deserialize_unit_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> Result<V::Value, Self::Error> {
        visitor.visit_unit()
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> Result<V::Value, Self::Error> {
        visitor.visit_newtype_struct(self)
    }

    fn deserialize_seq<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Self::Error> {
        match &self.0.kind {
            NodeKind::Seq(items) => visitor.visit_seq(SeqAccess {
                items: items.iter(),
                index: 0,
            }),
            NodeKind::Null => visitor.visit_seq(SeqAccess {
                items: [].iter(),
                index: 0,
            }),
            _ => Err(self.mismatch("a list")),
        }
        .map_err(|e| e.here(self.0.pos))
    }

    fn deserialize_tuple<V: Visitor<'de>>(
        self,
        _len: usize,
        visitor: V,
    ) -> Result<V::Value, Self::Error> {
        self.deserialize_seq(visitor)
    }

    fn deserialize_tuple_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _len: usize,
        visitor: V,
    ) -> Result<V::Value, Self::Error> {
        self.deserialize_seq(visitor)
    }

    fn deserialize_map<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Self::Error> {
        match &self.0.kind {
            NodeKind::Map(entries) => visitor.visit_map(MapAccess {
                entries: entries.iter(),
                value: None,
            }),
            NodeKind::Null => visitor.visit_map(MapAccess {
                entries: [].iter(),
                value: None,
            }),
            _ => Err(self.mismatch("an object")),
        }
        .map_err(|e| e.here(self.0.pos))
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Self::Error> {
        self.deserialize_map(visitor)
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Self::Error> {
        match &self.0.kind {
            NodeKind::Scalar { text, .. } => {
                let de: de::value::StrDeserializer<'_, DecodeError> =
                    text.as_str().into_deserializer();
                visitor.visit_enum(de)
            }
            _ => Err(self.mismatch("one of the allowed names")),
        }
        .map_err(|e| e.here(self.0.pos))
    }

    fn deserialize_identifier<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Self::Error> {
        match &self.0.kind {
            NodeKind::Scalar { text, .. } => visitor.visit_borrowed_str(text),
            _ => Err(self.mismatch("a field name")),
        }
        .map_err(|e| e.here(self.0.pos))
    }

    fn deserialize_ignored_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Self::Error> {
        visitor.visit_unit()
    }
}

struct SeqAccess<'de> {
    items: std::slice::Iter<'de, Node>,
    index: usize,
}

impl<'de> de::SeqAccess<'de> for SeqAccess<'de> {
    type Error = DecodeError;

    fn next_element_seed<T: DeserializeSeed<'de>>(
        &mut self,
        seed: T,
    ) -> Result<Option<T::Value>, Self::Error> {
        let Some(item) = self.items.next() else {
            return Ok(None);
        };
        let i = self.index;
        self.index += 1;
        seed.deserialize(NodeDe(item))
            .map(Some)
            .map_err(|e| e.at(Seg::Index(i), item.pos))
    }

    fn size_hint(&self) -> Option<usize> {
        Some(self.items.len())
    }
}

struct MapAccess<'de> {
    entries: std::slice::Iter<'de, (Node, Node)>,
    value: Option<(&'de Node, &'de Node)>,
}

impl<'de> de::MapAccess<'de> for MapAccess<'de> {
    type Error = DecodeError;

    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, Self::Error> {
        let Some((k, v)) = self.entries.next() else {
            return Ok(None);
        };
        self.value = Some((k, v));
        let key = KeyDe(k);
        seed.deserialize(key)
            .map(Some)
            .map_err(|e| e.at(Seg::Key(k.as_str().unwrap_or_default().to_string()), k.pos))
    }

    fn next_value_seed<V: DeserializeSeed<'de>>(
        &mut self,
        seed: V,
    ) -> Result<V::Value, Self::Error> {
        let Some((k, v)) = self.value.take() else {
            return Err(DecodeError::new("value requested before key"));
        };
        seed.deserialize(NodeDe(v))
            .map_err(|e| e.at(Seg::Key(k.as_str().unwrap_or_default().to_string()), v.pos))
    }

    fn size_hint(&self) -> Option<usize> {
        Some(self.entries.len())
    }
}

/// Integer-keyed maps (`portLevelMtls: {"80": ...}`) parse the key text as a number.
macro_rules! key_int {
    ($method:ident, $visit:ident, $ty:ty) => {
        fn $method<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Self::Error> {
            let text = self.0.as_str().unwrap_or_default();
            match text.trim().parse::<$ty>() {
                Ok(n) => visitor.$visit(n),
                Err(_) => Err(DecodeError::new(format!(
                    "type conversion error: key \"{text}\" must be a number (0..{})",
                    <$ty>::MAX
                ))),
            }
        }
    };
}

/// Mapping keys are always text in Kubernetes objects (`80:` is the key "80").
struct KeyDe<'de>(&'de Node);

impl<'de> de::Deserializer<'de> for KeyDe<'de> {
    type Error = DecodeError;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Self::Error> {
        match &self.0.kind {
            NodeKind::Scalar { text, .. } => visitor.visit_borrowed_str(text),
            NodeKind::Null => visitor.visit_borrowed_str(""),
            _ => Err(DecodeError::new(format!(
                "object keys must be plain text, found {}",
                self.0.kind_name()
            ))),
        }
    }

    key_int!(deserialize_u8, visit_u8, u8);
    key_int!(deserialize_u16, visit_u16, u16);
    key_int!(deserialize_u32, visit_u32, u32);
    key_int!(deserialize_u64, visit_u64, u64);
    key_int!(deserialize_i8, visit_i8, i8);
    key_int!(deserialize_i16, visit_i16, i16);
    key_int!(deserialize_i32, visit_i32, i32);
    key_int!(deserialize_i64, visit_i64, i64);

    serde::forward_to_deserialize_any! {
        bool i128 u128 f32 f64 char str string
        bytes byte_buf option unit unit_struct newtype_struct seq tuple
        tuple_struct map struct enum identifier ignored_any
    }
}

#[cfg(test)]
mod tests {
    use serde::Deserialize;

    use super::*;
    use crate::yaml::load::{Limits, load_documents};

    #[derive(Debug, Deserialize, Default)]
    #[serde(deny_unknown_fields, rename_all = "camelCase", default)]
    struct Match {
        headers: std::collections::BTreeMap<String, String>,
        ignore_uri_case: bool,
        port: Option<u32>,
    }

    #[derive(Debug, Deserialize, Default)]
    #[serde(deny_unknown_fields, default)]
    struct Http {
        r#match: Vec<Match>,
        weight: Option<i32>,
    }

    fn decode<T: for<'a> Deserialize<'a>>(text: &str) -> Result<T, DecodeError> {
        let (docs, err) = load_documents(text, Limits::default());
        assert!(err.is_none(), "{err:?}");
        from_node(&docs[0].root)
    }

    #[test]
    fn unknown_field_has_path_position_and_suggestion() {
        let err = decode::<Http>("match:\n- headers: {a: b}\n- hedears:\n    x: y\n")
            .expect_err("unknown");
        assert_eq!(err.path.to_string(), "match[1].hedears");
        assert_eq!(err.pos, Some(Pos { line: 3, col: 3 }));
        assert!(
            err.message.contains("did you mean \"headers\""),
            "{}",
            err.message
        );
    }

    #[test]
    fn numbers_are_not_strings() {
        let err = decode::<Http>("match:\n- headers:\n    version: 1\n").expect_err("number");
        assert_eq!(err.path.to_string(), "match[0].headers.version");
        assert_eq!(err.pos, Some(Pos { line: 3, col: 14 }));
        assert!(err.message.contains("quote it"), "{}", err.message);
        let err = decode::<Http>("weight: \"80\"\n").expect_err("quoted number");
        assert!(
            err.message.contains("expected an integer"),
            "{}",
            err.message
        );
        let ok =
            decode::<Http>("weight: 80\nmatch: [{ignoreUriCase: yes, port: 0x50}]").expect("ok");
        assert_eq!(ok.weight, Some(80));
        assert!(ok.r#match[0].ignore_uri_case);
        assert_eq!(ok.r#match[0].port, Some(80));
    }

    #[test]
    fn nulls_are_absent() {
        let ok = decode::<Http>("weight: ~\nmatch:\n").expect("ok");
        assert_eq!(ok.weight, None);
        assert!(ok.r#match.is_empty());
    }
}
