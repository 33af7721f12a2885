//! Istio's value formats: durations, percentages, int-or-string, string matches, enums.

use std::fmt;

use serde::de::{self, Deserializer, Visitor};
use serde::{Deserialize, Serialize, Serializer};

/// A protobuf `google.protobuf.Duration` as Istio reads it: Go duration syntax
/// (`10s`, `0.5s`, `1h`, `1m30s`, `250ms`, `-1s`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Duration {
    /// Total length in nanoseconds (may be negative; validation rejects that where Istio does).
    pub nanos: i128,
}

impl Duration {
    pub const fn from_millis(ms: i64) -> Self {
        Duration {
            nanos: ms as i128 * 1_000_000,
        }
    }
    pub const fn from_secs(s: i64) -> Self {
        Duration {
            nanos: s as i128 * 1_000_000_000,
        }
    }
    pub fn as_secs_f64(&self) -> f64 {
        self.nanos as f64 / 1e9
    }
    /// As a std duration; negative values clamp to zero.
    pub fn to_std(&self) -> std::time::Duration {
        if self.nanos <= 0 {
            return std::time::Duration::ZERO;
        }
        let n = self.nanos.min(u64::MAX as i128 * 1_000_000_000);
        std::time::Duration::new((n / 1_000_000_000) as u64, (n % 1_000_000_000) as u32)
    }

    /// Parses Go's `time.ParseDuration` syntax, which Istio's YAML decoding accepts.
    pub fn parse(s: &str) -> Result<Self, String> {
        let bad = || {
            format!(
                "invalid duration \"{s}\": use a number with a unit, e.g. 10s, 0.5s, 250ms, 1m30s, 1h"
            )
        };
        let (neg, mut rest) = match s.as_bytes().first() {
            Some(b'-') => (true, &s[1..]),
            Some(b'+') => (false, &s[1..]),
            _ => (false, s),
        };
        if rest == "0" {
            return Ok(Duration::default());
        }
        if rest.is_empty() {
            return Err(bad());
        }
        let mut total: i128 = 0;
        while !rest.is_empty() {
            let num_end = rest
                .find(|c: char| !(c.is_ascii_digit() || c == '.'))
                .unwrap_or(rest.len());
            let num = &rest[..num_end];
            if num.is_empty() || num == "." || num.matches('.').count() > 1 {
                return Err(bad());
            }
            rest = &rest[num_end..];
            let unit_end = rest
                .find(|c: char| c.is_ascii_digit() || c == '.')
                .unwrap_or(rest.len());
            let unit = &rest[..unit_end];
            rest = &rest[unit_end..];
            let scale: i128 = match unit {
                "ns" => 1,
                "us" | "µs" | "μs" => 1_000,
                "ms" => 1_000_000,
                "s" => 1_000_000_000,
                "m" => 60_000_000_000,
                "h" => 3_600_000_000_000,
                _ => return Err(bad()),
            };
            let (int_part, frac_part) = num.split_once('.').unwrap_or((num, ""));
            let int: i128 = if int_part.is_empty() {
                0
            } else {
                int_part.parse().map_err(|_| bad())?
            };
            let mut value = int.checked_mul(scale).ok_or_else(bad)?;
            let mut div = 1i128;
            let mut frac = 0i128;
            for c in frac_part.chars().take(18) {
                frac = frac * 10 + i128::from(c.to_digit(10).unwrap_or(0));
                div *= 10;
            }
            value += frac * scale / div;
            total = total.checked_add(value).ok_or_else(bad)?;
        }
        if total > i64::MAX as i128 {
            return Err(format!("invalid duration \"{s}\": too large"));
        }
        Ok(Duration {
            nanos: if neg { -total } else { total },
        })
    }
}

impl fmt::Display for Duration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Protobuf's canonical JSON form: seconds with up to 9 fractional digits.
        let secs = self.nanos / 1_000_000_000;
        let frac = (self.nanos % 1_000_000_000).abs();
        let sign = if self.nanos < 0 && secs == 0 { "-" } else { "" };
        if frac == 0 {
            write!(f, "{sign}{secs}s")
        } else {
            let digits = format!("{frac:09}");
            write!(f, "{sign}{secs}.{}s", digits.trim_end_matches('0'))
        }
    }
}

impl Serialize for Duration {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Duration {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de2> Visitor<'de2> for V {
            type Value = Duration;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a duration such as 10s, 0.5s, 1m30s or 1h")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Duration, E> {
                Duration::parse(v).map_err(E::custom)
            }
            // Also take an object {seconds, nanos}, the protobuf wire shape some tools emit.
            fn visit_map<A: de::MapAccess<'de2>>(self, mut map: A) -> Result<Duration, A::Error> {
                let mut d = Duration::default();
                while let Some(k) = map.next_key::<String>()? {
                    match k.as_str() {
                        "seconds" => {
                            d.nanos += i128::from(map.next_value::<i64>()?) * 1_000_000_000
                        }
                        "nanos" => d.nanos += i128::from(map.next_value::<i32>()?),
                        other => {
                            return Err(de::Error::unknown_field(other, &["seconds", "nanos"]));
                        }
                    }
                }
                Ok(d)
            }
            fn visit_u64<E: de::Error>(self, _: u64) -> Result<Duration, E> {
                Err(E::custom("a duration needs a unit, e.g. 10s or 250ms"))
            }
            fn visit_i64<E: de::Error>(self, _: i64) -> Result<Duration, E> {
                Err(E::custom("a duration needs a unit, e.g. 10s or 250ms"))
            }
            fn visit_f64<E: de::Error>(self, _: f64) -> Result<Duration, E> {
                Err(E::custom("a duration needs a unit, e.g. 0.5s"))
            }
        }
        d.deserialize_any(V)
    }
}

/// `istio.networking.v1.Percent`: a percentage written as `{value: 12.5}`.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Percent {
    pub value: f64,
}

/// Kubernetes' `IntOrString` (e.g. a Service's `targetPort: http`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
#[serde(untagged)]
pub enum IntOrString {
    Int(i64),
    String(String),
}

impl Default for IntOrString {
    fn default() -> Self {
        IntOrString::Int(0)
    }
}

impl fmt::Display for IntOrString {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            IntOrString::Int(i) => write!(f, "{i}"),
            IntOrString::String(s) => f.write_str(s),
        }
    }
}

impl<'de> Deserialize<'de> for IntOrString {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = IntOrString;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a number or a name")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<IntOrString, E> {
                Ok(IntOrString::String(v.to_string()))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<IntOrString, E> {
                i64::try_from(v)
                    .map(IntOrString::Int)
                    .map_err(|_| E::custom("number too large"))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<IntOrString, E> {
                Ok(IntOrString::Int(v))
            }
        }
        d.deserialize_any(V)
    }
}

/// `istio.networking.v1.StringMatch`: at most one of `exact`, `prefix`, `regex` (an empty
/// match is legal in header matches, where it tests for presence).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize, Hash)]
#[serde(deny_unknown_fields, default)]
pub struct StringMatch {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub exact: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub prefix: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub regex: Option<String>,
}

impl StringMatch {
    pub fn is_empty(&self) -> bool {
        self.exact.is_none() && self.prefix.is_none() && self.regex.is_none()
    }
}

/// Declares an Istio protobuf enum. YAML may give the name (`STRICT`) or, as protobuf JSON
/// allows, the number (`3`); anything else is an error listing the names, with a suggestion.
#[macro_export]
macro_rules! istio_enum {
    (
        $(#[$meta:meta])*
        pub enum $name:ident { $( $(#[$vmeta:meta])* $variant:ident = $text:literal = $num:literal ),+ $(,)? }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
        pub enum $name {
            #[default]
            $( $(#[$vmeta])* $variant ),+
        }

        impl $name {
            pub const NAMES: &'static [&'static str] = &[$($text),+];
            pub fn as_str(&self) -> &'static str {
                match self { $( $name::$variant => $text ),+ }
            }
            pub fn number(&self) -> i32 {
                match self { $( $name::$variant => $num ),+ }
            }
            pub fn from_name(s: &str) -> Option<Self> {
                match s { $( $text => Some($name::$variant), )+ _ => None }
            }
            pub fn from_number(n: i64) -> Option<Self> {
                match n { $( $num => Some($name::$variant), )+ _ => None }
            }
        }

        impl ::std::fmt::Display for $name {
            fn fmt(&self, f: &mut ::std::fmt::Formatter<'_>) -> ::std::fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl ::serde::Serialize for $name {
            fn serialize<S: ::serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(self.as_str())
            }
        }

        impl<'de> ::serde::Deserialize<'de> for $name {
            fn deserialize<D: ::serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                struct V;
                impl ::serde::de::Visitor<'_> for V {
                    type Value = $name;
                    fn expecting(&self, f: &mut ::std::fmt::Formatter<'_>) -> ::std::fmt::Result {
                        write!(f, "one of {}", $name::NAMES.join(", "))
                    }
                    fn visit_str<E: ::serde::de::Error>(self, v: &str) -> Result<$name, E> {
                        $name::from_name(v).ok_or_else(|| E::custom($crate::yaml::de::unknown_message("value", v, $name::NAMES)))
                    }
                    fn visit_u64<E: ::serde::de::Error>(self, v: u64) -> Result<$name, E> {
                        self.visit_i64(v as i64)
                    }
                    fn visit_i64<E: ::serde::de::Error>(self, v: i64) -> Result<$name, E> {
                        $name::from_number(v).ok_or_else(|| E::custom(format!("unknown value {v}; expected one of {}", $name::NAMES.join(", "))))
                    }
                }
                d.deserialize_any(V)
            }
        }
    };
}

#[cfg(test)]
#[allow(dead_code)]
mod tests {
    use super::*;

    #[test]
    fn go_durations() {
        assert_eq!(Duration::parse("10s"), Ok(Duration::from_secs(10)));
        assert_eq!(Duration::parse("0.5s"), Ok(Duration::from_millis(500)));
        assert_eq!(Duration::parse("1h"), Ok(Duration::from_secs(3600)));
        assert_eq!(Duration::parse("1m30s"), Ok(Duration::from_secs(90)));
        assert_eq!(Duration::parse("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(Duration::parse("1.5h"), Ok(Duration::from_secs(5400)));
        assert_eq!(Duration::parse("-1s"), Ok(Duration::from_secs(-1)));
        assert_eq!(Duration::parse("0"), Ok(Duration::default()));
        assert_eq!(
            Duration::parse("3.000001s").map(|d| d.nanos),
            Ok(3_000_001_000)
        );
        for bad in ["", "10", "s", "1x", "1.2.3s", "abc", "1 s", "."] {
            assert!(Duration::parse(bad).is_err(), "{bad}");
        }
        assert_eq!(Duration::from_millis(1500).to_string(), "1.5s");
        assert_eq!(Duration::from_secs(10).to_string(), "10s");
    }

    istio_enum! {
        pub enum Mode { Unset = "UNSET" = 0, Strict = "STRICT" = 3 }
    }

    #[test]
    fn enums_by_name_or_number() {
        let (docs, _) = crate::yaml::load_documents("[STRICT, 3, UNSET]", Default::default());
        let v: Vec<Mode> = crate::yaml::from_node(&docs[0].root).expect("decode");
        assert_eq!(v, vec![Mode::Strict, Mode::Strict, Mode::Unset]);
        let (docs, _) = crate::yaml::load_documents("[STRCT]", Default::default());
        let e = crate::yaml::from_node::<Vec<Mode>>(&docs[0].root).expect_err("bad");
        assert!(
            e.message.contains("did you mean \"STRICT\""),
            "{}",
            e.message
        );
    }
}
