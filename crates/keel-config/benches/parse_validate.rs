//! Parse + validate throughput: 10,000 resources of mixed kinds, resources per second.
//!
//! Target: ≥ 50,000 resources/s on the project's 2-core machine (it bounds `keel apply`
//! latency and control-plane start-up). Printed beside peers measured in the same run:
//! serde-saphyr parsing the same text into untyped JSON values (a YAML parse with no typing
//! and no validation), and PyYAML's `safe_load_all` when python3 has it.
//!
//! Run: `bench/config-parse.sh` (or `cargo bench -p keel-config --bench parse_validate`).
#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)] // test code: fail loudly

use std::time::Instant;

use keel_config::{LoadOptions, load_str, validate_resources};

const TEMPLATES: &[&str] = &[
    r#"apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: vs-N, namespace: ns-M}
spec:
  hosts: [svc-N]
  gateways: [mesh, istio-system/gw-M]
  http:
  - name: canary
    match:
    - headers:
        end-user: {exact: jason}
      uri: {prefix: /api/v1}
    route:
    - destination: {host: svc-N, subset: v2, port: {number: 9080}}
  - route:
    - destination: {host: svc-N, subset: v1}
      weight: 90
    - destination: {host: svc-N, subset: v3}
      weight: 10
    retries: {attempts: 3, perTryTimeout: 2s, retryOn: "gateway-error,connect-failure"}
    timeout: 10s
"#,
    r#"apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: dr-N, namespace: ns-M}
spec:
  host: svc-N.ns-M.svc.cluster.local
  trafficPolicy:
    loadBalancer: {simple: LEAST_REQUEST}
    connectionPool:
      tcp: {maxConnections: 100, connectTimeout: 30ms}
      http: {http1MaxPendingRequests: 10, maxRequestsPerConnection: 10}
    outlierDetection: {consecutive5xxErrors: 5, interval: 10s, baseEjectionTime: 30s, maxEjectionPercent: 50}
  subsets:
  - name: v1
    labels: {version: v1}
  - name: v2
    labels: {version: v2}
"#,
    r#"apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {name: gw-N, namespace: ns-M}
spec:
  selector: {istio: ingressgateway}
  servers:
  - port: {number: 80, name: http, protocol: HTTP}
    hosts: ["svc-N.example.com"]
  - port: {number: 443, name: https, protocol: HTTPS}
    hosts: ["svc-N.example.com"]
    tls: {mode: SIMPLE, credentialName: cert-N}
"#,
    r#"apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: se-N, namespace: ns-M}
spec:
  hosts: [api-N.example.com]
  location: MESH_EXTERNAL
  ports:
  - {number: 443, name: https, protocol: TLS}
  resolution: DNS
"#,
    r#"apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: ap-N, namespace: ns-M}
spec:
  selector: {matchLabels: {app: svc-N}}
  action: ALLOW
  rules:
  - from:
    - source: {principals: ["cluster.local/ns/ns-M/sa/client"]}
    to:
    - operation: {methods: [GET, POST], paths: ["/api/*"]}
    when:
    - {key: "request.headers[x-tenant]", values: [acme]}
"#,
    r#"apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: {name: pa-N, namespace: ns-M}
spec:
  selector: {matchLabels: {app: svc-N}}
  mtls: {mode: STRICT}
  portLevelMtls:
    "8080": {mode: PERMISSIVE}
"#,
    r#"apiVersion: v1
kind: Service
metadata: {name: svc-N, namespace: ns-M, labels: {app: svc-N}}
spec:
  selector: {app: svc-N}
  ports:
  - {name: http, port: 9080, targetPort: 9080}
"#,
    r#"apiVersion: apps/v1
kind: Deployment
metadata: {name: svc-N-v1, namespace: ns-M}
spec:
  replicas: 2
  selector: {matchLabels: {app: svc-N, version: v1}}
  template:
    metadata: {labels: {app: svc-N, version: v1}}
    spec:
      serviceAccountName: svc-N
      containers:
      - name: app
        image: example/svc:1.0
        ports: [{containerPort: 9080}]
"#,
    r#"apiVersion: telemetry.istio.io/v1
kind: Telemetry
metadata: {name: tel-N, namespace: ns-M}
spec:
  selector: {matchLabels: {app: svc-N}}
  accessLogging:
  - providers: [{name: envoy}]
"#,
    r#"apiVersion: networking.istio.io/v1
kind: Sidecar
metadata: {name: sc-N, namespace: ns-M}
spec:
  workloadSelector: {labels: {app: svc-N}}
  egress:
  - hosts: ["./*", "istio-system/*"]
"#,
];

/// `count` resources, cycling through the templates, as one multi-document text.
fn corpus(count: usize) -> String {
    let mut out = String::new();
    for i in 0..count {
        let t = TEMPLATES[i % TEMPLATES.len()];
        out.push_str("---\n");
        out.push_str(
            &t.replace("-N", &format!("-{i}"))
                .replace("ns-M", &format!("ns-{}", i % 50)),
        );
    }
    out
}

/// Best time of `runs` calls. What `f` returns is dropped after the clock stops, for every
/// contender alike: freeing the parsed data is not part of parsing it.
fn best_of<T, F: FnMut() -> (usize, T)>(runs: usize, mut f: F) -> (f64, usize) {
    let mut best = f64::MAX;
    let mut n = 0;
    for _ in 0..runs {
        let t = Instant::now();
        let (count, kept) = f();
        best = best.min(t.elapsed().as_secs_f64());
        n = count;
        drop(kept);
    }
    (best, n)
}

fn pyyaml_seconds(text: &str) -> Option<f64> {
    let dir = std::env::temp_dir().join(format!("keel-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).ok()?;
    let file = dir.join("corpus.yaml");
    std::fs::write(&file, text).ok()?;
    let script = "import sys,time,yaml\nL=getattr(yaml,'CSafeLoader',yaml.SafeLoader)\ns=open(sys.argv[1]).read()\nb=1e9\nfor _ in range(3):\n t=time.perf_counter(); d=[x for x in yaml.load_all(s, Loader=L) if x]; b=min(b,time.perf_counter()-t)\nprint(b, len(d), L.__name__)";
    let out = std::process::Command::new("python3")
        .arg("-c")
        .arg(script)
        .arg(&file)
        .output()
        .ok()?;
    let _ = std::fs::remove_dir_all(&dir);
    if !out.status.success() {
        return None;
    }
    let s = String::from_utf8_lossy(&out.stdout);
    let mut parts = s.split_whitespace();
    let secs: f64 = parts.next()?.parse().ok()?;
    let n: usize = parts.next()?.parse().ok()?;
    let loader = parts.next().unwrap_or("?");
    eprintln!("  (PyYAML {loader}: {n} documents)");
    Some(secs)
}

fn main() {
    let count = 10_000;
    let text = corpus(count);
    println!(
        "corpus: {count} resources of {} kinds, {} KiB",
        TEMPLATES.len(),
        text.len() / 1024
    );

    let single = LoadOptions {
        threads: 1,
        ..Default::default()
    };
    let (keel1_s, _) = best_of(9, || {
        let loaded = load_str(&text, "bench.yaml", &single);
        (loaded.resources.len(), loaded)
    });
    let opts = LoadOptions::default();
    let (keel_s, n) = best_of(9, || {
        let loaded = load_str(&text, "bench.yaml", &opts);
        let diags = validate_resources(&loaded.resources, "istio-system");
        assert!(
            loaded.diagnostics.is_empty() && diags.is_empty(),
            "bench corpus must be valid: {:?} {:?}",
            loaded.diagnostics.first(),
            diags.first()
        );
        (loaded.resources.len(), loaded)
    });
    assert_eq!(n, count);
    let (saphyr_s, saphyr_n) = best_of(9, || {
        // No budget: the defaults stop at 1,024 documents.
        let opts = serde_saphyr::options! { budget: None };
        let docs: Vec<serde_json::Value> = serde_saphyr::from_multiple_with_options(&text, opts)
            .expect("serde-saphyr parses the corpus");
        (docs.len(), docs)
    });

    assert_eq!(saphyr_n, count, "serde-saphyr must read every document");
    let rate = |s: f64| count as f64 / s;
    println!("{:<48} {:>12} {:>10}", "", "resources/s", "ms");
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    let row = |label: &str, s: f64| println!("{label:<48} {:>12.0} {:>10.1}", rate(s), s * 1e3);
    row(
        &format!("keel: parse + decode + validate ({cpus} CPUs)"),
        keel_s,
    );
    row("keel: parse + decode only, 1 thread", keel1_s);
    row("peer: serde-saphyr, untyped parse only", saphyr_s);
    match pyyaml_seconds(&text) {
        Some(s) => println!(
            "{:<48} {:>12.0} {:>10.1}",
            "peer: PyYAML safe_load_all, untyped parse only",
            rate(s),
            s * 1e3
        ),
        None => println!("peer: PyYAML not available (pip install pyyaml to include it)"),
    }
    let target = 50_000.0;
    let verdict = if rate(keel_s) >= target {
        "meets"
    } else {
        "MISSES"
    };
    println!(
        "target ≥ {target:.0} resources/s: keel {verdict} it ({:.1}x)",
        rate(keel_s) / target
    );
}
