//! Header handling shared by requests and responses: hop-by-hop headers, Istio's header
//! operations, request ids.

use http::header::{HeaderMap, HeaderName, HeaderValue};
use keel_snapshot::HeaderOps;

/// Connection-specific headers a proxy must not forward (RFC 9110 §7.6.1). Typed names:
/// removing by `&str` would parse and validate the name on every request (measured: about a
/// tenth of the proxy's user-space instructions per request, bench/proxy.sh).
static HOP_BY_HOP: [HeaderName; 7] = [
    http::header::CONNECTION,
    HeaderName::from_static("keep-alive"),
    HeaderName::from_static("proxy-connection"),
    http::header::TRANSFER_ENCODING,
    http::header::TE,
    http::header::TRAILER,
    http::header::UPGRADE,
];

/// The indexes in [`HOP_BY_HOP`] of the names `len` bytes long.
fn hop_by_hop_of_len(len: usize) -> &'static [usize] {
    match len {
        2 => &[4],
        7 => &[5, 6],
        10 => &[0, 1],
        16 => &[2],
        17 => &[3],
        _ => &[],
    }
}

pub static X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");
pub static X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
pub static X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");

/// Appends the client's address to `X-Forwarded-For`, as a gateway does (Envoy's
/// `use_remote_address`, which Istio sets on gateways): `a, b` becomes `a, b, client`.
pub fn append_forwarded_for(headers: &mut HeaderMap, client: &HeaderValue) {
    match headers.entry(&X_FORWARDED_FOR) {
        http::header::Entry::Vacant(slot) => {
            slot.insert(client.clone());
        }
        http::header::Entry::Occupied(mut slot) => {
            // Several header lines are one list.
            let mut buf = Vec::with_capacity(64);
            for prior in slot.iter() {
                if !prior.is_empty() {
                    buf.extend_from_slice(prior.as_bytes());
                    buf.extend_from_slice(b", ");
                }
            }
            buf.extend_from_slice(client.as_bytes());
            if let Ok(v) = HeaderValue::from_maybe_shared(bytes::Bytes::from(buf)) {
                slot.insert(v);
            }
        }
    }
}

/// Removes hop-by-hop headers, including those the `Connection` header names. For an
/// upgrade the `Upgrade`/`Connection` pair is kept (`keep_upgrade`).
pub fn strip_hop_by_hop(headers: &mut HeaderMap, keep_upgrade: bool) {
    // One pass over the message's names finds which hop-by-hop headers are present; most
    // messages have none, or only `connection`.
    let mut present = 0u8;
    for k in headers.keys() {
        // Most names can't be hop-by-hop by their length alone; the others are compared
        // only with the hop-by-hop names of their length (indexes into `HOP_BY_HOP`).
        for &i in hop_by_hop_of_len(k.as_str().len()) {
            if *k == HOP_BY_HOP[i] {
                present |= 1 << i;
            }
        }
    }
    if present != 0 {
        remove_hop_by_hop(headers, keep_upgrade, present);
    }
}

/// The removal part of [`strip_hop_by_hop`], out of line: most messages have nothing to
/// remove, and the scan alone then needs no stack frame of its own.
#[inline(never)]
fn remove_hop_by_hop(headers: &mut HeaderMap, keep_upgrade: bool, present: u8) {
    // Most requests have no `Connection` header, or just `keep-alive`: nothing is allocated.
    // The listed names are handled below (with their exceptions); `named` holds the rest.
    let named: Vec<String> = headers
        .get_all(http::header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .filter(|s| {
            !s.is_empty()
                && !HOP_BY_HOP
                    .iter()
                    .any(|h| h.as_str().eq_ignore_ascii_case(s))
        })
        .map(str::to_ascii_lowercase)
        .collect();
    for h in &named {
        headers.remove(h.as_str());
    }
    for (i, h) in HOP_BY_HOP.iter().enumerate() {
        if present & (1 << i) == 0 {
            continue;
        }
        if keep_upgrade && (h == http::header::UPGRADE || h == http::header::CONNECTION) {
            continue;
        }
        if h == http::header::TE {
            // `te: trailers` is how gRPC says it understands trailers; keep that one.
            let trailers_only = headers
                .get(http::header::TE)
                .and_then(|v| v.to_str().ok())
                .is_some_and(|v| v.trim().eq_ignore_ascii_case("trailers"));
            if trailers_only {
                continue;
            }
        }
        headers.remove(h);
    }
}

/// The first value of each of `names`. A message has few headers as a rule: then one pass
/// over them, comparing names (an integer comparison for the standard ones), costs less
/// than a lookup of each, which hashes it. A large map is searched by lookups.
pub fn first_values<'a, const N: usize>(
    headers: &'a HeaderMap,
    names: [&HeaderName; N],
) -> [Option<&'a HeaderValue>; N] {
    let mut found = [None; N];
    if headers.keys_len() > 8 {
        for (slot, name) in found.iter_mut().zip(names) {
            *slot = headers.get(name);
        }
        return found;
    }
    // Every value in order, repeated names included: the first one seen is `get`'s.
    for (k, v) in headers {
        for (slot, name) in found.iter_mut().zip(names) {
            if slot.is_none() && k == name {
                *slot = Some(v);
            }
        }
    }
    found
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
    headers.contains_key(http::header::UPGRADE) && connection_upgrade(headers)
}

/// Whether the `Connection` header lists `upgrade` (see [`is_upgrade`]).
pub fn connection_upgrade(headers: &HeaderMap) -> bool {
    headers
        .get_all(http::header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|v| {
            v.split(',')
                .any(|t| t.trim().eq_ignore_ascii_case("upgrade"))
        })
}

/// Each byte's two lower-case hex digits.
static HEX_PAIRS: [[u8; 2]; 256] = {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut pairs = [[0u8; 2]; 256];
    let mut i = 0;
    while i < 256 {
        pairs[i] = [HEX[i >> 4], HEX[i & 0x0f]];
        i += 1;
    }
    pairs
};

/// A random request id in UUID v4 form, as Envoy generates for `x-request-id`. Written
/// into a fixed buffer by position: `format!` with padded hex fields cost several thousand
/// instructions a request, pushing byte by byte several hundred (bench/proxy.sh).
pub fn request_id() -> HeaderValue {
    let mut b = [0u8; 16];
    crate::fastrand::with(|r| rand::RngCore::fill_bytes(r, &mut b));
    b[6] = (b[6] & 0x0f) | 0x40; // version 4
    b[8] = (b[8] & 0x3f) | 0x80; // RFC 4122 variant
    let mut out = *b"00000000-0000-0000-0000-000000000000";
    // Where each byte's two digits go: the dashes sit at 8, 13, 18 and 23.
    const AT: [usize; 16] = [0, 2, 4, 6, 9, 11, 14, 16, 19, 21, 24, 26, 28, 30, 32, 34];
    for (byte, at) in b.iter().zip(AT) {
        out[at..at + 2].copy_from_slice(&HEX_PAIRS[usize::from(*byte)]);
    }
    HeaderValue::from_maybe_shared(id_bytes(&out))
        .unwrap_or_else(|_| HeaderValue::from_static("00000000-0000-4000-8000-000000000000"))
}

/// Request ids generated on this thread share buffers of this many ids.
const IDS_PER_BUFFER: usize = 64;

thread_local! {
    static ID_BUFFER: std::cell::RefCell<bytes::BytesMut> =
        std::cell::RefCell::new(bytes::BytesMut::new());
}

/// `id` in bytes of its own: a piece of a buffer shared by this thread's recent ids, so
/// that an id costs a reference count rather than an allocation and a free (about 150
/// instructions a request; a buffer is freed once its last id is).
fn id_bytes(id: &[u8; 36]) -> bytes::Bytes {
    ID_BUFFER.with(|buffer| {
        let mut buffer = buffer.borrow_mut();
        if buffer.capacity() - buffer.len() < id.len() {
            *buffer = bytes::BytesMut::with_capacity(id.len() * IDS_PER_BUFFER);
        }
        buffer.extend_from_slice(id);
        buffer.split().freeze()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_gateway_appends_the_client_to_x_forwarded_for() {
        let mut h = HeaderMap::new();
        append_forwarded_for(&mut h, &HeaderValue::from_static("10.0.0.1"));
        assert_eq!(h[&X_FORWARDED_FOR], "10.0.0.1");
        h.append(&X_FORWARDED_FOR, HeaderValue::from_static("192.0.2.7"));
        append_forwarded_for(&mut h, &HeaderValue::from_static("::1"));
        assert_eq!(
            h.get_all(&X_FORWARDED_FOR).iter().collect::<Vec<_>>(),
            ["10.0.0.1, 192.0.2.7, ::1"]
        );
    }

    #[test]
    fn first_values_are_gets() {
        use http::header::{CONTENT_TYPE, HOST, UPGRADE};
        let x_a = HeaderName::from_static("x-a");
        for n in [0usize, 3, 8, 9, 20] {
            let mut h = HeaderMap::new();
            for i in 0..n {
                h.append(
                    HeaderName::try_from(format!("x-{i}")).unwrap(),
                    HeaderValue::from(i),
                );
            }
            h.append(&x_a, HeaderValue::from_static("1"));
            h.append(HOST, HeaderValue::from_static("h"));
            h.append(&x_a, HeaderValue::from_static("2"));
            let [a, host, ct, up] = first_values(&h, [&x_a, &HOST, &CONTENT_TYPE, &UPGRADE]);
            assert_eq!((a, host), (h.get(&x_a), h.get(HOST)), "{n}");
            assert_eq!(a.map(|v| v.as_bytes()), Some(&b"1"[..]));
            assert!(ct.is_none() && up.is_none());
        }
    }

    #[test]
    fn hop_by_hop_names_are_found_by_their_length() {
        for (i, name) in HOP_BY_HOP.iter().enumerate() {
            assert!(
                hop_by_hop_of_len(name.as_str().len()).contains(&i),
                "{name}"
            );
        }
        let listed: usize = (0..=32).map(|n| hop_by_hop_of_len(n).len()).sum();
        assert_eq!(listed, HOP_BY_HOP.len());
    }

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
        let mut up = HeaderMap::new();
        up.insert("connection", HeaderValue::from_static("Upgrade, X-Hop"));
        up.insert("upgrade", HeaderValue::from_static("websocket"));
        up.insert("x-hop", HeaderValue::from_static("1"));
        up.insert("keep-alive", HeaderValue::from_static("timeout=5"));
        up.insert("te", HeaderValue::from_static("gzip"));
        strip_hop_by_hop(&mut up, true);
        assert!(up.get("connection").is_some() && up.get("upgrade").is_some());
        assert!(up.get("x-hop").is_none() && up.get("keep-alive").is_none());
        assert!(up.get("te").is_none());
        strip_hop_by_hop(&mut up, false);
        assert!(up.is_empty(), "{up:?}");
        // Many ids, so that they span more than one shared buffer.
        let ids: Vec<HeaderValue> = (0..3 * IDS_PER_BUFFER).map(|_| request_id()).collect();
        let distinct: std::collections::HashSet<&[u8]> = ids.iter().map(|v| v.as_bytes()).collect();
        assert_eq!(distinct.len(), ids.len());
        let id = request_id();
        let id = id.to_str().unwrap();
        assert_eq!(id.len(), 36);
        assert_eq!(&id[14..15], "4");
        assert!(matches!(&id[19..20], "8" | "9" | "a" | "b"), "{id}");
        let dashes: Vec<usize> = id.match_indices('-').map(|(i, _)| i).collect();
        assert_eq!(dashes, [8, 13, 18, 23]);
        assert!(id.chars().all(|c| c == '-' || c.is_ascii_hexdigit()));
    }
}
