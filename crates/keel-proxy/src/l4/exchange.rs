//! Istio's TCP peer metadata exchange on a mesh mTLS connection whose ALPN is
//! `istio-peer-exchange` (the frame is [`crate::telemetry::peer_exchange`]'s): each side
//! starts its direction of the stream with who it is, so both sides' `istio_tcp_*` series
//! name the workload at the other end, as HTTP's headers do for `istio_requests_total`.
//!
//! Both sides send their frame as soon as the handshake is done, then read the other's
//! before any byte reaches the app: neither waits for the other to speak first, so
//! server-first protocols (MySQL's greeting) don't stall. Envoy sends its frame on the first
//! byte either way, which the one sent here provides.

use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use crate::telemetry::ProxyIdentity;
use crate::telemetry::peer_exchange::{TcpFrame, read_tcp_frame};

/// What the exchange learned, and the stream's bytes read past the peer's frame (app data,
/// to be delivered first).
#[derive(Debug, Default)]
pub struct Exchanged {
    pub peer: Option<Arc<ProxyIdentity>>,
    pub rest: Vec<u8>,
}

/// Sends `frame` and reads the peer's, for up to `timeout`. A peer that sends something else
/// doesn't exchange: what it sent is returned as data. A peer that sends nothing in time is
/// taken as one that has nothing to tell, and the connection goes on without its name.
/// Errors: the stream failed, or the peer's frame was cut off (by its closing or the
/// deadline), leaving nothing sensible to hand the app.
pub async fn exchange<S>(io: &mut S, frame: &[u8], timeout: Duration) -> std::io::Result<Exchanged>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    io.write_all(frame).await?;
    io.flush().await?;
    let deadline = tokio::time::Instant::now() + timeout;
    let mut buf = Vec::new();
    let mut chunk = [0u8; 1024];
    loop {
        match read_tcp_frame(&buf) {
            TcpFrame::Read { len, peer } => {
                buf.drain(..len);
                return Ok(Exchanged { peer, rest: buf });
            }
            TcpFrame::Absent => {
                return Ok(Exchanged {
                    peer: None,
                    rest: buf,
                });
            }
            TcpFrame::Incomplete => {}
        }
        let n = match tokio::time::timeout_at(deadline, io.read(&mut chunk)).await {
            Ok(r) => r?,
            Err(_) if buf.is_empty() => return Ok(Exchanged::default()),
            Err(_) => {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    format!("the peer's metadata frame was not complete within {timeout:?}"),
                ));
            }
        };
        if n == 0 {
            if buf.is_empty() {
                return Ok(Exchanged::default());
            }
            return Err(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                "the peer closed inside its metadata frame",
            ));
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::panic)]
    use super::*;
    use crate::telemetry::peer_exchange::{PeerExchange, tcp_frame};

    fn who(workload: &str) -> PeerExchange {
        PeerExchange::new(&ProxyIdentity {
            workload: workload.into(),
            namespace: "foo".into(),
            ..Default::default()
        })
        .unwrap()
    }

    #[tokio::test]
    async fn both_sides_learn_the_other_and_data_after_the_frame_is_kept() {
        let (mut a, mut b) = tokio::io::duplex(4096);
        let (client, server) = (who("sleep"), who("db"));
        let t = Duration::from_secs(5);
        let server_side = tokio::spawn(async move {
            let got = exchange(&mut b, server.tcp_frame(), t).await.unwrap();
            // A server-first app's greeting follows the frame.
            b.write_all(b"greeting").await.unwrap();
            got
        });
        let got = exchange(&mut a, client.tcp_frame(), t).await.unwrap();
        assert_eq!(got.peer.unwrap().workload, "db");
        let mut greeting = got.rest;
        while greeting.len() < 8 {
            let mut c = [0u8; 8];
            let n = a.read(&mut c).await.unwrap();
            greeting.extend_from_slice(&c[..n]);
        }
        assert_eq!(greeting, b"greeting");
        assert_eq!(server_side.await.unwrap().peer.unwrap().workload, "sleep");
    }

    #[tokio::test]
    async fn a_peer_that_does_not_exchange_keeps_its_bytes() {
        let (mut a, mut b) = tokio::io::duplex(4096);
        b.write_all(b"SSH-2.0-banner\r\n").await.unwrap();
        let got = exchange(&mut a, &tcp_frame(None, None), Duration::from_secs(5))
            .await
            .unwrap();
        assert!(got.peer.is_none());
        assert_eq!(got.rest, b"SSH-2.0-banner\r\n");
        // Our frame went out regardless.
        let mut sent = vec![0u8; 4];
        b.read_exact(&mut sent).await.unwrap();
        assert_eq!(sent, [0x3D, 0x23, 0x04, 0x67]);
    }

    #[tokio::test]
    async fn silence_is_no_peer_and_a_cut_frame_is_an_error() {
        let (mut a, _b) = tokio::io::duplex(4096);
        let got = exchange(&mut a, &tcp_frame(None, None), Duration::from_millis(50))
            .await
            .unwrap();
        assert!(got.peer.is_none() && got.rest.is_empty());

        let (mut a, mut b) = tokio::io::duplex(4096);
        let frame = who("db").tcp_frame().to_vec();
        b.write_all(&frame[..10]).await.unwrap();
        b.shutdown().await.unwrap();
        let err = exchange(&mut a, &frame, Duration::from_secs(5))
            .await
            .unwrap_err();
        assert!(
            err.to_string().contains("inside its metadata frame"),
            "{err}"
        );
    }
}
