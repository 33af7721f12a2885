//! Prometheus text exposition (format 0.0.4), written the way Envoy's `/stats/prometheus`
//! writes it (envoy `source/server/admin/prometheus_stats.cc`), so that a scrape of a Keel
//! sidecar reads like a scrape of an Istio sidecar:
//!
//! - one `# TYPE <name> <type>` line per metric family, no `# HELP`, no `# EOF`;
//! - counters keep the name they were given (`istio_requests_total`), no `_created` samples;
//! - histograms as `_bucket{...,le="..."}` (cumulative, then `le="+Inf"`), `_sum`, `_count`;
//! - bucket bounds in plain decimal (`le="0.5"`, `le="1"`, `le="3600000"`, never `1.0` or
//!   `3.6e6`);
//! - a blank line after each family; counters first, then histograms, each sorted by name.
//!
//! `prometheus-client` is not used for these families: its encoder writes OpenMetrics (`# EOF`,
//! `# TYPE istio_requests counter` above `istio_requests_total` samples, `le="1.0"`), which a
//! Prometheus scraping `text/plain` reads differently from Envoy's output, and it has no notion
//! of a series' last update for idle expiry.

use std::fmt::Write;

use super::series::HistogramSnapshot;

/// The `Content-Type` to serve the exposition with.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Accumulates metric families into one exposition.
#[derive(Debug, Default)]
pub struct Exposition {
    out: String,
}

impl Exposition {
    pub fn finish(self) -> String {
        self.out
    }

    /// Writes a counter family; nothing when it has no series (Envoy shows used stats only).
    pub fn counters<'a>(
        &mut self,
        name: &str,
        label_names: &[&str],
        series: impl IntoIterator<Item = (&'a [Box<str>], u64)>,
    ) {
        let mut series = series.into_iter().peekable();
        if series.peek().is_none() {
            return;
        }
        let _ = writeln!(self.out, "# TYPE {name} counter");
        for (values, value) in series {
            self.out.push_str(name);
            self.labels(label_names, values, None);
            let _ = writeln!(self.out, " {value}");
        }
        self.out.push('\n');
    }

    /// Writes a histogram family; nothing when it has no series.
    pub fn histograms<'a>(
        &mut self,
        name: &str,
        label_names: &[&str],
        series: impl IntoIterator<Item = (&'a [Box<str>], HistogramSnapshot)>,
    ) {
        let mut series = series.into_iter().peekable();
        if series.peek().is_none() {
            return;
        }
        let _ = writeln!(self.out, "# TYPE {name} histogram");
        for (values, h) in series {
            for (bound, count) in h.bounds.iter().zip(&h.cumulative) {
                let _ = write!(self.out, "{name}_bucket");
                self.labels(label_names, values, Some(&decimal(*bound)));
                let _ = writeln!(self.out, " {count}");
            }
            let _ = write!(self.out, "{name}_bucket");
            self.labels(label_names, values, Some("+Inf"));
            let _ = writeln!(self.out, " {}", h.count);
            let _ = write!(self.out, "{name}_sum");
            self.labels(label_names, values, None);
            let _ = writeln!(self.out, " {}", decimal(h.sum));
            let _ = write!(self.out, "{name}_count");
            self.labels(label_names, values, None);
            let _ = writeln!(self.out, " {}", h.count);
        }
        self.out.push('\n');
    }

    fn labels(&mut self, names: &[&str], values: &[Box<str>], le: Option<&str>) {
        if names.is_empty() && le.is_none() {
            return;
        }
        self.out.push('{');
        let mut first = true;
        let pairs = names.iter().copied().zip(values.iter().map(|v| &**v));
        for (name, value) in pairs.chain(le.map(|le| ("le", le))) {
            if !first {
                self.out.push(',');
            }
            first = false;
            self.out.push_str(name);
            self.out.push_str("=\"");
            escape_into(&mut self.out, value);
            self.out.push('"');
        }
        self.out.push('}');
    }
}

/// A sample value or bound in the plain decimal Envoy prints (`{:.32g}` there; Rust's shortest
/// round-trip form here, identical for the integers and halves that bounds and most sums are).
fn decimal(v: f64) -> String {
    if v.is_nan() {
        "NaN".to_string()
    } else if v.is_infinite() {
        if v > 0.0 { "+Inf" } else { "-Inf" }.to_string()
    } else {
        format!("{v}")
    }
}

/// Label values escape `\`, `"` and newline, per the text format.
fn escape_into(out: &mut String, value: &str) {
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::telemetry::series::Histogram;

    fn values(v: &[&str]) -> Vec<Box<str>> {
        v.iter().map(|s| Box::from(*s)).collect()
    }

    #[test]
    fn counter_family_is_type_line_samples_blank_line() {
        let a = values(&["a\"b", "x\\y\nz"]);
        let mut e = Exposition::default();
        e.counters("istio_requests_total", &["k1", "k2"], [(&a[..], 3)]);
        e.counters("istio_unused_total", &["k"], []);
        assert_eq!(
            e.finish(),
            "# TYPE istio_requests_total counter\n\
             istio_requests_total{k1=\"a\\\"b\",k2=\"x\\\\y\\nz\"} 3\n\n"
        );
    }

    #[test]
    fn histogram_bounds_are_plain_decimals_and_buckets_cumulative() {
        static BOUNDS: [f64; 4] = [0.5, 1.0, 3600000.0, 1e9];
        let h = Histogram::new(&BOUNDS);
        h.observe(0.25);
        h.observe(2.5);
        let v = values(&["x"]);
        let mut e = Exposition::default();
        e.histograms("m", &["k"], [(&v[..], h.snapshot())]);
        assert_eq!(
            e.finish(),
            "# TYPE m histogram\n\
             m_bucket{k=\"x\",le=\"0.5\"} 1\n\
             m_bucket{k=\"x\",le=\"1\"} 1\n\
             m_bucket{k=\"x\",le=\"3600000\"} 2\n\
             m_bucket{k=\"x\",le=\"1000000000\"} 2\n\
             m_bucket{k=\"x\",le=\"+Inf\"} 2\n\
             m_sum{k=\"x\"} 2.75\n\
             m_count{k=\"x\"} 2\n\n"
        );
    }

    #[test]
    fn special_floats_use_prometheus_spelling() {
        assert_eq!(decimal(f64::INFINITY), "+Inf");
        assert_eq!(decimal(f64::NEG_INFINITY), "-Inf");
        assert_eq!(decimal(f64::NAN), "NaN");
        assert_eq!(decimal(12.0), "12");
    }
}
