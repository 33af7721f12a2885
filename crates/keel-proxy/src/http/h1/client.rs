//! One request to an HTTP/1.1 upstream, in the caller's task: write the head, stream the
//! body while watching for the response head, then hand back a response whose body reads
//! from the connection and returns it (through `release`) once the body has ended.
//!
//! The request body keeps streaming after the response head arrives if it has to (an
//! upstream may answer early, or echo as it reads): the response body drives the rest of
//! the upload whenever it is polled, so neither side waits on the other.
//!
//! A connection goes back to the pool only when the exchange ended cleanly: the response was
//! read to its end, the request was sent whole, nothing extra arrived, and neither side
//! asked to close. Anything else drops it.

use std::future::poll_fn;
use std::pin::Pin;
use std::task::{Context, Poll, Waker, ready};

use bytes::{Bytes, BytesMut};
use http::{Method, Response, StatusCode};
use http_body::{Body as HttpBody, Frame, SizeHint};
use http_body_util::{BodyExt, Empty, Full};
use tokio::io::{AsyncRead, AsyncWrite};

use super::cache::HeadCache;
use super::case::TitleCache;
use super::decode::{BodyError, Decoded, Decoder};
use super::encode::{self, BodyInfo, Encoder};
use super::io::{BODY_READ, HEAD_READ, WriteBuf, io_cause, poll_fill};
use super::parse::{self, BodyLength, ResponseHead};
use super::upgrade;
use crate::l4::detect::Rewind;
use crate::upstream::{Body, BoxError, Outbound, boxed};

/// Read buffers larger than this are not kept by idle connections.
const MAX_IDLE_BUFFER: usize = 64 * 1024;

/// An HTTP/1.1 connection to an upstream, idle or in use. Boxed: it moves in and out of
/// the pool and through each exchange, and a pointer is cheaper to move than its buffers.
pub struct Conn<IO>(Box<ConnState<IO>>);

struct ConnState<IO> {
    io: IO,
    rbuf: BytesMut,
    out: WriteBuf,
    cache: HeadCache,
    titles: TitleCache,
}

impl<IO: AsyncRead + AsyncWrite + Unpin> Conn<IO> {
    pub fn new(io: IO) -> Self {
        Conn(Box::new(ConnState {
            io,
            rbuf: BytesMut::new(),
            out: WriteBuf::default(),
            cache: HeadCache::default(),
            titles: TitleCache::default(),
        }))
    }

    /// The connection, for checks specific to its type.
    pub fn io(&self) -> &IO {
        &self.0.io
    }

    /// Whether an idle connection can take a request: the upstream has neither closed it nor
    /// sent anything unasked. Costs no system call when the socket has had no event since
    /// the last read (tokio remembers it would block).
    pub fn is_usable(&mut self) -> bool {
        let mut cx = Context::from_waker(Waker::noop());
        matches!(
            poll_fill(&mut self.0.io, &mut self.0.rbuf, 1, &mut cx),
            Poll::Pending
        )
    }
}

/// A request that failed before its response head.
#[derive(Debug)]
pub struct Failure {
    /// What went wrong, in the words the error sentence quotes.
    pub cause: String,
    /// The request, when none of it can have been acted on: no byte of a response arrived
    /// and no byte of the body was taken, so it can be sent again on another connection.
    pub unsent: Option<Outbound>,
}

/// Sends `req` on `conn`. `release` gets the connection back if it can be reused.
pub async fn send<IO, F>(
    conn: Conn<IO>,
    req: Outbound,
    release: F,
) -> Result<Response<Body>, Failure>
where
    IO: AsyncRead + AsyncWrite + Unpin + Send + Sync + 'static,
    F: FnOnce(Conn<IO>) + Send + Sync + Unpin + 'static,
{
    let Outbound {
        head: mut parts,
        body,
    } = req;
    let mut conn = conn;
    let state = &mut *conn.0;
    let encoder = encode::request_head(
        state.out.head_buf(),
        &parts,
        BodyInfo::of(&body),
        &mut state.titles,
    );
    let mut ex = Exchange {
        conn,
        upload: Upload {
            done: false,
            body_done: encoder.is_none(),
            encoder,
            body: Some(body),
            write_failed: None,
            polled: false,
        },
        received: false,
    };
    let head = match poll_fn(|cx| ex.poll_head(cx, &parts.method)).await {
        Ok(head) => head,
        Err(cause) => {
            let unsent = (!ex.received && !ex.upload.polled)
                .then(|| ex.upload.body.take())
                .flatten()
                .map(|body| Outbound::new(parts, body));
            return Err(Failure { cause, unsent });
        }
    };
    // The request's header map is refilled with a later response on this connection.
    ex.conn.0.cache.recycle(std::mem::take(&mut parts.headers));
    Ok(ex.into_response(head, release))
}

struct Upload {
    body: Option<Body>,
    /// Writing to the upstream failed; the request was cut short.
    write_failed: Option<String>,
    encoder: Encoder,
    /// The body has ended (or failed): nothing more to take from it.
    body_done: bool,
    /// Everything is written and flushed.
    done: bool,
    /// The body has been polled at least once.
    polled: bool,
}

struct Exchange<IO> {
    conn: Conn<IO>,
    upload: Upload,
    /// Some of the response has arrived.
    received: bool,
}

impl<IO: AsyncRead + AsyncWrite + Unpin> Exchange<IO> {
    /// Moves the request forward: takes body frames while the write buffer has room, and
    /// writes. Ready when all of it is written.
    fn poll_upload(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), String>> {
        let up = &mut self.upload;
        let conn = &mut self.conn;
        loop {
            if !up.body_done
                && conn.0.out.can_take()
                && let Some(body) = up.body.as_mut()
            {
                up.polled = true;
                match Pin::new(body).poll_frame(cx) {
                    Poll::Ready(Some(Ok(frame))) => {
                        match frame.into_data() {
                            Ok(data) => up.encoder.data(&mut conn.0.out, data)?,
                            Err(frame) => {
                                if let Ok(t) = frame.into_trailers() {
                                    up.encoder.trailers(&mut conn.0.out, &t);
                                }
                            }
                        }
                        continue;
                    }
                    Poll::Ready(None) => {
                        up.encoder.end(&mut conn.0.out)?;
                        up.body_done = true;
                        up.body = None;
                        continue;
                    }
                    Poll::Ready(Some(Err(e))) => {
                        up.body_done = true;
                        up.body = None;
                        return Poll::Ready(Err(format!("reading the request body failed: {e}")));
                    }
                    Poll::Pending => {}
                }
            }
            let written = if !conn.0.out.is_empty() {
                ready!(conn.0.out.poll_write(&mut conn.0.io, cx))
            } else if up.body_done {
                ready!(Pin::new(&mut conn.0.io).poll_flush(cx)).map(|()| {
                    up.done = true;
                })
            } else {
                return Poll::Pending;
            };
            if let Err(e) = written {
                // The upstream may have answered before taking the whole request (413, say)
                // and closed: stop sending, and let the response be read if there is one.
                up.write_failed = Some(io_cause(&e));
                up.body_done = true;
                up.done = true;
            }
            if up.done {
                return Poll::Ready(Ok(()));
            }
        }
    }

    /// Uploads while reading until a final response head (1xx other than 101 skipped).
    fn poll_head(
        &mut self,
        cx: &mut Context<'_>,
        method: &Method,
    ) -> Poll<Result<ResponseHead, String>> {
        if !self.upload.done
            && let Poll::Ready(Err(e)) = self.poll_upload(cx)
        {
            return Poll::Ready(Err(e));
        }
        loop {
            if !self.conn.0.rbuf.is_empty() {
                self.received = true;
                match parse::response(&mut self.conn.0.rbuf, method, &mut self.conn.0.cache) {
                    Ok(Some(head))
                        if head.parts.status.is_informational()
                            && head.parts.status != StatusCode::SWITCHING_PROTOCOLS =>
                    {
                        // `100 Continue` (the body is sent without waiting for it), `103 Early
                        // Hints` and the like are not forwarded, as hyper's client drops them.
                        continue;
                    }
                    Ok(Some(head)) => return Poll::Ready(Ok(head)),
                    Ok(None) => {}
                    Err(e) => return Poll::Ready(Err(format!("invalid response head: {e}"))),
                }
            }
            match ready!(poll_fill(
                &mut self.conn.0.io,
                &mut self.conn.0.rbuf,
                HEAD_READ,
                cx
            )) {
                Ok(0) => {
                    let cause = self.upload.write_failed.take();
                    return Poll::Ready(Err(cause
                        .unwrap_or_else(|| "connection closed before message completed".into())));
                }
                Ok(_) => {}
                Err(e) => return Poll::Ready(Err(io_cause(&e))),
            }
        }
    }
}

impl<IO> Exchange<IO>
where
    IO: AsyncRead + AsyncWrite + Unpin + Send + Sync + 'static,
{
    fn into_response<F>(mut self, head: ResponseHead, release: F) -> Response<Body>
    where
        F: FnOnce(Conn<IO>) + Send + Sync + Unpin + 'static,
    {
        let ResponseHead {
            parts,
            body,
            mut keep_alive,
        } = head;
        // A request cut short leaves the connection unusable.
        keep_alive &= self.upload.write_failed.is_none();
        if parts.status == StatusCode::SWITCHING_PROTOCOLS {
            // The connection now belongs to the upgraded stream, with what was read past the
            // head.
            let leftover = self.conn.0.rbuf.split().to_vec();
            let io: upgrade::Upgraded = Box::new(Rewind::new(leftover, self.conn.0.io));
            let mut resp = Response::from_parts(parts, empty());
            resp.extensions_mut().insert(upgrade::ready(io));
            return resp;
        }
        let mut decoder = Decoder::new(body);
        if self.upload.done {
            // The common case: the whole response is already here.
            let complete = match body {
                BodyLength::Empty => Some(Bytes::new()),
                BodyLength::Length(n) if self.conn.0.rbuf.len() as u64 >= n => {
                    match decoder.decode(&mut self.conn.0.rbuf) {
                        Ok(Decoded::Data(d)) => Some(d),
                        _ => None,
                    }
                }
                _ => None,
            };
            if let Some(data) = complete {
                if keep_alive && self.conn.0.rbuf.is_empty() {
                    release(self.conn.idle());
                }
                let body = if data.is_empty() {
                    empty()
                } else {
                    Full::new(data).map_err(|never| match never {}).boxed()
                };
                return Response::from_parts(parts, body);
            }
        }
        let body = ResponseBody {
            ex: Some(self),
            decoder,
            keep_alive,
            release: Some(release),
        };
        Response::from_parts(parts, boxed(body))
    }
}

impl<IO> Conn<IO> {
    /// Ready to wait in the pool: buffers that grew for a large body are let go.
    fn idle(mut self) -> Self {
        if self.0.rbuf.capacity() > MAX_IDLE_BUFFER {
            self.0.rbuf = BytesMut::new();
        }
        self
    }
}

fn empty() -> Body {
    Empty::new().map_err(|never| match never {}).boxed()
}

/// A response body read from the upstream connection.
struct ResponseBody<IO, F: FnOnce(Conn<IO>)> {
    ex: Option<Exchange<IO>>,
    decoder: Decoder,
    keep_alive: bool,
    release: Option<F>,
}

impl<IO, F> ResponseBody<IO, F>
where
    IO: AsyncRead + AsyncWrite + Unpin,
    F: FnOnce(Conn<IO>),
{
    /// The body has ended: the connection goes back if the exchange left it clean.
    fn finish(&mut self) {
        if let (Some(ex), Some(release)) = (self.ex.take(), self.release.take())
            && self.keep_alive
            && ex.upload.done
            && ex.conn.0.rbuf.is_empty()
        {
            release(ex.conn.idle());
        }
    }

    fn poll_next(&mut self, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let Some(ex) = self.ex.as_mut() else {
            return Poll::Ready(None);
        };
        if !ex.upload.done {
            let failed = matches!(ex.poll_upload(cx), Poll::Ready(Err(_)));
            if failed || ex.upload.write_failed.is_some() {
                // The request can't be completed; the response may still be: read it, but
                // the connection is not reused.
                self.keep_alive = false;
                ex.upload.done = true;
            }
        }
        loop {
            match self.decoder.decode(&mut ex.conn.0.rbuf) {
                Ok(Decoded::Data(d)) => {
                    if self.decoder.is_done() && ex.upload.done {
                        self.finish();
                    }
                    return Poll::Ready(Some(Ok(Frame::data(d))));
                }
                Ok(Decoded::Trailers(t)) => return Poll::Ready(Some(Ok(Frame::trailers(t)))),
                Ok(Decoded::End) => {
                    if !ex.upload.done {
                        // The upstream finished before taking the whole request.
                        self.keep_alive = false;
                    }
                    self.finish();
                    return Poll::Ready(None);
                }
                Ok(Decoded::NeedMore) => {}
                Err(e) => {
                    self.ex = None;
                    return Poll::Ready(Some(Err(Box::new(e))));
                }
            }
            let want = self.decoder.remaining().map_or(BODY_READ, |n| {
                usize::try_from(n).unwrap_or(BODY_READ).min(BODY_READ)
            });
            match ready!(poll_fill(&mut ex.conn.0.io, &mut ex.conn.0.rbuf, want, cx)) {
                Ok(0) => {
                    if self.decoder.at_eof().is_ok() {
                        self.keep_alive = false;
                        self.finish();
                        return Poll::Ready(None);
                    }
                    self.ex = None;
                    return Poll::Ready(Some(Err(Box::new(BodyError::Incomplete))));
                }
                Ok(_) => {}
                Err(e) => {
                    self.ex = None;
                    return Poll::Ready(Some(Err(Box::new(BodyError::Io(io_cause(&e))))));
                }
            }
        }
    }
}

impl<IO, F> HttpBody for ResponseBody<IO, F>
where
    IO: AsyncRead + AsyncWrite + Unpin,
    F: FnOnce(Conn<IO>) + Unpin,
{
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        self.get_mut().poll_next(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.ex.is_none() || self.decoder.is_done()
    }

    fn size_hint(&self) -> SizeHint {
        match self.decoder.remaining() {
            Some(n) if self.ex.is_some() => SizeHint::with_exact(n),
            Some(_) => SizeHint::with_exact(0),
            None => SizeHint::default(),
        }
    }
}

impl<IO, F: FnOnce(Conn<IO>)> Drop for ResponseBody<IO, F> {
    fn drop(&mut self) {
        // A body dropped after its last byte (whoever polled it stopped at the end) still
        // returns its connection; one dropped midway takes the connection with it.
        if self.decoder.is_done()
            && let (Some(ex), Some(release)) = (self.ex.take(), self.release.take())
            && self.keep_alive
            && ex.upload.done
            && ex.conn.0.rbuf.is_empty()
        {
            release(ex.conn.idle());
        }
    }
}
