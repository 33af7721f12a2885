//! Opaque TCP (and TLS passed through): pick the route by destination (and SNI), a cluster
//! by weight, an endpoint by the cluster's balancer, connect, then copy bytes both ways
//! ([`super::splice`]) until each side has closed its half, the connection idles out, or the
//! drain deadline passes.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use keel_snapshot::{L4Match, LbPolicy, TcpRoute, TlsRoute, WeightedCluster};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;

use super::detect::Rewind;
use super::exchange::exchange;
use super::sni::sni_matches;
use super::splice::{DEFAULT_IDLE_TIMEOUT, End, Limits, splice};
use crate::balance::PickContext;
use crate::error::ProxyError;
use crate::http::forward::{choose_weighted, resolve};
use crate::server::{ConnInfo, Shared};
use crate::telemetry::peer_exchange::{TCP_ALPN, own_tcp_frame};
use crate::telemetry::{Peer, Reporter, TcpRecord};
use crate::tls::mesh::Carries;
use crate::tls::upstream::UpstreamIo;

/// Where the client was going: the original destination for redirected connections, else
/// the address it connected to.
pub fn destination(conn: &ConnInfo) -> SocketAddr {
    conn.original_dst.unwrap_or(conn.local)
}

/// Whether an L4 match holds for a connection to `dst` (with `sni` for TLS). Matches that
/// name the calling workload (`sourceLabels`, `sourceNamespace`) never hold here: the proxy
/// does not know its peer, so compilation resolves them for sidecars (Istio does the same)
/// and they select nothing elsewhere.
pub fn l4_matches(m: &L4Match, dst: SocketAddr, sni: Option<&str>) -> bool {
    if !m.sni_hosts.is_empty() {
        let Some(name) = sni else { return false };
        if !m.sni_hosts.iter().any(|p| sni_matches(p, name)) {
            return false;
        }
    }
    if m.port.is_some_and(|p| p != dst.port()) {
        return false;
    }
    if !m.destination_subnets.is_empty()
        && !m
            .destination_subnets
            .iter()
            .any(|s| subnet_contains(s, dst.ip()))
    {
        return false;
    }
    m.source_labels.is_empty() && m.source_namespace.is_none()
}

/// `10.0.0.0/8`, `10.1.2.3` or `2001:db8::/32` contains `ip` (IPv4-mapped IPv6 addresses
/// count as IPv4). An unparsable entry contains nothing.
pub fn subnet_contains(subnet: &str, ip: IpAddr) -> bool {
    let ip = ip.to_canonical();
    if let Ok(net) = subnet.parse::<ipnet::IpNet>() {
        return net.contains(&ip);
    }
    subnet
        .parse::<IpAddr>()
        .is_ok_and(|a| a.to_canonical() == ip)
}

/// The first TCP route whose matches hold (a route without matches takes everything).
pub fn find_tcp_route(routes: &[TcpRoute], dst: SocketAddr) -> Option<&TcpRoute> {
    routes
        .iter()
        .find(|r| r.matches.is_empty() || r.matches.iter().any(|m| l4_matches(m, dst, None)))
}

/// The first TLS route whose matches hold for the server name.
pub fn find_tls_route<'a>(
    routes: &'a [TlsRoute],
    dst: SocketAddr,
    sni: Option<&str>,
) -> Option<&'a TlsRoute> {
    routes
        .iter()
        .find(|r| r.matches.iter().any(|m| l4_matches(m, dst, sni)))
}

/// Proxies `downstream` (with any bytes already read replayed in front of it) to one of the
/// route's clusters. Every failure closes the connection and logs the flagged sentence an
/// HTTP request would get in `x-keel-error`.
pub async fn forward<S>(
    shared: &Arc<Shared>,
    conn: &ConnInfo,
    route: &str,
    clusters: &[WeightedCluster],
    mut downstream: S,
) where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let started = std::time::Instant::now();
    let mut record = TcpRecord {
        reporter: conn.reporter,
        start_time: std::time::SystemTime::now(),
        downstream_local_address: Some(conn.local),
        downstream_remote_address: Some(conn.remote),
        route_name: Some(route.to_string()),
        ..Default::default()
    };
    // The inbound side knows its client from the handshake and the metadata exchange.
    if conn.reporter == Reporter::Destination {
        record.peer = Peer {
            workload: conn.peer_workload.clone(),
            principal: conn.peer_identity.as_deref().map(str::to_string),
        };
    }
    let Connected {
        mut upstream,
        cluster,
        endpoint,
        guard: _guard,
        peer,
    } = match connect(shared, conn, clusters).await {
        Ok(x) => x,
        Err(e) => {
            tracing::warn!(listener = %conn.listener, downstream = %conn.remote, route, "{e}");
            record.response_flags = e.flag.to_string();
            record.error = Some(e.to_string());
            record.duration = started.elapsed();
            shared.telemetry.tcp_opened(&record);
            shared.telemetry.tcp_closed(&record);
            return;
        }
    };
    if conn.reporter == Reporter::Source {
        record.peer = peer;
    }
    if let Some(c) = shared.runtime.load().clusters.get(&cluster) {
        record.service = Some(c.service.clone());
    }
    record.upstream_cluster = Some(cluster.clone());
    record.upstream_host = upstream.get_ref().tcp().peer_addr().ok();
    record.upstream_local_address = upstream.get_ref().tcp().local_addr().ok();
    shared.telemetry.tcp_opened(&record);
    let limits = Limits {
        idle: idle_timeout(shared, &cluster),
        drain: shared.drain.subscribe(),
        drain_timeout: shared.l4.drain_timeout,
    };
    let copied = splice(&mut downstream, &mut upstream, limits).await;
    record.bytes_received = copied.from_client;
    record.bytes_sent = copied.from_server;
    let (bytes_sent, bytes_received) = (copied.from_server, copied.from_client);
    match copied.end {
        End::Closed => tracing::debug!(
            listener = %conn.listener, downstream = %conn.remote, route, cluster, endpoint,
            bytes_sent, bytes_received, "TCP connection closed"
        ),
        // A reset on either side ends the connection; there is no one to tell but the log.
        End::Failed(e) => tracing::debug!(
            listener = %conn.listener, downstream = %conn.remote, route, cluster, endpoint,
            bytes_sent, bytes_received, "TCP connection ended: {e}"
        ),
        End::Idle(after) => {
            tracing::debug!(
                listener = %conn.listener, downstream = %conn.remote, route, cluster, endpoint,
                bytes_sent, bytes_received,
                "TCP connection closed: no bytes either way for {after:?} (the cluster's connectionPool.tcp.idleTimeout)"
            );
            record.connection_termination_details = Some("idle_timeout".into());
        }
        End::Drained(after) => {
            tracing::debug!(
                listener = %conn.listener, downstream = %conn.remote, route, cluster, endpoint,
                bytes_sent, bytes_received,
                "TCP connection closed: still open {after:?} after the proxy started draining"
            );
            record.connection_termination_details = Some("drain_timeout".into());
        }
    }
    record.duration = started.elapsed();
    shared.telemetry.tcp_closed(&record);
}

/// The cluster's `connectionPool.tcp.idleTimeout`: unset is Istio's hour, `0s` never.
fn idle_timeout(shared: &Shared, cluster: &str) -> Option<Duration> {
    let configured = shared
        .runtime
        .load()
        .clusters
        .get(cluster)
        .and_then(|c| c.cluster.traffic_policy.as_ref())
        .and_then(|p| p.connection_pool.as_ref())
        .and_then(|p| p.tcp.as_ref())
        .and_then(|t| t.idle_timeout);
    match configured {
        None => Some(DEFAULT_IDLE_TIMEOUT),
        Some(d) if d.nanos <= 0 => None,
        Some(d) => Some(Duration::from_nanos(
            u64::try_from(d.nanos).unwrap_or(u64::MAX),
        )),
    }
}

/// An upstream connection, ready for the client's bytes.
struct Connected {
    /// With the server's bytes that came behind its metadata frame put back in front.
    upstream: Rewind<UpstreamIo>,
    cluster: String,
    endpoint: String,
    /// Counts the connection as active on the endpoint for as long as it is held.
    guard: crate::balance::ActiveRequest,
    /// The server's workload (the registry's, or what its proxy said in the metadata
    /// exchange) and, over mesh mTLS, its verified identity.
    peer: Peer,
}

/// Chooses cluster and endpoint, connects, and (over mesh mTLS that agreed to it) exchanges
/// peer metadata.
async fn connect(
    shared: &Arc<Shared>,
    conn: &ConnInfo,
    clusters: &[WeightedCluster],
) -> Result<Connected, ProxyError> {
    let rt = shared.runtime.load_full();
    let wc = choose_weighted(clusters)
        .ok_or_else(|| ProxyError::no_healthy_upstream("(route has no destination)"))?;
    let cluster = rt
        .clusters
        .get(&wc.cluster)
        .ok_or_else(|| ProxyError::no_cluster(&wc.cluster))?;
    if cluster.cluster.lb == LbPolicy::Passthrough && conn.original_dst.is_none() {
        return Err(ProxyError::no_original_dst(&wc.cluster));
    }
    let headers = http::HeaderMap::new();
    let pick = cluster
        .balancer
        .pick(&PickContext {
            headers: &headers,
            source_ip: Some(conn.remote.ip()),
            query: None,
            exclude: &[],
            original_dst: conn.original_dst,
            other_levels: false,
        })
        .ok_or_else(|| ProxyError::no_healthy_upstream(&wc.cluster))?;
    let endpoint = pick.address.to_string();
    let addr = resolve(&pick.address)
        .await
        .map_err(|cause| ProxyError::connect_failed(&wc.cluster, &endpoint, &cause))?;
    let timeout = shared.l4.connect_timeout;
    let stream = match tokio::time::timeout(timeout, TcpStream::connect(addr)).await {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => {
            return Err(ProxyError::connect_failed(
                &wc.cluster,
                &endpoint,
                &e.to_string(),
            ));
        }
        Err(_) => {
            return Err(ProxyError::connect_failed(
                &wc.cluster,
                &endpoint,
                &format!("connect timeout after {timeout:?}"),
            ));
        }
    };
    let _ = stream.set_nodelay(true);
    let key = cluster.policies.breakers.id();
    let mut io = shared
        .pools
        .secure(key, addr, Carries::TcpExchange, stream)
        .await
        .map_err(|e| {
            let cause = match e {
                crate::upstream::SendError::Connect(c) | crate::upstream::SendError::Reset(c) => c,
                crate::upstream::SendError::Overflow(_) => "connection pool full".to_string(),
            };
            ProxyError::connect_failed(&wc.cluster, &endpoint, &cause)
        })?;
    let mut peer = Peer {
        workload: cluster.peer(pick.index),
        principal: io
            .is_mtls()
            .then(|| shared.pools.mesh_peer(key, addr))
            .flatten(),
    };
    let mut rest = Vec::new();
    if io.alpn() == Some(TCP_ALPN) {
        let frame = own_tcp_frame(shared.telemetry.peer_exchange());
        let x = exchange(&mut io, frame, shared.l4.hello_timeout)
            .await
            .map_err(|e| {
                ProxyError::connect_failed(
                    &wc.cluster,
                    &endpoint,
                    &format!("TCP metadata exchange: {e}"),
                )
            })?;
        // What the server's proxy says beats what the registry guessed.
        if x.peer.is_some() {
            peer.workload = x.peer;
        }
        rest = x.rest;
    }
    Ok(Connected {
        upstream: Rewind::new(rest, io),
        cluster: wc.cluster.clone(),
        endpoint,
        guard: pick.guard,
        peer,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(subnets: &[&str], port: Option<u16>) -> L4Match {
        L4Match {
            destination_subnets: subnets.iter().map(|s| s.to_string()).collect(),
            port,
            ..Default::default()
        }
    }

    #[test]
    fn destination_matching() {
        let dst: SocketAddr = "10.1.2.3:3306".parse().expect("addr");
        assert!(l4_matches(&m(&[], None), dst, None));
        assert!(l4_matches(&m(&["10.0.0.0/8"], Some(3306)), dst, None));
        assert!(l4_matches(&m(&["10.1.2.3"], None), dst, None));
        assert!(!l4_matches(&m(&["10.1.2.4"], None), dst, None));
        assert!(!l4_matches(&m(&["10.0.0.0/8"], Some(3307)), dst, None));
        assert!(!l4_matches(&m(&["not a subnet"], None), dst, None));
        let mapped: SocketAddr = "[::ffff:10.1.2.3]:3306".parse().expect("addr");
        assert!(l4_matches(&m(&["10.1.0.0/16"], None), mapped, None));
        let mut with_source = m(&[], None);
        with_source.source_namespace = Some("prod".into());
        assert!(!l4_matches(&with_source, dst, None));
    }

    #[test]
    fn sni_matching() {
        let dst: SocketAddr = "127.0.0.1:443".parse().expect("addr");
        let tls = L4Match {
            sni_hosts: vec!["*.example.com".into()],
            ..Default::default()
        };
        assert!(l4_matches(&tls, dst, Some("a.example.com")));
        assert!(!l4_matches(&tls, dst, Some("a.example.org")));
        assert!(!l4_matches(&tls, dst, None));
    }
}
