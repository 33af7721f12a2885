//! Loopback ports for the mesh's processes ([`Ports`]: those of one replica), reserved from
//! the moment they are chosen until the mesh stops.
//!
//! The ports must be known before anything starts: the app's `PORT`, its `HTTP_PROXY`, the
//! sidecar's listener ports (which it sends the control plane as node metadata) and the
//! WorkloadEntry that registers the replica all name them. Choosing a port by binding port 0
//! and closing the socket again, as `keel up` first did, leaves a window until the child binds
//! it: any other process's `bind(port 0)` can be handed the same port in between. With several
//! meshes starting at once (parallel tests) that happened within a few dozen starts: a sidecar
//! rejected its configuration ("cannot bind 127.0.0.1:P: Address already in use") or an app
//! exited, and a port another mesh had registered could end up served by the wrong process.
//!
//! So a [`PortReservation`] keeps each port bound for as long as the mesh runs, by a socket that
//! sets `SO_REUSEADDR` and never listens. On Linux that closes the window instead of narrowing
//! it: the kernel never hands a bound port to another `bind(port 0)` nor to an outgoing
//! connection, yet a socket that also sets `SO_REUSEADDR` may bind and listen on it as long as
//! no socket is listening there — and every server Keel starts does set it (tokio's and std's
//! listeners; so do Go's, Node's, Java's and Python's `http.server`).
//!
//! The alternatives, and why not: children binding port 0 and reporting the port back needs
//! every app to cooperate and would start sidecars before their ports are registered; handing
//! the bound socket to the child needs file-descriptor passing, i.e. unsafe code (forbidden in
//! this workspace) and apps that accept an inherited socket; retrying after `EADDRINUSE` means
//! restarting processes and re-registering them, and each retry has the same window. What is
//! left: a command given with `--run` or `keel.dev/run` may not set `SO_REUSEADDR`, so its own
//! port is released just before it starts ([`PortReservation::release`]); a program that binds
//! a fixed port it once got from the kernel can still collide, and the readiness check names
//! the process that failed. Elsewhere than Linux, where `SO_REUSEADDR` doesn't allow binding a
//! bound address, every port is released just before the processes start, as before.

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddr};

use tokio::net::TcpSocket;

use super::plan::Replica;

/// Whether a child can bind a port while [`PortReservation`] holds it (see the module docs).
pub const SHAREABLE: bool = cfg!(target_os = "linux");

/// Loopback ports held for the mesh's processes; dropping it frees them.
#[derive(Default)]
pub struct PortReservation {
    held: BTreeMap<u16, TcpSocket>,
}

impl PortReservation {
    /// A free loopback port, held from now on.
    pub fn reserve(&mut self) -> std::io::Result<u16> {
        let socket = TcpSocket::new_v4()?;
        socket.set_reuseaddr(true)?;
        socket.bind(SocketAddr::from((Ipv4Addr::LOCALHOST, 0)))?;
        let port = socket.local_addr()?.port();
        self.held.insert(port, socket);
        Ok(port)
    }

    /// Stops holding `port`, for a process that may not be able to share it.
    pub fn release(&mut self, port: u16) {
        self.held.remove(&port);
    }

    /// Stops holding every port.
    pub fn release_all(&mut self) {
        self.held.clear();
    }
}

/// The loopback ports one replica was given.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ports {
    /// The local port of each of the replica's `ports`, in order.
    pub app: Vec<u16>,
    /// The sidecar's inbound listener for each of [`Replica::inbound_targets`], in order.
    pub inbound: Vec<u16>,
    pub outbound: u16,
    pub admin: u16,
}

impl Ports {
    /// Reserves the ports `r` needs.
    pub fn reserve(r: &Replica, reserved: &mut PortReservation) -> std::io::Result<Ports> {
        let mut take = |n: usize| {
            (0..n)
                .map(|_| reserved.reserve())
                .collect::<std::io::Result<Vec<u16>>>()
        };
        Ok(Ports {
            app: take(r.ports.len())?,
            inbound: take(r.inbound_targets().len())?,
            outbound: reserved.reserve()?,
            admin: reserved.reserve()?,
        })
    }

    /// Every port, for releasing them.
    pub fn all(&self) -> impl Iterator<Item = u16> + '_ {
        self.app
            .iter()
            .chain(&self.inbound)
            .copied()
            .chain([self.outbound, self.admin])
    }

    /// Container `i`'s `PORT`.
    pub fn port_of(&self, r: &Replica, i: usize) -> Option<u16> {
        r.port_of(i).and_then(|k| self.app.get(k).copied())
    }

    /// The local port of the pod port numbered `n`.
    pub fn local(&self, r: &Replica, n: u16) -> Option<u16> {
        let k = r.ports.iter().position(|p| p.port == n)?;
        self.app.get(k).copied()
    }

    /// Where the containers that declare ports are expected to listen: each one's first port.
    pub fn listening(&self, r: &Replica) -> Vec<u16> {
        (0..r.containers.len())
            .filter(|i| !r.containers[*i].ports.is_empty())
            .filter_map(|i| self.port_of(r, i))
            .collect()
    }

    /// `PORT_<containerPort>` for every numbered port of the pod.
    pub fn env(&self, r: &Replica) -> Vec<(String, String)> {
        r.ports
            .iter()
            .zip(&self.app)
            .filter(|(p, _)| p.port != 0)
            .map(|(p, local)| (format!("PORT_{}", p.port), local.to_string()))
            .collect()
    }

    /// Where the Services' traffic for pod port `n` arrives: its sidecar inbound listener, or
    /// the app's own port without a sidecar.
    pub fn endpoint(&self, r: &Replica, n: u16) -> Option<u16> {
        if !r.inject {
            return self.local(r, n);
        }
        let k = r.ports.iter().position(|p| p.port == n)?;
        let at = r.inbound_targets().iter().position(|t| *t == k)?;
        self.inbound.get(at).copied()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    #[tokio::test]
    async fn a_reserved_port_is_never_handed_out_again_but_its_process_can_listen_on_it() {
        let mut ports = PortReservation::default();
        let port = ports.reserve().unwrap();
        // Other ephemeral binds (here a few hundred) never get the reserved port.
        let others: Vec<std::net::TcpListener> = (0..300)
            .map(|_| std::net::TcpListener::bind("127.0.0.1:0").unwrap())
            .collect();
        assert!(
            others
                .iter()
                .all(|l| l.local_addr().unwrap().port() != port)
        );
        if SHAREABLE {
            // The child's listener (tokio's, like keel-proxy's and keel-sample's) binds it
            // while the reservation still holds it, and accepts connections.
            let child = tokio::net::TcpListener::bind(("127.0.0.1", port))
                .await
                .expect("a listener sharing the reserved port");
            let (connected, accepted) = tokio::join!(
                tokio::net::TcpStream::connect(("127.0.0.1", port)),
                child.accept()
            );
            connected.unwrap();
            accepted.unwrap();
            // A second listener on the same port is refused, as without a reservation.
            assert!(
                tokio::net::TcpListener::bind(("127.0.0.1", port))
                    .await
                    .is_err()
            );
        }
        ports.release(port);
        assert!(ports.held.is_empty());
    }
}
