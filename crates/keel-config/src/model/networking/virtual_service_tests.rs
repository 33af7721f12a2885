//! VirtualService validation tests (Keel's own fixtures).
