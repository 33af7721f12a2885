//! The harness of the Istio task tests: sample files applied as `kubectl apply` would, the
//! Pods and Endpoints Kubernetes would add, keel-proxy as one pod's sidecar, and small
//! applications to put behind it.

use std::convert::Infallible;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use keel_config::{Resource, Spec};
use keel_proxy::l4::L4Config;
use keel_proxy::l4::orig_dst::FixedOriginalDst;
use keel_proxy::server::{Listeners, Shared};
use keel_snapshot::Snapshot;
use keel_snapshot::compile::sidecar::{SidecarOptions, compile};
use tokio::net::TcpListener;

use crate::support::*;

// ---------------------------------------------------------------------------------------
// The mesh: sample files, pods, endpoints, and a sidecar

pub(crate) fn samples() -> Option<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/istio-samples");
    if root.is_dir() {
        Some(root)
    } else {
        eprintln!(
            "skipped: {} not found (Istio's samples are only beside a CI checkout)",
            root.display()
        );
        None
    }
}

pub(crate) const NETWORKING: &str = "samples/bookinfo/networking";
pub(crate) const TASKS: &str = "istio.io/content/en/docs/tasks/traffic-management";
pub(crate) const BOOKINFO: &str = "samples/bookinfo/platform/kube/bookinfo.yaml";

/// Resources as `kubectl apply` leaves them after a sequence of files.
#[derive(Default, Clone)]
pub(crate) struct Mesh {
    resources: Vec<Resource>,
}

impl Mesh {
    /// Applies sample files, in order.
    pub(crate) fn apply_files(&mut self, root: &Path, files: &[&str]) -> &mut Mesh {
        for f in files {
            let path = root.join(f);
            let text = std::fs::read_to_string(&path)
                .unwrap_or_else(|e| panic!("{}: {e} (the samples are incomplete)", path.display()));
            // Istio's samples must pass Istio's and Kubernetes' validation.
            self.apply(resources(&text));
        }
        self
    }

    /// Applies our own Pods and Endpoints: read, not validated, because Kubernetes rightly
    /// refuses loopback endpoint addresses, which is where the test's upstreams are.
    pub(crate) fn apply_fixture(&mut self, yaml: &str) -> &mut Mesh {
        let loaded = keel_config::load_str(yaml, "fixture.yaml", &Default::default());
        assert!(
            loaded
                .diagnostics
                .iter()
                .all(|d| d.level != keel_config::Level::Error),
            "{:?}",
            loaded.diagnostics
        );
        self.apply(loaded.resources)
    }

    fn apply(&mut self, resources: Vec<Resource>) -> &mut Mesh {
        for r in resources {
            self.resources.retain(|old| {
                (old.kind(), old.namespace(), old.name()) != (r.kind(), r.namespace(), r.name())
            });
            self.resources.push(r);
        }
        self
    }

    /// Changes the VirtualService `name` in place (a `kubectl edit`).
    pub(crate) fn edit_virtual_service(
        &mut self,
        name: &str,
        edit: impl FnOnce(&mut keel_config::model::networking::VirtualService),
    ) -> &mut Mesh {
        let vs = self
            .resources
            .iter_mut()
            .find_map(|r| match &mut r.spec {
                Spec::VirtualService(vs) if r.meta.name == name => Some(vs),
                _ => None,
            })
            .unwrap_or_else(|| panic!("no VirtualService {name}"));
        edit(vs);
        self
    }

    /// The labels of the pods `deployment` creates.
    fn pod_labels(&self, deployment: &str) -> Vec<(String, String)> {
        self.resources
            .iter()
            .find_map(|r| match &r.spec {
                Spec::Deployment(d) if r.name() == deployment => Some(
                    d.pod_template()
                        .metadata
                        .labels
                        .iter()
                        .map(|(k, v)| (k.clone(), v.clone()))
                        .collect(),
                ),
                _ => None,
            })
            .unwrap_or_else(|| panic!("no Deployment {deployment} in the samples"))
    }

    /// What Kubernetes adds for a Service whose pods run on local upstreams: a Pod per
    /// Deployment (named after it, with its template's labels) and the Service's Endpoints
    /// (port `http`) listing them.
    pub(crate) fn run(&mut self, service: &str, pods: &[(&str, u16)]) -> &mut Mesh {
        let mut yaml = String::new();
        let mut subsets = String::new();
        for (deployment, port) in pods {
            let labels = self
                .pod_labels(deployment)
                .iter()
                .map(|(k, v)| format!("{k}: {v}"))
                .collect::<Vec<_>>()
                .join(", ");
            yaml.push_str(&format!(
                "apiVersion: v1\nkind: Pod\nmetadata: {{name: {deployment}, namespace: default, labels: {{{labels}}}}}\nspec: {{containers: [{{name: app, image: app}}]}}\n---\n"
            ));
            subsets.push_str(&format!(
                "- addresses: [{{ip: 127.0.0.1, targetRef: {{kind: Pod, name: {deployment}}}}}]\n  ports: [{{name: http, port: {port}}}]\n"
            ));
        }
        yaml.push_str(&format!(
            "apiVersion: v1\nkind: Endpoints\nmetadata: {{name: {service}, namespace: default}}\nsubsets:\n{subsets}"
        ));
        self.apply_fixture(&yaml)
    }

    /// The sidecar snapshot for the pods of `deployment` and the compile warnings.
    pub(crate) fn snapshot_for(
        &self,
        deployment: &str,
        outbound: u16,
        inbound: u16,
    ) -> (Snapshot, Vec<String>) {
        let compiled = compile(
            &self.resources,
            &SidecarOptions {
                namespace: "default".into(),
                labels: self.pod_labels(deployment).into_iter().collect(),
                outbound_port: outbound,
                inbound_port: inbound,
                bind: "127.0.0.1".parse().unwrap(),
                ..Default::default()
            },
        );
        let warnings = compiled
            .warnings
            .iter()
            .map(|w| format!("{}: {}", w.resource, w.message))
            .collect();
        (compiled.snapshot, warnings)
    }
}

/// keel-proxy as the sidecar of one pod, in this process.
pub(crate) struct Sidecar {
    /// The outbound capture port (Istio's 15001) the application's requests reach.
    pub(crate) port: u16,
    pub(crate) shared: Arc<Shared>,
    listeners: Listeners,
    deployment: String,
}

impl Sidecar {
    pub(crate) async fn start(mesh: &Mesh, deployment: &str) -> Sidecar {
        let mut last = Vec::new();
        for _ in 0..5 {
            let (port, inbound) = (free_port(), free_port());
            let (snapshot, warnings) = mesh.snapshot_for(deployment, port, inbound);
            assert!(warnings.is_empty(), "{warnings:#?}");
            let shared = Shared::with_l4(
                "",
                L4Config {
                    // Not redirected by iptables: requests are routed by their Host.
                    original_dst: Arc::new(FixedOriginalDst::new(None)),
                    ..Default::default()
                },
            );
            let listeners = Listeners::default();
            shared.install(snapshot);
            let errors = listeners.reconcile(&shared).await;
            if errors.is_empty() {
                return Sidecar {
                    port,
                    shared,
                    listeners,
                    deployment: deployment.to_string(),
                };
            }
            listeners.stop_all();
            last = errors;
        }
        panic!("the sidecar could not bind: {last:?}");
    }

    /// Installs the mesh's new state, as istiod pushes it after `kubectl apply`.
    pub(crate) async fn update(&self, mesh: &Mesh) {
        let inbound = free_port();
        let (snapshot, warnings) = mesh.snapshot_for(&self.deployment, self.port, inbound);
        assert!(warnings.is_empty(), "{warnings:#?}");
        let errors = keel_proxy::standalone::apply(&self.shared, &self.listeners, snapshot).await;
        assert!(errors.is_empty(), "{errors:?}");
    }

    /// `GET http://host/path` from the application, with extra headers.
    pub(crate) async fn get(&self, host: &str, path: &str, headers: &[(&str, &str)]) -> Resp {
        let mut r = req("GET", host, path);
        for (k, v) in headers {
            r = r.header(*k, *v);
        }
        send(self.port, r.body(empty()).unwrap()).await
    }
}

impl Drop for Sidecar {
    fn drop(&mut self) {
        self.listeners.stop_all();
    }
}

/// An application serving HTTP/1.1 on 127.0.0.1; stops when dropped.
pub(crate) struct App {
    pub(crate) port: u16,
    handle: tokio::task::JoinHandle<()>,
}

impl Drop for App {
    fn drop(&mut self) {
        self.handle.abort();
    }
}

/// An application that answers every request with what `call` returns for its headers
/// (status, body): one that calls another service before answering, or holds requests.
pub(crate) async fn app<F, Fut>(name: &'static str, call: F) -> App
where
    F: Fn(http::HeaderMap) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = (u16, String)> + Send,
{
    let call = Arc::new(call);
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = l.local_addr().unwrap().port();
    let handle = tokio::spawn(async move {
        while let Ok((s, _)) = l.accept().await {
            let call = call.clone();
            let svc = service_fn(move |req: http::Request<hyper::body::Incoming>| {
                let call = call.clone();
                async move {
                    let (status, body) = call(req.headers().clone()).await;
                    let mut resp = http::Response::new(full(body));
                    *resp.status_mut() = http::StatusCode::from_u16(status).unwrap();
                    resp.headers_mut()
                        .insert("x-upstream", http::HeaderValue::from_static(name));
                    Ok::<_, Infallible>(resp)
                }
            });
            tokio::spawn(async move {
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(s), svc)
                    .await;
            });
        }
    });
    App { port, handle }
}
