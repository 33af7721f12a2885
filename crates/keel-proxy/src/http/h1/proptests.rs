//! Property tests: the parser and the chunked decoder take bytes from the network, so
//! random and mutated input must never panic, and what the encoder writes must read back
//! the same, however the bytes are split across reads.

#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)] // test code: fail loudly

use bytes::{Bytes, BytesMut};
use http::Method;
use proptest::prelude::*;

use super::decode::{Decoded, Decoder};
use super::encode::{self, BodyInfo, Encoder};
use super::io::WriteBuf;
use super::parse::{self, BodyLength};

const VALID: &[&[u8]] = &[
    b"GET /a?b=c HTTP/1.1\r\nHost: example.com\r\nX-Case: Value\r\n\r\n",
    b"POST /up HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\nT: 1\r\n\r\n",
    b"PUT / HTTP/1.0\r\nContent-Length: 3\r\nConnection: keep-alive\r\n\r\nabc",
];

/// A valid message with a few bytes changed, inserted or removed.
fn mutated() -> impl Strategy<Value = Vec<u8>> {
    (
        prop::sample::select(VALID),
        prop::collection::vec((any::<prop::sample::Index>(), any::<u8>(), 0u8..3), 1..6),
    )
        .prop_map(|(base, edits)| {
            let mut v = base.to_vec();
            for (at, byte, kind) in edits {
                let i = at.index(v.len() + 1);
                match kind {
                    0 if i < v.len() => v[i] = byte,
                    1 => v.insert(i, byte),
                    _ if i < v.len() => {
                        v.remove(i);
                    }
                    _ => {}
                }
            }
            v
        })
}

/// Parses a request and, if it has a body, decodes it: the server's whole read path.
fn read_request(input: &[u8]) {
    let mut buf = BytesMut::from(input);
    if let Ok(Some(head)) = parse::request(&mut buf, &mut Default::default()) {
        let mut d = Decoder::new(head.body);
        for _ in 0..input.len() + 2 {
            match d.decode(&mut buf) {
                Ok(Decoded::End) | Err(_) => break,
                Ok(Decoded::NeedMore) => {
                    let _ = d.at_eof();
                    break;
                }
                Ok(_) => {}
            }
        }
    }
}

/// Feeds `wire` to a chunked decoder in pieces cut at `cuts`, as reads would deliver it.
fn decode_in_pieces(
    wire: &[u8],
    cuts: &[usize],
) -> Result<(Vec<u8>, Option<http::HeaderMap>), String> {
    let mut d = Decoder::new(BodyLength::Chunked);
    let mut buf = BytesMut::new();
    let (mut data, mut trailers) = (Vec::new(), None);
    let mut points: Vec<usize> = cuts.iter().map(|c| c % (wire.len() + 1)).collect();
    points.push(wire.len());
    points.sort_unstable();
    let mut fed = 0;
    for p in points {
        buf.extend_from_slice(&wire[fed..p]);
        fed = p;
        loop {
            match d.decode(&mut buf).map_err(|e| e.to_string())? {
                Decoded::Data(b) => data.extend_from_slice(&b),
                Decoded::Trailers(t) => trailers = Some(t),
                Decoded::End => return Ok((data, trailers)),
                Decoded::NeedMore => break,
            }
        }
    }
    Err("incomplete".into())
}

fn token() -> impl Strategy<Value = String> {
    "[A-Za-z][A-Za-z0-9-]{0,15}"
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn random_bytes_never_panic(input in prop::collection::vec(any::<u8>(), 0..512)) {
        read_request(&input);
        let _ = parse::response(&mut BytesMut::from(&input[..]), &Method::GET, &mut Default::default());
        let mut d = Decoder::new(BodyLength::Chunked);
        let mut buf = BytesMut::from(&input[..]);
        for _ in 0..input.len() + 2 {
            if !matches!(d.decode(&mut buf), Ok(Decoded::Data(_) | Decoded::Trailers(_))) {
                break;
            }
        }
    }

    #[test]
    fn mutated_messages_never_panic(input in mutated()) {
        read_request(&input);
        let _ = parse::response(&mut BytesMut::from(&input[..]), &Method::HEAD, &mut Default::default());
    }

    #[test]
    fn chunked_round_trips_across_any_split(
        chunks in prop::collection::vec(prop::collection::vec(any::<u8>(), 0..300), 0..8),
        trailer in prop::option::of(("x-[a-z]{1,8}", "[a-zA-Z0-9]{0,12}")),
        cuts in prop::collection::vec(any::<usize>(), 0..12),
    ) {
        let mut out = WriteBuf::default();
        let mut enc = Encoder::Chunked;
        for c in &chunks {
            enc.data(&mut out, Bytes::from(c.clone())).unwrap();
        }
        let mut t = http::HeaderMap::new();
        if let Some((k, v)) = &trailer {
            t.insert(http::HeaderName::from_bytes(k.as_bytes()).unwrap(), v.parse().unwrap());
            enc.trailers(&mut out, &t);
        } else {
            enc.end(&mut out).unwrap();
        }
        let mut wire = Vec::new();
        let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
        prop_assert!(out.poll_write(&mut wire, &mut cx).is_ready());
        let (data, got) = decode_in_pieces(&wire, &cuts).unwrap();
        prop_assert_eq!(data, chunks.concat());
        prop_assert_eq!(got.unwrap_or_default(), t);
    }

    #[test]
    fn request_heads_round_trip_with_their_case(
        path in "/[a-z0-9/._~-]{0,30}",
        fields in prop::collection::vec((token(), "[ -~]{0,20}"), 0..12),
        len in prop::option::of(0u64..100_000),
    ) {
        let mut raw = format!("PATCH {path} HTTP/1.1\r\nHost: up.test\r\n");
        for (k, v) in &fields {
            if k.eq_ignore_ascii_case("content-length") || k.eq_ignore_ascii_case("transfer-encoding")
                || k.eq_ignore_ascii_case("host") {
                continue;
            }
            raw.push_str(&format!("{k}: {}\r\n", v.trim()));
        }
        raw.push_str("\r\n");
        let head = parse::request(&mut BytesMut::from(raw.as_bytes()), &mut Default::default()).unwrap().unwrap();
        let body = match len {
            Some(n) => BodyInfo { end: n == 0, exact: Some(n) },
            None => BodyInfo { end: false, exact: None },
        };
        let mut out = Vec::new();
        encode::request_head(&mut out, &head.parts, body, &mut Default::default());
        let again = parse::request(&mut BytesMut::from(&out[..]), &mut Default::default()).unwrap().unwrap();
        prop_assert_eq!(&again.parts.method, &head.parts.method);
        prop_assert_eq!(&again.parts.uri, &head.parts.uri);
        for (name, value) in &head.parts.headers {
            prop_assert!(again.parts.headers.get_all(name).iter().any(|v| v == value));
        }
        // Every original spelling went out as it came in.
        let text = String::from_utf8_lossy(&out);
        for line in raw.split("\r\n").skip(1).filter(|l| !l.is_empty()) {
            let name = line.split(':').next().unwrap_or_default();
            prop_assert!(text.contains(&format!("\r\n{name}: ")), "{} missing in {}", name, text);
        }
        let expected = match len {
            Some(0) => BodyLength::Empty,
            Some(n) => BodyLength::Length(n),
            None => BodyLength::Chunked,
        };
        prop_assert_eq!(again.body, expected);
    }
}
