//! Istio's standard metrics and access logs.
//!
//! The request path hands a [`RequestRecord`] to [`Telemetry::record_http`] when a request
//! finishes, and [`TcpRecord`]s to the `tcp_*` methods over a connection's life. Telemetry
//! turns them into Istio's standard metrics (names, types, labels and `unknown` defaults as an
//! Istio sidecar reports them, so Istio's Grafana dashboards and Kiali work unchanged) and into
//! one access-log line per request or connection, in Istio's default text or JSON format.
//!
//! - `record.rs`: what the request path hands over ([`RequestRecord`], [`TcpRecord`]).
//! - `labels.rs`: how records become Istio's 25 labels.
//! - `series.rs`: per-label-set storage; atomics on the hot path, idle expiry.
//! - `exposition.rs`: the Prometheus text that `/stats/prometheus` serves, shaped like Envoy's.
//! - `access_log.rs`: Istio's text and JSON log lines; `sink.rs`: the non-blocking writer.
//!
//! ```
//! use keel_proxy::telemetry::{AccessLogFormat, ProxyIdentity, RequestRecord, Telemetry};
//!
//! let telemetry = Telemetry::new(ProxyIdentity { workload: "productpage-v1".into(), ..Default::default() });
//! telemetry.set_access_log(AccessLogFormat::Off);
//! telemetry.record_http(&RequestRecord { response_code: 200, ..Default::default() });
//! assert!(telemetry.render_prometheus().contains("# TYPE istio_requests_total counter\n"));
//! ```

mod access_log;
mod exposition;
mod labels;
pub mod peer_exchange;
mod record;
mod series;
mod shortcut;
mod sink;

use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

pub use exposition::CONTENT_TYPE;
pub use record::{
    AccessLogFormat, Peer, ProxyIdentity, ReportedBytes, Reporter, RequestRecord, ServiceRef,
    TcpRecord,
};
pub use series::{Clock, SystemClock};
pub use sink::{AccessLogSink, BackgroundWriter, DEFAULT_QUEUE_LINES};

use access_log::Entry;
use exposition::Exposition;
use labels::{HTTP_LABEL_NAMES, Hop, TCP_LABEL_NAMES};
use series::{Counter, Histogram, Series, SeriesMap};
use shortcut::HttpKey;

/// `istio_request_duration_milliseconds` buckets: Envoy's default histogram buckets, which
/// Istio uses unless `sidecar.istio.io/statsHistogramBuckets` says otherwise.
pub const DURATION_BUCKETS_MS: &[f64] = &[
    0.5, 1.0, 5.0, 10.0, 25.0, 50.0, 100.0, 250.0, 500.0, 1000.0, 2500.0, 5000.0, 10000.0, 30000.0,
    60000.0, 300000.0, 600000.0, 1800000.0, 3600000.0,
];

/// Decade buckets for `istio_request_bytes` / `istio_response_bytes`, 1 B to 1 GB: the
/// default here. An unannotated Istio sidecar uses [`DURATION_BUCKETS_MS`] for these too
/// (Envoy's defaults apply to every histogram without `histogram_bucket_settings`); any bucket
/// layout works with `histogram_quantile`, so dashboards read either.
pub const BYTES_BUCKETS: &[f64] = &[
    1.0,
    10.0,
    100.0,
    1000.0,
    10000.0,
    100000.0,
    1000000.0,
    10000000.0,
    100000000.0,
    1000000000.0,
];

/// Metrics kept per HTTP label set.
struct HttpMetrics {
    requests: Counter,
    duration_ms: Histogram,
    request_bytes: Histogram,
    response_bytes: Histogram,
    request_messages: Counter,
    response_messages: Counter,
}

/// Metrics kept per TCP label set.
#[derive(Default)]
struct TcpMetrics {
    opened: Counter,
    closed: Counter,
    sent_bytes: Counter,
    received_bytes: Counter,
}

/// Choices made once when telemetry is built; [`TelemetryOptions::default`] is what
/// [`Telemetry::new`] uses.
pub struct TelemetryOptions {
    /// Time source for series ages.
    pub clock: Arc<dyn Clock>,
    /// Where access-log lines go; `None`: stdout, through a writer thread started the first
    /// time a line is written.
    pub sink: Option<Arc<dyn AccessLogSink>>,
    /// Bounds of the two byte histograms: [`BYTES_BUCKETS`] or, to reproduce an unannotated
    /// Istio sidecar exactly, [`DURATION_BUCKETS_MS`] (Envoy applies its default buckets to
    /// every histogram).
    pub byte_buckets: &'static [f64],
}

impl Default for TelemetryOptions {
    fn default() -> TelemetryOptions {
        TelemetryOptions {
            clock: Arc::new(SystemClock),
            sink: None,
            byte_buckets: BYTES_BUCKETS,
        }
    }
}

/// Istio's standard metrics and access logs for one proxy. `Send + Sync`; share it in an `Arc`.
pub struct Telemetry {
    proxy: ProxyIdentity,
    byte_buckets: &'static [f64],
    http: SeriesMap<HttpMetrics, HttpKey>,
    shortcut_hasher: foldhash::fast::RandomState,
    tcp: SeriesMap<TcpMetrics>,
    access_log: AtomicU8,
    sink: OnceLock<Arc<dyn AccessLogSink>>,
    dropped_lines: AtomicU64,
    exchange: Option<peer_exchange::PeerExchange>,
}

impl std::fmt::Debug for Telemetry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Telemetry")
            .field("proxy", &self.proxy)
            .field("http_series", &self.http.len())
            .field("tcp_series", &self.tcp.len())
            .field("access_log", &self.access_log_format())
            .finish_non_exhaustive()
    }
}

impl Telemetry {
    /// Telemetry for the proxy `proxy`, access logs off, lines to stdout once turned on.
    /// Peer metadata exchange with this proxy's identity (`None` without a workload name).
    pub fn peer_exchange(&self) -> Option<&peer_exchange::PeerExchange> {
        self.exchange.as_ref()
    }

    pub fn new(proxy: ProxyIdentity) -> Telemetry {
        Telemetry::with_options(proxy, TelemetryOptions::default())
    }

    /// Telemetry with a chosen clock, access-log sink and byte buckets (tests, embedding).
    pub fn with_options(proxy: ProxyIdentity, options: TelemetryOptions) -> Telemetry {
        let sink = OnceLock::new();
        if let Some(given) = options.sink {
            let _ = sink.set(given);
        }
        Telemetry {
            exchange: peer_exchange::PeerExchange::new(&proxy),
            proxy,
            byte_buckets: options.byte_buckets,
            http: SeriesMap::new(options.clock.clone()),
            shortcut_hasher: Default::default(),
            tcp: SeriesMap::new(options.clock),
            access_log: AtomicU8::new(format_code(AccessLogFormat::Off)),
            sink,
            dropped_lines: AtomicU64::new(0),
        }
    }

    /// The identity this proxy reports for its own side.
    pub fn proxy(&self) -> &ProxyIdentity {
        &self.proxy
    }

    /// Records a finished HTTP request or gRPC call: `istio_requests_total`, the duration and
    /// size histograms, gRPC message counts, and an access-log line.
    pub fn record_http(&self, r: &RequestRecord) {
        let observe = |m: &HttpMetrics| {
            m.requests.add(1);
            m.duration_ms.observe(millis(r.duration));
            let received = r.bytes_received.saturating_add(r.header_bytes_received);
            let sent = r.bytes_sent.saturating_add(r.header_bytes_sent);
            m.request_bytes.observe(received as f64);
            m.response_bytes.observe(sent as f64);
            m.request_messages.add(r.grpc_request_messages);
            m.response_messages.add(r.grpc_response_messages);
        };
        let hash = HttpKey::hash(&self.shortcut_hasher, r);
        if self
            .http
            .with_shortcut(hash, |k| k.is(r), observe)
            .is_none()
        {
            let hop = Hop {
                reporter: r.reporter,
                peer: &r.peer,
                service: r.service.as_deref(),
                authority: &r.authority,
                upstream_cluster: r.upstream_cluster.as_deref(),
            };
            let peer = labels::peer_labels(&self.proxy, &hop);
            let code = labels::response_code(r.response_code);
            let grpc_status = labels::grpc_status(r.grpc, r.grpc_status);
            let mut values = [""; HTTP_LABEL_NAMES.len()];
            values[..peer.len()].copy_from_slice(&peer);
            values[20] = if r.grpc { "grpc" } else { "http" };
            values[21] = &code;
            values[22] = &grpc_status;
            values[23] = labels::flags(&r.response_flags);
            values[24] = labels::security_policy(r.reporter, &r.peer);
            let byte_buckets = self.byte_buckets;
            self.http.update_with_shortcut(
                hash,
                HttpKey::of(r),
                &values,
                || HttpMetrics {
                    requests: Counter::default(),
                    duration_ms: Histogram::new(DURATION_BUCKETS_MS),
                    request_bytes: Histogram::new(byte_buckets),
                    response_bytes: Histogram::new(byte_buckets),
                    request_messages: Counter::default(),
                    response_messages: Counter::default(),
                },
                observe,
            );
        }
        self.log(|| Entry::http(r));
    }

    /// Counts a TCP connection as opened (`istio_tcp_connections_opened_total`).
    pub fn tcp_opened(&self, r: &TcpRecord) {
        self.tcp_update(r, |m| m.opened.add(1));
    }

    /// Adds bytes that flowed since the last report (Istio reports every 5 s on long-lived
    /// connections): `sent` to downstream, `received` from downstream.
    pub fn tcp_bytes(&self, r: &TcpRecord, sent: u64, received: u64) {
        r.reported.add(sent, received);
        self.tcp_update(r, |m| {
            m.sent_bytes.add(sent);
            m.received_bytes.add(received);
        });
    }

    /// Counts the connection as closed, adds the part of its byte totals not yet reported, and
    /// writes its access-log line.
    pub fn tcp_closed(&self, r: &TcpRecord) {
        let (sent, received) = r.reported.settle(r.bytes_sent, r.bytes_received);
        self.tcp_update(r, |m| {
            m.sent_bytes.add(sent);
            m.received_bytes.add(received);
            m.closed.add(1);
        });
        self.log(|| Entry::tcp(r));
    }

    fn tcp_update(&self, r: &TcpRecord, f: impl FnOnce(&TcpMetrics)) {
        let hop = Hop {
            reporter: r.reporter,
            peer: &r.peer,
            service: r.service.as_deref(),
            authority: "",
            upstream_cluster: r.upstream_cluster.as_deref(),
        };
        let peer = labels::peer_labels(&self.proxy, &hop);
        let mut values = [""; TCP_LABEL_NAMES.len()];
        values[..peer.len()].copy_from_slice(&peer);
        values[20] = "tcp";
        values[21] = labels::flags(&r.response_flags);
        values[22] = labels::security_policy(r.reporter, &r.peer);
        self.tcp.update(&values, TcpMetrics::default, f);
    }

    /// Prometheus text exposition (`/stats/prometheus` on 15090/15020), served with
    /// [`CONTENT_TYPE`].
    pub fn render_prometheus(&self) -> String {
        let http = self.http.snapshot();
        let tcp = self.tcp.snapshot();
        let grpc: Vec<Arc<Series<HttpMetrics>>> = http
            .iter()
            .filter(|s| &*s.labels[20] == "grpc")
            .cloned()
            .collect();
        let h = &HTTP_LABEL_NAMES[..];
        let t = &TCP_LABEL_NAMES[..];
        let mut e = Exposition::default();
        e.counters(
            "istio_request_messages_total",
            h,
            counters(&grpc, |m| &m.request_messages, false),
        );
        e.counters(
            "istio_requests_total",
            h,
            counters(&http, |m| &m.requests, false),
        );
        e.counters(
            "istio_response_messages_total",
            h,
            counters(&grpc, |m| &m.response_messages, false),
        );
        // As in Istio, a connection still open has no `closed` sample yet.
        e.counters(
            "istio_tcp_connections_closed_total",
            t,
            counters(&tcp, |m| &m.closed, true),
        );
        e.counters(
            "istio_tcp_connections_opened_total",
            t,
            counters(&tcp, |m| &m.opened, true),
        );
        e.counters(
            "istio_tcp_received_bytes_total",
            t,
            counters(&tcp, |m| &m.received_bytes, false),
        );
        e.counters(
            "istio_tcp_sent_bytes_total",
            t,
            counters(&tcp, |m| &m.sent_bytes, false),
        );
        e.counters(
            "keel_access_log_dropped_lines_total",
            &[],
            [(&[][..], self.access_log_dropped())],
        );
        e.histograms(
            "istio_request_bytes",
            h,
            histograms(&http, |m| &m.request_bytes),
        );
        e.histograms(
            "istio_request_duration_milliseconds",
            h,
            histograms(&http, |m| &m.duration_ms),
        );
        e.histograms(
            "istio_response_bytes",
            h,
            histograms(&http, |m| &m.response_bytes),
        );
        e.finish()
    }

    /// Switches the access log at runtime; takes effect for the next record.
    pub fn set_access_log(&self, format: AccessLogFormat) {
        self.access_log
            .store(format_code(format), Ordering::Relaxed);
    }

    pub fn access_log_format(&self) -> AccessLogFormat {
        match self.access_log.load(Ordering::Relaxed) {
            1 => AccessLogFormat::Text,
            2 => AccessLogFormat::Json,
            _ => AccessLogFormat::Off,
        }
    }

    /// Access-log lines dropped because the writer could not keep up.
    pub fn access_log_dropped(&self) -> u64 {
        self.dropped_lines.load(Ordering::Relaxed)
    }

    /// Drops series not updated for `idle` (call periodically) so cardinality stays bounded.
    /// A series that sees traffic again restarts from zero, which Prometheus' `rate()` reads
    /// as a counter reset.
    pub fn expire_idle(&self, idle: Duration) {
        self.http.expire(idle);
        self.tcp.expire(idle);
    }

    fn log<'a>(&self, entry: impl FnOnce() -> Entry<'a>) {
        let line = match self.access_log_format() {
            AccessLogFormat::Off => return,
            AccessLogFormat::Text => access_log::text(&entry()),
            AccessLogFormat::Json => access_log::json(&entry()),
        };
        let sink = self.sink.get_or_init(|| match BackgroundWriter::stdout() {
            Ok(writer) => Arc::new(writer),
            Err(e) => {
                tracing::warn!("cannot start the access log writer, dropping access logs: {e}");
                Arc::new(sink::DiscardSink)
            }
        });
        if !sink.offer(line) {
            self.dropped_lines.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// One counter of every series; with `only_used`, series where it is still zero are left out.
fn counters<M>(
    series: &[Arc<Series<M>>],
    counter: fn(&M) -> &Counter,
    only_used: bool,
) -> impl Iterator<Item = (&[Box<str>], u64)> {
    series
        .iter()
        .map(move |s| (&s.labels[..], counter(&s.metrics).get()))
        .filter(move |(_, v)| !only_used || *v > 0)
}

fn histograms<M>(
    series: &[Arc<Series<M>>],
    histogram: fn(&M) -> &Histogram,
) -> impl Iterator<Item = (&[Box<str>], series::HistogramSnapshot)> {
    series
        .iter()
        .map(move |s| (&s.labels[..], histogram(&s.metrics).snapshot()))
}

/// Milliseconds as a float, exact for whole milliseconds (nanoseconds / 1e6 rounds once).
fn millis(d: Duration) -> f64 {
    d.as_nanos() as f64 / 1e6
}

fn format_code(format: AccessLogFormat) -> u8 {
    match format {
        AccessLogFormat::Off => 0,
        AccessLogFormat::Text => 1,
        AccessLogFormat::Json => 2,
    }
}

#[cfg(test)]
mod tests;
