//! `kind=endpoints` lists what Kubernetes' endpoints controller would maintain: one
//! `Endpoints` object per Service, computed from the registry the proxies route with (stored
//! Endpoints, else the Pods and WorkloadEntries the selector matches — in the local mesh, the
//! WorkloadEntries `keel up` registers at each sidecar's inbound port). So `keel get
//! endpoints` shows the address a client outside the mesh would reach, as Istio's tasks use
//! `kubectl get endpoints` for. Stored Endpoints with no Service are listed as stored.

use std::collections::BTreeMap;

use keel_config::{Kind, Resource, Spec};
use keel_snapshot::compile::registry::Registry;
use keel_snapshot::compile::{DEFAULT_DOMAIN, fqdn};
use serde_json::{Value, json};

use crate::store::{Filter, Snapshot};

/// The Endpoints objects `filter` selects (its kind is ignored).
pub fn list(snapshot: &Snapshot, filter: &Filter) -> Vec<Value> {
    let resources: Vec<Resource> = snapshot
        .resources
        .values()
        .map(|s| s.resource.clone())
        .collect();
    let registry = Registry::build(&resources);
    let wanted = |ns: &str, name: &str| {
        filter.namespace.as_deref().is_none_or(|n| n == ns)
            && filter.name.as_deref().is_none_or(|n| n == name)
    };
    let mut out = Vec::new();
    let mut services = Vec::new();
    for stored in snapshot.resources.values() {
        let r = &stored.resource;
        if let Spec::Service(_) = &r.spec {
            services.push((r.namespace().to_string(), r.name().to_string()));
            if wanted(r.namespace(), r.name()) {
                out.push(computed(&registry, r, &stored.object));
            }
        }
    }
    // Stored Endpoints without a Service: as stored.
    for stored in snapshot.resources.values() {
        let r = &stored.resource;
        if r.kind() == Kind::Endpoints
            && wanted(r.namespace(), r.name())
            && !services
                .iter()
                .any(|(ns, n)| ns == r.namespace() && n == r.name())
        {
            out.push(stored.object.clone());
        }
    }
    out
}

/// The Endpoints of Service `svc`: addresses with the same ports share a subset, as
/// Kubernetes groups them.
fn computed(registry: &Registry, svc: &Resource, object: &Value) -> Value {
    let host = fqdn(svc.name(), svc.namespace(), DEFAULT_DOMAIN);
    let mut subsets: BTreeMap<Vec<(String, u16, String)>, Vec<Value>> = BTreeMap::new();
    if let Some(service) = registry.get(&host) {
        for i in &service.instances {
            let ports: Vec<(String, u16, String)> = service
                .ports
                .iter()
                .map(|p| {
                    let number = i.ports.get(&p.name).copied().unwrap_or(p.number);
                    // Kubernetes' transport protocol, not Istio's application protocol.
                    let transport = if p.protocol == "UDP" { "UDP" } else { "TCP" };
                    (p.name.clone(), number, transport.to_string())
                })
                .collect();
            let mut address = json!({ "ip": i.address });
            if !i.workload.is_empty() {
                address["targetRef"] = json!({
                    "kind": "WorkloadEntry",
                    "name": i.workload,
                    "namespace": i.namespace,
                });
            }
            subsets.entry(ports).or_default().push(address);
        }
    }
    let subsets: Vec<Value> = subsets
        .into_iter()
        .map(|(ports, addresses)| {
            json!({
                "addresses": addresses,
                "ports": ports
                    .into_iter()
                    .map(|(name, port, protocol)| {
                        let mut p = json!({ "port": port, "protocol": protocol });
                        if !name.is_empty() && name.parse::<u16>().is_err() {
                            p["name"] = json!(name);
                        }
                        p
                    })
                    .collect::<Vec<_>>(),
            })
        })
        .collect();
    let mut meta = json!({
        "name": svc.name(),
        "namespace": svc.namespace(),
    });
    for field in ["creationTimestamp", "labels"] {
        if let Some(v) = object["metadata"].get(field) {
            meta[field] = v.clone();
        }
    }
    let mut out = json!({
        "apiVersion": "v1",
        "kind": "Endpoints",
        "metadata": meta,
    });
    if !subsets.is_empty() {
        out["subsets"] = json!(subsets);
    }
    out
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use crate::store::{ConfigStore, DirStore, DirStoreOptions, WriteOptions};

    #[test]
    fn each_service_gets_the_endpoints_the_registry_computes() {
        let dir = tempfile::tempdir().unwrap();
        let store = DirStore::open(dir.path(), DirStoreOptions::default())
            .unwrap()
            .0;
        let text = r#"
apiVersion: v1
kind: Service
metadata: {name: httpbin, namespace: foo}
spec:
  selector: {app: httpbin}
  ports: [{name: http, port: 8000, targetPort: 8080}, {name: tcp-echo, port: 9000}]
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {name: httpbin-0, namespace: foo}
spec: {address: 127.0.0.1, labels: {app: httpbin}, ports: {http: 41000, tcp-echo: 41000}}
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {name: httpbin-1, namespace: foo}
spec: {address: 127.0.0.1, labels: {app: httpbin}, ports: {http: 42000, tcp-echo: 42001}}
---
apiVersion: v1
kind: Service
metadata: {name: empty, namespace: bar}
spec:
  selector: {app: nobody}
  ports: [{port: 80}]
"#;
        let loaded = keel_config::load_str(text, "t.yaml", &Default::default());
        assert!(!loaded.has_errors(), "{:?}", loaded.diagnostics);
        store
            .apply(loaded.resources, WriteOptions::default())
            .unwrap();
        let all = list(&store.snapshot(), &Filter::default());
        assert_eq!(all.len(), 2);
        let foo = list(
            &store.snapshot(),
            &Filter {
                namespace: Some("foo".into()),
                ..Default::default()
            },
        );
        assert_eq!(foo.len(), 1);
        let ep = &foo[0];
        assert_eq!(ep["metadata"]["name"], "httpbin");
        let subsets = ep["subsets"].as_array().unwrap();
        assert_eq!(
            subsets.len(),
            2,
            "different port sets, different subsets: {ep}"
        );
        let one = subsets
            .iter()
            .find(|s| s["addresses"][0]["targetRef"]["name"] == "httpbin-0")
            .unwrap();
        assert_eq!(one["addresses"][0]["ip"], "127.0.0.1");
        assert_eq!(
            one["ports"],
            serde_json::json!([
                {"name": "http", "port": 41000, "protocol": "TCP"},
                {"name": "tcp-echo", "port": 41000, "protocol": "TCP"},
            ])
        );
        let empty = list(
            &store.snapshot(),
            &Filter {
                namespace: Some("bar".into()),
                ..Default::default()
            },
        );
        assert!(empty[0].get("subsets").is_none(), "{}", empty[0]);
    }
}
