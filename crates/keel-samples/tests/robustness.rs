//! Odd and hostile input gets an answer, never a crash: every app keeps serving afterwards.

#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)] // test code: fail loudly

mod support;

use std::net::SocketAddr;

use keel_samples::bookinfo::details::Details;
use keel_samples::bookinfo::productpage::{Productpage, ProductpageConfig};
use keel_samples::bookinfo::ratings::{Ratings, RatingsConfig};
use keel_samples::bookinfo::reviews::{Reviews, ReviewsConfig};
use keel_samples::client::{Client, Proxy, Target};
use keel_samples::httpbin::{Httpbin, HttpbinConfig};
use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const PATHS: &[&str] = &[
    "/",
    "//",
    "/details",
    "/details/",
    "/details/%ff",
    "/details/-",
    "/details/1/2/3",
    "/reviews/",
    "/reviews/-0",
    "/reviews/+",
    "/reviews/2147483648",
    "/ratings/",
    "/ratings/-",
    "/ratings/99999999999999999999",
    "/api/v1/products/",
    "/api/v1/products//reviews",
    "/api/v1/products/0/other",
    "/api/v1/products/%2e%2e",
    "/productpage?u=%zz",
    "/status/",
    "/status/0",
    "/status/99999",
    "/status/200:x",
    "/status/200:-1,500:1",
    "/delay/",
    "/delay/1e309",
    "/delay/-1",
    "/delay/1h",
    "/delay/%20",
    "/anything/../..",
    "/get?%=%&&==",
    "/static/../../etc/passwd",
    "/login?username=%00",
];

async fn hammer(addr: SocketAddr) {
    for path in PATHS {
        for method in ["GET", "POST", "DELETE", "HEAD"] {
            let got = request(
                addr,
                method,
                path,
                &[("cookie", "user=%ff%00; user")],
                "x=%",
            )
            .await;
            assert!(got.status.as_u16() >= 200, "{method} {path}");
        }
    }
    // Garbage that is not HTTP, then a body far over the limit.
    let mut raw = TcpStream::connect(addr).await.unwrap();
    raw.write_all(b"\x00\xff GARBAGE\r\n\r\n").await.unwrap();
    let mut sink = Vec::new();
    let _ = raw.read_to_end(&mut sink).await;
    let big = "a".repeat(2 << 20);
    let got = request(
        addr,
        "POST",
        "/anything",
        &[("content-type", "text/plain")],
        &big,
    )
    .await;
    assert!(got.status.as_u16() >= 200);
    // Still serving.
    assert!(get(addr, "/", &[]).await.status.as_u16() >= 200);
}

#[tokio::test]
async fn every_app_answers_odd_requests_and_keeps_serving() {
    let dead = Target::new("127.0.0.1", listener().await.local_addr().unwrap().port());
    let client = Client::new(Proxy::none());
    let pp = ProductpageConfig::new(dead.clone(), dead.clone(), dead.clone(), client.clone());
    let reviews = ReviewsConfig::for_version("v2", dead, "p".into(), client);
    let servers = [
        start("productpage", Productpage::new(pp)).await,
        start("details", Details::default()).await,
        start("reviews", Reviews::new(reviews)).await,
        start("ratings", Ratings::new(RatingsConfig::default())).await,
        start("httpbin", Httpbin::new(HttpbinConfig::default())).await,
    ];
    for server in &servers {
        hammer(server.local_addr()).await;
    }
    let big = request(
        servers[4].local_addr(),
        "POST",
        "/post",
        &[],
        &"a".repeat(2 << 20),
    )
    .await;
    assert_eq!(big.status, 400, "httpbin refuses bodies over 1 MiB");
}
