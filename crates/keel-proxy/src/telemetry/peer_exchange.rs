//! Peer metadata exchange, as Istio's `istio.metadata_exchange` filter does it over HTTP: the
//! client's proxy sends who it is in `x-envoy-peer-metadata` (a base64 protobuf `Struct`) and
//! `x-envoy-peer-metadata-id`, the server's proxy takes them off the request and names the
//! client in its metrics (`source_workload`, `source_app`, ...), and answers with its own on
//! the response, which the client's proxy takes off in turn. Without it the server side knows
//! only the client's certificate, so Kiali-style graphs built from `reporter="destination"`
//! series would show every caller as `unknown`.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use base64::Engine;
use http::{HeaderMap, HeaderName, HeaderValue};
use prost::Message;
use prost_types::value::Kind;
use prost_types::{Struct, Value};

use super::ProxyIdentity;

pub static PEER_METADATA: HeaderName = HeaderName::from_static("x-envoy-peer-metadata");
pub static PEER_METADATA_ID: HeaderName = HeaderName::from_static("x-envoy-peer-metadata-id");

/// Decoded peers kept at most; a mesh has far fewer distinct workloads.
const CACHE_LIMIT: usize = 1024;

/// This proxy's metadata as headers, built once, and the peers it has decoded.
#[derive(Debug)]
pub struct PeerExchange {
    metadata: HeaderValue,
    id: HeaderValue,
    seen: Mutex<HashMap<HeaderValue, Arc<ProxyIdentity>>>,
}

fn string(s: &str) -> Value {
    Value {
        kind: Some(Kind::StringValue(s.to_string())),
    }
}

fn field<'a>(s: &'a Struct, key: &str) -> &'a str {
    match s.fields.get(key).and_then(|v| v.kind.as_ref()) {
        Some(Kind::StringValue(v)) => v,
        _ => "",
    }
}

impl PeerExchange {
    /// The headers for `me`; `None` when it has no workload name (a bare standalone gateway
    /// has nothing to tell).
    pub fn new(me: &ProxyIdentity) -> Option<PeerExchange> {
        if me.workload.is_empty() {
            return None;
        }
        let mut labels = Struct::default();
        for (k, v) in [
            ("app", &me.app),
            ("version", &me.version),
            ("service.istio.io/canonical-name", &me.canonical_service),
            (
                "service.istio.io/canonical-revision",
                &me.canonical_revision,
            ),
        ] {
            if !v.is_empty() {
                labels.fields.insert(k.to_string(), string(v));
            }
        }
        let mut s = Struct::default();
        for (k, v) in [
            ("NAMESPACE", &me.namespace),
            ("WORKLOAD_NAME", &me.workload),
            ("CLUSTER_ID", &me.cluster),
            ("MESH_ID", &me.mesh_id),
        ] {
            if !v.is_empty() {
                s.fields.insert(k.to_string(), string(v));
            }
        }
        s.fields.insert(
            "LABELS".into(),
            Value {
                kind: Some(Kind::StructValue(labels)),
            },
        );
        let encoded = base64::engine::general_purpose::STANDARD.encode(s.encode_to_vec());
        let id = format!(
            "sidecar~0.0.0.0~{}.{}~{}.svc.cluster.local",
            me.workload, me.namespace, me.namespace
        );
        Some(PeerExchange {
            metadata: HeaderValue::from_str(&encoded).ok()?,
            id: HeaderValue::from_str(&id).ok()?,
            seen: Mutex::new(HashMap::new()),
        })
    }

    /// Adds this proxy's metadata (replacing what an app may have put there).
    pub fn announce(&self, headers: &mut HeaderMap) {
        headers.insert(&PEER_METADATA, self.metadata.clone());
        headers.insert(&PEER_METADATA_ID, self.id.clone());
    }

    /// Takes the peer's metadata off `headers`; the peer it names, if it could be read.
    pub fn take_peer(&self, headers: &mut HeaderMap) -> Option<Arc<ProxyIdentity>> {
        headers.remove(&PEER_METADATA_ID);
        let value = headers.remove(&PEER_METADATA)?;
        if let Ok(seen) = self.seen.lock()
            && let Some(p) = seen.get(&value)
        {
            return Some(p.clone());
        }
        let peer = Arc::new(decode(value.as_bytes())?);
        if let Ok(mut seen) = self.seen.lock() {
            if seen.len() >= CACHE_LIMIT {
                seen.clear();
            }
            seen.insert(value, peer.clone());
        }
        Some(peer)
    }
}

/// A peer from `x-envoy-peer-metadata` (Istio's fields; others are ignored).
pub fn decode(value: &[u8]) -> Option<ProxyIdentity> {
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(value)
        .ok()?;
    let s = Struct::decode(bytes.as_slice()).ok()?;
    let labels = match s.fields.get("LABELS").and_then(|v| v.kind.as_ref()) {
        Some(Kind::StructValue(l)) => l.clone(),
        _ => Struct::default(),
    };
    let workload = field(&s, "WORKLOAD_NAME");
    if workload.is_empty() {
        return None;
    }
    let cluster = field(&s, "CLUSTER_ID");
    Some(ProxyIdentity {
        workload: workload.to_string(),
        namespace: field(&s, "NAMESPACE").to_string(),
        app: field(&labels, "app").to_string(),
        version: field(&labels, "version").to_string(),
        canonical_service: field(&labels, "service.istio.io/canonical-name").to_string(),
        canonical_revision: field(&labels, "service.istio.io/canonical-revision").to_string(),
        cluster: if cluster.is_empty() {
            ProxyIdentity::default().cluster
        } else {
            cluster.to_string()
        },
        principal: String::new(),
        mesh_id: field(&s, "MESH_ID").to_string(),
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn me() -> ProxyIdentity {
        ProxyIdentity {
            workload: "sleep".into(),
            namespace: "foo".into(),
            app: "sleep".into(),
            version: "v1".into(),
            ..Default::default()
        }
    }

    #[test]
    fn what_one_side_announces_the_other_reads_and_removes() {
        let client = PeerExchange::new(&me()).unwrap();
        let server = PeerExchange::new(&ProxyIdentity {
            workload: "httpbin".into(),
            ..me()
        })
        .unwrap();
        let mut h = HeaderMap::new();
        client.announce(&mut h);
        assert!(h[&PEER_METADATA_ID].to_str().unwrap().contains("sleep.foo"));
        let peer = server.take_peer(&mut h).unwrap();
        assert!(h.is_empty(), "taken off: {h:?}");
        assert_eq!(*peer, me());
        // Decoded once, then served from the cache.
        client.announce(&mut h);
        let again = server.take_peer(&mut h).unwrap();
        assert!(Arc::ptr_eq(&peer, &again));
    }

    #[test]
    fn garbage_or_no_workload_is_no_peer() {
        let server = PeerExchange::new(&me()).unwrap();
        let mut h = HeaderMap::new();
        h.insert(&PEER_METADATA, HeaderValue::from_static("%%%not base64"));
        assert!(server.take_peer(&mut h).is_none());
        assert!(h.is_empty());
        assert!(PeerExchange::new(&ProxyIdentity::default()).is_none());
        let empty =
            base64::engine::general_purpose::STANDARD.encode(Struct::default().encode_to_vec());
        assert!(decode(empty.as_bytes()).is_none());
    }
}
