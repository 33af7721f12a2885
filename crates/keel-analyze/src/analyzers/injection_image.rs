//! `injection.ImageAnalyzer`: pods running another proxy image than the injector would inject
//! now (typically pods left over from before a control-plane upgrade).
//!
//! - IST0158 PodsIstioProxyImageMismatchInNamespace, on the Namespace: some pods of an
//!   injected namespace have an `istio-proxy` container (or native-sidecar init container)
//!   whose image is neither the injector's image nor that image with the pod's image-type
//!   suffix (`…:1.24.0-distroless`). The pods are listed in input order.
//!
//! The injector's image comes from the `values` JSON of the ConfigMaps named
//! `istio-sidecar-injector*` (any namespace): `global.proxy.image` when it contains a `/`,
//! else `<global.hub>/<global.proxy.image>:<global.tag>`. A namespace is injected with label
//! `istio.io/rev: <rev>` (ConfigMap `istio-sidecar-injector-<rev>`, or the plain name for
//! `default`) or `istio-injection: enabled` (the plain name). Pods with the
//! `sidecar.istio.io/proxyImage` annotation choose their own image and are skipped, as are
//! pods whose injector ConfigMap is not in the input.
//!
//! The image type is resolved like Istio's `EffectiveProxyConfigResolver`: the mesh's
//! `defaultConfig.image.imageType`, overridden by a ProxyConfig in the root namespace, then
//! one without selector in the pod's namespace, then ones whose selector labels the pod has,
//! then the pod's `proxy.istio.io/config` annotation; `default` means no suffix.
//!
//! Where Keel differs: a ConfigMap whose `values` can't be read gives no expected image and
//! is ignored (Istio then expects the image `"/:"` and reports every pod); several
//! matching workload ProxyConfigs apply in input order (Istio's order is random), and only
//! those of the pod's own namespace (Istio compares namespace prefixes). Pods Keel derives
//! from workload templates are not checked.

use std::collections::BTreeMap;

use keel_config::Resource;
use keel_config::model::kube::ConfigMap;
use keel_config::model::networking::ProxyConfig;
use serde_json::Value;

use super::Analyzer;
use super::util_an2::INJECTION_LABEL;
use crate::context::AnalysisContext;
use crate::messages::{Message, PODS_ISTIO_PROXY_IMAGE_MISMATCH_IN_NAMESPACE, list};

const INJECTOR_CONFIG_MAP: &str = "istio-sidecar-injector";
const REVISION_LABEL: &str = "istio.io/rev";
const PROXY_IMAGE_ANNOTATION: &str = "sidecar.istio.io/proxyImage";
const PROXY_CONFIG_ANNOTATION: &str = "proxy.istio.io/config";

pub struct ImageAnalyzer;

/// A JSON object member as Go's `encoding/json` finds it: exact name first, else any
/// case-insensitive match.
fn member<'a>(v: &'a Value, key: &str) -> Option<&'a Value> {
    let obj = v.as_object()?;
    obj.get(key).or_else(|| {
        obj.iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(key))
            .map(|(_, v)| v)
    })
}

/// A string member; `None` if it is present with another type (Go's unmarshal fails).
fn string_member(v: &Value, key: &str) -> Option<String> {
    match member(v, key) {
        None | Some(Value::Null) => Some(String::new()),
        Some(Value::String(s)) => Some(s.clone()),
        Some(_) => None,
    }
}

/// An object member (absent or null reads as empty); `None` if it has another type.
fn object_member<'a>(v: &'a Value, key: &str) -> Option<Option<&'a Value>> {
    match member(v, key) {
        None | Some(Value::Null) => Some(None),
        Some(o @ Value::Object(_)) => Some(Some(o)),
        Some(_) => None,
    }
}

/// Istio's `GetIstioProxyImage`: the image the injector configured in `cm` injects, or
/// `None` if its `values` can't be read.
pub fn injector_proxy_image(cm: &ConfigMap) -> Option<String> {
    let values: Value = serde_json::from_str(cm.get("values")?).ok()?;
    if !values.is_object() {
        return None;
    }
    let empty = Value::Object(Default::default());
    let global = object_member(&values, "global")?.unwrap_or(&empty);
    let hub = string_member(global, "hub")?;
    let tag = string_member(global, "tag")?;
    let proxy = object_member(global, "proxy")?.unwrap_or(&empty);
    let image = string_member(proxy, "image")?;
    Some(if image.contains('/') {
        image
    } else {
        format!("{hub}/{image}:{tag}")
    })
}

fn config_map_name(revision: &str) -> String {
    if revision.is_empty() || revision == "default" {
        INJECTOR_CONFIG_MAP.to_string()
    } else {
        format!("{INJECTOR_CONFIG_MAP}-{revision}")
    }
}

fn image_type(pc: &ProxyConfig) -> Option<&str> {
    pc.image
        .as_ref()
        .map(|i| i.image_type.as_str())
        .filter(|t| !t.is_empty())
}

/// The proxy image flavour for a pod (see the module documentation).
struct ImageTypeResolver<'a> {
    mesh_default: &'a str,
    root: Option<&'a ProxyConfig>,
    namespace: BTreeMap<&'a str, &'a ProxyConfig>,
    workload: Vec<(&'a Resource, &'a ProxyConfig)>,
}

impl<'a> ImageTypeResolver<'a> {
    fn new(ctx: &AnalysisContext<'a>, mesh_default: &'a str) -> Self {
        let mut resolver = ImageTypeResolver {
            mesh_default,
            root: None,
            namespace: BTreeMap::new(),
            workload: Vec::new(),
        };
        for (r, pc) in ctx.proxy_configs() {
            if r.namespace() == ctx.mesh.root_namespace {
                resolver.root = Some(pc);
            } else if pc.selector.is_none() {
                resolver.namespace.insert(r.namespace(), pc);
            } else {
                resolver
                    .workload
                    .retain(|(w, _)| w.name() != r.name() || w.namespace() != r.namespace());
                resolver.workload.push((r, pc));
            }
        }
        resolver
    }

    fn image_type(&self, pod: &Resource) -> String {
        let mut variant = self.mesh_default;
        if let Some(t) = self.root.and_then(image_type) {
            variant = t;
        }
        if let Some(t) = self
            .namespace
            .get(pod.namespace())
            .and_then(|pc| image_type(pc))
        {
            variant = t;
        }
        for (r, pc) in &self.workload {
            let selected = pc.selector.as_ref().is_some_and(|s| {
                s.match_labels
                    .iter()
                    .all(|(k, v)| pod.meta.labels.get(k) == Some(v))
            });
            if r.namespace() == pod.namespace()
                && selected
                && let Some(t) = image_type(pc)
            {
                variant = t;
            }
        }
        let annotated = pod
            .meta
            .annotations
            .get(PROXY_CONFIG_ANNOTATION)
            .and_then(|a| annotation_image_type(a));
        let variant = annotated.unwrap_or_else(|| variant.to_string());
        if variant == "default" {
            String::new()
        } else {
            variant
        }
    }
}

/// `image.imageType` of a `proxy.istio.io/config` annotation (ProxyConfig as YAML).
fn annotation_image_type(text: &str) -> Option<String> {
    use keel_config::yaml::{Limits, load_documents};
    let (docs, err) = load_documents(text, Limits::default());
    if err.is_some() {
        return None;
    }
    let v = docs.first()?.root.to_json();
    v.pointer("/image/imageType")
        .and_then(Value::as_str)
        .filter(|t| !t.is_empty())
        .map(str::to_string)
}

impl Analyzer for ImageAnalyzer {
    fn name(&self) -> &'static str {
        "injection.ImageAnalyzer"
    }

    fn description(&self) -> &'static str {
        "Checks the image of auto-injection configured with the running proxies on pods"
    }

    fn analyze(&self, ctx: &AnalysisContext<'_>, out: &mut Vec<Message>) {
        let mut images: BTreeMap<&str, String> = BTreeMap::new();
        for (r, cm) in ctx.config_maps() {
            if r.name().starts_with(INJECTOR_CONFIG_MAP)
                && let Some(image) = injector_proxy_image(cm)
            {
                images.insert(r.name(), image);
            }
        }
        if images.is_empty() {
            return;
        }

        // Injected namespaces, with the injector ConfigMap each uses.
        let mut injected: Vec<(&Resource, String)> = Vec::new();
        for (r, _) in ctx.namespaces() {
            let labels = &r.meta.labels;
            let cm = match labels.get(REVISION_LABEL) {
                Some(rev) => config_map_name(rev),
                None if labels.get(INJECTION_LABEL).is_some_and(|v| v == "enabled") => {
                    config_map_name("")
                }
                None => continue,
            };
            injected.retain(|(n, _)| n.name() != r.name());
            injected.push((r, cm));
        }

        let resolver = ImageTypeResolver::new(ctx, &ctx.mesh.default_image_type);
        let mut mismatched: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
        for (r, pod) in ctx.pods() {
            if crate::workload_pods::is_template_pod(r) {
                continue;
            }
            let Some((_, cm)) = injected.iter().find(|(n, _)| n.name() == r.namespace()) else {
                continue;
            };
            if r.meta
                .annotations
                .get(PROXY_IMAGE_ANNOTATION)
                .is_some_and(|a| !a.is_empty())
            {
                continue;
            }
            let Some(expected) = images.get(cm.as_str()) else {
                continue;
            };
            let flavoured = format!("{expected}-{}", resolver.image_type(r));
            let containers = pod.spec.containers.iter().chain(&pod.spec.init_containers);
            for c in containers.filter(|c| c.name == "istio-proxy") {
                if c.image != *expected && c.image != flavoured {
                    mismatched.entry(r.namespace()).or_default().push(r.name());
                }
            }
        }

        for (ns, r) in injected.iter().map(|(r, _)| (r.name(), *r)) {
            if let Some(pods) = mismatched.get(ns) {
                out.push(ctx.message(
                    PODS_ISTIO_PROXY_IMAGE_MISMATCH_IN_NAMESPACE,
                    r,
                    None,
                    format!(
                        "The Istio proxy images of the pods running in the namespace do not match the image defined in the injection configuration (pod names: {}). This often happens after upgrading the Istio control-plane and can be fixed by redeploying the pods.",
                        list(pods)
                    ),
                ));
            }
        }
    }
}
