//! Turning what a client sends (`keel apply -f`, the HTTP API) into resources for the store,
//! with the same messages `keel validate` prints.

use std::collections::BTreeMap;
use std::sync::Arc;

use keel_config::source::Input;
use keel_config::{Diagnostic, Level, LoadOptions, Loaded, Resource, load_str};

use super::ResourceKey;

/// How to read a client's input.
#[derive(Debug, Clone)]
pub struct ReadOptions {
    /// kubectl's `-n`: the namespace of resources that name none, and the only namespace a
    /// resource may name. `None` means `default` for the former and no check for the latter.
    pub namespace: Option<String>,
    /// The mesh's root namespace, for validation.
    pub root_namespace: String,
}

impl Default for ReadOptions {
    fn default() -> Self {
        ReadOptions {
            namespace: None,
            root_namespace: super::dir::DEFAULT_ROOT_NAMESPACE.to_string(),
        }
    }
}

/// Reads and validates everything to apply. On success, the resources and the messages that
/// don't stop an apply (warnings, notes about kinds the mesh doesn't read); on failure, every
/// message, errors first in file order.
pub fn read_for_apply(
    inputs: &[Input],
    opts: &ReadOptions,
) -> Result<(Vec<Resource>, Vec<Diagnostic>), Vec<Diagnostic>> {
    let loaded = load_all(inputs, opts);
    let mut diags = loaded.diagnostics;
    diags.extend(keel_config::validate_resources(
        &loaded.resources,
        &opts.root_namespace,
    ));
    diags.extend(store_rules(&loaded.resources, opts.namespace.as_deref()));
    sort(&mut diags, inputs);
    if diags.iter().any(|d| d.level == Level::Error) {
        Err(diags)
    } else {
        Ok((loaded.resources, diags))
    }
}

/// Reads the identities to delete. A resource whose spec is invalid can still be deleted;
/// input that can't be read as YAML, or objects without a kind Keel knows, can't.
pub fn read_for_delete(
    inputs: &[Input],
    opts: &ReadOptions,
) -> Result<Vec<ResourceKey>, Vec<Diagnostic>> {
    let loaded = load_all(inputs, opts);
    let mut keys: Vec<ResourceKey> = loaded.resources.iter().map(ResourceKey::of).collect();
    for r in &loaded.skipped {
        let kind = keel_config::kinds::KINDS
            .iter()
            .find(|k| k.name == r.kind && k.group == r.group);
        if let Some(info) = kind {
            keys.push(ResourceKey::new(info.kind, &r.namespace, &r.name));
        }
    }
    let mut errors: Vec<Diagnostic> = loaded
        .diagnostics
        .into_iter()
        .filter(|d| d.level == Level::Error)
        .filter(|d| {
            d.resource
                .as_ref()
                .is_none_or(|r| !loaded.skipped.contains(r))
        })
        .collect();
    if errors.is_empty() {
        let mut seen = std::collections::BTreeSet::new();
        keys.retain(|k| seen.insert(k.clone()));
        Ok(keys)
    } else {
        sort(&mut errors, inputs);
        Err(errors)
    }
}

fn load_all(inputs: &[Input], opts: &ReadOptions) -> Loaded {
    let load_opts = LoadOptions {
        default_namespace: opts
            .namespace
            .clone()
            .unwrap_or_else(|| "default".to_string()),
        ..Default::default()
    };
    let mut all = Loaded::default();
    for input in inputs {
        let loaded = load_str(&input.text, &input.name, &load_opts);
        all.resources.extend(loaded.resources);
        all.diagnostics.extend(loaded.diagnostics);
        all.skipped.extend(loaded.skipped);
        all.inputs += 1;
    }
    all
}

/// What the store needs beyond Istio's rules: a name (files are named after it), the
/// namespace `-n` asked for, and each resource once per apply.
pub(super) fn store_rules(resources: &[Resource], namespace: Option<&str>) -> Vec<Diagnostic> {
    let mut out = Vec::new();
    let mut seen: BTreeMap<ResourceKey, &Resource> = BTreeMap::new();
    for r in resources {
        let error = |msg: String| {
            Diagnostic::new(Level::Error, &r.origin.file, Some(r.origin.pos), msg)
                .with_resource(r.reference())
        };
        if r.name().is_empty() {
            out.push(error(
                "metadata.name is required: the store keeps resources by name (generateName is not supported)".to_string(),
            ));
            continue;
        }
        let named_ns = r
            .origin
            .node
            .get("metadata")
            .and_then(|m| m.get("namespace"))
            .and_then(|n| n.as_str());
        if let (Some(wanted), Some(named), true) = (namespace, named_ns, r.kind().info().namespaced)
            && wanted != named
        {
            out.push(error(format!(
                "the namespace from the provided object \"{named}\" does not match the namespace \"{wanted}\": pass -n {named}, or leave -n out"
            )));
        }
        let key = ResourceKey::of(r);
        if let Some(first) = seen.get(&key) {
            out.push(error(format!(
                "defined twice in this input (first at {}:{}); keep one",
                first.origin.file, first.origin.pos.line
            )));
        } else {
            seen.insert(key, r);
        }
    }
    out
}

/// Input order, then line and column, as `keel validate` prints.
fn sort(diags: &mut [Diagnostic], inputs: &[Input]) {
    let order = |file: &Arc<str>| {
        inputs
            .iter()
            .position(|i| i.name == *file)
            .unwrap_or(usize::MAX)
    };
    diags.sort_by_key(|d| (order(&d.file), d.line.unwrap_or(0), d.column.unwrap_or(0)));
}

#[cfg(test)]
mod tests {
    use super::*;
    use keel_config::Kind;

    fn input(name: &str, text: &str) -> Input {
        Input {
            name: Arc::from(name),
            text: text.to_string(),
        }
    }

    const VS: &str = "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: reviews}\nspec:\n  hosts: [reviews]\n  http:\n  - route:\n    - destination: {host: reviews}\n";

    #[test]
    fn apply_input_is_checked_as_a_whole() {
        let ok = read_for_apply(&[input("a.yaml", VS)], &ReadOptions::default());
        let (resources, notes) = ok.expect("valid");
        assert_eq!(resources.len(), 1);
        assert!(notes.is_empty());

        let bad = format!(
            "{VS}---\napiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {{name: r}}\nspec: {{}}\n---\n{VS}"
        );
        let errs =
            read_for_apply(&[input("b.yaml", &bad)], &ReadOptions::default()).expect_err("invalid");
        let text: Vec<String> = errs.iter().map(|d| d.to_string()).collect();
        assert!(
            text.iter().any(|t| t.starts_with(
                "b.yaml:13:1: error: DestinationRule default/r: spec.host: Required value"
            )),
            "{text:?}"
        );
        assert!(
            text.iter()
                .any(|t| t.contains("defined twice in this input (first at b.yaml:1)")),
            "{text:?}"
        );

        let opts = ReadOptions {
            namespace: Some("prod".into()),
            ..Default::default()
        };
        let other_ns = VS.replace("{name: reviews}", "{name: reviews, namespace: test}");
        let errs = read_for_apply(&[input("c.yaml", &other_ns)], &opts).expect_err("ns");
        assert!(errs[0].message.contains("pass -n test"), "{errs:?}");
        let (resources, _) = read_for_apply(&[input("c.yaml", VS)], &opts).expect("ns default");
        assert_eq!(resources[0].namespace(), "prod");
    }

    #[test]
    fn delete_needs_only_identities() {
        let invalid_spec = VS.replace("hosts: [reviews]", "hostz: [reviews]");
        let keys = read_for_delete(
            &[
                input("a.yaml", &invalid_spec),
                input(
                    "b.yaml",
                    "apiVersion: v1\nkind: Namespace\nmetadata: {name: prod}\n",
                ),
            ],
            &ReadOptions::default(),
        )
        .expect("identities");
        assert_eq!(
            keys,
            vec![
                ResourceKey::new(Kind::Namespace, "", "prod"),
                ResourceKey::new(Kind::VirtualService, "default", "reviews"),
            ]
        );
        let errs = read_for_delete(&[input("a.yaml", "a: [")], &ReadOptions::default())
            .expect_err("syntax");
        assert_eq!(errs[0].file.as_ref(), "a.yaml");
    }
}
