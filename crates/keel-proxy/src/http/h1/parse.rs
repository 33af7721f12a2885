//! Reading HTTP/1.x heads into `http` types, and deciding how the body is framed.
//!
//! `httparse` checks the syntax; the rest is here: the framing rules of RFC 9112 §6, applied
//! strictly on requests, since two parties reading one request's length differently is how
//! requests are smuggled past a proxy. A request with both `Content-Length` and
//! `Transfer-Encoding`, conflicting or malformed lengths, a transfer coding other than a
//! single `chunked`, or folded header lines (which httparse rejects) is refused outright.
//!
//! Header values and the URI are slices of the head's bytes (no copy per header); the head
//! is split off the connection's read buffer, which keeps any bytes after it (body, or the
//! next pipelined request).

use std::mem::MaybeUninit;

use bytes::{Bytes, BytesMut};
use http::header::{
    CONNECTION, CONTENT_LENGTH, EXPECT, HeaderName, HeaderValue, TRANSFER_ENCODING, UPGRADE,
};
use http::{HeaderMap, Method, StatusCode, Uri, Version, request, response};

use super::cache::{HeadCache, Name};
use super::case::{self, HeaderCase, Spelled};
use super::{MAX_HEAD, MAX_HEADERS};

/// How a message's body is delimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyLength {
    /// No body.
    Empty,
    /// Exactly this many bytes.
    Length(u64),
    /// `Transfer-Encoding: chunked`.
    Chunked,
    /// Until the connection closes (responses only).
    Eof,
}

/// Why a head was refused, and the status that says so.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HeadError {
    /// Over [`MAX_HEAD`] bytes (431).
    TooLarge,
    /// Over [`MAX_HEADERS`] fields (431).
    TooManyHeaders,
    /// Malformed or ambiguous (400).
    Invalid(String),
    /// A transfer coding the proxy does not implement (501).
    Unsupported(String),
    /// Not HTTP/1.0 or HTTP/1.1 (505).
    Version,
}

impl HeadError {
    pub fn status(&self) -> StatusCode {
        match self {
            HeadError::TooLarge | HeadError::TooManyHeaders => {
                StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE
            }
            HeadError::Invalid(_) => StatusCode::BAD_REQUEST,
            HeadError::Unsupported(_) => StatusCode::NOT_IMPLEMENTED,
            HeadError::Version => StatusCode::HTTP_VERSION_NOT_SUPPORTED,
        }
    }

    /// Envoy's `%RESPONSE_CODE_DETAILS%` for the same refusal, so access logs read alike.
    pub fn details(&self) -> &'static str {
        match self {
            HeadError::TooLarge => "http1.headers_too_large",
            HeadError::TooManyHeaders => "http1.too_many_headers",
            HeadError::Unsupported(_) => "http1.invalid_transfer_encoding",
            HeadError::Invalid(_) | HeadError::Version => "http1.codec_error",
        }
    }
}

impl std::fmt::Display for HeadError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            HeadError::TooLarge => write!(f, "message head larger than {MAX_HEAD} bytes"),
            HeadError::TooManyHeaders => write!(f, "more than {MAX_HEADERS} header fields"),
            HeadError::Invalid(why) | HeadError::Unsupported(why) => f.write_str(why),
            HeadError::Version => f.write_str("HTTP version not supported"),
        }
    }
}

fn invalid(why: impl Into<String>) -> HeadError {
    HeadError::Invalid(why.into())
}

/// A parsed request head.
#[derive(Debug)]
pub struct RequestHead {
    /// Boxed, and so through the request path ([`crate::upstream::Outbound`] says why).
    pub parts: Box<request::Parts>,
    pub body: BodyLength,
    /// The connection may carry another request after this one.
    pub keep_alive: bool,
    /// `Expect: 100-continue` on an HTTP/1.1 request with a body.
    pub expect_continue: bool,
    /// The request has an `Upgrade` header (h2c, WebSocket): worth a closer look.
    pub upgrade: bool,
}

/// A parsed response head.
#[derive(Debug)]
pub struct ResponseHead {
    pub parts: response::Parts,
    pub body: BodyLength,
    /// The connection may carry another request once this response is read.
    pub keep_alive: bool,
}

/// A reason phrase other than the status code's usual one, kept so it is forwarded as is.
#[derive(Debug, Clone)]
pub struct ReasonPhrase(pub Bytes);

/// Where the parsed pieces sit in the head (offsets fit in `u16`: heads are ≤ 60 KiB).
#[derive(Clone, Copy, Default)]
struct Field {
    name: (u16, u16),
    value: (u16, u16),
}

fn span(base: usize, s: &[u8]) -> (u16, u16) {
    let start = (s.as_ptr() as usize).saturating_sub(base);
    (
        u16::try_from(start).unwrap_or(u16::MAX),
        u16::try_from(s.len()).unwrap_or(0),
    )
}

fn slice(head: &Bytes, (start, len): (u16, u16)) -> Result<Bytes, HeadError> {
    let (start, end) = (usize::from(start), usize::from(start) + usize::from(len));
    if end > head.len() {
        return Err(invalid("malformed head"));
    }
    Ok(head.slice(start..end))
}

/// The bytes at `span` in `head`, without taking a reference on it.
fn bytes_at(head: &Bytes, (start, len): (u16, u16)) -> Result<&[u8], HeadError> {
    let start = usize::from(start);
    head.get(start..start + usize::from(len))
        .ok_or_else(|| invalid("malformed head"))
}

fn map_httparse(e: httparse::Error) -> HeadError {
    match e {
        httparse::Error::TooManyHeaders => HeadError::TooManyHeaders,
        httparse::Error::Version => HeadError::Version,
        other => invalid(format!("malformed message head: {other}")),
    }
}

/// What the framing-related headers said, noted while the header map is built (comparing
/// a parsed `HeaderName` with a standard one is an integer comparison; looking the same
/// headers up afterwards would hash each name again).
#[derive(Default)]
struct Framing {
    content_length: Option<u64>,
    transfer_encoding: Option<String>,
    close: bool,
    keep_alive: bool,
    expect_continue: bool,
    upgrade: bool,
}

impl Framing {
    /// Notes a framing header; `Ok(true)` if it concerns only this connection's framing and
    /// is not kept in the map (see [`header_map`]).
    fn note(&mut self, name: &HeaderName, value: &HeaderValue) -> Result<bool, HeadError> {
        if name == CONTENT_LENGTH {
            for part in value.as_bytes().split(|b| *b == b',') {
                let n = content_length(part.trim_ascii())
                    .ok_or_else(|| invalid("invalid Content-Length"))?;
                if self.content_length.is_some_and(|m| m != n) {
                    return Err(invalid("conflicting Content-Length values"));
                }
                self.content_length = Some(n);
            }
        } else if name == TRANSFER_ENCODING {
            let v = String::from_utf8_lossy(value.as_bytes());
            let te = self.transfer_encoding.get_or_insert_with(String::new);
            if !te.is_empty() {
                te.push(',');
            }
            te.push_str(&v);
            return Ok(true);
        } else if name == CONNECTION {
            return Ok(self.connection(value.as_bytes()));
        } else if name == UPGRADE {
            self.upgrade = true;
        } else if name == EXPECT {
            self.expect_continue |= value.as_bytes().eq_ignore_ascii_case(b"100-continue");
        }
        Ok(false)
    }

    /// Notes a `Connection` header's persistence tokens; true if it lists nothing else.
    fn connection(&mut self, value: &[u8]) -> bool {
        // The usual values in one comparison each, before splitting into tokens.
        if value.eq_ignore_ascii_case(b"keep-alive") {
            self.keep_alive = true;
            return true;
        }
        if value.eq_ignore_ascii_case(b"close") {
            self.close = true;
            return true;
        }
        let mut only_persistence = true;
        for token in value.split(|b| *b == b',') {
            let token = token.trim_ascii();
            let close = token.eq_ignore_ascii_case(b"close");
            let keep_alive = token.eq_ignore_ascii_case(b"keep-alive");
            self.close |= close;
            self.keep_alive |= keep_alive;
            only_persistence &= close || keep_alive || token.is_empty();
        }
        only_persistence
    }

    fn keep_alive(&self, version: Version) -> bool {
        if version == Version::HTTP_11 {
            !self.close
        } else {
            self.keep_alive && !self.close
        }
    }

    /// `Transfer-Encoding` lists only `chunked` (once): Ok(true). Absent: Ok(false).
    fn chunked(&self) -> Result<bool, HeadError> {
        let Some(te) = &self.transfer_encoding else {
            return Ok(false);
        };
        let codings: Vec<&str> = te
            .split(',')
            .map(str::trim)
            .filter(|c| !c.is_empty())
            .collect();
        let chunked = |c: &&str| c.eq_ignore_ascii_case("chunked");
        match codings.as_slice() {
            [c] if chunked(c) => Ok(true),
            // Chunked exactly once, last (RFC 9112 §6.1); other codings aren't implemented.
            [rest @ .., last] if chunked(last) && !rest.iter().any(chunked) => {
                Err(HeadError::Unsupported(format!(
                    "transfer coding \"{te}\" is not supported (only chunked)"
                )))
            }
            _ => Err(invalid(format!(
                "Transfer-Encoding \"{te}\" is not a single chunked coding at the end"
            ))),
        }
    }
}

/// A Content-Length value: digits only, no sign, no overflow.
pub(crate) fn content_length(digits: &[u8]) -> Option<u64> {
    if digits.is_empty() || digits.len() > 19 {
        return None;
    }
    digits.iter().try_fold(0u64, |n, d| {
        d.is_ascii_digit()
            .then(|| n.checked_mul(10)?.checked_add(u64::from(d - b'0')))?
    })
}

/// Builds the header map from the head's fields, with the names' original spellings
/// ([`super::case`]): a mark on values whose name was Title-Case, and, only if some name was
/// spelled otherwise, a [`HeaderCase`] with all of them.
///
/// `Connection` headers that only say `keep-alive` or `close`, and `Transfer-Encoding`, are
/// read here and not put in the map: they concern this connection's framing, which the
/// codec has taken care of, and would only be stripped again as hop-by-hop (Envoy's codec
/// doesn't pass them on either). A `Connection` header naming other headers or `upgrade`
/// stays, for the hop-by-hop logic and the upgrade to see.
fn header_map(
    head: &Bytes,
    fields: &[Field],
    framing: &mut Framing,
    cache: &mut HeadCache,
) -> Result<(HeaderMap, Option<HeaderCase>), HeadError> {
    let mut headers = cache.map(fields.len());
    let mut irregular = false;
    for (i, f) in fields.iter().enumerate() {
        let Name {
            name,
            spelled,
            framing: framing_header,
        } = cache
            .name(i, bytes_at(head, f.name)?)
            .map_err(|_| invalid("invalid header name"))?;
        let mut value = match cache.value(i, bytes_at(head, f.value)?) {
            Some(kept) => kept,
            None => {
                let value = HeaderValue::from_maybe_shared(slice(head, f.value)?)
                    .map_err(|_| invalid(format!("invalid value for header {name}")))?;
                cache.saw_value(i, &value);
                value
            }
        };
        match spelled {
            Spelled::Lower => {}
            Spelled::Title => case::mark_title(&mut value),
            Spelled::Other => irregular = true,
        }
        if framing_header && framing.note(&name, &value)? {
            continue;
        }
        headers.append(name, value);
    }
    let case = if irregular {
        let mut names = Vec::with_capacity(fields.len());
        for (i, f) in fields.iter().enumerate() {
            let name = cache
                .name(i, bytes_at(head, f.name)?)
                .map_err(|_| invalid("invalid header name"))?
                .name;
            names.push((name, f.name.0));
        }
        Some(HeaderCase::new(head.clone(), names))
    } else {
        None
    };
    Ok((headers, case))
}

fn version(v: Option<u8>) -> Version {
    if v == Some(0) {
        Version::HTTP_10
    } else {
        Version::HTTP_11
    }
}

/// Parses a request head from the front of `buf`. `Ok(None)`: not complete yet (read more).
/// On success the head is removed from `buf`.
pub fn request(
    buf: &mut BytesMut,
    cache: &mut HeadCache,
) -> Result<Option<RequestHead>, HeadError> {
    let mut slots = [const { MaybeUninit::<httparse::Header<'_>>::uninit() }; MAX_HEADERS];
    let mut fields = [Field::default(); MAX_HEADERS];
    let (len, count, method, target, ver) = {
        let mut req = httparse::Request::new(&mut []);
        let len = match req.parse_with_uninit_headers(buf, &mut slots) {
            Ok(httparse::Status::Complete(n)) => n,
            Ok(httparse::Status::Partial) if buf.len() >= MAX_HEAD => {
                return Err(HeadError::TooLarge);
            }
            Ok(httparse::Status::Partial) => return Ok(None),
            Err(e) => return Err(map_httparse(e)),
        };
        if len > MAX_HEAD {
            return Err(HeadError::TooLarge);
        }
        let base = buf.as_ptr() as usize;
        for (slot, h) in fields.iter_mut().zip(req.headers.iter()) {
            *slot = Field {
                name: span(base, h.name.as_bytes()),
                value: span(base, h.value),
            };
        }
        let method = span(base, req.method.unwrap_or_default().as_bytes());
        let target = span(base, req.path.unwrap_or_default().as_bytes());
        (len, req.headers.len(), method, target, version(req.version))
    };
    let head = buf.split_to(len).freeze();
    let method = Method::from_bytes(bytes_at(&head, method)?)
        .map_err(|_| invalid("invalid request method"))?;
    if method == Method::CONNECT {
        return Err(HeadError::Unsupported("CONNECT is not supported".into()));
    }
    let uri = Uri::from_maybe_shared(slice(&head, target)?)
        .map_err(|_| invalid("invalid request target"))?;
    let mut framing = Framing::default();
    let (headers, case) = header_map(&head, &fields[..count], &mut framing, cache)?;
    let chunked = framing.chunked()?;
    if framing.transfer_encoding.is_some() && ver == Version::HTTP_10 {
        // RFC 9112 §6.1: an HTTP/1.0 message with Transfer-Encoding has faulty framing.
        return Err(invalid("Transfer-Encoding in an HTTP/1.0 request"));
    }
    let body = match (chunked, framing.content_length) {
        (true, Some(_)) => {
            return Err(invalid("both Content-Length and Transfer-Encoding"));
        }
        (true, None) => BodyLength::Chunked,
        (false, Some(0) | None) => BodyLength::Empty,
        (false, Some(n)) => BodyLength::Length(n),
    };
    let mut parts = Box::new(request::Request::new(()).into_parts().0);
    parts.method = method;
    parts.uri = uri;
    parts.version = ver;
    parts.headers = headers;
    if let Some(case) = case {
        parts.extensions.insert(case);
    }
    Ok(Some(RequestHead {
        keep_alive: framing.keep_alive(ver),
        expect_continue: framing.expect_continue
            && ver == Version::HTTP_11
            && body != BodyLength::Empty,
        upgrade: framing.upgrade,
        parts,
        body,
    }))
}

/// Parses a response head from the front of `buf` (the answer to a `method` request).
/// `Ok(None)`: not complete yet. On success the head is removed from `buf`.
pub fn response(
    buf: &mut BytesMut,
    method: &Method,
    cache: &mut HeadCache,
) -> Result<Option<ResponseHead>, HeadError> {
    let mut slots = [const { MaybeUninit::<httparse::Header<'_>>::uninit() }; MAX_HEADERS];
    let mut fields = [Field::default(); MAX_HEADERS];
    let (len, count, code, reason, ver) = {
        let mut resp = httparse::Response::new(&mut []);
        let len = match httparse::ParserConfig::default()
            .parse_response_with_uninit_headers(&mut resp, buf, &mut slots)
        {
            Ok(httparse::Status::Complete(n)) => n,
            Ok(httparse::Status::Partial) if buf.len() >= MAX_HEAD => {
                return Err(HeadError::TooLarge);
            }
            Ok(httparse::Status::Partial) => return Ok(None),
            Err(e) => return Err(map_httparse(e)),
        };
        if len > MAX_HEAD {
            return Err(HeadError::TooLarge);
        }
        let base = buf.as_ptr() as usize;
        for (slot, h) in fields.iter_mut().zip(resp.headers.iter()) {
            *slot = Field {
                name: span(base, h.name.as_bytes()),
                value: span(base, h.value),
            };
        }
        let reason = span(base, resp.reason.unwrap_or_default().as_bytes());
        (
            len,
            resp.headers.len(),
            resp.code.unwrap_or(0),
            reason,
            version(resp.version),
        )
    };
    let head = buf.split_to(len).freeze();
    let status = StatusCode::from_u16(code).map_err(|_| invalid("invalid status code"))?;
    let mut framing = Framing::default();
    let (mut headers, case) = header_map(&head, &fields[..count], &mut framing, cache)?;
    let mut keep_alive = framing.keep_alive(ver);
    let bodiless = status.is_informational()
        || status == StatusCode::NO_CONTENT
        || status == StatusCode::NOT_MODIFIED
        || method == Method::HEAD;
    // RFC 9112 §6.3: Transfer-Encoding wins over Content-Length (and the connection is not
    // reused); a coding other than a final chunked, or no length at all, reads to the close.
    let body = if bodiless {
        BodyLength::Empty
    } else if framing.transfer_encoding.is_some() {
        if framing.content_length.is_some() {
            // Not to be forwarded as the length of a body framed otherwise.
            headers.remove(CONTENT_LENGTH);
            keep_alive = false;
        }
        match framing.chunked() {
            Ok(true) => BodyLength::Chunked,
            _ => {
                keep_alive = false;
                BodyLength::Eof
            }
        }
    } else {
        match framing.content_length {
            Some(0) => BodyLength::Empty,
            Some(n) => BodyLength::Length(n),
            None => {
                keep_alive = false;
                BodyLength::Eof
            }
        }
    };
    let mut resp = response::Response::new(());
    *resp.status_mut() = status;
    *resp.version_mut() = ver;
    *resp.headers_mut() = headers;
    if let Some(case) = case {
        resp.extensions_mut().insert(case);
    }
    let reason = slice(&head, reason)?;
    if status.canonical_reason().map(str::as_bytes) != Some(&reason[..]) {
        resp.extensions_mut().insert(ReasonPhrase(reason));
    }
    let (parts, ()) = resp.into_parts();
    Ok(Some(ResponseHead {
        parts,
        body,
        keep_alive,
    }))
}

/// Trailer fields after a chunked body's last chunk: `Ok(None)` until the blank line that
/// ends them has arrived. On success they are removed from `buf`.
pub fn trailers(buf: &mut BytesMut) -> Result<Option<HeaderMap>, HeadError> {
    let mut slots = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let (len, map) = match httparse::parse_headers(buf, &mut slots) {
        Ok(httparse::Status::Complete((n, fields))) => {
            let mut map = HeaderMap::with_capacity(fields.len());
            for h in fields {
                let name = HeaderName::from_bytes(h.name.as_bytes())
                    .map_err(|_| invalid("invalid trailer name"))?;
                let value = HeaderValue::from_bytes(h.value)
                    .map_err(|_| invalid("invalid trailer value"))?;
                map.append(name, value);
            }
            (n, map)
        }
        Ok(httparse::Status::Partial) if buf.len() >= MAX_HEAD => {
            return Err(HeadError::TooLarge);
        }
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(e) => return Err(map_httparse(e)),
    };
    let _ = buf.split_to(len);
    Ok(Some(map))
}
