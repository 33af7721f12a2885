//! Istio's traffic-management tasks — fault injection, request timeouts, circuit breaking and
//! mirroring — on the local mesh: `keel up` runs the apps and their sidecars, then each step of
//! the task is a `keel apply -f` on the running mesh, replacing the VirtualService the step
//! before installed, as `kubectl apply` does in Istio's task. Requests go through a pod's
//! sidecar (its `HTTP_PROXY` port), as the task's `curl` or browser reaches the app.
//!
//! Each task runs twice: with Istio's own YAML from `../shared/istio-samples` (skipped, saying
//! so, when it is absent), and with Keel's own fixtures (`mesh_tasks/fixtures.rs`), so a fresh
//! clone still tests the behaviour. The fixtures use shorter delays and timeouts than Istio's
//! pages (a fault of 2 s, not 7 s) to keep the file fast; Istio's 7 s delay is inherent to its
//! own YAML. The meshes of tests running at once share nothing: each has its own state
//! directory and control-plane ports, and `keel up` reserves its processes' ports until it
//! stops (see `keel-cli/src/cmd/up/ports.rs`), so no serialization is needed.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code: fail loudly

mod common;
#[path = "mesh_tasks/fixtures.rs"]
mod fixtures;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::{Mesh, Response, admin, binaries_built, eventually, get, istio_samples};
use fixtures::*;

const NETWORKING: &str = "samples/bookinfo/networking";
const TASKS: &str = "istio.io/content/en/docs/tasks/traffic-management";
const PAGE: &str = "http://productpage:9080/productpage";
const JASON: &str = "Cookie: user=jason";
const REVIEWS_UNAVAILABLE: &str = "Sorry, product reviews are currently unavailable for this book.";
const RATINGS_UNAVAILABLE: &str = "Ratings service is currently unavailable";

/// The product page for a user (`JASON`) or anyone, and how long it took.
fn page(mesh: &Mesh, headers: &[&str]) -> (Response, Duration) {
    let started = Instant::now();
    let r = get(mesh.pod("productpage-v1-0").proxy, PAGE, headers);
    let took = started.elapsed();
    assert_eq!(r.status, 200, "{}", r.text);
    (r, took)
}

fn served_by(page: &Response) -> &str {
    page.text
        .split("Reviews served by: ")
        .nth(1)
        .and_then(|r| r.split('<').next())
        .map(str::trim)
        .unwrap_or("(no reviews)")
}

/// Everyone but jason: reviews v1, no stars, nothing unavailable.
fn assert_everyone_else_on_v1(mesh: &Mesh) {
    for user in [&[][..], &["Cookie: user=mary"][..]] {
        let (r, _) = page(mesh, user);
        assert_eq!(served_by(&r), "reviews-v1-0", "{}", r.text);
        assert!(!r.text.contains("glyphicon-star"), "v1 shows no stars");
        assert!(!r.text.contains("Error fetching"), "{}", r.text);
    }
}

// ---------------------------------------------------------------------------------------
// Fault injection

/// Istio's fault-injection task with its own YAML: with a 7 s delay on jason's ratings calls,
/// jason's page shows reviews as unavailable after about 6 s (productpage gives reviews 3 s,
/// twice, though reviews v2 itself would wait 10 s for ratings: the bug the task uncovers);
/// with the abort, jason's page says the ratings service is unavailable. Everyone else is on
/// reviews v1 throughout.
#[test]
fn fault_injection_task_with_istio_yaml() {
    let Some(root) = istio_samples() else { return };
    if !binaries_built() {
        return;
    }
    let net = |f: &str| root.join(NETWORKING).join(f);
    let mesh = Mesh::up(&[
        &root.join("samples/bookinfo/platform/kube/bookinfo.yaml"),
        &net("destination-rule-all.yaml"),
        &net("virtual-service-all-v1.yaml"),
    ]);
    mesh.apply(&net("virtual-service-reviews-test-v2.yaml"));
    let (r, _) = page(&mesh, &[JASON]);
    assert_eq!(served_by(&r), "reviews-v2-0", "{}", r.text);
    assert!(r.text.contains("color=\"black\""), "v2: black stars");

    mesh.apply(&net("virtual-service-ratings-test-delay.yaml"));
    let jason = std::thread::scope(|s| {
        let jason = s.spawn(|| page(&mesh, &[JASON]));
        assert_everyone_else_on_v1(&mesh);
        jason.join().unwrap()
    });
    let (r, took) = jason;
    assert!(
        r.text.contains("Error fetching product reviews!"),
        "{}",
        r.text
    );
    assert!(r.text.contains(REVIEWS_UNAVAILABLE), "{}", r.text);
    assert!(
        took >= Duration::from_millis(5900),
        "two 3 s attempts: {took:?}"
    );
    println!("jason's page with the 7 s delay: {took:?}");

    mesh.apply(&net("virtual-service-ratings-test-abort.yaml"));
    let (r, _) = page(&mesh, &[JASON]);
    assert_eq!(served_by(&r), "reviews-v2-0", "{}", r.text);
    assert!(r.text.contains(RATINGS_UNAVAILABLE), "{}", r.text);
    assert_everyone_else_on_v1(&mesh);
    mesh.down();
}

/// The same task with Keel's fixtures, scaled down: productpage gives reviews 0.5 s (twice),
/// jason's ratings calls are held 2 s (reviews v2 itself would wait 10 s for ratings). Then
/// the abort: HTTP 500 from the sidecar of reviews v2, which then shows no ratings.
#[test]
fn fault_injection_task_with_keel_fixtures() {
    if !binaries_built() {
        return;
    }
    let f = Fixtures::new();
    let mesh = Mesh::up(&[
        &f.file("bookinfo.yaml", &bookinfo(&[("REVIEWS_TIMEOUT_MS", "500")])),
        &f.file("routes.yaml", VERSIONS_AND_V1),
    ]);
    assert_everyone_else_on_v1(&mesh);
    mesh.apply_yaml("jason-v2.yaml", JASON_ON_REVIEWS_V2);
    let (r, _) = page(&mesh, &[JASON]);
    assert_eq!(served_by(&r), "reviews-v2-0", "{}", r.text);
    assert!(r.text.contains("color=\"black\""), "v2: black stars");

    mesh.apply_yaml(
        "delay.yaml",
        &ratings_fault_for_jason("{delay: {fixedDelay: 2s, percentage: {value: 100}}}"),
    );
    let (r, took) = std::thread::scope(|s| {
        let jason = s.spawn(|| page(&mesh, &[JASON]));
        assert_everyone_else_on_v1(&mesh);
        jason.join().unwrap()
    });
    assert!(r.text.contains(REVIEWS_UNAVAILABLE), "{}", r.text);
    assert!(
        took >= Duration::from_millis(1000),
        "two 0.5 s attempts: {took:?}"
    );
    mesh.apply_yaml(
        "abort.yaml",
        &ratings_fault_for_jason("{abort: {httpStatus: 500, percentage: {value: 100}}}"),
    );
    let (r, _) = page(&mesh, &[JASON]);
    assert_eq!(served_by(&r), "reviews-v2-0", "{}", r.text);
    assert!(r.text.contains(RATINGS_UNAVAILABLE), "{}", r.text);
    // The abort comes from reviews v2's sidecar (flag FI); ratings never sees the request.
    mesh.assert_proxy_logged("reviews-v2-0", " 500 FI ");
    assert_everyone_else_on_v1(&mesh);
    mesh.down();
}

// ---------------------------------------------------------------------------------------
// Request timeouts

/// Istio's request-timeouts task with its own YAML: reviews v2 for everyone, ratings delayed
/// 2 s — the page shows stars after 2 s; then `timeout: 0.5s` on reviews — the page shows
/// reviews unavailable after about 1 s (productpage calls reviews twice).
#[test]
fn request_timeouts_task_with_istio_yaml() {
    let Some(root) = istio_samples() else { return };
    if !binaries_built() {
        return;
    }
    let net = |f: &str| root.join(NETWORKING).join(f);
    let task = |f: &str| root.join(TASKS).join("request-timeouts").join(f);
    let mesh = Mesh::up(&[
        &root.join("samples/bookinfo/platform/kube/bookinfo.yaml"),
        &net("destination-rule-all.yaml"),
        &net("virtual-service-all-v1.yaml"),
    ]);
    mesh.apply(&task("snip_request_timeouts_1.yaml"));
    mesh.apply(&task("snip_request_timeouts_2.yaml"));
    let (r, took) = page(&mesh, &[]);
    assert_eq!(served_by(&r), "reviews-v2-0", "{}", r.text);
    assert!(r.text.contains("color=\"black\""), "{}", r.text);
    assert!(took >= Duration::from_secs(2), "the 2 s delay: {took:?}");

    mesh.apply(&task("snip_request_timeouts_3.yaml"));
    let (r, took) = page(&mesh, &[]);
    assert!(r.text.contains(REVIEWS_UNAVAILABLE), "{}", r.text);
    assert!(
        took >= Duration::from_millis(990),
        "two 0.5 s timeouts: {took:?}"
    );
    println!("the page with reviews' 0.5 s timeout: {took:?}");
    mesh.assert_proxy_logged("productpage-v1-0", " 504 UT ");
    mesh.down();
}

/// The same with Keel's fixtures: ratings delayed 1 s, then a 0.3 s timeout on reviews.
#[test]
fn request_timeouts_task_with_keel_fixtures() {
    if !binaries_built() {
        return;
    }
    let f = Fixtures::new();
    let mesh = Mesh::up(&[
        &f.file("bookinfo.yaml", &bookinfo(&[])),
        &f.file("routes.yaml", VERSIONS_AND_V1),
    ]);
    let reviews_v2 = |timeout: &str| {
        format!(
            "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {{name: reviews}}\n\
             spec:\n  hosts: [reviews]\n  http:\n  - route: [{{destination: {{host: reviews, subset: v2}}}}]\n{timeout}"
        )
    };
    mesh.apply_yaml("reviews-v2.yaml", &reviews_v2(""));
    mesh.apply_yaml(
        "slow-ratings.yaml",
        "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: ratings}\n\
         spec:\n  hosts: [ratings]\n  http:\n  - fault: {delay: {fixedDelay: 1s, percentage: {value: 100}}}\n    \
         route: [{destination: {host: ratings, subset: v1}}]\n",
    );
    let (r, took) = page(&mesh, &[]);
    assert_eq!(served_by(&r), "reviews-v2-0", "{}", r.text);
    assert!(r.text.contains("color=\"black\""), "{}", r.text);
    assert!(took >= Duration::from_secs(1), "the 1 s delay: {took:?}");

    mesh.apply_yaml("reviews-timeout.yaml", &reviews_v2("    timeout: 0.3s\n"));
    let (r, took) = page(&mesh, &[]);
    assert!(r.text.contains(REVIEWS_UNAVAILABLE), "{}", r.text);
    assert!(
        took >= Duration::from_millis(590),
        "two 0.3 s timeouts: {took:?}"
    );
    mesh.assert_proxy_logged("productpage-v1-0", " 504 UT ");
    mesh.down();
}

// ---------------------------------------------------------------------------------------
// Circuit breaking

/// `n` requests at once through `client`'s sidecar to `url`; the statuses and bodies.
fn burst(mesh: &Mesh, client: &str, url: &str, n: usize) -> Vec<Response> {
    let proxy = mesh.pod(client).proxy;
    let start = std::sync::Barrier::new(n);
    std::thread::scope(|s| {
        let calls: Vec<_> = (0..n)
            .map(|_| {
                s.spawn(|| {
                    start.wait();
                    get(proxy, url, &[])
                })
            })
            .collect();
        calls.into_iter().map(|c| c.join().unwrap()).collect()
    })
}

/// What a burst against a breaker of one connection and one pending request must show: at
/// least one answer, the rest 503 `UO` from the client's sidecar, counted as Istio's sidecar
/// counts them (`upstream_rq_pending_overflow` in Envoy; `/clusters` here), in
/// `istio_requests_total` and in the access log. Returns the number of overflows so far.
fn assert_overflow(mesh: &Mesh, client: &str, responses: &[Response], before: usize) -> usize {
    let ok = responses.iter().filter(|r| r.status == 200).count();
    let overflow: Vec<&Response> = responses.iter().filter(|r| r.status == 503).collect();
    assert!(ok >= 1, "nothing got through: {responses:?}");
    assert!(!overflow.is_empty(), "nothing overflowed: {responses:?}");
    assert_eq!(ok + overflow.len(), responses.len(), "{responses:?}");
    for r in &overflow {
        assert!(r.text.contains("UO upstream overflow"), "{}", r.text);
    }
    let total = before + overflow.len();
    let admin_port = mesh.pod(client).admin;
    let clusters = admin(admin_port, "/clusters");
    let pending = clusters
        .lines()
        .find(|l| l.starts_with("outbound|8000||httpbin") && l.contains("::overflow::pending::"))
        .and_then(|l| l.rsplit("::").next()?.trim().parse::<usize>().ok());
    assert_eq!(pending, Some(total), "{clusters}");
    let metrics = admin(admin_port, "/stats/prometheus");
    let counted: f64 = metrics
        .lines()
        .filter(|l| l.starts_with("istio_requests_total{"))
        .filter(|l| l.contains("response_code=\"503\"") && l.contains("response_flags=\"UO\""))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum();
    assert_eq!(counted as usize, total, "{metrics}");
    let pod = client.trim_end_matches(".default");
    let lines = eventually("the access log to show every overflow", || {
        let log = mesh.proxy_log(pod);
        let n = log.lines().filter(|l| l.contains("\" 503 UO ")).count();
        (n == total).then_some(n)
    });
    assert_eq!(lines, total);
    total
}

/// Istio's circuit-breaking task with its own YAML (httpbin, the fortio client, the task's
/// DestinationRule): concurrent calls from the client's sidecar overflow the breaker with 503
/// `UO`; a second, larger burst overflows again (the rule's outlier detection doesn't count
/// the sidecar's own 503s, so httpbin is never ejected). fortio is not one of the images Keel
/// runs: `keel-sample httpbin` stands in for its server (the task only uses its client, which
/// the test plays); httpbin's `/delay/1` keeps the one connection busy while the burst
/// arrives, so the outcome doesn't depend on this machine's speed.
#[test]
fn circuit_breaking_task_with_istio_yaml() {
    let Some(root) = istio_samples() else { return };
    if !binaries_built() {
        return;
    }
    let fortio = format!(
        "docker.io/fortio/fortio={} httpbin",
        common::bin_dir().join("keel-sample").display()
    );
    let mesh = Mesh::up_with(
        &[
            &root.join("samples/httpbin/httpbin.yaml"),
            &root.join("samples/httpbin/sample-client/fortio-deploy.yaml"),
        ],
        &["--run", &fortio],
        &[],
    );
    let client = "fortio-deploy-0.default";
    let r = get(mesh.pod(client).proxy, "http://httpbin:8000/get", &[]);
    assert_eq!(r.status, 200, "{}", r.text);
    mesh.apply(
        &root
            .join(TASKS)
            .join("circuit-breaking/snip_configuring_the_circuit_breaker_1.yaml"),
    );
    let url = "http://httpbin:8000/delay/1";
    let so_far = assert_overflow(&mesh, client, &burst(&mesh, client, url, 4), 0);
    assert_overflow(&mesh, client, &burst(&mesh, client, url, 6), so_far);
    mesh.down();
}

/// The same with Keel's fixtures: httpbin, a sleep client, and the breaker's limits.
#[test]
fn circuit_breaking_task_with_keel_fixtures() {
    if !binaries_built() {
        return;
    }
    let f = Fixtures::new();
    let mesh = Mesh::up(&[&f.file("httpbin.yaml", &httpbin_and_client(&["v1"]))]);
    mesh.apply_yaml(
        "breaker.yaml",
        r#"# One connection to httpbin, one request on it, one more waiting: the rest overflow.
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: httpbin-breaker}
spec:
  host: httpbin.default.svc.cluster.local
  trafficPolicy:
    connectionPool:
      tcp: {maxConnections: 1}
      http: {http1MaxPendingRequests: 1, maxRequestsPerConnection: 1}
"#,
    );
    let client = "sleep-0.default";
    let responses = burst(&mesh, client, "http://httpbin:8000/delay/1", 5);
    assert_overflow(&mesh, client, &responses, 0);
    mesh.down();
}

// ---------------------------------------------------------------------------------------
// Mirroring

fn app_requests(mesh: &Mesh, pod: &str) -> usize {
    mesh.app_log(pod)
        .lines()
        .filter(|l| l.contains("\"GET /headers "))
        .count()
}

/// Sends `n` requests from sleep to httpbin: v1 answers each, v2 eventually sees a copy of
/// each; returns the authorities v2's sidecar logged for the copies.
fn mirrored(mesh: &Mesh, n: usize) -> Vec<String> {
    let sleep = mesh.pod("sleep-0").proxy;
    let (v1_before, v2_before) = (
        app_requests(mesh, "httpbin-v1-0"),
        app_requests(mesh, "httpbin-v2-0"),
    );
    for _ in 0..n {
        let r = get(sleep, "http://httpbin:8000/headers", &[]);
        assert_eq!(r.status, 200, "{}", r.text);
    }
    assert_eq!(app_requests(mesh, "httpbin-v1-0"), v1_before + n);
    eventually("v2 to see every copy", || {
        (app_requests(mesh, "httpbin-v2-0") == v2_before + n).then_some(())
    });
    // Its sidecar logs each copy once the answer is sent, just after the app's own line. The
    // authority is the fourth quoted field after the byte counts in Istio's text format.
    eventually("v2's sidecar to log every copy", || {
        let hosts: Vec<String> = mesh
            .proxy_log("httpbin-v2-0")
            .lines()
            .filter(|l| l.contains("\"GET /headers HTTP/1.1\" 200"))
            .filter_map(|l| l.split('"').nth(11).map(str::to_string))
            .collect();
        (hosts.len() == v2_before + n).then_some(hosts)
    })
}

/// Istio's mirroring task with its own YAML: everything to v1, then 100 % mirrored to v2. The
/// task's page shows the copies reaching v2 as `httpbin-shadow`; Keel keeps the original Host
/// by default, as Istio 1.28 and later do, so this run sets `KEEL_MIRROR_SHADOW_SUFFIX` (which
/// `keel up`'s sidecars inherit) to reproduce the page.
#[test]
fn mirroring_task_with_istio_yaml() {
    let Some(root) = istio_samples() else { return };
    if !binaries_built() {
        return;
    }
    let task = |f: &str| root.join(TASKS).join("mirroring").join(f);
    let files: Vec<PathBuf> = [1, 2, 3, 4]
        .iter()
        .map(|i| task(&format!("snip_before_you_begin_{i}.yaml")))
        .chain([task("snip_creating_a_default_routing_policy_1.yaml")])
        .collect();
    let files: Vec<&Path> = files.iter().map(PathBuf::as_path).collect();
    let mesh = Mesh::up_with(&files, &[], &[("KEEL_MIRROR_SHADOW_SUFFIX", "true")]);
    let sleep = mesh.pod("sleep-0").proxy;
    for _ in 0..3 {
        let r = get(sleep, "http://httpbin:8000/headers", &[]);
        assert_eq!(r.status, 200, "{}", r.text);
    }
    assert_eq!(app_requests(&mesh, "httpbin-v1-0"), 3);
    assert_eq!(app_requests(&mesh, "httpbin-v2-0"), 0, "no mirror yet");

    mesh.apply(&task("snip_mirroring_traffic_to_v2_1.yaml"));
    let hosts = mirrored(&mesh, 5);
    assert_eq!(hosts, vec!["httpbin-shadow:8000"; 5]);
    mesh.down();
}

/// The same with Keel's fixtures and Keel's default: the copies keep their Host. The mirror is
/// written with `mirrors` (the list form), at 100 %.
#[test]
fn mirroring_task_with_keel_fixtures() {
    if !binaries_built() {
        return;
    }
    let f = Fixtures::new();
    let routes = |mirror: &str| {
        format!(
            r#"apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {{name: httpbin}}
spec:
  hosts: [httpbin]
  http:
  - route: [{{destination: {{host: httpbin, subset: v1}}}}]
{mirror}"#
        )
    };
    let subsets = "---\napiVersion: networking.istio.io/v1\nkind: DestinationRule\n\
                   metadata: {name: httpbin}\nspec:\n  host: httpbin\n  subsets:\n  \
                   - {name: v1, labels: {version: v1}}\n  - {name: v2, labels: {version: v2}}\n";
    let mesh = Mesh::up(&[
        &f.file("httpbin.yaml", &httpbin_and_client(&["v1", "v2"])),
        &f.file("routes.yaml", &(routes("") + subsets)),
    ]);
    let r = get(
        mesh.pod("sleep-0").proxy,
        "http://httpbin:8000/headers",
        &[],
    );
    assert!(
        r.text.contains("\"httpbin:8000\""),
        "v1 answers: {}",
        r.text
    );
    assert_eq!(app_requests(&mesh, "httpbin-v2-0"), 0, "no mirror yet");

    mesh.apply_yaml(
        "mirror.yaml",
        &routes(
            "    mirrors: [{destination: {host: httpbin, subset: v2}, percentage: {value: 100}}]\n",
        ),
    );
    let hosts = mirrored(&mesh, 5);
    assert_eq!(hosts, vec!["httpbin:8000"; 5]);
    mesh.down();
}
