//! Unit tests of the codec's pieces: heads, framing decisions, chunked bodies, writing.
//! Property tests (random and mutated input) are in `proptests.rs`.

#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)] // test code: fail loudly

use bytes::{Bytes, BytesMut};
use http::{HeaderMap, Method, StatusCode, Version};

use super::HeaderCase;
use super::decode::{BodyError, decode_all};
use super::encode::{self, BodyInfo, Encoder, RequestInfo};
use super::io::WriteBuf;
use super::parse::{self, BodyLength, HeadError, ReasonPhrase};

fn req(raw: &str) -> Result<Option<parse::RequestHead>, HeadError> {
    parse::request(&mut BytesMut::from(raw.as_bytes()), &mut Default::default())
}

fn head(raw: &str) -> parse::RequestHead {
    req(raw).expect("valid").expect("complete")
}

fn status_of(raw: &str) -> StatusCode {
    req(raw).expect_err("refused").status()
}

#[test]
fn request_head_parts_and_leftover() {
    let mut buf = BytesMut::from(
        &b"POST /a?b=1 HTTP/1.1\r\nHost: x\r\nX-Mixed-Case: v\r\nContent-Length: 3\r\n\r\nabcGET"[..],
    );
    let h = parse::request(&mut buf, &mut Default::default())
        .unwrap()
        .unwrap();
    assert_eq!(h.parts.method, Method::POST);
    assert_eq!(h.parts.uri, "/a?b=1");
    assert_eq!(h.parts.version, Version::HTTP_11);
    assert_eq!(h.parts.headers["x-mixed-case"], "v");
    assert_eq!(h.body, BodyLength::Length(3));
    assert!(h.keep_alive && !h.expect_continue);
    // The body and the next request stay in the buffer.
    assert_eq!(&buf[..], b"abcGET");
    // Lower-case and Title-Case names need no list of spellings; others do.
    assert!(h.parts.extensions.get::<HeaderCase>().is_none());
    assert!(h.parts.headers["x-mixed-case"].is_sensitive());
    let odd = head("GET / HTTP/1.1\r\nhost: x\r\nETag: 1\r\nX-Request-ID: 2\r\n\r\n");
    let case = odd.parts.extensions.get::<HeaderCase>().unwrap();
    assert_eq!(case.len(), 3);
    assert_eq!(case.raw(1), b"ETag");
    assert!(!odd.parts.headers["host"].is_sensitive());
    // Incomplete heads wait for more.
    assert!(req("GET / HTTP/1.1\r\nHost: x\r\n").unwrap().is_none());
}

#[test]
fn repeated_heads_on_one_connection_parse_alike() {
    // The cache keeps names and repeated values per connection: the third head reuses what
    // the first two had in common, and whatever changed is read afresh.
    let mut cache = super::cache::HeadCache::default();
    let mut parse = |raw: &str| {
        let h = parse::request(&mut BytesMut::from(raw.as_bytes()), &mut cache)
            .unwrap()
            .unwrap();
        (h.parts.headers, h.keep_alive, h.body)
    };
    let same = "GET / HTTP/1.1\r\nHost: a\r\nuser-agent: ua\r\nConnection: keep-alive\r\n\r\n";
    for _ in 0..3 {
        let (headers, keep_alive, body) = parse(same);
        assert_eq!(headers["host"], "a");
        assert!(headers["host"].is_sensitive(), "Title-Case mark kept");
        assert!(!headers["user-agent"].is_sensitive());
        assert_eq!(headers["user-agent"], "ua");
        assert!(keep_alive && !headers.contains_key("connection"));
        assert_eq!(body, BodyLength::Empty);
    }
    let (headers, keep_alive, _) =
        parse("GET / HTTP/1.1\r\nHost: b\r\nuser-agent: ua\r\nConnection: close\r\n\r\n");
    assert_eq!(headers["host"], "b");
    assert!(!keep_alive);
    let (headers, _, body) =
        parse("GET / HTTP/1.1\r\nhost: a\r\nContent-Length: 2\r\nConnection: x-hop, close\r\n\r\n");
    assert_eq!(headers["host"], "a");
    assert!(
        !headers["host"].is_sensitive(),
        "spelled lower case this time"
    );
    assert_eq!(body, BodyLength::Length(2));
    assert_eq!(headers["connection"], "x-hop, close");
}

#[test]
fn keep_alive_and_expect() {
    assert!(head("GET / HTTP/1.1\r\n\r\n").keep_alive);
    assert!(!head("GET / HTTP/1.1\r\nConnection: close\r\n\r\n").keep_alive);
    assert!(!head("GET / HTTP/1.0\r\n\r\n").keep_alive);
    assert!(head("GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n").keep_alive);
    let h = head("PUT / HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: 5\r\n\r\n");
    assert!(h.expect_continue);
    // Nothing to continue without a body, nor for HTTP/1.0.
    assert!(!head("GET / HTTP/1.1\r\nExpect: 100-continue\r\n\r\n").expect_continue);
    let h = head("PUT / HTTP/1.0\r\nExpect: 100-continue\r\nContent-Length: 5\r\n\r\n");
    assert!(!h.expect_continue);
}

#[test]
fn request_framing() {
    let te = head("POST / HTTP/1.1\r\nTransfer-Encoding: Chunked\r\n\r\n");
    assert_eq!(te.body, BodyLength::Chunked);
    let zero = head("POST / HTTP/1.1\r\nContent-Length: 0\r\n\r\n");
    assert_eq!(zero.body, BodyLength::Empty);
    // Identical repeated lengths are one length (RFC 9110 §8.6).
    let dup = head("POST / HTTP/1.1\r\nContent-Length: 7\r\nContent-Length: 7, 7\r\n\r\n");
    assert_eq!(dup.body, BodyLength::Length(7));
    for bad in [
        "POST / HTTP/1.1\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n",
        "POST / HTTP/1.1\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\n",
        "POST / HTTP/1.1\r\nContent-Length: +3\r\n\r\n",
        "POST / HTTP/1.1\r\nContent-Length: 3a\r\n\r\n",
        "POST / HTTP/1.1\r\nContent-Length: 99999999999999999999\r\n\r\n",
        "POST / HTTP/1.1\r\nContent-Length: \r\n\r\n",
        "POST / HTTP/1.1\r\nTransfer-Encoding: chunked, identity\r\n\r\n",
        "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n",
        "POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n",
        // Obsolete line folding.
        "GET / HTTP/1.1\r\nX-A: 1\r\n  continued\r\n\r\n",
        "GET / HTTP/1.1\r\nBad Name: 1\r\n\r\n",
        "GET /a\x01 HTTP/1.1\r\n\r\n",
    ] {
        assert_eq!(status_of(bad), StatusCode::BAD_REQUEST, "{bad:?}");
    }
    assert_eq!(
        status_of("POST / HTTP/1.1\r\nTransfer-Encoding: gzip, chunked\r\n\r\n"),
        StatusCode::NOT_IMPLEMENTED
    );
    assert_eq!(
        status_of("CONNECT a:443 HTTP/1.1\r\n\r\n"),
        StatusCode::NOT_IMPLEMENTED
    );
    assert_eq!(
        status_of("GET / HTTP/2.0\r\n\r\n"),
        StatusCode::HTTP_VERSION_NOT_SUPPORTED
    );
}

#[test]
fn limits_are_431() {
    let many: String = (0..101).map(|i| format!("x-{i}: v\r\n")).collect();
    assert_eq!(
        status_of(&format!("GET / HTTP/1.1\r\n{many}\r\n")),
        StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE
    );
    let hundred: String = (0..100).map(|i| format!("x-{i}: v\r\n")).collect();
    assert!(
        req(&format!("GET / HTTP/1.1\r\n{hundred}\r\n"))
            .unwrap()
            .is_some()
    );
    // Too large whether complete or not.
    let big = "v".repeat(super::MAX_HEAD);
    assert_eq!(
        status_of(&format!("GET / HTTP/1.1\r\nx: {big}\r\n\r\n")),
        StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE
    );
    assert_eq!(
        status_of(&format!("GET / HTTP/1.1\r\nx: {big}")),
        StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE
    );
}

fn resp(raw: &str, method: &Method) -> parse::ResponseHead {
    parse::response(
        &mut BytesMut::from(raw.as_bytes()),
        method,
        &mut Default::default(),
    )
    .expect("valid")
    .expect("complete")
}

#[test]
fn response_framing_and_reuse() {
    let get = &Method::GET;
    let r = resp("HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n", get);
    assert_eq!((r.body, r.keep_alive), (BodyLength::Length(5), true));
    assert!(r.parts.extensions.get::<ReasonPhrase>().is_none());
    let r = resp(
        "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n",
        &Method::HEAD,
    );
    assert_eq!(r.body, BodyLength::Empty);
    for status in ["204 No Content", "304 Not Modified", "100 Continue"] {
        let r = resp(
            &format!("HTTP/1.1 {status}\r\nContent-Length: 5\r\n\r\n"),
            get,
        );
        assert_eq!(r.body, BodyLength::Empty, "{status}");
    }
    let r = resp("HTTP/1.1 200 OK\r\n\r\n", get);
    assert_eq!((r.body, r.keep_alive), (BodyLength::Eof, false));
    let r = resp(
        "HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 1\r\n\r\n",
        get,
    );
    assert!(!r.keep_alive);
    let r = resp("HTTP/1.0 200 OK\r\nContent-Length: 1\r\n\r\n", get);
    assert!(!r.keep_alive);
    let r = resp(
        "HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 1\r\n\r\n",
        get,
    );
    assert!(r.keep_alive);
    // Transfer-Encoding wins over Content-Length, and the connection is not reused.
    let r = resp(
        "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n",
        get,
    );
    assert_eq!((r.body, r.keep_alive), (BodyLength::Chunked, false));
    let r = resp("HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n", get);
    assert_eq!((r.body, r.keep_alive), (BodyLength::Eof, false));
    let r = resp("HTTP/1.1 200 Fine Thanks\r\nContent-Length: 0\r\n\r\n", get);
    assert_eq!(
        &r.parts.extensions.get::<ReasonPhrase>().unwrap().0[..],
        b"Fine Thanks"
    );
    assert!(
        parse::response(
            &mut BytesMut::from(&b"HTTP/1.1 200 OK\r\nContent-Length: x\r\n\r\n"[..]),
            get,
            &mut Default::default()
        )
        .is_err()
    );
}

#[test]
fn chunked_bodies() {
    let (data, trailers) = decode_all(
        BodyLength::Chunked,
        b"5;ext=1\r\nhello\r\n6 \r\n world\r\n0\r\ngrpc-status: 0\r\nX-T: a\r\n\r\n",
    )
    .unwrap();
    assert_eq!(data, b"hello world");
    let t = trailers.unwrap();
    assert_eq!(t["grpc-status"], "0");
    assert_eq!(t["x-t"], "a");
    let (data, trailers) =
        decode_all(BodyLength::Chunked, b"A\r\n0123456789\r\n0\r\n\r\n").unwrap();
    assert_eq!((data.len(), trailers), (10, None));
    for bad in [
        &b"\r\n"[..],
        b"x\r\n",
        b"5\r\nhelloXX",
        b"11111111111111111\r\n",
        b"5 x\r\nhello\r\n",
        b"5;a\x00b\r\nhello\r\n",
        b"0\r\nbad trailer\r\n\r\n",
    ] {
        assert!(
            matches!(
                decode_all(BodyLength::Chunked, bad),
                Err(BodyError::Invalid(_))
            ),
            "{:?}",
            String::from_utf8_lossy(bad)
        );
    }
    // A body cut short is incomplete, not malformed.
    assert_eq!(
        decode_all(BodyLength::Chunked, b"5\r\nhel"),
        Err(BodyError::Incomplete)
    );
    assert_eq!(
        decode_all(BodyLength::Length(4), b"abc"),
        Err(BodyError::Incomplete)
    );
    assert_eq!(decode_all(BodyLength::Eof, b"abc").unwrap().0, b"abc");
    // An endless chunk-size line is refused once it passes the limit.
    let long = vec![b'1'; 5000];
    assert!(matches!(
        decode_all(BodyLength::Chunked, &long),
        Err(BodyError::Invalid(_))
    ));
}

/// What `out` writes (tokio writes to a `Vec` at once).
fn written(out: &mut WriteBuf) -> Vec<u8> {
    let mut wire = Vec::new();
    let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
    assert!(out.poll_write(&mut wire, &mut cx).is_ready());
    wire
}

#[test]
fn request_heads_keep_case_and_frame_the_body() {
    let h = head("POST /x HTTP/1.1\r\nHost: up\r\nX-Trace-ID: 7\r\nContent-Length: 3\r\n\r\n");
    let mut out = Vec::new();
    let enc = encode::request_head(
        &mut out,
        &h.parts,
        BodyInfo {
            end: false,
            exact: Some(3),
        },
        &mut Default::default(),
    );
    assert_eq!(enc, Encoder::Length(3));
    assert_eq!(
        String::from_utf8_lossy(&out),
        "POST /x HTTP/1.1\r\nHost: up\r\nX-Trace-ID: 7\r\nContent-Length: 3\r\n\r\n"
    );
    let mut parts = h.parts;
    parts.headers.insert("x-added", "1".parse().unwrap());
    let mut out = Vec::new();
    let enc = encode::request_head(
        &mut out,
        &parts,
        BodyInfo {
            end: false,
            exact: None,
        },
        &mut Default::default(),
    );
    assert_eq!(enc, Encoder::Chunked);
    let text = String::from_utf8_lossy(&out);
    assert!(
        text.contains("X-Trace-ID: 7\r\nx-added: 1\r\ntransfer-encoding: chunked\r\n"),
        "{text}"
    );
    assert!(!text.to_lowercase().contains("content-length"), "{text}");
    // An empty POST says so.
    let mut out = Vec::new();
    let post = head("POST / HTTP/1.1\r\nHost: a\r\n\r\n");
    let enc = encode::request_head(
        &mut out,
        &post.parts,
        BodyInfo {
            end: true,
            exact: Some(0),
        },
        &mut Default::default(),
    );
    assert_eq!(enc, Encoder::None);
    assert!(String::from_utf8_lossy(&out).contains("content-length: 0\r\n"));
}

#[test]
fn response_heads() {
    let r = resp(
        "HTTP/1.1 200 OK\r\nServer: up\r\nContent-Length: 2\r\nX-Dup: a\r\nx-dup: b\r\n\r\n",
        &Method::GET,
    );
    let info = RequestInfo {
        version: Version::HTTP_11,
        head: false,
        keep_alive: true,
    };
    let mut out = Vec::new();
    let (enc, keep) = encode::response_head(
        &mut out,
        &r.parts,
        BodyInfo {
            end: false,
            exact: Some(2),
        },
        &info,
        &mut Default::default(),
    );
    assert_eq!((enc, keep), (Encoder::Length(2), true));
    let text = String::from_utf8_lossy(&out).to_string();
    assert!(
        text.starts_with(
            "HTTP/1.1 200 OK\r\nServer: up\r\nContent-Length: 2\r\nX-Dup: a\r\nx-dup: b\r\ndate: "
        ),
        "{text}"
    );
    // Unknown length: chunked for HTTP/1.1, close-delimited for HTTP/1.0.
    let mut parts = r.parts;
    parts.headers.remove("content-length");
    let unknown = BodyInfo {
        end: false,
        exact: None,
    };
    let mut out = Vec::new();
    let (enc, _) = encode::response_head(&mut out, &parts, unknown, &info, &mut Default::default());
    assert_eq!(enc, Encoder::Chunked);
    let http10 = RequestInfo {
        version: Version::HTTP_10,
        ..info
    };
    let mut out = Vec::new();
    let (enc, keep) =
        encode::response_head(&mut out, &parts, unknown, &http10, &mut Default::default());
    assert_eq!((enc, keep), (Encoder::Eof, false));
    assert!(out.starts_with(b"HTTP/1.0 200 OK\r\n"));
    // Keep-alive for an HTTP/1.0 client is said explicitly; closing for HTTP/1.1.
    let mut out = Vec::new();
    encode::response_head(
        &mut out,
        &parts,
        BodyInfo {
            end: true,
            exact: Some(0),
        },
        &http10,
        &mut Default::default(),
    );
    assert!(String::from_utf8_lossy(&out).contains("connection: keep-alive\r\n"));
    let mut out = Vec::new();
    let closing = RequestInfo {
        keep_alive: false,
        ..info
    };
    encode::response_head(
        &mut out,
        &parts,
        BodyInfo {
            end: true,
            exact: Some(0),
        },
        &closing,
        &mut Default::default(),
    );
    assert!(String::from_utf8_lossy(&out).contains("content-length: 0\r\n"));
    assert!(String::from_utf8_lossy(&out).contains("connection: close\r\n"));
    // HEAD: the upstream's length stays, no body follows.
    let r = resp(
        "HTTP/1.1 200 OK\r\nContent-Length: 99\r\n\r\n",
        &Method::HEAD,
    );
    let mut out = Vec::new();
    let head_req = RequestInfo { head: true, ..info };
    let (enc, _) = encode::response_head(
        &mut out,
        &r.parts,
        BodyInfo {
            end: true,
            exact: Some(0),
        },
        &head_req,
        &mut Default::default(),
    );
    assert_eq!(enc, Encoder::None);
    assert!(String::from_utf8_lossy(&out).contains("Content-Length: 99\r\n"));
}

#[test]
fn chunked_encoding_with_trailers() {
    let mut out = WriteBuf::default();
    let mut enc = Encoder::Chunked;
    enc.data(&mut out, Bytes::from_static(b"hello")).unwrap();
    enc.data(&mut out, Bytes::from(vec![b'x'; 20_000])).unwrap();
    enc.data(&mut out, Bytes::from_static(b"!")).unwrap();
    let mut t = HeaderMap::new();
    t.insert("grpc-status", "0".parse().unwrap());
    enc.trailers(&mut out, &t);
    assert_eq!(enc, Encoder::Ended);
    let wire = written(&mut out);
    let (data, trailers) = decode_all(BodyLength::Chunked, &wire).unwrap();
    assert_eq!(data.len(), 20_006);
    assert_eq!(trailers.unwrap()["grpc-status"], "0");
    // A length is enforced both ways.
    let mut enc = Encoder::Length(3);
    assert!(enc.data(&mut out, Bytes::from_static(b"abcd")).is_err());
    let mut enc = Encoder::Length(3);
    enc.data(&mut out, Bytes::from_static(b"ab")).unwrap();
    assert!(enc.end(&mut out).is_err());
}

#[test]
fn dates() {
    assert_eq!(
        &encode::imf_fixdate(784_111_777),
        b"Sun, 06 Nov 1994 08:49:37 GMT"
    );
    assert_eq!(&encode::imf_fixdate(0), b"Thu, 01 Jan 1970 00:00:00 GMT");
    assert_eq!(
        &encode::imf_fixdate(951_782_400),
        b"Tue, 29 Feb 2000 00:00:00 GMT"
    );
}
