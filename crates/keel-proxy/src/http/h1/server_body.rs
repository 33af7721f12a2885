//! A downstream request's body, read straight from the client's connection as the upstream
//! (or whatever consumes it) polls it: no task, no channel.
//!
//! The connection's IO and read buffer sit behind a mutex while a request with a body is in
//! flight, because the body may be polled from another task (hyper's HTTP/2 client sends
//! request bodies from its own) while the server writes the response. The lock is held only
//! inside one poll, never across an await. Bodies already complete in the buffer when the
//! head is parsed (most small POSTs) skip all that: they are handed over whole.

use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, ready};

use bytes::{Bytes, BytesMut};
use http_body::{Frame, SizeHint};
use tokio::io::{AsyncRead, AsyncWrite};

use super::decode::{BodyError, Decoded, Decoder};
use super::io::{BODY_READ, poll_fill};

/// `100 Continue`, sent when the body is first wanted (as hyper does).
const CONTINUE: &[u8] = b"HTTP/1.1 100 Continue\r\n\r\n";

/// Where `Expect: 100-continue` stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Continue {
    /// Not asked for, already sent, or no longer appropriate.
    No,
    /// Asked for; sent when the body is first polled.
    Wanted,
    /// This many bytes of it written.
    Writing(usize),
}

/// A downstream connection while it is being served: IO, read buffer, and the state of the
/// current request's body.
pub struct ConnIo<IO> {
    /// `None` once the connection has been handed over (upgrade) or failed.
    pub io: Option<IO>,
    pub rbuf: BytesMut,
    pub decoder: Decoder,
    pub expect: Continue,
    /// The response head has been (or is being) written: too late for `100 Continue`.
    pub responding: bool,
    /// The body's framing was malformed: the request is answered 400.
    pub malformed: Option<String>,
    /// Which request's body is being read: a body still held somewhere after its request
    /// finished (hyper's HTTP/2 client may keep one a moment) must not read the next one's.
    pub generation: u64,
    /// Closing should read and discard what the client still sends (see the server's
    /// `close`).
    pub linger: bool,
}

impl<IO> ConnIo<IO> {
    pub fn new(io: IO, rbuf: BytesMut) -> Self {
        ConnIo {
            io: Some(io),
            rbuf,
            decoder: Decoder::Done,
            expect: Continue::No,
            responding: false,
            malformed: None,
            generation: 0,
            linger: false,
        }
    }
}

/// The shared handle on a downstream connection.
pub type SharedIo<IO> = Arc<Mutex<ConnIo<IO>>>;

/// Locks the connection. A poisoned lock (a panic elsewhere, which the proxy does not do)
/// still holds a consistent buffer: use it.
pub fn lock<IO>(io: &Mutex<ConnIo<IO>>) -> MutexGuard<'_, ConnIo<IO>> {
    io.lock().unwrap_or_else(|e| e.into_inner())
}

/// What a streaming body reads from, without naming the IO type (so the request path is
/// compiled once, not once per kind of connection).
pub trait BodySource: Send + Sync {
    fn poll_body(
        &self,
        generation: u64,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BodyError>>>;
}

impl<IO: AsyncRead + AsyncWrite + Unpin + Send> BodySource for Mutex<ConnIo<IO>> {
    fn poll_body(
        &self,
        generation: u64,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        let mut guard = lock(self);
        let c = &mut *guard;
        let Some(io) = c.io.as_mut().filter(|_| c.generation == generation) else {
            return Poll::Ready(Some(Err(BodyError::Incomplete)));
        };
        if c.expect == Continue::Wanted {
            // A client that did not wait for `100 Continue` has started sending already.
            c.expect = if c.rbuf.is_empty() && !c.responding {
                Continue::Writing(0)
            } else {
                Continue::No
            };
        }
        while let Continue::Writing(at) = c.expect {
            let rest = CONTINUE.get(at..).unwrap_or_default();
            if rest.is_empty() {
                c.expect = Continue::No;
                break;
            }
            match ready!(Pin::new(&mut *io).poll_write(cx, rest)) {
                Ok(0) | Err(_) => {
                    c.expect = Continue::No;
                    return Poll::Ready(Some(Err(BodyError::Io(
                        "writing 100 Continue failed".into(),
                    ))));
                }
                Ok(n) => c.expect = Continue::Writing(at + n),
            }
        }
        loop {
            match c.decoder.decode(&mut c.rbuf) {
                Ok(Decoded::Data(b)) => return Poll::Ready(Some(Ok(Frame::data(b)))),
                Ok(Decoded::Trailers(t)) => return Poll::Ready(Some(Ok(Frame::trailers(t)))),
                Ok(Decoded::End) => return Poll::Ready(None),
                Ok(Decoded::NeedMore) => {}
                Err(e) => {
                    c.malformed = Some(e.to_string());
                    return Poll::Ready(Some(Err(e)));
                }
            }
            let want = c.decoder.remaining().map_or(BODY_READ, |n| {
                usize::try_from(n).unwrap_or(BODY_READ).min(BODY_READ)
            });
            match ready!(poll_fill(io, &mut c.rbuf, want, cx)) {
                Ok(0) => {
                    let e = c.decoder.at_eof().err().unwrap_or(BodyError::Incomplete);
                    return Poll::Ready(Some(Err(e)));
                }
                Ok(_) => {}
                Err(e) => return Poll::Ready(Some(Err(BodyError::Io(e.to_string())))),
            }
        }
    }
}

/// A request body from a downstream HTTP/1 connection.
pub struct RequestBody {
    inner: Inner,
}

enum Inner {
    Empty,
    /// The whole body, already read with the head.
    Full(Option<Bytes>),
    Stream {
        source: Arc<dyn BodySource>,
        generation: u64,
        /// Bytes still due, when the length is known.
        remaining: Option<u64>,
        ended: bool,
    },
}

impl RequestBody {
    pub fn empty() -> Self {
        RequestBody {
            inner: Inner::Empty,
        }
    }

    pub fn full(data: Bytes) -> Self {
        RequestBody {
            inner: Inner::Full(Some(data)),
        }
    }

    pub fn stream(source: Arc<dyn BodySource>, generation: u64, remaining: Option<u64>) -> Self {
        RequestBody {
            inner: Inner::Stream {
                source,
                generation,
                remaining,
                ended: false,
            },
        }
    }
}

impl http_body::Body for RequestBody {
    type Data = Bytes;
    type Error = BodyError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        match &mut self.inner {
            Inner::Empty => Poll::Ready(None),
            Inner::Full(data) => Poll::Ready(data.take().map(|d| Ok(Frame::data(d)))),
            Inner::Stream {
                source,
                generation,
                remaining,
                ended,
            } => {
                if *ended {
                    return Poll::Ready(None);
                }
                let polled = ready!(source.poll_body(*generation, cx));
                match &polled {
                    Some(Ok(frame)) => {
                        if let (Some(left), Some(d)) = (remaining.as_mut(), frame.data_ref()) {
                            *left = left.saturating_sub(d.len() as u64);
                        }
                        *ended = frame.is_trailers();
                    }
                    None | Some(Err(_)) => *ended = true,
                }
                Poll::Ready(polled)
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        match &self.inner {
            Inner::Empty => true,
            Inner::Full(data) => data.is_none(),
            Inner::Stream {
                remaining, ended, ..
            } => *ended || *remaining == Some(0),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.inner {
            Inner::Empty => SizeHint::with_exact(0),
            Inner::Full(data) => SizeHint::with_exact(data.as_ref().map_or(0, |d| d.len() as u64)),
            Inner::Stream { remaining, .. } => match remaining {
                Some(n) => SizeHint::with_exact(*n),
                None => SizeHint::default(),
            },
        }
    }
}
