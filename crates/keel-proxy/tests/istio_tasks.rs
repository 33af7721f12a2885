//! Istio's traffic-management tasks — fault injection, request timeouts, mirroring and
//! circuit breaking — with the task's own YAML, read from `../shared/istio-samples`, through
//! a sidecar-mode snapshot compiled for the task's calling workload.
//!
//! The tasks run on Kubernetes: the platform manifests (Services, Deployments) come from the
//! samples too; what Kubernetes would add is written here: a Pod per Deployment (its template's
//! labels) and Endpoints putting each pod on an in-process upstream on 127.0.0.1. Files are
//! applied in the task's order, a later object replacing an earlier one of the same kind and
//! name, as `kubectl apply` does. Applications call the sidecar's outbound port as they would
//! after iptables redirection (a `Host` header) or through `HTTP_PROXY` (absolute-form).
//!
//! Without the samples (a fresh clone has no `../shared`), each test says why and passes.

#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)] // test code: fail loudly

#[path = "istio_tasks/mesh.rs"]
mod mesh;
mod support;

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use keel_proxy::resilience::FaultPolicy;
use mesh::*;
use support::*;

// ---------------------------------------------------------------------------------------
// Bookinfo: fault injection and request timeouts

/// Bookinfo's services with reviews v1–v3 and ratings v1 on local upstreams (reviews v2 as
/// given), after `destination-rule-all.yaml` and `virtual-service-all-v1.yaml`, the starting
/// point of both tasks.
fn bookinfo(root: &Path, reviews_v2: u16, others: &Bookinfo) -> Mesh {
    let mut mesh = Mesh::default();
    mesh.apply_files(root, &[BOOKINFO])
        .run(
            "reviews",
            &[
                ("reviews-v1", others.reviews_v1.port()),
                ("reviews-v2", reviews_v2),
                ("reviews-v3", others.reviews_v3.port()),
            ],
        )
        .run("ratings", &[("ratings-v1", others.ratings.port())])
        .apply_files(
            root,
            &[
                &format!("{NETWORKING}/destination-rule-all.yaml"),
                &format!("{NETWORKING}/virtual-service-all-v1.yaml"),
            ],
        );
    mesh
}

struct Bookinfo {
    reviews_v1: Upstream,
    reviews_v3: Upstream,
    ratings: Upstream,
}

impl Bookinfo {
    async fn start() -> Bookinfo {
        Bookinfo {
            reviews_v1: echo("reviews-v1").await,
            reviews_v3: echo("reviews-v3").await,
            ratings: echo("ratings-v1").await,
        }
    }
}

/// The fault-injection task's starting point plus `vs` (a file in the samples' networking
/// directory), seen from the reviews v2 pod — the one that calls ratings for jason.
async fn fault_task(root: &Path, vs: &str) -> (Sidecar, Bookinfo, Mesh) {
    let b = Bookinfo::start().await;
    // Never called: the test plays reviews v2's application itself.
    let reviews_v2 = closed_port();
    let mut mesh = bookinfo(root, reviews_v2, &b);
    mesh.apply_files(
        root,
        &[
            &format!("{NETWORKING}/virtual-service-reviews-test-v2.yaml"),
            &format!("{NETWORKING}/{vs}"),
        ],
    );
    (Sidecar::start(&mesh, "reviews-v2").await, b, mesh)
}

/// The ratings route for jason, as compiled into the sidecar's snapshot.
fn jason_ratings_fault(mesh: &Mesh) -> FaultPolicy {
    let (snapshot, _) = mesh.snapshot_for("reviews-v2", 15001, 15006);
    let fault = snapshot
        .listeners
        .iter()
        .filter_map(|l| l.http.as_ref())
        .flat_map(|t| &t.virtual_hosts)
        .filter(|vh| vh.domains.iter().any(|d| d.starts_with("ratings")))
        .flat_map(|vh| &vh.routes)
        .find_map(|r| r.policy.as_ref().and_then(|p| p.fault.as_ref()))
        .expect("a route with a fault for ratings");
    FaultPolicy::from_route(Some(fault))
}

/// "Injecting an HTTP delay fault": requests from jason to ratings wait 7 s; nobody else's.
#[tokio::test]
async fn fault_injection_delays_jason_by_7s() {
    let Some(root) = samples() else { return };
    let (sidecar, b, mesh) = fault_task(&root, "virtual-service-ratings-test-delay.yaml").await;
    // The sample's numbers reach the request path: 7 s for 100 % of jason's requests.
    let fault = jason_ratings_fault(&mesh);
    let (delay, share) = fault.delay.expect("a delay");
    assert_eq!(delay, Duration::from_secs(7));
    assert_eq!(share.percent(), 100.0);
    assert!(fault.abort.is_none() && fault.warnings.is_empty());

    // Everyone else is answered by ratings v1 at once (subset v1 of the second route).
    let started = Instant::now();
    let r = sidecar.get("ratings:9080", "/ratings/0", &[]).await;
    assert_eq!(
        (r.status.as_u16(), r.upstream()),
        (200, "ratings-v1"),
        "{}",
        r.error()
    );
    let r = sidecar
        .get("ratings:9080", "/ratings/0", &[("end-user", "mary")])
        .await;
    assert_eq!((r.status.as_u16(), r.upstream()), (200, "ratings-v1"));
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "others are not delayed"
    );

    // Jason's request is held: no answer after a second (the rest of the 7 s is not waited
    // for; a test that sleeps 7 s would be too slow), and it has not reached ratings.
    let before = b.ratings.connections();
    let port = sidecar.port;
    let jason = tokio::spawn(async move {
        let mut c = H1::connect(port).await;
        let r = req("GET", "ratings:9080", "/ratings/0")
            .header("end-user", "jason")
            .body(empty())
            .unwrap();
        c.tx.send_request(r).await.map(|r| r.status())
    });
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(
        !jason.is_finished(),
        "jason's request was answered within 1 s"
    );
    assert_eq!(
        b.ratings.connections(),
        before,
        "the delay comes before ratings"
    );
    jason.abort();
}

/// "Injecting an HTTP abort fault": jason gets HTTP 500 from the sidecar (flag `FI`) and
/// ratings never sees the request; everyone else gets ratings' answer.
#[tokio::test]
async fn fault_injection_aborts_jason_with_500() {
    let Some(root) = samples() else { return };
    let (sidecar, b, mesh) = fault_task(&root, "virtual-service-ratings-test-abort.yaml").await;
    let fault = jason_ratings_fault(&mesh);
    assert!(fault.delay.is_none());
    let before = b.ratings.connections();
    for _ in 0..5 {
        let r = sidecar
            .get("ratings:9080", "/ratings/0", &[("end-user", "jason")])
            .await;
        assert_eq!(r.status, 500);
        assert!(
            r.error().starts_with("FI fault filter abort: route ")
                && r.error().contains("aborts 100% of requests with HTTP 500"),
            "{}",
            r.error()
        );
    }
    assert_eq!(b.ratings.connections(), before, "aborted before ratings");
    for user in [None, Some("mary")] {
        let headers: Vec<(&str, &str)> = user.map(|u| ("end-user", u)).into_iter().collect();
        let r = sidecar.get("ratings:9080", "/ratings/0", &headers).await;
        assert_eq!(
            (r.status.as_u16(), r.upstream()),
            (200, "ratings-v1"),
            "{}",
            r.error()
        );
    }
    // The same through HTTP_PROXY (absolute-form), by the service's full name.
    let r = send(
        sidecar.port,
        http::Request::get("http://ratings.default.svc.cluster.local:9080/ratings/0")
            .header("end-user", "jason")
            .body(empty())
            .unwrap(),
    )
    .await;
    assert_eq!(r.status, 500, "{}", r.error());
    assert!(r.error().starts_with("FI "), "{}", r.error());
}

/// "Request timeouts": reviews → v2, ratings delayed 2 s (`percent: 100`, the deprecated
/// integer field), then `timeout: 0.5s` on reviews. Two sidecars, as in the cluster:
/// productpage's calls reviews v2, whose app calls ratings through its own sidecar, which
/// holds the call 2 s. productpage's sidecar answers 504 `UT` after 0.5 s. (The task's page
/// shows the result after about 1 s: productpage's own code retries the call once.)
#[tokio::test]
async fn request_timeout_cuts_slow_reviews_at_half_a_second() {
    let Some(root) = samples() else { return };
    let b = Bookinfo::start().await;
    // reviews v2's app reaches ratings through its sidecar, once that has started.
    let reviews_sidecar_port = Arc::new(std::sync::OnceLock::<u16>::new());
    let port = reviews_sidecar_port.clone();
    let ratings_calls = Arc::new(AtomicUsize::new(0));
    let calls = ratings_calls.clone();
    let reviews_v2 = app("reviews-v2", move |headers| {
        let port = port.get().copied();
        let calls = calls.clone();
        async move {
            let Some(port) = port else {
                return (503, "no sidecar yet".into());
            };
            calls.fetch_add(1, Ordering::SeqCst);
            let mut r = req("GET", "ratings:9080", "/ratings/0");
            if let Some(user) = headers.get("end-user") {
                r = r.header("end-user", user);
            }
            let ratings = send(port, r.body(empty()).unwrap()).await;
            (200, format!("reviews-v2 with {}", ratings.text()))
        }
    })
    .await;
    let task = |f: &str| format!("{TASKS}/request-timeouts/{f}");
    let mut mesh = bookinfo(&root, reviews_v2.port, &b);
    mesh.apply_files(
        &root,
        &[
            &task("snip_request_timeouts_1.yaml"),
            &task("snip_request_timeouts_2.yaml"),
        ],
    );
    let reviews = Sidecar::start(&mesh, "reviews-v2").await;
    reviews_sidecar_port.set(reviews.port).unwrap();
    let productpage = Sidecar::start(&mesh, "productpage-v1").await;

    mesh.apply_files(&root, &[&task("snip_request_timeouts_3.yaml")]);
    productpage.update(&mesh).await;
    let started = Instant::now();
    let r = productpage.get("reviews:9080", "/reviews/0", &[]).await;
    let took = started.elapsed();
    assert_eq!(r.status, 504, "{}", r.text());
    assert!(
        r.error().starts_with("UT upstream request timeout: route ")
            && r.error().contains("within 500ms"),
        "{}",
        r.error()
    );
    assert!(took >= Duration::from_millis(495), "{took:?}");
    assert!(
        took < Duration::from_secs(2),
        "cut before ratings answered: {took:?}"
    );
    assert_eq!(
        ratings_calls.load(Ordering::SeqCst),
        1,
        "reviews v2 did call ratings"
    );
    // reviews v1 and v3 were never asked: the route is reviews v2's alone.
    assert_eq!(b.reviews_v1.connections() + b.reviews_v3.connections(), 0);
}

// ---------------------------------------------------------------------------------------
// httpbin: mirroring and circuit breaking

fn mirroring(file: &str) -> String {
    format!("{TASKS}/mirroring/{file}")
}

/// The mirroring task up to its default routing policy: httpbin v1 and v2, the sleep client,
/// and a VirtualService sending everything to v1.
fn mirroring_task(root: &Path, v1: &Upstream, v2: &Upstream) -> Mesh {
    let mut mesh = Mesh::default();
    mesh.apply_files(
        root,
        &[
            &mirroring("snip_before_you_begin_1.yaml"),
            &mirroring("snip_before_you_begin_2.yaml"),
            &mirroring("snip_before_you_begin_3.yaml"),
            &mirroring("snip_before_you_begin_4.yaml"),
        ],
    )
    .run(
        "httpbin",
        &[("httpbin-v1", v1.port()), ("httpbin-v2", v2.port())],
    )
    .apply_files(
        root,
        &[&mirroring("snip_creating_a_default_routing_policy_1.yaml")],
    );
    mesh
}

/// "Mirroring": all traffic to httpbin v1; then a 100 % mirror to v2. v2 sees a copy of every
/// request while the client only ever gets v1's answers.
#[tokio::test]
async fn mirroring_copies_all_v1_traffic_to_v2() {
    let Some(root) = samples() else { return };
    let v1 = echo("httpbin-v1").await;
    let (v2, v2_count, v2_hosts) = scripted("httpbin-v2", |_| Act::Status(200)).await;
    let mut mesh = mirroring_task(&root, &v1, &v2);
    let sleep = Sidecar::start(&mesh, "sleep").await;

    // The default routing policy: v1 answers, v2 sees nothing.
    for _ in 0..3 {
        let r = sleep.get("httpbin:8000", "/headers", &[]).await;
        assert_eq!(
            (r.status.as_u16(), r.upstream()),
            (200, "httpbin-v1"),
            "{}",
            r.error()
        );
    }
    assert_eq!(v2_count.load(Ordering::SeqCst), 0);

    mesh.apply_files(&root, &[&mirroring("snip_mirroring_traffic_to_v2_1.yaml")]);
    sleep.update(&mesh).await;
    const N: usize = 10;
    for _ in 0..N {
        let r = sleep.get("httpbin:8000", "/headers", &[]).await;
        assert_eq!(
            (r.status.as_u16(), r.upstream()),
            (200, "httpbin-v1"),
            "{}",
            r.error()
        );
    }
    within("v2 to see every copy", async {
        while v2_count.load(Ordering::SeqCst) < N {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
    // The copies carry the original Host: Keel follows Istio 1.28 and later, which stopped
    // Envoy appending `-shadow` (the task's page describes the older `httpbin-shadow`).
    // `--mirror-shadow-suffix` (here the flag it sets) restores the older behaviour.
    assert!(
        v2_hosts.lock().unwrap().iter().all(|h| h == "httpbin:8000"),
        "{:?}",
        v2_hosts.lock().unwrap()
    );
    sleep
        .shared
        .shadow_host_suffix
        .store(true, Ordering::SeqCst);
    sleep.get("httpbin:8000", "/headers", &[]).await;
    within("v2 to see the shadow copy", async {
        while v2_count.load(Ordering::SeqCst) < N + 1 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
    assert_eq!(v2_hosts.lock().unwrap()[N], "httpbin-shadow:8000");
}

/// Beyond the task's page: with a `timeout` on the mirroring route, a copy that v2 never
/// answers ends when the timeout passes, as Envoy's shadow requests do, instead of holding
/// its connection and task for as long as v2 stays silent.
#[tokio::test]
async fn mirrored_copies_end_with_the_route_timeout() {
    let Some(root) = samples() else { return };
    let v1 = echo("httpbin-v1").await;
    let (v2, v2_count, _) = scripted("httpbin-v2", |_| Act::Delay(Duration::from_secs(60))).await;
    let mut mesh = mirroring_task(&root, &v1, &v2);
    mesh.apply_files(&root, &[&mirroring("snip_mirroring_traffic_to_v2_1.yaml")]);
    mesh.edit_virtual_service("httpbin", |vs| {
        vs.http[0].timeout = Some(keel_config::types::Duration::from_millis(200));
    });
    let sleep = Sidecar::start(&mesh, "sleep").await;
    let r = sleep.get("httpbin:8000", "/headers", &[]).await;
    assert_eq!((r.status.as_u16(), r.upstream()), (200, "httpbin-v1"));
    within("v2 to get the copy", async {
        while v2_count.load(Ordering::SeqCst) == 0 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
    // The copy's request on v2's endpoint, as `/clusters` shows it.
    let in_flight = || {
        let v2_endpoint = format!("::127.0.0.1:{}::active_requests::", v2.port());
        keel_proxy::admin::clusters_text(&sleep.shared)
            .lines()
            .filter(|l| l.starts_with("outbound|8000|v2|"))
            .find_map(|l| l.split_once(&v2_endpoint)?.1.parse::<u64>().ok())
    };
    assert_eq!(in_flight(), Some(1));
    within("the copy to end with the route's timeout", async {
        while in_flight() != Some(0) {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
}

/// "Circuit breaking": `maxConnections: 1`, `http1MaxPendingRequests: 1`,
/// `maxRequestsPerConnection: 1`. With httpbin busy, one request is on the connection, one
/// waits for it, and every other concurrent request fails fast with 503 `UO` (the task's
/// fortio run: most requests rejected, `upstream_rq_pending_overflow` counting them).
#[tokio::test]
async fn circuit_breaker_rejects_concurrent_requests_with_503_uo() {
    let Some(root) = samples() else { return };
    // httpbin holds every request until the gate opens, so the limits are full while the
    // other requests arrive, however slow this machine is.
    let gate = Arc::new(tokio::sync::Notify::new());
    let held = Arc::new(AtomicUsize::new(0));
    let (g, h) = (gate.clone(), held.clone());
    let httpbin = app("httpbin", move |_| {
        let (g, h) = (g.clone(), h.clone());
        async move {
            h.fetch_add(1, Ordering::SeqCst);
            g.notified().await;
            (200, "httpbin".into())
        }
    })
    .await;
    let mut mesh = Mesh::default();
    mesh.apply_files(
        &root,
        &[
            "samples/httpbin/httpbin.yaml",
            "samples/httpbin/sample-client/fortio-deploy.yaml",
            &format!("{TASKS}/circuit-breaking/snip_configuring_the_circuit_breaker_1.yaml"),
        ],
    )
    .run("httpbin", &[("httpbin", httpbin.port)]);
    let fortio = Arc::new(Sidecar::start(&mesh, "fortio-deploy").await);

    const N: usize = 20;
    let done = Arc::new(AtomicUsize::new(0));
    let requests: Vec<_> = (0..N)
        .map(|_| {
            let (fortio, done) = (fortio.clone(), done.clone());
            tokio::spawn(async move {
                let r = fortio.get("httpbin:8000", "/get", &[]).await;
                done.fetch_add(1, Ordering::SeqCst);
                r
            })
        })
        .collect();
    // The rejections come back while the admitted requests are still held.
    within("the overflowing requests to be rejected", async {
        while done.load(Ordering::SeqCst) < N - 3 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
    assert!(
        held.load(Ordering::SeqCst) <= 1,
        "one connection, one request on it"
    );
    let opener = tokio::spawn(async move {
        loop {
            gate.notify_waiters();
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    });
    let (mut ok, mut overflow) = (0, 0);
    for r in requests {
        let r = r.await.unwrap();
        match r.status.as_u16() {
            200 => ok += 1,
            503 if r.error().starts_with("UO upstream overflow") => {
                assert!(
                    r.error().contains("http1MaxPendingRequests 1"),
                    "{}",
                    r.error()
                );
                overflow += 1;
            }
            other => panic!("unexpected {other}: {}", r.error()),
        }
    }
    opener.abort();
    assert!((1..=3).contains(&ok), "{ok} succeeded");
    assert_eq!(ok + overflow, N);
    // Envoy's `upstream_rq_pending_overflow`, which the task reads from the sidecar.
    let clusters = keel_proxy::admin::clusters_text(&fortio.shared);
    let pending_overflow = clusters
        .lines()
        .find(|l| l.starts_with("outbound|8000||httpbin") && l.contains("::overflow::pending::"))
        .and_then(|l| l.rsplit("::").next()?.parse::<usize>().ok());
    assert_eq!(pending_overflow, Some(overflow), "{clusters}");
}
