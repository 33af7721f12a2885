//! The HTTP API in process: a real server on an ephemeral loopback port, a directory store
//! in a temporary directory, and the client the CLI uses.
#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)] // test code: fail loudly

use std::sync::Arc;

use keel_control::api::client::{Client, ClientError};
use keel_control::api::server::{ApiState, serve};
use keel_control::api::{InputFile, ResourceId};
use keel_control::store::{ApplyOutcome, ConfigStore, DeleteOutcome, DirStore, DirStoreOptions};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const VS: &str = "apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: reviews}
spec:
  hosts: [reviews]
  http:
  - route:
    - destination: {host: reviews}
";

struct Running {
    client: Client,
    addr: std::net::SocketAddr,
    store: Arc<DirStore>,
    _dir: tempfile::TempDir,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<std::io::Result<()>>,
}

async fn start() -> Running {
    let dir = tempfile::tempdir().expect("tempdir");
    let (store, _) = DirStore::open(dir.path(), DirStoreOptions::default()).expect("open");
    let store = Arc::new(store);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let state = ApiState {
        store: store.clone() as Arc<dyn ConfigStore>,
        version: "1.2.3".into(),
        git_commit: "abc".into(),
        root_namespace: "istio-system".into(),
        proxies: None,
        metrics: None,
        monitoring_only: false,
        jwks: None,
    };
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(serve(listener, state, async move {
        let _ = stopped.await;
    }));
    Running {
        client: Client::new(&format!("http://{addr}")).expect("client"),
        addr,
        store,
        _dir: dir,
        stop: Some(stop),
        task,
    }
}

fn input(name: &str, text: &str) -> Vec<InputFile> {
    vec![InputFile {
        name: name.into(),
        text: text.into(),
    }]
}

/// One raw HTTP/1.1 exchange: status code and body.
async fn raw(addr: std::net::SocketAddr, request: &str) -> (u16, String) {
    let mut s = tokio::net::TcpStream::connect(addr).await.expect("connect");
    s.write_all(request.as_bytes()).await.expect("write");
    let mut out = String::new();
    s.read_to_string(&mut out).await.expect("read");
    let status = out[9..12].parse().expect("status");
    let body = out
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    (status, body)
}

#[tokio::test]
async fn apply_list_delete_and_errors() {
    let r = start().await;
    let applied = r
        .client
        .apply(input("vs.yaml", VS), None, false)
        .await
        .expect("apply");
    assert_eq!(applied.results[0].outcome, ApplyOutcome::Created);
    assert_eq!(
        applied.results[0].id,
        ResourceId {
            api_group: "networking.istio.io".into(),
            kind: "VirtualService".into(),
            namespace: "default".into(),
            name: "reviews".into()
        }
    );
    assert_eq!(applied.store_version, r.store.snapshot().version);

    let list = r
        .client
        .list("vs", Some("default"), None)
        .await
        .expect("list");
    assert_eq!(list["kind"], "List");
    assert_eq!(list["items"][0]["metadata"]["name"], "reviews");
    assert_eq!(list["items"][0]["metadata"]["resourceVersion"], "1");
    let other_ns = r.client.list("vs", Some("prod"), None).await.expect("list");
    assert_eq!(other_ns["items"].as_array().unwrap().len(), 0);

    // Rejected: 422 with every problem as `keel validate` prints it.
    let bad = VS.replace("host: reviews", "host: \"\"");
    match r.client.apply(input("bad.yaml", &bad), None, false).await {
        Err(ClientError::Api { status, body }) => {
            assert_eq!(status.as_u16(), 422);
            assert_eq!(body.reason, "Rejected");
            assert!(
                body.message.ends_with("nothing was changed"),
                "{}",
                body.message
            );
            assert!(
                body.diagnostics[0].text.starts_with("bad.yaml:8:"),
                "{:?}",
                body.diagnostics
            );
        }
        other => panic!("expected a rejection, got {other:?}"),
    }
    match r.client.list("frobs", None, None).await {
        Err(ClientError::Api { status, body }) => {
            assert_eq!(status.as_u16(), 404);
            assert!(
                body.message
                    .contains("doesn't have a resource type \"frobs\"")
            );
        }
        other => panic!("expected not found, got {other:?}"),
    }
    match r.client.list("vs", Some("default"), Some("nope")).await {
        Err(ClientError::Api { body, .. }) => {
            assert_eq!(
                body.message,
                "virtualservices.networking.istio.io \"nope\" not found"
            )
        }
        other => panic!("expected not found, got {other:?}"),
    }

    let deleted = r
        .client
        .delete(input("vs.yaml", VS), None, false)
        .await
        .expect("delete");
    assert_eq!(deleted.results[0].outcome, DeleteOutcome::Deleted);
    let again = r
        .client
        .delete(input("vs.yaml", VS), None, false)
        .await
        .expect("delete");
    assert_eq!(again.results[0].outcome, DeleteOutcome::NotFound);

    let version = r.client.version().await.expect("version");
    assert_eq!(version["version"], "1.2.3");
    assert_eq!(version["storeVersion"], 2);
}

#[tokio::test]
async fn plain_yaml_bodies_health_and_methods() {
    let r = start().await;
    let body = VS.replace("host: reviews}", "host: reviews, port: {number: 99999}}");
    let req = format!(
        "POST /apis/apply?namespace=prod HTTP/1.1\r\nHost: x\r\nContent-Type: application/yaml\r\nX-Keel-Filename: mine.yaml\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let (status, text) = raw(r.addr, &req).await;
    assert_eq!(status, 422, "{text}");
    assert!(text.contains("mine.yaml:8:"), "{text}");
    assert!(text.contains("VirtualService prod/reviews"), "{text}");

    let req = format!(
        "POST /apis/apply?namespace=prod&dryRun=true HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{VS}",
        VS.len()
    );
    let (status, text) = raw(r.addr, &req).await;
    assert_eq!(status, 200, "{text}");
    let v: serde_json::Value = serde_json::from_str(&text).expect("json");
    assert_eq!(v["dryRun"], true);
    assert_eq!(v["results"][0]["namespace"], "prod");
    assert_eq!(v["results"][0]["outcome"], "created");
    assert!(
        r.store.snapshot().resources.is_empty(),
        "dry run wrote nothing"
    );

    let (status, text) = raw(
        r.addr,
        "GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert_eq!((status, text.as_str()), (200, "ok\n"));
    let (status, text) = raw(
        r.addr,
        "DELETE /apis/apply HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert_eq!(status, 405, "{text}");
    let (status, _) = raw(
        r.addr,
        "GET /nope HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert_eq!(status, 404);
    let (status, text) = raw(
        r.addr,
        "GET /apis/problems HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert_eq!((status, text.as_str()), (200, "{\"problems\":[]}\n"));
}

#[tokio::test]
async fn shutdown_ends_the_server() {
    let mut r = start().await;
    r.client.version().await.expect("serving");
    r.stop.take().unwrap().send(()).unwrap();
    (&mut r.task).await.expect("join").expect("clean stop");
    assert!(matches!(
        r.client.version().await,
        Err(ClientError::Unreachable { .. })
    ));
}
