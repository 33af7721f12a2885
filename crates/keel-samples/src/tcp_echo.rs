//! tcp-echo, a port of Istio's `samples/tcp-echo/src/main.go`: every line a client sends comes
//! back prefixed — with prefix `hello`, `world\n` is answered `hello world\n`. Istio's
//! container takes `"9000,9001,9002" "hello"` as arguments; so does `keel-sample tcp-echo`.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::{JoinHandle, JoinSet};

use crate::log;

/// Lines longer than this end the connection (Go's reader would buffer without bound).
pub const MAX_LINE: usize = 1 << 20;

/// A running echo listener; [`TcpEcho::stop`] closes it and its connections.
pub struct TcpEcho {
    addr: SocketAddr,
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
}

impl TcpEcho {
    /// Starts echoing with `prefix` on `listener`.
    pub fn start(listener: TcpListener, prefix: String) -> std::io::Result<TcpEcho> {
        let addr = listener.local_addr()?;
        log!("listening on {addr}, prefix: {prefix}");
        let (stop, stopped) = watch::channel(false);
        let task = tokio::spawn(accept_loop(listener, prefix, stopped));
        Ok(TcpEcho { addr, stop, task })
    }

    /// The address it listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Stops accepting and closes open connections.
    pub async fn stop(self) {
        let _ = self.stop.send(true);
        let _ = self.task.await;
    }
}

async fn accept_loop(listener: TcpListener, prefix: String, mut stopped: watch::Receiver<bool>) {
    let mut conns = JoinSet::new();
    loop {
        tokio::select! {
            _ = stopped.changed() => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    let prefix = prefix.clone();
                    let stopped = stopped.clone();
                    conns.spawn(async move {
                        let mut stopped = stopped;
                        tokio::select! {
                            _ = echo(stream, &prefix) => {}
                            _ = stopped.changed() => {}
                        }
                    });
                }
                Err(e) => {
                    log!("failed to accept connection, err: {e}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            },
            Some(_) = conns.join_next(), if !conns.is_empty() => {}
        }
    }
    conns.shutdown().await;
}

/// Answers each complete line with `prefix + " " + line`; a last line without a newline is
/// dropped, as Go's `ReadBytes('\n')` loop does.
async fn echo(stream: TcpStream, prefix: &str) {
    let (read, mut write) = stream.into_split();
    let mut reader = BufReader::new(read);
    let mut line = Vec::new();
    loop {
        line.clear();
        let mut limited = (&mut reader).take(u64::try_from(MAX_LINE).unwrap_or(u64::MAX));
        match limited.read_until(b'\n', &mut line).await {
            Ok(0) => return,
            Ok(_) if line.last() != Some(&b'\n') => {
                if line.len() >= MAX_LINE {
                    log!("failed to read data, err: line longer than {MAX_LINE} bytes");
                }
                return;
            }
            Ok(_) => {}
            Err(e) => {
                log!("failed to read data, err: {e}");
                return;
            }
        }
        let text = String::from_utf8_lossy(&line);
        log!("request: {}", text.trim_end_matches('\n'));
        let mut reply = Vec::with_capacity(prefix.len() + 1 + line.len());
        reply.extend_from_slice(prefix.as_bytes());
        reply.push(b' ');
        reply.extend_from_slice(&line);
        log!(
            "response: {}",
            String::from_utf8_lossy(&reply).trim_end_matches('\n')
        );
        if write.write_all(&reply).await.is_err() {
            return;
        }
    }
}

/// Parses Istio's ports argument: `"9000,9001,9002"`.
pub fn parse_ports(arg: &str) -> Result<Vec<u16>, String> {
    arg.split(',')
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .map(|p| {
            p.parse::<u16>()
                .map_err(|_| format!("invalid port {p:?} in {arg:?}"))
        })
        .collect::<Result<Vec<_>, _>>()
        .and_then(|ports| {
            if ports.is_empty() {
                Err(format!("no ports in {arg:?}"))
            } else {
                Ok(ports)
            }
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports_parse_like_istios_argument() {
        assert_eq!(parse_ports("9000,9001,9002"), Ok(vec![9000, 9001, 9002]));
        assert_eq!(parse_ports("9000"), Ok(vec![9000]));
        assert!(parse_ports("").is_err());
        assert!(parse_ports("90000").is_err());
        assert!(parse_ports("a,b").is_err());
    }
}
