//! Kubernetes' value rules (`k8s.io/apimachinery/pkg/util/validation`) and a string-enum
//! macro, shared by the Kubernetes kinds. Messages keep the API server's wording
//! ("Invalid value: …", "Required value", "Duplicate value: …") so users recognise them.

use std::collections::BTreeSet;

use crate::types::IntOrString;
use crate::validate::Validator;
use crate::validate::common::{is_dns1123_label, is_dns1123_subdomain};

/// Declares a Kubernetes string enum (`TCP`, `ClusterIP`, …). Unlike protobuf enums these are
/// names only; an unknown name is an "Unsupported value" error with a suggestion.
macro_rules! kube_enum {
    (
        $(#[$meta:meta])*
        pub enum $name:ident { $( $(#[$vmeta:meta])* $variant:ident = $text:literal ),+ $(,)? }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum $name {
            $( $(#[$vmeta])* $variant ),+
        }

        impl $name {
            pub const NAMES: &'static [&'static str] = &[$($text),+];
            pub fn as_str(&self) -> &'static str {
                match self { $( $name::$variant => $text ),+ }
            }
            pub fn from_name(s: &str) -> Option<Self> {
                match s { $( $text => Some($name::$variant), )+ _ => None }
            }

            /// For `deserialize_with` on an optional field that the API server defaults:
            /// an empty string means "not set", as it does there.
            #[allow(dead_code)]
            pub(crate) fn deserialize_optional<'de, D: ::serde::Deserializer<'de>>(
                d: D,
            ) -> Result<Option<Self>, D::Error> {
                match <Option<String> as ::serde::Deserialize>::deserialize(d)? {
                    None => Ok(None),
                    Some(s) if s.is_empty() => Ok(None),
                    Some(s) => $name::from_name(&s).map(Some).ok_or_else(|| {
                        <D::Error as ::serde::de::Error>::custom(
                            $crate::model::kube::checks::unsupported(&s, $name::NAMES),
                        )
                    }),
                }
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
                        $name::from_name(v).ok_or_else(|| {
                            E::custom($crate::model::kube::checks::unsupported(v, $name::NAMES))
                        })
                    }
                }
                d.deserialize_str(V)
            }
        }
    };
}

/// "Unsupported value: "TPC" (did you mean "TCP"?); supported values: "SCTP", "TCP", "UDP"".
pub(crate) fn unsupported(got: &str, names: &[&str]) -> String {
    let hint = crate::suggest::closest(got, names.iter().copied())
        .map(|s| format!(" (did you mean \"{s}\"?)"))
        .unwrap_or_default();
    let list: Vec<String> = names.iter().map(|n| format!("\"{n}\"")).collect();
    format!(
        "Unsupported value: \"{got}\"{hint}; supported values: {}",
        list.join(", ")
    )
}

pub(crate) const PORT_RANGE: &str = "must be between 1 and 65535, inclusive";

/// `IsValidPortNum`.
pub(crate) fn is_port_num(p: i64) -> bool {
    (1..=65535).contains(&p)
}

/// `IsValidPortName` (an IANA service name): the problems with `name`, none if valid.
pub(crate) fn port_name_errors(name: &str) -> Vec<&'static str> {
    let mut errs = Vec::new();
    if name.len() > 15 {
        errs.push("must be no more than 15 characters");
    }
    if !name
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
    {
        errs.push("must contain only alpha-numeric characters (a-z, 0-9), and hyphens (-)");
    }
    if name.contains("--") {
        errs.push("must not contain consecutive hyphens");
    }
    if !name.bytes().any(|b| b.is_ascii_lowercase()) {
        errs.push("must contain at least one letter (a-z)");
    }
    if name.starts_with('-') || name.ends_with('-') {
        errs.push("must not begin or end with a hyphen");
    }
    errs
}

pub(crate) const DNS1123_LABEL_MSG: &str = "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character (e.g. 'my-name', or '123-abc'), at most 63 characters";

pub(crate) const DNS1123_SUBDOMAIN_MSG: &str = "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com'), at most 253 characters";

/// `ValidateDNS1123Label` at the current path.
pub(crate) fn check_dns1123_label(v: &mut Validator, value: &str) {
    if !is_dns1123_label(value) {
        v.error(format!("Invalid value: \"{value}\": {DNS1123_LABEL_MSG}"));
    }
}

/// `ValidateDNS1123Subdomain` at the current path.
pub(crate) fn check_dns1123_subdomain(v: &mut Validator, value: &str) {
    if !is_dns1123_subdomain(value) {
        v.error(format!(
            "Invalid value: \"{value}\": {DNS1123_SUBDOMAIN_MSG}"
        ));
    }
}

/// DNS-1035 label (Service names): like RFC 1123 but starting with a letter.
pub(crate) fn is_dns1035_label(s: &str) -> bool {
    is_dns1123_label(s) && s.as_bytes().first().is_some_and(u8::is_ascii_lowercase)
}

/// A port number (`field` 1–65535) at a child field.
pub(crate) fn check_port_num(v: &mut Validator, field: &str, port: i64) {
    if !is_port_num(port) {
        v.error_at(field, format!("Invalid value: {port}: {PORT_RANGE}"));
    }
}

/// `ValidatePortNumOrName` at the current path: a port number or an IANA port name.
pub(crate) fn check_port_num_or_name(v: &mut Validator, port: &IntOrString) {
    match port {
        IntOrString::Int(p) => {
            if !is_port_num(*p) {
                v.error(format!("Invalid value: {p}: {PORT_RANGE}"));
            }
        }
        IntOrString::String(name) => {
            let errs = port_name_errors(name);
            if !errs.is_empty() {
                v.error(format!(
                    "Invalid value: \"{name}\": a port name {}",
                    errs.join(", ")
                ));
            }
        }
    }
}

/// A port name (`IsValidPortName`) at a child field, unique among `seen`.
pub(crate) fn check_port_name(
    v: &mut Validator,
    field: &str,
    name: &str,
    seen: &mut BTreeSet<String>,
) {
    if name.is_empty() {
        return;
    }
    let errs = port_name_errors(name);
    if !errs.is_empty() {
        v.error_at(
            field,
            format!("Invalid value: \"{name}\": a port name {}", errs.join(", ")),
        );
    } else if !seen.insert(name.to_string()) {
        v.error_at(field, format!("Duplicate value: \"{name}\""));
    }
}

/// `IsQualifiedName` (label-key syntax) at a child field, as `appProtocol` requires.
pub(crate) fn check_qualified_name(v: &mut Validator, field: &str, value: &str) {
    if let Err(e) = crate::validate::common::validate_label_key(value) {
        let why = e
            .split_once(": ")
            .map_or(e.as_str(), |(_, why)| why)
            .to_string();
        v.error_at(field, format!("Invalid value: \"{value}\": {why}"));
    }
}

/// An IP address (v4 or v6).
pub(crate) fn is_ip(s: &str) -> bool {
    s.parse::<std::net::IpAddr>().is_ok()
}

/// `IsConfigMapKey`: the problems with a ConfigMap or Secret data key, none if valid.
pub(crate) fn config_key_errors(key: &str) -> Vec<&'static str> {
    let mut errs = Vec::new();
    if key.is_empty() || key.len() > 253 {
        errs.push("must be between 1 and 253 characters");
    }
    if !key
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b"-._".contains(&b))
    {
        errs.push("a valid config key must consist of alphanumeric characters, '-', '_' or '.'");
    }
    if key == "." {
        errs.push("must not be '.'");
    } else if key == ".." {
        errs.push("must not be '..'");
    } else if key.starts_with("..") {
        errs.push("must not start with '..'");
    }
    errs
}

/// Loads and validates `text` (one or more objects); every diagnostic as `file:line:col …`.
#[cfg(test)]
pub(crate) fn check_yaml(text: &str) -> Vec<String> {
    use crate::{LoadOptions, load_str, validate_resources};
    let loaded = load_str(text, "k.yaml", &LoadOptions::default());
    let mut out: Vec<String> = loaded.diagnostics.iter().map(|d| d.to_string()).collect();
    out.extend(
        validate_resources(&loaded.resources, "istio-system")
            .iter()
            .map(|d| d.to_string()),
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    kube_enum! {
        pub enum Color { Red = "Red", Green = "Green" }
    }

    #[test]
    fn value_rules() {
        assert!(port_name_errors("http").is_empty());
        assert!(port_name_errors("http-web-8080").is_empty());
        assert_eq!(
            port_name_errors("8080"),
            ["must contain at least one letter (a-z)"]
        );
        assert!(!port_name_errors("a--b").is_empty());
        assert!(!port_name_errors("-ab").is_empty());
        assert!(!port_name_errors("Http").is_empty());
        assert!(!port_name_errors("abcdefghijklmnop").is_empty());
        assert!(is_dns1035_label("reviews"));
        assert!(!is_dns1035_label("1reviews"));
        assert!(config_key_errors("tls.crt").is_empty());
        assert!(config_key_errors(".dockerconfigjson").is_empty());
        assert!(!config_key_errors("a/b").is_empty());
        assert!(!config_key_errors("..a").is_empty());
        assert!(!config_key_errors("").is_empty());
        assert!(is_ip("10.0.0.1") && is_ip("::1") && !is_ip("10.0.0.256"));
    }

    #[test]
    fn string_enums() {
        let (docs, _) = crate::yaml::load_documents("[Red, Green]", Default::default());
        let v: Vec<Color> = crate::yaml::from_node(&docs[0].root).expect("decode");
        assert_eq!(v, vec![Color::Red, Color::Green]);
        let (docs, _) = crate::yaml::load_documents("[red]", Default::default());
        let e = crate::yaml::from_node::<Vec<Color>>(&docs[0].root).expect_err("bad");
        assert!(
            e.message
                .contains("Unsupported value: \"red\" (did you mean \"Red\"?)"),
            "{}",
            e.message
        );
        let (docs, _) = crate::yaml::load_documents("[1]", Default::default());
        assert!(crate::yaml::from_node::<Vec<Color>>(&docs[0].root).is_err());
    }
}
