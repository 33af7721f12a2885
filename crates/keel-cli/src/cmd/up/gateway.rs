//! The local mesh's ingress gateway. When the manifests hold a Gateway that selects Istio's
//! ingress gateway (`istio: ingressgateway`, as Bookinfo's does), `keel up` runs one
//! `keel-proxy gateway` for it, standing in for Istio's `istio-ingressgateway` Deployment in
//! `istio-system`: the same labels, configured over xDS like the sidecars, so VirtualServices
//! bound to the Gateway change its routes live.
//!
//! Ports: Istio's ingress gateway pod listens unprivileged on 8080 and 8443 behind a Service
//! that maps 80 → 8080 and 443 → 8443, and a Gateway may name either number (Istio's own
//! `bookinfo-gateway.yaml` says 8080 today, older copies 80). Here the gateway binds
//! 127.0.0.1 and does the same mapping itself (`--gateway-port SERVER=LOCAL` changes it); every
//! other server port listens on its own number.

use std::collections::BTreeMap;
use std::net::TcpListener;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use keel_config::model::networking::gateway::TlsMode;
use keel_config::{Resource, Spec};

use keel_control::xds::ProxyRegistry;

use super::super::servers::MeshCa;
use super::ready::{http_status, rejected};
use super::{Proc, exited};

/// The gateway's workload name, as Istio names its Deployment.
pub const NAME: &str = "istio-ingressgateway";
/// Where Istio runs its ingress gateway.
pub const NAMESPACE: &str = "istio-system";
/// The service account of Istio's ingress gateway pods: its identity.
pub const SERVICE_ACCOUNT: &str = "istio-ingressgateway-service-account";
/// The labels of Istio's ingress gateway pods, which Gateways select.
pub const LABELS: [(&str, &str); 2] = [("istio", "ingressgateway"), ("app", NAME)];
/// Istio's ingress gateway Service: port → the pod's (unprivileged) target port.
pub const DEFAULT_PORTS: [(u16, u16); 2] = [(80, 8080), (443, 8443)];

/// `SERVER=LOCAL` of `--gateway-port`.
pub fn parse_port_map(s: &str) -> Result<(u16, u16), String> {
    let bad = || format!("\"{s}\" is not SERVER=LOCAL, two port numbers such as 80=8080");
    let (server, local) = s.split_once('=').ok_or_else(bad)?;
    let server = server.trim().parse::<u16>().map_err(|_| bad())?;
    let local = local.trim().parse::<u16>().map_err(|_| bad())?;
    Ok((server, local))
}

/// One Gateway server port the ingress gateway listens for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Served {
    /// `namespace/name` of the Gateway.
    pub gateway: String,
    pub server_port: u16,
    pub local_port: u16,
    /// The gateway terminates TLS there (an HTTPS server): its URL is `https://`.
    pub https: bool,
}

/// The ingress gateway a set of manifests calls for.
#[derive(Debug, Clone)]
pub struct Ingress {
    /// Every server port → local port mapping given to the proxy.
    pub ports: BTreeMap<u16, u16>,
    /// The ports it will listen on, one per local port.
    pub served: Vec<Served>,
}

/// Whether a Gateway `selector` selects Istio's ingress gateway pods (an empty selector
/// selects every gateway, as in Istio).
fn selects_ingress(selector: &BTreeMap<String, String>) -> bool {
    selector
        .iter()
        .all(|(k, v)| LABELS.iter().any(|(lk, lv)| k == lk && v == lv))
}

/// The ingress gateway for `resources`, if any of their Gateways selects it. `overrides` are
/// `--gateway-port`'s mappings, over [`DEFAULT_PORTS`].
pub fn plan(resources: &[Resource], overrides: &[(u16, u16)]) -> Option<Ingress> {
    let mut ports: BTreeMap<u16, u16> = DEFAULT_PORTS.into_iter().collect();
    ports.extend(overrides.iter().copied());
    let mut served: Vec<Served> = Vec::new();
    let mut any = false;
    for r in resources {
        let Spec::Gateway(g) = &r.spec else { continue };
        if !selects_ingress(&g.selector) {
            continue;
        }
        any = true;
        for s in &g.servers {
            let Some(port) = &s.port else { continue };
            let Ok(server_port) = u16::try_from(port.number) else {
                continue;
            };
            let local_port = ports.get(&server_port).copied().unwrap_or(server_port);
            if served.iter().any(|x| x.local_port == local_port) {
                continue;
            }
            served.push(Served {
                gateway: format!("{}/{}", r.namespace(), r.name()),
                server_port,
                local_port,
                https: port.protocol.eq_ignore_ascii_case("HTTPS")
                    && s.tls.as_ref().is_some_and(|t| {
                        !matches!(t.mode, TlsMode::Passthrough | TlsMode::AutoPassthrough)
                    }),
            });
        }
    }
    any.then_some(Ingress { ports, served })
}

/// Fails, naming the fix, when a port the gateway needs can't be bound (in use, or below
/// 1024 for an unprivileged user). `flag` is the flag that moves it, when not `--gateway-port`.
pub fn check_ports(ingress: &Ingress, flag: Option<&str>) -> Result<(), String> {
    for s in &ingress.served {
        if let Err(e) = TcpListener::bind(("127.0.0.1", s.local_port)) {
            let fix = flag.map_or_else(
                || format!("--gateway-port {}=PORT", s.server_port),
                str::to_string,
            );
            return Err(format!(
                "the ingress gateway cannot listen on 127.0.0.1:{} for port {} of Gateway {}: {e}; \
choose another local port with {fix}",
                s.local_port, s.server_port, s.gateway
            ));
        }
    }
    Ok(())
}

/// Istio's `gatewayTopology.numTrustedProxies` for the ingress gateway, from the mesh config
/// among the files (the `mesh` key of ConfigMap `istio` in the root namespace,
/// `defaultConfig.gatewayTopology`), as istiod gives it to its gateways. `None` when unset:
/// the gateway then takes `KEEL_NUM_TRUSTED_PROXIES` from the environment, or 0.
pub fn trusted_proxies(resources: &[Resource], root_namespace: &str) -> Result<Option<u8>, String> {
    let Some((r, mesh)) = resources.iter().find_map(|r| match &r.spec {
        Spec::ConfigMap(cm) if r.name() == "istio" && r.namespace() == root_namespace => {
            cm.get("mesh").map(|mesh| (r, mesh))
        }
        _ => None,
    }) else {
        return Ok(None);
    };
    let name = format!(
        "{}:{}: ConfigMap {root_namespace}/istio, data.mesh",
        r.origin.file, r.origin.pos.line
    );
    keel_analyze::MeshConfig::from_yaml(mesh, &name).map(|m| m.num_trusted_proxies)
}

/// Starts the gateway's `keel-proxy gateway`, configured from `xds`; its admin API on `admin`.
pub(super) fn start(
    ingress: &Ingress,
    xds: std::net::SocketAddr,
    admin: u16,
    logs: &Path,
    proxy_bin: &Path,
    ca: Option<&MeshCa>,
    trusted_proxies: Option<u8>,
) -> std::io::Result<Proc> {
    use std::os::unix::process::CommandExt;
    let log = std::fs::File::create(logs.join(format!("{NAME}.log")))?;
    let mut cmd = Command::new(proxy_bin);
    cmd.arg("gateway")
        .args(["--xds", &format!("http://{xds}")])
        .args(["--node-id", &format!("{NAME}.{NAMESPACE}")])
        .args(["-n", NAMESPACE])
        .args(["--workload", NAME])
        .args(["--workers", "1"])
        .args(["--bind", "127.0.0.1"])
        .args(["--admin", &format!("127.0.0.1:{admin}")])
        .args(["--stats", "none"])
        // As Istio's demo profile: every request through the gateway is in its log.
        .args(["--access-log", "text"]);
    for (k, v) in LABELS {
        cmd.args(["--label", &format!("{k}={v}")]);
    }
    for (server, local) in &ingress.ports {
        cmd.args(["--gateway-port", &format!("{server}={local}")]);
    }
    if let Some(n) = trusted_proxies {
        cmd.args(["--num-trusted-proxies", &n.to_string()]);
    }
    if let Some(ca) = ca {
        cmd.args(super::process::identity_args(
            ca,
            logs,
            NAMESPACE,
            SERVICE_ACCOUNT,
            NAME,
        )?);
    }
    cmd.stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .process_group(0);
    Ok(Proc {
        what: format!("{NAME}.{NAMESPACE}"),
        child: cmd.spawn()?,
    })
}

/// How long a starting gateway has to become ready.
pub(super) const READY_WITHIN: Duration = Duration::from_secs(30);

/// Where a starting gateway is.
pub(super) enum Probe {
    Ready,
    /// Not yet: configured (`/healthz/ready`) but not yet listening on this port, or
    /// (`None`) not yet configured.
    Waiting(Option<u16>),
    /// It can't become ready: a process exited or it rejected its configuration.
    Failed(String),
}

/// One look at a starting gateway: configured (`/healthz/ready` on `admin`) and accepting
/// connections on every port it serves, or failed (a process exited, or the gateway rejected
/// its configuration: a port it can't bind).
pub(super) async fn probe(
    ingress: &Ingress,
    admin: u16,
    procs: &mut [Proc],
    registry: &ProxyRegistry,
) -> Probe {
    let node = format!("{NAME}.{NAMESPACE}");
    if let Some(what) = exited(procs) {
        return Probe::Failed(format!("{what} exited while starting (see its log)"));
    }
    if let Some(reason) = rejected(registry, &node) {
        return Probe::Failed(format!("{node} rejected its configuration: {reason}"));
    }
    if http_status(admin, "/healthz/ready").await != Some(200) {
        return Probe::Waiting(None);
    }
    for s in &ingress.served {
        if tokio::net::TcpStream::connect(("127.0.0.1", s.local_port))
            .await
            .is_err()
        {
            return Probe::Waiting(Some(s.local_port));
        }
    }
    Probe::Ready
}

/// Why a gateway that didn't become ready in time isn't, from its last [`Probe::Waiting`].
pub(super) fn not_ready(waiting: Option<u16>) -> String {
    let node = format!("{NAME}.{NAMESPACE}");
    let secs = READY_WITHIN.as_secs();
    match waiting {
        Some(port) => format!(
            "{node} is configured but not listening on 127.0.0.1:{port} within {secs} s (see its log)"
        ),
        None => format!("{node} has no configuration within {secs} s (see its log)"),
    }
}

/// Waits ([`READY_WITHIN`] at most) until [`probe`] says ready; fails at once if it fails.
pub(super) async fn wait_ready(
    ingress: &Ingress,
    admin: u16,
    procs: &mut [Proc],
    registry: &ProxyRegistry,
) -> Result<(), String> {
    let deadline = Instant::now() + READY_WITHIN;
    loop {
        match probe(ingress, admin, procs, registry).await {
            Probe::Ready => return Ok(()),
            Probe::Failed(why) => return Err(why),
            Probe::Waiting(port) if Instant::now() > deadline => return Err(not_ready(port)),
            Probe::Waiting(_) => tokio::time::sleep(Duration::from_millis(20)).await,
        }
    }
}

/// The progress line when it starts.
pub fn starting(ingress: &Ingress) -> String {
    let ports: Vec<String> = ingress
        .served
        .iter()
        .map(|s| {
            format!(
                "127.0.0.1:{} for Gateway port {}",
                s.local_port, s.server_port
            )
        })
        .collect();
    format!(
        "… starting {NAME}.{NAMESPACE} (ingress gateway: {})",
        ports.join(", ")
    )
}

/// The summary's lines for the gateway.
pub fn summary(ingress: &Ingress, logs: &Path) -> Vec<String> {
    let mut out = Vec::new();
    for s in &ingress.served {
        let how = if s.server_port == s.local_port {
            String::new()
        } else {
            format!(" ← Gateway port {}", s.server_port)
        };
        out.push(format!(
            "  {NAME}.{NAMESPACE}: {}://127.0.0.1:{}{how} ({}; logs: {}/{NAME}.log)",
            if s.https { "https" } else { "http" },
            s.local_port,
            s.gateway,
            logs.display()
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use keel_config::{LoadOptions, load_str};

    fn load(text: &str) -> Vec<Resource> {
        let l = load_str(text, "t.yaml", &LoadOptions::default());
        assert!(!l.has_errors(), "{:?}", l.diagnostics);
        l.resources
    }

    const GATEWAYS: &str = r#"
apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {name: bookinfo-gateway}
spec:
  selector: {istio: ingressgateway}
  servers:
  - {port: {number: 80, name: http, protocol: HTTP}, hosts: ["*"]}
  - {port: {number: 9000, name: tcp, protocol: TCP}, hosts: ["*"]}
  - port: {number: 443, name: https, protocol: HTTPS}
    tls: {mode: SIMPLE, credentialName: cert}
    hosts: ["*"]
---
apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {name: egress, namespace: istio-system}
spec:
  selector: {istio: egressgateway}
  servers: [{port: {number: 81, name: http, protocol: HTTP}, hosts: ["*"]}]
"#;

    #[test]
    fn gateways_selecting_the_ingress_gateway_get_one_with_istios_port_mapping() {
        let ingress = plan(&load(GATEWAYS), &[]).unwrap();
        let served: Vec<(u16, u16)> = ingress
            .served
            .iter()
            .map(|s| (s.server_port, s.local_port))
            .collect();
        // 443 terminates TLS on Istio's 8443; the egress gateway's 81 is not this gateway's.
        assert_eq!(served, vec![(80, 8080), (9000, 9000), (443, 8443)]);
        assert!(ingress.served[2].https && !ingress.served[0].https);
        assert_eq!(ingress.served[0].gateway, "default/bookinfo-gateway");
        let moved = plan(&load(GATEWAYS), &[(80, 18080)]).unwrap();
        assert_eq!(moved.served[0].local_port, 18080);
        assert_eq!(moved.ports[&443], 8443);
    }

    #[test]
    fn no_ingress_gateway_without_a_gateway_selecting_it() {
        let egress_only = GATEWAYS.split("---").nth(1).unwrap();
        assert!(plan(&load(egress_only), &[]).is_none());
        assert!(plan(&[], &[]).is_none());
    }

    #[test]
    fn port_maps_parse() {
        assert_eq!(parse_port_map("80=8080"), Ok((80, 8080)));
        assert!(parse_port_map("80").unwrap_err().contains("SERVER=LOCAL"));
        assert!(parse_port_map("80=x").is_err());
    }
}
