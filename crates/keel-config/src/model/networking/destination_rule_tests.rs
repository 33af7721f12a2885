//! DestinationRule validation tests (Keel's own fixtures).
