//! From text to resources: documents, `kind: List`, envelope checks, namespace defaulting,
//! typed decoding. A resource that fails is skipped with an error that says so; the rest of
//! the file stays usable.

use std::path::PathBuf;
use std::sync::Arc;

use crate::diagnostic::{Diagnostic, Level, ResourceRef};
use crate::kinds::{Kind, LookupError};
use crate::meta::ObjectMeta;
use crate::resource::{Origin, Resource, Spec};
use crate::source::{Input, read_inputs};
use crate::validate::Severity;
use crate::yaml::{FieldPath, Limits, Node, NodeKind, Pos, from_node, load_documents_at};

/// How to read configuration.
#[derive(Debug, Clone)]
pub struct LoadOptions {
    /// Namespace for namespaced objects that name none (kubectl's `-n`, else `default`).
    pub default_namespace: String,
    pub limits: Limits,
    /// Threads for large inputs; 0 means one per CPU.
    pub threads: usize,
}

impl Default for LoadOptions {
    fn default() -> Self {
        LoadOptions {
            default_namespace: "default".to_string(),
            limits: Limits::default(),
            threads: 0,
        }
    }
}

/// Resources read, and every problem met on the way.
#[derive(Debug, Default)]
pub struct Loaded {
    pub resources: Vec<Resource>,
    pub diagnostics: Vec<Diagnostic>,
    /// Number of files (or stdin) read.
    pub inputs: usize,
    /// Mesh resources that could not be decoded and were left out.
    pub skipped: Vec<ResourceRef>,
}

impl Loaded {
    pub fn has_errors(&self) -> bool {
        self.diagnostics.iter().any(|d| d.level == Level::Error)
    }
}

/// Reads files, directories and `-` (stdin).
pub fn load_paths(paths: &[PathBuf], opts: &LoadOptions) -> Loaded {
    let (inputs, diagnostics) = read_inputs(paths);
    let mut loaded = Loaded {
        diagnostics,
        ..Default::default()
    };
    for input in &inputs {
        load_input(input, opts, &mut loaded);
    }
    loaded
}

/// Reads one text (named `name` in messages).
pub fn load_str(text: &str, name: &str, opts: &LoadOptions) -> Loaded {
    let mut loaded = Loaded::default();
    load_input(
        &Input {
            name: Arc::from(name),
            text: text.to_string(),
        },
        opts,
        &mut loaded,
    );
    loaded
}

/// Inputs at least this large are split at document markers and read on several threads
/// (a control plane starting with thousands of resources, `keel apply` of a big file).
const PARALLEL_MIN_BYTES: usize = 256 * 1024;

fn threads(opts: &LoadOptions) -> usize {
    match opts.threads {
        0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
        n => n,
    }
}

fn load_input(input: &Input, opts: &LoadOptions, out: &mut Loaded) {
    out.inputs += 1;
    let n = threads(opts);
    let chunks = if input.text.len() >= PARALLEL_MIN_BYTES && n > 1 {
        split_documents(&input.text, n)
    } else {
        vec![(0, 0)]
    };
    if chunks.len() == 1 {
        load_chunk(input, 0, 0, input.text.len(), opts, out);
        return;
    }
    let ends: Vec<usize> = chunks
        .iter()
        .skip(1)
        .map(|c| c.0)
        .chain([input.text.len()])
        .collect();
    let parts: Vec<(Loaded, bool)> = std::thread::scope(|scope| {
        let handles: Vec<_> = chunks
            .iter()
            .zip(&ends)
            .map(|(&(start, line), &end)| {
                scope.spawn(move || {
                    let mut part = Loaded::default();
                    let failed = load_chunk(input, start, line, end, opts, &mut part);
                    (part, failed)
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().unwrap_or_default())
            .collect()
    });
    // A syntax error ends the file, as in a sequential read: later chunks are dropped.
    for (part, failed) in parts {
        out.resources.extend(part.resources);
        out.diagnostics.extend(part.diagnostics);
        out.skipped.extend(part.skipped);
        if failed {
            break;
        }
    }
}

/// Reads `text[start..end]` (which begins after `line` lines); returns whether YAML
/// syntax stopped it early.
fn load_chunk(
    input: &Input,
    start: usize,
    line: u32,
    end: usize,
    opts: &LoadOptions,
    out: &mut Loaded,
) -> bool {
    let text = &input.text[start..end];
    let (docs, err) = load_documents_at(text, opts.limits, line);
    let starts = document_first_lines(text, line);
    for doc in docs {
        let doc_line = starts
            .iter()
            .rev()
            .find(|(region, _)| *region <= doc.root.pos.line)
            .map_or(doc.root.pos.line, |(_, first)| *first);
        load_object(doc.root, &input.name, opts, out, doc_line);
    }
    let failed = err.is_some();
    if let Some(e) = err {
        out.diagnostics.push(Diagnostic::new(
            Level::Error,
            &input.name,
            Some(e.pos),
            format!("{}; the rest of the file was not read", e.message),
        ));
    }
    failed
}

/// For each document region of `text` (split at `---` lines), the line it starts on and its
/// first line that is neither blank nor a marker — a leading comment counts, as in istioctl,
/// which reports a resource at that line.
fn document_first_lines(text: &str, line_offset: u32) -> Vec<(u32, u32)> {
    let mut out = Vec::new();
    let mut region = line_offset + 1;
    let mut first = None;
    for (i, l) in text.lines().enumerate() {
        let n = line_offset + i as u32 + 1;
        if l.starts_with("---") && l[3..].chars().next().is_none_or(char::is_whitespace) {
            if let Some(f) = first.take() {
                out.push((region, f));
            }
            region = n;
            if !l[3..].trim().is_empty() && !l[3..].trim_start().starts_with('#') {
                first = Some(n);
            }
        } else if first.is_none() && !l.trim().is_empty() {
            first = Some(n);
        }
    }
    if let Some(f) = first {
        out.push((region, f));
    }
    out
}

/// Up to `parts` pieces of `text`, cut just before `---` document markers at column 0 (which
/// YAML forbids inside scalars, so a cut never splits a value). Returns (byte offset, line
/// offset) of each piece. Files with directives (`%YAML`) are not split.
fn split_documents(text: &str, parts: usize) -> Vec<(usize, u32)> {
    if text.starts_with('%') || text.contains("\n%") {
        return vec![(0, 0)];
    }
    let mut cuts = vec![(0usize, 0u32)];
    let target = text.len() / parts;
    let mut offset = 0usize;
    for (line, l) in text.split_inclusive('\n').enumerate() {
        let is_marker =
            l.starts_with("---") && l[3..].chars().next().is_none_or(char::is_whitespace);
        if is_marker && offset >= cuts.len() * target && cuts.len() < parts {
            cuts.push((offset, line as u32));
        }
        offset += l.len();
    }
    cuts
}

fn str_field<'a>(node: &'a Node, key: &str) -> Option<&'a str> {
    node.get(key).and_then(Node::as_str)
}

fn load_object(node: Node, file: &Arc<str>, opts: &LoadOptions, out: &mut Loaded, doc_line: u32) {
    let pos = node.pos;
    let err = |msg: String| Diagnostic::new(Level::Error, file, Some(pos), msg);
    if !matches!(node.kind, NodeKind::Map(_)) {
        out.diagnostics.push(err(format!(
            "expected a Kubernetes object (a mapping with apiVersion, kind, metadata), found {}",
            node.kind_name()
        )));
        return;
    }
    let kind_name = str_field(&node, "kind").unwrap_or_default().to_string();
    let api_version = str_field(&node, "apiVersion")
        .unwrap_or_default()
        .to_string();
    if kind_name.ends_with("List") && api_version == "v1" {
        let NodeKind::Map(entries) = node.kind else {
            return;
        };
        for (k, v) in entries {
            if k.as_str() != Some("items") {
                continue;
            }
            match v.kind {
                NodeKind::Seq(items) => {
                    for item in items {
                        let line = item.pos.line;
                        load_object(item, file, opts, out, line);
                    }
                }
                NodeKind::Null => {}
                _ => out
                    .diagnostics
                    .push(err(format!("{kind_name}: items must be a list"))),
            }
        }
        return;
    }
    let name = node
        .get("metadata")
        .and_then(|m| str_field(m, "name"))
        .unwrap_or_default()
        .to_string();
    let rref = ResourceRef {
        kind: if kind_name.is_empty() {
            "object".to_string()
        } else {
            kind_name.clone()
        },
        group: api_version
            .rsplit_once('/')
            .map(|(g, _)| g.to_string())
            .unwrap_or_default(),
        namespace: node
            .get("metadata")
            .and_then(|m| str_field(m, "namespace"))
            .unwrap_or_default()
            .to_string(),
        name: name.clone(),
    };
    let mut rref = rref;
    let namespaced = Kind::lookup(&api_version, &kind_name).map_or(true, |k| k.info().namespaced);
    if rref.namespace.is_empty() && namespaced {
        rref.namespace = opts.default_namespace.clone();
    }
    if kind_name.is_empty() || api_version.is_empty() {
        let missing = if api_version.is_empty() {
            "apiVersion"
        } else {
            "kind"
        };
        out.diagnostics.push(
            err(format!(
                "missing \"{missing}\": every object needs apiVersion and kind; skipped"
            ))
            .with_resource(rref),
        );
        return;
    }
    let kind = match Kind::lookup(&api_version, &kind_name) {
        Ok(k) => k,
        Err(LookupError::NotMeshKind) => {
            out.diagnostics.push(
                Diagnostic::new(
                    Level::Note,
                    file,
                    Some(pos),
                    format!("{api_version} {kind_name} is not a kind the mesh reads; skipped"),
                )
                .with_resource(rref),
            );
            return;
        }
        Err(LookupError::UnknownIstioKind) => {
            let known: Vec<&str> = crate::kinds::KINDS
                .iter()
                .filter(|k| k.kind.is_istio())
                .map(|k| k.name)
                .collect();
            let hint = crate::suggest::closest(&kind_name, known.iter().copied())
                .map(|s| format!(" (did you mean \"{s}\"?)"))
                .unwrap_or_default();
            out.diagnostics.push(
                err(format!(
                    "unknown kind \"{kind_name}\" in {api_version}{hint}; skipped"
                ))
                .with_resource(rref),
            );
            return;
        }
        Err(LookupError::UnknownVersion { kind, served }) => {
            let group = kind.info().group;
            let served: Vec<String> = served
                .iter()
                .map(|v| {
                    if group.is_empty() {
                        v.to_string()
                    } else {
                        format!("{group}/{v}")
                    }
                })
                .collect();
            let at = node.get("apiVersion").map_or(pos, |n| n.pos);
            out.skipped.push(rref.clone());
            out.diagnostics.push(
                Diagnostic::new(
                    Level::Error,
                    file,
                    Some(at),
                    format!("{kind_name} is not served at apiVersion \"{api_version}\"; use one of: {}; skipped", served.join(", ")),
                )
                .with_resource(rref),
            );
            return;
        }
    };
    match decode(kind, api_version, node, file, opts, doc_line) {
        Ok(resource) => out.resources.push(resource),
        Err(d) => {
            out.skipped.push(rref.clone());
            out.diagnostics.push((*d).with_resource(rref));
        }
    }
}

const ISTIO_TOP_LEVEL: &[&str] = &["apiVersion", "kind", "metadata", "spec", "status"];

fn decode(
    kind: Kind,
    api_version: String,
    node: Node,
    file: &Arc<str>,
    opts: &LoadOptions,
    doc_line: u32,
) -> Result<Resource, Box<Diagnostic>> {
    let fail = |path: FieldPath, pos: Pos, msg: String| {
        Box::new(
            Diagnostic::new(
                Level::Error,
                file,
                Some(pos),
                format!("{msg}; resource skipped"),
            )
            .with_field(path),
        )
    };
    let mut meta: ObjectMeta = match node.get("metadata") {
        Some(m) => from_node(m).map_err(|e| {
            let mut path = FieldPath::root().key("metadata");
            path.0.extend(e.path.0);
            fail(path, e.pos.unwrap_or(m.pos), e.message)
        })?,
        None => ObjectMeta::default(),
    };
    if kind.info().namespaced && meta.namespace.is_empty() {
        meta.namespace = opts.default_namespace.clone();
    }
    let empty = Node {
        pos: node.pos,
        kind: NodeKind::Map(Vec::new()),
    };
    let body = if kind.is_istio() {
        if let Some(entries) = node.as_map() {
            for (k, _) in entries {
                let key = k.as_str().unwrap_or_default();
                if !ISTIO_TOP_LEVEL.contains(&key) {
                    let msg = crate::yaml::de::unknown_message("field", key, ISTIO_TOP_LEVEL);
                    return Err(fail(FieldPath::root().key(key), k.pos, msg));
                }
            }
        }
        match node.get("spec") {
            Some(s) if !s.is_null() => s,
            // A missing spec decodes as empty. Kinds whose CRD requires one get a validation
            // error (validate/meta.rs), but stay visible to analysis, as in istioctl analyze.
            _ => &empty,
        }
    } else {
        &node
    };
    let spec = Spec::decode(kind, body).map_err(|e| {
        let mut path = if kind.is_istio() {
            FieldPath::root().key("spec")
        } else {
            FieldPath::root()
        };
        path.0.extend(e.path.0);
        fail(path, e.pos.unwrap_or(body.pos), e.message)
    })?;
    Ok(Resource {
        api_version,
        meta,
        spec,
        origin: Origin {
            file: file.clone(),
            pos: node.pos,
            doc_line,
            node: Arc::new(node),
        },
    })
}

/// Validates resources with Istio's rules; each issue becomes a diagnostic with a position.
/// Large sets are validated on one thread per CPU.
pub fn validate_resources(resources: &[Resource], root_namespace: &str) -> Vec<Diagnostic> {
    let n = std::thread::available_parallelism().map_or(1, |n| n.get());
    if resources.len() < 1000 || n < 2 {
        return validate_slice(resources, root_namespace);
    }
    let size = resources.len().div_ceil(n);
    std::thread::scope(|scope| {
        let handles: Vec<_> = resources
            .chunks(size)
            .map(|chunk| scope.spawn(move || validate_slice(chunk, root_namespace)))
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().unwrap_or_default())
            .collect()
    })
}

fn validate_slice(resources: &[Resource], root_namespace: &str) -> Vec<Diagnostic> {
    let mut out = Vec::new();
    for r in resources {
        for issue in r.validate(root_namespace) {
            let level = match issue.severity {
                Severity::Error => Level::Error,
                Severity::Warning => Level::Warning,
            };
            let pos = r.origin.locate(&issue.path);
            out.push(
                Diagnostic::new(level, &r.origin.file, Some(pos), issue.message)
                    .with_resource(r.reference())
                    .with_field(issue.path),
            );
        }
        if let Some(why) = r.kind().info().unsupported {
            out.push(
                Diagnostic::new(
                    Level::Warning,
                    &r.origin.file,
                    Some(r.origin.pos),
                    format!(
                        "{} is recognised but not supported by Keel: {why}",
                        r.kind()
                    ),
                )
                .with_resource(r.reference()),
            );
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn large_inputs_read_in_parallel_match_a_sequential_read() {
        let mut text = String::new();
        for i in 0..3000 {
            text.push_str(&format!("---\napiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: c{i}\ndata:\n  k: |\n    ---not a marker\n    v{i}\n"));
        }
        text.push_str("---\napiVersion: v1\nkind: ConfigMap\nmetadata: {name: bad\n---\napiVersion: v1\nkind: ConfigMap\nmetadata: {name: after}\n");
        assert!(text.len() > PARALLEL_MIN_BYTES);
        let seq = load_str(
            &text,
            "big.yaml",
            &LoadOptions {
                threads: 1,
                ..Default::default()
            },
        );
        let par = load_str(
            &text,
            "big.yaml",
            &LoadOptions {
                threads: 4,
                ..Default::default()
            },
        );
        assert_eq!(seq.resources.len(), 3000);
        assert_eq!(par.resources, seq.resources);
        assert_eq!(par.diagnostics, seq.diagnostics);
        assert_eq!(par.resources[2999].origin.pos.line, 2999 * 9 + 2);
        assert_eq!(split_documents("%YAML 1.2\n---\na: 1\n", 2), vec![(0, 0)]);
    }

    #[test]
    fn lists_namespaces_and_skips() {
        let text = r#"
apiVersion: v1
kind: List
items:
- apiVersion: v1
  kind: ConfigMap
  metadata: {name: a}
- apiVersion: batch/v1
  kind: Job
  metadata: {name: j}
---
apiVersion: networking.istio.io/v1
kind: VirtualServce
metadata: {name: x}
spec: {}
---
apiVersion: networking.istio.io/v9
kind: Gateway
metadata: {name: g, namespace: prod}
spec: {}
---
apiVersion: v1
kind: Namespace
metadata: {name: prod}
"#;
        let opts = LoadOptions {
            default_namespace: "team".into(),
            ..Default::default()
        };
        let loaded = load_str(text, "t.yaml", &opts);
        assert_eq!(loaded.resources.len(), 2);
        assert_eq!(loaded.resources[0].namespace(), "team");
        assert_eq!(loaded.resources[1].namespace(), "");
        let msgs: Vec<String> = loaded.diagnostics.iter().map(|d| d.to_string()).collect();
        assert!(
            msgs[0].contains("note") && msgs[0].contains("batch/v1 Job"),
            "{msgs:?}"
        );
        assert!(
            msgs[1].contains("did you mean \"VirtualService\""),
            "{msgs:?}"
        );
        assert!(
            msgs[2].contains("t.yaml:17:13")
                && msgs[2].contains("networking.istio.io/v1, networking.istio.io/v1beta1"),
            "{msgs:?}"
        );
    }

    #[test]
    fn istio_objects_need_spec_and_known_top_level_fields() {
        let text = "apiVersion: networking.istio.io/v1\nkind: WorkloadEntry\nmetadata: {name: a}\n---\napiVersion: security.istio.io/v1\nkind: PeerAuthentication\nmetadata: {name: b}\nspce: {}\n";
        let loaded = load_str(text, "t.yaml", &LoadOptions::default());
        assert_eq!(loaded.resources.len(), 1);
        let msgs: Vec<String> = loaded.diagnostics.iter().map(|d| d.to_string()).collect();
        assert!(
            msgs[0].contains("PeerAuthentication default/b")
                && msgs[0].contains("did you mean \"spec\""),
            "{msgs:?}"
        );
        let errs = validate_resources(&loaded.resources, "istio-system");
        assert!(
            errs[0]
                .to_string()
                .contains("t.yaml:1:1: error: WorkloadEntry default/a: spec: Required value"),
            "{errs:?}"
        );
        // Kinds whose CRD doesn't require a spec decode an absent one as empty.
        let text = "apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {name: deny-all}\n";
        let loaded = load_str(text, "t.yaml", &LoadOptions::default());
        assert_eq!(loaded.resources.len(), 1, "{:?}", loaded.diagnostics);
    }
}
