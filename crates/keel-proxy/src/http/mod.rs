//! HTTP: serving downstream connections (HTTP/1.1 and HTTP/2) and forwarding requests.

pub mod actions;
pub mod forward;
pub mod headers;
pub mod observe;
pub mod server;
