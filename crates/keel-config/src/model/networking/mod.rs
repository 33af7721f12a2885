//! `networking.istio.io`: traffic management kinds (v1, v1beta1 and v1alpha3 share one schema).

pub mod destination_rule;
pub(crate) mod destination_rule_validate;
pub mod envoy_filter;
pub mod gateway;
mod net_regex;
pub(crate) mod net_rules;
pub mod proxy_config;
pub mod service_entry;
pub mod sidecar;
pub mod virtual_service;
mod virtual_service_http;
mod virtual_service_unreachable;
pub(crate) mod virtual_service_validate;
pub mod workload_entry;
pub mod workload_group;

pub use destination_rule::DestinationRule;
pub use envoy_filter::EnvoyFilter;
pub use gateway::Gateway;
pub use proxy_config::ProxyConfig;
pub use service_entry::ServiceEntry;
pub use sidecar::Sidecar;
pub use virtual_service::VirtualService;
pub use workload_entry::WorkloadEntry;
pub use workload_group::WorkloadGroup;
