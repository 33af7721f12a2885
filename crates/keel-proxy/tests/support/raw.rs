//! Raw-socket peers for the HTTP/1 codec tests: an upstream whose handler gets the TCP
//! stream itself, and helpers to read heads and bodies byte for byte, so tests can check
//! exactly what went over the wire.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

use super::{Proxy, gateway, within};

/// An upstream served by a handler given each accepted connection and its index.
pub struct RawUpstream {
    pub addr: SocketAddr,
    accepted: Arc<AtomicUsize>,
    handle: JoinHandle<()>,
}

impl RawUpstream {
    pub async fn start<F, Fut>(handler: F) -> RawUpstream
    where
        F: Fn(TcpStream, usize) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let accepted = Arc::new(AtomicUsize::new(0));
        let count = accepted.clone();
        let handler = Arc::new(handler);
        let handle = tokio::spawn(async move {
            while let Ok((s, _)) = listener.accept().await {
                let i = count.fetch_add(1, Ordering::SeqCst);
                tokio::spawn(handler(s, i));
            }
        });
        RawUpstream {
            addr,
            accepted,
            handle,
        }
    }

    pub fn connections(&self) -> usize {
        self.accepted.load(Ordering::SeqCst)
    }
}

impl Drop for RawUpstream {
    fn drop(&mut self) {
        self.handle.abort();
    }
}

/// A proxy routing host `p.test` to `upstream`.
pub async fn proxy_to(upstream: SocketAddr) -> Proxy {
    Proxy::start(|port| {
        format!(
            "{}apiVersion: networking.istio.io/v1\nkind: ServiceEntry\nmetadata: {{name: raw, namespace: default}}\nspec:\n  hosts: [raw.test]\n  location: MESH_INTERNAL\n  resolution: STATIC\n  ports: [{{number: 80, name: http, protocol: HTTP}}]\n  endpoints: [{{address: 127.0.0.1, ports: {{http: {}}}}}]\n---\napiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {{name: p, namespace: default}}\nspec:\n  hosts: [p.test]\n  gateways: [gw]\n  http:\n  - route: [{{destination: {{host: raw.test}}}}]\n",
            gateway("gw", port, &["*"]),
            upstream.port()
        )
    })
    .await
}

/// A connection with a read buffer: what was read past a head stays for the next read.
pub struct Wire {
    pub s: TcpStream,
    pub buf: Vec<u8>,
}

impl Wire {
    pub fn new(s: TcpStream) -> Wire {
        Wire { s, buf: Vec::new() }
    }

    pub async fn connect(addr: SocketAddr) -> Wire {
        Wire::new(
            within("connect", TcpStream::connect(addr))
                .await
                .expect("connect"),
        )
    }

    pub async fn send(&mut self, bytes: &[u8]) {
        self.s.write_all(bytes).await.expect("write");
    }

    /// Reads more; `false` at EOF.
    async fn fill(&mut self) -> bool {
        let mut chunk = [0u8; 16384];
        let n = within("read", self.s.read(&mut chunk)).await.unwrap_or(0);
        self.buf.extend_from_slice(&chunk[..n]);
        n > 0
    }

    /// The next head, through its blank line, exactly as sent.
    pub async fn head(&mut self) -> String {
        loop {
            if let Some(end) = self.buf.windows(4).position(|w| w == b"\r\n\r\n") {
                let head: Vec<u8> = self.buf.drain(..end + 4).collect();
                return String::from_utf8_lossy(&head).into_owned();
            }
            assert!(self.fill().await, "closed before a head: {:?}", self.text());
        }
    }

    /// Exactly `n` body bytes.
    pub async fn body(&mut self, n: usize) -> Vec<u8> {
        while self.buf.len() < n {
            assert!(self.fill().await, "closed in a body");
        }
        self.buf.drain(..n).collect()
    }

    /// A chunked body, decoded, and the trailer section as sent.
    pub async fn chunked(&mut self) -> (Vec<u8>, String) {
        let mut data = Vec::new();
        loop {
            let line = self.line().await;
            let size = usize::from_str_radix(line.split(';').next().unwrap_or("").trim(), 16)
                .expect("chunk size");
            if size == 0 {
                let mut trailers = String::new();
                loop {
                    let l = self.line().await;
                    if l.is_empty() {
                        return (data, trailers);
                    }
                    trailers.push_str(&l);
                    trailers.push_str("\r\n");
                }
            }
            data.extend(self.body(size).await);
            assert_eq!(self.body(2).await, b"\r\n");
        }
    }

    /// Everything until the peer closes.
    pub async fn read_to_close(&mut self) -> Vec<u8> {
        while self.fill().await {}
        std::mem::take(&mut self.buf)
    }

    /// Whether the peer closed (after whatever is buffered).
    pub async fn closed(&mut self) -> bool {
        self.buf.is_empty() && !self.fill().await
    }

    async fn line(&mut self) -> String {
        loop {
            if let Some(end) = self.buf.windows(2).position(|w| w == b"\r\n") {
                let line: Vec<u8> = self.buf.drain(..end + 2).collect();
                return String::from_utf8_lossy(&line[..end]).into_owned();
            }
            assert!(self.fill().await, "closed in a line");
        }
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(&self.buf).into_owned()
    }
}

/// The value of header `name` (case-insensitive) in a raw head.
pub fn header_of<'a>(head: &'a str, name: &str) -> Option<&'a str> {
    head.split("\r\n").skip(1).find_map(|l| {
        let (k, v) = l.split_once(':')?;
        k.eq_ignore_ascii_case(name).then(|| v.trim())
    })
}

/// The status code of a raw response head.
pub fn status_of(head: &str) -> u16 {
    head.split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0)
}
