//! PeerAuthentication resolved for a workload, with Istio's precedence: the mesh-wide policy
//! (root namespace, no selector), overridden by the namespace's (no selector), overridden by
//! the workload's (selector matching its labels); UNSET inherits from the level above, and
//! with nothing set the mode is PERMISSIVE. `portLevelMtls` counts only on a workload-level
//! policy (validation rejects it elsewhere), and an UNSET port inherits the workload's mode.
//! When several policies compete at one level, the oldest wins (creation time, then name),
//! as in Istio.

use std::collections::BTreeMap;

use keel_config::model::security::peer_authentication::{
    MtlsMode as IstioMode, PeerAuthentication,
};
use keel_config::{Resource, Spec};

use crate::listener::{MtlsMode, PeerAuthn};

/// Every PeerAuthentication, ready to resolve for any workload.
pub struct PeerAuthnIndex<'a> {
    /// (resource, policy), oldest first.
    policies: Vec<(&'a Resource, &'a PeerAuthentication)>,
    root_namespace: String,
}

fn resolved(mode: IstioMode) -> Option<MtlsMode> {
    match mode {
        IstioMode::Unset => None,
        IstioMode::Disable => Some(MtlsMode::Disable),
        IstioMode::Permissive => Some(MtlsMode::Permissive),
        IstioMode::Strict => Some(MtlsMode::Strict),
    }
}

fn mode_of(p: &PeerAuthentication) -> Option<MtlsMode> {
    p.mtls.as_ref().and_then(|m| resolved(m.mode))
}

impl<'a> PeerAuthnIndex<'a> {
    pub fn new(resources: &'a [Resource], root_namespace: &str) -> Self {
        let mut policies: Vec<(&Resource, &PeerAuthentication)> = resources
            .iter()
            .filter_map(|r| match &r.spec {
                Spec::PeerAuthentication(p) => Some((r, &**p)),
                _ => None,
            })
            .collect();
        // RFC 3339 timestamps in UTC order as text; a policy without one sorts first.
        policies.sort_by(|(a, _), (b, _)| {
            (a.meta.creation_timestamp.as_deref(), a.name())
                .cmp(&(b.meta.creation_timestamp.as_deref(), b.name()))
        });
        PeerAuthnIndex {
            policies,
            root_namespace: root_namespace.to_string(),
        }
    }

    /// Whether any PeerAuthentication exists (none: every workload is PERMISSIVE).
    pub fn is_empty(&self) -> bool {
        self.policies.is_empty()
    }

    /// The oldest policy without a selector in `namespace`.
    fn namespace_wide(&self, namespace: &str) -> Option<&'a PeerAuthentication> {
        self.policies
            .iter()
            .find(|(r, p)| {
                r.namespace() == namespace
                    && p.selector
                        .as_ref()
                        .is_none_or(|s| s.match_labels.is_empty())
            })
            .map(|(_, p)| *p)
    }

    /// The effective policy of a workload in `namespace` with `labels`.
    pub fn effective(&self, namespace: &str, labels: &BTreeMap<String, String>) -> PeerAuthn {
        let mesh = self.namespace_wide(&self.root_namespace).and_then(mode_of);
        let ns = (namespace != self.root_namespace)
            .then(|| self.namespace_wide(namespace).and_then(mode_of))
            .flatten();
        let workload = self
            .policies
            .iter()
            .find(|(r, p)| {
                r.namespace() == namespace
                    && p.selector.as_ref().is_some_and(|s| {
                        !s.match_labels.is_empty()
                            && s.match_labels.iter().all(|(k, v)| labels.get(k) == Some(v))
                    })
            })
            .map(|(_, p)| *p);
        let mode = workload
            .and_then(mode_of)
            .or(ns)
            .or(mesh)
            .unwrap_or(MtlsMode::Permissive);
        let ports = workload
            .and_then(|p| p.port_level_mtls.as_ref())
            .map(|ports| {
                ports
                    .iter()
                    .filter_map(|(port, m)| {
                        Some((u16::try_from(*port).ok()?, resolved(m.mode).unwrap_or(mode)))
                    })
                    .collect()
            })
            .unwrap_or_default();
        PeerAuthn { mode, ports }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use keel_config::{LoadOptions, load_str};

    fn pa(ns: &str, name: &str, created: &str, spec: &str) -> String {
        format!(
            "apiVersion: security.istio.io/v1\nkind: PeerAuthentication\nmetadata: {{name: {name}, namespace: {ns}, creationTimestamp: \"{created}\"}}\nspec: {spec}\n---\n"
        )
    }

    fn load(text: &str) -> Vec<Resource> {
        let l = load_str(text, "pa.yaml", &LoadOptions::default());
        assert!(!l.has_errors(), "{:?}", l.diagnostics);
        l.resources
    }

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn istios_precedence_mesh_then_namespace_then_workload() {
        use MtlsMode::*;
        let t = "2024-01-01T00:00:00Z";
        let text = [
            pa("istio-system", "default", t, "{mtls: {mode: STRICT}}"),
            pa("foo", "default", t, "{mtls: {mode: PERMISSIVE}}"),
            pa(
                "foo",
                "httpbin",
                t,
                "{selector: {matchLabels: {app: httpbin}}, mtls: {mode: STRICT}, portLevelMtls: {8080: {mode: DISABLE}, 9000: {mode: UNSET}}}",
            ),
            pa("bar", "unset", t, "{mtls: {mode: UNSET}}"),
            pa("baz", "sel", t, "{selector: {matchLabels: {app: x}}}"),
        ]
        .concat();
        let resources = load(&text);
        let idx = PeerAuthnIndex::new(&resources, "istio-system");
        type Row<'a> = (
            &'a str,
            &'a [(&'a str, &'a str)],
            MtlsMode,
            &'a [(u16, MtlsMode)],
        );
        let table: &[Row] = &[
            // The namespace's PERMISSIVE overrides the mesh's STRICT.
            ("foo", &[("app", "sleep")], Permissive, &[]),
            // The workload's STRICT overrides both; its ports override it, UNSET inherits.
            (
                "foo",
                &[("app", "httpbin")],
                Strict,
                &[(8080, Disable), (9000, Strict)],
            ),
            // UNSET at the namespace inherits the mesh's.
            ("bar", &[], Strict, &[]),
            // A workload policy without mtls inherits too.
            ("baz", &[("app", "x")], Strict, &[]),
            // A namespace without policy: the mesh's.
            ("other", &[], Strict, &[]),
        ];
        for (ns, l, mode, ports) in table {
            let got = idx.effective(ns, &labels(l));
            let want = PeerAuthn {
                mode: *mode,
                ports: ports.iter().copied().collect(),
            };
            assert_eq!(got, want, "{ns} {l:?}");
        }
        assert_eq!(
            idx.effective("foo", &labels(&[("app", "httpbin")]))
                .mode_for(8080),
            Disable
        );
    }

    #[test]
    fn nothing_set_is_permissive_and_the_oldest_policy_wins() {
        let none = load("apiVersion: v1\nkind: Namespace\nmetadata: {name: foo}\n");
        let idx = PeerAuthnIndex::new(&none, "istio-system");
        assert_eq!(
            idx.effective("foo", &BTreeMap::new()).mode,
            MtlsMode::Permissive
        );
        let text = [
            pa(
                "foo",
                "b-newer",
                "2024-02-01T00:00:00Z",
                "{mtls: {mode: DISABLE}}",
            ),
            pa(
                "foo",
                "a-older",
                "2024-01-01T00:00:00Z",
                "{mtls: {mode: STRICT}}",
            ),
        ]
        .concat();
        let resources = load(&text);
        let idx = PeerAuthnIndex::new(&resources, "istio-system");
        assert_eq!(
            idx.effective("foo", &BTreeMap::new()).mode,
            MtlsMode::Strict
        );
    }

    #[test]
    fn a_selector_policy_in_the_root_namespace_is_only_for_its_workloads() {
        let text = pa(
            "istio-system",
            "gw",
            "2024-01-01T00:00:00Z",
            "{selector: {matchLabels: {app: gw}}, mtls: {mode: STRICT}}",
        );
        let resources = load(&text);
        let idx = PeerAuthnIndex::new(&resources, "istio-system");
        assert_eq!(
            idx.effective("foo", &labels(&[("app", "gw")])).mode,
            MtlsMode::Permissive
        );
        assert_eq!(
            idx.effective("istio-system", &labels(&[("app", "gw")]))
                .mode,
            MtlsMode::Strict
        );
    }
}
