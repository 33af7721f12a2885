//! When the mesh is ready: every sidecar has its configuration and every app listens.

use std::time::{Duration, Instant};

use keel_control::xds::{ProxyRegistry, SyncState};

use super::plan::{Ports, Replica};
use super::{Proc, exited};

/// How long the processes have to become ready.
const READY_WITHIN: Duration = Duration::from_secs(60);

/// A plain HTTP GET on loopback: the status code.
pub(super) async fn http_status(port: u16, path: &str) -> Option<u16> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .ok()?;
    s.write_all(format!("GET {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n").as_bytes())
        .await
        .ok()?;
    let mut buf = vec![0u8; 64];
    let n = s.read(&mut buf).await.ok()?;
    let line = String::from_utf8_lossy(&buf[..n]).to_string();
    line.split_whitespace().nth(1)?.parse().ok()
}

/// Whether every port accepts connections.
pub(super) async fn apps_listen(ports: &[u16]) -> bool {
    for port in ports {
        if tokio::net::TcpStream::connect(("127.0.0.1", *port))
            .await
            .is_err()
        {
            return false;
        }
    }
    true
}

/// Waits (at most `within`) until every connected proxy has acknowledged a configuration from
/// store version `version` or later, or rejected one: a pod deregistered at `version` then
/// gets no new connections, as Kubernetes waits out endpoint propagation before a pod's
/// processes stop (its sidecar's drain, its `terminationGracePeriodSeconds`).
pub(super) async fn wait_for_proxies(registry: &ProxyRegistry, version: u64, within: Duration) {
    let deadline = Instant::now() + within;
    let settled = |p: &keel_control::xds::ProxyStatus| {
        let from = p
            .control_plane_version
            .parse::<u64>()
            .is_ok_and(|v| v >= version);
        from && (p.types.values().all(|t| t.state == SyncState::Synced)
            || p.types.values().any(|t| t.state == SyncState::Nack))
    };
    while Instant::now() < deadline && !registry.list().iter().all(settled) {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Why the sidecar `node` rejected its configuration, if it did. A sidecar that can't bind a
/// listener rejects the configuration naming it, and would never become ready: this says so
/// at once, with the reason, instead of after the readiness timeout.
pub(super) fn rejected(registry: &ProxyRegistry, node: &str) -> Option<String> {
    let status = registry.get(node)?;
    status
        .types
        .values()
        .filter(|t| t.state == SyncState::Nack)
        .find_map(|t| t.nack_reason.clone())
}

/// Waits until every sidecar has its configuration and every app listens ([`READY_WITHIN`]
/// at most); fails as soon as a process exits or a sidecar rejects its configuration.
pub(super) async fn wait_ready(
    replicas: &[Replica],
    ports: &[Ports],
    procs: &mut [Proc],
    registry: &ProxyRegistry,
) -> Result<(), String> {
    let deadline = Instant::now() + READY_WITHIN;
    for (r, p) in replicas.iter().zip(ports) {
        let mut proxy_ready = !r.inject;
        let mut app_ready = false;
        let node = format!("{}.{}", r.pod, r.namespace);
        loop {
            if let Some(what) = exited(procs) {
                return Err(format!("{what} exited while starting (see its log)"));
            }
            if !proxy_ready {
                if let Some(reason) = rejected(registry, &node) {
                    return Err(format!(
                        "the sidecar of {} rejected its configuration: {reason}",
                        r.pod
                    ));
                }
                proxy_ready = http_status(p.admin, "/healthz/ready").await == Some(200);
            }
            if !app_ready {
                app_ready = apps_listen(&p.listening(r)).await;
            }
            if proxy_ready && app_ready {
                say!("✔ {}.{} ready", r.pod, r.namespace);
                break;
            }
            if Instant::now() > deadline {
                return Err(format!(
                    "{} not ready within {} s (sidecar {}, app {})",
                    r.pod,
                    READY_WITHIN.as_secs(),
                    if proxy_ready { "ready" } else { "not ready" },
                    if app_ready {
                        "listening"
                    } else {
                        "not listening"
                    }
                ));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use keel_control::xds::ProxyStatus;

    #[test]
    fn a_rejected_configuration_is_reported_with_the_proxys_reason() {
        let registry = ProxyRegistry::default();
        assert_eq!(rejected(&registry, "reviews-v1-0.default"), None);
        let reason = "listener virtualInbound cannot bind 127.0.0.1:40000: Address already in use";
        let status: ProxyStatus = serde_json::from_value(serde_json::json!({
            "name": "reviews-v1-0.default",
            "namespace": "default",
            "kind": "sidecar",
            "connectedSince": "2026-01-01T00:00:00Z",
            "controlPlaneVersion": "3",
            "types": {
                "clusters": {"state": "SYNCED", "resources": 4, "sent": 1, "acks": 1, "nacks": 0},
                "listeners": {"state": "NACK", "nackReason": reason, "resources": 0, "sent": 1, "acks": 0, "nacks": 1},
            },
        }))
        .unwrap();
        registry.update(1, status);
        assert_eq!(
            rejected(&registry, "reviews-v1-0.default").as_deref(),
            Some(reason)
        );
        assert_eq!(rejected(&registry, "ratings-v1-0.default"), None);
    }
}
