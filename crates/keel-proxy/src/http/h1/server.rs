//! One downstream HTTP/1.x connection: read a request head, hand the request to
//! [`forward::handle`], write the response, and again while the connection stays open.
//!
//! Requests are served one at a time; pipelined requests wait in the read buffer. The
//! connection closes after a response when either side asked (`Connection: close`, an
//! HTTP/1.0 client without `keep-alive`, a close-delimited response), when a request body
//! was left unread and can't be skipped cheaply, when the proxy drains (the request in
//! flight is finished first; idle connections close at once), or when no complete head
//! arrives in time ([`super::HEADER_TIMEOUT`] for a new connection or a head that has begun,
//! [`super::IDLE_TIMEOUT`] between requests; checked lazily, so the limit is reached within up to
//! twice the time without a timer reset per request).
//!
//! While a request is in flight the client is watched: if it closes the connection, the
//! request is dropped, and with it the upstream request.
//!
//! A connection that opens with the HTTP/2 preface, or upgrades with `Upgrade: h2c`, is
//! handed to hyper's HTTP/2 server; one whose request is upgraded (WebSocket) is handed to
//! the splice once the `101` is written ([`super::upgrade`]).

use std::future::{Future, poll_fn};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use bytes::BytesMut;
use http::{Method, Request, Response, StatusCode, Version};
use http_body::Body as _;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::watch;

use super::cache::HeadCache;
use super::case::TitleCache;
use super::deadline::Deadline;
use super::decode::{Decoded, Decoder};
use super::encode::{self, BodyInfo, Encoder, RequestInfo};
use super::io::{BODY_READ, HEAD_READ, WriteBuf, poll_fill};
use super::parse::{self, BodyLength, HeadError, RequestHead};
use super::server_body::{ConnIo, Continue, RequestBody, SharedIo, lock};
use super::{MAX_HEAD, upgrade};
use crate::error::ProxyError;
use crate::http::h2c::{self, H2cRequest};
use crate::http::{forward, headers};
use crate::l4::detect::{H2_PREFACE, Rewind};
use crate::server::{ConnInfo, Shared};
use crate::telemetry::RequestRecord;

/// How long (and how much) a closing connection reads and discards client input.
const LINGER: Duration = Duration::from_secs(2);
const LINGER_BYTES: usize = 1 << 20;

/// Serves HTTP/1.x on `io` until the client closes it or the proxy drains.
pub async fn serve<IO>(shared: Arc<Shared>, conn: Arc<ConnInfo>, io: IO)
where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let drain = shared.drain.subscribe();
    let mut rx = drain.clone();
    let server = Server {
        io: Arc::new(Mutex::new(ConnIo::new(
            io,
            BytesMut::with_capacity(HEAD_READ),
        ))),
        out: WriteBuf::default(),
        heads: 0,
        cache: HeadCache::default(),
        titles: TitleCache::default(),
        deadline: Deadline::default(),
        drained: Box::pin(async move {
            let _ = rx.wait_for(|d| *d).await;
        }),
        drain,
        drain_armed: false,
        streaming: false,
        shared,
        conn,
    };
    server.run().await
}

/// What the connection does next. Not boxed: it only passes from one step to the next, and
/// a box would be an allocation per request.
#[allow(clippy::large_enum_variant)]
enum Next {
    Request(RequestHead),
    /// The HTTP/2 connection preface: hyper's HTTP/2 server takes the connection.
    Http2,
    Refuse(HeadError),
    Close,
}

struct Server<IO> {
    shared: Arc<Shared>,
    conn: Arc<ConnInfo>,
    io: SharedIo<IO>,
    out: WriteBuf,
    /// Request heads read so far.
    heads: u64,
    cache: HeadCache,
    titles: TitleCache,
    deadline: Deadline,
    /// Ready once the proxy drains. Polled once to register for the wake-up, then again
    /// only when `drain` says something changed: a cheap version check instead of a poll
    /// each time the connection waits.
    drained: Pin<Box<dyn Future<Output = ()> + Send>>,
    drain: watch::Receiver<bool>,
    drain_armed: bool,
    /// The current request's body streams from the connection (it is not already whole).
    streaming: bool,
}

impl<IO> Server<IO>
where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    async fn run(mut self) {
        // Handing over to HTTP/2 is boxed (`Box::pin` below, and for `Upgrade: h2c`): a
        // connection's task is allocated at the size of its largest state, and hyper's HTTP/2
        // server inline made every HTTP/1.1 connection 2 KiB larger (12.3 → 10.1 KiB, debug
        // build) for the rare connection that needs it.
        loop {
            let head = match poll_fn(|cx| self.poll_head(cx)).await {
                Next::Request(head) => head,
                Next::Http2 => return Box::pin(self.hand_over_h2()).await,
                Next::Refuse(e) => {
                    self.refuse(&e, true).await;
                    break;
                }
                Next::Close => break,
            };
            self.heads += 1;
            if !self.serve_one(head).await {
                break;
            }
        }
        self.close().await
    }

    /// Reads until a complete request head, the HTTP/2 preface, or a reason to close.
    fn poll_head(&mut self, cx: &mut Context<'_>) -> Poll<Next> {
        // Draining: no new request starts, not even one already buffered (pipelined).
        if self.heads > 0 && draining(&self.drain) {
            return Poll::Ready(Next::Close);
        }
        let mut guard = lock(&self.io);
        let c = &mut *guard;
        loop {
            let n = c.rbuf.len().min(H2_PREFACE.len());
            if self.heads == 0 && n > 0 && c.rbuf[..n] == H2_PREFACE[..n] {
                if n == H2_PREFACE.len() {
                    return Poll::Ready(Next::Http2);
                }
            } else if !c.rbuf.is_empty() {
                match parse::request(&mut c.rbuf, &mut self.cache) {
                    Ok(Some(head)) => return Poll::Ready(Next::Request(head)),
                    Ok(None) => {}
                    Err(e) => return Poll::Ready(Next::Refuse(e)),
                }
            }
            let Some(io) = c.io.as_mut() else {
                return Poll::Ready(Next::Close);
            };
            match poll_fill(io, &mut c.rbuf, HEAD_READ, cx) {
                Poll::Ready(Ok(0) | Err(_)) => return Poll::Ready(Next::Close),
                Poll::Ready(Ok(_)) => continue,
                Poll::Pending => {}
            }
            let partial = !c.rbuf.is_empty();
            if !self.drain_armed || self.drain.has_changed().unwrap_or(true) {
                if self.drained.as_mut().poll(cx).is_ready() {
                    return Poll::Ready(Next::Close);
                }
                self.drain_armed = true;
            }
            if self.deadline.expired(cx, self.heads, partial) {
                return Poll::Ready(Next::Close);
            }
            return Poll::Pending;
        }
    }

    /// Serves one request; `false` if the connection must not carry another.
    async fn serve_one(&mut self, head: RequestHead) -> bool {
        let RequestHead {
            mut parts,
            body: length,
            keep_alive,
            expect_continue,
            upgrade: upgrading,
        } = head;
        let info = RequestInfo {
            version: parts.version,
            head: parts.method == Method::HEAD,
            keep_alive,
        };
        let mut body = self.request_body(length, expect_continue);
        let mut upgrade = None;
        if upgrading {
            // Rare enough to take the head out of its box for the checks made on a request.
            let mut req = Request::from_parts(*parts, body);
            match h2c::classify(&req, &self.conn) {
                H2cRequest::None => {}
                H2cRequest::Upgrade => {
                    Box::pin(self.upgrade_h2c(req)).await;
                    return false;
                }
                H2cRequest::Ignore => h2c::strip_upgrade(&mut req),
            }
            if headers::is_upgrade(req.headers()) {
                let (pending, slot) = upgrade::pending();
                req.extensions_mut().insert(slot);
                upgrade = Some(pending);
            }
            let (p, b) = req.into_parts();
            (parts, body) = (Box::new(p), b);
        }
        // The request runs while the client is watched: if it closes the connection first,
        // the request is abandoned — dropping it drops the upstream request too, as hyper
        // (`half_close` off) and Envoy do. Pinned where it is made: the future is large, and
        // moving it into a helper cost a copy of it per request.
        let mut handled = std::pin::pin!(forward::handle(
            self.shared.clone(),
            self.conn.clone(),
            parts,
            body
        ));
        let outcome = poll_fn(|cx| match handled.as_mut().poll(cx) {
            Poll::Ready(Ok(resp)) => Poll::Ready(Some(resp)),
            Poll::Ready(Err(never)) => match never {},
            Poll::Pending if self.client_gone(cx) => Poll::Ready(None),
            Poll::Pending => Poll::Pending,
        })
        .await;
        let Some(resp) = outcome else {
            return false;
        };
        let malformed = if self.streaming {
            lock(&self.io).malformed.take()
        } else {
            None
        };
        if let Some(why) = malformed {
            // The request was forwarded and is recorded as such (its record is in `resp`).
            self.refuse(&HeadError::Invalid(why), false).await;
            return false;
        }
        if resp.status() == StatusCode::SWITCHING_PROTOCOLS {
            let info = RequestInfo {
                keep_alive: false,
                ..info
            };
            if self.respond(resp, info).await.is_some()
                && let Some(pending) = upgrade
            {
                let (io, rest) = self.take_io();
                if let Some(io) = io {
                    pending.fulfil(Box::new(Rewind::new(rest, io)));
                }
            }
            return false;
        }
        let keep_alive = self.respond(resp, info).await == Some(true);
        keep_alive && self.request_done()
    }

    /// Whether the client closed the connection, reading (and keeping) what it sent. Not
    /// while the request body is still being read: the body reads the connection itself.
    fn client_gone(&mut self, cx: &mut Context<'_>) -> bool {
        let mut guard = lock(&self.io);
        let c = &mut *guard;
        if self.streaming && !c.decoder.is_done() {
            return false;
        }
        let Some(io) = c.io.as_mut() else {
            return true;
        };
        while c.rbuf.len() < MAX_HEAD {
            match poll_fill(io, &mut c.rbuf, HEAD_READ, cx) {
                Poll::Ready(Ok(0) | Err(_)) => return true,
                Poll::Ready(Ok(_)) => {}
                Poll::Pending => return false,
            }
        }
        false
    }

    /// The request's body: empty, already whole in the buffer, or streamed from the
    /// connection.
    fn request_body(&mut self, len: BodyLength, expect_continue: bool) -> RequestBody {
        self.streaming = false;
        let (decoder, remaining) = match len {
            BodyLength::Empty | BodyLength::Eof => return RequestBody::empty(),
            BodyLength::Length(n) => (Decoder::Length(n), Some(n)),
            BodyLength::Chunked => (Decoder::new(BodyLength::Chunked), None),
        };
        let mut c = lock(&self.io);
        if let Some(n) = remaining
            && c.rbuf.len() as u64 >= n
        {
            let data = c.rbuf.split_to(n as usize).freeze();
            return RequestBody::full(data);
        }
        c.decoder = decoder;
        c.expect = if expect_continue {
            Continue::Wanted
        } else {
            Continue::No
        };
        c.responding = false;
        c.malformed = None;
        c.generation += 1;
        let generation = c.generation;
        drop(c);
        self.streaming = true;
        RequestBody::stream(self.io.clone(), generation, remaining)
    }

    /// Writes a response: `None` if it could not be written whole, else whether the
    /// connection may carry another request.
    ///
    /// Generic over the body: the proxied response's `Recorded` comes unboxed (an
    /// allocation less per request), the proxy's own answers as a boxed `Body`.
    async fn respond<B>(&mut self, resp: Response<B>, mut info: RequestInfo) -> Option<bool>
    where
        B: http_body::Body<Data = bytes::Bytes> + Unpin,
    {
        info.keep_alive &= !draining(&self.drain);
        let (parts, mut body) = resp.into_parts();
        let (mut encoder, keep_alive) = encode::response_head(
            self.out.head_buf(),
            &parts,
            BodyInfo::of(&body),
            &info,
            &mut self.titles,
        );
        self.cache.recycle(parts.headers);
        if self.streaming {
            lock(&self.io).responding = true;
        }
        if encoder.is_none() {
            encoder = Encoder::Ended;
        }
        let mut cut_short = false;
        let written =
            poll_fn(|cx| self.poll_write_body(cx, &mut body, &mut encoder, &mut cut_short)).await;
        written.then_some(keep_alive)
    }

    /// Moves the response body to the client: takes frames while the write buffer has room,
    /// writes when it is full or the body has nothing ready. The body is polled without
    /// holding the connection's lock: it may be driving the upload of this connection's
    /// own request body.
    fn poll_write_body<B>(
        &mut self,
        cx: &mut Context<'_>,
        body: &mut B,
        enc: &mut Encoder,
        cut_short: &mut bool,
    ) -> Poll<bool>
    where
        B: http_body::Body<Data = bytes::Bytes> + Unpin,
    {
        loop {
            if *enc != Encoder::Ended && self.out.can_take() {
                let mut waiting = false;
                let framed = match Pin::new(&mut *body).poll_frame(cx) {
                    Poll::Ready(Some(Ok(frame))) => match frame.into_data() {
                        Ok(data) => enc.data(&mut self.out, data).and_then(|()| {
                            if body.is_end_stream() {
                                enc.end(&mut self.out)
                            } else {
                                Ok(())
                            }
                        }),
                        Err(frame) => {
                            if let Ok(t) = frame.into_trailers() {
                                enc.trailers(&mut self.out, &t);
                            }
                            Ok(())
                        }
                    },
                    Poll::Ready(None) => enc.end(&mut self.out),
                    // The body failed midway (the upstream went away, say).
                    Poll::Ready(Some(Err(_))) => Err("the body failed"),
                    Poll::Pending => {
                        waiting = true;
                        Ok(())
                    }
                };
                if framed.is_err() {
                    // The response can only be cut short: what there is goes out, then the
                    // connection closes (the client sees a length not met, or no last chunk).
                    *cut_short = true;
                    *enc = Encoder::Ended;
                } else if !waiting {
                    continue;
                }
            }
            if self.out.is_empty() && *enc != Encoder::Ended {
                // Waiting for the body (a stream with nothing to say yet): notice if the
                // client leaves meanwhile.
                return if self.client_gone(cx) {
                    Poll::Ready(false)
                } else {
                    Poll::Pending
                };
            }
            let mut guard = lock(&self.io);
            let Some(io) = guard.io.as_mut() else {
                return Poll::Ready(false);
            };
            if !self.out.is_empty() {
                match self.out.poll_write(io, cx) {
                    Poll::Ready(Ok(())) => continue,
                    Poll::Ready(Err(_)) => return Poll::Ready(false),
                    Poll::Pending => return Poll::Pending,
                }
            }
            return match Pin::new(io).poll_flush(cx) {
                Poll::Ready(r) => Poll::Ready(r.is_ok() && !*cut_short),
                Poll::Pending => Poll::Pending,
            };
        }
    }

    /// After the response: whether the request body was read to its end, so the next
    /// request starts where it should. A body left unread is skipped if what remains has
    /// already arrived; otherwise the connection closes (waiting for an upload nobody wants
    /// is not worth it). A client still waiting for `100 Continue` was never told to send.
    fn request_done(&mut self) -> bool {
        if !self.streaming {
            return true;
        }
        self.streaming = false;
        let mut guard = lock(&self.io);
        let c = &mut *guard;
        c.generation += 1;
        if c.decoder.is_done() {
            return true;
        }
        let skipped = c.expect == Continue::No && skip_body(c);
        c.linger |= !skipped;
        skipped
    }

    /// Answers a request the proxy can't read (400, 431, 501, 505), with the reason, and
    /// (`record`) counts it in Istio's metrics and the access log as Envoy does: flag `DPE`,
    /// method, path and authority unknown (`-`), as the head was never accepted.
    async fn refuse(&mut self, e: &HeadError, record: bool) {
        let err = ProxyError {
            status: e.status(),
            flag: "DPE",
            detail: e.to_string(),
        };
        tracing::debug!(listener = %self.conn.listener, downstream = %self.conn.remote, "refused: {err}");
        let info = RequestInfo {
            version: Version::HTTP_11,
            head: false,
            keep_alive: false,
        };
        self.streaming = false;
        lock(&self.io).linger = true;
        let (start_time, started) = (std::time::SystemTime::now(), std::time::Instant::now());
        let resp = forward::error_response(&err);
        let body_len = resp.body().size_hint().exact().unwrap_or(0);
        let written = self.respond(resp, info).await.is_some();
        if record {
            self.shared.telemetry.record_http(&RequestRecord {
                reporter: self.conn.reporter,
                start_time,
                duration: started.elapsed(),
                bytes_sent: if written { body_len } else { 0 },
                response_code: err.status.as_u16(),
                response_flags: "DPE".to_string(),
                response_code_details: e.details().into(),
                error: Some(err.header_value()),
                downstream_local_address: Some(self.conn.local),
                downstream_remote_address: Some(self.conn.remote),
                ..RequestRecord::default()
            });
        }
    }

    /// Takes the connection (and what was read past the last request) out of the server.
    fn take_io(&mut self) -> (Option<IO>, Vec<u8>) {
        let mut c = lock(&self.io);
        let rest = c.rbuf.split().to_vec();
        (c.io.take(), rest)
    }

    async fn hand_over_h2(mut self) {
        let (io, rest) = self.take_io();
        if let Some(io) = io {
            crate::http::server::serve_h2(self.shared, self.conn, Rewind::new(rest, io)).await
        }
    }

    /// `Upgrade: h2c`: `101`, then HTTP/2 with this request as stream 1.
    async fn upgrade_h2c(&mut self, req: Request<RequestBody>) {
        let stream1 = h2c::stream1(&req);
        drop(req);
        let info = RequestInfo {
            version: Version::HTTP_11,
            head: false,
            keep_alive: true,
        };
        if self
            .respond(h2c::switching_protocols(), info)
            .await
            .is_none()
        {
            return;
        }
        let (io, rest) = self.take_io();
        if let Some(io) = io {
            let (shared, conn) = (self.shared.clone(), self.conn.clone());
            h2c::serve_upgraded(shared, conn, Rewind::new(rest, io), stream1).await
        }
    }

    /// Closes the connection: shuts down the write side (FIN), then, if the client may still
    /// be sending (a refused head, an unread body), reads and discards for a moment first:
    /// closing a socket with unread input makes the kernel send RST, which can destroy the
    /// response before the client reads it (nginx's "lingering close").
    async fn close(&mut self) {
        let (io, linger) = {
            let mut c = lock(&self.io);
            (c.io.take(), c.linger)
        };
        let Some(mut io) = io else {
            return;
        };
        let _ = poll_fn(|cx| Pin::new(&mut io).poll_shutdown(cx)).await;
        if linger {
            let mut sink = BytesMut::new();
            let discard = async {
                let mut total = 0;
                while total < LINGER_BYTES {
                    sink.clear();
                    match poll_fn(|cx| poll_fill(&mut io, &mut sink, HEAD_READ, cx)).await {
                        Ok(n) if n > 0 => total += n,
                        _ => break,
                    }
                }
            };
            let _ = tokio::time::timeout(LINGER, discard).await;
        }
    }
}

/// Whether the proxy drains: a version check, and a look at the value only once it changed.
fn draining(drain: &watch::Receiver<bool>) -> bool {
    match drain.has_changed() {
        Ok(false) => false,
        Ok(true) => *drain.borrow(),
        Err(_) => true,
    }
}

/// Reads and drops the rest of an unread request body, as far as it has already arrived
/// (never waiting, at most a few MiB); `true` if that reached its end.
fn skip_body<IO: AsyncRead + Unpin>(c: &mut ConnIo<IO>) -> bool {
    let Some(io) = c.io.as_mut() else {
        return false;
    };
    let mut cx = Context::from_waker(Waker::noop());
    for _ in 0..64 {
        match c.decoder.decode(&mut c.rbuf) {
            Ok(Decoded::End) => return true,
            Ok(Decoded::Data(_) | Decoded::Trailers(_)) => continue,
            Ok(Decoded::NeedMore) => {}
            Err(_) => return false,
        }
        match poll_fill(io, &mut c.rbuf, BODY_READ, &mut cx) {
            Poll::Ready(Ok(n)) if n > 0 => {}
            _ => return false,
        }
    }
    false
}
