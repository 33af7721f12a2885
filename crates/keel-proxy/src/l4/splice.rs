//! Copying a proxied TCP connection's bytes both ways until both sides have closed, the
//! connection has been idle for its idle timeout, or the proxy's drain deadline passes.
//!
//! Istio's `connectionPool.tcp.idleTimeout` (Envoy's `tcp_proxy` `idle_timeout`): no bytes
//! read or written on either side for that long closes both sides; unset is 1 hour, `0s`
//! disables it. On drain, a TCP connection has no request boundary to stop at, so it keeps
//! copying for the drain timeout and is then closed — so a long-lived connection cannot
//! hold the process open past `--drain-timeout`.

use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::watch;
use tokio::time::Instant;

/// Istio's default TCP idle timeout.
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(3600);

/// When a connection is ended by the proxy rather than by its peers.
pub struct Limits {
    /// `None`: never idle out (`idleTimeout: 0s`).
    pub idle: Option<Duration>,
    /// Flips to `true` when the proxy drains.
    pub drain: watch::Receiver<bool>,
    /// How long the connection continues once the drain starts.
    pub drain_timeout: Duration,
}

/// Why copying stopped.
#[derive(Debug)]
pub enum End {
    /// Both sides closed their halves.
    Closed,
    /// A read or write failed (a reset, usually).
    Failed(io::Error),
    /// Nothing moved for the idle timeout.
    Idle(Duration),
    /// The drain deadline passed.
    Drained(Duration),
}

/// Bytes moved and why it ended.
#[derive(Debug)]
pub struct Copied {
    pub from_client: u64,
    pub from_server: u64,
    pub end: End,
}

/// Copies until one of the ends in [`End`]. Whatever the end, both streams are released by
/// the caller right after, which closes them.
pub async fn splice<D, U>(downstream: &mut D, upstream: &mut U, limits: Limits) -> Copied
where
    D: AsyncRead + AsyncWrite + Unpin,
    U: AsyncRead + AsyncWrite + Unpin,
{
    let activity = Activity::new();
    let (from_client, from_server) = (AtomicU64::new(0), AtomicU64::new(0));
    let mut down = Tracked {
        inner: downstream,
        read: &from_client,
        activity: &activity,
    };
    let mut up = Tracked {
        inner: upstream,
        read: &from_server,
        activity: &activity,
    };
    let Limits {
        idle,
        drain,
        drain_timeout,
    } = limits;
    let end = tokio::select! {
        r = tokio::io::copy_bidirectional(&mut down, &mut up) => match r {
            Ok(_) => End::Closed,
            Err(e) => End::Failed(e),
        },
        d = idle_for(&activity, idle) => End::Idle(d),
        () = drained(drain, drain_timeout) => End::Drained(drain_timeout),
    };
    Copied {
        from_client: from_client.load(Ordering::Relaxed),
        from_server: from_server.load(Ordering::Relaxed),
        end,
    }
}

/// Resolves once nothing has moved for `idle` (never for `None`).
async fn idle_for(activity: &Activity, idle: Option<Duration>) -> Duration {
    let Some(idle) = idle else {
        return std::future::pending().await;
    };
    // One timer, re-armed only when it fires early, not on every read.
    loop {
        let deadline = activity.last() + idle;
        if Instant::now() >= deadline {
            return idle;
        }
        tokio::time::sleep_until(deadline).await;
    }
}

/// Resolves `timeout` after the drain starts (never if the proxy can't drain any more).
async fn drained(mut drain: watch::Receiver<bool>, timeout: Duration) {
    if drain.wait_for(|d| *d).await.is_err() {
        return std::future::pending().await;
    }
    tokio::time::sleep(timeout).await;
}

/// When bytes last moved, as nanoseconds since the connection started.
struct Activity {
    start: Instant,
    last: AtomicU64,
}

impl Activity {
    fn new() -> Self {
        Activity {
            start: Instant::now(),
            last: AtomicU64::new(0),
        }
    }

    fn touch(&self) {
        let nanos = self.start.elapsed().as_nanos();
        self.last
            .store(u64::try_from(nanos).unwrap_or(u64::MAX), Ordering::Relaxed);
    }

    fn last(&self) -> Instant {
        self.start + Duration::from_nanos(self.last.load(Ordering::Relaxed))
    }
}

/// A stream that counts the bytes read from it and notes when bytes move either way.
struct Tracked<'a, S> {
    inner: &'a mut S,
    read: &'a AtomicU64,
    activity: &'a Activity,
}

impl<S: AsyncRead + Unpin> AsyncRead for Tracked<'_, S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let r = Pin::new(&mut *this.inner).poll_read(cx, buf);
        let n = buf.filled().len() - before;
        if n > 0 {
            this.read.fetch_add(n as u64, Ordering::Relaxed);
            this.activity.touch();
        }
        r
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Tracked<'_, S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let r = Pin::new(&mut *this.inner).poll_write(cx, buf);
        if matches!(r, Poll::Ready(Ok(n)) if n > 0) {
            this.activity.touch();
        }
        r
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut *self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut *self.get_mut().inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt, duplex};

    fn limits(idle: Option<Duration>) -> (Limits, watch::Sender<bool>) {
        let (tx, rx) = watch::channel(false);
        let l = Limits {
            idle,
            drain: rx,
            drain_timeout: Duration::from_secs(5),
        };
        (l, tx)
    }

    #[tokio::test(start_paused = true)]
    async fn idle_connections_end_after_the_idle_timeout() {
        let (mut client, mut down) = duplex(1024);
        let (mut up, mut server) = duplex(1024);
        let (l, _tx) = limits(Some(Duration::from_secs(60)));
        let started = Instant::now();
        let task = tokio::spawn(async move { splice(&mut down, &mut up, l).await });
        // Traffic every 40s keeps it open past the timeout...
        for _ in 0..3 {
            tokio::time::sleep(Duration::from_secs(40)).await;
            client.write_all(b"ping").await.expect("write");
            let mut b = [0u8; 4];
            server.read_exact(&mut b).await.expect("read");
        }
        // ...then 60s of silence ends it.
        let copied = task.await.expect("task");
        assert!(matches!(copied.end, End::Idle(_)), "{:?}", copied.end);
        assert_eq!(copied.from_client, 12);
        let took = started.elapsed();
        assert!(
            took >= Duration::from_secs(180) && took < Duration::from_secs(181),
            "{took:?}"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn draining_ends_connections_at_the_deadline() {
        let (_client, mut down) = duplex(1024);
        let (mut up, _server) = duplex(1024);
        let (l, tx) = limits(None);
        let task = tokio::spawn(async move { splice(&mut down, &mut up, l).await });
        tokio::time::sleep(Duration::from_secs(7200)).await;
        assert!(!task.is_finished(), "idleTimeout 0s never idles out");
        let drain_started = Instant::now();
        tx.send(true).expect("drain");
        let copied = task.await.expect("task");
        assert!(matches!(copied.end, End::Drained(_)), "{:?}", copied.end);
        let took = drain_started.elapsed();
        assert!(
            took >= Duration::from_secs(5) && took < Duration::from_secs(6),
            "{took:?}"
        );
    }

    #[tokio::test]
    async fn closed_by_the_peers() {
        let (mut client, mut down) = duplex(1024);
        let (mut up, mut server) = duplex(1024);
        let (l, _tx) = limits(Some(DEFAULT_IDLE_TIMEOUT));
        let task = tokio::spawn(async move { splice(&mut down, &mut up, l).await });
        client.write_all(b"hello").await.expect("write");
        client.shutdown().await.expect("shutdown");
        let mut got = Vec::new();
        server.read_to_end(&mut got).await.expect("read");
        server.write_all(b"bye!!!").await.expect("write");
        server.shutdown().await.expect("shutdown");
        drop(server);
        let copied = task.await.expect("task");
        assert!(matches!(copied.end, End::Closed), "{:?}", copied.end);
        assert_eq!((copied.from_client, copied.from_server), (5, 6));
    }
}
