//! Buffers between the codec and a connection: reading into a `BytesMut` that heads and
//! body frames are split off without copying, and a write queue that sends a head, small
//! bodies and chunk framing in one `writev`, with large body chunks passed by reference.

use std::collections::VecDeque;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use bytes::{Buf, Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite};

/// Bytes reserved for reading a head: most heads fit in one read of this size (browsers'
/// requests are 0.5–2 KiB, responses less; nginx's `client_header_buffer_size` is 1 KiB),
/// and larger ones grow the buffer. Every open connection holds one such buffer on each side,
/// at times two (a new one is reserved while the request in flight still shares the old), so
/// 4 KiB rather than 8 KiB: with 32 connections, peak heap 1.39 → 1.04 MiB (massif, together
/// with boxing the HTTP/2 hand-over in `server.rs`), about 0.3 MiB less RSS; instructions
/// per request unchanged (bench/proxy-instructions.sh).
pub const HEAD_READ: usize = 4 * 1024;

/// Bytes reserved for reading body data: large enough that big bodies stream in few
/// reads, small enough that a connection's buffer stays modest.
pub const BODY_READ: usize = 64 * 1024;

/// Body chunks up to this size are copied into the write buffer (one `writev` entry with
/// the head and framing); larger ones are queued as they are.
const COPY_LIMIT: usize = 16 * 1024;

/// The write buffer accepts more frames until it holds this much.
const BUFFER_LIMIT: usize = 64 * 1024;

/// At most this many buffers per `writev`.
const MAX_IOVECS: usize = 16;

/// Reads what is available into `buf` (reserving `want` bytes first). `Ok(0)` is the end of
/// the stream.
pub fn poll_fill<IO: AsyncRead + Unpin>(
    io: &mut IO,
    buf: &mut BytesMut,
    want: usize,
    cx: &mut Context<'_>,
) -> Poll<io::Result<usize>> {
    // Reserving is skipped while a fair amount of room is left (a head or a small body
    // fits); it costs more than the read when done every time.
    if buf.capacity() - buf.len() < want.min(HEAD_READ / 4) {
        buf.reserve(want);
    }
    // `read_buf` reads into the spare capacity without initializing it first; its future
    // holds no state beyond the borrows, so polling a fresh one each time is fine.
    std::pin::pin!(io.read_buf(buf)).poll(cx)
}

/// Bytes waiting to be written, in order: `buf[pos..]`, then `queue`.
#[derive(Default)]
pub struct WriteBuf {
    buf: Vec<u8>,
    pos: usize,
    queue: VecDeque<Bytes>,
}

impl WriteBuf {
    /// Where heads and framing are encoded. Only valid while nothing is queued (heads are
    /// encoded into an empty buffer; framing goes through [`WriteBuf::extend`]).
    pub fn head_buf(&mut self) -> &mut Vec<u8> {
        &mut self.buf
    }

    pub fn is_empty(&self) -> bool {
        self.pos >= self.buf.len() && self.queue.is_empty()
    }

    /// Whether another body frame should be taken before writing.
    pub fn can_take(&self) -> bool {
        self.queue.is_empty() && self.buf.len() - self.pos < BUFFER_LIMIT
    }

    /// Appends framing bytes, after anything queued.
    pub fn extend(&mut self, bytes: &[u8]) {
        if self.queue.is_empty() {
            self.buf.extend_from_slice(bytes);
        } else {
            self.queue.push_back(Bytes::copy_from_slice(bytes));
        }
    }

    /// Appends constant framing bytes, after anything queued.
    pub fn extend_static(&mut self, bytes: &'static [u8]) {
        if self.queue.is_empty() {
            self.buf.extend_from_slice(bytes);
        } else {
            self.queue.push_back(Bytes::from_static(bytes));
        }
    }

    /// Appends body data: copied when small, else queued as is.
    pub fn data(&mut self, data: Bytes) {
        if data.is_empty() {
            return;
        }
        if self.queue.is_empty() && data.len() <= COPY_LIMIT {
            self.buf.extend_from_slice(&data);
        } else {
            self.queue.push_back(data);
        }
    }

    /// Writes until everything is sent.
    pub fn poll_write<IO: AsyncWrite + Unpin>(
        &mut self,
        io: &mut IO,
        cx: &mut Context<'_>,
    ) -> Poll<io::Result<()>> {
        while !self.is_empty() {
            let n = if self.queue.is_empty() {
                ready!(Pin::new(&mut *io).poll_write(cx, &self.buf[self.pos..]))?
            } else {
                let mut slices = [io::IoSlice::new(&[]); MAX_IOVECS];
                let mut count = 0;
                if self.pos < self.buf.len() {
                    slices[0] = io::IoSlice::new(&self.buf[self.pos..]);
                    count = 1;
                }
                for b in self.queue.iter().take(MAX_IOVECS - count) {
                    slices[count] = io::IoSlice::new(b);
                    count += 1;
                }
                ready!(Pin::new(&mut *io).poll_write_vectored(cx, &slices[..count]))?
            };
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            self.advance(n);
        }
        self.buf.clear();
        self.pos = 0;
        Poll::Ready(Ok(()))
    }

    fn advance(&mut self, mut n: usize) {
        let in_buf = (self.buf.len() - self.pos).min(n);
        self.pos += in_buf;
        n -= in_buf;
        while n > 0 {
            let Some(front) = self.queue.front_mut() else {
                return;
            };
            if n >= front.len() {
                n -= front.len();
                self.queue.pop_front();
            } else {
                front.advance(n);
                n = 0;
            }
        }
    }
}

/// `connection refused`, `connection reset by peer`: the OS's words, lower case, as the
/// error sentences quote them.
pub fn io_cause(e: &io::Error) -> String {
    match e.kind() {
        io::ErrorKind::ConnectionRefused => "connection refused".to_string(),
        io::ErrorKind::ConnectionReset => "connection reset by peer".to_string(),
        io::ErrorKind::TimedOut => "connection timed out".to_string(),
        io::ErrorKind::BrokenPipe => "broken pipe".to_string(),
        _ => e.to_string().to_lowercase(),
    }
}
