//! Reading the server name (SNI) from a TLS ClientHello without terminating TLS.
//!
//! The parser works on whatever bytes have arrived so far and says whether it needs more,
//! gave up, or found the hello. It never panics and never indexes past the input: every
//! length read from the wire is checked against what is there (the input is attacker
//! controlled). A ClientHello split over several TLS records is reassembled, up to
//! [`MAX_HELLO`] bytes.

/// The largest ClientHello (handshake message, all records) we are willing to buffer. Real
/// hellos are well under 2 KiB; post-quantum key shares bring them to ~1.8 KiB, and session
/// tickets or padding rarely push past 8 KiB.
pub const MAX_HELLO: usize = 64 * 1024;

/// TLS record type `handshake`.
const RECORD_HANDSHAKE: u8 = 0x16;
/// Handshake type `client_hello`.
const CLIENT_HELLO: u8 = 0x01;
/// Extension `server_name` (RFC 6066 §3).
/// `application_layer_protocol_negotiation` (RFC 7301).
const EXT_ALPN: u16 = 16;
const EXT_SERVER_NAME: u16 = 0;
/// `NameType.host_name`.
const HOST_NAME: u8 = 0;
/// RFC 8446 §5.1: a record's plaintext is at most 2^14 bytes (older versions allowed up to
/// 2048 more for compression/expansion; accept those too).
const MAX_RECORD: usize = (1 << 14) + 2048;

/// What the bytes so far say.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Hello {
    /// A prefix of a plausible ClientHello: read more.
    Incomplete,
    /// Not a TLS ClientHello (or one too large or malformed to read).
    Invalid(&'static str),
    /// A complete ClientHello; the server name if it carried a valid one.
    Parsed { sni: Option<String> },
}

/// Parses the ClientHello at the start of `buf`.
pub fn parse(buf: &[u8]) -> Hello {
    match reassemble(buf) {
        Ok(Some(msg)) => match client_hello_sni(&msg) {
            Ok(sni) => Hello::Parsed { sni },
            Err(why) => Hello::Invalid(why),
        },
        Ok(None) => Hello::Incomplete,
        Err(why) => Hello::Invalid(why),
    }
}

/// The ALPN protocols a complete ClientHello at the start of `buf` offers (RFC 7301); empty
/// when it offers none or isn't one.
pub fn alpn(buf: &[u8]) -> Vec<Vec<u8>> {
    let Ok(Some(msg)) = reassemble(buf) else {
        return Vec::new();
    };
    client_hello_alpn(&msg).unwrap_or_default()
}

fn client_hello_alpn(msg: &[u8]) -> Result<Vec<Vec<u8>>, &'static str> {
    let mut r = Reader { buf: msg };
    r.take(4)?;
    r.take(2)?;
    r.take(32)?;
    r.vec8()?;
    r.vec16()?;
    r.vec8()?;
    if r.is_empty() {
        return Ok(Vec::new());
    }
    let mut exts = Reader { buf: r.vec16()? };
    while !exts.is_empty() {
        let kind = exts.u16()?;
        let data = exts.vec16()?;
        if kind == EXT_ALPN {
            let mut list = Reader {
                buf: Reader { buf: data }.vec16()?,
            };
            let mut out = Vec::new();
            while !list.is_empty() {
                out.push(list.vec8()?.to_vec());
            }
            return Ok(out);
        }
    }
    Ok(Vec::new())
}

/// Whether `buf` can begin a TLS handshake record (enough to tell TLS from other protocols):
/// `None` until three bytes are there.
pub fn looks_like_tls(buf: &[u8]) -> Option<bool> {
    match buf {
        [t, ..] if *t != RECORD_HANDSHAKE => Some(false),
        [_, major, ..] if *major != 3 => Some(false),
        // SSL 3.0 (3,0) to TLS 1.3's legacy record versions (3,1)..(3,4).
        [_, _, minor, ..] => Some(*minor <= 4),
        _ => None,
    }
}

/// The handshake message (type, length and body) from the handshake records at the start of
/// `buf`; `Ok(None)` while incomplete.
fn reassemble(buf: &[u8]) -> Result<Option<Vec<u8>>, &'static str> {
    let mut msg: Vec<u8> = Vec::new();
    let mut rest = buf;
    loop {
        match looks_like_tls(rest) {
            Some(true) => {}
            Some(false) => return Err("not a TLS handshake record"),
            None => return Ok(None),
        }
        let Some(header) = rest.get(..5) else {
            return Ok(None);
        };
        let len = usize::from(u16::from_be_bytes([header[3], header[4]]));
        if len == 0 || len > MAX_RECORD {
            return Err("TLS record length out of range");
        }
        let Some(fragment) = rest.get(5..5 + len) else {
            return Ok(None);
        };
        msg.extend_from_slice(fragment);
        rest = &rest[5 + len..];
        let Some(head) = msg.get(..4) else {
            continue;
        };
        if head[0] != CLIENT_HELLO {
            return Err("first handshake message is not a ClientHello");
        }
        let body_len = u32::from_be_bytes([0, head[1], head[2], head[3]]) as usize;
        if body_len + 4 > MAX_HELLO {
            return Err("ClientHello larger than the proxy buffers");
        }
        if msg.len() >= body_len + 4 {
            msg.truncate(body_len + 4);
            return Ok(Some(msg));
        }
    }
}

/// A cursor over untrusted bytes: every read is bounds-checked.
struct Reader<'a> {
    buf: &'a [u8],
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], &'static str> {
        if n > self.buf.len() {
            return Err("ClientHello field runs past its end");
        }
        let (head, tail) = self.buf.split_at(n);
        self.buf = tail;
        Ok(head)
    }

    fn u8(&mut self) -> Result<u8, &'static str> {
        Ok(self.take(1)?[0])
    }

    fn u16(&mut self) -> Result<u16, &'static str> {
        let b = self.take(2)?;
        Ok(u16::from_be_bytes([b[0], b[1]]))
    }

    /// A vector with a one- or two-byte length prefix.
    fn vec8(&mut self) -> Result<&'a [u8], &'static str> {
        let n = usize::from(self.u8()?);
        self.take(n)
    }

    fn vec16(&mut self) -> Result<&'a [u8], &'static str> {
        let n = usize::from(self.u16()?);
        self.take(n)
    }

    fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }
}

/// The SNI of a ClientHello handshake message (RFC 8446 §4.1.2, RFC 6066 §3).
fn client_hello_sni(msg: &[u8]) -> Result<Option<String>, &'static str> {
    let mut r = Reader { buf: msg };
    r.take(4)?; // type and length, checked by `reassemble`
    r.take(2)?; // legacy_version
    r.take(32)?; // random
    r.vec8()?; // legacy_session_id
    r.vec16()?; // cipher_suites
    r.vec8()?; // legacy_compression_methods
    if r.is_empty() {
        // SSL 3.0-style hello without extensions.
        return Ok(None);
    }
    let mut exts = Reader { buf: r.vec16()? };
    while !exts.is_empty() {
        let kind = exts.u16()?;
        let data = exts.vec16()?;
        if kind == EXT_SERVER_NAME {
            return server_name(data);
        }
    }
    Ok(None)
}

fn server_name(data: &[u8]) -> Result<Option<String>, &'static str> {
    let mut r = Reader { buf: data };
    let mut list = Reader { buf: r.vec16()? };
    while !list.is_empty() {
        let kind = list.u8()?;
        let name = list.vec16()?;
        if kind == HOST_NAME {
            return Ok(valid_host(name));
        }
    }
    Ok(None)
}

/// A DNS host name in lower case; anything else (IP literals are not allowed in SNI, nor
/// control characters) is treated as no name.
fn valid_host(name: &[u8]) -> Option<String> {
    let ok = !name.is_empty()
        && name.len() <= 253
        && name
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'*'));
    ok.then(|| String::from_utf8_lossy(name).to_ascii_lowercase())
}

/// Whether an SNI name matches a route's `sniHosts` entry: exact (case-insensitive), `*`,
/// or `*.suffix` for any name below the suffix.
pub fn sni_matches(pattern: &str, sni: &str) -> bool {
    if pattern == "*" {
        return true;
    }
    match pattern.strip_prefix('*') {
        Some(suffix) => {
            sni.len() > suffix.len()
                && sni
                    .get(sni.len() - suffix.len()..)
                    .is_some_and(|tail| tail.eq_ignore_ascii_case(suffix))
        }
        None => pattern.eq_ignore_ascii_case(sni),
    }
}

/// Builds a ClientHello record for `sni` (tests and tools): TLS 1.2 record version, one
/// cipher suite, the server_name extension and a padding extension.
pub fn client_hello(sni: Option<&str>) -> Vec<u8> {
    let mut exts = Vec::new();
    if let Some(name) = sni {
        let name = name.as_bytes();
        let entry_len = 3 + name.len();
        exts.extend_from_slice(&EXT_SERVER_NAME.to_be_bytes());
        exts.extend_from_slice(&((entry_len + 2) as u16).to_be_bytes());
        exts.extend_from_slice(&(entry_len as u16).to_be_bytes());
        exts.push(HOST_NAME);
        exts.extend_from_slice(&(name.len() as u16).to_be_bytes());
        exts.extend_from_slice(name);
    }
    // A padding extension (21) so the server name is not the only one.
    exts.extend_from_slice(&[0x00, 0x15, 0x00, 0x04, 0, 0, 0, 0]);
    let mut body = vec![0x03, 0x03];
    body.extend_from_slice(&[0x42; 32]);
    body.push(0); // session id
    body.extend_from_slice(&[0x00, 0x02, 0x13, 0x01]); // TLS_AES_128_GCM_SHA256
    body.extend_from_slice(&[0x01, 0x00]); // null compression
    body.extend_from_slice(&(exts.len() as u16).to_be_bytes());
    body.extend_from_slice(&exts);
    let mut hs = vec![CLIENT_HELLO];
    hs.extend_from_slice(&(body.len() as u32).to_be_bytes()[1..]);
    hs.extend_from_slice(&body);
    let mut rec = vec![RECORD_HANDSHAKE, 0x03, 0x01];
    rec.extend_from_slice(&(hs.len() as u16).to_be_bytes());
    rec.extend_from_slice(&hs);
    rec
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The first flight of a real rustls client offering `alpn`.
    fn rustls_hello(alpn: &[&[u8]]) -> Vec<u8> {
        let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
        let mut config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("versions")
            .with_root_certificates(rustls::RootCertStore::empty())
            .with_no_client_auth();
        config.alpn_protocols = alpn.iter().map(|a| a.to_vec()).collect();
        let name = rustls::pki_types::ServerName::try_from("example.com").expect("name");
        let mut conn =
            rustls::ClientConnection::new(std::sync::Arc::new(config), name).expect("client");
        let mut out = Vec::new();
        conn.write_tls(&mut out).expect("hello");
        out
    }

    #[test]
    fn reads_the_alpn_list() {
        let hello = rustls_hello(&[b"istio-http/1.1", b"http/1.1"]);
        assert_eq!(
            alpn(&hello),
            vec![b"istio-http/1.1".to_vec(), b"http/1.1".to_vec()]
        );
        assert_eq!(
            parse(&hello),
            Hello::Parsed {
                sni: Some("example.com".into())
            }
        );
        assert!(alpn(&rustls_hello(&[])).is_empty());
        assert!(alpn(&hello[..hello.len() / 2]).is_empty(), "incomplete");
        assert!(alpn(b"GET / HTTP/1.1").is_empty());
    }

    #[test]
    fn reads_the_server_name() {
        let hello = client_hello(Some("API.Example.com"));
        assert_eq!(
            parse(&hello),
            Hello::Parsed {
                sni: Some("api.example.com".into())
            }
        );
        assert_eq!(parse(&client_hello(None)), Hello::Parsed { sni: None });
    }

    #[test]
    fn every_prefix_is_incomplete_never_a_panic() {
        let hello = client_hello(Some("a.example.com"));
        for n in 0..hello.len() {
            assert_eq!(parse(&hello[..n]), Hello::Incomplete, "prefix {n}");
        }
    }

    #[test]
    fn a_hello_split_over_records_is_reassembled() {
        let hello = client_hello(Some("split.example.com"));
        let hs = &hello[5..];
        let (a, b) = hs.split_at(7);
        let mut two = Vec::new();
        for part in [a, b] {
            two.extend_from_slice(&[0x16, 0x03, 0x01]);
            two.extend_from_slice(&(part.len() as u16).to_be_bytes());
            two.extend_from_slice(part);
        }
        assert_eq!(
            parse(&two),
            Hello::Parsed {
                sni: Some("split.example.com".into())
            }
        );
    }

    #[test]
    fn garbage_is_invalid() {
        assert!(matches!(parse(b"GET / HTTP/1.1\r\n"), Hello::Invalid(_)));
        assert!(matches!(
            parse(&[0x16, 0x03, 0x01, 0, 0]),
            Hello::Invalid(_)
        ));
        // A handshake record holding a ServerHello.
        assert!(matches!(
            parse(&[0x16, 0x03, 0x03, 0, 4, 2, 0, 0, 0]),
            Hello::Invalid(_)
        ));
        // A ClientHello whose inner lengths lie.
        let mut hello = client_hello(Some("x.example.com"));
        hello[43] = 0xff; // session id length, past the end
        assert!(matches!(parse(&hello), Hello::Invalid(_)));
    }

    #[test]
    fn corrupting_any_byte_never_panics() {
        let hello = client_hello(Some("fuzz.example.com"));
        for i in 0..hello.len() {
            for v in [0u8, 1, 0x7f, 0x80, 0xff] {
                let mut h = hello.clone();
                h[i] = v;
                let _ = parse(&h);
                let _ = parse(&h[..i]);
            }
        }
        // Deterministic pseudo-random inputs, TLS-looking prefix and all.
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        for _ in 0..2000 {
            let mut buf = vec![0x16, 0x03, 0x01];
            for _ in 0..(x % 300) {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                buf.push(x as u8);
            }
            let _ = parse(&buf);
        }
    }

    #[test]
    fn oversized_hellos_are_refused() {
        let mut rec = vec![0x16, 0x03, 0x01, 0x00, 0x04, CLIENT_HELLO, 0xff, 0xff, 0xff];
        assert!(matches!(parse(&rec), Hello::Invalid(_)));
        rec[4] = 0xff;
        rec[3] = 0xff;
        assert!(matches!(parse(&rec), Hello::Invalid(_)));
    }

    #[test]
    fn invalid_names_count_as_none() {
        assert_eq!(
            parse(&client_hello(Some("bad\u{1}name"))),
            Hello::Parsed { sni: None }
        );
    }

    #[test]
    fn sni_patterns() {
        assert!(sni_matches("a.example.com", "A.example.com"));
        assert!(sni_matches("*.example.com", "a.example.com"));
        assert!(sni_matches("*.example.com", "a.b.example.com"));
        assert!(!sni_matches("*.example.com", "example.com"));
        assert!(!sni_matches("*.example.com", ".example.com"));
        assert!(sni_matches("*", "anything"));
        assert!(!sni_matches("b.example.com", "a.example.com"));
    }

    #[test]
    fn tls_record_detection() {
        assert_eq!(looks_like_tls(&[]), None);
        assert_eq!(looks_like_tls(&[0x16, 0x03]), None);
        assert_eq!(looks_like_tls(&[0x16, 0x03, 0x01]), Some(true));
        assert_eq!(looks_like_tls(b"GET"), Some(false));
        assert_eq!(looks_like_tls(&[0x16, 0x03, 0x09]), Some(false));
    }
}
