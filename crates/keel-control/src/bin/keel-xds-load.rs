//! Change-to-ACK under many proxies: runs a control plane in-process, connects N simulated
//! proxies (real delta-xDS streams over gRPC on loopback, each a sidecar with its own node),
//! then applies VirtualService changes one at a time and measures, for every proxy, the time
//! from the store write to the proxy's receipt of the listener update carrying it (each
//! simulated proxy ACKs at once, so that is also its ACK). Prints p50/p99/max per proxy
//! count. `bench/xds-load.sh` runs it for 10, 100 and 1,000 proxies.
//!
//! Usage: keel-xds-load [--proxies 10,100,1000] [--changes 20] [--debounce-ms QUIET]

#![forbid(unsafe_code)]

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use keel_control::store::{ConfigStore, DirStore, DirStoreOptions, WriteOptions};
use keel_control::xds::{Debounce, XdsServer};
use keel_xds::node::{ProxyKind, ProxyNode};
use keel_xds::{AggregatedDiscoveryServiceClient, DeltaDiscoveryRequest, ResourceType};
use tokio::sync::{mpsc, watch};
use tokio_stream::wrappers::ReceiverStream;

const REVIEWS: &str = "reviews.default.svc.cluster.local";

/// Simulated proxies per gRPC connection (each is its own stream on it).
const STREAMS_PER_CONNECTION: usize = 50;

struct Args {
    proxies: Vec<usize>,
    changes: usize,
    debounce: Debounce,
}

fn parse_args() -> Result<Args, String> {
    let mut args = Args {
        proxies: vec![10, 100, 1000],
        changes: 20,
        debounce: Debounce::default(),
    };
    let mut it = std::env::args().skip(1);
    while let Some(a) = it.next() {
        let mut value = |name: &str| it.next().ok_or(format!("{name} needs a value"));
        match a.as_str() {
            "--proxies" => {
                args.proxies = value("--proxies")?
                    .split(',')
                    .map(|n| n.trim().parse().map_err(|e| format!("--proxies: {e}")))
                    .collect::<Result<_, _>>()?
            }
            "--changes" => {
                args.changes = value("--changes")?
                    .parse()
                    .map_err(|e| format!("--changes: {e}"))?
            }
            "--debounce-ms" => {
                let ms: u64 = value("--debounce-ms")?
                    .parse()
                    .map_err(|e| format!("--debounce-ms: {e}"))?;
                args.debounce.quiet = Duration::from_millis(ms);
            }
            "-h" | "--help" => {
                return Err("usage: keel-xds-load [--proxies 10,100,1000] [--changes 20] [--debounce-ms QUIET]".into());
            }
            other => return Err(format!("unknown argument {other:?} (see --help)")),
        }
    }
    Ok(args)
}

fn base_config() -> String {
    format!(
        r#"
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {{name: reviews, namespace: default}}
spec:
  hosts: [{REVIEWS}]
  location: MESH_INTERNAL
  resolution: STATIC
  ports: [{{number: 9080, name: http, protocol: HTTP}}]
  endpoints:
  - {{address: 127.0.0.1, ports: {{http: 19081}}, labels: {{version: v1}}}}
  - {{address: 127.0.0.1, ports: {{http: 19082}}, labels: {{version: v2}}}}
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {{name: reviews, namespace: default}}
spec:
  host: {REVIEWS}
  subsets:
  - {{name: v1, labels: {{version: v1}}}}
  - {{name: v2, labels: {{version: v2}}}}
"#
    )
}

/// The VirtualService of change `i`: a different v1/v2 split each time.
fn change(i: usize) -> String {
    let w = (i * 7) % 101;
    format!(
        r#"
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {{name: reviews, namespace: default}}
spec:
  hosts: [reviews]
  http:
  - route:
    - {{destination: {{host: reviews, subset: v1}}, weight: {w}}}
    - {{destination: {{host: reviews, subset: v2}}, weight: {}}}
"#,
        100 - w.min(100)
    )
}

fn apply(store: &DirStore, yaml: &str) -> Result<u64, String> {
    let loaded = keel_config::load_str(yaml, "load.yaml", &Default::default());
    store
        .apply(loaded.resources, WriteOptions::default())
        .map_err(|e| e.to_string())?;
    Ok(store.snapshot().version)
}

/// Per proxy: the highest listener version received and when.
type Seen = Arc<Mutex<HashMap<usize, (u64, Instant)>>>;

async fn simulated_proxy(
    mut client: AggregatedDiscoveryServiceClient<tonic::transport::Channel>,
    index: usize,
    seen: Seen,
    mut stop: watch::Receiver<bool>,
) -> Result<(), String> {
    let node = ProxyNode {
        id: format!("load-{index}.default"),
        kind: ProxyKind::Sidecar,
        namespace: "default".into(),
        labels: [("app".to_string(), format!("load-{index}"))].into(),
        workload: format!("load-{index}"),
        bind: "127.0.0.1".parse().map_err(|e| format!("{e}"))?,
        outbound_port: 20000,
        inbound_port: 20001,
        ..ProxyNode::default()
    };
    let (tx, rx) = mpsc::channel(8);
    for (i, t) in [ResourceType::Cluster, ResourceType::Listener]
        .into_iter()
        .enumerate()
    {
        let req = DeltaDiscoveryRequest {
            node: (i == 0).then(|| node.to_node()),
            type_url: t.type_url().to_string(),
            ..Default::default()
        };
        tx.send(req).await.map_err(|e| e.to_string())?;
    }
    let mut stream = client
        .delta_aggregated_resources(ReceiverStream::new(rx))
        .await
        .map_err(|e| e.to_string())?
        .into_inner();
    loop {
        let msg = tokio::select! {
            m = stream.message() => m.map_err(|e| e.to_string())?,
            _ = stop.changed() => return Ok(()),
        };
        let Some(resp) = msg else { return Ok(()) };
        let now = Instant::now();
        if resp.type_url == ResourceType::Listener.type_url()
            && let Ok(v) = resp.system_version_info.parse::<u64>()
            && let Ok(mut seen) = seen.lock()
        {
            let e = seen.entry(index).or_insert((0, now));
            if v > e.0 {
                *e = (v, now);
            }
        }
        let ack = DeltaDiscoveryRequest {
            type_url: resp.type_url.clone(),
            response_nonce: resp.nonce.clone(),
            ..Default::default()
        };
        tx.send(ack).await.map_err(|e| e.to_string())?;
    }
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

async fn run_once(n: usize, args: &Args) -> Result<Vec<Duration>, String> {
    let dir = tempfile_dir()?;
    let (store, _) = DirStore::open(&dir, DirStoreOptions::default()).map_err(|e| e.to_string())?;
    let store = Arc::new(store);
    apply(&store, &base_config())?;
    apply(&store, &change(0))?;
    let xds = XdsServer::new(&*store, "istio-system", args.debounce);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .map_err(|e| e.to_string())?;
    let addr = listener.local_addr().map_err(|e| e.to_string())?;
    let (stop_tx, stop_rx) = watch::channel(false);
    let server = {
        let mut stop = stop_rx.clone();
        let xds = xds.clone();
        tokio::spawn(keel_control::xds::serve(listener, xds, async move {
            let _ = stop.wait_for(|s| *s).await;
        }))
    };
    let seen: Seen = Arc::default();
    let mut proxies = Vec::new();
    let mut channel = None;
    for i in 0..n {
        if i % STREAMS_PER_CONNECTION == 0 {
            let c = tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
                .map_err(|e| e.to_string())?
                .connect()
                .await
                .map_err(|e| e.to_string())?;
            channel = Some(c);
        }
        let Some(c) = channel.clone() else {
            return Err("no channel".into());
        };
        proxies.push(tokio::spawn(simulated_proxy(
            AggregatedDiscoveryServiceClient::new(c),
            i,
            seen.clone(),
            stop_rx.clone(),
        )));
    }
    // Everyone has the starting configuration.
    let start_version = store.snapshot().version;
    wait_all(&seen, n, start_version, Duration::from_secs(60)).await?;
    let mut latencies = Vec::with_capacity(n * args.changes);
    for i in 1..=args.changes {
        let t0 = Instant::now();
        let store2 = store.clone();
        let yaml = change(i);
        let version = tokio::task::spawn_blocking(move || apply(&store2, &yaml))
            .await
            .map_err(|e| e.to_string())??;
        wait_all(&seen, n, version, Duration::from_secs(60)).await?;
        if let Ok(seen) = seen.lock() {
            latencies.extend(
                seen.values()
                    .map(|(_, at)| at.saturating_duration_since(t0)),
            );
        }
    }
    let _ = stop_tx.send(true);
    xds.close_streams();
    for p in proxies {
        let _ = p.await;
    }
    let _ = server.await;
    let _ = std::fs::remove_dir_all(&dir);
    Ok(latencies)
}

async fn wait_all(seen: &Seen, n: usize, version: u64, limit: Duration) -> Result<(), String> {
    let deadline = Instant::now() + limit;
    loop {
        let done = seen
            .lock()
            .map(|s| s.len() == n && s.values().all(|(v, _)| *v >= version))
            .unwrap_or(false);
        if done {
            return Ok(());
        }
        if Instant::now() > deadline {
            let behind = seen
                .lock()
                .map(|s| n - s.values().filter(|(v, _)| *v >= version).count())
                .unwrap_or(n);
            return Err(format!(
                "{behind} of {n} proxies did not get version {version} within {limit:?}"
            ));
        }
        tokio::time::sleep(Duration::from_micros(500)).await;
    }
}

fn tempfile_dir() -> Result<std::path::PathBuf, String> {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    let dir = std::env::temp_dir().join(format!("keel-xds-load-{}-{nanos}", std::process::id()));
    std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
    Ok(dir)
}

fn main() -> std::process::ExitCode {
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("{e}");
            return std::process::ExitCode::from(2);
        }
    };
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start a runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    println!(
        "change-to-ACK: {} VirtualService changes, one at a time; debounce quiet {:?} (max {:?})",
        args.changes, args.debounce.quiet, args.debounce.max
    );
    println!(
        "{:>8} {:>10} {:>10} {:>10} {:>10}",
        "proxies", "p50 ms", "p99 ms", "max ms", "samples"
    );
    for &n in &args.proxies {
        match rt.block_on(run_once(n, &args)) {
            Ok(mut l) => {
                l.sort();
                let ms = |d: Duration| d.as_secs_f64() * 1000.0;
                println!(
                    "{:>8} {:>10.1} {:>10.1} {:>10.1} {:>10}",
                    n,
                    ms(percentile(&l, 0.5)),
                    ms(percentile(&l, 0.99)),
                    ms(l.last().copied().unwrap_or_default()),
                    l.len()
                );
            }
            Err(e) => {
                eprintln!("error with {n} proxies: {e}");
                return std::process::ExitCode::FAILURE;
            }
        }
    }
    std::process::ExitCode::SUCCESS
}
