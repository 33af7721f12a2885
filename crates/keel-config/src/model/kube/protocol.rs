//! Port protocols: Kubernetes' transport protocol (`TCP`, `UDP`, `SCTP`) and the application
//! protocol the mesh infers from a port's `appProtocol` or name, following Istio's
//! `pkg/config/protocol` and `pkg/config/kube.ConvertProtocol`.

use std::fmt;

use serde::{Serialize, Serializer};

kube_enum! {
    /// `corev1.Protocol`, the transport of a port. Kubernetes defaults it to TCP.
    #[derive(Default)]
    pub enum Protocol {
        #[default]
        Tcp = "TCP",
        Udp = "UDP",
        Sctp = "SCTP",
    }
}

/// The application protocol of a port as Istio names it (`protocol.Instance`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum MeshProtocol {
    Grpc,
    GrpcWeb,
    Http,
    /// A generic outbound HTTP proxy port (Sidecar egress listeners only).
    HttpProxy,
    Http2,
    Https,
    Tcp,
    /// TLS with SNI.
    Tls,
    Udp,
    Mongo,
    Redis,
    MySql,
    /// Nothing recognisable: Istio sniffs the protocol on such ports.
    Unsupported,
}

impl MeshProtocol {
    /// Istio's spelling (`GRPC-Web`, `HTTP_PROXY`, `UnsupportedProtocol`, …).
    pub fn as_str(&self) -> &'static str {
        match self {
            MeshProtocol::Grpc => "GRPC",
            MeshProtocol::GrpcWeb => "GRPC-Web",
            MeshProtocol::Http => "HTTP",
            MeshProtocol::HttpProxy => "HTTP_PROXY",
            MeshProtocol::Http2 => "HTTP2",
            MeshProtocol::Https => "HTTPS",
            MeshProtocol::Tcp => "TCP",
            MeshProtocol::Tls => "TLS",
            MeshProtocol::Udp => "UDP",
            MeshProtocol::Mongo => "Mongo",
            MeshProtocol::Redis => "Redis",
            MeshProtocol::MySql => "MySQL",
            MeshProtocol::Unsupported => "UnsupportedProtocol",
        }
    }

    /// Istio's `protocol.Parse`: a protocol name, case-insensitive; anything else is
    /// [`MeshProtocol::Unsupported`].
    pub fn parse(s: &str) -> MeshProtocol {
        match s.to_ascii_lowercase().as_str() {
            "tcp" => MeshProtocol::Tcp,
            "udp" => MeshProtocol::Udp,
            "grpc" => MeshProtocol::Grpc,
            "grpc-web" => MeshProtocol::GrpcWeb,
            "http" => MeshProtocol::Http,
            "http_proxy" => MeshProtocol::HttpProxy,
            "http2" => MeshProtocol::Http2,
            "https" => MeshProtocol::Https,
            "tls" => MeshProtocol::Tls,
            "mongo" => MeshProtocol::Mongo,
            "redis" => MeshProtocol::Redis,
            "mysql" => MeshProtocol::MySql,
            _ => MeshProtocol::Unsupported,
        }
    }

    /// Protocols carried over HTTP/2.
    pub fn is_http2(&self) -> bool {
        matches!(
            self,
            MeshProtocol::Http2 | MeshProtocol::Grpc | MeshProtocol::GrpcWeb
        )
    }

    /// Protocols carried over HTTP (any version).
    pub fn is_http(&self) -> bool {
        matches!(
            self,
            MeshProtocol::Http
                | MeshProtocol::Http2
                | MeshProtocol::HttpProxy
                | MeshProtocol::Grpc
                | MeshProtocol::GrpcWeb
        )
    }

    /// Protocols the proxy handles as opaque TCP.
    pub fn is_tcp(&self) -> bool {
        matches!(
            self,
            MeshProtocol::Tcp
                | MeshProtocol::Https
                | MeshProtocol::Tls
                | MeshProtocol::Mongo
                | MeshProtocol::Redis
                | MeshProtocol::MySql
        )
    }

    pub fn is_tls(&self) -> bool {
        matches!(self, MeshProtocol::Https | MeshProtocol::Tls)
    }

    pub fn is_https(&self) -> bool {
        *self == MeshProtocol::Https
    }

    pub fn is_grpc(&self) -> bool {
        matches!(self, MeshProtocol::Grpc | MeshProtocol::GrpcWeb)
    }

    pub fn is_unsupported(&self) -> bool {
        *self == MeshProtocol::Unsupported
    }

    /// The protocol left once TLS is terminated (`HTTPS` → `HTTP`, `TLS` → `TCP`).
    pub fn after_tls_termination(&self) -> MeshProtocol {
        match self {
            MeshProtocol::Https => MeshProtocol::Http,
            MeshProtocol::Tls => MeshProtocol::Tcp,
            other => *other,
        }
    }
}

impl fmt::Display for MeshProtocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for MeshProtocol {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

/// Ports Istio treats as TCP when nothing names their protocol, because sniffing would break
/// them (server-first protocols): SMTP, DNS, MySQL, MongoDB.
const WELL_KNOWN_PORTS: [i32; 4] = [25, 53, 3306, 27017];

/// Istio's `kube.ConvertProtocol`: the mesh protocol of a Service, Endpoints or container
/// port. UDP transport wins; then `appProtocol` (including Kubernetes' `kubernetes.io/h2c`,
/// `kubernetes.io/ws`, `kubernetes.io/wss`); else the port name's prefix before the first
/// `-` (`http-web` → HTTP, `grpc-web*` → GRPC-Web). Unrecognised on a well-known
/// server-first port means TCP; otherwise [`MeshProtocol::Unsupported`] (sniffed).
pub fn convert_protocol(
    port: i32,
    name: &str,
    transport: Protocol,
    app_protocol: Option<&str>,
) -> MeshProtocol {
    if transport == Protocol::Udp {
        return MeshProtocol::Udp;
    }
    let mut name = name;
    if let Some(app) = app_protocol {
        match app {
            "kubernetes.io/h2c" => return MeshProtocol::Http2,
            "kubernetes.io/ws" => return MeshProtocol::Http,
            "kubernetes.io/wss" => return MeshProtocol::Https,
            _ => name = app,
        }
    }
    if name
        .get(..8)
        .is_some_and(|p| p.eq_ignore_ascii_case("grpc-web"))
    {
        return MeshProtocol::GrpcWeb;
    }
    let prefix = name.split_once('-').map_or(name, |(p, _)| p);
    let p = MeshProtocol::parse(prefix);
    if p == MeshProtocol::Unsupported && WELL_KNOWN_PORTS.contains(&port) {
        return MeshProtocol::Tcp;
    }
    p
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn istio_protocol_inference() {
        let tcp = Protocol::Tcp;
        let cases: &[(i32, &str, Protocol, Option<&str>, MeshProtocol)] = &[
            (80, "http", tcp, None, MeshProtocol::Http),
            (80, "http-web", tcp, None, MeshProtocol::Http),
            (80, "HTTP-web", tcp, None, MeshProtocol::Http),
            (80, "http2-x", tcp, None, MeshProtocol::Http2),
            (80, "grpc", tcp, None, MeshProtocol::Grpc),
            (80, "grpc-web", tcp, None, MeshProtocol::GrpcWeb),
            (80, "grpc-web-x", tcp, None, MeshProtocol::GrpcWeb),
            (80, "grpc-x", tcp, None, MeshProtocol::Grpc),
            (443, "https-x", tcp, None, MeshProtocol::Https),
            (80, "tcp-db", tcp, None, MeshProtocol::Tcp),
            (80, "tls", tcp, None, MeshProtocol::Tls),
            (80, "mongo-x", tcp, None, MeshProtocol::Mongo),
            (80, "mysql", tcp, None, MeshProtocol::MySql),
            (80, "redis", tcp, None, MeshProtocol::Redis),
            (80, "web", tcp, None, MeshProtocol::Unsupported),
            (80, "", tcp, None, MeshProtocol::Unsupported),
            (3306, "db", tcp, None, MeshProtocol::Tcp),
            (27017, "", tcp, None, MeshProtocol::Tcp),
            (53, "dns", Protocol::Udp, None, MeshProtocol::Udp),
            (80, "http", Protocol::Udp, None, MeshProtocol::Udp),
            // As in current Istio, a `udp` name prefix says UDP even on a TCP port.
            (80, "udp-x", tcp, None, MeshProtocol::Udp),
            (80, "web", tcp, Some("http"), MeshProtocol::Http),
            (80, "http", tcp, Some("grpc"), MeshProtocol::Grpc),
            (
                80,
                "http",
                tcp,
                Some("kubernetes.io/h2c"),
                MeshProtocol::Http2,
            ),
            (80, "tcp", tcp, Some("kubernetes.io/ws"), MeshProtocol::Http),
            (
                80,
                "tcp",
                tcp,
                Some("kubernetes.io/wss"),
                MeshProtocol::Https,
            ),
            (
                80,
                "http",
                tcp,
                Some("example.com/custom"),
                MeshProtocol::Unsupported,
            ),
            (3306, "http", tcp, Some("example.com/x"), MeshProtocol::Tcp),
        ];
        for (port, name, t, app, want) in cases {
            assert_eq!(
                convert_protocol(*port, name, *t, *app),
                *want,
                "{port} {name} {app:?}"
            );
        }
    }

    #[test]
    fn protocol_classes() {
        assert!(MeshProtocol::Grpc.is_http2() && MeshProtocol::Grpc.is_http());
        assert!(MeshProtocol::Https.is_tcp() && MeshProtocol::Https.is_tls());
        assert!(!MeshProtocol::Http.is_tcp());
        assert_eq!(
            MeshProtocol::Https.after_tls_termination(),
            MeshProtocol::Http
        );
        assert_eq!(MeshProtocol::Tls.after_tls_termination(), MeshProtocol::Tcp);
        assert_eq!(MeshProtocol::parse("HTTP_PROXY").as_str(), "HTTP_PROXY");
        assert_eq!(MeshProtocol::GrpcWeb.to_string(), "GRPC-Web");
        assert!(MeshProtocol::parse("quic").is_unsupported());
    }
}
