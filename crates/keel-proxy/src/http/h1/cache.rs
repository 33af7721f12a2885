//! What a connection keeps from one head to the next so the next one costs less: the names
//! it parsed, and a header map to fill.
//!
//! On a keep-alive connection the same client or upstream sends the same header names, in
//! the same order, every time. Recognising the `i`-th name as the one seen at `i` last time
//! is a short comparison instead of parsing it (`HeaderName::from_bytes`) and comparing its
//! spelling again; it saved about a tenth of the codec's instructions per request. The
//! header map of a message already written is cleared and filled with the next head, which
//! saves its two allocations.

use http::{HeaderMap, HeaderName};

use super::case::{self, Spelled};

/// Names remembered per connection, by position in the head.
const SLOTS: usize = 12;

/// Longer names are parsed every time.
const MAX_NAME: usize = 24;

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
}

/// Per-connection memory of recent heads.
#[derive(Default)]
pub struct HeadCache {
    slots: Vec<Slot>,
    spare: Option<HeaderMap>,
}

impl HeadCache {
    /// The name of the `i`-th header line, spelled `raw` on the wire, and how it was spelled.
    pub(crate) fn name(
        &mut self,
        i: usize,
        raw: &[u8],
    ) -> Result<(HeaderName, Spelled), http::header::InvalidHeaderName> {
        if let Some(slot) = self.slots.get(i)
            && usize::from(slot.len) == raw.len()
            && slot.raw.get(..raw.len()) == Some(raw)
        {
            return Ok((slot.name.clone(), slot.spelled));
        }
        let name = HeaderName::from_bytes(raw)?;
        let spelled = case::spelled(raw, name.as_str());
        if i < SLOTS && i <= self.slots.len() && raw.len() <= MAX_NAME {
            let mut slot = Slot {
                raw: [0; MAX_NAME],
                len: raw.len() as u8,
                name: name.clone(),
                spelled,
            };
            slot.raw[..raw.len()].copy_from_slice(raw);
            if i == self.slots.len() {
                self.slots.push(slot);
            } else {
                self.slots[i] = slot;
            }
        }
        Ok((name, spelled))
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
