//! The shortcut key of an HTTP request's metric series: the facts that decide its 25 labels,
//! with the shared identity and service records compared by pointer rather than by their
//! strings. Records of one route and endpoint share those `Arc`s, so most requests find
//! their series with a hash of a few words (see `series.rs`).

use std::hash::{BuildHasher, Hash, Hasher};
use std::sync::Arc;

use super::record::{ProxyIdentity, Reporter, RequestRecord, ServiceRef};

/// Owned form, kept in the index. Holding the `Arc`s keeps their addresses from being
/// reused by other records while the key exists.
pub(crate) struct HttpKey {
    reporter: Reporter,
    workload: Option<Arc<ProxyIdentity>>,
    principal: Option<String>,
    service: Option<Arc<ServiceRef>>,
    /// The Host header, only when no service host names the destination (it then becomes
    /// `destination_service`); empty otherwise, so that hosts don't multiply keys.
    authority: String,
    upstream_cluster: Option<Arc<str>>,
    grpc: bool,
    response_code: u16,
    grpc_status: Option<u32>,
    response_flags: String,
}

/// The Host header matters to the labels only without a service host (`labels.rs`).
fn authority(r: &RequestRecord) -> &str {
    match &r.service {
        Some(s) if !s.host.is_empty() => "",
        _ => &r.authority,
    }
}

fn ptr<T: ?Sized>(a: &Option<Arc<T>>) -> Option<*const u8> {
    a.as_ref().map(|a| Arc::as_ptr(a).cast::<u8>())
}

fn same<T: ?Sized>(a: &Option<Arc<T>>, b: &Option<Arc<T>>) -> bool {
    match (a, b) {
        (Some(a), Some(b)) => Arc::ptr_eq(a, b),
        (None, None) => true,
        _ => false,
    }
}

impl HttpKey {
    pub(crate) fn hash(hasher: &impl BuildHasher, r: &RequestRecord) -> u64 {
        let mut h = hasher.build_hasher();
        r.reporter.hash(&mut h);
        ptr(&r.peer.workload).hash(&mut h);
        r.peer.principal.hash(&mut h);
        ptr(&r.service).hash(&mut h);
        authority(r).hash(&mut h);
        ptr(&r.upstream_cluster).hash(&mut h);
        (r.grpc, r.response_code, r.grpc_status).hash(&mut h);
        r.response_flags.hash(&mut h);
        h.finish()
    }

    pub(crate) fn of(r: &RequestRecord) -> HttpKey {
        HttpKey {
            reporter: r.reporter,
            workload: r.peer.workload.clone(),
            principal: r.peer.principal.clone(),
            service: r.service.clone(),
            authority: authority(r).to_string(),
            upstream_cluster: r.upstream_cluster.clone(),
            grpc: r.grpc,
            response_code: r.response_code,
            grpc_status: r.grpc_status,
            response_flags: r.response_flags.to_string(),
        }
    }

    /// Whether `r` has this key (then it has this key's labels).
    pub(crate) fn is(&self, r: &RequestRecord) -> bool {
        self.reporter == r.reporter
            && self.response_code == r.response_code
            && self.grpc == r.grpc
            && self.grpc_status == r.grpc_status
            && same(&self.service, &r.service)
            && same(&self.workload, &r.peer.workload)
            && same(&self.upstream_cluster, &r.upstream_cluster)
            && self.principal == r.peer.principal
            && *self.response_flags == *r.response_flags
            && self.authority == authority(r)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record() -> RequestRecord {
        RequestRecord {
            service: Some(Arc::new(ServiceRef {
                host: "reviews.default.svc.cluster.local".into(),
                ..Default::default()
            })),
            response_code: 200,
            authority: "reviews:9080".into(),
            ..Default::default()
        }
    }

    #[test]
    fn a_record_has_its_own_key_and_not_one_that_differs_in_a_label_fact() {
        let r = record();
        let key = HttpKey::of(&r);
        assert!(key.is(&r));
        // Another Host header with the same service host: same labels, same key.
        let other_host = RequestRecord {
            authority: "reviews.default:9080".into(),
            ..r.clone()
        };
        assert!(key.is(&other_host));
        let variants = [
            RequestRecord {
                response_code: 503,
                ..r.clone()
            },
            RequestRecord {
                response_flags: "UF".into(),
                ..r.clone()
            },
            RequestRecord {
                reporter: Reporter::Destination,
                ..r.clone()
            },
            RequestRecord {
                grpc: true,
                ..r.clone()
            },
            // An equal service in another allocation is compared by pointer: a different
            // key (it finds the same series through the labels).
            RequestRecord {
                service: Some(Arc::new((**r.service.as_ref().unwrap()).clone())),
                ..r.clone()
            },
            RequestRecord {
                peer: super::super::Peer {
                    principal: Some("spiffe://cluster.local/ns/default/sa/x".into()),
                    ..Default::default()
                },
                ..r.clone()
            },
        ];
        for v in &variants {
            assert!(!key.is(v), "{v:?}");
        }
        // Without a service host the Host header is the destination service: part of the key.
        let no_service = RequestRecord {
            service: None,
            ..r.clone()
        };
        let key = HttpKey::of(&no_service);
        assert!(!key.is(&RequestRecord {
            authority: "ratings:9080".into(),
            ..no_service.clone()
        }));
    }
}
