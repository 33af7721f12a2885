//! httpbin's endpoints answer go-httpbin's JSON shapes.

#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)] // test code: fail loudly

mod support;

use std::time::{Duration, Instant};

use keel_samples::httpbin::{Httpbin, HttpbinConfig};
use serde_json::json;
use support::*;

async fn httpbin() -> keel_samples::server::Server {
    start("httpbin", Httpbin::new(HttpbinConfig::default())).await
}

#[tokio::test]
async fn get_echoes_args_headers_origin_and_url() {
    let server = httpbin().await;
    let addr = server.local_addr();
    let got = get(
        addr,
        "/get?a=1&a=2&b=x%20y",
        &[("x-b3-traceid", "abc"), ("user-agent", "curl/8")],
    )
    .await;
    assert_eq!(got.status, 200);
    assert_eq!(
        got.header("content-type"),
        Some("application/json; charset=utf-8")
    );
    assert!(
        got.body.starts_with("{\n  \"args\": {"),
        "pretty, go-httpbin's field order: {}",
        got.body
    );
    let v = got.json();
    assert_eq!(v["args"], json!({"a": ["1", "2"], "b": ["x y"]}));
    assert_eq!(v["headers"]["X-B3-Traceid"], json!(["abc"]));
    assert_eq!(v["headers"]["User-Agent"], json!(["curl/8"]));
    assert_eq!(v["headers"]["Host"], json!([addr.to_string()]));
    assert_eq!(v["method"], "GET");
    assert_eq!(v["origin"], "127.0.0.1");
    assert_eq!(v["url"], format!("http://{addr}/get?a=1&a=2&b=x%20y"));
    assert!(v.get("data").is_none(), "no body fields on /get");

    let xff = get(addr, "/ip", &[("x-forwarded-for", "10.1.2.3, 127.0.0.6")]).await;
    assert_eq!(xff.json(), json!({"origin": "10.1.2.3"}));
    assert_eq!(
        get(addr, "/ip", &[]).await.json(),
        json!({"origin": "127.0.0.1"})
    );
    let headers = get(addr, "/headers", &[("end-user", "jason")]).await.json();
    assert_eq!(headers["headers"]["End-User"], json!(["jason"]));
    assert_eq!(
        get(addr, "/user-agent", &[("user-agent", "ua")])
            .await
            .json(),
        json!({"user-agent": "ua"})
    );
    assert_eq!(
        get(addr, "/hostname", &[]).await.json(),
        json!({"hostname": "go-httpbin"})
    );
    assert!(get(addr, "/", &[]).await.body.contains("/status/"));
}

#[tokio::test]
async fn bodies_are_echoed_by_content_type() {
    let server = httpbin().await;
    let addr = server.local_addr();
    let posted = request(
        addr,
        "POST",
        "/post",
        &[("content-type", "application/json")],
        r#"{"k":[1,2]}"#,
    )
    .await
    .json();
    assert_eq!(posted["json"], json!({"k": [1, 2]}));
    assert_eq!(posted["data"], r#"{"k":[1,2]}"#);
    assert_eq!(posted["form"], json!({}));
    assert_eq!(posted["files"], json!({}));
    assert_eq!(posted["method"], "POST");

    let form = request(
        addr,
        "PUT",
        "/put",
        &[("content-type", "application/x-www-form-urlencoded")],
        "a=1&b=2",
    )
    .await
    .json();
    assert_eq!(form["form"], json!({"a": ["1"], "b": ["2"]}));
    assert_eq!(form["json"], json!(null));

    let binary = request(
        addr,
        "PATCH",
        "/anything/x/y?q=1",
        &[("content-type", "application/octet-stream")],
        "hi",
    )
    .await
    .json();
    assert_eq!(binary["data"], "data:application/octet-stream;base64,aGk=");
    assert_eq!(binary["method"], "PATCH");
    assert_eq!(binary["args"], json!({"q": ["1"]}));

    let anything = get(addr, "/anything", &[]).await.json();
    assert_eq!(anything["data"], "");
    assert_eq!(anything["json"], json!(null));

    let bad = request(
        addr,
        "POST",
        "/post",
        &[("content-type", "application/json")],
        "{",
    )
    .await;
    assert_eq!(bad.status, 400);
    assert_eq!(bad.json()["status_code"], 400);
}

#[tokio::test]
async fn status_answers_the_asked_code() {
    let server = httpbin().await;
    let addr = server.local_addr();
    let teapot = get(addr, "/status/418", &[]).await;
    assert_eq!(teapot.status, 418);
    assert_eq!(teapot.body, "I'm a teapot!");
    for code in [200u16, 204, 404, 500, 503] {
        assert_eq!(
            request(addr, "POST", &format!("/status/{code}"), &[], "")
                .await
                .status,
            code
        );
    }
    let redirect = get(addr, "/status/302", &[]).await;
    assert_eq!(redirect.header("location"), Some("/redirect/1"));
    let weighted = get(addr, "/status/503:1,200:0", &[]).await;
    assert_eq!(weighted.status, 503);
    let bad = get(addr, "/status/abc", &[]).await;
    assert_eq!(bad.status, 400);
    assert_eq!(bad.json()["error"], "Bad Request");
    assert!(
        bad.json()["detail"]
            .as_str()
            .unwrap()
            .contains("invalid status code")
    );
    let not_found = get(addr, "/nope", &[]).await;
    assert_eq!(not_found.status, 404);
    assert_eq!(
        not_found.body,
        "{\n  \"status_code\": 404,\n  \"error\": \"Not Found\"\n}\n"
    );
    assert_eq!(request(addr, "POST", "/get", &[], "").await.status, 405);
    assert_eq!(get(addr, "/post", &[]).await.status, 405);
}

#[tokio::test]
async fn delay_waits_and_is_capped() {
    let server = httpbin().await;
    let addr = server.local_addr();
    let started = Instant::now();
    let got = get(addr, "/delay/0.2", &[]).await;
    assert_eq!(got.status, 200);
    assert!(started.elapsed() >= Duration::from_millis(200));
    assert_eq!(got.json()["url"], format!("http://{addr}/delay/0.2"));
    assert_eq!(get(addr, "/delay/100ms", &[]).await.status, 200);
    let capped = get(addr, "/delay/11", &[]).await;
    assert_eq!(capped.status, 400, "over go-httpbin's 10 s maximum");
    assert!(
        capped.json()["detail"]
            .as_str()
            .unwrap()
            .starts_with("invalid duration")
    );
    assert_eq!(get(addr, "/delay/x", &[]).await.status, 400);
}
