//! `istioctl analyze` output shapes: log lines, JSON, YAML.

use crate::messages::Message;

fn fields(m: &Message) -> Vec<(&'static str, String)> {
    // Sorted key order, as Go's map marshalling gives.
    let mut f = vec![
        ("code", m.code().to_string()),
        ("documentationUrl", m.documentation_url()),
        ("level", m.level().to_string()),
        ("message", m.text.clone()),
    ];
    if let Some(o) = &m.origin {
        f.push(("origin", o.friendly_name()));
        if let Some(r) = o.reference() {
            f.push(("reference", r));
        }
    }
    f
}

/// One line per message; the level coloured when `color` is set.
pub fn log(messages: &[Message], color: bool) -> String {
    messages
        .iter()
        .map(|m| {
            if !color {
                return m.to_string();
            }
            let (pre, post) = match m.level() {
                crate::Level::Error => ("\x1b[1;31m", "\x1b[0m"),
                crate::Level::Warning => ("\x1b[33m", "\x1b[0m"),
                crate::Level::Info => ("", ""),
            };
            let s = m.to_string();
            let lvl = m.level().to_string();
            format!("{pre}{lvl}{post}{}", &s[lvl.len()..])
        })
        .collect::<Vec<_>>()
        .join("\n")
}

pub fn json(messages: &[Message]) -> String {
    let arr: Vec<serde_json::Value> = messages
        .iter()
        .map(|m| {
            let map: serde_json::Map<String, serde_json::Value> = fields(m)
                .into_iter()
                .map(|(k, v)| (k.to_string(), serde_json::Value::String(v)))
                .collect();
            serde_json::Value::Object(map)
        })
        .collect();
    // Istio indents with tabs.
    let mut buf = Vec::new();
    let fmt = serde_json::ser::PrettyFormatter::with_indent(b"\t");
    let mut ser = serde_json::Serializer::with_formatter(&mut buf, fmt);
    if serde::Serialize::serialize(&arr, &mut ser).is_err() {
        return "[]".to_string();
    }
    String::from_utf8(buf).unwrap_or_else(|_| "[]".to_string())
}

pub fn yaml(messages: &[Message]) -> String {
    if messages.is_empty() {
        return "[]\n".to_string();
    }
    let mut out = String::new();
    for m in messages {
        for (i, (k, v)) in fields(m).into_iter().enumerate() {
            out.push_str(if i == 0 { "- " } else { "  " });
            out.push_str(k);
            out.push_str(": ");
            out.push_str(&yaml_scalar(&v));
            out.push('\n');
        }
    }
    out
}

/// A string as a YAML scalar: plain when safe, otherwise JSON-quoted (valid YAML).
fn yaml_scalar(s: &str) -> String {
    let plain_safe = !s.is_empty()
        && !s.starts_with([
            ' ', '-', '?', ':', ',', '[', ']', '{', '}', '#', '&', '*', '!', '|', '>', '\'', '"',
            '%', '@', '`',
        ])
        && !s.ends_with(' ')
        && !s.contains(": ")
        && !s.contains(" #")
        && !s.contains(['\n', '\t', '"'])
        && keel_config::yaml::node::resolve_plain(s) == keel_config::yaml::Resolved::Str(s);
    if plain_safe {
        s.to_string()
    } else {
        serde_json::to_string(s).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::messages::{Origin, REFERENCED_RESOURCE_NOT_FOUND};

    fn msg() -> Message {
        Message {
            mtype: REFERENCED_RESOURCE_NOT_FOUND,
            text: "Referenced host not found: \"reviewz\"".into(),
            origin: Some(Origin {
                kind: "VirtualService".into(),
                group: "networking.istio.io".into(),
                namespace: "default".into(),
                name: "r".into(),
                file: "a.yaml".into(),
                line: 3,
            }),
        }
    }

    #[test]
    fn json_and_yaml_shapes() {
        let j = json(&[msg()]);
        let v: serde_json::Value = serde_json::from_str(&j).expect("json");
        assert_eq!(v[0]["code"], "IST0101");
        assert_eq!(v[0]["origin"], "VirtualService default/r");
        assert_eq!(v[0]["reference"], "a.yaml:3");
        assert!(j.contains("\n\t{"));
        let y = yaml(&[msg()]);
        assert!(y.starts_with("- code: IST0101\n"), "{y}");
        assert!(
            y.contains("  message: \"Referenced host not found: \\\"reviewz\\\"\"\n"),
            "{y}"
        );
        assert!(y.contains("  origin: VirtualService default/r\n"), "{y}");
        assert_eq!(json(&[]), "[]");
        assert_eq!(yaml(&[]), "[]\n");
        assert!(log(&[msg()], true).starts_with("\x1b[1;31mError\x1b[0m [IST0101]"));
    }
}
