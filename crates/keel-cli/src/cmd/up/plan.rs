//! What `keel up` runs: one replica per Deployment pod, its local command, and the
//! WorkloadEntry that registers it.
//!
//! Registration: each replica is written to the store as a `WorkloadEntry` (address
//! `127.0.0.1`, the pod template's labels, `ports` mapping every port of the Services that
//! select it to the replica's sidecar inbound port). The compilers already select
//! WorkloadEntries for a Kubernetes Service that has no Endpoints, exactly as Istio does, so
//! no new registry path is needed; Kubernetes `Endpoints` can't be used because, as in
//! Kubernetes, they refuse loopback addresses. The entries live in the state directory's
//! store and are visible with `keel get workloadentries`.

use std::collections::BTreeMap;
use std::io::Write as _;

use keel_config::model::kube::pod::Container;
use keel_config::types::IntOrString;
use keel_config::{Resource, Spec};

use super::image::{AppCommand, RUN_ANNOTATION, map_image};

/// One local "pod".
#[derive(Debug, Clone, PartialEq)]
pub struct Replica {
    /// `<deployment>-<index>`: the pod name (`HOSTNAME`, node id `<pod>.<namespace>`).
    pub pod: String,
    pub deployment: String,
    pub namespace: String,
    pub labels: BTreeMap<String, String>,
    pub service_account: String,
    pub command: AppCommand,
    /// Literal `env` of the container.
    pub env: Vec<(String, String)>,
    /// The container declares ports: the app is expected to listen.
    pub listens: bool,
    /// The protocol of the app's port for the sidecar (`HTTP`, `TCP`, ...; empty: sniffed).
    pub protocol: String,
    /// Names (or numbers as text) of the selecting Services' ports.
    pub service_ports: Vec<String>,
    /// Runs with a sidecar: false when the pod template opts out as Istio's injector allows
    /// (`sidecar.istio.io/inject: "false"`, annotation or label), or its Namespace is
    /// labelled `istio-injection=disabled`.
    pub inject: bool,
}

/// The loopback ports one replica was given.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ports {
    pub app: u16,
    pub inbound: u16,
    pub outbound: u16,
    pub admin: u16,
}

/// Every Deployment's replicas, or every reason some can't run.
pub fn plan(
    resources: &[Resource],
    runs: &[(String, String)],
) -> Result<Vec<Replica>, Vec<String>> {
    let mut out = Vec::new();
    let mut errors = Vec::new();
    // Namespaces whose label turns injection off, as Istio's injector webhook skips them.
    let disabled: Vec<&str> = resources
        .iter()
        .filter(|r| {
            r.kind() == keel_config::Kind::Namespace
                && r.meta
                    .labels
                    .get("istio-injection")
                    .is_some_and(|v| v.eq_ignore_ascii_case("disabled"))
        })
        .map(|r| r.name())
        .collect();
    for r in resources {
        let Spec::Deployment(d) = &r.spec else {
            continue;
        };
        let template = &d.spec.template;
        let Some(container) = template.spec.containers.first() else {
            errors.push(format!(
                "deployment {}/{}: no containers",
                r.namespace(),
                r.name()
            ));
            continue;
        };
        if template.spec.containers.len() > 1 {
            let _ = writeln!(
                std::io::stderr(),
                "warning: deployment {}/{}: only the first container ({}) runs locally",
                r.namespace(),
                r.name(),
                container.name
            );
        }
        let annotation = template
            .metadata
            .annotations
            .get(RUN_ANNOTATION)
            .map(String::as_str);
        let command = match map_image(&container.image, annotation, runs, &container.args) {
            Ok(c) => c,
            Err(e) => {
                errors.push(format!("deployment {}/{}: {e}", r.namespace(), r.name()));
                continue;
            }
        };
        let labels = template.metadata.labels.clone();
        let opted_out = |m: &BTreeMap<String, String>| {
            m.get("sidecar.istio.io/inject")
                .is_some_and(|v| v.eq_ignore_ascii_case("false"))
        };
        let inject = !(opted_out(&template.metadata.annotations)
            || opted_out(&labels)
            || disabled.contains(&r.namespace()));
        let (service_ports, protocol) = services_of(resources, r.namespace(), &labels, container);
        let replicas = d.spec.replicas.unwrap_or(1).max(0);
        for i in 0..replicas {
            out.push(Replica {
                pod: format!("{}-{i}", r.name()),
                deployment: r.name().to_string(),
                namespace: r.namespace().to_string(),
                labels: labels.clone(),
                service_account: template.spec.service_account().to_string(),
                command: command.clone(),
                env: container
                    .env
                    .iter()
                    .filter_map(|e| e.value.clone().map(|v| (e.name.clone(), v)))
                    .collect(),
                listens: !container.ports.is_empty(),
                protocol: protocol.clone(),
                service_ports: service_ports.clone(),
                inject,
            });
        }
    }
    if errors.is_empty() {
        Ok(out)
    } else {
        Err(errors)
    }
}

/// The port keys of the Services selecting `labels` in `namespace`, and the protocol of the
/// one whose target is the container's first port.
fn services_of(
    resources: &[Resource],
    namespace: &str,
    labels: &BTreeMap<String, String>,
    container: &Container,
) -> (Vec<String>, String) {
    let mut keys = Vec::new();
    let mut protocol = String::new();
    let first = container.ports.first();
    for r in resources {
        let Spec::Service(s) = &r.spec else { continue };
        let sel = &s.spec.selector;
        if r.namespace() != namespace
            || sel.is_empty()
            || !sel.iter().all(|(k, v)| labels.get(k) == Some(v))
        {
            continue;
        }
        for p in &s.spec.ports {
            let key = if p.name.is_empty() {
                p.port.to_string()
            } else {
                p.name.clone()
            };
            if !keys.contains(&key) {
                keys.push(key);
            }
            let targets_first = match (&p.target_port, first) {
                (Some(IntOrString::Int(n)), Some(c)) => i64::from(c.container_port) == *n,
                (Some(IntOrString::String(n)), Some(c)) => c.name == *n,
                (None, Some(c)) => c.container_port == p.port,
                _ => false,
            };
            if protocol.is_empty() && (targets_first || first.is_none()) {
                let m = p.mesh_protocol();
                if m != keel_config::model::kube::protocol::MeshProtocol::Unsupported {
                    protocol = m.as_str().to_string();
                }
            }
        }
    }
    (keys, protocol)
}

/// The WorkloadEntry registering a replica: its sidecar's inbound port for every service port
/// (the app's own port for a workload without a sidecar).
pub fn workload_entry(r: &Replica, ports: Ports) -> serde_json::Value {
    let port = if r.inject { ports.inbound } else { ports.app };
    let port_map: serde_json::Map<String, serde_json::Value> = r
        .service_ports
        .iter()
        .map(|k| (k.clone(), serde_json::Value::from(port)))
        .collect();
    let mut spec = serde_json::json!({
        "address": "127.0.0.1",
        "labels": r.labels,
        "ports": port_map,
    });
    if !r.service_account.is_empty() {
        spec["serviceAccount"] = r.service_account.clone().into();
    }
    serde_json::json!({
        "apiVersion": "networking.istio.io/v1",
        "kind": "WorkloadEntry",
        "metadata": {
            "name": r.pod,
            "namespace": r.namespace,
            "labels": r.labels,
            "annotations": {"keel.dev/local-mesh": "true"},
        },
        "spec": spec,
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use keel_config::load::{LoadOptions, load_str};
    use keel_snapshot::compile::registry::Registry;

    const MANIFESTS: &str = r#"
apiVersion: v1
kind: Service
metadata: {name: httpbin, labels: {app: httpbin}}
spec:
  ports: [{name: http, port: 8000, targetPort: 8080}]
  selector: {app: httpbin}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: httpbin}
spec:
  replicas: 2
  selector: {matchLabels: {app: httpbin, version: v1}}
  template:
    metadata: {labels: {app: httpbin, version: v1}}
    spec:
      serviceAccountName: httpbin
      containers:
      - name: httpbin
        image: docker.io/mccutchen/go-httpbin:v2.15.0
        ports: [{containerPort: 8080}]
        env: [{name: GREETING, value: hi}]
"#;

    fn load(text: &str) -> Vec<Resource> {
        let l = load_str(text, "test.yaml", &LoadOptions::default());
        assert!(!l.has_errors(), "{:?}", l.diagnostics);
        l.resources
    }

    #[test]
    fn deployments_become_replicas_registered_at_their_sidecar() {
        let mut resources = load(MANIFESTS);
        let plan = plan(&resources, &[]).unwrap();
        assert_eq!(plan.len(), 2);
        assert_eq!(plan[1].pod, "httpbin-1");
        assert_eq!(plan[0].protocol, "HTTP");
        assert_eq!(plan[0].service_ports, vec!["http".to_string()]);
        assert_eq!(plan[0].env, vec![("GREETING".into(), "hi".into())]);
        for (i, r) in plan.iter().enumerate() {
            let ports = Ports {
                app: 1,
                inbound: 20000 + i as u16,
                outbound: 3,
                admin: 4,
            };
            let text = serde_json::to_string(&workload_entry(r, ports)).unwrap();
            resources.extend(load(&text));
        }
        let reg = Registry::build(&resources);
        let svc = reg
            .get("httpbin.default.svc.cluster.local")
            .expect("service");
        let port = svc.port(8000).expect("port").clone();
        let mut eps: Vec<String> = svc
            .endpoints(&port)
            .iter()
            .map(|e| format!("{:?}", e.address))
            .collect();
        eps.sort();
        assert_eq!(eps.len(), 2, "{eps:?}");
        assert!(eps[0].contains("127.0.0.1:20000"), "{eps:?}");
        assert!(eps[1].contains("127.0.0.1:20001"), "{eps:?}");
    }

    #[test]
    fn an_opted_out_workload_is_registered_at_its_app_port() {
        let text = MANIFESTS.replace(
            "metadata: {labels: {app: httpbin, version: v1}}",
            "metadata: {labels: {app: httpbin, version: v1}, annotations: {sidecar.istio.io/inject: \"false\"}}",
        );
        let plan = plan(&load(&text), &[]).unwrap();
        assert!(!plan[0].inject);
        let ports = Ports {
            app: 31000,
            inbound: 20000,
            outbound: 3,
            admin: 4,
        };
        let we = workload_entry(&plan[0], ports);
        assert_eq!(we["spec"]["ports"]["http"], 31000);
        assert!(super::plan(&load(MANIFESTS), &[]).unwrap()[0].inject);
    }

    #[test]
    fn a_namespace_labelled_istio_injection_disabled_runs_without_sidecars() {
        let disabled = "apiVersion: v1\nkind: Namespace\nmetadata: {name: default, labels: {istio-injection: disabled}}\n---\n";
        let plan = plan(&load(&format!("{disabled}{MANIFESTS}")), &[]).unwrap();
        assert!(plan.iter().all(|r| !r.inject), "{plan:?}");
        let other = disabled.replace("name: default", "name: legacy");
        let plan = super::plan(&load(&format!("{other}{MANIFESTS}")), &[]).unwrap();
        assert!(plan.iter().all(|r| r.inject), "{plan:?}");
    }

    #[test]
    fn unknown_images_are_reported_with_the_deployment() {
        let text = MANIFESTS.replace("docker.io/mccutchen/go-httpbin:v2.15.0", "nginx:1.25");
        let errors = plan(&load(&text), &[]).unwrap_err();
        assert!(
            errors[0].starts_with(
                "deployment default/httpbin: no local command for image \"nginx:1.25\""
            ),
            "{errors:?}"
        );
        assert!(plan(&load(&text), &[("nginx".into(), "nginx".into())]).is_ok());
    }
}
