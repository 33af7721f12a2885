//! Protocol detection for listeners whose protocol is unknown (`ListenerProtocol::Auto`):
//! read the first bytes the client sends, within a deadline, and tell HTTP/1.x, HTTP/2
//! (prior knowledge) and TLS from anything else.
//!
//! Detection reads (it does not peek: peeking cannot wait for *more* bytes without
//! spinning), so the bytes read are handed on and replayed by [`Rewind`] in front of the
//! stream. A client that sends nothing before the deadline is treated as opaque TCP, so
//! server-first protocols (MySQL, SMTP, SSH banners) start after at most the detection
//! timeout instead of stalling forever.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, ReadBuf};

use super::sni;

/// What the first bytes say.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Detected {
    /// An HTTP/1.x request line.
    Http1,
    /// The HTTP/2 connection preface (h2c with prior knowledge).
    Http2,
    /// A TLS handshake record.
    Tls,
    /// Anything else, or nothing before the deadline.
    Tcp,
}

/// The HTTP/2 client connection preface (RFC 9113 §3.4).
pub const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// Request methods recognised as HTTP/1.x, each with the space that ends it. A fixed list
/// (RFC 9110 §9 and PATCH) rather than "any token": protocols such as Redis or SMTP also
/// start with upper-case words (`PING`, `EHLO`), and those must stay TCP.
const METHODS: &[&[u8]] = &[
    b"GET ",
    b"HEAD ",
    b"POST ",
    b"PUT ",
    b"DELETE ",
    b"CONNECT ",
    b"OPTIONS ",
    b"TRACE ",
    b"PATCH ",
];

/// Classifies the bytes read so far; `None` while they are a prefix of more than one answer.
pub fn classify(buf: &[u8]) -> Option<Detected> {
    if buf.is_empty() {
        return None;
    }
    if let Some(tls) = sni::looks_like_tls(buf) {
        if tls {
            return Some(Detected::Tls);
        }
    } else {
        return None;
    }
    if buf.starts_with(H2_PREFACE) {
        return Some(Detected::Http2);
    }
    if METHODS.iter().any(|m| buf.starts_with(m)) {
        return Some(Detected::Http1);
    }
    let undecided = H2_PREFACE.starts_with(buf) || METHODS.iter().any(|m| m.starts_with(buf));
    if undecided { None } else { Some(Detected::Tcp) }
}

/// Reads until the bytes classify, the client stops sending, or `timeout` passes (then it is
/// TCP). `Duration::ZERO` waits without a deadline (Istio's "0s disables the timeout").
/// Returns the protocol and the bytes read, which belong in front of the stream.
pub async fn detect<S>(stream: &mut S, timeout: Duration) -> io::Result<(Detected, Vec<u8>)>
where
    S: AsyncRead + Unpin,
{
    let mut buf = Vec::with_capacity(H2_PREFACE.len());
    let deadline = (!timeout.is_zero()).then(|| tokio::time::Instant::now() + timeout);
    loop {
        if let Some(d) = classify(&buf) {
            return Ok((d, buf));
        }
        // Never more than the preface: whatever is longer has been classified already.
        let mut chunk = [0u8; H2_PREFACE.len()];
        let want = H2_PREFACE.len().saturating_sub(buf.len()).max(1);
        let read = stream.read(&mut chunk[..want]);
        let n = match deadline {
            Some(d) => match tokio::time::timeout_at(d, read).await {
                Ok(r) => r?,
                Err(_) => return Ok((Detected::Tcp, buf)),
            },
            None => read.await?,
        };
        if n == 0 {
            // The client half-closed: whatever it sent is all there is.
            return Ok((Detected::Tcp, buf));
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

/// A stream with bytes already read put back in front of it.
pub struct Rewind<S> {
    prefix: Vec<u8>,
    pos: usize,
    inner: S,
}

impl<S> Rewind<S> {
    pub fn new(prefix: Vec<u8>, inner: S) -> Self {
        Rewind {
            prefix,
            pos: 0,
            inner,
        }
    }

    pub fn get_ref(&self) -> &S {
        &self.inner
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Rewind<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if let Some(rest) = this.prefix.get(this.pos..).filter(|r| !r.is_empty()) {
            let n = rest.len().min(buf.remaining());
            buf.put_slice(&rest[..n]);
            this.pos += n;
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut this.inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Rewind<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncWriteExt;

    #[test]
    fn classifies_first_bytes() {
        assert_eq!(classify(b""), None);
        assert_eq!(classify(b"GE"), None);
        assert_eq!(classify(b"GET /"), Some(Detected::Http1));
        assert_eq!(classify(b"OPTIONS * HTTP/1.1"), Some(Detected::Http1));
        assert_eq!(classify(b"PRI * HTTP/2.0"), None);
        assert_eq!(classify(H2_PREFACE), Some(Detected::Http2));
        assert_eq!(classify(&[0x16, 0x03, 0x01, 0x02]), Some(Detected::Tls));
        assert_eq!(classify(&[0x16]), None);
        assert_eq!(classify(b"PING\r\n"), Some(Detected::Tcp));
        assert_eq!(classify(b"EHLO x"), Some(Detected::Tcp));
        assert_eq!(classify(b"GETX"), Some(Detected::Tcp));
        assert_eq!(classify(b"\x00\x00"), Some(Detected::Tcp));
        assert_eq!(classify(b"PRI * HTTP/1.1\r\n"), Some(Detected::Tcp));
    }

    #[tokio::test(start_paused = true)]
    async fn silence_is_tcp_after_the_timeout() {
        let (mut a, _b) = tokio::io::duplex(64);
        let (d, buf) = detect(&mut a, Duration::from_millis(100))
            .await
            .expect("detect");
        assert_eq!((d, buf.len()), (Detected::Tcp, 0));
    }

    #[tokio::test]
    async fn bytes_in_pieces_are_put_back() {
        let (mut a, mut b) = tokio::io::duplex(64);
        let writer = tokio::spawn(async move {
            b.write_all(b"PO").await.expect("write");
            tokio::task::yield_now().await;
            b.write_all(b"ST /x HTTP/1.1\r\n").await.expect("write");
            b
        });
        let (d, buf) = detect(&mut a, Duration::from_secs(5))
            .await
            .expect("detect");
        assert_eq!(d, Detected::Http1);
        let _b = writer.await.expect("join");
        let mut r = Rewind::new(buf, a);
        let mut line = [0u8; 16];
        r.read_exact(&mut line).await.expect("read");
        assert_eq!(&line, b"POST /x HTTP/1.1");
    }
}
