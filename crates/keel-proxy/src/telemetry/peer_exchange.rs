//! Peer metadata exchange, as Istio's `istio.metadata_exchange` filter does it over HTTP: the
//! client's proxy sends who it is in `x-envoy-peer-metadata` (a base64 protobuf `Struct`) and
//! `x-envoy-peer-metadata-id`, the server's proxy takes them off the request and names the
//! client in its metrics (`source_workload`, `source_app`, ...), and answers with its own on
//! the response, which the client's proxy takes off in turn. Without it the server side knows
//! only the client's certificate, so Kiali-style graphs built from `reporter="destination"`
//! series would show every caller as `unknown`.
//!
//! TCP has no headers: on mesh mTLS whose ALPN is `istio-peer-exchange`, Istio's
//! `metadata_exchange` network filter starts each direction of the byte stream with a frame —
//! a 4-byte magic, a 4-byte length (both big-endian), then a protobuf `Any` holding a
//! `Struct` with the same metadata under `x-envoy-peer-metadata` and the id under
//! `x-envoy-peer-metadata-id`. [`PeerExchange::tcp_frame`] and [`read_tcp_frame`] are that
//! frame; `crate::l4::exchange` sends and reads it.

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

/// The ALPN under which mesh mTLS carrying TCP starts with a metadata frame each way.
pub const TCP_ALPN: &[u8] = b"istio-peer-exchange";
/// The frame's first four bytes (Istio's `MetadataExchangeInitialHeader::magic_number`).
const TCP_MAGIC: [u8; 4] = 0x3D23_0467_u32.to_be_bytes();
const STRUCT_TYPE_URL: &str = "type.googleapis.com/google.protobuf.Struct";
/// Longest frame body read: Istio's metadata is a few hundred bytes, and a peer claiming more
/// is not speaking the exchange.
const TCP_MAX_BODY: usize = 64 * 1024;

/// Decoded peers kept at most; a mesh has far fewer distinct workloads.
const CACHE_LIMIT: usize = 1024;

/// This proxy's metadata as headers, built once, and the peers it has decoded.
#[derive(Debug)]
pub struct PeerExchange {
    metadata: HeaderValue,
    id: HeaderValue,
    /// The TCP frame announcing the same.
    frame: Vec<u8>,
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
            frame: tcp_frame(Some(s), Some(&id)),
            id: HeaderValue::from_str(&id).ok()?,
            seen: Mutex::new(HashMap::new()),
        })
    }

    /// This proxy's TCP metadata frame.
    pub fn tcp_frame(&self) -> &[u8] {
        &self.frame
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

/// A TCP metadata frame: `metadata` under `x-envoy-peer-metadata`, `id` under
/// `x-envoy-peer-metadata-id`. A proxy with nothing to tell sends one without either, as the
/// peer waits for a frame once the ALPN says there is one.
pub fn tcp_frame(metadata: Option<Struct>, id: Option<&str>) -> Vec<u8> {
    let mut s = Struct::default();
    if let Some(m) = metadata {
        s.fields.insert(
            PEER_METADATA.as_str().to_string(),
            Value {
                kind: Some(Kind::StructValue(m)),
            },
        );
    }
    if let Some(id) = id {
        s.fields
            .insert(PEER_METADATA_ID.as_str().to_string(), string(id));
    }
    let body = prost_types::Any {
        type_url: STRUCT_TYPE_URL.to_string(),
        value: s.encode_to_vec(),
    }
    .encode_to_vec();
    let mut out = Vec::with_capacity(8 + body.len());
    out.extend_from_slice(&TCP_MAGIC);
    // Bounded by what this proxy puts in (a workload's names and four labels).
    out.extend_from_slice(&u32::try_from(body.len()).unwrap_or(u32::MAX).to_be_bytes());
    out.extend_from_slice(&body);
    out
}

/// The TCP frame a proxy sends: its own, or, with nothing to tell (no workload name), one
/// naming nobody, built once.
pub fn own_tcp_frame(me: Option<&PeerExchange>) -> &[u8] {
    static ANONYMOUS: std::sync::LazyLock<Vec<u8>> =
        std::sync::LazyLock::new(|| tcp_frame(None, None));
    me.map_or(ANONYMOUS.as_slice(), PeerExchange::tcp_frame)
}

/// What the start of a TCP stream under `istio-peer-exchange` holds.
#[derive(Debug, PartialEq)]
pub enum TcpFrame {
    /// The start of a frame: more bytes are needed.
    Incomplete,
    /// A whole frame of `len` bytes, and the peer it names (`None`: it names none, or can't be
    /// read).
    Read {
        len: usize,
        peer: Option<Arc<ProxyIdentity>>,
    },
    /// Not a frame: the peer doesn't speak the exchange, and these bytes are its data.
    Absent,
}

/// Reads the metadata frame at the start of `buf`.
pub fn read_tcp_frame(buf: &[u8]) -> TcpFrame {
    let magic = &buf[..buf.len().min(4)];
    if magic != &TCP_MAGIC[..magic.len()] {
        return TcpFrame::Absent;
    }
    let Some(len) = buf.get(4..8) else {
        return TcpFrame::Incomplete;
    };
    let body = u32::from_be_bytes([len[0], len[1], len[2], len[3]]) as usize;
    if body > TCP_MAX_BODY {
        return TcpFrame::Absent;
    }
    let Some(bytes) = buf.get(8..8 + body) else {
        return TcpFrame::Incomplete;
    };
    let peer = prost_types::Any::decode(bytes)
        .ok()
        .filter(|any| any.type_url == STRUCT_TYPE_URL)
        .and_then(|any| Struct::decode(any.value.as_slice()).ok())
        .and_then(
            |s| match s.fields.get(PEER_METADATA.as_str())?.kind.as_ref() {
                Some(Kind::StructValue(m)) => from_struct(m).map(Arc::new),
                _ => None,
            },
        );
    TcpFrame::Read {
        len: 8 + body,
        peer,
    }
}

/// A peer from `x-envoy-peer-metadata` (Istio's fields; others are ignored).
pub fn decode(value: &[u8]) -> Option<ProxyIdentity> {
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(value)
        .ok()?;
    from_struct(&Struct::decode(bytes.as_slice()).ok()?)
}

/// A peer from its metadata `Struct`.
fn from_struct(s: &Struct) -> Option<ProxyIdentity> {
    let labels = match s.fields.get("LABELS").and_then(|v| v.kind.as_ref()) {
        Some(Kind::StructValue(l)) => l.clone(),
        _ => Struct::default(),
    };
    let workload = field(s, "WORKLOAD_NAME");
    if workload.is_empty() {
        return None;
    }
    let cluster = field(s, "CLUSTER_ID");
    Some(ProxyIdentity {
        workload: workload.to_string(),
        namespace: field(s, "NAMESPACE").to_string(),
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
        mesh_id: field(s, "MESH_ID").to_string(),
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
    fn a_tcp_frame_names_its_sender_and_is_read_only_when_whole() {
        let client = PeerExchange::new(&me()).unwrap();
        let frame = client.tcp_frame();
        assert_eq!(
            frame[..4],
            [0x3D, 0x23, 0x04, 0x67],
            "Istio's magic, big-endian"
        );
        let body = u32::from_be_bytes(frame[4..8].try_into().unwrap()) as usize;
        assert_eq!(frame.len(), 8 + body);
        let mut stream = frame.to_vec();
        stream.extend_from_slice(b"app bytes");
        match read_tcp_frame(&stream) {
            TcpFrame::Read { len, peer } => {
                assert_eq!(len, frame.len());
                assert_eq!(*peer.unwrap(), me());
            }
            other => panic!("{other:?}"),
        }
        for cut in [0, 1, 3, 4, 7, 8, frame.len() - 1] {
            assert_eq!(read_tcp_frame(&frame[..cut]), TcpFrame::Incomplete, "{cut}");
        }
        // The id alone, or nothing: a frame, but no peer.
        for anonymous in [tcp_frame(None, Some("id")), tcp_frame(None, None)] {
            assert_eq!(
                read_tcp_frame(&anonymous),
                TcpFrame::Read {
                    len: anonymous.len(),
                    peer: None
                }
            );
        }
        // A peer that doesn't exchange sends its data straight away.
        assert_eq!(read_tcp_frame(b"GET / HTTP/1.1"), TcpFrame::Absent);
        assert_eq!(read_tcp_frame(&[0x3D, 0x23, 0x05]), TcpFrame::Absent);
        let mut huge = frame[..4].to_vec();
        huge.extend_from_slice(&u32::MAX.to_be_bytes());
        assert_eq!(read_tcp_frame(&huge), TcpFrame::Absent);
        // A whole frame that isn't a Struct: read past, no peer.
        let mut junk = frame[..4].to_vec();
        junk.extend_from_slice(&3u32.to_be_bytes());
        junk.extend_from_slice(b"\xff\xff\xff");
        assert_eq!(
            read_tcp_frame(&junk),
            TcpFrame::Read {
                len: 11,
                peer: None
            }
        );
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
