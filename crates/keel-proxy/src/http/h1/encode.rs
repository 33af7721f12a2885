//! Writing HTTP/1.1 heads and body framing.
//!
//! The framing a message goes out with is decided here from what its body knows about
//! itself: an exact size becomes `Content-Length`, anything else is chunked (or, for an
//! HTTP/1.0 client, delimited by closing the connection). Framing headers that came with the
//! message are written as they came when they agree, so their case survives too.

use std::cell::RefCell;
use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http::header::{CONNECTION, CONTENT_LENGTH, DATE, HOST, TRANSFER_ENCODING};
use http::{HeaderMap, Method, StatusCode, Version, request, response};

use super::case::{CaseCursor, HeaderCase, TitleCache};
use super::io::WriteBuf;
use super::parse::{ReasonPhrase, content_length};

/// What a body says about its length before it is read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BodyInfo {
    /// Known to be empty.
    pub end: bool,
    /// Its exact length, when known.
    pub exact: Option<u64>,
}

impl BodyInfo {
    pub fn of<B: http_body::Body>(body: &B) -> Self {
        BodyInfo {
            end: body.is_end_stream(),
            exact: body.size_hint().exact(),
        }
    }
}

/// What the client's request said that shapes the response.
#[derive(Debug, Clone, Copy)]
pub struct RequestInfo {
    pub version: Version,
    pub head: bool,
    /// The client wants the connection kept open (and the proxy is not closing it).
    pub keep_alive: bool,
}

/// How body data is framed on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoder {
    /// No body is sent (HEAD, 204, 304, 1xx, or an empty request).
    None,
    /// This many bytes are still due.
    Length(u64),
    Chunked,
    /// Until the connection closes.
    Eof,
    /// The body has been written.
    Ended,
}

impl Encoder {
    /// Whether the body is not to be written at all.
    pub fn is_none(&self) -> bool {
        *self == Encoder::None
    }

    pub fn data(&mut self, out: &mut WriteBuf, data: Bytes) -> Result<(), &'static str> {
        match self {
            Encoder::None | Encoder::Ended => Ok(()),
            Encoder::Length(left) => {
                let n = data.len() as u64;
                if n > *left {
                    return Err("body longer than its Content-Length");
                }
                *left -= n;
                out.data(data);
                Ok(())
            }
            Encoder::Chunked => {
                if data.is_empty() {
                    return Ok(());
                }
                let mut line = [0u8; 18];
                let len = hex(&mut line, data.len() as u64);
                line[len] = b'\r';
                line[len + 1] = b'\n';
                out.extend(&line[..len + 2]);
                out.data(data);
                out.extend_static(b"\r\n");
                Ok(())
            }
            Encoder::Eof => {
                out.data(data);
                Ok(())
            }
        }
    }

    /// Trailer fields end a chunked body; other framings can't carry them (dropped, as
    /// hyper drops them).
    pub fn trailers(&mut self, out: &mut WriteBuf, trailers: &HeaderMap) {
        if *self == Encoder::Chunked {
            let mut block = b"0\r\n".to_vec();
            for (name, value) in trailers {
                field(&mut block, name.as_str().as_bytes(), value.as_bytes());
            }
            block.extend_from_slice(b"\r\n");
            out.extend(&block);
            *self = Encoder::Ended;
        }
    }

    /// The body has ended: the last chunk, or a check that the length was met.
    pub fn end(&mut self, out: &mut WriteBuf) -> Result<(), &'static str> {
        let result = match self {
            Encoder::Length(left) if *left > 0 => Err("body shorter than its Content-Length"),
            Encoder::Chunked => {
                out.extend_static(b"0\r\n\r\n");
                Ok(())
            }
            _ => Ok(()),
        };
        if *self != Encoder::None {
            *self = Encoder::Ended;
        }
        result
    }
}

fn field(out: &mut Vec<u8>, name: &[u8], value: &[u8]) {
    out.extend_from_slice(name);
    value_line(out, value);
}

/// `: value` and the line end, after a name.
fn value_line(out: &mut Vec<u8>, value: &[u8]) {
    out.reserve(value.len() + 4);
    out.extend_from_slice(b": ");
    out.extend_from_slice(value);
    out.extend_from_slice(b"\r\n");
}

/// Writes `n` in hex into `buf`, returning the length.
fn hex(buf: &mut [u8; 18], n: u64) -> usize {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let len = (16 - (n.leading_zeros() as usize) / 4).max(1);
    for i in 0..len {
        buf[len - 1 - i] = DIGITS[((n >> (4 * i)) & 0xf) as usize];
    }
    len
}

fn decimal(out: &mut Vec<u8>, n: u64) {
    let mut digits = [0u8; 20];
    let mut i = digits.len();
    let mut n = n;
    loop {
        i -= 1;
        digits[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[i..]);
}

/// Writes a request head for an HTTP/1.1 upstream and returns the body's framing.
pub fn request_head(
    out: &mut Vec<u8>,
    parts: &request::Parts,
    body: BodyInfo,
    titles: &mut TitleCache,
) -> Encoder {
    let (encoder, length) = if body.end {
        (Encoder::None, Some(0))
    } else if let Some(n) = body.exact {
        (Encoder::Length(n), Some(n))
    } else {
        (Encoder::Chunked, None)
    };
    out.extend_from_slice(parts.method.as_str().as_bytes());
    out.push(b' ');
    let target = parts.uri.path_and_query().map_or("/", |p| p.as_str());
    out.extend_from_slice(if target.is_empty() { "/" } else { target }.as_bytes());
    out.extend_from_slice(b" HTTP/1.1\r\n");
    let mut case = CaseCursor::new(parts.extensions.get::<HeaderCase>(), titles);
    let (mut wrote_length, mut had_length, mut host) = (false, false, false);
    for (name, value) in &parts.headers {
        if *name == TRANSFER_ENCODING {
            continue;
        }
        if *name == CONTENT_LENGTH {
            had_length = true;
            if wrote_length || length.is_none() || content_length(value.as_bytes()) != length {
                continue;
            }
            wrote_length = true;
        }
        host |= *name == HOST;
        case.write_field(out, name, value);
    }
    if !host && let Some(a) = parts.uri.authority() {
        field(out, b"host", a.as_str().as_bytes());
    }
    match encoder {
        Encoder::Length(n) if !wrote_length => {
            out.extend_from_slice(b"content-length: ");
            decimal(out, n);
            out.extend_from_slice(b"\r\n");
        }
        Encoder::None
            if !wrote_length
                && (had_length
                    || matches!(parts.method, Method::POST | Method::PUT | Method::PATCH)) =>
        {
            out.extend_from_slice(b"content-length: 0\r\n");
        }
        Encoder::Chunked => out.extend_from_slice(b"transfer-encoding: chunked\r\n"),
        _ => {}
    }
    out.extend_from_slice(b"\r\n");
    encoder
}

/// Writes a response head for the client and returns the body's framing and whether the
/// connection stays open afterwards.
pub fn response_head(
    out: &mut Vec<u8>,
    parts: &response::Parts,
    body: BodyInfo,
    req: &RequestInfo,
    titles: &mut TitleCache,
) -> (Encoder, bool) {
    let status = parts.status;
    let http10 = req.version == Version::HTTP_10;
    let mut keep_alive = req.keep_alive;
    // 1xx and 204 never carry framing headers; 304 and HEAD keep the ones the upstream sent
    // (they describe the resource), but no body follows.
    let unframed = status.is_informational() || status == StatusCode::NO_CONTENT;
    let mut encoder = if unframed || req.head || status == StatusCode::NOT_MODIFIED {
        Encoder::None
    } else if let Some(n) = body.exact {
        Encoder::Length(n)
    } else if let Some(n) = parts
        .headers
        .get(CONTENT_LENGTH)
        .and_then(|v| content_length(v.as_bytes()))
    {
        Encoder::Length(n)
    } else if !http10 {
        Encoder::Chunked
    } else {
        keep_alive = false;
        Encoder::Eof
    };
    out.extend_from_slice(if http10 { b"HTTP/1.0 " } else { b"HTTP/1.1 " });
    out.extend_from_slice(status.as_str().as_bytes());
    out.push(b' ');
    match parts.extensions.get::<ReasonPhrase>() {
        Some(r) => out.extend_from_slice(&r.0),
        None => out.extend_from_slice(status.canonical_reason().unwrap_or("").as_bytes()),
    }
    out.extend_from_slice(b"\r\n");
    let mut case = CaseCursor::new(parts.extensions.get::<HeaderCase>(), titles);
    let (mut wrote_length, mut date, mut connection) = (false, false, false);
    let length = match encoder {
        Encoder::Length(n) => Some(n),
        _ => None,
    };
    for (name, value) in &parts.headers {
        if *name == CONTENT_LENGTH {
            let keep = !unframed
                && (encoder == Encoder::None
                    || (!wrote_length
                        && length.is_some()
                        && content_length(value.as_bytes()) == length));
            if !keep {
                continue;
            }
            wrote_length = true;
        } else if *name == TRANSFER_ENCODING {
            continue;
        } else if *name == CONNECTION {
            connection = true;
            keep_alive &= !value
                .as_bytes()
                .split(|b| *b == b',')
                .any(|t| t.trim_ascii().eq_ignore_ascii_case(b"close"));
        } else if *name == DATE {
            date = true;
        }
        case.write_field(out, name, value);
    }
    match encoder {
        Encoder::Length(n) if !wrote_length => {
            out.extend_from_slice(b"content-length: ");
            decimal(out, n);
            out.extend_from_slice(b"\r\n");
        }
        Encoder::Chunked => out.extend_from_slice(b"transfer-encoding: chunked\r\n"),
        _ => {}
    }
    if !date && !status.is_informational() {
        push_date(out);
    }
    if !connection && status != StatusCode::SWITCHING_PROTOCOLS {
        if !keep_alive && !http10 {
            out.extend_from_slice(b"connection: close\r\n");
        } else if keep_alive && http10 {
            out.extend_from_slice(b"connection: keep-alive\r\n");
        }
    }
    out.extend_from_slice(b"\r\n");
    if encoder == Encoder::Eof && body.end {
        encoder = Encoder::None;
    }
    (encoder, keep_alive)
}

thread_local! {
    /// The `Date` value, formatted once a second (as hyper caches it).
    static DATE_CACHE: RefCell<(u64, [u8; 29])> = const { RefCell::new((u64::MAX, [0; 29])) };
}

/// `date: Sun, 06 Nov 1994 08:49:37 GMT` for responses that lack one: RFC 9110 §6.6.1 has
/// a server with a clock send it, and hyper always did.
fn push_date(out: &mut Vec<u8>) {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    DATE_CACHE.with_borrow_mut(|(secs, text)| {
        if *secs != now {
            *text = imf_fixdate(now);
            *secs = now;
        }
        out.extend_from_slice(b"date: ");
        out.extend_from_slice(text);
        out.extend_from_slice(b"\r\n");
    });
}

/// Seconds since the Unix epoch as an IMF-fixdate (RFC 9110 §5.6.7).
pub(crate) fn imf_fixdate(secs: u64) -> [u8; 29] {
    const DAYS: [&[u8; 3]; 7] = [b"Thu", b"Fri", b"Sat", b"Sun", b"Mon", b"Tue", b"Wed"];
    const MONTHS: [&[u8; 3]; 12] = [
        b"Jan", b"Feb", b"Mar", b"Apr", b"May", b"Jun", b"Jul", b"Aug", b"Sep", b"Oct", b"Nov",
        b"Dec",
    ];
    let days = secs / 86_400;
    let rem = secs % 86_400;
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + u64::from(month <= 2);
    let mut out = *b"Thu, 01 Jan 1970 00:00:00 GMT";
    out[..3].copy_from_slice(DAYS[(days % 7) as usize]);
    let two = |out: &mut [u8; 29], at: usize, v: u64| {
        out[at] = b'0' + (v / 10 % 10) as u8;
        out[at + 1] = b'0' + (v % 10) as u8;
    };
    two(&mut out, 5, day);
    out[8..11].copy_from_slice(MONTHS[(month - 1) as usize % 12]);
    two(&mut out, 12, year / 100);
    two(&mut out, 14, year % 100);
    two(&mut out, 17, rem / 3600);
    two(&mut out, 20, rem / 60 % 60);
    two(&mut out, 23, rem % 60);
    out
}
