//! Sidecar mode end to end over loopback: outbound HTTP by host (absolute-form proxy
//! requests and Host headers), a mesh VirtualService splitting by header, declared TCP,
//! inbound forwarding to the local application, and (as root, with iptables) a real
//! `SO_ORIGINAL_DST` in a network namespace.
#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)] // test code: fail loudly

mod common;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use common::*;
use keel_proxy::l4::orig_dst::{FixedOriginalDst, SoOriginalDst};
use keel_snapshot::compile::sidecar::{SidecarOptions, compile};
use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;

/// Two services in `default` (reviews with v1/v2 pods, ratings), one in `other`, a mesh
/// VirtualService sending `end-user: jason` to reviews v2, a TCP database service, and the
/// workload's own Service (productpage: HTTP and a TCP port) backed by local apps.
fn mesh_yaml(p: &Ports) -> String {
    format!(
        r#"
apiVersion: v1
kind: Service
metadata: {{name: reviews, namespace: default}}
spec:
  clusterIP: 10.96.0.10
  selector: {{app: reviews}}
  ports: [{{name: http, port: 9080}}]
---
apiVersion: v1
kind: Endpoints
metadata: {{name: reviews, namespace: default}}
subsets:
- addresses: [{{ip: 127.0.0.1, targetRef: {{kind: Pod, name: reviews-v1}}}}]
  ports: [{{name: http, port: {reviews_v1}}}]
- addresses: [{{ip: 127.0.0.1, targetRef: {{kind: Pod, name: reviews-v2}}}}]
  ports: [{{name: http, port: {reviews_v2}}}]
---
apiVersion: v1
kind: Pod
metadata: {{name: reviews-v1, namespace: default, labels: {{app: reviews, version: v1}}}}
spec: {{containers: [{{name: app, image: reviews}}]}}
---
apiVersion: v1
kind: Pod
metadata: {{name: reviews-v2, namespace: default, labels: {{app: reviews, version: v2}}}}
spec: {{containers: [{{name: app, image: reviews}}]}}
---
apiVersion: v1
kind: Service
metadata: {{name: ratings, namespace: default}}
spec:
  clusterIP: 10.96.0.11
  ports: [{{name: http, port: 9080}}]
---
apiVersion: v1
kind: Endpoints
metadata: {{name: ratings, namespace: default}}
subsets:
- addresses: [{{ip: 127.0.0.1}}]
  ports: [{{name: http, port: {ratings}}}]
---
apiVersion: v1
kind: Service
metadata: {{name: details, namespace: other}}
spec:
  clusterIP: 10.96.0.12
  ports: [{{name: http, port: 9080}}]
---
apiVersion: v1
kind: Service
metadata: {{name: mysql, namespace: default}}
spec:
  clusterIP: 10.96.0.20
  ports: [{{name: tcp-db, port: 3306}}]
---
apiVersion: v1
kind: Endpoints
metadata: {{name: mysql, namespace: default}}
subsets:
- addresses: [{{ip: 127.0.0.1}}]
  ports: [{{name: tcp-db, port: {mysql}}}]
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {{name: reviews, namespace: default}}
spec:
  host: reviews
  subsets:
  - {{name: v1, labels: {{version: v1}}}}
  - {{name: v2, labels: {{version: v2}}}}
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {{name: reviews, namespace: default}}
spec:
  hosts: [reviews]
  http:
  - match: [{{headers: {{end-user: {{exact: jason}}}}}}]
    route: [{{destination: {{host: reviews, subset: v2}}}}]
  - route: [{{destination: {{host: reviews, subset: v1}}}}]
---
apiVersion: v1
kind: Service
metadata: {{name: productpage, namespace: default}}
spec:
  clusterIP: 10.96.0.30
  selector: {{app: productpage}}
  ports:
  - {{name: http, port: 9080, targetPort: {app_http}}}
  - {{name: tcp-admin, port: 9090, targetPort: {app_tcp}}}
"#,
        reviews_v1 = p.reviews_v1.port(),
        reviews_v2 = p.reviews_v2.port(),
        ratings = p.ratings.port(),
        mysql = p.mysql.port(),
        app_http = p.app_http.port(),
        app_tcp = p.app_tcp.port(),
    )
}

struct Ports {
    reviews_v1: SocketAddr,
    reviews_v2: SocketAddr,
    ratings: SocketAddr,
    mysql: SocketAddr,
    app_http: SocketAddr,
    app_tcp: SocketAddr,
}

struct Sidecar {
    outbound: SocketAddr,
    inbound: SocketAddr,
    orig: FixedOriginalDst,
    _running: (
        Arc<keel_proxy::server::Shared>,
        keel_proxy::server::Listeners,
    ),
}

/// Upstreams, then a sidecar for `productpage` in `default` compiled from the YAML, written
/// to a JSON snapshot file and read back — the `keel-proxy sidecar --snapshot` path.
async fn sidecar() -> Sidecar {
    let ports = Ports {
        reviews_v1: http_server("reviews-v1").await,
        reviews_v2: http_server("reviews-v2").await,
        ratings: http_server("ratings").await,
        mysql: echo_server("mysql", "mysql-banner\n").await,
        app_http: http_server("productpage").await,
        app_tcp: echo_server("productpage-tcp", "admin-banner\n").await,
    };
    let loaded = keel_config::load_str(&mesh_yaml(&ports), "mesh.yaml", &Default::default());
    assert!(
        loaded
            .diagnostics
            .iter()
            .all(|d| d.level != keel_config::Level::Error),
        "{:?}",
        loaded.diagnostics
    );
    let mut last = Vec::new();
    for _ in 0..5 {
        let (outbound, inbound) = (free_port(), free_port());
        let compiled = compile(
            &loaded.resources,
            &SidecarOptions {
                namespace: "default".into(),
                labels: [("app".to_string(), "productpage".to_string())].into(),
                outbound_port: outbound,
                inbound_port: inbound,
                bind: "127.0.0.1".parse().unwrap(),
                ..Default::default()
            },
        );
        assert!(compiled.warnings.is_empty(), "{:?}", compiled.warnings);
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("sidecar.json");
        std::fs::write(&file, serde_json::to_string(&compiled.snapshot).unwrap()).unwrap();
        let snapshot = keel_proxy::sidecar::load_snapshot(&file).expect("snapshot file");
        assert_eq!(snapshot, compiled.snapshot);
        let orig = FixedOriginalDst::new(None);
        // A long detection timeout: anything that waits on it fails the test's bounds, so
        // declared TCP ports must not be sniffed.
        let running =
            match try_start(snapshot, Duration::from_secs(30), Arc::new(orig.clone())).await {
                Ok(running) => running,
                Err(errors) => {
                    last = errors;
                    continue;
                }
            };
        return Sidecar {
            outbound: local(outbound),
            inbound: local(inbound),
            orig,
            _running: running,
        };
    }
    panic!("the sidecar could not bind: {last:?}");
}

fn at(s: &str) -> Option<SocketAddr> {
    Some(s.parse().unwrap())
}

#[tokio::test]
async fn outbound_routes_proxy_requests_and_host_headers() {
    let s = sidecar().await;
    // HTTP_PROXY style: absolute-form; the URI's authority wins over a stale Host header.
    let (status, up, body) = raw_get(
        s.outbound,
        "http://ratings:9080/r",
        &[("host", "reviews:9080")],
    )
    .await;
    assert_eq!((status, up.as_str()), (200, "ratings"), "{body}");
    assert_eq!(body, "ratings HTTP/1.1 ratings:9080 /r");
    let (_, up, _) = raw_get(
        s.outbound,
        "http://ratings.default.svc.cluster.local:9080/",
        &[],
    )
    .await;
    assert_eq!(up, "ratings");
    // Host-based, every name the service answers to.
    for host in [
        "ratings:9080",
        "ratings.default:9080",
        "ratings.default.svc",
        "ratings",
    ] {
        let (status, up, _) = raw_get(s.outbound, "/x", &[("host", host)]).await;
        assert_eq!((status, up.as_str()), (200, "ratings"), "{host}");
    }
    // A short name from another namespace is nobody's; with no original destination the
    // passthrough fallback has nowhere to go, and says so.
    let (status, _, body) = raw_get(s.outbound, "/", &[("host", "details:9080")]).await;
    assert_eq!(status, 503, "{body}");
    assert!(
        body.starts_with("UH no healthy upstream: cluster PassthroughCluster"),
        "{body}"
    );
    let (_, up, _) = raw_get(s.outbound, "/", &[("host", "details.other:9080")]).await;
    assert_eq!(up, "", "details has no endpoints");
    // Redirected by iptables: a port-less Host routes by the original destination's port.
    s.orig.set(at("10.96.0.11:9080"));
    let (status, up, _) = raw_get(s.outbound, "/", &[("host", "ratings")]).await;
    assert_eq!((status, up.as_str()), (200, "ratings"));
}

#[tokio::test]
async fn mesh_virtual_service_splits_by_header() {
    let s = sidecar().await;
    for _ in 0..3 {
        let (_, up, _) = raw_get(s.outbound, "http://reviews:9080/", &[]).await;
        assert_eq!(up, "reviews-v1");
        let (_, up, _) =
            raw_get(s.outbound, "http://reviews:9080/", &[("end-user", "jason")]).await;
        assert_eq!(up, "reviews-v2");
    }
}

#[tokio::test]
async fn declared_tcp_is_routed_by_address_without_sniffing() {
    let s = sidecar().await;
    s.orig.set(at("10.96.0.20:3306"));
    let mut c = TcpStream::connect(s.outbound).await.unwrap();
    let mut banner = [0u8; 13];
    tokio::time::timeout(LIMIT, c.read_exact(&mut banner))
        .await
        .expect("a declared TCP port is never held for detection")
        .unwrap();
    assert_eq!(&banner, b"mysql-banner\n");
}

#[tokio::test]
async fn inbound_forwards_to_the_local_app_by_port() {
    let s = sidecar().await;
    // The app's ports are found from the Service selecting the workload; the original
    // destination (pod IP, target port) picks which.
    let ports = {
        let l = s._running.0.runtime.load();
        let mut v: Vec<String> = l
            .clusters
            .keys()
            .filter(|k| k.starts_with("inbound|"))
            .cloned()
            .collect();
        v.sort();
        v
    };
    assert_eq!(ports.len(), 2, "{ports:?}");
    let http_port: u16 = ports
        .iter()
        .map(|p| p.split('|').nth(1).unwrap().parse::<u16>().unwrap())
        .find(|p| {
            let name = format!("inbound|{p}||");
            s._running.0.runtime.load().clusters[&name].cluster.protocol
                == keel_snapshot::UpstreamProtocol::Http1
        })
        .expect("an HTTP inbound port");
    s.orig
        .set(Some(SocketAddr::from(([10, 1, 2, 3], http_port))));
    let (status, up, body) = raw_get(s.inbound, "/hello", &[("host", "productpage:9080")]).await;
    assert_eq!((status, up.as_str()), (200, "productpage"), "{body}");
    let tcp_port = ports
        .iter()
        .map(|p| p.split('|').nth(1).unwrap().parse::<u16>().unwrap())
        .find(|p| *p != http_port)
        .unwrap();
    s.orig
        .set(Some(SocketAddr::from(([10, 1, 2, 3], tcp_port))));
    let mut c = TcpStream::connect(s.inbound).await.unwrap();
    let mut banner = [0u8; 13];
    tokio::time::timeout(LIMIT, c.read_exact(&mut banner))
        .await
        .expect("declared TCP inbound is not sniffed")
        .unwrap();
    assert_eq!(&banner, b"admin-banner\n");
}

/// Real `SO_ORIGINAL_DST`: in a fresh network namespace, iptables redirects connections for
/// 127.0.0.1:7000 to the proxy, which must see 7000 as the original destination and route
/// on it. Needs root, `ip` (iproute2) and `iptables`; skipped with the reason otherwise. The
/// scenario runs in a child process (this test binary again, inside the namespace).
#[test]
fn original_dst_with_iptables_in_a_netns() {
    if std::env::var_os("KEEL_NETNS_CHILD").is_some() {
        return;
    }
    if let Err(why) = netns::can_run() {
        netns::skip(&why);
        return;
    }
    let ns = format!("keel-l4-{}", std::process::id());
    let result = netns::run_child(&ns);
    netns::cleanup(&ns);
    match result {
        Ok(()) => {}
        Err(netns::Failure::Setup(why)) => netns::skip(&why),
        Err(netns::Failure::Child(out)) => panic!("the scenario failed in the namespace:\n{out}"),
    }
}

/// The scenario inside the namespace (does nothing unless started by the test above).
#[tokio::test]
async fn netns_child() {
    if std::env::var_os("KEEL_NETNS_CHILD").is_none() {
        return;
    }
    netns::scenario().await;
}

mod netns {
    use super::*;
    use keel_snapshot::{L4Match, Listener, ListenerKind, ListenerProtocol, Snapshot, TcpRoute};
    use std::process::{Command, Stdio};

    pub enum Failure {
        /// The environment can't do it (no permission for namespaces or NAT): skip.
        Setup(String),
        Child(String),
    }

    /// Says why the test did not run, past the test harness's output capture (so CI logs
    /// show it even though the test passes).
    pub fn skip(why: &str) {
        use std::io::Write;
        let _ = writeln!(
            std::io::stderr(),
            "SKIPPED original_dst_with_iptables_in_a_netns: {why}"
        );
    }

    pub fn can_run() -> Result<(), String> {
        let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
        let root = status
            .lines()
            .find(|l| l.starts_with("Uid:"))
            .and_then(|l| l.split_whitespace().nth(2))
            == Some("0");
        if !root {
            return Err("needs root (network namespaces and iptables)".into());
        }
        for tool in ["ip", "iptables"] {
            let ok = Command::new(tool)
                .arg(if tool == "ip" { "-V" } else { "--version" })
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|s| s.success());
            if !ok {
                return Err(format!(
                    "`{tool}` not found (apt-get install -y iproute2 iptables)"
                ));
            }
        }
        Ok(())
    }

    fn run(args: &[&str]) -> Result<(), String> {
        let out = Command::new(args[0])
            .args(&args[1..])
            .output()
            .map_err(|e| format!("{}: {e}", args.join(" ")))?;
        if out.status.success() {
            Ok(())
        } else {
            Err(format!(
                "`{}` failed: {}",
                args.join(" "),
                String::from_utf8_lossy(&out.stderr).trim()
            ))
        }
    }

    pub fn run_child(ns: &str) -> Result<(), Failure> {
        let setup = [
            vec!["ip", "netns", "add", ns],
            vec!["ip", "netns", "exec", ns, "ip", "link", "set", "lo", "up"],
            vec![
                "ip",
                "netns",
                "exec",
                ns,
                "iptables",
                "-t",
                "nat",
                "-A",
                "OUTPUT",
                "-p",
                "tcp",
                "-d",
                "127.0.0.1",
                "--dport",
                "7000",
                "-j",
                "REDIRECT",
                "--to-ports",
                "15001",
            ],
        ];
        for cmd in &setup {
            run(cmd).map_err(Failure::Setup)?;
        }
        let exe = std::env::current_exe().map_err(|e| Failure::Setup(e.to_string()))?;
        let exe = exe.to_string_lossy().to_string();
        let mut child = Command::new("ip")
            .args([
                "netns",
                "exec",
                ns,
                &exe,
                "--exact",
                "netns_child",
                "--nocapture",
            ])
            .env("KEEL_NETNS_CHILD", "1")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| Failure::Setup(e.to_string()))?;
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        loop {
            match child.try_wait() {
                Ok(Some(_)) => break,
                Ok(None) if std::time::Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(20))
                }
                _ => {
                    let _ = child.kill();
                    break;
                }
            }
        }
        let out = child
            .wait_with_output()
            .map_err(|e| Failure::Child(e.to_string()))?;
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        if out.status.success() && text.contains("1 passed") {
            Ok(())
        } else {
            Err(Failure::Child(text))
        }
    }

    pub fn cleanup(ns: &str) {
        let _ = run(&["ip", "netns", "del", ns]);
    }

    /// Inside the namespace: the proxy on 15001 with the real lookup; a connection to
    /// 127.0.0.1:7000 arrives redirected and must take the route for port 7000.
    pub async fn scenario() {
        let hit = echo_server("by-original-dst", "").await;
        let miss = echo_server("by-listener", "").await;
        let route = |name: &str, port: Option<u16>, cluster: &str| TcpRoute {
            name: name.into(),
            matches: port
                .map(|p| {
                    vec![L4Match {
                        destination_subnets: vec!["127.0.0.1/32".into()],
                        port: Some(p),
                        ..Default::default()
                    }]
                })
                .unwrap_or_default(),
            clusters: vec![to(cluster, 100)],
            opaque: true,
        };
        let snapshot = Snapshot {
            version: "netns".into(),
            listeners: vec![Listener {
                name: "virtualOutbound".into(),
                address: local(15001),
                kind: ListenerKind::SidecarOutbound,
                protocol: ListenerProtocol::Auto,
                http: None,
                tls: Vec::new(),
                tcp: vec![
                    route("7000", Some(7000), "hit"),
                    route("rest", None, "miss"),
                ],
                peer_authn: None,
                terminate_tls: Vec::new(),
                authz: None,
                jwt: None,
            }],
            clusters: [
                (
                    "hit".to_string(),
                    cluster("hit", &[hit], keel_snapshot::UpstreamProtocol::Tcp),
                ),
                (
                    "miss".to_string(),
                    cluster("miss", &[miss], keel_snapshot::UpstreamProtocol::Tcp),
                ),
            ]
            .into(),
        };
        let _p = start(snapshot, Duration::from_secs(30), Arc::new(SoOriginalDst)).await;
        assert_eq!(exchange(local(7000), b"q").await, b"by-original-dst:q");
        assert_eq!(exchange(local(15001), b"q").await, b"by-listener:q");
    }
}
