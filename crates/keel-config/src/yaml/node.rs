//! A YAML (or JSON) document as a tree of nodes that remember where they came from.
//!
//! Every later stage (typed decoding, validation, analysis) reports problems by field path;
//! the tree turns such a path back into a line and column in the user's file.

use std::fmt;

/// A position in a source file: 1-based line and column.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default, Hash)]
pub struct Pos {
    pub line: u32,
    pub col: u32,
}

impl fmt::Display for Pos {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.line, self.col)
    }
}

/// How a scalar was written; quoted scalars are always strings, plain ones are resolved
/// the way Kubernetes' YAML reader resolves them (`80` is a number, `yes` a boolean).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ScalarStyle {
    Plain,
    Quoted,
}

/// The value a plain scalar resolves to.
#[derive(Debug, Clone, PartialEq)]
pub enum Resolved<'a> {
    Null,
    Bool(bool),
    Int(i64),
    UInt(u64),
    Float(f64),
    Str(&'a str),
}

impl Resolved<'_> {
    /// A word for error messages: "an integer", "a boolean", ...
    pub fn describe(&self) -> &'static str {
        match self {
            Resolved::Null => "null",
            Resolved::Bool(_) => "a boolean",
            Resolved::Int(_) | Resolved::UInt(_) => "an integer",
            Resolved::Float(_) => "a number",
            Resolved::Str(_) => "a string",
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum NodeKind {
    Null,
    Scalar { text: String, style: ScalarStyle },
    Seq(Vec<Node>),
    Map(Vec<(Node, Node)>),
}

#[derive(Debug, Clone, PartialEq)]
pub struct Node {
    pub pos: Pos,
    pub kind: NodeKind,
}

/// One step of a field path: `.name` or `[3]`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Seg {
    Key(String),
    Index(usize),
}

/// A field path such as `spec.http[0].route[1].weight`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Hash)]
pub struct FieldPath(pub Vec<Seg>);

impl FieldPath {
    pub fn root() -> Self {
        FieldPath(Vec::new())
    }
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
    pub fn key(mut self, k: impl Into<String>) -> Self {
        self.0.push(Seg::Key(k.into()));
        self
    }
    pub fn index(mut self, i: usize) -> Self {
        self.0.push(Seg::Index(i));
        self
    }
    /// Parses the display form back (`a.b[2].c`); keys containing `.` or `[` are written
    /// as `[key]` by `Display`, which this accepts too.
    pub fn parse(s: &str) -> Self {
        let mut segs = Vec::new();
        let mut rest = s.trim_start_matches('.');
        while !rest.is_empty() {
            if let Some(r) = rest.strip_prefix('[') {
                let end = r.find(']').unwrap_or(r.len());
                let inner = &r[..end];
                match inner.parse::<usize>() {
                    Ok(i) => segs.push(Seg::Index(i)),
                    Err(_) => segs.push(Seg::Key(inner.to_string())),
                }
                rest = r.get(end + 1..).unwrap_or("");
            } else {
                let end = rest.find(['.', '[']).unwrap_or(rest.len());
                segs.push(Seg::Key(rest[..end].to_string()));
                rest = &rest[end..];
            }
            rest = rest.strip_prefix('.').unwrap_or(rest);
        }
        FieldPath(segs)
    }
}

impl fmt::Display for FieldPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, seg) in self.0.iter().enumerate() {
            match seg {
                Seg::Key(k) if k.contains(['.', '[', ']']) || k.is_empty() => write!(f, "[{k}]")?,
                Seg::Key(k) if i == 0 => write!(f, "{k}")?,
                Seg::Key(k) => write!(f, ".{k}")?,
                Seg::Index(n) => write!(f, "[{n}]")?,
            }
        }
        Ok(())
    }
}

impl Node {
    pub fn null(pos: Pos) -> Self {
        Node {
            pos,
            kind: NodeKind::Null,
        }
    }

    pub fn is_null(&self) -> bool {
        matches!(self.kind, NodeKind::Null)
    }

    /// Resolves a scalar the way Kubernetes' YAML 1.1 reader does.
    pub fn resolve(&self) -> Option<Resolved<'_>> {
        match &self.kind {
            NodeKind::Null => Some(Resolved::Null),
            NodeKind::Scalar {
                text,
                style: ScalarStyle::Quoted,
            } => Some(Resolved::Str(text)),
            NodeKind::Scalar {
                text,
                style: ScalarStyle::Plain,
            } => Some(resolve_plain(text)),
            _ => None,
        }
    }

    /// The text of a scalar, whatever it resolves to.
    pub fn as_str(&self) -> Option<&str> {
        match &self.kind {
            NodeKind::Scalar { text, .. } => Some(text),
            _ => None,
        }
    }

    pub fn as_map(&self) -> Option<&[(Node, Node)]> {
        match &self.kind {
            NodeKind::Map(m) => Some(m),
            _ => None,
        }
    }

    pub fn as_seq(&self) -> Option<&[Node]> {
        match &self.kind {
            NodeKind::Seq(s) => Some(s),
            _ => None,
        }
    }

    /// The value under a mapping key (first occurrence).
    pub fn get(&self, key: &str) -> Option<&Node> {
        self.as_map()?
            .iter()
            .find(|(k, _)| k.as_str() == Some(key))
            .map(|(_, v)| v)
    }

    /// The key node itself, for errors that point at a key (unknown or duplicate fields).
    pub fn get_key(&self, key: &str) -> Option<&Node> {
        self.as_map()?
            .iter()
            .find(|(k, _)| k.as_str() == Some(key))
            .map(|(k, _)| k)
    }

    /// The node at `path`, or the deepest existing ancestor when the path names a field
    /// that is absent (so "x is required" points at the object that lacks it).
    pub fn locate(&self, path: &FieldPath) -> &Node {
        let mut cur = self;
        for seg in &path.0 {
            let next = match seg {
                Seg::Key(k) => cur.get(k),
                Seg::Index(i) => cur.as_seq().and_then(|s| s.get(*i)),
            };
            match next {
                Some(n) => cur = n,
                None => break,
            }
        }
        cur
    }

    /// Where to point a user for `path`: a scalar's own position; for an object or list,
    /// the key that introduces it (`portLevelMtls:` rather than its first entry); for an absent
    /// field, the nearest existing parent, found the same way.
    pub fn locate_pos(&self, path: &FieldPath) -> Pos {
        let mut cur = self;
        let mut key_pos = None;
        for seg in &path.0 {
            let next = match seg {
                Seg::Key(k) => cur
                    .as_map()
                    .and_then(|m| m.iter().find(|(kn, _)| kn.as_str() == Some(k.as_str())))
                    .map(|(kn, v)| (Some(kn.pos), v)),
                Seg::Index(i) => cur.as_seq().and_then(|s| s.get(*i)).map(|v| (None, v)),
            };
            match next {
                Some((kp, n)) => {
                    key_pos = kp;
                    cur = n;
                }
                None => break,
            }
        }
        match (&cur.kind, key_pos) {
            (NodeKind::Map(_) | NodeKind::Seq(_) | NodeKind::Null, Some(kp)) => kp,
            _ => cur.pos,
        }
    }

    pub fn kind_name(&self) -> &'static str {
        match &self.kind {
            NodeKind::Null => "null",
            NodeKind::Scalar { .. } => match self.resolve() {
                Some(r) => r.describe(),
                None => "a scalar",
            },
            NodeKind::Seq(_) => "a list",
            NodeKind::Map(_) => "an object",
        }
    }

    /// Converts to an untyped JSON value (for `-o json`, opaque `Struct` fields and tests).
    pub fn to_json(&self) -> serde_json::Value {
        use serde_json::Value;
        match &self.kind {
            NodeKind::Null => Value::Null,
            NodeKind::Scalar { .. } => match self.resolve() {
                Some(Resolved::Bool(b)) => Value::Bool(b),
                Some(Resolved::Int(i)) => Value::from(i),
                Some(Resolved::UInt(u)) => Value::from(u),
                Some(Resolved::Float(f)) => {
                    serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number)
                }
                Some(Resolved::Str(s)) => Value::String(s.to_string()),
                Some(Resolved::Null) | None => Value::Null,
            },
            NodeKind::Seq(items) => Value::Array(items.iter().map(Node::to_json).collect()),
            NodeKind::Map(entries) => Value::Object(
                entries
                    .iter()
                    .map(|(k, v)| (k.as_str().unwrap_or_default().to_string(), v.to_json()))
                    .collect(),
            ),
        }
    }
}

/// YAML 1.1 plain-scalar resolution as done by go-yaml v2, which `kubectl` and Istio use.
pub fn resolve_plain(text: &str) -> Resolved<'_> {
    match text {
        "" | "~" | "null" | "Null" | "NULL" => return Resolved::Null,
        "true" | "True" | "TRUE" | "yes" | "Yes" | "YES" | "on" | "On" | "ON" | "y" | "Y" => {
            return Resolved::Bool(true);
        }
        "false" | "False" | "FALSE" | "no" | "No" | "NO" | "off" | "Off" | "OFF" | "n" | "N" => {
            return Resolved::Bool(false);
        }
        ".inf" | ".Inf" | ".INF" | "+.inf" | "+.Inf" | "+.INF" => {
            return Resolved::Float(f64::INFINITY);
        }
        "-.inf" | "-.Inf" | "-.INF" => return Resolved::Float(f64::NEG_INFINITY),
        ".nan" | ".NaN" | ".NAN" => return Resolved::Float(f64::NAN),
        _ => {}
    }
    let first = text.as_bytes()[0];
    if !(first.is_ascii_digit() || matches!(first, b'-' | b'+' | b'.')) {
        return Resolved::Str(text);
    }
    if let Some(v) = resolve_int(text) {
        return v;
    }
    if looks_like_float(text)
        && let Ok(f) = text.replace('_', "").parse::<f64>()
    {
        return Resolved::Float(f);
    }
    Resolved::Str(text)
}

fn resolve_int(text: &str) -> Option<Resolved<'_>> {
    let (neg, body) = match text.as_bytes()[0] {
        b'-' => (true, &text[1..]),
        b'+' => (false, &text[1..]),
        _ => (false, text),
    };
    if body.is_empty() || !body.as_bytes()[0].is_ascii_digit() {
        return None;
    }
    let clean: String = body.chars().filter(|c| *c != '_').collect();
    let (digits, radix) = if let Some(h) = clean.strip_prefix("0x") {
        (h.to_string(), 16)
    } else if let Some(b) = clean.strip_prefix("0b") {
        (b.to_string(), 2)
    } else if let Some(o) = clean.strip_prefix("0o") {
        (o.to_string(), 8)
    } else if clean.len() > 1 && clean.starts_with('0') {
        (clean[1..].to_string(), 8)
    } else {
        (clean, 10)
    };
    if digits.is_empty() || !digits.chars().all(|c| c.is_digit(radix)) {
        return None;
    }
    let mag = u64::from_str_radix(&digits, radix).ok()?;
    if neg {
        if mag <= i64::MAX as u64 + 1 {
            Some(Resolved::Int((mag as i128).wrapping_neg() as i64))
        } else {
            None
        }
    } else {
        Some(Resolved::UInt(mag))
    }
}

fn looks_like_float(text: &str) -> bool {
    let body = text.trim_start_matches(['-', '+']);
    !body.is_empty()
        && body
            .chars()
            .all(|c| c.is_ascii_digit() || matches!(c, '.' | 'e' | 'E' | '-' | '+' | '_'))
        && body.chars().any(|c| c.is_ascii_digit())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolves_like_kubernetes_yaml() {
        assert_eq!(resolve_plain("80"), Resolved::UInt(80));
        assert_eq!(resolve_plain("-3"), Resolved::Int(-3));
        assert_eq!(resolve_plain("0x1F"), Resolved::UInt(31));
        assert_eq!(resolve_plain("0755"), Resolved::UInt(493));
        assert_eq!(resolve_plain("1.5"), Resolved::Float(1.5));
        assert_eq!(resolve_plain("yes"), Resolved::Bool(true));
        assert_eq!(resolve_plain("Off"), Resolved::Bool(false));
        assert_eq!(resolve_plain("~"), Resolved::Null);
        assert_eq!(resolve_plain("10s"), Resolved::Str("10s"));
        assert_eq!(resolve_plain("1.2.3.4"), Resolved::Str("1.2.3.4"));
        assert_eq!(resolve_plain("v1"), Resolved::Str("v1"));
        assert_eq!(resolve_plain("-"), Resolved::Str("-"));
        assert_eq!(resolve_plain("09"), Resolved::Float(9.0));
    }

    #[test]
    fn field_paths_round_trip() {
        let p = FieldPath::root()
            .key("spec")
            .key("http")
            .index(0)
            .key("match")
            .index(2)
            .key("headers")
            .key("x-user.id");
        assert_eq!(p.to_string(), "spec.http[0].match[2].headers[x-user.id]");
        assert_eq!(FieldPath::parse(&p.to_string()), p);
    }
}
