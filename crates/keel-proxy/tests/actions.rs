//! End-to-end route actions: header operations, rewrites, redirects, direct responses and
//! CORS, as Istio (through Envoy) applies them.

#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)] // test code: fail loudly

mod support;

use support::*;

fn vs(host: &str, http: &str) -> String {
    format!(
        "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {{name: vs-{}, namespace: default}}\nspec:\n  hosts: [{host}]\n  gateways: [gw]\n  http:\n{http}---\n",
        host.replace('.', "-")
    )
}

async fn start(up: &Upstream, more: &[&Upstream], vses: &[String]) -> Proxy {
    Proxy::start(|port| {
        let mut parts = vec![gateway("gw", port, &["*"]), se("echo.test", &[up])];
        for (i, u) in more.iter().enumerate() {
            parts.push(se(&format!("echo{}.test", i + 2), &[u]));
        }
        parts.extend(vses.iter().cloned());
        parts.concat()
    })
    .await
}

#[tokio::test]
async fn route_header_operations() {
    let up = echo("echo").await;
    let p = start(
        &up,
        &[],
        &[vs(
            "h.test",
            "  - route: [{destination: {host: echo.test}}]
    headers:
      request:
        set: {x-set: new}
        add: {x-add: proxy}
        remove: [x-remove]
      response:
        set: {x-resp-set: new}
        add: {x-resp-add: proxy}
        remove: [x-resp-remove]
",
        )],
    )
    .await;
    let r = send(
        p.port,
        req("GET", "h.test", "/")
            .header("x-set", "old")
            .header("x-add", "client")
            .header("x-remove", "1")
            .header("x-keep", "1")
            .header("x-echo-response-header", "x-resp-set=old")
            .header("x-echo-response-header", "x-resp-add=upstream")
            .header("x-echo-response-header", "x-resp-remove=1")
            .body(empty())
            .unwrap(),
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.error());
    assert_eq!(r.seen("x-set"), ["new"]);
    assert_eq!(r.seen("x-add"), ["client", "proxy"]);
    assert!(r.seen("x-remove").is_empty());
    assert_eq!(r.seen("x-keep"), ["1"]);
    // What the proxy adds on its own, as Envoy does.
    assert_eq!(r.seen("x-forwarded-proto"), ["http"]);
    assert_eq!(r.seen("x-request-id")[0].len(), 36);
    assert_eq!(r.header_all("x-resp-set"), ["new"]);
    assert_eq!(r.header_all("x-resp-add"), ["upstream", "proxy"]);
    assert!(r.header("x-resp-remove").is_none());
}

#[tokio::test]
async fn host_in_header_operations_rewrites_the_authority() {
    let up = echo("echo").await;
    let p = start(
        &up,
        &[],
        &[vs(
            "auth.test",
            "  - match: [{uri: {prefix: /route}}]
    headers: {request: {set: {host: route.example}}}
    route: [{destination: {host: echo.test}}]
  - match: [{uri: {prefix: /dest}}]
    route:
    - destination: {host: echo.test}
      headers: {request: {set: {\":authority\": dest.example}}}
  - match: [{uri: {prefix: /both}}]
    rewrite: {authority: rewrite.example}
    route:
    - destination: {host: echo.test}
      headers: {request: {set: {host: dest.example}}}
",
        )],
    )
    .await;
    let host =
        |path: &'static str| async move { fetch(p.port, "auth.test", path).await.seen("host") };
    assert_eq!(host("/route").await, ["route.example"]);
    assert_eq!(host("/dest").await, ["dest.example"]);
    // The route's rewrite wins over the destination's.
    assert_eq!(host("/both").await, ["rewrite.example"]);
}

#[tokio::test]
async fn per_destination_header_operations() {
    let a = echo("a").await;
    let b = echo("b").await;
    let p = start(
        &a,
        &[&b],
        &[vs(
            "d.test",
            "  - route:
    - destination: {host: echo.test}
      weight: 50
      headers:
        request: {set: {x-to: a}}
        response: {set: {x-from: a}, remove: [x-drop]}
    - destination: {host: echo2.test}
      weight: 50
      headers:
        request: {set: {x-to: b}}
        response: {add: {x-from: b}}
",
        )],
    )
    .await;
    let mut c = H1::connect(p.port).await;
    let mut seen = std::collections::BTreeSet::new();
    for _ in 0..40 {
        let r = c
            .send(
                req("GET", "d.test", "/")
                    .header("x-echo-response-header", "x-drop=1")
                    .body(empty())
                    .unwrap(),
            )
            .await;
        let who = r.upstream().to_string();
        assert_eq!(r.seen("x-to"), [who.as_str()]);
        assert_eq!(r.header_all("x-from"), [who.as_str()]);
        // Only destination `a` removes it.
        assert_eq!(r.header("x-drop").is_some(), who == "b");
        seen.insert(who);
    }
    assert_eq!(seen.len(), 2, "both destinations served: {seen:?}");
}

#[tokio::test]
async fn rewrites_uri_authority_and_regex() {
    let up = echo("echo").await;
    let p = start(
        &up,
        &[],
        &[vs(
            "rw.test",
            "  - match: [{uri: {prefix: /api/v1}}]
    rewrite: {uri: /v2}
    route: [{destination: {host: echo.test}}]
  - match: [{uri: {exact: /old}}]
    rewrite: {uri: /new, authority: new.example.com}
    route: [{destination: {host: echo.test}}]
  - match: [{uri: {prefix: /svc/}}]
    rewrite:
      uriRegexRewrite: {match: \"^/svc/([^/]+)/(.*)$\", rewrite: \"/\\\\2/\\\\1\"}
    route: [{destination: {host: echo.test}}]
  - match: [{uri: {regex: \"/re/[a-z]+\"}}]
    rewrite: {uri: /from-regex}
    route: [{destination: {host: echo.test}}]
  - match: [{uri: {prefix: /Case}, ignoreUriCase: true}]
    rewrite: {uri: /lower}
    route: [{destination: {host: echo.test}}]
  - match: [{headers: {x-no-uri: {exact: \"1\"}}}]
    rewrite: {uri: /base/}
    route: [{destination: {host: echo.test}}]
  - route: [{destination: {host: echo.test}}]
",
        )],
    )
    .await;
    let path_of = |r: &Resp| {
        let j = r.json();
        let q = j["query"]
            .as_str()
            .map(|q| format!("?{q}"))
            .unwrap_or_default();
        format!("{}{q}", j["path"].as_str().unwrap_or(""))
    };
    // A prefix match: the matched prefix is replaced, the rest and the query kept.
    let r = fetch(p.port, "rw.test", "/api/v1/items?x=1").await;
    assert_eq!(path_of(&r), "/v2/items?x=1");
    assert_eq!(r.seen("host"), ["rw.test"]);
    // An exact match: the whole path; the authority too.
    let r = fetch(p.port, "rw.test", "/old").await;
    assert_eq!(path_of(&r), "/new");
    assert_eq!(r.seen("host"), ["new.example.com"]);
    // uriRegexRewrite with RE2-style `\2/\1` groups.
    let r = fetch(p.port, "rw.test", "/svc/users/list?all").await;
    assert_eq!(path_of(&r), "/list/users?all");
    // A regex match covered the whole path, so the whole path is replaced.
    assert_eq!(
        path_of(&fetch(p.port, "rw.test", "/re/abc").await),
        "/from-regex"
    );
    // ignoreUriCase: the prefix matched case-insensitively is replaced.
    assert_eq!(
        path_of(&fetch(p.port, "rw.test", "/CASE/x").await),
        "/lower/x"
    );
    // No uri match: Istio gives Envoy the prefix `/`, so only the leading `/` is replaced.
    let r = send(
        p.port,
        req("GET", "rw.test", "/a/b")
            .header("x-no-uri", "1")
            .body(empty())
            .unwrap(),
    )
    .await;
    assert_eq!(path_of(&r), "/base/a/b");
    // Untouched otherwise.
    assert_eq!(
        path_of(&fetch(p.port, "rw.test", "/plain?q=1").await),
        "/plain?q=1"
    );
}

#[tokio::test]
async fn redirects() {
    let up = echo("echo").await;
    let p = start(
        &up,
        &[],
        &[vs(
            "r.test",
            "  - match: [{uri: {exact: /uri}}]
    redirect: {uri: /new/place}
  - match: [{uri: {exact: /authority}}]
    redirect: {authority: other.example.com, redirectCode: 302}
  - match: [{uri: {exact: /port}}]
    redirect: {port: 8443}
  - match: [{uri: {exact: /derive}}]
    redirect: {scheme: https, derivePort: FROM_REQUEST_PORT, redirectCode: 308}
  - match: [{uri: {exact: /scheme}}]
    redirect: {scheme: https, redirectCode: 307}
  - match: [{uri: {exact: /all}}]
    redirect: {uri: /x, authority: a.example.com, port: 9000, scheme: https, redirectCode: 303}
",
        )],
    )
    .await;
    let port = p.port;
    let go = |host: String, path: &'static str| async move {
        let r = fetch(port, &host, path).await;
        (
            r.status.as_u16(),
            r.header("location").unwrap_or("").to_string(),
        )
    };
    let host = format!("r.test:{port}");
    assert_eq!(
        go(host.clone(), "/uri").await,
        (301, format!("http://r.test:{port}/new/place"))
    );
    assert_eq!(
        go("r.test".into(), "/authority").await,
        (302, "http://other.example.com/authority".into())
    );
    assert_eq!(
        go(host.clone(), "/port").await,
        (301, "http://r.test:8443/port".into())
    );
    assert_eq!(
        go(host.clone(), "/derive").await,
        (308, format!("https://r.test:{port}/derive"))
    );
    assert_eq!(
        go("r.test".into(), "/scheme").await,
        (307, "https://r.test/scheme".into())
    );
    // Envoy keeps a non-default request port when only the scheme changes...
    assert_eq!(
        go(host.clone(), "/scheme").await,
        (307, format!("https://r.test:{port}/scheme"))
    );
    // ...and drops the old scheme's default port.
    assert_eq!(
        go("r.test:80".into(), "/scheme").await,
        (307, "https://r.test/scheme".into())
    );
    assert_eq!(
        go(host.clone(), "/all").await,
        (303, "https://a.example.com:9000/x".into())
    );
    // The query string is kept.
    let r = fetch(port, "r.test", "/uri?a=1").await;
    assert_eq!(r.header("location"), Some("http://r.test/new/place?a=1"));
    // Nothing reached the upstream.
    assert_eq!(up.connections(), 0);
}

#[tokio::test]
async fn direct_responses() {
    let up = echo("echo").await;
    let p = start(
        &up,
        &[],
        &[vs(
            "dr.test",
            "  - match: [{uri: {exact: /maintenance}}]
    directResponse: {status: 503, body: {string: \"down for maintenance\"}}
  - match: [{uri: {exact: /bytes}}]
    directResponse: {status: 200, body: {bytes: aGVsbG8gYnl0ZXM=}}
  - match: [{uri: {exact: /empty}}]
    directResponse: {status: 204}
  - match: [{uri: {exact: /teapot}}]
    directResponse: {status: 418, body: {string: short and stout}}
    headers: {response: {set: {x-route: teapot}}}
",
        )],
    )
    .await;
    let r = fetch(p.port, "dr.test", "/maintenance").await;
    assert_eq!(
        (r.status.as_u16(), r.text().as_str()),
        (503, "down for maintenance")
    );
    assert!(r.header("x-keel-error").is_none(), "not a proxy error");
    let r = fetch(p.port, "dr.test", "/bytes").await;
    assert_eq!((r.status.as_u16(), r.text().as_str()), (200, "hello bytes"));
    let r = fetch(p.port, "dr.test", "/empty").await;
    assert_eq!((r.status.as_u16(), r.body.len()), (204, 0));
    let r = fetch(p.port, "dr.test", "/teapot").await;
    assert_eq!(r.status, 418);
    assert_eq!(r.text(), "short and stout");
    assert_eq!(r.header("x-route"), Some("teapot"));
    assert_eq!(up.connections(), 0);
}

#[tokio::test]
async fn cors_preflight_and_simple_requests() {
    let up = echo("echo").await;
    let p = start(
        &up,
        &[],
        &[vs(
            "cors.test",
            "  - route: [{destination: {host: echo.test}}]
    corsPolicy:
      allowOrigins:
      - exact: https://app.example.com
      - prefix: https://dev.
      - regex: \"https://[a-z]+\\\\.corp\\\\.example\"
      allowMethods: [GET, POST]
      allowHeaders: [x-custom, authorization]
      exposeHeaders: [x-upstream]
      maxAge: 24h
      allowCredentials: true
",
        )],
    )
    .await;
    let preflight = |origin: &'static str| {
        send(
            p.port,
            req("OPTIONS", "cors.test", "/api")
                .header("origin", origin)
                .header("access-control-request-method", "POST")
                .body(empty())
                .unwrap(),
        )
    };
    let r = preflight("https://app.example.com").await;
    assert_eq!(r.status, 200);
    assert_eq!(
        r.header("access-control-allow-origin"),
        Some("https://app.example.com")
    );
    assert_eq!(r.header("access-control-allow-methods"), Some("GET,POST"));
    assert_eq!(
        r.header("access-control-allow-headers"),
        Some("x-custom,authorization")
    );
    assert_eq!(r.header("access-control-max-age"), Some("86400"));
    assert_eq!(r.header("access-control-allow-credentials"), Some("true"));
    // Answered by the proxy itself.
    assert!(r.header("x-upstream").is_none());
    for origin in ["https://dev.example.com", "https://team.corp.example"] {
        let r = preflight(origin).await;
        assert_eq!(r.header("access-control-allow-origin"), Some(origin));
    }
    // A preflight from an origin not allowed goes upstream and gets no CORS headers.
    let r = preflight("https://evil.example").await;
    assert_eq!(r.upstream(), "echo");
    assert!(r.header("access-control-allow-origin").is_none());

    let simple = |origin: &'static str| {
        send(
            p.port,
            req("GET", "cors.test", "/api")
                .header("origin", origin)
                .body(empty())
                .unwrap(),
        )
    };
    let r = simple("https://app.example.com").await;
    assert_eq!(r.upstream(), "echo");
    assert_eq!(
        r.header("access-control-allow-origin"),
        Some("https://app.example.com")
    );
    assert_eq!(
        r.header("access-control-expose-headers"),
        Some("x-upstream")
    );
    assert_eq!(r.header("access-control-allow-credentials"), Some("true"));
    let r = simple("https://evil.example").await;
    assert_eq!(r.upstream(), "echo");
    assert!(r.header("access-control-allow-origin").is_none());
    // No Origin, no CORS.
    let r = fetch(p.port, "cors.test", "/api").await;
    assert!(r.header("access-control-allow-origin").is_none());
}
