//! What `keel up` runs: one replica per Deployment pod, a process for each of its containers,
//! and the WorkloadEntry that registers it.
//!
//! Ports: every port of the pod (each declared `containerPort`, and each port a selecting
//! Service targets that no container declares) gets a loopback port of its own. A container's
//! `PORT` is its first port (the first container, declaring none: the first port only the
//! Services name, or a spare one), and every container sees `PORT_<containerPort>` for each.
//! Each port a Service targets gets a sidecar inbound listener of its own, forwarding to that
//! port with the Service port's protocol.
//!
//! Registration: each replica is written to the store as a `WorkloadEntry` (address
//! `127.0.0.1`, the pod template's labels, `ports` mapping each port of the Services that
//! select it to the sidecar inbound port of its target). The compilers already select
//! WorkloadEntries for a Kubernetes Service that has no Endpoints, exactly as Istio does, so
//! no new registry path is needed; Kubernetes `Endpoints` can't be used because, as in
//! Kubernetes, they refuse loopback addresses. The entries live in the state directory's
//! store and are visible with `keel get workloadentries`.

use std::collections::BTreeMap;

use keel_config::model::kube::pod::Container;
use keel_config::types::IntOrString;
use keel_config::{Resource, Spec};
use keel_snapshot::compile::registry::WORKLOAD_NAME_LABEL;
use keel_snapshot::compile::routes::TLS_MODE_LABEL;

use super::image::{AppCommand, Program, RUN_ANNOTATION, map_image};
pub use super::ports::Ports;

/// One local "pod".
#[derive(Debug, Clone, PartialEq)]
pub struct Replica {
    /// `<deployment>-<index>`: the pod name (`HOSTNAME`, node id `<pod>.<namespace>`).
    pub pod: String,
    pub deployment: String,
    pub namespace: String,
    pub labels: BTreeMap<String, String>,
    pub service_account: String,
    /// The pod template's containers, each run as a process of its own.
    pub containers: Vec<AppContainer>,
    /// Every port of the pod: the containers' declared ports in order, then those only the
    /// Services target.
    pub ports: Vec<PodPort>,
    /// The ports of the Services selecting the pod.
    pub service_ports: Vec<ServicePort>,
    /// Runs with a sidecar: false when the pod template opts out as Istio's injector allows
    /// (`sidecar.istio.io/inject: "false"`, annotation or label), or its Namespace is
    /// labelled `istio-injection=disabled`.
    pub inject: bool,
}

/// One container of a pod.
#[derive(Debug, Clone, PartialEq)]
pub struct AppContainer {
    pub name: String,
    pub command: AppCommand,
    /// Literal `env` of the container.
    pub env: Vec<(String, String)>,
    /// Its declared `containerPort`s, in order: it is expected to listen on the first.
    pub ports: Vec<u16>,
}

/// A port of the pod, numbered as in the manifests.
#[derive(Debug, Clone, PartialEq)]
pub struct PodPort {
    /// The `containerPort`, or a Service's target port no container declares; 0 for the spare
    /// port of a first container that has none (its `PORT`).
    pub port: u16,
    /// The protocol of the first Service port targeting it, for the sidecar (`HTTP`, `TCP`,
    /// ...; empty: sniffed).
    pub protocol: String,
    /// A Service targets it: the sidecar has an inbound listener for it.
    pub targeted: bool,
}

/// A port of a Service selecting the pod.
#[derive(Debug, Clone, PartialEq)]
pub struct ServicePort {
    /// The WorkloadEntry's port key: the port's name, or its number when unnamed.
    pub key: String,
    /// The pod port it targets (`targetPort` resolved, by number or container-port name).
    pub target: u16,
}

impl Replica {
    /// The index in `ports` of container `i`'s `PORT`: its first declared port; for the first
    /// container declaring none, the first port no container declares.
    pub fn port_of(&self, i: usize) -> Option<usize> {
        let c = self.containers.get(i)?;
        match c.ports.first() {
            Some(p) => self.ports.iter().position(|q| q.port == *p),
            None if i == 0 => {
                let declared = |n: u16| self.containers.iter().any(|c| c.ports.contains(&n));
                self.ports.iter().position(|q| !declared(q.port))
            }
            None => None,
        }
    }

    /// The indexes in `ports` the sidecar has an inbound listener for, in order: the targeted
    /// ports, else the first container's port (as before Services name any).
    pub fn inbound_targets(&self) -> Vec<usize> {
        let targeted: Vec<usize> = (0..self.ports.len())
            .filter(|i| self.ports[*i].targeted)
            .collect();
        if targeted.is_empty() {
            self.port_of(0).into_iter().collect()
        } else {
            targeted
        }
    }

    /// A container runs `keel-sample`.
    pub fn needs_sample(&self) -> bool {
        self.containers
            .iter()
            .any(|c| matches!(c.command.program, Program::Sample(_)))
    }

    /// The log file (in the logs directory) of container `i`: `POD.log` for the first, as
    /// `kubectl logs` defaults to it, `POD.NAME.log` for the others. `POD.proxy.log` is the
    /// sidecar's, so a container called `proxy` logs to `POD.proxy-container.log`.
    pub fn log_file(&self, i: usize) -> String {
        if i == 0 {
            return format!("{}.log", self.pod);
        }
        match self.containers.get(i).map(|c| c.name.as_str()) {
            Some("proxy") => format!("{}.proxy-container.log", self.pod),
            Some(name) => format!("{}.{name}.log", self.pod),
            None => format!("{}.{i}.log", self.pod),
        }
    }
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
        let name = format!("deployment {}/{}", r.namespace(), r.name());
        if template.spec.containers.is_empty() {
            errors.push(format!("{name}: no containers"));
            continue;
        }
        let annotations = &template.metadata.annotations;
        let mut containers = Vec::new();
        for (i, c) in template.spec.containers.iter().enumerate() {
            match app_container(c, i, annotations, runs) {
                Ok(c) => containers.push(c),
                Err(e) if template.spec.containers.len() > 1 => {
                    errors.push(format!("{name}: container {}: {e}", c.name))
                }
                Err(e) => errors.push(format!("{name}: {e}")),
            }
        }
        if containers.len() != template.spec.containers.len() {
            continue;
        }
        let labels = template.metadata.labels.clone();
        let opted_out = |m: &BTreeMap<String, String>| {
            m.get("sidecar.istio.io/inject")
                .is_some_and(|v| v.eq_ignore_ascii_case("false"))
        };
        let inject =
            !(opted_out(annotations) || opted_out(&labels) || disabled.contains(&r.namespace()));
        let (ports, service_ports) =
            pod_ports(resources, r.namespace(), &labels, &template.spec.containers);
        let replicas = d.spec.replicas.unwrap_or(1).max(0);
        for i in 0..replicas {
            out.push(Replica {
                pod: format!("{}-{i}", r.name()),
                deployment: r.name().to_string(),
                namespace: r.namespace().to_string(),
                labels: labels.clone(),
                service_account: template.spec.service_account().to_string(),
                containers: containers.clone(),
                ports: ports.clone(),
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

/// A container's local command: the annotation `keel.dev/run.NAME` (or `keel.dev/run` for the
/// first container), `--run`, or a built-in sample.
fn app_container(
    c: &Container,
    i: usize,
    annotations: &BTreeMap<String, String>,
    runs: &[(String, String)],
) -> Result<AppContainer, String> {
    let annotation = annotations
        .get(&format!("{RUN_ANNOTATION}.{}", c.name))
        .or_else(|| annotations.get(RUN_ANNOTATION).filter(|_| i == 0))
        .map(String::as_str);
    let command = map_image(&c.image, annotation, runs, &c.args)?;
    Ok(AppContainer {
        name: c.name.clone(),
        command,
        env: c
            .env
            .iter()
            .filter_map(|e| e.value.clone().map(|v| (e.name.clone(), v)))
            .collect(),
        ports: c
            .ports
            .iter()
            .filter_map(|p| u16::try_from(p.container_port).ok().filter(|n| *n > 0))
            .collect(),
    })
}

/// The pod's ports (declared ones first, then those only the Services target, with the
/// protocol of the first Service port targeting each) and the ports of the Services selecting
/// `labels` in `namespace`, resolved to their targets as Kubernetes resolves `targetPort`: a
/// number, a container port's name, or (absent) the port itself.
fn pod_ports(
    resources: &[Resource],
    namespace: &str,
    labels: &BTreeMap<String, String>,
    containers: &[Container],
) -> (Vec<PodPort>, Vec<ServicePort>) {
    let mut ports: Vec<PodPort> = Vec::new();
    let declared = containers.iter().flat_map(|c| &c.ports);
    for n in declared
        .clone()
        .filter_map(|p| u16::try_from(p.container_port).ok())
    {
        if n > 0 && !ports.iter().any(|p| p.port == n) {
            ports.push(PodPort {
                port: n,
                protocol: String::new(),
                targeted: false,
            });
        }
    }
    let mut keys: Vec<ServicePort> = Vec::new();
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
            let target = match &p.target_port {
                Some(IntOrString::Int(n)) if *n > 0 => *n,
                Some(IntOrString::String(name)) if !name.is_empty() => declared
                    .clone()
                    .find(|c| c.name == *name)
                    .map_or(i64::from(p.port), |c| i64::from(c.container_port)),
                _ => i64::from(p.port),
            };
            let Some(target) = u16::try_from(target).ok().filter(|n| *n > 0) else {
                continue;
            };
            let at = match ports.iter().position(|q| q.port == target) {
                Some(at) => at,
                None => {
                    ports.push(PodPort {
                        port: target,
                        protocol: String::new(),
                        targeted: false,
                    });
                    ports.len() - 1
                }
            };
            let port = &mut ports[at];
            port.targeted = true;
            let m = p.mesh_protocol();
            if port.protocol.is_empty()
                && m != keel_config::model::kube::protocol::MeshProtocol::Unsupported
            {
                port.protocol = m.as_str().to_string();
            }
            let key = if p.name.is_empty() {
                p.port.to_string()
            } else {
                p.name.clone()
            };
            if !keys.iter().any(|k| k.key == key) {
                keys.push(ServicePort { key, target });
            }
        }
    }
    // The first container always has a `PORT`, as every app had before pods had ports.
    let is_declared = |n: u16| {
        declared
            .clone()
            .any(|c| i64::from(c.container_port) == i64::from(n))
    };
    let first_declares = containers.first().is_some_and(|c| !c.ports.is_empty());
    if !first_declares && ports.iter().all(|p| is_declared(p.port)) {
        ports.push(PodPort {
            port: 0,
            protocol: String::new(),
            targeted: false,
        });
    }
    (ports, keys)
}

/// The WorkloadEntry registering a replica: each service port at the sidecar inbound port of
/// its target (the app's own port for a workload without a sidecar).
pub fn workload_entry(r: &Replica, ports: &Ports) -> serde_json::Value {
    let port_map: serde_json::Map<String, serde_json::Value> = r
        .service_ports
        .iter()
        .filter_map(|k| Some((k.key.clone(), ports.endpoint(r, k.target)?.into())))
        .collect();
    // As Istio's injector labels pods with a sidecar: clients' auto mTLS reads it.
    let mut labels = r.labels.clone();
    if r.inject {
        labels.insert(TLS_MODE_LABEL.into(), "istio".into());
    }
    // Metrics name the Deployment, as for Kubernetes pods, not the pod.
    labels.insert(WORKLOAD_NAME_LABEL.into(), r.deployment.clone());
    let mut spec = serde_json::json!({
        "address": "127.0.0.1",
        "labels": labels,
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
            "labels": labels,
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
        assert_eq!(plan[0].ports[0].protocol, "HTTP");
        assert_eq!(plan[0].service_ports[0].key, "http");
        assert_eq!(plan[0].service_ports[0].target, 8080);
        assert_eq!(
            plan[0].containers[0].env,
            vec![("GREETING".into(), "hi".into())]
        );
        for (i, r) in plan.iter().enumerate() {
            let ports = Ports {
                app: vec![1],
                inbound: vec![20000 + i as u16],
                outbound: 3,
                admin: 4,
            };
            let text = serde_json::to_string(&workload_entry(r, &ports)).unwrap();
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
            app: vec![31000],
            inbound: vec![20000],
            outbound: 3,
            admin: 4,
        };
        let we = workload_entry(&plan[0], &ports);
        assert_eq!(we["spec"]["ports"]["http"], 31000);
        assert!(
            we["spec"]["labels"].get(TLS_MODE_LABEL).is_none(),
            "no sidecar, no mTLS: {we}"
        );
        let injected = &super::plan(&load(MANIFESTS), &[]).unwrap()[0];
        assert!(injected.inject);
        let we = workload_entry(injected, &ports);
        assert_eq!(we["spec"]["labels"][TLS_MODE_LABEL], "istio", "{we}");
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

    const TWO_PORTS: &str = r#"
apiVersion: v1
kind: Service
metadata: {name: echo}
spec:
  ports:
  - {name: tcp, port: 9000}
  - {name: tcp-other, port: 19001, targetPort: other}
  - {name: http, port: 8000, targetPort: 8080}
  - {name: metrics, port: 9100}
  selector: {app: echo}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: echo}
spec:
  selector: {matchLabels: {app: echo}}
  template:
    metadata:
      labels: {app: echo}
      annotations: {keel.dev/run.exporter: "./exporter --port $PORT_9100"}
    spec:
      containers:
      - name: tcp-echo
        image: docker.io/istio/tcp-echo-server:1.3
        args: ["9000,9001,9002", hello]
        ports: [{containerPort: 9000}, {containerPort: 9001, name: other}]
      - name: web
        image: docker.io/mccutchen/go-httpbin:v2.15.0
        ports: [{containerPort: 8080}]
      - name: exporter
        image: example/exporter
"#;

    #[test]
    fn every_container_and_every_port_of_a_pod() {
        let plan = plan(&load(TWO_PORTS), &[]).unwrap();
        let r = &plan[0];
        let names: Vec<&str> = r.containers.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(names, ["tcp-echo", "web", "exporter"]);
        assert_eq!(
            r.containers[2].command.program,
            Program::Shell("./exporter --port $PORT_9100".into())
        );
        // Declared ports first, then 9100, which only the Service names (the first
        // container serves it, as every undeclared port).
        let numbers: Vec<u16> = r.ports.iter().map(|p| p.port).collect();
        assert_eq!(numbers, [9000, 9001, 8080, 9100]);
        assert!(r.ports.iter().all(|p| p.targeted));
        assert_eq!(r.ports[0].protocol, "TCP");
        assert_eq!(r.ports[2].protocol, "HTTP");
        let targets: Vec<(&str, u16)> = r
            .service_ports
            .iter()
            .map(|s| (s.key.as_str(), s.target))
            .collect();
        // `targetPort: other` resolves by container-port name.
        assert_eq!(
            targets,
            [
                ("tcp", 9000),
                ("tcp-other", 9001),
                ("http", 8080),
                ("metrics", 9100)
            ]
        );
        assert_eq!(r.inbound_targets(), [0, 1, 2, 3]);
        assert_eq!(
            [r.port_of(0), r.port_of(1), r.port_of(2)],
            [Some(0), Some(2), None]
        );
        assert_eq!(r.log_file(0), "echo-0.log");
        assert_eq!(r.log_file(1), "echo-0.web.log");
        let ports = Ports {
            app: vec![41000, 41001, 41080, 41100],
            inbound: vec![42000, 42001, 42080, 42100],
            outbound: 3,
            admin: 4,
        };
        assert_eq!(ports.port_of(r, 1), Some(41080));
        assert_eq!(ports.listening(r), [41000, 41080]);
        let env = ports.env(r);
        assert!(
            env.contains(&("PORT_9001".into(), "41001".into())),
            "{env:?}"
        );
        assert!(
            env.contains(&("PORT_9100".into(), "41100".into())),
            "{env:?}"
        );
        let we = workload_entry(r, &ports);
        assert_eq!(we["spec"]["ports"]["tcp"], 42000);
        assert_eq!(we["spec"]["ports"]["tcp-other"], 42001);
        assert_eq!(we["spec"]["ports"]["http"], 42080);
        assert_eq!(we["spec"]["ports"]["metrics"], 42100);
    }

    #[test]
    fn a_pod_without_ports_still_gives_its_first_container_a_port() {
        let text = "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: sleep}\nspec:\n  selector: {matchLabels: {app: sleep}}\n  template:\n    metadata: {labels: {app: sleep}}\n    spec:\n      containers: [{name: sleep, image: curlimages/curl}]\n";
        let r = &plan(&load(text), &[]).unwrap()[0];
        assert_eq!(r.ports.len(), 1);
        assert_eq!(r.ports[0].port, 0);
        assert_eq!(r.inbound_targets(), [0]);
        let ports = Ports {
            app: vec![41000],
            inbound: vec![42000],
            outbound: 3,
            admin: 4,
        };
        assert_eq!(ports.port_of(r, 0), Some(41000));
        assert!(ports.env(r).is_empty());
        assert!(ports.listening(r).is_empty());
    }

    #[test]
    fn an_unknown_image_names_its_container_in_a_pod_of_several() {
        let text = TWO_PORTS.replace(
            "      annotations: {keel.dev/run.exporter: \"./exporter --port $PORT_9100\"}\n",
            "",
        );
        let errors = plan(&load(&text), &[]).unwrap_err();
        assert!(
            errors[0].starts_with("deployment default/echo: container exporter: no local command"),
            "{errors:?}"
        );
    }
}
