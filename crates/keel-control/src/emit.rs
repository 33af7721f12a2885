//! JSON values written as YAML, in the shape `kubectl get -o yaml` prints: keys in order,
//! lists of objects not indented under their key, strings quoted only when a plain scalar
//! would read back as something else.
//!
//! The store writes its files with this, and `keel get -o yaml` prints with it. Whatever it
//! writes reads back, through `keel-config`'s reader (which resolves scalars as Kubernetes'
//! YAML does), as the same value: a property test pins that down.
//!
//! ```
//! let v = serde_json::json!({"kind": "VirtualService", "spec": {"hosts": ["reviews", "yes"]}});
//! assert_eq!(
//!     keel_control::emit::to_yaml(&v),
//!     "kind: VirtualService\nspec:\n  hosts:\n  - reviews\n  - \"yes\"\n"
//! );
//! ```

use keel_config::yaml::{Resolved, node::resolve_plain};
use serde_json::Value;

/// The value as a YAML document (no `---` marker), ending with a newline.
pub fn to_yaml(value: &Value) -> String {
    let mut out = String::new();
    match value {
        Value::Object(m) if !m.is_empty() => write_map(m, 0, &mut out),
        Value::Array(a) if !a.is_empty() => write_seq(a, 0, &mut out),
        other => {
            write_scalar(other, 0, &mut out);
            out.push('\n');
        }
    }
    out
}

fn write_map(map: &serde_json::Map<String, Value>, indent: usize, out: &mut String) {
    for (key, value) in map {
        push_indent(indent, out);
        write_string(key, None, out);
        out.push(':');
        write_after_key(value, indent, out);
    }
}

/// A value after `key:`: on the same line if it is a scalar or empty, else on the lines below.
fn write_after_key(value: &Value, indent: usize, out: &mut String) {
    match value {
        Value::Object(m) if !m.is_empty() => {
            out.push('\n');
            write_map(m, indent + 2, out);
        }
        // kubectl's style: a list under a key starts at the key's own indentation.
        Value::Array(a) if !a.is_empty() => {
            out.push('\n');
            write_seq(a, indent, out);
        }
        other => {
            out.push(' ');
            write_scalar(other, indent + 2, out);
            out.push('\n');
        }
    }
}

fn write_seq(items: &[Value], indent: usize, out: &mut String) {
    for item in items {
        match item {
            Value::Object(m) if !m.is_empty() => {
                // The first key goes on the dash's line; the others line up under it.
                let mut body = String::new();
                write_map(m, indent + 2, &mut body);
                push_indent(indent, out);
                out.push_str("- ");
                out.push_str(&body[indent + 2..]);
            }
            Value::Array(a) if !a.is_empty() => {
                let mut body = String::new();
                write_seq(a, indent + 2, &mut body);
                push_indent(indent, out);
                out.push_str("- ");
                out.push_str(&body[indent + 2..]);
            }
            other => {
                push_indent(indent, out);
                out.push_str("- ");
                write_scalar(other, indent + 2, out);
                out.push('\n');
            }
        }
    }
}

/// A scalar, or an empty collection in flow style. `indent` is where a block scalar's lines go.
fn write_scalar(value: &Value, indent: usize, out: &mut String) {
    match value {
        Value::Null => out.push_str("null"),
        Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Value::Number(n) => out.push_str(&n.to_string()),
        Value::String(s) => write_string(s, Some(indent), out),
        Value::Array(_) => out.push_str("[]"),
        Value::Object(_) => out.push_str("{}"),
    }
}

/// A string; `block_indent` allows a block literal with its lines at that indentation (not
/// for keys).
fn write_string(s: &str, block_indent: Option<usize>, out: &mut String) {
    if is_plain_safe(s) {
        out.push_str(s);
    } else if let (Some(indent), Some(header)) = (block_indent, literal_header(s)) {
        out.push_str(header);
        for line in s.strip_suffix('\n').unwrap_or(s).split('\n') {
            out.push('\n');
            if !line.is_empty() {
                push_indent(indent.max(2), out);
                out.push_str(line);
            }
        }
        // The caller ends the line; trailing newlines beyond the last are kept by `|+`.
    } else {
        // A JSON string is a valid YAML double-quoted scalar with the same escapes.
        out.push_str(&serde_json::to_string(s).unwrap_or_else(|_| "\"\"".to_string()));
    }
}

/// Whether `s` can be written as a plain scalar and read back as the same string. Deliberately
/// narrow: only characters that are never YAML syntax in block context; a first character that
/// can't start an indicator; and not a word or number that resolves to null, a boolean or a
/// number (`yes`, `on`, `null`, `0755`, `1e3` in YAML 1.1, as Kubernetes reads them). Strings
/// that start with a digit need a letter too (`10s`, `9080/TCP`), so that dates, times and
/// numbers in forms other parsers know (`2024-05-01`, `1_000`, `1:20`) stay quoted.
fn is_plain_safe(s: &str) -> bool {
    let Some(first) = s.chars().next() else {
        return false;
    };
    let first_ok = first.is_ascii_alphabetic()
        || first == '/'
        || first == '_'
        || (first.is_ascii_digit() && s.chars().any(|c| c.is_ascii_alphabetic()));
    let chars_ok = s.chars().all(|c| {
        c.is_ascii_alphanumeric()
            || matches!(
                c,
                '-' | '_' | '.' | '/' | ':' | '@' | '=' | '+' | ',' | '*' | '(' | ')' | ' '
            )
    });
    first_ok
        && chars_ok
        && !s.ends_with([' ', ':'])
        && !s.contains(": ")
        && matches!(resolve_plain(s), Resolved::Str(_))
}

/// The block-literal header for a multi-line string that can be written as one (`|`, `|-` or
/// `|+`), or `None` when it must be double-quoted instead.
fn literal_header(s: &str) -> Option<&'static str> {
    if !s.contains('\n') || s.starts_with([' ', '\t', '\n']) {
        return None;
    }
    let printable = s.chars().all(|c| c == '\n' || c == '\t' || !c.is_control());
    let clean_ends = s.lines().all(|l| !l.ends_with([' ', '\t']));
    if !printable || !clean_ends || s.contains('\u{feff}') || s.contains('\u{2028}') {
        return None;
    }
    Some(if s.ends_with("\n\n") {
        "|+"
    } else if s.ends_with('\n') {
        "|"
    } else {
        "|-"
    })
}

fn push_indent(n: usize, out: &mut String) {
    out.extend(std::iter::repeat_n(' ', n));
}

#[cfg(test)]
mod tests {
    use super::*;
    use keel_config::yaml::{Limits, load_documents};
    use proptest::prelude::*;
    use serde_json::json;

    fn read_back(text: &str) -> Value {
        let (docs, err) = load_documents(text, Limits::default());
        assert!(err.is_none(), "{err:?}\n{text}");
        assert_eq!(docs.len(), 1, "{text}");
        docs[0].root.to_json()
    }

    #[test]
    fn kubectl_shape() {
        let v = json!({
            "apiVersion": "networking.istio.io/v1",
            "kind": "VirtualService",
            "metadata": {"name": "reviews", "labels": {}, "annotations": {"a": "1.10"}},
            "spec": {"hosts": ["reviews"], "http": [{"route": [{"destination": {"host": "reviews", "subset": "v1"}, "weight": 50}]}], "tcp": []}
        });
        let text = to_yaml(&v);
        assert_eq!(
            text,
            "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata:\n  annotations:\n    a: \"1.10\"\n  labels: {}\n  name: reviews\nspec:\n  hosts:\n  - reviews\n  http:\n  - route:\n    - destination:\n        host: reviews\n        subset: v1\n      weight: 50\n  tcp: []\n"
        );
        assert_eq!(read_back(&text), v);
    }

    #[test]
    fn strings_that_look_like_other_things_are_quoted() {
        for s in [
            "yes",
            "on",
            "No",
            "null",
            "~",
            "",
            "9080",
            "1.10",
            "0755",
            "-",
            "- x",
            "*",
            "*.com",
            "a: b",
            "a #b",
            "a:",
            " lead",
            "trail ",
            "'q'",
            "\"q\"",
            "{x}",
            "[x]",
            "!tag",
            "&a",
            "@x",
            "%x",
            "`x",
            "---",
            "...",
            "y",
            "n",
            ".inf",
            "0x1F",
            "1e3",
            "\t",
            "a\u{7}b",
            "0o17",
            "0b101",
            "1E3",
            "1e+3",
            "2024-05-01",
            "1_000",
            "1:20",
            "10s",
            "9080/TCP",
            "a,b",
            "1.5e3",
            "0x",
            "12h",
            "INF",
            "1e",
            "e3",
        ] {
            let v = json!({ "k": s, "l": [s] });
            let text = to_yaml(&v);
            assert_eq!(read_back(&text), v, "{s:?} as {text:?}");
        }
    }

    #[test]
    fn multi_line_strings_use_block_literals() {
        let v = json!({"cert": "-----BEGIN-----\nabc\n\ndef\n", "b": "x\ny", "c": "x\n\n", "d": " x\ny"});
        let text = to_yaml(&v);
        assert!(
            text.contains("cert: |\n  -----BEGIN-----\n  abc\n\n  def\n"),
            "{text}"
        );
        assert!(text.contains("b: |-\n  x\n  y\n"), "{text}");
        assert!(text.contains("d: \" x\\ny\""), "{text}");
        assert_eq!(read_back(&text), v);
        let nested = json!({"data": [{"k": "a\nb\n"}]});
        assert_eq!(read_back(&to_yaml(&nested)), nested);
    }

    #[test]
    fn nested_lists_and_scalars_at_the_top() {
        let v = json!({"a": [[1, 2], [], [{"b": null}], {}, true, -1.5]});
        assert_eq!(read_back(&to_yaml(&v)), v);
        assert_eq!(to_yaml(&json!({})), "{}\n");
    }

    fn value() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i64>().prop_map(Value::from),
            (-1000i32..1000, 1u32..100)
                .prop_map(|(a, b)| json!(f64::from(a) + f64::from(b) / 128.0)),
            "[ -~\n\t\u{e9}\u{4e2d}]{0,12}".prop_map(Value::String),
            "[0-9][0-9a-fA-FxXoObBeE.+_:-]{0,6}".prop_map(Value::String),
            prop::sample::select(vec![
                "yes", "on", "1.10", "0755", "a: b", "- x", "#", "1e5", "0x1f", "2s"
            ])
            .prop_map(|s| Value::String(s.to_string())),
        ];
        leaf.prop_recursive(4, 48, 6, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..5).prop_map(Value::Array),
                prop::collection::btree_map("[a-z:. -]{0,6}", inner, 0..5)
                    .prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        })
    }

    proptest! {
        #[test]
        fn everything_reads_back(v in value()) {
            let doc = json!({ "root": v });
            let text = to_yaml(&doc);
            let (docs, err) = load_documents(&text, Limits::default());
            prop_assert!(err.is_none(), "{:?}\n{}", err, text);
            prop_assert_eq!(docs[0].root.to_json(), doc, "{}", text);
        }
    }
}
