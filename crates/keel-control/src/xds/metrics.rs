//! The control plane's own metrics, under istiod's names so that Istio's "Control Plane"
//! Grafana dashboard reads them: pushes and their duration per type, rejected updates
//! (NACKs), connected proxies, and the convergence time from a configuration change to the
//! proxy's ACK of it. Served as Prometheus text on the monitoring port (15014, as istiod).

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use keel_xds::ResourceType;

/// Bounds in seconds: finer than istiod's at the low end, where a local mesh converges.
const BUCKETS: &[f64] = &[
    0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 3.0, 5.0, 10.0, 20.0, 30.0,
];

/// A histogram of durations with [`BUCKETS`]; each observation counted in its first bucket.
#[derive(Debug)]
struct Histogram {
    buckets: [AtomicU64; BUCKETS.len() + 1],
    /// Sum in nanoseconds.
    sum_ns: AtomicU64,
}

impl Default for Histogram {
    fn default() -> Self {
        Histogram {
            buckets: std::array::from_fn(|_| AtomicU64::new(0)),
            sum_ns: AtomicU64::new(0),
        }
    }
}

impl Histogram {
    fn observe(&self, d: Duration) {
        let s = d.as_secs_f64();
        let slot = BUCKETS.partition_point(|b| *b < s);
        if let Some(b) = self.buckets.get(slot) {
            b.fetch_add(1, Ordering::Relaxed);
        }
        let ns = u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
        self.sum_ns.fetch_add(ns, Ordering::Relaxed);
    }

    fn render(&self, out: &mut String, name: &str, labels: &str) {
        let sep = if labels.is_empty() { "" } else { "," };
        let mut running = 0;
        for (i, b) in self.buckets.iter().enumerate() {
            running += b.load(Ordering::Relaxed);
            let le = BUCKETS.get(i).map_or("+Inf".to_string(), |b| b.to_string());
            let _ = writeln!(out, "{name}_bucket{{{labels}{sep}le=\"{le}\"}} {running}");
        }
        let braces = if labels.is_empty() {
            String::new()
        } else {
            format!("{{{labels}}}")
        };
        let sum = self.sum_ns.load(Ordering::Relaxed) as f64 / 1e9;
        let _ = writeln!(out, "{name}_sum{braces} {sum}");
        let _ = writeln!(out, "{name}_count{braces} {running}");
    }
}

/// Per resource type: Envoy's short names, as istiod labels them (`cds`, `lds`).
#[derive(Debug, Default)]
struct PerType {
    pushes: AtomicU64,
    rejects: AtomicU64,
    push_time: Histogram,
}

/// Everything the xDS server counts. Shared by every stream.
#[derive(Debug, Default)]
pub struct XdsMetrics {
    clusters: PerType,
    listeners: PerType,
    connected: AtomicU64,
    convergence: Histogram,
    /// The JWT key cache's fetch counters (istiod's `pilot_jwks_resolver_*`).
    jwks: Option<std::sync::Arc<keel_jwks::Stats>>,
}

fn short(t: ResourceType) -> &'static str {
    match t {
        ResourceType::Cluster => "cds",
        ResourceType::Listener => "lds",
    }
}

impl XdsMetrics {
    /// Metrics that also render the JWT key cache's fetch counters.
    pub fn with_jwks(jwks: Option<std::sync::Arc<keel_jwks::Stats>>) -> XdsMetrics {
        XdsMetrics {
            jwks,
            ..XdsMetrics::default()
        }
    }

    fn of(&self, t: ResourceType) -> &PerType {
        match t {
            ResourceType::Cluster => &self.clusters,
            ResourceType::Listener => &self.listeners,
        }
    }

    /// A response was sent; `took`: computing and queueing it.
    pub fn pushed(&self, t: ResourceType, took: Duration) {
        let m = self.of(t);
        m.pushes.fetch_add(1, Ordering::Relaxed);
        m.push_time.observe(took);
    }

    pub fn rejected(&self, t: ResourceType) {
        self.of(t).rejects.fetch_add(1, Ordering::Relaxed);
    }

    /// A proxy ACKed a response carrying a configuration change made `since` ago.
    pub fn converged(&self, since: Duration) {
        self.convergence.observe(since);
    }

    pub fn connected(&self) {
        self.connected.fetch_add(1, Ordering::Relaxed);
    }

    pub fn disconnected(&self) {
        let _ = self
            .connected
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1));
    }

    /// Prometheus text exposition.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let types = [ResourceType::Cluster, ResourceType::Listener];
        out.push_str("# HELP pilot_xds Number of endpoints connected to this pilot using XDS.\n# TYPE pilot_xds gauge\n");
        let _ = writeln!(
            out,
            "pilot_xds{{version=\"{}\"}} {}",
            env!("CARGO_PKG_VERSION"),
            self.connected.load(Ordering::Relaxed)
        );
        out.push_str("# HELP pilot_xds_pushes Pilot build and send errors for lds, rds, cds and eds.\n# TYPE pilot_xds_pushes counter\n");
        for t in types {
            let _ = writeln!(
                out,
                "pilot_xds_pushes{{type=\"{}\"}} {}",
                short(t),
                self.of(t).pushes.load(Ordering::Relaxed)
            );
        }
        out.push_str("# HELP pilot_total_xds_rejects Total number of XDS responses from pilot rejected by proxy.\n# TYPE pilot_total_xds_rejects counter\n");
        for t in types {
            let _ = writeln!(
                out,
                "pilot_total_xds_rejects{{type=\"{}\"}} {}",
                short(t),
                self.of(t).rejects.load(Ordering::Relaxed)
            );
        }
        out.push_str("# HELP pilot_xds_push_time Total time in seconds Pilot takes to push lds, rds, cds and eds.\n# TYPE pilot_xds_push_time histogram\n");
        for t in types {
            self.of(t).push_time.render(
                &mut out,
                "pilot_xds_push_time",
                &format!("type=\"{}\"", short(t)),
            );
        }
        out.push_str("# HELP pilot_proxy_convergence_time Delay in seconds between config change and a proxy receiving all required configuration.\n# TYPE pilot_proxy_convergence_time histogram\n");
        self.convergence
            .render(&mut out, "pilot_proxy_convergence_time", "");
        if let Some(jwks) = &self.jwks {
            out.push_str(&jwks.render());
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exposition_has_istiods_names_and_cumulative_buckets() {
        let m = XdsMetrics::default();
        m.connected();
        m.connected();
        m.disconnected();
        m.pushed(ResourceType::Cluster, Duration::from_millis(2));
        m.pushed(ResourceType::Listener, Duration::from_millis(3));
        m.rejected(ResourceType::Listener);
        m.converged(Duration::from_millis(30));
        m.converged(Duration::from_millis(300));
        let text = m.render();
        assert!(text.contains("pilot_xds{version="), "{text}");
        assert!(text.contains("\"} 1\n"), "{text}");
        assert!(
            text.contains("pilot_xds_pushes{type=\"cds\"} 1\n"),
            "{text}"
        );
        assert!(
            text.contains("pilot_total_xds_rejects{type=\"lds\"} 1\n"),
            "{text}"
        );
        assert!(
            text.contains("pilot_total_xds_rejects{type=\"cds\"} 0\n"),
            "{text}"
        );
        assert!(
            text.contains("pilot_proxy_convergence_time_bucket{le=\"0.05\"} 1\n"),
            "{text}"
        );
        assert!(
            text.contains("pilot_proxy_convergence_time_bucket{le=\"+Inf\"} 2\n"),
            "{text}"
        );
        assert!(
            text.contains("pilot_proxy_convergence_time_count 2\n"),
            "{text}"
        );
        assert!(
            text.contains("pilot_xds_push_time_bucket{type=\"cds\",le=\"0.005\"} 1\n"),
            "{text}"
        );
    }
}
