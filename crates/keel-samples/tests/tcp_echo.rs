//! tcp-echo answers every line with its prefix, as Istio's tcp-echo-server.

#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)] // test code: fail loudly

use keel_samples::tcp_echo::TcpEcho;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

#[tokio::test]
async fn every_line_comes_back_prefixed() {
    keel_samples::log::set_quiet(true);
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let echo = TcpEcho::start(listener, "hello".into()).unwrap();
    let mut conn = TcpStream::connect(echo.local_addr()).await.unwrap();
    conn.write_all(b"world\n").await.unwrap();
    let mut buf = vec![0; 12];
    conn.read_exact(&mut buf).await.unwrap();
    assert_eq!(buf, b"hello world\n");

    // Two lines in one write, then a partial line and EOF: the partial one is dropped.
    conn.write_all(b"one\ntwo\nthr").await.unwrap();
    conn.shutdown().await.unwrap();
    let mut rest = String::new();
    conn.read_to_string(&mut rest).await.unwrap();
    assert_eq!(rest, "hello one\nhello two\n");

    // Several clients at once, each with its own answers.
    let mut a = TcpStream::connect(echo.local_addr()).await.unwrap();
    let mut b = TcpStream::connect(echo.local_addr()).await.unwrap();
    b.write_all(b"b\n").await.unwrap();
    a.write_all(b"a\n").await.unwrap();
    let mut got = [0u8; 8];
    b.read_exact(&mut got).await.unwrap();
    assert_eq!(&got, b"hello b\n");
    a.read_exact(&mut got).await.unwrap();
    assert_eq!(&got, b"hello a\n");

    echo.stop().await;
    let mut after = [0u8; 1];
    assert_eq!(
        a.read(&mut after).await.unwrap_or(0),
        0,
        "stopping closes connections"
    );
}
