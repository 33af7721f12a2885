//! Istio's standard metrics and access logs (being written).
