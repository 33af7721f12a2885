//! The `keel-proxy` binary.
fn main() {}
