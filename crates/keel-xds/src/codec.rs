//! Keel's resources in `google.protobuf.Any`, and their versions.
//!
//! **The payload is JSON for now**: `Any { type_url: "type.keel.dev/keel.Listener", value:
//! <the JSON of keel_snapshot::Listener> }`. JSON keeps the first version of the push small
//! (the snapshot types already serialise for `/config_dump`); protobuf messages can replace
//! it later by changing this module alone — both sides only call [`encode`], [`decode`] and
//! [`version`].
//!
//! A resource's version is a hash of its type URL and encoded bytes (FNV-1a, 64 bits, in
//! hex). It depends on nothing but the content, so a restarted control plane computes the
//! same versions as before and a reconnecting proxy's `initial_resource_versions` match: only
//! what really changed is sent again. The encoding is deterministic (the snapshot types keep
//! maps in `BTreeMap`s and fields in declaration order).

use keel_snapshot::{Cluster, Listener};
use prost_types::Any;
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::types::ResourceType;

/// A resource type Keel pushes.
pub trait KeelResource: Serialize + DeserializeOwned {
    const TYPE: ResourceType;
    /// The resource's name: unique within its type, the key of the delta protocol.
    fn name(&self) -> &str;
}

impl KeelResource for Listener {
    const TYPE: ResourceType = ResourceType::Listener;
    fn name(&self) -> &str {
        &self.name
    }
}

impl KeelResource for Cluster {
    const TYPE: ResourceType = ResourceType::Cluster;
    fn name(&self) -> &str {
        &self.name
    }
}

/// One resource ready to send: its name, version and encoding.
#[derive(Debug, Clone, PartialEq)]
pub struct Encoded {
    pub name: String,
    pub version: String,
    pub any: Any,
}

impl Encoded {
    /// The delta protocol's `Resource` for it.
    pub fn to_resource(&self) -> crate::Resource {
        crate::Resource {
            name: self.name.clone(),
            aliases: Vec::new(),
            version: self.version.clone(),
            resource: Some(self.any.clone()),
            ttl: None,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum CodecError {
    #[error("cannot encode {kind} {name}: {source}")]
    Encode {
        kind: ResourceType,
        name: String,
        source: serde_json::Error,
    },
    #[error("expected a resource of type {expected}, got {got:?}")]
    WrongType { expected: &'static str, got: String },
    #[error("cannot decode {kind} {name}: {source}")]
    Decode {
        kind: ResourceType,
        name: String,
        source: serde_json::Error,
    },
}

/// Encodes one resource.
pub fn encode<R: KeelResource>(r: &R) -> Result<Encoded, CodecError> {
    let value = serde_json::to_vec(r).map_err(|source| CodecError::Encode {
        kind: R::TYPE,
        name: r.name().to_string(),
        source,
    })?;
    let type_url = R::TYPE.type_url();
    Ok(Encoded {
        name: r.name().to_string(),
        version: version(type_url, &value),
        any: Any {
            type_url: type_url.to_string(),
            value,
        },
    })
}

/// Decodes one resource; `name` (the delta `Resource.name`) is for the error message.
pub fn decode<R: KeelResource>(name: &str, any: &Any) -> Result<R, CodecError> {
    let expected = R::TYPE.type_url();
    if any.type_url != expected {
        return Err(CodecError::WrongType {
            expected,
            got: any.type_url.clone(),
        });
    }
    serde_json::from_slice(&any.value).map_err(|source| CodecError::Decode {
        kind: R::TYPE,
        name: name.to_string(),
        source,
    })
}

/// The version of an encoded resource: FNV-1a (64 bits) of its type URL and bytes, in hex.
pub fn version(type_url: &str, value: &[u8]) -> String {
    const OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
    const PRIME: u64 = 0x0000_0100_0000_01b3;
    let mut h = OFFSET;
    for b in type_url.bytes().chain([0]).chain(value.iter().copied()) {
        h ^= u64::from(b);
        h = h.wrapping_mul(PRIME);
    }
    format!("{h:016x}")
}

#[cfg(test)]
mod tests {
    #![allow(clippy::expect_used, clippy::unwrap_used)]
    use std::collections::BTreeMap;

    use keel_snapshot::{
        Endpoint, EndpointAddress, LbPolicy, ListenerKind, ListenerProtocol, UpstreamProtocol,
    };

    use super::*;

    fn listener() -> Listener {
        Listener {
            name: "virtualOutbound".into(),
            address: "127.0.0.1:15001".parse().expect("addr"),
            kind: ListenerKind::SidecarOutbound,
            protocol: ListenerProtocol::Auto,
            http: None,
            tls: Vec::new(),
            tcp: Vec::new(),
            peer_authn: None,
            terminate_tls: Vec::new(),
            authz: None,
            jwt: None,
        }
    }

    fn cluster() -> Cluster {
        Cluster {
            name: "outbound|9080||reviews.default.svc.cluster.local".into(),
            service: "reviews.default.svc.cluster.local".into(),
            port: 9080,
            subset: String::new(),
            namespace: "default".into(),
            lb: LbPolicy::RoundRobin,
            locality_lb: None,
            protocol: UpstreamProtocol::Http1,
            endpoints: vec![Endpoint {
                address: EndpointAddress::Socket("127.0.0.1:9081".parse().expect("addr")),
                labels: BTreeMap::from([("version".into(), "v1".into())]),
                locality: String::new(),
                weight: 1,
                workload: "reviews-v1".into(),
                namespace: "default".into(),
                identity: String::new(),
                mtls: false,
            }],
            traffic_policy: None,
            client_credential: None,
        }
    }

    #[test]
    fn listeners_and_clusters_round_trip() {
        let l = listener();
        let e = encode(&l).expect("encode");
        assert_eq!(e.name, "virtualOutbound");
        assert_eq!(e.any.type_url, "type.keel.dev/keel.Listener");
        assert_eq!(decode::<Listener>(&e.name, &e.any).expect("decode"), l);

        let c = cluster();
        let e = encode(&c).expect("encode");
        assert_eq!(e.any.type_url, "type.keel.dev/keel.Cluster");
        assert_eq!(decode::<Cluster>(&e.name, &e.any).expect("decode"), c);
        assert_eq!(e.to_resource().version, e.version);
    }

    #[test]
    fn versions_follow_content_only() {
        let a = encode(&cluster()).expect("encode");
        let b = encode(&cluster()).expect("encode");
        assert_eq!(a.version, b.version, "same content, same version");
        assert_eq!(a.version.len(), 16);
        let mut changed = cluster();
        changed.endpoints[0].weight = 2;
        assert_ne!(encode(&changed).expect("encode").version, a.version);
        // The same bytes under another type are another resource.
        assert_ne!(
            version(crate::types::LISTENER_TYPE_URL, &a.any.value),
            a.version
        );
        // Pinned: versions must not change between releases for the same bytes, or every
        // proxy would be sent everything again after an upgrade of the control plane.
        assert_eq!(version("", b""), "af63bd4c8601b7df");
    }

    #[test]
    fn wrong_types_and_garbage_are_errors() {
        let e = encode(&listener()).expect("encode");
        let err = decode::<Cluster>("x", &e.any).expect_err("wrong type");
        assert!(
            err.to_string()
                .contains("expected a resource of type type.keel.dev/keel.Cluster"),
            "{err}"
        );
        let garbage = Any {
            type_url: crate::types::LISTENER_TYPE_URL.into(),
            value: b"{\"name\": 3}".to_vec(),
        };
        let err = decode::<Listener>("bad", &garbage).expect_err("garbage");
        assert!(
            err.to_string().starts_with("cannot decode listeners bad:"),
            "{err}"
        );
    }
}
