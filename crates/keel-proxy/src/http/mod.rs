//! HTTP: serving downstream connections (HTTP/1.1, HTTP/2 and the h2c upgrade) and forwarding requests.

pub mod actions;
pub mod attempts;
pub mod forward;
pub mod h1;
pub mod h2c;
pub mod headers;
pub mod observe;
pub mod server;
