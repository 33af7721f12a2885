//! TLS the proxy terminates itself (gateway servers); TLS it only routes (passthrough) is in
//! [`crate::l4::sni`], and the workload identity for mTLS in [`crate::identity`].

pub mod mesh;
pub mod origin;
pub mod terminate;
pub mod upstream;
pub mod verify;
pub mod xfcc;
