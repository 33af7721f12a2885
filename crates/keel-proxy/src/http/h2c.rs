//! The HTTP/1.1 `Upgrade: h2c` handshake (RFC 7540 §3.2). The HTTP/1 server
//! ([`super::h1::server`]) spots the request, writes [`switching_protocols`] and hands the
//! connection, with any bytes already read, to [`serve_upgraded`].
//!
//! A request carrying `Upgrade: h2c`, `Connection: Upgrade` and one `HTTP2-Settings`
//! header is answered `101 Switching Protocols`; the connection then speaks HTTP/2, and the
//! upgrading request is answered as stream 1. hyper's HTTP/2 server can't be handed a
//! stream the client never opened with HEADERS, so the request is *given* to it as one: once
//! the client has sent its connection preface and first frame (its SETTINGS), a HEADERS
//! frame for stream 1, carrying the original request, is replayed in front of the rest of
//! the client's bytes. Every request on the connection, stream 1 included, then goes through
//! the same [`super::forward::handle`] as any other HTTP/2 request.
//!
//! The header block is HPACK "literal without indexing" only, so the decoder's dynamic table
//! — which the client's own header blocks rely on — is left untouched. The `HTTP2-Settings`
//! values are not applied separately: the client sends the same settings in its first
//! SETTINGS frame, which the server reads before the injected stream 1.
//!
//! Not upgraded, served as plain HTTP/1.1 with the upgrade headers removed: requests with a
//! body (Envoy doesn't upgrade those either: the body would have to be buffered and
//! replayed as stream 1's DATA), requests over TLS (h2c is cleartext only; TLS negotiates
//! HTTP/2 by ALPN), and requests without exactly one `HTTP2-Settings` (RFC 7540 §3.2.1).

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::header::{CONNECTION, HOST, HeaderValue, UPGRADE};
use http::{Request, Response, StatusCode, Version};
use tokio::io::AsyncReadExt;

use super::forward::full;
use crate::l4::detect::{H2_PREFACE, Rewind};
use crate::server::{ConnInfo, Shared};
use crate::upstream::Body;

/// `HTTP2-Settings`: the client's SETTINGS payload, base64url-encoded.
const HTTP2_SETTINGS: &str = "http2-settings";

/// How long the client has to send its connection preface after the 101.
const PREFACE_TIMEOUT: Duration = Duration::from_secs(10);

/// The largest first frame accepted before stream 1 is injected: SETTINGS_MAX_FRAME_SIZE's
/// initial value, which is all a client may send before it has seen the server's SETTINGS.
const MAX_FIRST_FRAME: usize = 16_384;

/// Frame header length, and the frame types and flags written here (RFC 9113 §4.1, §6).
const FRAME_HEADER: usize = 9;
const HEADERS: u8 = 0x1;
const CONTINUATION: u8 = 0x9;
const END_STREAM: u8 = 0x1;
const END_HEADERS: u8 = 0x4;

/// What to do with a request that may ask for `Upgrade: h2c`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum H2cRequest {
    /// No h2c upgrade asked for (WebSocket and other upgrades included).
    None,
    /// Switch the connection to HTTP/2.
    Upgrade,
    /// Asked for, but not possible (a body, TLS, bad `HTTP2-Settings`): strip the upgrade
    /// headers and serve it as HTTP/1.1.
    Ignore,
}

/// Classifies a request. Costs one header lookup for requests without `Upgrade`.
pub fn classify<B: http_body::Body>(req: &Request<B>, conn: &ConnInfo) -> H2cRequest {
    let Some(upgrade) = req.headers().get(UPGRADE) else {
        return H2cRequest::None;
    };
    let h2c = upgrade
        .to_str()
        .is_ok_and(|v| v.split(',').any(|t| t.trim().eq_ignore_ascii_case("h2c")));
    if !h2c || req.version() != Version::HTTP_11 {
        return H2cRequest::None;
    }
    let connection_upgrade = req
        .headers()
        .get_all(CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|v| {
            v.split(',')
                .any(|t| t.trim().eq_ignore_ascii_case("upgrade"))
        });
    let settings = req.headers().get_all(HTTP2_SETTINGS).iter().count();
    if connection_upgrade && settings == 1 && !conn.tls && req.body().is_end_stream() {
        H2cRequest::Upgrade
    } else {
        H2cRequest::Ignore
    }
}

/// Removes the h2c upgrade headers, so the request is forwarded as plain HTTP/1.1 (an
/// upstream must not be asked to upgrade a connection the proxy owns).
pub fn strip_upgrade<B>(req: &mut Request<B>) {
    req.headers_mut().remove(UPGRADE);
    req.headers_mut().remove(HTTP2_SETTINGS);
}

/// The `101 Switching Protocols` answer to an h2c upgrade; the HTTP/1 server writes it and
/// then hands the connection to [`serve_upgraded`].
pub fn switching_protocols() -> Response<Body> {
    let mut resp = Response::new(full(Bytes::new()));
    *resp.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    resp.headers_mut()
        .insert(CONNECTION, HeaderValue::from_static("Upgrade"));
    resp.headers_mut()
        .insert(UPGRADE, HeaderValue::from_static("h2c"));
    resp
}

/// Stream 1 for the upgrading request: HEADERS (and CONTINUATION) frames ending the stream.
pub fn stream1<B>(req: &Request<B>) -> Vec<u8> {
    stream1_frames(req)
}

/// After the `101`: reads the client's preface and first frame, puts them back with stream 1
/// after them, and serves HTTP/2 until the client closes or the proxy drains.
pub async fn serve_upgraded<IO>(
    shared: Arc<Shared>,
    conn: Arc<ConnInfo>,
    mut io: IO,
    stream1: Vec<u8>,
) where
    IO: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let prefix = match tokio::time::timeout(PREFACE_TIMEOUT, read_preface(&mut io)).await {
        Ok(Ok(mut prefix)) => {
            prefix.extend_from_slice(&stream1);
            prefix
        }
        Ok(Err(e)) => {
            tracing::debug!(listener = %conn.listener, downstream = %conn.remote, "after the h2c upgrade: {e}");
            return;
        }
        Err(_) => {
            tracing::debug!(listener = %conn.listener, downstream = %conn.remote, "no HTTP/2 preface within {PREFACE_TIMEOUT:?} of the h2c upgrade");
            return;
        }
    };
    super::server::serve_h2(shared, conn, Rewind::new(prefix, io)).await
}

/// The preface and the client's first frame (RFC 9113 §3.4: its SETTINGS), as read.
async fn read_preface<IO: tokio::io::AsyncRead + Unpin>(io: &mut IO) -> std::io::Result<Vec<u8>> {
    let invalid = |why: &str| std::io::Error::new(std::io::ErrorKind::InvalidData, why.to_string());
    let mut buf = vec![0u8; H2_PREFACE.len() + FRAME_HEADER];
    io.read_exact(&mut buf).await?;
    if !buf.starts_with(H2_PREFACE) {
        return Err(invalid(
            "the client did not send the HTTP/2 connection preface",
        ));
    }
    let header = &buf[H2_PREFACE.len()..];
    let len = usize::from(header[0]) << 16 | usize::from(header[1]) << 8 | usize::from(header[2]);
    if len > MAX_FIRST_FRAME {
        return Err(invalid(
            "the client's first frame exceeds the initial maximum frame size",
        ));
    }
    let start = buf.len();
    buf.resize(start + len, 0);
    io.read_exact(&mut buf[start..]).await?;
    Ok(buf)
}

/// Stream 1: the upgrading request as HEADERS (and CONTINUATION) frames, ending the stream.
fn stream1_frames<B>(req: &Request<B>) -> Vec<u8> {
    let block = header_block(req);
    let mut out = Vec::with_capacity(block.len() + FRAME_HEADER * 2);
    let mut chunks = block.chunks(MAX_FIRST_FRAME).peekable();
    let mut kind = HEADERS;
    let mut flags = END_STREAM;
    if chunks.peek().is_none() {
        frame(&mut out, kind, flags | END_HEADERS, &[]);
    }
    while let Some(chunk) = chunks.next() {
        let last = chunks.peek().is_none();
        frame(
            &mut out,
            kind,
            if last { flags | END_HEADERS } else { flags },
            chunk,
        );
        kind = CONTINUATION;
        flags = 0;
    }
    out
}

fn frame(out: &mut Vec<u8>, kind: u8, flags: u8, payload: &[u8]) {
    let len = payload.len() as u32;
    out.extend_from_slice(&len.to_be_bytes()[1..]);
    out.push(kind);
    out.push(flags);
    out.extend_from_slice(&1u32.to_be_bytes());
    out.extend_from_slice(payload);
}

/// The request's pseudo-headers and headers, minus what is specific to the HTTP/1.1
/// connection (RFC 9113 §8.2.2: an HTTP/2 server rejects those).
fn header_block<B>(req: &Request<B>) -> Vec<u8> {
    let mut block = Vec::with_capacity(256);
    let authority = req
        .uri()
        .authority()
        .map(|a| a.as_str().as_bytes().to_vec())
        .or_else(|| req.headers().get(HOST).map(|h| h.as_bytes().to_vec()));
    let path = match req.uri().path_and_query() {
        Some(p) => p.as_str(),
        None if req.method() == http::Method::OPTIONS => "*",
        None => "/",
    };
    literal(&mut block, b":method", req.method().as_str().as_bytes());
    literal(&mut block, b":scheme", b"http");
    if let Some(a) = authority {
        literal(&mut block, b":authority", &a);
    }
    literal(&mut block, b":path", path.as_bytes());
    let listed: Vec<String> = req
        .headers()
        .get_all(CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(',').map(|t| t.trim().to_ascii_lowercase()))
        .collect();
    for (name, value) in req.headers() {
        let n = name.as_str();
        let connection_specific = matches!(
            n,
            "host"
                | "connection"
                | "upgrade"
                | "http2-settings"
                | "keep-alive"
                | "proxy-connection"
                | "transfer-encoding"
        ) || (n == "te" && value.as_bytes() != b"trailers")
            || listed.iter().any(|l| l == n);
        if !connection_specific {
            literal(&mut block, n.as_bytes(), value.as_bytes());
        }
    }
    block
}

/// HPACK "literal header field without indexing — new name" (RFC 7541 §6.2.2), no Huffman.
fn literal(out: &mut Vec<u8>, name: &[u8], value: &[u8]) {
    out.push(0);
    string(out, name);
    string(out, value);
}

fn string(out: &mut Vec<u8>, s: &[u8]) {
    integer(out, s.len(), 7, 0);
    out.extend_from_slice(s);
}

/// An HPACK integer with an `n`-bit prefix (RFC 7541 §5.1); `high` holds the bits above it.
fn integer(out: &mut Vec<u8>, mut v: usize, n: u32, high: u8) {
    let max = (1usize << n) - 1;
    if v < max {
        out.push(high | v as u8);
        return;
    }
    out.push(high | max as u8);
    v -= max;
    while v >= 128 {
        out.push((v % 128) as u8 | 0x80);
        v /= 128;
    }
    out.push(v as u8);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hpack_integers() {
        // RFC 7541 C.1: 10 and 1337 with a 5-bit prefix.
        let mut out = Vec::new();
        integer(&mut out, 10, 5, 0);
        assert_eq!(out, [10]);
        out.clear();
        integer(&mut out, 1337, 5, 0);
        assert_eq!(out, [31, 154, 10]);
        out.clear();
        integer(&mut out, 127, 7, 0);
        assert_eq!(out, [127, 0]);
    }

    #[test]
    fn stream1_carries_the_request_without_connection_headers() {
        let req = Request::get("/a?b=1")
            .header("host", "p.test")
            .header("connection", "Upgrade, HTTP2-Settings, x-hop")
            .header("upgrade", "h2c")
            .header("http2-settings", "AAMAAABkAAQCAAAAAAIAAAAA")
            .header("x-hop", "1")
            .header("x-kept", "yes")
            .body(())
            .expect("request");
        let frames = stream1_frames(&req);
        // One HEADERS frame on stream 1 ending the stream and the header block.
        assert_eq!(frames[3], HEADERS);
        assert_eq!(frames[4], END_STREAM | END_HEADERS);
        assert_eq!(&frames[5..9], &[0, 0, 0, 1]);
        let len = usize::from(frames[1]) << 8 | usize::from(frames[2]);
        assert_eq!(frames.len(), FRAME_HEADER + len);
        let block = &frames[FRAME_HEADER..];
        let has = |s: &[u8]| block.windows(s.len()).any(|w| w == s);
        assert!(has(b":authority") && has(b"p.test") && has(b"/a?b=1") && has(b"x-kept"));
        assert!(!has(b"x-hop") && !has(b"upgrade") && !has(b"http2-settings") && !has(b"host"));
    }

    #[test]
    fn large_header_blocks_continue() {
        let req = Request::get("/")
            .header("host", "p.test")
            .header("x-big", "v".repeat(40_000))
            .body(())
            .expect("request");
        let frames = stream1_frames(&req);
        let mut at = 0;
        let mut kinds = Vec::new();
        while at < frames.len() {
            let len = usize::from(frames[at]) << 16
                | usize::from(frames[at + 1]) << 8
                | usize::from(frames[at + 2]);
            assert!(len <= MAX_FIRST_FRAME);
            kinds.push((frames[at + 3], frames[at + 4]));
            at += FRAME_HEADER + len;
        }
        assert_eq!(
            kinds,
            [
                (HEADERS, END_STREAM),
                (CONTINUATION, 0),
                (CONTINUATION, END_HEADERS)
            ]
        );
    }
}
