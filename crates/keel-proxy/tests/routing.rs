//! End-to-end routing through keel-proxy in gateway mode: virtual hosts, gateway binding,
//! request matching, weights, subsets and destination ports, delegation.

#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)] // test code: fail loudly

mod support;

use support::*;

/// One route forwarding to `echo.test` and naming itself in `x-route`.
fn route(name: &str, matches: &str) -> String {
    format!(
        "  - name: {name}\n    match: {matches}\n    route: [{{destination: {{host: echo.test}}}}]\n    headers: {{response: {{set: {{x-route: {name}}}}}}}\n"
    )
}

fn catch_all(name: &str) -> String {
    format!(
        "  - name: {name}\n    route: [{{destination: {{host: echo.test}}}}]\n    headers: {{response: {{set: {{x-route: {name}}}}}}}\n"
    )
}

fn vs(name: &str, hosts: &str, gateways: &str, routes: &[String]) -> String {
    format!(
        "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {{name: {name}, namespace: default}}\nspec:\n  hosts: {hosts}\n  gateways: {gateways}\n  http:\n{}---\n",
        routes.concat()
    )
}

async fn route_of(port: u16, req: http::Request<TestBody>) -> String {
    let r = send(port, req).await;
    assert!(
        r.status.is_success(),
        "status {} error {:?} body {}",
        r.status,
        r.error(),
        r.text()
    );
    r.header("x-route").unwrap_or("").to_string()
}

#[tokio::test]
async fn hosts_exact_wildcard_short_name_and_any() {
    let up = echo("echo").await;
    let p = Proxy::start(|port| {
        [
            gateway("gw", port, &["*"]),
            se("echo.test", &[&up]),
            vs("exact", "[api.example.com]", "[gw]", &[catch_all("exact")]),
            vs("wild", "[\"*.example.com\"]", "[gw]", &[catch_all("wild")]),
            // A short name is the service in the VirtualService's namespace.
            vs("short", "[reviews]", "[gw]", &[catch_all("short")]),
            vs("any", "[\"*\"]", "[gw]", &[catch_all("any")]),
        ]
        .concat()
    })
    .await;
    let port = p.port;
    let at = |host: &str| route_of(port, get(host, "/"));
    assert_eq!(at("api.example.com").await, "exact");
    // Case-insensitive, the port ignored.
    assert_eq!(at(&format!("API.Example.COM:{port}")).await, "exact");
    assert_eq!(at("www.example.com").await, "wild");
    assert_eq!(at("a.b.example.com").await, "wild");
    assert_eq!(at("reviews.default.svc.cluster.local").await, "short");
    // `*.example.com` does not cover the bare domain; `*` takes everything else.
    assert_eq!(at("example.com").await, "any");
    assert_eq!(at("other.org").await, "any");
    // Istio resolves `reviews` to its FQDN; gateways add no short-name aliases.
    assert_eq!(at("reviews").await, "any");
}

#[tokio::test]
async fn gateway_binding_by_name_namespace_and_match() {
    let up = echo("echo").await;
    let p2 = free_port();
    let p = Proxy::start(|port| {
        let other = gateway("gw-edge", p2, &["*"]).replace("namespace: default", "namespace: edge");
        [
            gateway("gw", port, &["*"]),
            other,
            se("echo.test", &[&up]),
            // Short gateway name: `default/gw`; `edge/gw-edge` from another namespace.
            vs("short", "[a.test]", "[gw]", &[catch_all("a-short")]),
            vs("cross", "[b.test]", "[edge/gw-edge]", &[catch_all("b-edge")]),
            // `name.ns.svc.cluster.local` is the legacy spelling of `ns/name`.
            vs("legacy", "[f.test]", "[gw-edge.edge.svc.cluster.local]", &[catch_all("f-legacy")]),
            // No gateways means `mesh`: not served by a gateway at all.
            "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: meshonly, namespace: default}\nspec:\n  hosts: [c.test]\n  http:\n  - route: [{destination: {host: echo.test}}]\n---\n".to_string(),
            // Match-level gateways pick routes per gateway.
            vs(
                "both",
                "[d.test]",
                "[gw, edge/gw-edge]",
                &[
                    route("d-on-gw", "[{gateways: [gw]}]"),
                    route("d-on-edge", "[{gateways: [edge/gw-edge], uri: {prefix: /}}]"),
                ],
            ),
        ]
        .concat()
    })
    .await;
    assert_eq!(route_of(p.port, get("a.test", "/")).await, "a-short");
    assert_eq!(fetch(p2, "a.test", "/").await.status, 404);
    assert_eq!(route_of(p2, get("b.test", "/")).await, "b-edge");
    assert_eq!(fetch(p.port, "b.test", "/").await.status, 404);
    assert_eq!(route_of(p2, get("f.test", "/")).await, "f-legacy");
    assert_eq!(fetch(p.port, "f.test", "/").await.status, 404);
    assert_eq!(fetch(p.port, "c.test", "/").await.status, 404);
    assert_eq!(fetch(p2, "c.test", "/").await.status, 404);
    assert_eq!(route_of(p.port, get("d.test", "/")).await, "d-on-gw");
    assert_eq!(route_of(p2, get("d.test", "/")).await, "d-on-edge");
}

#[tokio::test]
async fn first_matching_route_wins_in_order() {
    let up = echo("echo").await;
    let p = Proxy::start(|port| {
        [
            gateway("gw", port, &["*"]),
            se("echo.test", &[&up]),
            vs(
                "ordered",
                "[order.test]",
                "[gw]",
                &[
                    route("special", "[{uri: {prefix: /api/special}}]"),
                    route("api", "[{uri: {prefix: /api}}]"),
                    // Shadowed by `api`: never chosen.
                    route("api-v2", "[{uri: {prefix: /api/v2}}]"),
                    catch_all("rest"),
                ],
            ),
        ]
        .concat()
    })
    .await;
    let at = |path: &'static str| route_of(p.port, get("order.test", path));
    assert_eq!(at("/api/special/x").await, "special");
    assert_eq!(at("/api/v2/x").await, "api");
    assert_eq!(at("/apix").await, "api");
    assert_eq!(at("/other").await, "rest");
}

#[tokio::test]
async fn uri_scheme_method_authority_port_and_case() {
    let up = echo("echo").await;
    let p2 = free_port();
    let p = Proxy::start(|port| {
        let g2 = gateway("gw2", p2, &["*"]);
        [
            gateway("gw", port, &["*"]),
            g2,
            se("echo.test", &[&up]),
            vs(
                "m",
                "[m.test]",
                "[gw, gw2]",
                &[
                    route("exact", "[{uri: {exact: /exact}}]"),
                    route("regex", "[{uri: {regex: \"/re/[0-9]+\"}}]"),
                    route(
                        "https-only",
                        "[{uri: {prefix: /s}, scheme: {exact: https}}]",
                    ),
                    route("http", "[{uri: {prefix: /s}, scheme: {exact: http}}]"),
                    route("post", "[{uri: {prefix: /m}, method: {exact: POST}}]"),
                    route(
                        "get-or-head",
                        "[{uri: {prefix: /m}, method: {regex: \"GET|HEAD\"}}]",
                    ),
                    route(
                        "alt-authority",
                        "[{uri: {prefix: /a}, authority: {prefix: alt.}}]",
                    ),
                    route(
                        &format!("port-{p2}"),
                        &format!("[{{uri: {{prefix: /p}}, port: {p2}}}]"),
                    ),
                    route("case", "[{uri: {prefix: /CaSe}, ignoreUriCase: true}]"),
                    route("exact-case", "[{uri: {exact: /Upper}}]"),
                    route("or-second", "[{uri: {exact: /or1}}, {uri: {exact: /or2}}]"),
                    route("prefix", "[{uri: {prefix: /}}]"),
                ],
            ),
        ]
        .concat()
    })
    .await;
    let port = p.port;
    let at = |path: &str| route_of(port, get("m.test", path));
    assert_eq!(at("/exact").await, "exact");
    assert_eq!(at("/exact/more").await, "prefix");
    assert_eq!(at("/re/123").await, "regex");
    // Regexes match the whole path.
    assert_eq!(at("/re/123x").await, "prefix");
    assert_eq!(at("/s").await, "http");
    assert_eq!(at("/m").await, "get-or-head");
    assert_eq!(
        route_of(port, req("POST", "m.test", "/m").body(full("x")).unwrap()).await,
        "post"
    );
    assert_eq!(
        route_of(port, req("PUT", "m.test", "/m").body(empty()).unwrap()).await,
        "prefix"
    );
    // The authority `m.test` does not start with `alt.` (see `authority_match`).
    assert_eq!(at("/a").await, "prefix");
    // `port` is the gateway port the request came in on.
    assert_eq!(at("/p").await, "prefix");
    assert_eq!(
        route_of(p2, get("m.test", "/p")).await,
        format!("port-{p2}")
    );
    assert_eq!(at("/case/x").await, "case");
    assert_eq!(at("/CASE").await, "case");
    // Without ignoreUriCase the case counts, also for lower-case patterns (`/s`, `/m`).
    assert_eq!(at("/Upper").await, "exact-case");
    assert_eq!(at("/upper").await, "prefix");
    assert_eq!(at("/S").await, "prefix");
    assert_eq!(at("/M").await, "prefix");
    assert_eq!(at("/or1").await, "or-second");
    assert_eq!(at("/or2").await, "or-second");
}

#[tokio::test]
async fn authority_match() {
    let up = echo("echo").await;
    let p = Proxy::start(|port| {
        [
            gateway("gw", port, &["*"]),
            se("echo.test", &[&up]),
            vs(
                "auth",
                "[\"*.auth.test\"]",
                "[gw]",
                &[
                    route("alt", "[{authority: {prefix: alt.}}]"),
                    route("exact", "[{authority: {exact: main.auth.test}}]"),
                    route(
                        "regex",
                        "[{authority: {regex: \"r[0-9]\\\\.auth\\\\.test\"}}]",
                    ),
                    catch_all("other"),
                ],
            ),
        ]
        .concat()
    })
    .await;
    let at = |host: &'static str| route_of(p.port, get(host, "/"));
    assert_eq!(at("alt.auth.test").await, "alt");
    assert_eq!(at("main.auth.test").await, "exact");
    assert_eq!(at("r7.auth.test").await, "regex");
    assert_eq!(at("x.auth.test").await, "other");
}

#[tokio::test]
async fn headers_without_headers_and_query_params() {
    let up = echo("echo").await;
    let p = Proxy::start(|port| {
        [
            gateway("gw", port, &["*"]),
            se("echo.test", &[&up]),
            vs(
                "h",
                "[h.test]",
                "[gw]",
                &[
                    route("h-exact", "[{headers: {x-exact: {exact: \"yes\"}}}]"),
                    route("h-prefix", "[{headers: {x-pre: {prefix: ab}}}]"),
                    route("h-regex", "[{headers: {x-re: {regex: \"v[0-9]+\"}}}]"),
                    route("h-present", "[{headers: {x-present: {}}}]"),
                    route(
                        "two-headers",
                        "[{headers: {x-a: {exact: \"1\"}, x-b: {exact: \"2\"}}}]",
                    ),
                    route("q-exact", "[{queryParams: {user: {exact: jason}}}]"),
                    route("q-regex", "[{queryParams: {v: {regex: \"[0-9]+\"}}}]"),
                    route(
                        "without",
                        "[{uri: {prefix: /w}, withoutHeaders: {x-block: {}}}]",
                    ),
                    route(
                        "not-prod",
                        "[{uri: {prefix: /env}, withoutHeaders: {x-env: {exact: prod}}}]",
                    ),
                    catch_all("none"),
                ],
            ),
        ]
        .concat()
    })
    .await;
    let with_on = |path: &'static str, k: &'static str, v: &'static str| {
        route_of(
            p.port,
            req("GET", "h.test", path)
                .header(k, v)
                .body(empty())
                .unwrap(),
        )
    };
    let with = |k: &'static str, v: &'static str| {
        route_of(
            p.port,
            req("GET", "h.test", "/")
                .header(k, v)
                .body(empty())
                .unwrap(),
        )
    };
    assert_eq!(with("x-exact", "yes").await, "h-exact");
    assert_eq!(with("x-exact", "yes!").await, "none");
    assert_eq!(with("x-pre", "abc").await, "h-prefix");
    assert_eq!(with("x-pre", "xab").await, "none");
    assert_eq!(with("x-re", "v12").await, "h-regex");
    assert_eq!(with("x-re", "v12a").await, "none");
    assert_eq!(with("x-present", "").await, "h-present");
    assert_eq!(with("x-a", "1").await, "none");
    assert_eq!(
        route_of(
            p.port,
            req("GET", "h.test", "/")
                .header("x-a", "1")
                .header("x-b", "2")
                .body(empty())
                .unwrap()
        )
        .await,
        "two-headers"
    );
    let at = |path: &'static str| route_of(p.port, get("h.test", path));
    assert_eq!(at("/?user=jason").await, "q-exact");
    assert_eq!(at("/?a=1&user=jason&b").await, "q-exact");
    assert_eq!(at("/?user=jasonx").await, "none");
    assert_eq!(at("/?v=42").await, "q-regex");
    assert_eq!(at("/?v=4x").await, "none");
    assert_eq!(at("/w").await, "without");
    // withoutHeaders with a value: absent or different values match.
    assert_eq!(at("/env").await, "not-prod");
    assert_eq!(with_on("/env", "x-env", "dev").await, "not-prod");
    assert_eq!(with_on("/env", "x-env", "prod").await, "none");
    assert_eq!(
        route_of(
            p.port,
            req("GET", "h.test", "/w")
                .header("x-block", "1")
                .body(empty())
                .unwrap()
        )
        .await,
        "none"
    );
}

#[tokio::test]
async fn weights_split_traffic_80_20() {
    let a = echo("a").await;
    let b = echo("b").await;
    let p = Proxy::start(|port| {
        [
            gateway("gw", port, &["*"]),
            se("a.svc.test", &[&a]),
            se("b.svc.test", &[&b]),
            "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: split}\nspec:\n  hosts: [split.test]\n  gateways: [gw]\n  http:\n  - route:\n    - {destination: {host: a.svc.test}, weight: 80}\n    - {destination: {host: b.svc.test}, weight: 20}\n---\n".to_string(),
        ]
        .concat()
    })
    .await;
    let mut c = H1::connect(p.port).await;
    let n = 2000;
    let mut to_a = 0;
    for _ in 0..n {
        let r = c.send(get("split.test", "/")).await;
        match r.upstream() {
            "a" => to_a += 1,
            "b" => {}
            other => panic!("unexpected upstream {other:?}: {} {}", r.status, r.error()),
        }
    }
    let share = f64::from(to_a) / f64::from(n);
    assert!(
        (0.76..=0.84).contains(&share),
        "a got {to_a} of {n} ({share:.3}), want 80 % ± 4 %"
    );
}

#[tokio::test]
async fn subsets_select_labelled_endpoints() {
    let v1 = echo("v1").await;
    let v2 = echo("v2").await;
    let p = Proxy::start(|port| {
        [
            gateway("gw", port, &["*"]),
            service_entry(
                "ratings.test",
                "HTTP",
                &[
                    Ep { upstream: &v1, labels: &[("version", "v1")] },
                    Ep { upstream: &v2, labels: &[("version", "v2")] },
                ],
            ),
            "apiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {name: ratings}\nspec:\n  host: ratings.test\n  subsets:\n  - {name: v1, labels: {version: v1}}\n  - {name: v2, labels: {version: v2}}\n---\n".to_string(),
            "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: ratings}\nspec:\n  hosts: [ratings.test]\n  gateways: [gw]\n  http:\n  - match: [{uri: {prefix: /v1}}]\n    route: [{destination: {host: ratings.test, subset: v1}}]\n  - match: [{uri: {prefix: /v2}}]\n    route: [{destination: {host: ratings.test, subset: v2}}]\n  - route: [{destination: {host: ratings.test}}]\n---\n".to_string(),
        ]
        .concat()
    })
    .await;
    let mut c = H1::connect(p.port).await;
    for _ in 0..6 {
        assert_eq!(c.send(get("ratings.test", "/v1")).await.upstream(), "v1");
        assert_eq!(c.send(get("ratings.test", "/v2")).await.upstream(), "v2");
    }
    // Without a subset every endpoint serves. (Ties between idle endpoints break at random:
    // 6 requests all went to one endpoint 1 time in 32; 32 requests make that 1 in 2^31.)
    let mut seen = std::collections::BTreeSet::new();
    for _ in 0..32 {
        seen.insert(
            c.send(get("ratings.test", "/"))
                .await
                .upstream()
                .to_string(),
        );
    }
    assert_eq!(seen.len(), 2, "{seen:?}");
}

#[tokio::test]
async fn destination_port_selects_service_port() {
    let web = echo("web").await;
    let admin = echo("admin").await;
    let p = Proxy::start(|port| {
        let se = format!(
            "apiVersion: networking.istio.io/v1\nkind: ServiceEntry\nmetadata: {{name: multi}}\nspec:\n  hosts: [multi.test]\n  location: MESH_INTERNAL\n  resolution: STATIC\n  ports:\n  - {{number: 80, name: http, protocol: HTTP}}\n  - {{number: 9000, name: http-admin, protocol: HTTP}}\n  endpoints:\n  - {{address: 127.0.0.1, ports: {{http: {}, http-admin: {}}}}}\n---\n",
            web.port(),
            admin.port()
        );
        [
            gateway("gw", port, &["*"]),
            se,
            "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: multi}\nspec:\n  hosts: [multi.test]\n  gateways: [gw]\n  http:\n  - match: [{uri: {prefix: /admin}}]\n    route: [{destination: {host: multi.test, port: {number: 9000}}}]\n  - route: [{destination: {host: multi.test, port: {number: 80}}}]\n---\n".to_string(),
        ]
        .concat()
    })
    .await;
    assert_eq!(
        fetch(p.port, "multi.test", "/admin").await.upstream(),
        "admin"
    );
    assert_eq!(fetch(p.port, "multi.test", "/").await.upstream(), "web");
}

#[tokio::test]
async fn delegate_virtual_services() {
    let main = echo("main").await;
    let cart = echo("cart").await;
    let items = echo("items").await;
    let p = Proxy::start(|port| {
        [
            gateway("gw", port, &["*"]),
            se("main.test", &[&main]),
            se("cart.test", &[&cart]),
            se("items.test", &[&items]),
            "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: root}\nspec:\n  hosts: [shop.test]\n  gateways: [gw]\n  http:\n  - match: [{uri: {prefix: /cart}}]\n    delegate: {name: cart, namespace: team}\n    headers: {response: {set: {x-root: \"yes\"}}}\n  - route: [{destination: {host: main.test}}]\n---\n".to_string(),
            // A delegate: no hosts, no gateways; its matches narrow the root's.
            "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: cart, namespace: team}\nspec:\n  http:\n  - match: [{uri: {prefix: /cart/items}}]\n    route: [{destination: {host: items.test}}]\n    headers: {response: {set: {x-delegate: items}}}\n  - match: [{uri: {prefix: /elsewhere}}]\n    route: [{destination: {host: items.test}}]\n  - route: [{destination: {host: cart.test}}]\n---\n".to_string(),
        ]
        .concat()
    })
    .await;
    let r = fetch(p.port, "shop.test", "/cart/items/1").await;
    assert_eq!(r.upstream(), "items");
    assert_eq!(r.header("x-delegate"), Some("items"));
    // The delegate's own headers replace the root's.
    assert_eq!(r.header("x-root"), None);
    let r = fetch(p.port, "shop.test", "/cart/view").await;
    assert_eq!(r.upstream(), "cart");
    // Without headers of its own, a delegate route takes the root route's.
    assert_eq!(r.header("x-root"), Some("yes"));
    // A delegate route outside the root's match is dropped (Istio: conflicting match).
    assert_eq!(
        fetch(p.port, "shop.test", "/elsewhere").await.upstream(),
        "main"
    );
    assert_eq!(fetch(p.port, "shop.test", "/").await.upstream(), "main");
}

#[tokio::test]
async fn gateway_server_hosts_limit_what_is_served() {
    let up = echo("echo").await;
    let p = Proxy::start(|port| {
        let gw = gateway(
            "gw",
            port,
            &["app.example.com", "*.wild.test", "other-ns/hidden.test"],
        );
        [
            gw,
            se("echo.test", &[&up]),
            // `*` is narrowed to the server's hosts; `hidden.test` is only exported to
            // VirtualServices in `other-ns`.
            vs("any", "[\"*\"]", "[gw]", &[catch_all("any")]),
        ]
        .concat()
    })
    .await;
    assert_eq!(route_of(p.port, get("app.example.com", "/")).await, "any");
    assert_eq!(route_of(p.port, get("x.wild.test", "/")).await, "any");
    for host in ["other.test", "hidden.test", "wild.test"] {
        let r = fetch(p.port, host, "/").await;
        assert_eq!(r.status, 404, "{host}");
        assert!(r.error().starts_with("NR "), "{host}: {}", r.error());
    }
}
