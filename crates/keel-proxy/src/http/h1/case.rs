//! Header names written back in the case they arrived in.
//!
//! An `http::HeaderMap` keeps names in lower case only, so the original spelling has to
//! travel beside the map. Keeping a list of raw names as a message extension (as hyper's
//! `preserve_header_case` does) was measured at about 2,500 instructions per proxied
//! request — each `Extensions` map is two allocations and a hash table, on both the request
//! and the response — about a tenth of the whole request. Nearly all names on the wire are
//! either lower case (`user-agent`) or Title-Case (`Content-Type`), and both can be
//! rebuilt from the lower-case name given one bit. So:
//!
//! - a value whose name was Title-Case carries that bit, in the one flag a `HeaderValue`
//!   has: "sensitive". Over HTTP/1 the flag has no meaning of its own; over HTTP/2 it means
//!   "never index" (RFC 7541 §7.1.3), so [`clear_marks`] removes it before a message leaves
//!   by hyper's HTTP/2 (the only place that reads it);
//! - lower-case names need nothing;
//! - only a message with some other spelling (`ETag`, `WWW-Authenticate`, `X-Request-ID`)
//!   carries a [`HeaderCase`] extension with every original name.
//!
//! A value the proxy replaces (a header operation's `set`) loses its mark, so that header
//! goes out in lower case, like a header the proxy added.

use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue};

/// How a name was spelled on the wire, next to its lower-case form.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Spelled {
    Lower,
    Title,
    Other,
}

/// Compares the wire spelling with the lower-case name.
pub(crate) fn spelled(raw: &[u8], lower: &str) -> Spelled {
    let lower = lower.as_bytes();
    if raw == lower {
        return Spelled::Lower;
    }
    if raw.len() != lower.len() {
        return Spelled::Other;
    }
    // Title-Case: upper case where a word starts, the rest as in the lower-case name.
    let mut word_start = true;
    for (r, l) in raw.iter().zip(lower) {
        let expected = if word_start {
            l.to_ascii_uppercase()
        } else {
            *l
        };
        if *r != expected {
            return Spelled::Other;
        }
        word_start = *l == b'-';
    }
    Spelled::Title
}

/// Marks a value whose name was Title-Case.
pub(crate) fn mark_title(value: &mut HeaderValue) {
    value.set_sensitive(true);
}

/// Removes the marks before a message is sent over HTTP/2, where the flag would ask the
/// peer never to index these headers.
pub fn clear_marks(headers: &mut HeaderMap) {
    for value in headers.values_mut() {
        if value.is_sensitive() {
            value.set_sensitive(false);
        }
    }
}

/// The original spellings of a message that had names neither lower case nor Title-Case:
/// every parsed name, with where its spelling sits in the head's bytes (which the header
/// values share anyway, so keeping them costs no copy).
#[derive(Clone, Debug, Default)]
pub struct HeaderCase {
    head: Bytes,
    names: Vec<(HeaderName, u16)>,
}

impl HeaderCase {
    pub(crate) fn new(head: Bytes, names: Vec<(HeaderName, u16)>) -> Self {
        HeaderCase { head, names }
    }

    /// The original spelling of the `i`-th name.
    pub(crate) fn raw(&self, i: usize) -> &[u8] {
        let Some((name, at)) = self.names.get(i) else {
            return b"";
        };
        let at = usize::from(*at);
        self.head
            .get(at..at + name.as_str().len())
            .unwrap_or_default()
    }

    /// How many names are kept.
    pub fn len(&self) -> usize {
        self.names.len()
    }

    pub fn is_empty(&self) -> bool {
        self.names.is_empty()
    }
}

/// Title-Case spellings written recently on a connection, by position in the message: the
/// same names go out in the same order on every response of a keep-alive connection, so
/// this is a name comparison instead of recasing each byte.
#[derive(Default)]
pub struct TitleCache {
    slots: Vec<(HeaderName, [u8; TITLE_MAX], u8)>,
}

/// Longer names are recased each time.
const TITLE_MAX: usize = 24;

/// Remembered positions.
const TITLE_SLOTS: usize = 12;

impl TitleCache {
    /// Appends `name` in Title-Case, the `i`-th header of the message.
    #[inline]
    fn write(&mut self, out: &mut Vec<u8>, i: usize, name: &HeaderName) {
        if let Some((cached, bytes, len)) = self.slots.get(i)
            && cached == name
        {
            out.extend_from_slice(&bytes[..usize::from(*len)]);
            return;
        }
        self.write_new(out, i, name);
    }

    /// [`TitleCache::write`] of a name not written at `i` last time: recased, and kept.
    #[inline(never)]
    fn write_new(&mut self, out: &mut Vec<u8>, i: usize, name: &HeaderName) {
        let start = out.len();
        out.extend_from_slice(name.as_str().as_bytes());
        let mut word_start = true;
        for b in out.iter_mut().skip(start) {
            if word_start {
                b.make_ascii_uppercase();
            }
            word_start = *b == b'-';
        }
        let title = out.get(start..).unwrap_or_default();
        if i < TITLE_SLOTS && i <= self.slots.len() && title.len() <= TITLE_MAX {
            let mut bytes = [0u8; TITLE_MAX];
            bytes[..title.len()].copy_from_slice(title);
            let slot = (name.clone(), bytes, title.len() as u8);
            if i == self.slots.len() {
                self.slots.push(slot);
            } else {
                self.slots[i] = slot;
            }
        }
    }
}

/// Writes each header's name as it was spelled. With a [`HeaderCase`], names are looked up
/// in it: headers are written in the `HeaderMap`'s order, which is mostly the order they
/// were read in, so the search starts after the last name found, and each original name is
/// used once, so repeated headers keep their own spellings.
pub(crate) struct CaseCursor<'a> {
    case: Option<&'a HeaderCase>,
    titles: &'a mut TitleCache,
    next: usize,
    /// Names already used (the parser keeps at most `MAX_HEADERS`, fewer than 128).
    used: u128,
    /// Headers written so far.
    written: usize,
}

impl<'a> CaseCursor<'a> {
    pub(crate) fn new(case: Option<&'a HeaderCase>, titles: &'a mut TitleCache) -> Self {
        CaseCursor {
            case,
            titles,
            next: 0,
            used: 0,
            written: 0,
        }
    }

    /// Appends the header line `name: value` to `out`, the name in its original spelling.
    /// One reservation for the whole line (each is a call and a comparison otherwise).
    pub(crate) fn write_field(
        &mut self,
        out: &mut Vec<u8>,
        name: &HeaderName,
        value: &HeaderValue,
    ) {
        let value_bytes = value.as_bytes();
        out.reserve(name.as_str().len() + value_bytes.len() + 4);
        self.write_name(out, name, value);
        out.extend_from_slice(b": ");
        out.extend_from_slice(value_bytes);
        out.extend_from_slice(b"\r\n");
    }

    /// Appends `name` to `out` in its original spelling.
    fn write_name(&mut self, out: &mut Vec<u8>, name: &HeaderName, value: &HeaderValue) {
        let i = self.written;
        self.written += 1;
        if let Some(raw) = self.find(name) {
            out.extend_from_slice(raw);
        } else if value.is_sensitive() {
            self.titles.write(out, i, name);
        } else {
            out.extend_from_slice(name.as_str().as_bytes());
        }
    }

    fn find(&mut self, name: &HeaderName) -> Option<&'a [u8]> {
        let case = self.case?;
        let n = case.names.len().min(128);
        let start = self.next.min(n);
        // From where the last name was found to the end, then from the start.
        for i in (start..n).chain(0..start) {
            if self.used & (1u128 << i) == 0 && case.names.get(i).is_some_and(|e| e.0 == *name) {
                self.used |= 1u128 << i;
                self.next = i + 1;
                return Some(case.raw(i));
            }
        }
        None
    }
}
