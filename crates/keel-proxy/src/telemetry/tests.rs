//! End-to-end checks of [`Telemetry`]: records in, exposition text and log lines out, compared
//! line for line with what an Istio sidecar prints for the same traffic.

use super::series::tests::ManualClock;
use super::*;
use std::sync::Mutex;
use std::time::{Duration, UNIX_EPOCH};

#[derive(Default)]
struct Capture {
    lines: Mutex<Vec<String>>,
    refuse: bool,
}

impl AccessLogSink for Capture {
    fn offer(&self, line: String) -> bool {
        if self.refuse {
            return false;
        }
        self.lines.lock().unwrap().push(line);
        true
    }
}

impl Capture {
    fn take(&self) -> Vec<String> {
        std::mem::take(&mut *self.lines.lock().unwrap())
    }
}

fn productpage() -> ProxyIdentity {
    ProxyIdentity {
        workload: "productpage-v1".into(),
        namespace: "default".into(),
        app: "productpage".into(),
        version: "v1".into(),
        canonical_service: "productpage".into(),
        canonical_revision: "v1".into(),
        principal: "spiffe://cluster.local/ns/default/sa/bookinfo-productpage".into(),
        ..ProxyIdentity::default()
    }
}

fn reviews_v2() -> Peer {
    Peer {
        workload: Some(Arc::new(ProxyIdentity {
            workload: "reviews-v2".into(),
            namespace: "default".into(),
            app: "reviews".into(),
            version: "v2".into(),
            canonical_service: "reviews".into(),
            canonical_revision: "v2".into(),
            ..ProxyIdentity::default()
        })),
        principal: Some("spiffe://cluster.local/ns/default/sa/bookinfo-reviews".into()),
    }
}

fn telemetry(proxy: ProxyIdentity) -> (Telemetry, Arc<Capture>, Arc<ManualClock>) {
    let capture = Arc::new(Capture::default());
    let clock = ManualClock::new();
    let options = TelemetryOptions {
        clock: clock.clone(),
        sink: Some(capture.clone()),
        ..TelemetryOptions::default()
    };
    (Telemetry::with_options(proxy, options), capture, clock)
}

/// `GET /reviews/0` from productpage to reviews-v2 over mTLS, seen by productpage's sidecar.
fn reviews_request() -> RequestRecord {
    RequestRecord {
        reporter: Reporter::Source,
        peer: reviews_v2(),
        service: Some(Arc::new(ServiceRef {
            host: "reviews.default.svc.cluster.local".into(),
            name: "reviews".into(),
            namespace: "default".into(),
        })),
        start_time: UNIX_EPOCH + Duration::from_millis(1_606_339_578_409),
        duration: Duration::from_millis(12),
        method: Some(http::Method::GET),
        path: "/reviews/0".into(),
        version: http::Version::HTTP_11,
        authority: "reviews:9080".into(),
        user_agent: Some("curl/8.5.0".into()),
        request_id: Some("84961386-6d84-929d-98bd-c5aee93b5c88".into()),
        bytes_sent: 358,
        header_bytes_sent: 142,
        response_code: 200,
        response_code_details: "via_upstream".into(),
        upstream_service_time: Some(Duration::from_millis(11)),
        upstream_host: "10.44.1.27:9080".parse().ok(),
        upstream_cluster: Some("outbound|9080|v2|reviews.default.svc.cluster.local".into()),
        upstream_local_address: "10.44.1.23:37652".parse().ok(),
        downstream_local_address: "10.0.45.184:9080".parse().ok(),
        downstream_remote_address: "10.44.1.23:46520".parse().ok(),
        route_name: Some("default".into()),
        ..RequestRecord::default()
    }
}

const REVIEWS_LABELS: &str = "reporter=\"source\",source_workload=\"productpage-v1\",\
source_canonical_service=\"productpage\",source_canonical_revision=\"v1\",\
source_workload_namespace=\"default\",\
source_principal=\"spiffe://cluster.local/ns/default/sa/bookinfo-productpage\",\
source_app=\"productpage\",source_version=\"v1\",source_cluster=\"Kubernetes\",\
destination_workload=\"reviews-v2\",destination_workload_namespace=\"default\",\
destination_principal=\"spiffe://cluster.local/ns/default/sa/bookinfo-reviews\",\
destination_app=\"reviews\",destination_version=\"v2\",\
destination_service=\"reviews.default.svc.cluster.local\",\
destination_canonical_service=\"reviews\",destination_canonical_revision=\"v2\",\
destination_service_name=\"reviews\",destination_service_namespace=\"default\",\
destination_cluster=\"Kubernetes\",request_protocol=\"http\",response_code=\"200\",\
grpc_response_status=\"\",response_flags=\"-\",connection_security_policy=\"unknown\"";

/// Histogram lines for one series, written out by hand from bounds and cumulative counts.
fn histogram(name: &str, labels: &str, buckets: &[(&str, u64)], sum: &str, count: u64) -> String {
    let mut out = String::new();
    for (le, n) in buckets {
        out += &format!("{name}_bucket{{{labels},le=\"{le}\"}} {n}\n");
    }
    out += &format!("{name}_bucket{{{labels},le=\"+Inf\"}} {count}\n");
    out += &format!("{name}_sum{{{labels}}} {sum}\n");
    out += &format!("{name}_count{{{labels}}} {count}\n");
    out
}

#[test]
fn a_recorded_request_renders_as_an_istio_sidecar_does() {
    let (t, _, _) = telemetry(productpage());
    t.record_http(&reviews_request());
    t.record_http(&RequestRecord {
        duration: Duration::from_millis(300),
        header_bytes_received: 90,
        ..reviews_request()
    });
    let l = REVIEWS_LABELS;
    let mut want = format!(
        "# TYPE istio_requests_total counter\n\
         istio_requests_total{{{l}}} 2\n\n\
         # TYPE keel_access_log_dropped_lines_total counter\n\
         keel_access_log_dropped_lines_total 0\n\n\
         # TYPE istio_request_bytes histogram\n"
    );
    let bytes_le = [
        "1",
        "10",
        "100",
        "1000",
        "10000",
        "100000",
        "1000000",
        "10000000",
        "100000000",
        "1000000000",
    ];
    let request_bytes: Vec<(&str, u64)> = bytes_le
        .iter()
        .zip([1, 1, 2, 2, 2, 2, 2, 2, 2, 2])
        .map(|(le, n)| (*le, n))
        .collect();
    want += &histogram("istio_request_bytes", l, &request_bytes, "90", 2);
    want += "\n# TYPE istio_request_duration_milliseconds histogram\n";
    let duration: Vec<(&str, u64)> = [
        ("0.5", 0),
        ("1", 0),
        ("5", 0),
        ("10", 0),
        ("25", 1),
        ("50", 1),
        ("100", 1),
        ("250", 1),
        ("500", 2),
        ("1000", 2),
        ("2500", 2),
        ("5000", 2),
        ("10000", 2),
        ("30000", 2),
        ("60000", 2),
        ("300000", 2),
        ("600000", 2),
        ("1800000", 2),
        ("3600000", 2),
    ]
    .to_vec();
    want += &histogram(
        "istio_request_duration_milliseconds",
        l,
        &duration,
        "312",
        2,
    );
    want += "\n# TYPE istio_response_bytes histogram\n";
    let response_bytes: Vec<(&str, u64)> = bytes_le
        .iter()
        .zip([0, 0, 0, 2, 2, 2, 2, 2, 2, 2])
        .map(|(le, n)| (*le, n))
        .collect();
    want += &histogram("istio_response_bytes", l, &response_bytes, "1000", 2);
    want += "\n";
    assert_eq!(t.render_prometheus(), want);
}

#[test]
fn nothing_known_is_reported_with_istio_defaults() {
    let (t, _, _) = telemetry(ProxyIdentity::default());
    t.record_http(&RequestRecord {
        reporter: Reporter::Destination,
        ..RequestRecord::default()
    });
    let out = t.render_prometheus();
    let line = out
        .lines()
        .find(|l| l.starts_with("istio_requests_total{"))
        .unwrap();
    assert_eq!(
        line,
        "istio_requests_total{reporter=\"destination\",source_workload=\"unknown\",\
         source_canonical_service=\"unknown\",source_canonical_revision=\"latest\",\
         source_workload_namespace=\"unknown\",source_principal=\"unknown\",\
         source_app=\"unknown\",source_version=\"unknown\",source_cluster=\"unknown\",\
         destination_workload=\"unknown\",destination_workload_namespace=\"unknown\",\
         destination_principal=\"unknown\",destination_app=\"unknown\",\
         destination_version=\"unknown\",destination_service=\"unknown\",\
         destination_canonical_service=\"unknown\",destination_canonical_revision=\"latest\",\
         destination_service_name=\"unknown\",destination_service_namespace=\"unknown\",\
         destination_cluster=\"Kubernetes\",request_protocol=\"http\",response_code=\"0\",\
         grpc_response_status=\"\",response_flags=\"-\",connection_security_policy=\"none\"} 1"
    );
}

#[test]
fn grpc_calls_carry_their_status_and_message_counts() {
    let (t, _, _) = telemetry(productpage());
    t.record_http(&RequestRecord {
        grpc: true,
        grpc_status: Some(14),
        version: http::Version::HTTP_2,
        grpc_request_messages: 1,
        grpc_response_messages: 3,
        ..reviews_request()
    });
    let l = REVIEWS_LABELS
        .replace("request_protocol=\"http\"", "request_protocol=\"grpc\"")
        .replace("grpc_response_status=\"\"", "grpc_response_status=\"14\"");
    let out = t.render_prometheus();
    assert!(out.contains(&format!(
        "# TYPE istio_request_messages_total counter\nistio_request_messages_total{{{l}}} 1\n\n"
    )));
    assert!(out.contains(&format!("istio_requests_total{{{l}}} 1\n")));
    assert!(out.contains(&format!(
        "# TYPE istio_response_messages_total counter\nistio_response_messages_total{{{l}}} 3\n\n"
    )));
}

fn mysql_connection() -> TcpRecord {
    TcpRecord {
        reporter: Reporter::Destination,
        peer: Peer {
            workload: Some(Arc::new(ProxyIdentity {
                workload: "ratings-v2".into(),
                namespace: "default".into(),
                app: "ratings".into(),
                version: "v2".into(),
                ..ProxyIdentity::default()
            })),
            principal: Some("spiffe://cluster.local/ns/default/sa/bookinfo-ratings".into()),
        },
        start_time: UNIX_EPOCH + Duration::from_millis(1_606_339_578_409),
        duration: Duration::from_millis(1520),
        upstream_host: "127.0.0.1:3306".parse().ok(),
        upstream_cluster: Some("inbound|3306||".into()),
        upstream_local_address: "127.0.0.6:41827".parse().ok(),
        downstream_local_address: "10.44.1.30:3306".parse().ok(),
        downstream_remote_address: "10.44.1.27:52100".parse().ok(),
        requested_server_name: Some("outbound_.3306_._.mysqldb.default.svc.cluster.local".into()),
        ..TcpRecord::default()
    }
}

#[test]
fn tcp_connections_count_opens_closes_and_bytes_once() {
    let mysql = ProxyIdentity {
        workload: "mysqldb-v1".into(),
        namespace: "default".into(),
        app: "mysqldb".into(),
        version: "v1".into(),
        principal: "spiffe://cluster.local/ns/default/sa/default".into(),
        ..ProxyIdentity::default()
    };
    let (t, capture, _) = telemetry(mysql);
    t.set_access_log(AccessLogFormat::Text);
    let mut closed = mysql_connection();
    t.tcp_opened(&closed);
    t.tcp_bytes(&closed, 100, 20);
    closed.bytes_sent = 150;
    closed.bytes_received = 30;
    t.tcp_closed(&closed);
    let still_open = mysql_connection();
    t.tcp_opened(&still_open);
    t.tcp_bytes(&still_open, 5, 7);

    let l = "reporter=\"destination\",source_workload=\"ratings-v2\",\
source_canonical_service=\"ratings\",source_canonical_revision=\"v2\",\
source_workload_namespace=\"default\",\
source_principal=\"spiffe://cluster.local/ns/default/sa/bookinfo-ratings\",\
source_app=\"ratings\",source_version=\"v2\",source_cluster=\"Kubernetes\",\
destination_workload=\"mysqldb-v1\",destination_workload_namespace=\"default\",\
destination_principal=\"spiffe://cluster.local/ns/default/sa/default\",\
destination_app=\"mysqldb\",destination_version=\"v1\",destination_service=\"mysqldb\",\
destination_canonical_service=\"mysqldb\",destination_canonical_revision=\"v1\",\
destination_service_name=\"mysqldb\",destination_service_namespace=\"default\",\
destination_cluster=\"Kubernetes\",request_protocol=\"tcp\",response_flags=\"-\",\
connection_security_policy=\"mutual_tls\"";
    let want = format!(
        "# TYPE istio_tcp_connections_closed_total counter\n\
         istio_tcp_connections_closed_total{{{l}}} 1\n\n\
         # TYPE istio_tcp_connections_opened_total counter\n\
         istio_tcp_connections_opened_total{{{l}}} 2\n\n\
         # TYPE istio_tcp_received_bytes_total counter\n\
         istio_tcp_received_bytes_total{{{l}}} 37\n\n\
         # TYPE istio_tcp_sent_bytes_total counter\n\
         istio_tcp_sent_bytes_total{{{l}}} 155\n\n\
         # TYPE keel_access_log_dropped_lines_total counter\n\
         keel_access_log_dropped_lines_total 0\n\n"
    );
    assert_eq!(t.render_prometheus(), want);
    assert_eq!(
        capture.take(),
        vec![
            "[2020-11-25T21:26:18.409Z] \"- - -\" 0 - - - \"-\" 30 150 1520 - \"-\" \"-\" \"-\" \
             \"-\" \"127.0.0.1:3306\" inbound|3306|| 127.0.0.6:41827 10.44.1.30:3306 \
             10.44.1.27:52100 outbound_.3306_._.mysqldb.default.svc.cluster.local -\n"
        ]
    );
}

#[test]
fn idle_series_expire_and_busy_ones_stay() {
    let (t, _, clock) = telemetry(productpage());
    t.record_http(&reviews_request());
    t.tcp_opened(&mysql_connection());
    clock.advance(Duration::from_secs(240));
    t.record_http(&RequestRecord {
        response_code: 503,
        ..reviews_request()
    });
    clock.advance(Duration::from_secs(120));
    t.expire_idle(Duration::from_secs(300));
    let out = t.render_prometheus();
    assert!(!out.contains("response_code=\"200\""), "{out}");
    assert!(out.contains("response_code=\"503\""));
    assert!(!out.contains("istio_tcp_"), "{out}");
    assert_eq!(out.matches("istio_requests_total{").count(), 1);

    clock.advance(Duration::from_secs(301));
    t.expire_idle(Duration::from_secs(300));
    assert!(!t.render_prometheus().contains("istio_"));
}

#[test]
fn access_log_text_is_istios_default_format() {
    let (t, capture, _) = telemetry(productpage());
    t.set_access_log(AccessLogFormat::Text);
    t.record_http(&reviews_request());
    assert_eq!(
        capture.take(),
        vec![
            "[2020-11-25T21:26:18.409Z] \"GET /reviews/0 HTTP/1.1\" 200 - via_upstream - \"-\" \
             0 358 12 11 \"-\" \"curl/8.5.0\" \"84961386-6d84-929d-98bd-c5aee93b5c88\" \
             \"reviews:9080\" \"10.44.1.27:9080\" \
             outbound|9080|v2|reviews.default.svc.cluster.local 10.44.1.23:37652 \
             10.0.45.184:9080 10.44.1.23:46520 - default\n"
        ]
    );
}

fn refused_request() -> RequestRecord {
    RequestRecord {
        response_code: 503,
        response_flags: "UF".into(),
        response_code_details: "upstream_reset_before_response_started{connection_failure}".into(),
        error: Some("upstream connect failed: reviews-v2 127.0.0.1:9082 connection refused".into()),
        bytes_sent: 91,
        duration: Duration::from_millis(1),
        upstream_service_time: None,
        upstream_host: "127.0.0.1:9082".parse().ok(),
        upstream_local_address: None,
        ..reviews_request()
    }
}

#[test]
fn keel_error_takes_the_details_position_in_text() {
    let (t, capture, _) = telemetry(productpage());
    t.set_access_log(AccessLogFormat::Text);
    t.record_http(&refused_request());
    assert_eq!(
        capture.take(),
        vec![
            "[2020-11-25T21:26:18.409Z] \"GET /reviews/0 HTTP/1.1\" 503 UF upstream connect \
             failed: reviews-v2 127.0.0.1:9082 connection refused - \"-\" 0 91 1 - \"-\" \
             \"curl/8.5.0\" \"84961386-6d84-929d-98bd-c5aee93b5c88\" \"reviews:9080\" \
             \"127.0.0.1:9082\" outbound|9080|v2|reviews.default.svc.cluster.local - \
             10.0.45.184:9080 10.44.1.23:46520 - default\n"
        ]
    );
}

#[test]
fn access_log_json_has_istios_keys_and_types_plus_keel_error() {
    let (t, capture, _) = telemetry(productpage());
    t.set_access_log(AccessLogFormat::Json);
    t.record_http(&reviews_request());
    t.record_http(&refused_request());
    let lines = capture.take();
    assert_eq!(
        lines[0],
        "{\"start_time\":\"2020-11-25T21:26:18.409Z\",\"route_name\":\"default\",\
         \"method\":\"GET\",\"path\":\"/reviews/0\",\"protocol\":\"HTTP/1.1\",\
         \"response_code\":200,\"response_flags\":\"-\",\
         \"response_code_details\":\"via_upstream\",\"connection_termination_details\":null,\
         \"bytes_received\":0,\"bytes_sent\":358,\"duration\":12,\
         \"upstream_service_time\":\"11\",\"x_forwarded_for\":null,\
         \"user_agent\":\"curl/8.5.0\",\"request_id\":\"84961386-6d84-929d-98bd-c5aee93b5c88\",\
         \"authority\":\"reviews:9080\",\"upstream_host\":\"10.44.1.27:9080\",\
         \"upstream_cluster\":\"outbound|9080|v2|reviews.default.svc.cluster.local\",\
         \"upstream_local_address\":\"10.44.1.23:37652\",\
         \"downstream_local_address\":\"10.0.45.184:9080\",\
         \"downstream_remote_address\":\"10.44.1.23:46520\",\"requested_server_name\":null,\
         \"upstream_transport_failure_reason\":null,\"keel_error\":null}\n"
    );
    let failed: serde_json::Value = serde_json::from_str(&lines[1]).unwrap();
    let object = failed.as_object().unwrap();
    assert_eq!(object.len(), 25, "Istio's 24 keys and keel_error");
    assert_eq!(failed["response_code"], 503);
    assert_eq!(failed["response_flags"], "UF");
    assert_eq!(
        failed["response_code_details"],
        "upstream_reset_before_response_started{connection_failure}"
    );
    assert_eq!(
        failed["keel_error"],
        "upstream connect failed: reviews-v2 127.0.0.1:9082 connection refused"
    );
    assert_eq!(failed["upstream_service_time"], serde_json::Value::Null);
}

#[test]
fn access_log_switches_at_runtime_and_counts_drops() {
    let (t, capture, _) = telemetry(productpage());
    let r = reviews_request();
    t.record_http(&r);
    assert!(capture.take().is_empty(), "off by default");
    t.set_access_log(AccessLogFormat::Text);
    t.record_http(&r);
    t.set_access_log(AccessLogFormat::Json);
    t.record_http(&r);
    t.set_access_log(AccessLogFormat::Off);
    t.record_http(&r);
    let lines = capture.take();
    assert_eq!(lines.len(), 2);
    assert!(lines[0].starts_with("[2020-11-25T21:26:18.409Z] \"GET"));
    assert!(lines[1].starts_with("{\"start_time\""));
    assert_eq!(t.access_log_format(), AccessLogFormat::Off);
    assert!(t.render_prometheus().contains("istio_requests_total{"));

    let refusing = TelemetryOptions {
        sink: Some(Arc::new(Capture {
            refuse: true,
            ..Capture::default()
        })),
        ..TelemetryOptions::default()
    };
    let t = Telemetry::with_options(productpage(), refusing);
    t.set_access_log(AccessLogFormat::Text);
    t.record_http(&r);
    t.record_http(&r);
    assert_eq!(t.access_log_dropped(), 2);
    assert!(
        t.render_prometheus()
            .contains("\nkeel_access_log_dropped_lines_total 2\n")
    );
}

#[test]
fn telemetry_is_shareable_across_threads() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<Telemetry>();
}
