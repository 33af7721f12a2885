//! Problems found while reading or validating configuration, each pinned to a place.

use std::fmt;
use std::sync::Arc;

use serde::Serialize;

use crate::yaml::{FieldPath, Pos};

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Level {
    /// Information only (e.g. a kind the mesh doesn't read was skipped).
    Note,
    Warning,
    Error,
}

impl fmt::Display for Level {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Level::Note => "note",
            Level::Warning => "warning",
            Level::Error => "error",
        })
    }
}

/// `Kind namespace/name`, the way users name a resource.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub struct ResourceRef {
    pub kind: String,
    /// The kind's API group (`networking.istio.io`; empty for core Kubernetes kinds). Kind
    /// names repeat across groups (Istio's `Gateway` and the Gateway API's), so two
    /// references are the same resource only if their groups match too. Not shown in text.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub group: String,
    pub namespace: String,
    pub name: String,
}

impl fmt::Display for ResourceRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.namespace.is_empty(), self.name.is_empty()) {
            (_, true) => write!(f, "{}", self.kind),
            (true, false) => write!(f, "{} {}", self.kind, self.name),
            (false, false) => write!(f, "{} {}/{}", self.kind, self.namespace, self.name),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Diagnostic {
    pub level: Level,
    pub file: Arc<str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub line: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub column: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub resource: Option<ResourceRef>,
    #[serde(skip_serializing_if = "Option::is_none", serialize_with = "path_str")]
    pub field: Option<FieldPath>,
    pub message: String,
}

fn path_str<S: serde::Serializer>(p: &Option<FieldPath>, s: S) -> Result<S::Ok, S::Error> {
    match p {
        Some(p) => s.collect_str(p),
        None => s.serialize_none(),
    }
}

impl Diagnostic {
    pub fn new(
        level: Level,
        file: &Arc<str>,
        pos: Option<Pos>,
        message: impl Into<String>,
    ) -> Self {
        Diagnostic {
            level,
            file: file.clone(),
            line: pos.map(|p| p.line),
            column: pos.map(|p| p.col),
            resource: None,
            field: None,
            message: message.into(),
        }
    }

    pub fn with_resource(mut self, r: ResourceRef) -> Self {
        self.resource = Some(r);
        self
    }

    pub fn with_field(mut self, f: FieldPath) -> Self {
        if !f.is_empty() {
            self.field = Some(f);
        }
        self
    }
}

impl fmt::Display for Diagnostic {
    /// `file:line:col: error: Kind ns/name: field.path: reason` — one line per problem.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file)?;
        if let Some(l) = self.line {
            write!(f, ":{l}")?;
            if let Some(c) = self.column {
                write!(f, ":{c}")?;
            }
        }
        write!(f, ": {}: ", self.level)?;
        if let Some(r) = &self.resource {
            write!(f, "{r}: ")?;
        }
        if let Some(p) = &self.field {
            write!(f, "{p}: ")?;
        }
        f.write_str(&self.message)
    }
}
