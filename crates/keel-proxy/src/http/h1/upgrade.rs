//! Protocol upgrades (WebSocket and the like) across the proxy: once the upstream answers
//! `101 Switching Protocols`, both connections stop speaking HTTP and their bytes are
//! spliced.
//!
//! Each side hands its raw connection over through an extension on its message:
//! - the downstream request carries an [`OnUpgrade`] that the server fulfils after writing
//!   the `101` (with any bytes the client already sent after its request);
//! - the upstream response carries the upstream connection itself (with any bytes read
//!   past the `101` head).
//!
//! [`on`] takes either from its message; [`splice`] copies between them until both close.
//! No channel exists unless a request asks to upgrade.

use std::sync::{Arc, Mutex};

use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::oneshot;

/// A connection that no longer speaks HTTP.
pub trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

pub type Upgraded = Box<dyn Io>;

enum Source {
    Ready(Upgraded),
    Pending(oneshot::Receiver<Upgraded>),
}

/// The extension: taken once (extensions must be `Clone`, the connection can't be).
#[derive(Clone)]
struct Slot(Arc<Mutex<Option<Source>>>);

impl Slot {
    fn new(source: Source) -> Self {
        Slot(Arc::new(Mutex::new(Some(source))))
    }

    fn take(&self) -> Option<Source> {
        self.0.lock().ok().and_then(|mut s| s.take())
    }
}

/// The upgraded connection of one side, once available.
pub struct OnUpgrade(Option<Source>);

impl OnUpgrade {
    /// The connection, or `None` if the message was not upgraded.
    pub async fn get(self) -> Option<Upgraded> {
        match self.0? {
            Source::Ready(io) => Some(io),
            Source::Pending(rx) => rx.await.ok(),
        }
    }
}

/// The server's half of a pending downstream upgrade: fulfilled after the `101` is written.
pub struct Pending(oneshot::Sender<Upgraded>);

impl Pending {
    pub fn fulfil(self, io: Upgraded) {
        let _ = self.0.send(io);
    }
}

/// A pending upgrade for a downstream request: the extension to put on it, and the half
/// the server keeps.
pub fn pending() -> (Pending, impl Clone + Send + Sync + 'static) {
    let (tx, rx) = oneshot::channel();
    (Pending(tx), Slot::new(Source::Pending(rx)))
}

/// The extension for an upstream response whose connection is already upgraded.
pub fn ready(io: Upgraded) -> impl Clone + Send + Sync + 'static {
    Slot::new(Source::Ready(io))
}

/// Messages that may carry an upgrade.
pub trait Message {
    fn extensions_mut(&mut self) -> &mut http::Extensions;
}

impl<B> Message for http::Request<B> {
    fn extensions_mut(&mut self) -> &mut http::Extensions {
        http::Request::extensions_mut(self)
    }
}

impl Message for http::request::Parts {
    fn extensions_mut(&mut self) -> &mut http::Extensions {
        &mut self.extensions
    }
}

impl<B> Message for http::Response<B> {
    fn extensions_mut(&mut self) -> &mut http::Extensions {
        http::Response::extensions_mut(self)
    }
}

/// Takes the upgrade a message carries (`None` inside if it carries none, e.g. a message
/// from HTTP/2).
pub fn on<M: Message>(msg: &mut M) -> OnUpgrade {
    OnUpgrade(
        msg.extensions_mut()
            .remove::<Slot>()
            .and_then(|slot| slot.take()),
    )
}

/// Copies bytes both ways between the two upgraded connections until both sides close.
pub async fn splice(down: OnUpgrade, up: OnUpgrade) {
    if let (Some(mut d), Some(mut u)) = (down.get().await, up.get().await) {
        let _ = tokio::io::copy_bidirectional(&mut d, &mut u).await;
    }
}
