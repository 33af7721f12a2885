//! Typed models of every kind Keel reads.

pub mod common;
pub mod extensions;
pub mod gateway_api;
pub mod kube;
pub mod networking;
pub mod security;
pub mod telemetry;
