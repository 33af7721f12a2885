//! ServiceEntry analyzers.
//!
//! `serviceentry.Analyzer` (Istio's `ProtocolAddressesAnalyzer`):
//! - IST0134 ServiceEntryAddressesRequired: a ServiceEntry without `addresses` (and without
//!   allocated `status.addresses`) has a port whose protocol is TCP or unset — such ports are
//!   matched by IP, so without one they capture nothing. Not reported when the mesh
//!   auto-allocates addresses (`defaultConfig.proxyMetadata`: `ISTIO_META_DNS_CAPTURE=true`
//!   and `ISTIO_META_DNS_AUTO_ALLOCATE=true` or `PILOT_ENABLE_IP_AUTOALLOCATE=true`).
//!   One message per such port, at the port's `name`.
//!
//! `serviceentry.ConflictingServiceEntryProtocolAnalyzer`:
//! - IST0177 ConflictingServiceEntryProtocol: ServiceEntries visible in a common scope
//!   declare the same host (as written) and port number with different protocols
//!   (compared upper-cased; an empty protocol is a protocol of its own). Each ServiceEntry
//!   is reported once, at `metadata.name`.

use std::collections::{BTreeMap, BTreeSet};

use keel_config::Resource;
use keel_config::yaml::Node;

use super::Analyzer;
use super::util_an2::{EXPORT_TO_ALL, EXPORT_TO_LOCAL, full_name};
use crate::context::AnalysisContext;
use crate::messages::{
    CONFLICTING_SERVICE_ENTRY_PROTOCOL, Message, SERVICE_ENTRY_ADDRESSES_REQUIRED, q,
};

pub struct ProtocolAddressesAnalyzer;

/// The mesh allocates virtual IPs to ServiceEntries itself.
fn auto_allocated(ctx: &AnalysisContext<'_>) -> bool {
    let md = &ctx.mesh.proxy_metadata;
    let is_true = |k: &str| md.get(k).is_some_and(|v| v == "true");
    is_true("ISTIO_META_DNS_CAPTURE")
        && (is_true("ISTIO_META_DNS_AUTO_ALLOCATE") || is_true("PILOT_ENABLE_IP_AUTOALLOCATE"))
}

/// `status.addresses` is a non-empty list (addresses allocated by the control plane).
fn addresses_allocated(r: &Resource) -> bool {
    r.origin
        .node
        .get("status")
        .and_then(|s| s.get("addresses"))
        .and_then(Node::as_seq)
        .is_some_and(|a| !a.is_empty())
}

impl Analyzer for ProtocolAddressesAnalyzer {
    fn name(&self) -> &'static str {
        "serviceentry.Analyzer"
    }

    fn description(&self) -> &'static str {
        "Checks the validity of ServiceEntry"
    }

    fn analyze(&self, ctx: &AnalysisContext<'_>, out: &mut Vec<Message>) {
        if auto_allocated(ctx) {
            return;
        }
        for (r, se) in ctx.service_entries() {
            if !se.addresses.is_empty() || addresses_allocated(r) {
                continue;
            }
            for (i, port) in se.ports.iter().enumerate() {
                if port.protocol.is_empty() || port.protocol.eq_ignore_ascii_case("TCP") {
                    out.push(ctx.message(
                        SERVICE_ENTRY_ADDRESSES_REQUIRED,
                        r,
                        Some(&format!("spec.ports[{i}].name")),
                        "ServiceEntry addresses are required for this protocol.".to_string(),
                    ));
                }
            }
        }
    }
}

pub struct ConflictingServiceEntryProtocolAnalyzer;

impl Analyzer for ConflictingServiceEntryProtocolAnalyzer {
    fn name(&self) -> &'static str {
        "serviceentry.ConflictingServiceEntryProtocolAnalyzer"
    }

    fn description(&self) -> &'static str {
        "Checks if multiple ServiceEntries define the same host and port with different protocols"
    }

    fn analyze(&self, ctx: &AnalysisContext<'_>, out: &mut Vec<Message>) {
        // (scope, host, port) → [(protocol, ServiceEntry)], in input order.
        type Key = (String, String, u32);
        let mut index: BTreeMap<Key, Vec<(&str, &Resource)>> = BTreeMap::new();
        for (r, se) in ctx.service_entries() {
            let scopes: BTreeSet<&str> =
                if se.export_to.is_empty() || se.export_to.iter().any(|e| e == EXPORT_TO_ALL) {
                    BTreeSet::from([EXPORT_TO_ALL])
                } else {
                    se.export_to
                        .iter()
                        .map(|e| {
                            if e == EXPORT_TO_LOCAL {
                                r.namespace()
                            } else {
                                e.as_str()
                            }
                        })
                        .collect()
                };
            for scope in scopes {
                for h in &se.hosts {
                    for p in &se.ports {
                        index
                            .entry((scope.to_string(), h.clone(), p.number))
                            .or_default()
                            .push((&p.protocol, r));
                    }
                }
            }
        }

        // Keys in sorted order, so which conflict reports a ServiceEntry is deterministic.
        let mut reported: BTreeSet<(String, String)> = BTreeSet::new();
        for ((scope, host, port), own) in &index {
            let mut entries = own.clone();
            if scope != EXPORT_TO_ALL
                && let Some(all) = index.get(&(EXPORT_TO_ALL.to_string(), host.clone(), *port))
            {
                entries.extend(all.iter().copied());
            }
            let protocols: BTreeSet<String> = entries
                .iter()
                .map(|(p, _)| p.to_ascii_uppercase())
                .collect();
            if protocols.len() < 2 {
                continue;
            }
            let names: BTreeSet<String> = entries.iter().map(|(_, r)| full_name(r)).collect();
            let names = names.into_iter().collect::<Vec<_>>().join(", ");
            let protocols = protocols.into_iter().collect::<Vec<_>>().join(", ");
            for (_, r) in &entries {
                let id = (r.namespace().to_string(), r.name().to_string());
                if !reported.insert(id) {
                    continue;
                }
                out.push(ctx.message(
                    CONFLICTING_SERVICE_ENTRY_PROTOCOL,
                    r,
                    Some("metadata.name"),
                    format!(
                        "Multiple ServiceEntries ({names}) define the same host {} and port {port} with conflicting protocols ({protocols}).",
                        q(host)
                    ),
                ));
            }
        }
    }
}
