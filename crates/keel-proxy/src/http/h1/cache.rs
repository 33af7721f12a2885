//! What a connection keeps from one head to the next so the next one costs less: the names
//! it parsed, the values that repeat, and a header map to fill.
//!
//! On a keep-alive connection the same client or upstream sends the same header names, in
//! the same order, every time. Recognising the `i`-th name as the one seen at `i` last time
//! is a short comparison instead of parsing it (`HeaderName::from_bytes`) and comparing its
//! spelling again; it saved about a tenth of the codec's instructions per request. Most
//! values repeat too (`Host`, `User-Agent`, `Server`, `Content-Type`, the `Date` of the
//! current second): a value seen twice in a row at a position is kept, in its own bytes, and
//! a later head with the same bytes there gets a copy of it (a comparison and a reference
//! count) instead of a new `HeaderValue`, whose check of every byte cost about a twentieth
//! of the proxy's instructions per request (bench/proxy-instructions.sh). The header map
//! of a message already written is cleared and filled with the next head, which saves its
//! two allocations.

use http::header::{CONNECTION, CONTENT_LENGTH, EXPECT, TRANSFER_ENCODING, UPGRADE};
use http::{HeaderMap, HeaderName, HeaderValue};

use super::case::{self, Spelled};

/// Names remembered per connection, by position in the head.
const SLOTS: usize = 12;

/// Longer names are parsed every time.
const MAX_NAME: usize = 24;

/// Longer values are checked every time (they are rarely repeated anyway: cookies, tokens).
const MAX_VALUE: usize = 64;

/// A map kept for reuse may hold this many headers at most (a head with more is rare; its
/// map is let go rather than kept by an idle connection).
const MAX_KEPT: usize = 64;

/// Room left in a new header map for what the proxy adds (`x-request-id`,
/// `x-forwarded-proto`, `date`, header operations) without growing it.
pub const HEADROOM: usize = 4;

struct Slot {
    raw: [u8; MAX_NAME],
    len: u8,
    name: HeaderName,
    spelled: Spelled,
    framing: bool,
    /// The value seen twice in a row at this position (not marked: see [`case`]).
    kept: Option<HeaderValue>,
    /// A fingerprint of the last value seen here, while it is not `kept`.
    last: u64,
}

/// A parsed header name and what the head parser needs to know about it.
pub(crate) struct Name {
    pub name: HeaderName,
    pub spelled: Spelled,
    /// One of the headers that frame the message or concern the connection
    /// (`Content-Length`, `Transfer-Encoding`, `Connection`, `Upgrade`, `Expect`).
    pub framing: bool,
}

fn is_framing(name: &HeaderName) -> bool {
    [
        CONTENT_LENGTH,
        TRANSFER_ENCODING,
        CONNECTION,
        UPGRADE,
        EXPECT,
    ]
    .contains(name)
}

/// Cheap to compute and to compare: tells a value that repeats from one that doesn't, for
/// deciding what to keep (a collision only keeps a value that then isn't reused).
fn fingerprint(v: &[u8]) -> u64 {
    let n = v.len().min(8);
    let (mut head, mut tail) = ([0u8; 8], [0u8; 8]);
    head[..n].copy_from_slice(&v[..n]);
    tail[..n].copy_from_slice(&v[v.len() - n..]);
    (v.len() as u64 + 1).wrapping_mul(0x9e37_79b9_7f4a_7c15)
        ^ u64::from_le_bytes(head)
        ^ u64::from_le_bytes(tail).rotate_left(29)
}

/// Per-connection memory of recent heads.
#[derive(Default)]
pub struct HeadCache {
    slots: Vec<Slot>,
    spare: Option<HeaderMap>,
}

impl HeadCache {
    /// The name of the `i`-th header line, spelled `raw` on the wire, and how it was spelled.
    /// Inlined: the usual case, the name seen here last time, is a few instructions, and
    /// a call would cost as much again (the parsing is kept out of line).
    #[inline]
    pub(crate) fn name(
        &mut self,
        i: usize,
        raw: &[u8],
    ) -> Result<Name, http::header::InvalidHeaderName> {
        if let Some(slot) = self.slots.get(i)
            && usize::from(slot.len) == raw.len()
            && slot.raw.get(..raw.len()) == Some(raw)
        {
            return Ok(Name {
                name: slot.name.clone(),
                spelled: slot.spelled,
                framing: slot.framing,
            });
        }
        self.parse_name(i, raw)
    }

    /// [`HeadCache::name`] for a name not seen at `i` last time: parsed, and remembered.
    #[inline(never)]
    fn parse_name(
        &mut self,
        i: usize,
        raw: &[u8],
    ) -> Result<Name, http::header::InvalidHeaderName> {
        let name = HeaderName::from_bytes(raw)?;
        let spelled = case::spelled(raw, name.as_str());
        let framing = is_framing(&name);
        if i < SLOTS && i <= self.slots.len() && raw.len() <= MAX_NAME {
            let mut slot = Slot {
                raw: [0; MAX_NAME],
                len: raw.len() as u8,
                name: name.clone(),
                spelled,
                framing,
                kept: None,
                last: 0,
            };
            slot.raw[..raw.len()].copy_from_slice(raw);
            if i == self.slots.len() {
                self.slots.push(slot);
            } else {
                self.slots[i] = slot;
            }
        }
        Ok(Name {
            name,
            spelled,
            framing,
        })
    }

    /// The value kept for the `i`-th header if it is spelled `raw` (the name at `i` having
    /// just been recognised by [`HeadCache::name`]).
    #[inline]
    pub(crate) fn value(&self, i: usize, raw: &[u8]) -> Option<HeaderValue> {
        let kept = self.slots.get(i)?.kept.as_ref()?;
        (kept.as_bytes() == raw).then(|| kept.clone())
    }

    /// Notes the value just parsed for the `i`-th header (not found by [`HeadCache::value`]);
    /// the second time in a row, it is kept.
    pub(crate) fn saw_value(&mut self, i: usize, value: &HeaderValue) {
        let raw = value.as_bytes();
        let Some(slot) = self.slots.get_mut(i) else {
            return;
        };
        if raw.len() > MAX_VALUE {
            return;
        }
        let seen = fingerprint(raw);
        if slot.last == seen {
            // Its own bytes: a value sharing the head would keep the connection's read
            // buffer from being reused.
            slot.kept = HeaderValue::from_bytes(raw).ok();
            slot.last = 0;
        } else {
            slot.last = seen;
        }
    }

    /// An empty header map with room for `fields` headers and the proxy's additions.
    pub(crate) fn map(&mut self, fields: usize) -> HeaderMap {
        match self.spare.take() {
            Some(mut map) => {
                map.reserve(fields + HEADROOM);
                map
            }
            None => HeaderMap::with_capacity(fields + HEADROOM),
        }
    }

    /// Keeps the map of a message that has been written, emptied (its values share the
    /// head's buffer, which can then be reused), for the next head.
    pub fn recycle(&mut self, mut map: HeaderMap) {
        if map.capacity() <= MAX_KEPT {
            map.clear();
            self.spare = Some(map);
        }
    }
}
