//! Where a connection redirected by iptables (`REDIRECT` to 15001/15006) was going: the
//! `SO_ORIGINAL_DST` socket option, behind a trait so tests (and platforms without it) can
//! supply the answer themselves.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use tokio::net::TcpStream;

/// Looks up a connection's original destination.
pub trait OriginalDst: Send + Sync + 'static {
    /// `None` when the connection was not redirected (or the platform can't tell).
    fn original_dst(&self, stream: &TcpStream) -> Option<SocketAddr>;
}

/// The kernel's answer: `SO_ORIGINAL_DST` / `IP6T_SO_ORIGINAL_DST` (Linux netfilter), read
/// through socket2 so no unsafe code is needed here.
#[derive(Debug, Clone, Copy, Default)]
pub struct SoOriginalDst;

impl OriginalDst for SoOriginalDst {
    #[cfg(any(target_os = "linux", target_os = "android"))]
    fn original_dst(&self, stream: &TcpStream) -> Option<SocketAddr> {
        let local = stream.local_addr().ok()?;
        let local = SocketAddr::new(local.ip().to_canonical(), local.port());
        let sock = socket2::SockRef::from(stream);
        // An IPv4 client on a dual-stack socket is NATed by iptables, not ip6tables.
        let addr = match local {
            SocketAddr::V4(_) => sock.original_dst_v4(),
            SocketAddr::V6(_) => sock.original_dst_v6(),
        }
        .ok()?
        .as_socket()?;
        // Conntrack answers for connections that were not NATed too, with the address they
        // were accepted on: that is no original destination.
        (addr != local).then_some(addr)
    }

    #[cfg(not(any(target_os = "linux", target_os = "android")))]
    fn original_dst(&self, _stream: &TcpStream) -> Option<SocketAddr> {
        None
    }
}

/// Never an original destination (gateways, and proxies not behind iptables).
#[derive(Debug, Clone, Copy, Default)]
pub struct NoOriginalDst;

impl OriginalDst for NoOriginalDst {
    fn original_dst(&self, _stream: &TcpStream) -> Option<SocketAddr> {
        None
    }
}

/// Listener ports that stand for a port of the workload: a connection to one counts as
/// addressed to that port (the local mesh has no iptables; `--app-port PORT=LOCAL`). A real
/// redirect still wins.
pub struct PortAliases {
    inner: Arc<dyn OriginalDst>,
    ports: std::collections::HashMap<u16, u16>,
}

impl PortAliases {
    pub fn new(
        inner: Arc<dyn OriginalDst>,
        ports: impl IntoIterator<Item = (u16, u16)>,
    ) -> PortAliases {
        PortAliases {
            inner,
            ports: ports.into_iter().collect(),
        }
    }
}

impl OriginalDst for PortAliases {
    fn original_dst(&self, stream: &TcpStream) -> Option<SocketAddr> {
        self.inner.original_dst(stream).or_else(|| {
            // Most sidecars have no aliases: no local_addr() call for them.
            if self.ports.is_empty() {
                return None;
            }
            let local = stream.local_addr().ok()?;
            let port = self.ports.get(&local.port())?;
            Some(SocketAddr::new(local.ip(), *port))
        })
    }
}

/// A settable answer, for tests: every connection reports the address last set, as if
/// iptables had redirected it from there.
#[derive(Debug, Clone, Default)]
pub struct FixedOriginalDst(Arc<Mutex<Option<SocketAddr>>>);

impl FixedOriginalDst {
    pub fn new(addr: Option<SocketAddr>) -> Self {
        FixedOriginalDst(Arc::new(Mutex::new(addr)))
    }

    pub fn set(&self, addr: Option<SocketAddr>) {
        if let Ok(mut a) = self.0.lock() {
            *a = addr;
        }
    }
}

impl OriginalDst for FixedOriginalDst {
    fn original_dst(&self, _stream: &TcpStream) -> Option<SocketAddr> {
        self.0.lock().ok().and_then(|a| *a)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_direct_connection_has_no_original_destination() {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = l.local_addr().expect("addr");
        let _c = TcpStream::connect(addr).await.expect("connect");
        let (s, _) = l.accept().await.expect("accept");
        assert_eq!(SoOriginalDst.original_dst(&s), None);
        assert_eq!(NoOriginalDst.original_dst(&s), None);
        let fake = FixedOriginalDst::new(Some(([10, 0, 0, 1], 80).into()));
        assert_eq!(fake.original_dst(&s), Some(([10, 0, 0, 1], 80).into()));
        // The listener's port stands for the workload's 8080; a real redirect would win.
        let aliased = PortAliases::new(Arc::new(NoOriginalDst), [(addr.port(), 8080)]);
        assert_eq!(
            aliased.original_dst(&s),
            Some(([127, 0, 0, 1], 8080).into())
        );
        let other = PortAliases::new(Arc::new(NoOriginalDst), [(addr.port() ^ 1, 8080)]);
        assert_eq!(other.original_dst(&s), None);
        let redirected = PortAliases::new(Arc::new(fake), [(addr.port(), 8080)]);
        assert_eq!(
            redirected.original_dst(&s),
            Some(([10, 0, 0, 1], 80).into())
        );
    }
}
