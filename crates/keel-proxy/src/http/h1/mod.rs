//! Keel's own HTTP/1.x codec, for the HTTP/1.1 → HTTP/1.1 path: downstream connections
//! ([`server`]) and upstream connections ([`client`]). HTTP/2 on both sides stays with hyper.
//!
//! Why not hyper here: a proxy speaking HTTP/1.1 on both sides spent most of its user-space
//! CPU in hyper's generic machinery — its server dispatcher, header-case maps, and above all
//! its client, where every request crosses a channel to a connection task and a oneshot back.
//! This codec adds no task and no channel: the task that serves a downstream connection
//! calls [`crate::http::forward::handle`] directly, and the upstream client writes the
//! request and reads the response in that same task, handing the connection back to its pool
//! when the response body ends. Measured with bench/proxy-instructions.sh (user-space
//! instructions per proxied request under callgrind): 42,000 with hyper on both sides,
//! about 27,000 with this codec.
//!
//! The pieces:
//! - [`parse`]: heads read with `httparse` into `http` types, and message framing
//!   (Content-Length, chunked, close-delimited) decided with the checks that keep requests
//!   from being smuggled past the proxy.
//! - [`decode`]: bodies as frames read from a connection's buffer (chunked with trailers).
//! - [`encode`]: heads and body framing written back, header names in their original case.
//! - [`case`]: header names written in their original case.
//! - [`cache`]: names and a header map kept per connection from one head to the next.
//! - [`io`]: the read buffer and the vectored write queue shared by both sides.
//! - [`server`], [`server_body`]: one downstream connection; the request body reads from it;
//!   `deadline`: the head-read and idle limits.
//! - [`client`]: one upstream exchange, its response body, connection reuse.
//! - [`upgrade`]: `101 Switching Protocols` on both sides, spliced byte for byte.
//!
//! **Header case.** HTTP/1 header names are case-insensitive, but some clients and servers
//! are not: every header goes out spelled as it came in, and names the proxy added go out in
//! lower case, as hyper writes them ([`case`] says how that costs next to nothing).

pub mod cache;
pub mod case;
pub mod client;
mod deadline;
pub mod decode;
pub mod encode;
pub mod io;
pub mod parse;
pub mod server;
pub mod server_body;
pub mod upgrade;

#[cfg(test)]
mod proptests;
#[cfg(test)]
mod tests;

use std::time::Duration;

pub use case::HeaderCase;

/// The largest request or response head accepted: Envoy's default `max_request_headers_kb`
/// (60 KiB). Larger request heads are answered `431`.
pub const MAX_HEAD: usize = 60 * 1024;

/// The most header fields a head may have (hyper's default, and Envoy's
/// `max_headers_count` is 100 too). More are answered `431`.
pub const MAX_HEADERS: usize = 100;

/// How long a client has to send a complete request head, counted from when the proxy
/// starts waiting for it: a new connection's first request, or a head that has begun to
/// arrive. hyper's default `header_read_timeout`.
pub const HEADER_TIMEOUT: Duration = Duration::from_secs(30);

/// How long a keep-alive connection may sit idle between requests: Envoy's default
/// `idle_timeout` for downstream HTTP connections (1 hour), so client pools keep their
/// connections as they do with Istio's sidecars.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(3600);
