//! Istio's validation rules: what its admission webhook and CRD schemas reject.
//!
//! Each kind implements [`Validate`]; rules report problems at a field path through a
//! [`Validator`], and the loader turns the path into a line and column.

pub mod common;

use crate::yaml::{FieldPath, Seg};

/// How serious a finding is. Istio's webhook rejects errors and admits with warnings.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
pub enum Severity {
    Warning,
    Error,
}

/// One problem found by validation, at a path relative to the resource root.
#[derive(Debug, Clone, PartialEq)]
pub struct Issue {
    pub severity: Severity,
    pub path: FieldPath,
    pub message: String,
    /// For findings `istioctl analyze` reports under their own code rather than as a schema
    /// warning (Istio's `AnalysisAwareError`): the code and the analyzer's text.
    pub analysis: Option<(&'static str, String)>,
}

/// What a rule may need to know about the resource beyond its spec.
#[derive(Debug, Clone, Default)]
pub struct Context {
    pub name: String,
    pub namespace: String,
    pub annotations: std::collections::BTreeMap<String, String>,
    pub labels: std::collections::BTreeMap<String, String>,
    /// The mesh's root namespace (`istio-system` unless configured).
    pub root_namespace: String,
}

/// Collects issues while walking a spec.
#[derive(Debug, Default)]
pub struct Validator {
    path: Vec<Seg>,
    pub issues: Vec<Issue>,
    pub ctx: Context,
}

impl Validator {
    pub fn new(ctx: Context) -> Self {
        Validator {
            path: Vec::new(),
            issues: Vec::new(),
            ctx,
        }
    }

    /// Runs `f` with `name` appended to the current path.
    pub fn field<R>(&mut self, name: &str, f: impl FnOnce(&mut Self) -> R) -> R {
        self.path.push(Seg::Key(name.to_string()));
        let r = f(self);
        self.path.pop();
        r
    }

    /// Runs `f` with `[i]` appended to the current path.
    pub fn index<R>(&mut self, i: usize, f: impl FnOnce(&mut Self) -> R) -> R {
        self.path.push(Seg::Index(i));
        let r = f(self);
        self.path.pop();
        r
    }

    /// Runs `f` for every item of a list, with the index in the path.
    pub fn each<T>(&mut self, name: &str, items: &[T], mut f: impl FnMut(&mut Self, &T)) {
        self.field(name, |v| {
            for (i, item) in items.iter().enumerate() {
                v.index(i, |v| f(v, item));
            }
        });
    }

    pub fn path(&self) -> FieldPath {
        FieldPath(self.path.clone())
    }

    /// An error at the current path.
    pub fn error(&mut self, message: impl Into<String>) {
        let path = self.path();
        self.issues.push(Issue {
            severity: Severity::Error,
            path,
            message: message.into(),
            analysis: None,
        });
    }

    /// An error at a child field of the current path.
    pub fn error_at(&mut self, field: &str, message: impl Into<String>) {
        self.field(field, |v| v.error(message));
    }

    /// A warning at the current path (the resource is still accepted).
    pub fn warn(&mut self, message: impl Into<String>) {
        let path = self.path();
        self.issues.push(Issue {
            severity: Severity::Warning,
            path,
            message: message.into(),
            analysis: None,
        });
    }

    /// A warning that analysis reports under its own message code (`IST0130`, ...).
    pub fn warn_analysis(&mut self, message: impl Into<String>, code: &'static str, text: String) {
        self.warn(message);
        if let Some(last) = self.issues.last_mut() {
            last.analysis = Some((code, text));
        }
    }

    pub fn warn_at(&mut self, field: &str, message: impl Into<String>) {
        self.field(field, |v| v.warn(message));
    }

    pub fn has_errors(&self) -> bool {
        self.issues.iter().any(|i| i.severity == Severity::Error)
    }
}

/// Istio's validation for one kind's spec. Paths are reported from the resource root, so
/// implementations start with `v.field("spec", ...)`.
pub trait Validate {
    fn validate(&self, v: &mut Validator);
}

pub mod meta;
pub mod net;
pub mod policy;
