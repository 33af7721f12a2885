//! Istio's Bookinfo: four services, each a port of Istio's own (`samples/bookinfo/src/` in
//! istio/istio) — same ports, paths, JSON, timeouts, error texts and header propagation.
//!
//! ```text
//!              ┌──▶ details:9080   /details/0                         (Ruby in Istio)
//! productpage ─┤
//!   (Python)   └──▶ reviews:9080   /reviews/0  ──▶ ratings:9080 /ratings/0   (Java → Node)
//!                    v1: no ratings · v2: black stars, 10 s · v3: red stars, 2.5 s
//! ```

pub mod details;
pub mod page;
pub mod productpage;
pub mod ratings;
pub mod reviews;

use serde::Serialize;

/// The port every Bookinfo service listens on and calls the others on.
pub const PORT: u16 = 9080;

/// The one book Bookinfo sells.
#[derive(Debug, Clone, Serialize)]
pub struct Product {
    /// Product id (always 0).
    pub id: u32,
    /// The title.
    pub title: &'static str,
    /// A summary, as trusted HTML.
    #[serde(rename = "descriptionHtml")]
    pub description_html: &'static str,
}

/// The product list productpage serves at `/api/v1/products`.
pub fn products() -> Vec<Product> {
    vec![Product {
        id: 0,
        title: "The Comedy of Errors",
        description_html: "<a href=\"https://en.wikipedia.org/wiki/The_Comedy_of_Errors\">Wikipedia Summary</a>: The Comedy of Errors is one of <b>William Shakespeare's</b> early plays. It is his shortest and one of his most farcical comedies, with a major part of the humour coming from slapstick and mistaken identity, in addition to puns and word play.",
    }]
}

/// The pod name a Bookinfo app reports: `--pod-name`, else `HOSTNAME` (what Kubernetes sets),
/// else the kernel's host name, else `unknown`.
pub fn default_pod_name() -> String {
    std::env::var("HOSTNAME")
        .ok()
        .filter(|h| !h.is_empty())
        .or_else(|| {
            std::fs::read_to_string("/proc/sys/kernel/hostname")
                .ok()
                .map(|h| h.trim().to_owned())
                .filter(|h| !h.is_empty())
        })
        .unwrap_or_else(|| "unknown".to_owned())
}

/// Parses a decimal integer the way Java's `Integer.valueOf` and Ruby's `Integer()` accept
/// an id: optional sign, digits, nothing else (Ruby's surrounding spaces allowed).
pub fn parse_id(s: &str) -> Option<i64> {
    let s = s.trim();
    let digits = s.strip_prefix(['+', '-']).unwrap_or(s);
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_strict_decimal() {
        assert_eq!(parse_id("0"), Some(0));
        assert_eq!(parse_id("-3"), Some(-3));
        assert_eq!(parse_id("+7"), Some(7));
        assert_eq!(parse_id(" 12 "), Some(12));
        assert_eq!(parse_id("1a"), None);
        assert_eq!(parse_id(""), None);
        assert_eq!(parse_id("-"), None);
        assert_eq!(parse_id("99999999999999999999999"), None);
    }
}
