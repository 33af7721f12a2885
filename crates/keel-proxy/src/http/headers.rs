//! Header handling shared by requests and responses: hop-by-hop headers, Istio's header
//! operations, request ids.

use http::header::{HeaderMap, HeaderName, HeaderValue};
use keel_snapshot::HeaderOps;

/// Connection-specific headers a proxy must not forward (RFC 9110 §7.6.1).
const HOP_BY_HOP: &[&str] = &[
    "connection",
    "keep-alive",
    "proxy-connection",
    "transfer-encoding",
    "te",
    "trailer",
    "upgrade",
];

/// Removes hop-by-hop headers, including those the `Connection` header names. For an
/// upgrade the `Upgrade`/`Connection` pair is kept (`keep_upgrade`).
pub fn strip_hop_by_hop(headers: &mut HeaderMap, keep_upgrade: bool) {
    let named: Vec<String> = headers
        .get_all(http::header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| {
            v.split(',')
                .map(|s| s.trim().to_ascii_lowercase())
                .collect::<Vec<_>>()
        })
        .collect();
    for h in named
        .iter()
        .map(String::as_str)
        .chain(HOP_BY_HOP.iter().copied())
    {
        if keep_upgrade && (h == "upgrade" || h == "connection") {
            continue;
        }
        if h == "te" {
            // `te: trailers` is how gRPC says it understands trailers; keep that one.
            let trailers_only = headers
                .get("te")
                .and_then(|v| v.to_str().ok())
                .is_some_and(|v| v.trim().eq_ignore_ascii_case("trailers"));
            if trailers_only {
                continue;
            }
        }
        headers.remove(h);
    }
}

/// Applies Istio header operations: `set` replaces, `add` appends, `remove` deletes.
pub fn apply(headers: &mut HeaderMap, ops: &HeaderOps) {
    for (k, v) in &ops.set {
        if let (Ok(name), Ok(value)) = (
            HeaderName::from_bytes(k.as_bytes()),
            HeaderValue::from_str(v),
        ) {
            headers.insert(name, value);
        }
    }
    for (k, v) in &ops.add {
        if let (Ok(name), Ok(value)) = (
            HeaderName::from_bytes(k.as_bytes()),
            HeaderValue::from_str(v),
        ) {
            headers.append(name, value);
        }
    }
    for k in &ops.remove {
        headers.remove(k.as_str());
    }
}

/// The authority that header operations `set` (or else `add`) as `host` or `:authority`:
/// Istio makes that a host rewrite rather than a header.
pub fn authority_in(ops: &HeaderOps) -> Option<&str> {
    let is_authority = |k: &str| k.eq_ignore_ascii_case("host") || k == ":authority";
    ops.set
        .iter()
        .chain(&ops.add)
        .find(|(k, _)| is_authority(k))
        .map(|(_, v)| v.as_str())
}

/// Whether the request asks to switch protocols (WebSocket and the like).
pub fn is_upgrade(headers: &HeaderMap) -> bool {
    headers.contains_key(http::header::UPGRADE)
        && headers
            .get_all(http::header::CONNECTION)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .any(|v| {
                v.split(',')
                    .any(|t| t.trim().eq_ignore_ascii_case("upgrade"))
            })
}

/// A random request id in UUID v4 form, as Envoy generates for `x-request-id`.
pub fn request_id() -> String {
    let b: [u8; 16] = rand::random();
    format!(
        "{:08x}-{:04x}-4{:03x}-{:04x}-{:012x}",
        u32::from_be_bytes([b[0], b[1], b[2], b[3]]),
        u16::from_be_bytes([b[4], b[5]]),
        u16::from_be_bytes([b[6], b[7]]) & 0x0fff,
        (u16::from_be_bytes([b[8], b[9]]) & 0x3fff) | 0x8000,
        u64::from_be_bytes([0, 0, b[10], b[11], b[12], b[13], b[14], b[15]])
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hop_by_hop_and_ops() {
        let mut h = HeaderMap::new();
        h.insert(
            "connection",
            HeaderValue::from_static("keep-alive, x-private"),
        );
        h.insert("x-private", HeaderValue::from_static("1"));
        h.insert("te", HeaderValue::from_static("trailers"));
        h.insert("x-keep", HeaderValue::from_static("1"));
        strip_hop_by_hop(&mut h, false);
        assert!(h.get("x-private").is_none() && h.get("connection").is_none());
        assert_eq!(h.get("te").map(|v| v.as_bytes()), Some(&b"trailers"[..]));
        let ops = HeaderOps {
            set: vec![("x-keep".into(), "2".into())],
            add: vec![("x-add".into(), "a".into())],
            remove: vec!["te".into()],
        };
        apply(&mut h, &ops);
        assert_eq!(h.get("x-keep").map(|v| v.as_bytes()), Some(&b"2"[..]));
        assert!(h.get("x-add").is_some() && h.get("te").is_none());
        let id = request_id();
        assert_eq!(id.len(), 36);
        assert_eq!(&id[14..15], "4");
    }
}
